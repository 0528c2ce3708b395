package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteResult;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * One short real run of each benchmark (a few hundred faults, 1 measured round): the toucher
 * restored by our engine and run against the C floor, both measured, every touched page verified
 * (a bad page fails the run in {@link TouchBenches#check}), every figure positive.
 */
class TouchBenchesTest {
    private final List<String> progress = new ArrayList<>();

    @BeforeEach
    void needsRootPtraceAndUserfaultfd() {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
    }

    @Test
    void suiteListsTheThreeBenchmarksByFileSafeName() {
        List<String> names = TouchBenches.suite().stream().map(SuiteBench::name).toList();
        assertEquals(List.of("fault-latency", "postcopy-throughput", "delayed-link"), names);
    }

    @Test
    void faultLatencyMeasuresOursAndTheFloorIdleAndWithBackground() throws Exception {
        SuiteResult r = FaultLatencyBench.measure(new FaultLatencyBench.Config(32_768, 200, 100, 1, 42, null, null, true, 1), progress::add);
        Map<String, Double> medians = medians(r);
        for (String v : List.of("floor idle", "ours idle")) {
            for (String p : List.of("p50", "p99", "max")) {
                assertPositive(medians, v + " " + p);
            }
        }
        assertTrue(medians.get("ours idle p50") <= medians.get("ours idle p99"));
        assertEquals(5, r.histograms().size(), "floor and ours idle and with the background, ours with it capped");
        assertPositive(medians, "ours capped p50");
        assertTrue(progress.stream().anyMatch(l -> l.startsWith("measured round 1 ours capped") && l.contains("capped at 256 MiB/s")
                && l.contains("waiting for the bandwidth cap")), "the capped round's engine held its background to the cap: " + progress);
        assertTrue(progress.stream().anyMatch(l -> l.startsWith("warm-up ") && l.contains("ours capped")),
                "the capped variant warms up too: " + progress);
        SuiteResult.Ratio capped = ratio(r, "fault p99 ours with background capped at 256 MiB/s / ours idle");
        assertTrue(capped.value() > 0 && Double.isFinite(capped.value()) && capped.atMost(), capped.toString());
        assertEquals(1.5, capped.target());
        assertTrue(r.histograms().stream().filter(h -> h.label().endsWith("idle")).allMatch(h -> h.histogram().getTotalCount() >= 190),
                "idle runs fault on (nearly) every touch: " + r.histograms());
        SuiteResult.Ratio p50 = ratio(r, "fault p50 ours/floor (idle)");
        assertTrue(p50.value() > 0 && Double.isFinite(p50.value()), p50.toString());
        assertEquals(1.25, p50.target());
        assertTrue(progress.stream().anyMatch(l -> l.startsWith("warm-up ")), "a warm-up round ran: " + progress);
    }

    @Test
    void oursWithItsSourceInAJvmOfItsOwnServesEveryTouchAndBringsEveryPageIn() throws Exception {
        System.setProperty(TouchRig.SOURCE_JVM_PROPERTY, "true");
        TouchRun r;
        try (TouchRig rig = new TouchRig(null, null, progress::add)) {
            r = rig.run("ours", new TouchSpec(4096, 100, true, 7, 0, true, true, java.time.Duration.ZERO));
        } finally {
            System.clearProperty(TouchRig.SOURCE_JVM_PROPERTY);
        }
        TouchBenches.check(r);
        assertEquals(100, r.toucher().touches());
        assertTrue(r.allInNanos() > 0 && r.bytesIn() >= 4096L * 4096, "every page in: " + r.bytesIn() + " bytes");
        assertTrue(r.detail().contains("source JVM "), "the source ran in its own JVM: " + r.detail());
        assertFalse(r.detail().contains("source JVM -1"), "its CPU time was read while it ran: " + r.detail());
        assertFalse(r.progress().isEmpty(), "pages in over time, counted at the destination");
    }

    @Test
    void throughputBringsEveryPageInForBothPipelinesAndEachAccess() throws Exception {
        SuiteResult r = ThroughputBench.measure(new ThroughputBench.Config(8_192, 1, 42, null, null, false, 1), progress::add);
        Map<String, Double> medians = medians(r);
        for (String a : ThroughputBench.accessPatterns()) {
            assertPositive(medians, "floor " + a + ": until every page is in");
            assertPositive(medians, "ours " + a + ": until every page is in");
            assertPositive(medians, a + ": ours/floor MiB/s");
        }
        assertEquals(6, r.series().size());
        assertTrue(r.series().stream().allMatch(s -> !s.points().isEmpty() && s.points().stream().allMatch(p -> p[1] >= 0)),
                "a transfer-rate series per variant");
        assertNotNull(r.charts().get("postcopy-rate"));
        assertTrue(r.ratios().stream().allMatch(x -> x.value() > 0 && !x.atMost()), r.ratios().toString());
    }

    @Test
    void delayedLinkMakesEveryFaultWaitForTwoOneWayDelays() throws Exception {
        SuiteResult r = DelayedLinkBench.measure(new DelayedLinkBench.Config(List.of(3), 2_048, 20, List.of("sequential"), 1, 42,
                null, null, false), progress::add);
        Map<String, Double> medians = medians(r);
        for (String v : List.of("floor", "ours prefetch on", "ours prefetch off")) {
            double p50 = medians.get("3 ms " + v + " p50");
            assertTrue(p50 >= 6_000, v + ": p50 " + p50 + " µs, a fault crosses the 3 ms link twice");
            assertPositive(medians, "3 ms " + v + " sequential: until every page is in");
        }
        assertTrue(r.extra().containsKey("prefetch_property_read_by_engine"));
        assertNull(System.getProperty(TouchRig.PREFETCH_PROPERTY), "the prefetch switch is put back for the benchmarks after it");
        assertFalse(r.notes().isEmpty());
    }

    private static Map<String, Double> medians(SuiteResult r) {
        return r.tables().values().stream().flatMap(List::stream).collect(Collectors.toMap(Samples::name, Samples::median));
    }

    private static void assertPositive(Map<String, Double> medians, String name) {
        Double v = medians.get(name);
        assertNotNull(v, "no row '" + name + "' in " + medians.keySet());
        assertTrue(v > 0 && Double.isFinite(v), name + " = " + v);
    }

    private static SuiteResult.Ratio ratio(SuiteResult r, String name) {
        return r.ratios().stream().filter(x -> x.name().equals(name)).findFirst().orElseThrow(() -> new AssertionError(
                "no ratio '" + name + "' in " + r.ratios()));
    }
}
