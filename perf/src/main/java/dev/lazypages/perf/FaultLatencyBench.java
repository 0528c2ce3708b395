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
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Mixin;

/**
 * {@code fault-latency}: the toucher touches N random pages of lazily restored memory, at a
 * fixed rate, through our engine and through the C floor ({@link TouchRig}), idle (no
 * background transfer) and while the background transfer runs. Each touch's latency is taken
 * by the toucher itself (the same C code in both pipelines); touches that found their page in
 * already (under {@link TouchRun#HIT_NANOS}: the background was first) are counted apart.
 * {@value #FULL_WARMUPS} warm-up rounds of four times the touches ({@code --quick}: one of as many), then {@code repeat} rounds, the variants interleaved in each round so
 * that the machine's load falls on all of them alike. A fifth variant: ours with the background capped at
 * {@value #CAP_MIB_PER_SECOND} MiB/s ({@code lazy-dump migrate --max-postcopy-bandwidth}), which then gives
 * way to the faults (LazyPageServer.Options#latencyFirst). It warms up like the others: without warm-up
 * rounds of its own, JFR showed the fault path's compiled code, which had never seen a capped server,
 * deoptimised (unstable_if in LazyPageServer.latencyFirst, awaitsBackground, copyShared, backgroundLoop)
 * in the first measured capped round, so that round ran part interpreted and C2 recompiled it meanwhile.
 */
@Command(name = "fault-latency", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Fault latency of lazily restored memory against the C floor, idle and with the background transfer running.",
            "",
            "Writes DIR/fault-latency.json, .md and one .hgrm per variant (all measured runs merged)."
        })
public final class FaultLatencyBench implements Callable<Integer>, SuiteBench {
    /**
     * @param pages          region size in pages
     * @param touches        random pages touched per run
     * @param intervalMicros touch interval (the fixed rate)
     * @param repeat         measured rounds after the warm-up rounds
     * @param fullWarmup     the warm-up rounds run every variant; else only the idle ones (one run per pipeline)
     * @param warmups        warm-up rounds (of {@link #WARMUP_TOUCHES_FACTOR} times the touches when full): with one
     *                       of as many touches, the JIT still compiled for 0.36-0.49 s during ours' idle touches in
     *                       the first two measured rounds (the fault path, hot only from then on)
     */
    record Config(int pages, int touches, int intervalMicros, int repeat, long seed, Path stubsDir, Path workDir,
                  boolean fullWarmup, int warmups) {
        static Config full() {
            return new Config(262_144, 5_000, 100, 5, 42, null, null, true, FULL_WARMUPS);
        }

        static Config quick() {
            return new Config(32_768, 200, 100, 1, 42, null, null, false, 1);
        }
    }

    /**
     * Touches of a full warm-up run, per touch of a measured one: with as many, the fault path's
     * methods were still compiled by C2 (tier 4) during the first measured round's touches, after
     * three warm-up rounds (-XX:+PrintCompilation: FaultReader.readAndServe, LoopFaults.readable,
     * Userfaultfd.read...; C2 compiles after ~15000 invocations, a round serves 5000 faults).
     */
    static final int WARMUP_TOUCHES_FACTOR = 4;

    /**
     * Warm-up rounds of a full run. With 3, the JIT still compiled during the measured rounds'
     * touches (the rounds' "JIT" figures in a full run: 0-38 ms in ours' idle rounds, 62-252 ms in the
     * background ones; up to 159 and 444 ms under JFR), and ours' idle p99 swung from 0.17 to 1.7 ms
     * between rounds; with 8 ({@code fault-latency --warmups 8 --repeat 5}), ours' idle rounds
     * compiled 0-2 ms and their p99 was 115-144 µs in all five (the floor's 87-131). The background rounds still compile 25-180 ms:
     * the dump and restore before each (code run once a round) queue compiles that run beside the
     * touches, since the background starts with the restore.
     */
    static final int FULL_WARMUPS = 8;

    private static final String[][] VARIANTS = {{"floor", "idle"}, {"ours", "idle"}, {"floor", "background"}, {"ours", "background"},
        {"ours", "capped"}};

    /**
     * The capped variant's background bandwidth: measured with {@code fault-latency --warmups 3 --repeat 6}, ours'
     * background p99 (median of rounds) was 268 µs at 256 MiB/s, 254 at 128 (idle p99 148-253 in those runs),
     * 985 at 512 and 1235-1866 with no cap.
     */
    static final int CAP_MIB_PER_SECOND = 256;

    @Mixin
    private TouchBenches.CommonOptions common;

    @Option(names = "--size-mib", defaultValue = "1024", description = "Region size in MiB (default ${DEFAULT-VALUE}).")
    private int sizeMib;

    @Option(names = "--touches", defaultValue = "5000", description = "Random pages touched per run (default ${DEFAULT-VALUE}).")
    private int touches;

    @Option(names = "--interval-us", defaultValue = "100",
            description = "Touch interval: the fixed rate the toucher drives faults at (default ${DEFAULT-VALUE}).")
    private int intervalMicros;

    @Option(names = "--repeat", defaultValue = "5", description = "Measured rounds, after the warm-up rounds (default ${DEFAULT-VALUE}).")
    private int repeat;

    @Option(names = "--seed", defaultValue = "42", description = "Seed of the pattern and the order (default ${DEFAULT-VALUE}).")
    private long seed;

    @Option(names = "--warmups", defaultValue = "" + FULL_WARMUPS,
            description = "Warm-up rounds of four times the touches, discarded (default ${DEFAULT-VALUE}).")
    private int warmups;

    @Override
    public String name() {
        return "fault-latency";
    }

    @Override
    public String title() {
        return "Fault latency: ours against the C floor";
    }

    @Override
    public SuiteResult run(SuiteContext ctx) throws Exception {
        return measure(ctx.quick() ? Config.quick() : Config.full(), ctx.progress());
    }

    @Override
    public Integer call() throws Exception {
        if (sizeMib < 1 || touches < 1 || repeat < 1 || intervalMicros < 0 || warmups < 0) {
            throw new IllegalArgumentException("--size-mib, --touches and --repeat must be at least 1, --interval-us and --warmups at least 0");
        }
        Config c = common.quick ? new Config(Config.quick().pages(), Config.quick().touches(), Config.quick().intervalMicros(),
                Config.quick().repeat(), seed, common.stubsDir, common.workDir, false, 1)
                : new Config(sizeMib * 256, touches, intervalMicros, repeat, seed, common.stubsDir, common.workDir, true, warmups);
        if (c.touches() > c.pages()) {
            throw new IllegalArgumentException("--touches must not exceed the region's pages (" + c.pages() + ")");
        }
        return common.run(this, say -> measure(c, say));
    }

    static SuiteResult measure(Config c, Consumer<String> say) throws Exception {
        Features.ptrace().ensureAvailable();
        Features.userfaultfd().ensureAvailable();
        String machine = TouchBenches.machine();
        TouchSpec base = new TouchSpec(c.pages(), c.touches(), true, c.seed(), c.intervalMicros(), false, true, Duration.ZERO);
        Map<String, Samples[]> pct = new LinkedHashMap<>();
        Map<String, Samples> hits = new LinkedHashMap<>();
        Map<String, Samples[]> jvm = new LinkedHashMap<>();
        Map<String, Samples> kernelMs = new LinkedHashMap<>();
        Map<String, Histogram> merged = new LinkedHashMap<>();
        for (String[] v : VARIANTS) {
            String k = v[0] + " " + v[1];
            pct.put(k, TouchBenches.percentileRows(k));
            hits.put(k, new Samples(k + ": touches that found the page in", "touches"));
            kernelMs.put(k, new Samples(k + ": kernel threads' CPU (kdamond, ksoftirqd...)", "ms"));
            jvm.put(k, new Samples[] {new Samples(k + ": collections", "GCs"), new Samples(k + ": collection time", "ms"),
                    new Samples(k + ": JIT compilation", "ms")});
            merged.put(k, new Histogram(3));
        }
        Samples[] ratio = {new Samples("idle p50 ours/floor", "×"), new Samples("idle p99 ours/floor", "×"),
                new Samples("idle p99.9 ours/floor", "×"), new Samples("background p50 ours/floor", "×"),
                new Samples("background p99 ours/floor", "×"), new Samples("ours p99 background/idle", "×"),
                new Samples("ours p99 capped background/idle", "×")};
        String lastDetail = "";
        Map<String, Integer> unmeasured = new LinkedHashMap<>();
        Map<String, Samples> lag = new LinkedHashMap<>();
        for (String k : List.of("floor background", "ours background", "ours capped")) {
            lag.put(k, new Samples(k + ": touching began after the transfer started", "ms"));
        }
        try (TouchRig rig = new TouchRig(c.stubsDir(), c.workDir(), say)) {
            for (int round0 = 0; round0 < c.warmups() + c.repeat(); round0++) {
                final int i = round0 < c.warmups() ? 0 : round0 - c.warmups() + 1; // 0: a warm-up round
                Map<String, Histogram> round = new LinkedHashMap<>();
                for (String[] v : VARIANTS) {
                    String k = v[0] + " " + v[1];
                    TouchSpec s = base.withBackground(!v[1].equals("idle"))
                            .withBackgroundCap(v[1].equals("capped") ? (long) CAP_MIB_PER_SECOND << 20 : 0);
                    if (i == 0 && c.fullWarmup()) { // warm-up: four times the touches, so the fault path reaches C2 in it
                        s = s.withTouches(Math.min(s.pages(), s.touches() * WARMUP_TOUCHES_FACTOR));
                    }
                    if (i == 0 && !c.fullWarmup() && s.background()) {
                        continue;
                    }
                    TouchRun r = rig.run(v[0], s);
                    TouchBenches.check(r);
                    Histogram h = r.faultHistogram();
                    if (h.getTotalCount() == 0 && !s.background()) {
                        throw new BenchFailure(k + ": no touch faulted (" + r.toucher().touches() + " touches)");
                    }
                    say.accept(String.format(Locale.ROOT, "%s round %d %-17s %s; %d of %d touches faulted: p50 %.1f p99 %.1f p99.9 %.1f µs",
                            i == 0 ? "warm-up " : "measured", i, k, s.describe(), r.faultedTouches(), r.toucher().touches(),
                            Reports.micros(h, 50), Reports.micros(h, 99), Reports.micros(h, 99.9))
                            + String.format(Locale.ROOT, "; this JVM meanwhile: %d GCs (%d ms), JIT %d ms", r.jvm().gcCount(),
                            r.jvm().gcMillis(), r.jvm().jitMillis())
                            + "; " + r.detail());
                    if (v[0].equals("ours")) {
                        lastDetail = r.detail();
                    }
                    if (i == 0) {
                        continue;
                    }
                    if (s.background()) {
                        lag.get(k).add(r.touchLagNanos() / 1e6);
                    }
                    if (r.kernelMillis() >= 0) {
                        kernelMs.get(k).add(r.kernelMillis());
                    }
                    Samples[] j = jvm.get(k);
                    j[0].add(r.jvm().gcCount());
                    j[1].add(r.jvm().gcMillis());
                    if (r.jvm().jitMillis() >= 0) {
                        j[2].add(r.jvm().jitMillis());
                    }
                    if (h.getTotalCount() == 0) { // the background brought every touched page first
                        unmeasured.merge(k, 1, Integer::sum);
                        hits.get(k).add(r.toucher().touches());
                        continue;
                    }
                    round.put(k, h);
                    TouchBenches.addPercentiles(pct.get(k), h);
                    hits.get(k).add(r.toucher().touches() - r.faultedTouches());
                    merged.get(k).add(h);
                }
                if (i > 0) {
                    addRatio(ratio[0], round, "ours idle", "floor idle", 50);
                    addRatio(ratio[1], round, "ours idle", "floor idle", 99);
                    addRatio(ratio[2], round, "ours idle", "floor idle", 99.9);
                    addRatio(ratio[3], round, "ours background", "floor background", 50);
                    addRatio(ratio[4], round, "ours background", "floor background", 99);
                    addRatio(ratio[5], round, "ours background", "ours idle", 99);
                    addRatio(ratio[6], round, "ours capped", "ours idle", 99);
                }
            }
        }
        SuiteResult res = new SuiteResult();
        res.chart("fault-latency", "Fault latency percentile distribution (faulted touches)", "percentile", "latency (µs)");
        for (String k : pct.keySet()) {
            for (Samples s : pct.get(k)) {
                if (s.count() > 0) {
                    res.row("fault latency (µs, faulted touches)", s);
                }
            }
            res.histogram("fault-latency", k, merged.get(k));
        }
        hits.values().forEach(s -> res.row("touches that found the page in (of " + c.touches() + ")", s));
        lag.values().stream().filter(s -> s.count() > 0).forEach(s -> res.row("the background transfer", s));
        for (Samples[] j : jvm.values()) {
            for (Samples s : j) {
                if (s.count() > 0) {
                    res.row("this JVM during the touches (ours runs in it; the floor only shares its CPUs)", s);
                }
            }
        }
        for (Samples s : kernelMs.values()) {
            if (s.count() > 0) {
                res.row("the kernel's own threads during the touches (10 ms ticks; they hold a CPU until they are done)", s);
            }
        }
        for (Samples s : ratio) {
            if (s.count() > 0) {
                res.row("ratios per round", s);
            }
        }
        double p50 = medianRatio(pct, "ours idle", "floor idle", "p50");
        double p99 = medianRatio(pct, "ours idle", "floor idle", "p99");
        double p999 = medianRatio(pct, "ours idle", "floor idle", "p99.9");
        double bg = medianRatio(pct, "ours background", "ours idle", "p99");
        double capped = medianRatio(pct, "ours capped", "ours idle", "p99");
        res.ratio("fault p50 ours/floor (idle)", p50, 1.25, true);
        res.ratio("fault p99 ours/floor (idle)", p99, 2.0, true);
        if (!Double.isNaN(bg)) {
            res.ratio("fault p99 ours with background / ours idle", bg, 1.5, true);
        }
        if (!Double.isNaN(capped)) {
            res.ratio("fault p99 ours with background capped at " + CAP_MIB_PER_SECOND + " MiB/s / ours idle", capped, 1.5, true);
        }
        unmeasured.forEach((k, n) -> res.note(k + ": in " + n + " of " + c.repeat() + " rounds the background transfer brought "
                + "every touched page before its touch (no fault to measure)" + (pct.get(k)[0].count() == 0
                ? "; no round measured, so its ratios are missing: a larger region (--size-mib) keeps the transfer running longer" : "")));
        res.note(String.format(Locale.ROOT, "fault p99.9 ours/floor (idle, medians): %.2f (no target; a handful of touches per run, "
                + "mostly scheduling noise on this machine)", p999));
        res.note(String.format(Locale.ROOT, "%d MiB region, %d random touches per run at one every %d µs (a fixed rate: recorded with "
                + "that expected interval against coordinated omission), %d warm-up round(s) discarded, %d measured rounds; "
                + "latency is taken by the toucher around the load that faults; touches under %d µs found the page in already "
                + "(background) and are left out of the percentiles (counted in their own table)", c.pages() >> 8, c.touches(),
                c.intervalMicros(), c.warmups(), c.repeat(), TouchRun.HIT_NANOS / 1000));
        res.note("ours: the toucher dumped lazily, served by our PageServer from the frozen original over loopback TCP, "
                + "restored lazily (RemoteLazySource, LazyPageServer with the engine's default prefetch); floor: floor-server "
                + "and the toucher's own uffd fault thread (blocking I/O, one page per fault)");
        res.note("ours capped: ours with the background held to " + CAP_MIB_PER_SECOND + " MiB/s (lazy-dump migrate "
                + "--max-postcopy-bandwidth), which then gives way to the faults: 64 KiB requests paced to the cap, faults ask "
                + "for their page alone, the fault loop copies no background pages and a fault does not wait for a background "
                + "read. Not the default: without "
                + "a cap the transfer ends sooner, and until it ends the process depends on the source");
        res.note("this JVM during the touches: collections, their time and JIT compilation from the first touch to the last; "
                + "a round with a collection or with compiles in it has its p99 raised by them (each stall is charged for the "
                + "touches it held up), so read the p99 rows beside these");
        res.note(TouchRig.QUIET_NOTE);
        res.note("machine: " + machine + "; other work on the machine shares its CPUs: p99 and above are noisy, compare ratios "
                + "within one run");
        res.put("config", Map.of("pages", c.pages(), "touches", c.touches(), "interval_us", c.intervalMicros(), "repeat",
                c.repeat(), "warmup_rounds", c.warmups(), "seed", c.seed()));
        res.put("last_ours_run", lastDetail);
        return res;
    }

    /** a's percentile over b's in one round, when both faulted. */
    private static void addRatio(Samples to, Map<String, Histogram> round, String a, String b, double percentile) {
        if (round.containsKey(a) && round.containsKey(b)) {
            to.add(Reports.micros(round.get(a), percentile) / Reports.micros(round.get(b), percentile));
        }
    }

    /** a's median percentile over b's; NaN when either was never measured. */
    private static double medianRatio(Map<String, Samples[]> pct, String a, String b, String percentile) {
        Samples x = TouchBenches.row(pct.get(a), percentile);
        Samples y = TouchBenches.row(pct.get(b), percentile);
        return x.count() == 0 || y.count() == 0 ? Double.NaN : Reports.medianRatio(x, y);
    }
}
