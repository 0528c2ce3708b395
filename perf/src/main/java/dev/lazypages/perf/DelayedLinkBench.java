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
 * {@code delayed-link}: the fault and throughput runs of {@link FaultLatencyBench} and
 * {@link ThroughputBench} over a link with a one-way delay (a {@link DelayProxy} on loopback:
 * this machine's kernel has no netem), ours with prefetch on and off, and the C floor (which
 * has no prefetch). Prefetch off means {@code LazyPageServer} prefetch pages 0 and
 * {@code -Dlazypages.prefetch=false} (a switch another part of the engine may read; the result
 * says whether any engine class names it). Fault runs touch random pages back to back with the
 * background off; throughput runs touch every page (sequential, random) with the background on.
 * One warm-up round (at the first delay), then {@code repeat} per delay.
 */
@Command(name = "delayed-link", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Fault latency and post-copy throughput over a link with one-way delay (a delaying TCP proxy on loopback),",
            "ours with prefetch on and off, against the C floor.",
            "",
            "Writes DIR/delayed-link.json, .md and one .hgrm per delay and variant."
        })
public final class DelayedLinkBench implements Callable<Integer>, SuiteBench {
    private static final String[] VARIANTS = {"floor", "ours prefetch on", "ours prefetch off"};

    /**
     * @param delaysMs     one-way delays
     * @param pages        region size in pages
     * @param faultTouches random pages touched per fault run
     * @param repeat       measured rounds per delay after one warm-up round
     * @param fullWarmup   the warm-up round runs the throughput runs too; else only the fault runs
     */
    record Config(List<Integer> delaysMs, int pages, int faultTouches, List<String> access, int repeat, long seed, Path stubsDir,
                  Path workDir, boolean fullWarmup) {
        static Config full() {
            return new Config(List.of(1, 10), 16_384, 200, List.of("sequential", "random"), 3, 42, null, null, true);
        }

        static Config quick() {
            return new Config(List.of(1, 10), 2_048, 16, List.of("sequential"), 1, 42, null, null, false);
        }
    }

    @Mixin
    private TouchBenches.CommonOptions common;

    @Option(names = "--delays-ms", defaultValue = "1,10", paramLabel = "MS,MS...", description = "One-way delays (default ${DEFAULT-VALUE}).")
    private String delays;

    @Option(names = "--size-mib", defaultValue = "64", description = "Region size in MiB (default ${DEFAULT-VALUE}).")
    private int sizeMib;

    @Option(names = "--touches", defaultValue = "200", description = "Random pages touched per fault run (default ${DEFAULT-VALUE}).")
    private int touches;

    @Option(names = "--repeat", defaultValue = "3", description = "Measured rounds per delay, after one warm-up round (default ${DEFAULT-VALUE}).")
    private int repeat;

    @Override
    public String name() {
        return "delayed-link";
    }

    @Override
    public String title() {
        return "Delayed link: fault latency and throughput with 1 and 10 ms one-way delay, prefetch on and off";
    }

    @Override
    public SuiteResult run(SuiteContext ctx) throws Exception {
        return measure(ctx.quick() ? Config.quick() : Config.full(), ctx.progress());
    }

    @Override
    public Integer call() throws Exception {
        List<Integer> d = Reports.nonNegativeInts(delays);
        if (sizeMib < 1 || touches < 1 || repeat < 1) {
            throw new IllegalArgumentException("--size-mib, --touches and --repeat must be at least 1");
        }
        Config q = Config.quick();
        Config c = common.quick ? new Config(d, q.pages(), q.faultTouches(), q.access(), q.repeat(), 42, common.stubsDir, common.workDir, false)
                : new Config(d, sizeMib * 256, touches, Config.full().access(), repeat, 42, common.stubsDir, common.workDir, true);
        if (c.faultTouches() > c.pages()) {
            throw new IllegalArgumentException("--touches must not exceed the region's pages (" + c.pages() + ")");
        }
        return common.run(this, say -> measure(c, say));
    }

    private static String pipeline(String variant) {
        return variant.startsWith("ours") ? "ours" : "floor";
    }

    private static TouchSpec variant(TouchSpec s, String variant) {
        return s.withPrefetch(!variant.endsWith("prefetch off"));
    }

    static SuiteResult measure(Config c, Consumer<String> say) throws Exception {
        Features.ptrace().ensureAvailable();
        Features.userfaultfd().ensureAvailable();
        String machine = TouchBenches.machine();
        boolean propertyRead = TouchBenches.engineReadsPrefetchProperty();
        SuiteResult res = new SuiteResult();
        Map<String, Double> prefetchEffect = new LinkedHashMap<>();
        try (TouchRig rig = new TouchRig(c.stubsDir(), c.workDir(), say)) {
            for (int d : c.delaysMs()) {
                Duration delay = Duration.ofMillis(d);
                String tag = d + " ms";
                Map<String, Samples[]> fault = new LinkedHashMap<>();
                Map<String, Histogram> merged = new LinkedHashMap<>();
                Map<String, Samples> mibps = new LinkedHashMap<>();
                Map<String, TouchRun> last = new LinkedHashMap<>();
                for (String v : VARIANTS) {
                    fault.put(v, TouchBenches.percentileRows(tag + " " + v));
                    merged.put(v, new Histogram(3));
                    for (String a : c.access()) {
                        mibps.put(v + " " + a, new Samples(tag + " " + v + " " + a + ": until every page is in", "MiB/s"));
                    }
                }
                TouchSpec faults = new TouchSpec(c.pages(), c.faultTouches(), true, c.seed(), 0, false, true, delay);
                // one warm-up round, at the first delay only (the JVM and the proxy code are warm after it)
                for (int i = d == c.delaysMs().getFirst() ? 0 : 1; i <= c.repeat(); i++) {
                    String round = (i == 0 ? "warm-up " : "measured") + " " + tag + " round " + i;
                    for (String v : VARIANTS) {
                        TouchSpec s = variant(faults, v);
                        TouchRun r = rig.run(pipeline(v), s);
                        TouchBenches.check(r);
                        Histogram h = r.faultHistogram();
                        say.accept(String.format(Locale.ROOT, "%s fault %-17s %s: %d faulted, p50 %.0f p99 %.0f µs", round, v,
                                s.describe(), r.faultedTouches(), Reports.micros(h, 50), Reports.micros(h, 99)));
                        if (i > 0) {
                            TouchBenches.addPercentiles(fault.get(v), h);
                            merged.get(v).add(h);
                        }
                    }
                    for (String a : c.access()) {
                        if (i == 0 && !c.fullWarmup()) {
                            break;
                        }
                        for (String v : VARIANTS) {
                            TouchSpec s = variant(ThroughputBench.spec(c.pages(), a, c.seed(), delay), v);
                            TouchRun r = rig.run(pipeline(v), s);
                            TouchBenches.check(r);
                            say.accept(String.format(Locale.ROOT, "%s %s %-17s %s: %.1f MiB/s, %d of %d touches faulted", round, a, v,
                                    s.describe(), r.throughputMiBps(), r.faultedTouches(), r.toucher().touches()));
                            if (i > 0) {
                                mibps.get(v + " " + a).add(r.throughputMiBps());
                                last.put(v + " " + a, r);
                            }
                        }
                    }
                }
                String chart = "fault-latency-" + d + "ms";
                res.chart(chart, "Fault latency with " + tag + " one-way delay", "percentile", "latency (µs)");
                for (String v : VARIANTS) {
                    for (Samples s : fault.get(v)) {
                        res.row("fault latency (µs), " + tag + " one-way", s);
                    }
                    res.histogram(chart, tag + " " + v, merged.get(v));
                }
                mibps.values().forEach(s -> res.row("throughput (MiB/s), " + tag + " one-way", s));
                String rate = "postcopy-rate-" + d + "ms";
                res.chart(rate, "Post-copy transfer rate over time, " + tag + " one-way delay (last measured run)",
                        "time since the transfer started (ms)", "MiB/s (10 ms intervals)");
                last.forEach((k, r) -> res.series(rate, k, r.rateSeries(10)));
                prefetchEffect.put(tag + " fault p50 off/on", TouchBenches.row(fault.get("ours prefetch off"), "p50").median()
                        / TouchBenches.row(fault.get("ours prefetch on"), "p50").median());
                for (String a : c.access()) {
                    prefetchEffect.put(tag + " " + a + " MiB/s off/on", mibps.get("ours prefetch off " + a).median()
                            / mibps.get("ours prefetch on " + a).median());
                }
            }
        }
        StringBuilder eff = new StringBuilder();
        prefetchEffect.forEach((k, v) -> eff.append(eff.isEmpty() ? "" : ", ").append(String.format(Locale.ROOT, "%s %.2f", k, v)));
        res.note("prefetch off = LazyPageServer prefetch pages 0 (on: the engine's default) and -D" + TouchRig.PREFETCH_PROPERTY
                + "=false; " + (propertyRead ? "an engine class names that property, so it may have had an effect"
                : "no engine class names that property in this build, so the property itself had no effect here")
                + "; measured ours off/on (medians): " + eff);
        res.note(String.format(Locale.ROOT, "%d MiB region; fault runs: %d random touches back to back, background off; throughput "
                + "runs: every page touched back to back, background on; every TCP connection of both pipelines through a "
                + "delaying proxy on loopback (each chunk held for the delay in each direction, order kept, no bandwidth limit); "
                + "1 warm-up round (at the first delay) discarded, %d measured rounds per delay", c.pages() >> 8, c.faultTouches(),
                c.repeat()));
        res.note("machine: " + machine + "; the proxy's timers add up to ~0.1 ms to each delay; fault latency is at least "
                + "twice the one-way delay");
        res.put("config", Map.of("delays_ms", c.delaysMs(), "pages", c.pages(), "fault_touches", c.faultTouches(), "repeat",
                c.repeat(), "warmup_rounds", 1, "access", c.access(), "seed", c.seed()));
        res.put("prefetch_property", TouchRig.PREFETCH_PROPERTY);
        res.put("prefetch_property_read_by_engine", propertyRead);
        Map<String, Object> e = new LinkedHashMap<>();
        prefetchEffect.forEach((k, v) -> e.put(k, Samples.round(v)));
        res.put("prefetch_effect_off_over_on", e);
        return res;
    }
}
