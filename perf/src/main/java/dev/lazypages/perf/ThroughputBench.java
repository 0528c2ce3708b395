package dev.lazypages.perf;

import dev.lazypages.ffm.Features;
import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteContext;
import dev.lazypages.perf.suite.SuiteResult;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Mixin;

/**
 * {@code postcopy-throughput}: how fast post-copy brings a whole region in while the process
 * faults heavily, ours against the C floor ({@link TouchRig}). Each run restores the region
 * lazily with the background transfer on, and the toucher touches every page back to back,
 * from the first page on ({@code sequential}) or in a random order ({@code random}); a third
 * access, {@code bulk}, touches one page only (the background transfer alone). Measured: MiB/s
 * from the transfer's start to every page in (ours: the lazy page server's start to its
 * completion, over every REMOTE page of the process; floor: its bulk stream's start to the
 * last page copied), and pages in over time (ours: the page server's count, floor: the
 * toucher's, every 2 ms) for the transfer-rate plot. {@value #FULL_WARMUPS} warm-up rounds ({@code --quick}: one; after
 * the first, ours' runs only: the floor is C, with nothing to compile), then {@code repeat}.
 */
@Command(name = "postcopy-throughput", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Post-copy throughput while the process faults heavily (sequential, random) and of the bulk transfer alone,",
            "ours against the C floor.",
            "",
            "Writes DIR/postcopy-throughput.json and .md."
        })
public final class ThroughputBench implements Callable<Integer>, SuiteBench {
    /** Target of the issue: post-copy throughput on loopback. */
    static final double TARGET_GIB_PER_SECOND = 1.5;
    private static final String[] ACCESS = {"sequential", "random", "bulk"};
    private static final String[] PIPELINES = {"floor", "ours"};

    /**
     * @param pages  region size in pages
     * @param repeat measured rounds after the warm-up rounds
     * @param fullWarmup the warm-up rounds run every access pattern; else only the first
     * @param warmups warm-up rounds: the JIT compiles the transfer's code in them (a round of
     *                the 1 GiB transfer after a single one still had C2 using 0.3-0.6 CPU-seconds;
     *                see {@link #FULL_WARMUPS})
     */
    record Config(int pages, int repeat, long seed, Path stubsDir, Path workDir, boolean fullWarmup, int warmups) {
        static Config full() {
            return new Config(262_144, 3, 42, null, null, true, FULL_WARMUPS);
        }

        static Config quick() {
            return new Config(16_384, 1, 42, null, null, false, 1);
        }
    }

    /**
     * Warm-up rounds of a full run. With 2, C2 still compiled the transfer's own code during the
     * measured runs ({@code -XX:+PrintCompilation}: 5-32 tier-4 compiles and up to 7 deoptimisations
     * per run of ours, among them SingleThreadIoEventLoop.run, RemoteLazySource.readAsync,
     * SingleThreadEventExecutor.execute), and the runs it compiled in were the slow ones (sequential
     * 1260 MiB/s with 198 CPU-ms of C2 in the run, 1797 with none).
     */
    static final int FULL_WARMUPS = 6;

    @Mixin
    private TouchBenches.CommonOptions common;

    @Option(names = "--size-mib", defaultValue = "1024", description = "Region size in MiB (default ${DEFAULT-VALUE}).")
    private int sizeMib;

    @Option(names = "--repeat", defaultValue = "3", description = "Measured rounds, after the warm-up rounds (default ${DEFAULT-VALUE}).")
    private int repeat;

    @Option(names = "--warmups", defaultValue = "" + FULL_WARMUPS,
            description = "Warm-up rounds, discarded; after the first, ours' runs only (default ${DEFAULT-VALUE}).")
    private int warmups;

    @Override
    public String name() {
        return "postcopy-throughput";
    }

    @Override
    public String title() {
        return "Post-copy throughput: ours against the C floor";
    }

    @Override
    public SuiteResult run(SuiteContext ctx) throws Exception {
        return measure(ctx.quick() ? Config.quick() : Config.full(), ctx.progress());
    }

    @Override
    public Integer call() throws Exception {
        if (sizeMib < 1 || repeat < 1 || warmups < 0) {
            throw new IllegalArgumentException("--size-mib and --repeat must be at least 1, --warmups at least 0");
        }
        Config c = common.quick ? new Config(Config.quick().pages(), Config.quick().repeat(), 42, common.stubsDir, common.workDir, false, 1)
                : new Config(sizeMib * 256, repeat, 42, common.stubsDir, common.workDir, true, warmups);
        return common.run(this, say -> measure(c, say));
    }

    /** The spec of one access pattern: background on, every page touched (bulk: one). */
    static TouchSpec spec(int pages, String access, long seed, Duration delay) {
        int touches = access.equals("bulk") ? 1 : pages;
        return new TouchSpec(pages, touches, !access.equals("sequential"), seed, 0, true, true, delay);
    }

    static SuiteResult measure(Config c, Consumer<String> say) throws Exception {
        Features.ptrace().ensureAvailable();
        Features.userfaultfd().ensureAvailable();
        String machine = TouchBenches.machine();
        Map<String, Samples> mibps = new LinkedHashMap<>();
        Map<String, Samples> touchMs = new LinkedHashMap<>();
        Map<String, Samples> faultShare = new LinkedHashMap<>();
        Map<String, Samples> lag = new LinkedHashMap<>();
        Map<String, Samples[]> lat = new LinkedHashMap<>();
        Map<String, Samples> ratio = new LinkedHashMap<>();
        Map<String, TouchRun> last = new LinkedHashMap<>();
        for (String a : ACCESS) {
            for (String p : PIPELINES) {
                String k = p + " " + a;
                mibps.put(k, new Samples(k + ": until every page is in", "MiB/s"));
                touchMs.put(k, new Samples(k + ": touching every page", "ms"));
                faultShare.put(k, new Samples(k + ": touches that faulted", "%"));
                lag.put(k, new Samples(k + ": touching began after the transfer started", "ms"));
                lat.put(k, TouchBenches.percentileRows(k + " fault"));
            }
            ratio.put(a, new Samples(a + ": ours/floor MiB/s", "×"));
        }
        try (TouchRig rig = new TouchRig(c.stubsDir(), c.workDir(), say)) {
            for (int round = 0; round < c.warmups() + c.repeat(); round++) {
                final int i = round < c.warmups() ? 0 : round - c.warmups() + 1; // 0: a warm-up round
                for (String a : ACCESS) {
                    if (i == 0 && !c.fullWarmup() && !a.equals(ACCESS[0])) {
                        continue;
                    }
                    double[] both = new double[2];
                    for (int j = 0; j < PIPELINES.length; j++) {
                        if (i == 0 && round > 0 && PIPELINES[j].equals("floor")) {
                            continue; // the floor is C: nothing of it to warm up after the first round
                        }
                        String k = PIPELINES[j] + " " + a;
                        TouchSpec s = spec(c.pages(), a, c.seed(), Duration.ZERO);
                        TouchRun r = rig.run(PIPELINES[j], s);
                        TouchBenches.check(r);
                        both[j] = r.throughputMiBps();
                        say.accept(String.format(Locale.ROOT, "%s round %d %-16s %s: %.0f MiB/s until every page is in (%.1f ms); "
                                        + "%d of %d touches faulted; %s", i == 0 ? "warm-up " : "measured", i, k, s.describe(),
                                both[j], r.allInNanos() / 1e6, r.faultedTouches(), r.toucher().touches(), r.detail()));
                        if (i == 0) {
                            continue;
                        }
                        mibps.get(k).add(both[j]);
                        if (!a.equals("bulk")) {
                            touchMs.get(k).add(r.toucher().touchNanos() / 1e6);
                            faultShare.get(k).add(100.0 * r.faultedTouches() / r.toucher().touches());
                            lag.get(k).add(r.touchLagNanos() / 1e6);
                            if (r.faultedTouches() > 0) {
                                TouchBenches.addPercentiles(lat.get(k), r.faultHistogram());
                            }
                        }
                        last.put(k, r);
                    }
                    if (i > 0) {
                        ratio.get(a).add(both[1] / both[0]);
                    }
                }
            }
        }
        SuiteResult res = new SuiteResult();
        String table = "MiB/s from the transfer's start to every page in";
        mibps.values().forEach(s -> res.row(table, s));
        ratio.values().forEach(s -> res.row(table, s));
        for (String k : touchMs.keySet()) {
            if (touchMs.get(k).count() > 0) {
                res.row("the process while it faults", touchMs.get(k));
                res.row("the process while it faults", faultShare.get(k));
                res.row("the process while it faults", lag.get(k));
            }
        }
        for (Samples[] rows : lat.values()) {
            if (rows[0].count() > 0) {
                for (Samples s : rows) {
                    res.row("fault latency under load (µs, faulted touches)", s);
                }
            }
        }
        res.chart("postcopy-rate", "Post-copy transfer rate over time (last measured run)", "time since the transfer started (ms)",
                "MiB/s (10 ms intervals)");
        last.forEach((k, r) -> res.series("postcopy-rate", k, r.rateSeries(10)));
        for (String a : new String[] {"sequential", "random"}) {
            res.ratio("ours post-copy GiB/s, " + a + " (loopback)", mibps.get("ours " + a).median() / 1024, TARGET_GIB_PER_SECOND,
                    false);
        }
        for (String a : ACCESS) {
            res.note(String.format(Locale.ROOT, "ours/floor %s throughput (medians): %.2f", a,
                    Reports.medianRatio(mibps.get("ours " + a), mibps.get("floor " + a))));
        }
        res.note(String.format(Locale.ROOT, "%d MiB region, background transfer on, every page touched back to back (bulk: one page), "
                + "%d warm-up round(s) discarded, %d measured rounds", c.pages() >> 8, c.warmups(), c.repeat()));
        res.note("ours counts every REMOTE page of the process (the region plus its code, stack and libraries), from the lazy "
                + "page server's start to its completion; the floor counts the region, from its bulk stream's start (one "
                + "request for the whole region) to the last page copied");
        res.note("the floor's bulk thread receives and copies in turn (one thread, 256 KiB at a time, as ours' bulk requests); "
                + "ours receives and copies on its BULK event loop while its fault event loop copies slices of the same "
                + "deliveries between faults: an ours/floor bulk ratio above 1 says ours overlaps the two, not that it passes "
                + "a physical limit");
        res.note(TouchRig.QUIET_NOTE);
        res.note("each round's detail line (in the progress output and last_runs in the JSON) ends with the CPU time this "
                + "JVM's threads used from the restore to every page in, by kind (page-client: the destination's FAULT and "
                + "BULK loops; page-server: the source's loops; page-server-bul: its process_vm_readv thread), and the "
                + "toucher's");
        res.note("machine: " + machine + "; other work on the machine shares its CPUs: throughput varies from run to run, "
                + "see min and max");
        res.put("config", Map.of("pages", c.pages(), "repeat", c.repeat(), "warmup_rounds", c.warmups(), "seed", c.seed()));
        Map<String, String> details = new LinkedHashMap<>();
        last.forEach((k, r) -> details.put(k, r.detail()));
        res.put("last_runs", details);
        return res;
    }

    static List<String> accessPatterns() {
        return List.of(ACCESS);
    }
}
