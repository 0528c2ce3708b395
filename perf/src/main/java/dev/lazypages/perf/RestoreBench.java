package dev.lazypages.perf;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.ffm.Features;
import dev.lazypages.lazy.LazyStats;
import dev.lazypages.proc.NativeStubs;
import dev.lazypages.restore.ImageLazyHandoff;
import dev.lazypages.restore.Restorer;
import dev.lazypages.stats.Json;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code restore}: how long a restore takes before the process runs, and before every page is
 * in, eager against lazy, for memtouch of each size. Each run starts memtouch (1 thread, no
 * dirtying), dumps it in-process with the {@link Dumper}, restores it in-process with the
 * {@link Restorer} (lazy: an {@link ImageLazyHandoff}), waits for every page (lazy: the page
 * server's completion), has it verify every page (SIGUSR1; anything but VERIFY OK fails the
 * benchmark) and kills it. Modes alternate within each repeat; the first repeat of each size is
 * a warm-up and is discarded.
 */
@Command(name = "restore", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Eager against lazy restore of memtouch: ms until the process runs, ms until every page is in.",
            "",
            "Writes DIR/restore.json and DIR/restore.md and prints the table."
        })
final class RestoreBench implements Callable<Integer> {
    private static final Duration POPULATE_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration VERIFY_TIMEOUT = Duration.ofSeconds(60);
    private static final long LAZY_TIMEOUT_SECONDS = 300;

    @Spec
    private CommandSpec spec;

    @Option(names = "--sizes-mib", defaultValue = "256,1024", paramLabel = "N,N...",
            description = "memtouch sizes in MiB (default ${DEFAULT-VALUE}).")
    private String sizes;

    @Option(names = "--repeat", defaultValue = "5", description = "Measured runs per size and mode, after one warm-up (default ${DEFAULT-VALUE}).")
    private int repeat;

    @Option(names = "--out", defaultValue = "bench-results", paramLabel = "DIR",
            description = "Where restore.json and restore.md go (default ${DEFAULT-VALUE}).")
    private Path out;

    @Option(names = "--work-dir", paramLabel = "DIR",
            description = "Where the images and logs are written (default: a new directory under java.io.tmpdir).")
    private Path workDir;

    @Option(names = "--stubs-dir", paramLabel = "DIR",
            description = "memtouch and lp-stub (default: $LAZYPAGES_STUBS_DIR, or native-stubs/target/bin next to the jar).")
    private Path stubsDir;

    private PrintWriter say;

    /** The measurements of one size. */
    private record Row(int sizeMib, Samples eagerStart, Samples eagerAll, Samples lazyStart, Samples lazyAll) {
        List<Samples> all() {
            return List.of(eagerStart, eagerAll, lazyStart, lazyAll);
        }
    }

    @Override
    public Integer call() throws Exception {
        say = spec.commandLine().getErr();
        List<Integer> sizesMib = Reports.positiveInts(sizes);
        if (repeat < 1) {
            throw new IllegalArgumentException("--repeat must be at least 1");
        }
        Features.ptrace().ensureAvailable();
        Features.userfaultfd().ensureAvailable();
        Path memtouch = NativeStubs.locate("memtouch", stubsDir);
        Path work = workDir != null ? Files.createDirectories(workDir) : Files.createTempDirectory("lazy-bench-restore");
        List<Row> rows = new ArrayList<>();
        try {
            for (int size : sizesMib) {
                Row row = new Row(size, new Samples("eager " + size + " MiB: running", "ms"),
                        new Samples("eager " + size + " MiB: all pages in", "ms"),
                        new Samples("lazy " + size + " MiB: running", "ms"),
                        new Samples("lazy " + size + " MiB: all pages in", "ms"));
                for (int i = 0; i <= repeat; i++) {
                    boolean warmUp = i == 0;
                    for (boolean lazy : new boolean[] {false, true}) {
                        double[] t = runOnce(memtouch, work, size, lazy);
                        log("%s %4d MiB %-5s run %d: running after %.1f ms, all pages in after %.1f ms", warmUp ? "warm-up " : "measured",
                                size, lazy ? "lazy" : "eager", i, t[0], t[1]);
                        if (!warmUp) {
                            (lazy ? row.lazyStart() : row.eagerStart()).add(t[0]);
                            (lazy ? row.lazyAll() : row.eagerAll()).add(t[1]);
                        }
                    }
                }
                rows.add(row);
            }
        } finally {
            if (workDir == null) {
                deleteTree(work);
            }
        }
        report(rows);
        return 0;
    }

    /** One dump and restore; returns {ms until running, ms until every page is in}. */
    private double[] runOnce(Path memtouchBin, Path work, int sizeMib, boolean lazy) throws Exception {
        Path dir = Files.createTempDirectory(work, "run");
        Path img = dir.resolve("img");
        Memtouch restored = null;
        ImageLazyHandoff handoff = lazy ? new ImageLazyHandoff() : null;
        try (Memtouch w = Memtouch.start(memtouchBin, dir.resolve("memtouch.log"), sizeMib, 1, 0)) {
            w.awaitLine(l -> l.equals("HEARTBEAT 1"), POPULATE_TIMEOUT);
            Dumper.dump(w.pid(), DumpOptions.of(img));
            w.awaitDead(Duration.ofSeconds(10));

            Restorer.Options opts = Restorer.Options.eager(img).withStub(stubsDir);
            if (handoff != null) {
                opts = opts.withLazy(handoff);
            }
            AtomicLong allIn = new AtomicLong();
            long t0 = System.nanoTime();
            Restorer.Result r = Restorer.restore(opts);
            long running = System.nanoTime();
            restored = w.restoredAs(r.pid());
            long all = running;
            if (handoff != null) {
                // stamped by the server thread as it completes (or at once here, if it already has)
                handoff.completion().whenComplete((s, e) -> allIn.set(System.nanoTime()));
                LazyStats stats;
                try {
                    stats = handoff.completion().get(LAZY_TIMEOUT_SECONDS, TimeUnit.SECONDS);
                } catch (TimeoutException e) {
                    throw new BenchFailure("the lazy page server did not complete within " + LAZY_TIMEOUT_SECONDS + " s");
                } catch (ExecutionException e) {
                    throw new BenchFailure("the lazy page server failed: " + e.getCause());
                }
                if (stats.targetExited()) {
                    throw new BenchFailure("restored memtouch pid " + r.pid() + " exited while its pages were served: " + stats);
                }
                all = allIn.get();
            }
            restored.verify(VERIFY_TIMEOUT);
            return new double[] {Reports.millis(running - t0), Reports.millis(all - t0)};
        } finally {
            if (restored != null) {
                restored.close();
            }
            if (handoff != null) {
                handoff.close();
            }
            deleteTree(dir);
        }
    }

    private void report(List<Row> rows) throws IOException {
        List<Samples> all = new ArrayList<>();
        rows.forEach(r -> all.addAll(r.all()));
        String table = Reports.markdownTable(all);
        StringBuilder md = new StringBuilder();
        md.append("# Restore: eager against lazy\n\n");
        md.append(String.format(Locale.ROOT, "memtouch, 1 thread, no dirtying; in-process Dumper and Restorer; %d measured runs "
                + "per size and mode after one warm-up; JDK %s; %d CPUs.%n%n", repeat, Runtime.version(),
                Runtime.getRuntime().availableProcessors()));
        md.append("\"running\": restore start to the process running; \"all pages in\": to the last page in place "
                + "(eager: the same; lazy: the page server's completion).\n\n");
        md.append(table);
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("benchmark", "restore");
        json.put("workload", "memtouch --threads 1 --dirty-mib-per-sec 0");
        json.put("sizes_mib", rows.stream().map(Row::sizeMib).toList());
        json.put("repeat", repeat);
        json.put("warmup_runs", 1);
        json.put("jdk", Runtime.version().toString());
        json.put("cpus", Runtime.getRuntime().availableProcessors());
        json.put("metrics", all.stream().map(Samples::toMap).toList());
        if (rows.size() > 1) {
            Row small = rows.get(0);
            Row big = rows.get(rows.size() - 1);
            double ratio = Reports.medianRatio(big.lazyStart(), small.lazyStart());
            String line = String.format(Locale.ROOT, "lazy start %d MiB / %d MiB (medians): %.2f", big.sizeMib(), small.sizeMib(), ratio);
            md.append('\n').append(line).append('\n');
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("numerator_mib", big.sizeMib());
            r.put("denominator_mib", small.sizeMib());
            r.put("ratio", Samples.round(ratio));
            json.put("lazy_start_ratio", r);
        }
        Files.createDirectories(out);
        Files.writeString(out.resolve("restore.md"), md, StandardCharsets.UTF_8);
        Files.writeString(out.resolve("restore.json"), Json.write(json) + "\n", StandardCharsets.UTF_8);
        PrintWriter o = spec.commandLine().getOut();
        o.print(md);
        o.println();
        o.println("wrote " + out.resolve("restore.json") + " and " + out.resolve("restore.md"));
        o.flush();
    }

    private void log(String fmt, Object... args) {
        say.println(String.format(Locale.ROOT, fmt, args));
        say.flush();
    }

    static void deleteTree(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // a temporary directory left behind is harmless
        }
    }
}
