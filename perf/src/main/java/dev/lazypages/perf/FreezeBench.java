package dev.lazypages.perf;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.dump.FrozenProcess;
import dev.lazypages.ffm.Features;
import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteResult;
import dev.lazypages.proc.NativeStubs;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code freeze}: the frozen window of a post-copy (lazy) final dump of memtouch, and its
 * breakdown by step as the {@link Dumper} reports it ("frozen window N ms: step a ms, ...").
 * Each run: start memtouch, {@link Dumper#dumpLazy} (everything but page contents; every page
 * REMOTE), then commit (the frozen original is killed). One warm-up run is discarded. Formerly
 * the runtime test {@code dump.PostCopyFreezeBench}.
 */
@Command(name = "freeze", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Frozen window of a post-copy final dump of memtouch, by step.",
            "",
            "Writes DIR/freeze.json and DIR/freeze.md and prints the table."
        })
final class FreezeBench implements Callable<Integer> {
    static final String NAME = "freeze";
    static final String TITLE = "Post-copy final dump: frozen window by step";
    private static final Pattern STEP = Pattern.compile("(.+?) ([0-9.]+) ms");

    @Spec
    private CommandSpec spec;

    @Option(names = "--size-mib", defaultValue = "256", description = "memtouch size in MiB (default ${DEFAULT-VALUE}).")
    int sizeMib;

    @Option(names = "--threads", defaultValue = "2", description = "memtouch worker threads (default ${DEFAULT-VALUE}).")
    int threads;

    @Option(names = "--dirty-mib-per-sec", defaultValue = "16", description = "memtouch's dirty rate (default ${DEFAULT-VALUE}).")
    int rate;

    @Option(names = "--repeat", defaultValue = "5", description = "Measured runs after one warm-up (default ${DEFAULT-VALUE}).")
    int repeat;

    @Option(names = "--out", defaultValue = "bench-results", paramLabel = "DIR",
            description = "Where freeze.json and freeze.md go (default ${DEFAULT-VALUE}).")
    private Path out;

    @Option(names = "--stubs-dir", paramLabel = "DIR",
            description = "Where memtouch is (default: $LAZYPAGES_STUBS_DIR, or native-stubs/target/bin next to the jar).")
    Path stubsDir;

    @Override
    public Integer call() throws Exception {
        return SuiteCommands.runAlone(spec, out, NAME, TITLE, this::measure);
    }

    /** The suite's freeze: 256 MiB, 5 runs (quick: 2). */
    static SuiteBench suite() {
        return SuiteBench.of(NAME, TITLE, ctx -> {
            FreezeBench b = new FreezeBench();
            b.sizeMib = 256;
            b.threads = 2;
            b.rate = 16;
            b.repeat = ctx.quick() ? 2 : 5;
            return b.measure(ctx.progress());
        });
    }

    SuiteResult measure(Consumer<String> progress) throws Exception {
        if (repeat < 1 || sizeMib < 1 || threads < 1 || rate < 0) {
            throw new IllegalArgumentException("--repeat, --size-mib and --threads must be at least 1, --dirty-mib-per-sec at least 0");
        }
        Features.ptrace().ensureAvailable();
        Path memtouch = NativeStubs.locate("memtouch", stubsDir);
        Path work = Files.createTempDirectory("lazy-bench-freeze");
        Samples frozen = new Samples("frozen until ready", "ms");
        Samples remote = new Samples("REMOTE pages", "pages");
        Map<String, Samples> steps = new LinkedHashMap<>();
        try {
            for (int i = 0; i <= repeat; i++) {
                Path dir = Files.createTempDirectory(work, "run");
                AtomicReference<String> window = new AtomicReference<>("");
                try (Memtouch w = Memtouch.start(memtouch, dir.resolve("memtouch.log"), sizeMib, threads, rate)) {
                    w.awaitLine(l -> l.equals("HEARTBEAT 1"), Duration.ofSeconds(120));
                    DumpOptions o = DumpOptions.of(dir.resolve("img")).withProgress(l -> {
                        if (l.startsWith("frozen window")) {
                            window.set(l);
                        }
                    });
                    try (FrozenProcess f = Dumper.dumpLazy(w.pid(), o)) {
                        double ms = Reports.millis(f.dump().frozenNanos());
                        long pages = f.remote().pageCount();
                        f.commitAndKill();
                        progress.accept(String.format(Locale.ROOT, "%s run %d: frozen until ready %.1f ms, %d REMOTE pages; %s",
                                i == 0 ? "warm-up " : "measured", i, ms, pages, window.get()));
                        if (i > 0) {
                            frozen.add(ms);
                            remote.add(pages);
                            steps(window.get()).forEach((k, v) -> steps.computeIfAbsent(k, n -> new Samples("step: " + n, "ms")).add(v));
                        }
                    }
                } finally {
                    RestoreBench.deleteTree(dir);
                }
            }
        } finally {
            RestoreBench.deleteTree(work);
        }
        SuiteResult r = new SuiteResult();
        r.row("", frozen).row("", remote);
        steps.values().forEach(s -> r.row("", s));
        r.note(String.format(Locale.ROOT, "memtouch %d MiB, %d threads dirtying %d MiB/s; Dumper.dumpLazy then commit; %d measured "
                + "runs after one warm-up. A step appears in a run's breakdown only when it took 0.1 ms or more, so its n may be "
                + "smaller than the runs'", sizeMib, threads, rate, repeat));
        r.put("size_mib", sizeMib);
        r.put("repeat", repeat);
        return r;
    }

    /** The steps of a "frozen window N ms: step a ms, step b ms" line. */
    static Map<String, Double> steps(String line) {
        Map<String, Double> m = new LinkedHashMap<>();
        int colon = line.indexOf(": ");
        if (colon < 0) {
            return m;
        }
        for (String part : line.substring(colon + 2).split(", ")) {
            Matcher x = STEP.matcher(part.strip());
            if (x.matches()) {
                m.merge(x.group(1).replaceAll(" in /\\S+", ""), Double.parseDouble(x.group(2)), Double::sum); // no temp paths
            }
        }
        return m;
    }
}
