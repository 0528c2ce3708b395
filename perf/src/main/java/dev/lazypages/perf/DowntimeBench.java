package dev.lazypages.perf;

import dev.lazypages.dump.ConvergencePolicy;
import dev.lazypages.ffm.Features;
import dev.lazypages.migrate.MigrationDestination;
import dev.lazypages.migrate.MigrationMode;
import dev.lazypages.migrate.MigrationReport;
import dev.lazypages.migrate.MigrationSource;
import dev.lazypages.migrate.ServeDaemon;
import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteResult;
import dev.lazypages.proc.NativeStubs;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code downtime}: live migrations of memtouch over loopback through the runtime's own
 * migration code (a {@link ServeDaemon} in this JVM on 127.0.0.1, {@link MigrationSource#run}),
 * for each memory size and each mode, at a fixed dirty rate: the downtime (the source's freeze
 * to the process running at the destination), pre-copy and post-copy traffic, faults and the
 * fault latency. One warm-up migration per mode at the smallest size is discarded; after every
 * migration memtouch verifies every page at the destination (anything but VERIFY OK fails the
 * benchmark) and is killed. Formerly the runtime test {@code migrate.MigrationDowntimeBench}.
 */
@Command(name = "downtime", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Downtime of live migrations over loopback per memory size and mode (pre-copy, post-copy, hybrid).",
            "",
            "Writes DIR/downtime.json, DIR/downtime.md, .hgrm files and PNG plots, and prints the table."
        })
final class DowntimeBench implements Callable<Integer> {
    static final String NAME = "downtime";
    static final String TITLE = "Downtime against memory size per mode (live migration on loopback)";
    private static final Duration POPULATE_TIMEOUT = Duration.ofSeconds(180);
    private static final Duration VERIFY_TIMEOUT = Duration.ofSeconds(120);

    @Spec
    private CommandSpec spec;

    @Option(names = "--sizes-mib", defaultValue = "256,1024,4096", paramLabel = "N,N...",
            description = "memtouch sizes in MiB (default ${DEFAULT-VALUE}).")
    String sizes;

    @Option(names = "--modes", defaultValue = "pre-copy,post-copy,hybrid", paramLabel = "M,M...",
            description = "Migration modes (default ${DEFAULT-VALUE}).")
    String modes;

    @Option(names = "--threads", defaultValue = "2", description = "memtouch worker threads (default ${DEFAULT-VALUE}).")
    int threads;

    @Option(names = "--dirty-mib-per-sec", defaultValue = "8", description = "memtouch's fixed dirty rate (default ${DEFAULT-VALUE}).")
    int rate;

    @Option(names = "--repeat", defaultValue = "3", description = "Measured migrations per size and mode (default ${DEFAULT-VALUE}).")
    int repeat;

    @Option(names = "--hybrid-repeat", paramLabel = "N",
            description = "Measured migrations per size for hybrid, whose 4 GiB / 1 GiB ratio is a target (default: --repeat).")
    int hybridRepeat;

    @Option(names = "--no-warm-up", description = "Skip the discarded warm-up migration per mode at the smallest size.")
    private boolean noWarmUp;

    /** One discarded migration per mode at the smallest size first (off with --no-warm-up). */
    boolean warmUp = true;

    @Option(names = "--out", defaultValue = "bench-results", paramLabel = "DIR",
            description = "Where downtime.json, downtime.md, .hgrm and PNG files go (default ${DEFAULT-VALUE}).")
    private Path out;

    @Option(names = "--stubs-dir", paramLabel = "DIR",
            description = "memtouch and lp-stub (default: $LAZYPAGES_STUBS_DIR, or native-stubs/target/bin next to the jar).")
    Path stubsDir;

    private Consumer<String> progress = line -> { };

    /** The measurements of one mode at one size. */
    record Cell(MigrationMode mode, int sizeMib, Samples downtime, Samples total, Samples preMib, Samples postMib, Samples faults,
                Histogram faultLatency, Map<String, Samples> phases) {
    }

    @Override
    public Integer call() throws Exception {
        return SuiteCommands.runAlone(spec, out, NAME, TITLE, this::measure);
    }

    /** The suite's downtime: 256 MiB, 1 and 4 GiB, 3 runs each, hybrid 5 (quick: 256 MiB and 1 GiB, 1 run each, no warm-up). */
    static SuiteBench suite() {
        return SuiteBench.of(NAME, TITLE, ctx -> {
            DowntimeBench b = configured(ctx.quick() ? "256,1024" : "256,1024,4096", ctx.quick() ? 1 : 3);
            b.hybridRepeat = ctx.quick() ? 1 : 5; // its ratio is a target: a median of 5 where a single run swings by 1.5x
            b.warmUp = !ctx.quick(); // quick: the first measured migration pays for the JIT, and a note says so
            return b.measure(ctx.progress());
        });
    }

    /** The defaults with these sizes and repeats (all modes, 2 threads at 8 MiB/s, warm-up on). */
    static DowntimeBench configured(String sizesMib, int repeats) {
        DowntimeBench b = new DowntimeBench();
        b.sizes = sizesMib;
        b.modes = "pre-copy,post-copy,hybrid";
        b.threads = 2;
        b.rate = 8;
        b.repeat = repeats;
        b.warmUp = true;
        return b;
    }

    SuiteResult measure(Consumer<String> progress) throws Exception {
        this.progress = progress;
        warmUp &= !noWarmUp;
        List<Integer> sizeList = Reports.positiveInts(sizes);
        List<MigrationMode> modeList = new ArrayList<>();
        for (String m : modes.split(",")) {
            if (!m.isBlank()) {
                modeList.add(MigrationMode.parse(m));
            }
        }
        if (hybridRepeat == 0) {
            hybridRepeat = repeat;
        }
        if (modeList.isEmpty() || repeat < 1 || hybridRepeat < 1 || threads < 1 || rate < 0) {
            throw new IllegalArgumentException("--modes must name a mode, --repeat and --threads be at least 1, --dirty-mib-per-sec at least 0");
        }
        Features.ptrace().ensureAvailable();
        if (modeList.stream().anyMatch(MigrationMode::lazy)) {
            Features.userfaultfd().ensureAvailable();
        }
        Path memtouch = NativeStubs.locate("memtouch", stubsDir);
        Path lpStub = NativeStubs.locate(NativeStubs.LP_STUB, stubsDir);
        Path work = Files.createTempDirectory("lazy-bench-downtime");
        Map<String, Cell> cells = new LinkedHashMap<>();
        try {
            MigrationDestination.Options dest = new MigrationDestination.Options(work.resolve("serve"), lpStub, null, false, null, null,
                    null, null, null, null);
            try (ServeDaemon daemon = ServeDaemon.start(new ServeDaemon.Options(new InetSocketAddress("127.0.0.1", 0), null, dest))) {
                if (warmUp) {
                    for (MigrationMode mode : modeList) {
                        MigrationReport w = migrateOnce(daemon, memtouch, work, sizeList.getFirst(), mode);
                        progress.accept(String.format(Locale.ROOT, "warm-up  %-9s %5d MiB: downtime %.1f ms", mode, sizeList.getFirst(),
                                w.downtimeMs));
                    }
                }
                for (int size : sizeList) {
                    for (int i = 1; i <= Math.max(repeat, hybridRepeat); i++) {
                        for (MigrationMode mode : modeList) { // modes interleave, so drifting load touches each alike
                            if (i > (mode == MigrationMode.HYBRID ? hybridRepeat : repeat)) {
                                continue;
                            }
                            Cell c = cells.computeIfAbsent(mode + "/" + size, k -> newCell(mode, size));
                            MigrationReport r = migrateOnce(daemon, memtouch, work, size, mode);
                            c.downtime().add(r.downtimeMs);
                            c.total().add(r.totalMs);
                            c.preMib().add(r.bytesPrecopy / 1048576.0);
                            c.postMib().add(r.bytesPostcopy / 1048576.0);
                            c.faults().add(r.faults);
                            r.phasesMs.forEach((k, v) -> c.phases().computeIfAbsent(k, n -> new Samples(mode + " " + size + " MiB: " + n, "ms"))
                                    .add(v));
                            if (r.faultLatency != null) {
                                c.faultLatency().add(r.faultLatency);
                            }
                            progress.accept(String.format(Locale.ROOT, "measured %-9s %5d MiB run %d: downtime %.1f ms, %d round(s), "
                                    + "pre %.1f MiB, post %.1f MiB, %d faults, total %.0f ms", mode, size, i, r.downtimeMs,
                                    r.rounds.size(), r.bytesPrecopy / 1048576.0, r.bytesPostcopy / 1048576.0, r.faults, r.totalMs));
                        }
                    }
                }
            }
        } finally {
            RestoreBench.deleteTree(work);
        }
        return report(sizeList, modeList, cells);
    }

    private Cell newCell(MigrationMode mode, int size) {
        String p = mode + " " + size + " MiB: ";
        return new Cell(mode, size, new Samples(p + "downtime", "ms"), new Samples(p + "total", "ms"),
                new Samples(p + "pre-copied", "MiB"), new Samples(p + "post-copied", "MiB"), new Samples(p + "faults", "faults"),
                new Histogram(3), new LinkedHashMap<>());
    }

    /** One migration of a fresh memtouch; it verifies itself at the destination and is killed there. */
    private MigrationReport migrateOnce(ServeDaemon daemon, Path memtouchBin, Path work, int sizeMib, MigrationMode mode)
            throws Exception {
        Path dir = Files.createTempDirectory(work, "run");
        try (Memtouch w = Memtouch.start(memtouchBin, dir.resolve("memtouch.log"), sizeMib, threads, rate)) {
            w.awaitLine(l -> l.equals("HEARTBEAT 2"), POPULATE_TIMEOUT);
            MigrationSource.Options o = MigrationSource.Options.defaults().withMode(mode).withToken(daemon.token())
                    .withLimits(ConvergencePolicy.Limits.defaults()).withWorkDir(dir.resolve("rounds"));
            MigrationReport r = MigrationSource.run(w.pid(), daemon.address(), o);
            if (!"migrated".equals(r.outcome)) {
                throw new BenchFailure(mode + " migration of " + sizeMib + " MiB ended " + r.outcome + (r.error != null ? ": " + r.error : ""));
            }
            try (Memtouch moved = w.restoredAs(r.destinationPid)) {
                moved.verify(VERIFY_TIMEOUT);
            }
            return r;
        } finally {
            RestoreBench.deleteTree(dir);
        }
    }

    private SuiteResult report(List<Integer> sizeList, List<MigrationMode> modeList, Map<String, Cell> cells) {
        SuiteResult r = new SuiteResult();
        for (Cell c : cells.values()) {
            r.row("downtime", c.downtime());
        }
        for (Cell c : cells.values()) {
            r.row("traffic and totals", c.preMib()).row("traffic and totals", c.postMib()).row("traffic and totals", c.faults())
                    .row("traffic and totals", c.total());
        }
        for (Cell c : cells.values()) { // where the hybrid downtime goes: the source's freeze steps, the destination's restore
            if (c.mode() == MigrationMode.HYBRID) {
                double tenth = c.downtime().median() / 10;
                c.phases().forEach((k, v) -> {
                    boolean restoreStep = k.startsWith("dest: restore: ");
                    if ((k.startsWith("freeze: ") || k.startsWith("dest: ")) && (!restoreStep || v.median() >= tenth)) {
                        r.row("hybrid downtime by phase (freeze: at the source; dest: at the destination; restore steps "
                                + "of a tenth of the downtime or more)", v);
                    }
                });
            }
        }
        Map<String, Object> phases = new LinkedHashMap<>();
        cells.forEach((k, c) -> {
            Map<String, Object> m = new LinkedHashMap<>();
            c.phases().forEach((n, v) -> m.put(n, v.toMap()));
            phases.put(k, m);
        });
        r.put("phases_ms", phases);
        r.chart("downtime", "Downtime against memory size (memtouch, " + threads + " threads, " + rate + " MiB/s dirtied)",
                "memory size (MiB)", "downtime (ms, median)").logX("downtime").logY("downtime");
        for (MigrationMode mode : modeList) {
            List<double[]> pts = new ArrayList<>();
            for (int size : sizeList) {
                Cell c = cells.get(mode + "/" + size);
                pts.add(new double[] {size, c.downtime().median()});
            }
            r.series("downtime", mode.label(), pts);
        }
        int largest = sizeList.getLast();
        r.chart("fault-latency", "Post-copy fault latency after the migration (" + largest + " MiB)", "percentile", "latency (µs)");
        for (MigrationMode mode : modeList) {
            Cell c = cells.get(mode + "/" + largest);
            if (mode.lazy() && c.faultLatency().getTotalCount() > 0) {
                r.histogram("fault-latency", mode.label() + " " + largest + " MiB", c.faultLatency());
            }
        }
        if (modeList.contains(MigrationMode.HYBRID) && sizeList.size() > 1) {
            int a = sizeList.contains(4096) && sizeList.contains(1024) ? 4096 : largest;
            int b = a == 4096 ? 1024 : sizeList.get(sizeList.size() - 2);
            double ratio = Reports.medianRatio(cells.get("hybrid/" + a).downtime(), cells.get("hybrid/" + b).downtime());
            r.ratio(String.format(Locale.ROOT, "hybrid downtime %s / %s (medians)", mib(a), mib(b)), ratio, 1.2, true);
            if (a != 4096) {
                r.note("without a 4 GiB run (quick mode), the largest over the next size stands in for the target's 4 GiB / 1 GiB");
            }
        }
        r.note(String.format(Locale.ROOT, "memtouch %s MiB, %d threads dirtying %d MiB/s in all; MigrationSource to a ServeDaemon on "
                + "127.0.0.1 in the same JVM, default convergence limits; %s measured migrations per size and mode%s, modes "
                + "interleaved; every migrated memtouch printed VERIFY OK at the destination", sizes, threads, rate,
                repeat + (hybridRepeat != repeat ? " (hybrid " + hybridRepeat + ")" : ""), warmUp ? " after one warm-up migration per mode" : " (no warm-up: the first migration's figures include the JIT's warm-up)"));
        r.note("downtime: from the source's freeze to the process running at the destination, as the source's report gives it; "
                + "fault latency: the destination's histogram of the post-copy faults of every measured run at the largest size");
        if (repeat < 3) {
            r.note("fewer than 3 runs per cell: single figures on a shared 2-core machine, read them as indications only");
        }
        r.put("sizes_mib", sizeList);
        r.put("modes", modeList.stream().map(MigrationMode::label).toList());
        r.put("threads", threads);
        r.put("dirty_mib_per_sec", rate);
        r.put("repeat", repeat);
        r.put("hybrid_repeat", hybridRepeat);
        return r;
    }

    private static String mib(int m) {
        return m % 1024 == 0 ? (m / 1024) + " GiB" : m + " MiB";
    }
}
