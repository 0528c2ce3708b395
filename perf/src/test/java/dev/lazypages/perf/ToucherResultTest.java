package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;

class ToucherResultTest {
    private static final String HEAD = """
            toucher 1
            mode floor
            pages 16
            touches 3
            order random
            interval_us 100
            seed 7
            bad_pages 0
            first_bad -1
            touch_ns 900000
            touch_start_ns 5000000
            transfer_start_ns 4000000
            all_in_ns 2500000
            fault_pages 3
            bulk_pages 13
            """;

    private static final String OUTPUT = HEAD + """
            latencies 3
            25000
            900
            350000
            progress 2
            2000000 10
            4000000 16
            end
            """;

    @Test
    void parsesEveryFieldOfAFloorRun() {
        ToucherResult r = ToucherResult.parse(OUTPUT);
        assertEquals("floor", r.mode());
        assertEquals(16, r.pages());
        assertEquals(3, r.touches());
        assertEquals("random", r.order());
        assertEquals(100, r.intervalMicros());
        assertEquals(7, r.seed());
        assertTrue(r.verified());
        assertEquals(900_000, r.touchNanos());
        assertEquals(5_000_000, r.touchStartNanos());
        assertEquals(4_000_000, r.transferStartNanos());
        assertEquals(2_500_000, r.allInNanos());
        assertEquals(3, r.faultPages());
        assertEquals(13, r.bulkPages());
        assertArrayEquals(new long[] {25_000, 900, 350_000}, r.latencies());
        assertEquals(2, r.progress().size());
        assertArrayEquals(new long[] {4_000_000, 16}, r.progress().get(1));
    }

    @Test
    void badPagesMeanNotVerified() {
        ToucherResult r = ToucherResult.parse(OUTPUT.replace("bad_pages 0", "bad_pages 2").replace("first_bad -1", "first_bad 5"));
        assertFalse(r.verified());
        assertEquals(5, r.firstBad());
    }

    @Test
    void refusesTruncatedOrInconsistentOutputNamingTheLine() {
        refused("memtouch 1\n", "not a toucher output");
        refused(OUTPUT.substring(0, OUTPUT.indexOf("progress")), "ends early");
        refused(OUTPUT.replace("touches 3", "touches 4"), "touches 4 but 3 latencies");
        refused(OUTPUT.replace("\n900\n", "\nnine\n"), "line 18: not a number");
        refused(OUTPUT.replace("mode floor\n", ""), "no 'mode' line");
        refused(OUTPUT.replace("end\n", "more\n"), "expected 'end'");
    }

    private static void refused(String text, String why) {
        String m = assertThrows(IllegalArgumentException.class, () -> ToucherResult.parse(text)).getMessage();
        assertTrue(m.contains(why), "message '" + m + "' should say '" + why + "'");
    }

    @Test
    void aRunWithBadPagesOrMissingTouchesFailsTheBenchmark() {
        TouchSpec spec = new TouchSpec(16, 3, true, 7, 100, false, true, java.time.Duration.ZERO);
        TouchBenches.check(new TouchRun("floor", spec, ToucherResult.parse(OUTPUT), 0, -1, 0, java.util.List.of(), "", null, -1));
        ToucherResult bad = ToucherResult.parse(OUTPUT.replace("bad_pages 0", "bad_pages 1").replace("first_bad -1", "first_bad 9"));
        BenchFailure f = assertThrows(BenchFailure.class,
                () -> TouchBenches.check(new TouchRun("ours", spec, bad, 0, -1, 0, java.util.List.of(), "", null, -1)));
        assertTrue(f.getMessage().contains("1 touched pages did not hold the pattern (first: page 9)"), f.getMessage());
        TouchSpec more = new TouchSpec(16, 4, true, 7, 100, false, true, java.time.Duration.ZERO);
        assertThrows(BenchFailure.class, () -> TouchBenches.check(new TouchRun("ours", more, ToucherResult.parse(OUTPUT), 0, -1, 0,
                java.util.List.of(), "", null, -1)));
        TouchSpec background = spec.withBackground(true);
        assertThrows(BenchFailure.class, () -> TouchBenches.check(new TouchRun("ours", background, ToucherResult.parse(OUTPUT), 0,
                -1, 0, java.util.List.of(), "", null, -1)), "a background run must have measured a complete transfer");
    }

    @Test
    void faultHistogramLeavesOutHitsAndCorrectsForTheFixedRate() {
        TouchSpec spec = new TouchSpec(16, 3, true, 7, 100, false, true, java.time.Duration.ZERO);
        TouchRun run = new TouchRun("floor", spec, ToucherResult.parse(OUTPUT), 0, -1, 1_000_000, java.util.List.of(), "", null, -1);
        assertEquals(2, run.faultedTouches());
        Histogram h = run.faultHistogram();
        // 25 µs once; 350 µs at a 100 µs interval also stands for the touches it held up (250, 150 µs)
        assertEquals(4, h.getTotalCount());
        assertEquals(25_000, h.getMinValue(), 25);
        assertEquals(350_000, h.getMaxValue(), 350);
    }

    @Test
    void rateSeriesIsTheSlopeOfBytesIn() {
        double mib = 1048576.0;
        TouchRun run = run(java.util.List.of(new double[] {0, 0}, new double[] {5, mib}, new double[] {10, 3 * mib},
                new double[] {20, 4 * mib}, new double[] {60, 8 * mib}), 8 << 20, 60_000_000);
        var s = run.rateSeries(10);
        assertEquals(3, s.size());
        assertArrayEquals(new double[] {10, 300}, s.get(0), 1e-9); // 3 MiB in the first 10 ms
        assertArrayEquals(new double[] {20, 100}, s.get(1), 1e-9);
        assertArrayEquals(new double[] {60, 100}, s.get(2), 1e-9); // 4 MiB in 40 ms
        assertEquals(8 / 0.06, run.throughputMiBps(), 1e-9);
        // a transfer shorter than the interval still gets a curve (steps of a fifth of it)
        var fast = run(java.util.List.of(new double[] {0, 0}, new double[] {2, mib}, new double[] {4, 2 * mib}), 2 << 20, 4_000_000)
                .rateSeries(10);
        assertEquals(2, fast.size());
        assertArrayEquals(new double[] {4, 500}, fast.get(1), 1e-9);
    }

    private static TouchRun run(java.util.List<double[]> progress, long bytes, long nanos) {
        TouchSpec spec = new TouchSpec(16, 3, true, 7, 0, true, true, java.time.Duration.ZERO);
        return new TouchRun("ours", spec, ToucherResult.parse(OUTPUT), bytes, nanos, 0, progress, "", null, -1);
    }
}
