package dev.lazypages.dump;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.dump.ConvergencePolicy.Decision;
import dev.lazypages.dump.ConvergencePolicy.Limits;
import dev.lazypages.dump.ConvergencePolicy.Round;
import org.junit.jupiter.api.Test;

/** The stopping rules on synthetic round sequences. */
class ConvergencePolicyTest {
    private static final int PS = 4096;
    /** 100 MiB/s. */
    private static final long BW = 100L << 20;

    /** A round that sent {@code pages} at 100 MiB/s. */
    private static Round round(int n, long pages, long dirtyBefore) {
        long bytes = pages * PS;
        return new Round(n, pages, 0, bytes, bytes * 1_000_000_000L / BW, 0, 0, dirtyBefore, 0);
    }

    @Test
    void stopsWhenTheGoalShareOfLastRoundsPagesStayedClean() {
        ConvergencePolicy p = new ConvergencePolicy(new Limits(10, 70, 0), PS);
        p.recordRound(round(1, 10_000, 10_000));
        Decision d = p.decide(3_001); // 69.99 % clean
        assertFalse(d.stop(), d.toString());
        p.recordRound(round(2, 3_001, 3_001));
        d = p.decide(900); // 70.01 % clean
        assertTrue(d.stop());
        assertEquals(ConvergencePolicy.GOAL_REACHED, d.reason(), d.detail());
    }

    @Test
    void goalIsExactlyLxdsRule() {
        ConvergencePolicy p = new ConvergencePolicy(new Limits(10, 70, 0), PS);
        p.recordRound(round(1, 1000, 1000));
        assertTrue(p.decide(300).stop(), "1 - 300/1000 = 70 % meets a 70 % goal");
    }

    @Test
    void stopsWhenThePredictedFinalRoundFitsTheDowntimeLimit() {
        // 100 MiB/s: 25600 pages (100 MiB) take 1000 ms, 2560 pages 100 ms
        ConvergencePolicy p = new ConvergencePolicy(new Limits(10, 99, 150), PS);
        p.recordRound(round(1, 100_000, 100_000));
        Decision d = p.decide(25_600);
        assertFalse(d.stop(), d.toString());
        assertEquals(1000.0, d.predictedMillis(), 1.0);
        p.recordRound(round(2, 25_600, 25_600));
        d = p.decide(2_560);
        assertTrue(d.stop());
        assertEquals(ConvergencePolicy.DOWNTIME_LIMIT, d.reason(), d.detail());
        assertEquals(100.0, d.predictedMillis(), 1.0);
    }

    @Test
    void downtimeRuleIsOffByDefault() {
        ConvergencePolicy p = new ConvergencePolicy(new Limits(10, 99, 0), PS);
        p.recordRound(round(1, 100_000, 100_000));
        assertFalse(p.decide(10).stop() && !p.lastDecision().reason().equals(ConvergencePolicy.GOAL_REACHED));
        p = new ConvergencePolicy(new Limits(10, 100, 0), PS);
        p.recordRound(round(1, 100_000, 100_000));
        assertFalse(p.decide(10).stop(), "10 pages left take 0.4 ms but no limit was given");
    }

    @Test
    void stopsAfterMaxIterations() {
        ConvergencePolicy p = new ConvergencePolicy(new Limits(3, 90, 0), PS);
        long dirty = 10_000;
        for (int n = 1; n <= 3; n++) {
            p.recordRound(round(n, dirty, dirty));
            dirty = dirty / 2; // 50 % clean: shrinking, never the goal
            Decision d = p.decide(dirty);
            assertEquals(n == 3, d.stop(), "after round " + n + ": " + d);
            if (d.stop()) {
                assertEquals(ConvergencePolicy.MAX_ITERATIONS, d.reason());
            }
        }
        assertEquals(3, p.rounds().size());
    }

    @Test
    void stopsWhenTheDirtySetStopsShrinking() {
        ConvergencePolicy p = new ConvergencePolicy(new Limits(10, 70, 0), PS);
        p.recordRound(round(1, 10_000, 10_000));
        assertFalse(p.decide(8_000).stop());
        p.recordRound(round(2, 8_000, 8_000));
        assertFalse(p.decide(8_000).stop(), "one stalled round is not enough");
        p.recordRound(round(3, 8_000, 8_000));
        Decision d = p.decide(7_900);
        assertTrue(d.stop());
        assertEquals(ConvergencePolicy.NO_PROGRESS, d.reason(), d.detail());
    }

    @Test
    void aCleanProcessReachesTheGoalAtOnce() {
        ConvergencePolicy p = new ConvergencePolicy(Limits.defaults(), PS);
        p.recordRound(round(1, 65_536, 65_536));
        Decision d = p.decide(0);
        assertTrue(d.stop());
        assertEquals(ConvergencePolicy.GOAL_REACHED, d.reason());
        assertEquals(0.0, d.predictedMillis());
    }

    @Test
    void refusesNonsenseLimits() {
        assertThrows(IllegalArgumentException.class, () -> new Limits(0, 70, 0));
        assertThrows(IllegalArgumentException.class, () -> new Limits(1, 101, 0));
        assertThrows(IllegalArgumentException.class, () -> new Limits(1, 70, -1));
    }

    @Test
    void roundRecordsReportRatesInMebibytes() {
        Round r = new Round(2, 256, 1000, 256L * PS, 10_000_000, 0, 500_000, 256, 4096);
        var m = r.toMap(PS);
        assertEquals(1.0, m.get("mib"));
        assertEquals(16.0, m.get("dirty_mib_per_sec"));
        assertEquals(100.0, m.get("bandwidth_mib_per_sec"));
    }
}
