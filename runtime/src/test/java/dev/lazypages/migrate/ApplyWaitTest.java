package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import org.junit.jupiter.api.Test;

/** How long the source waits, before the freeze, for the destination to write the rounds, and what follows the wait. */
class ApplyWaitTest {
    @Test
    void theWaitCoversEveryRoundNotYetReportedWritten() {
        // a 4 GiB first round sent in 2 s, a 0.4 s second round: the destination, still writing
        // round 1, gets twice both plus the slack, not twice the short round's
        assertEquals(2 * 2400 + 1000, MigrationSource.applyWaitMillis(List.of(2000.0, 400.0), 0));
        assertEquals(2 * 400 + 1000, MigrationSource.applyWaitMillis(List.of(2000.0, 400.0), 1),
                "round 1 reported written: only round 2 is waited for");
        assertEquals(1000, MigrationSource.applyWaitMillis(List.of(2000.0, 400.0), 2));
        assertEquals(2 * 2600 + 1000, MigrationSource.applyWaitMillis(List.of(2000.0, 400.0, 200.0), 0),
                "a catch-up round after a wait that timed out adds to the wait");
    }

    @Test
    void aDirtySetThatGrewWhileWaitingGetsACatchUpRoundWhateverThePolicySaid() {
        String noProgress = dev.lazypages.dump.ConvergencePolicy.NO_PROGRESS;
        String goal = dev.lazypages.dump.ConvergencePolicy.GOAL_REACHED;
        String max = dev.lazypages.dump.ConvergencePolicy.MAX_ITERATIONS;
        long big = 13_000; // 53 MiB of 4 KiB pages
        assertEquals(false, MigrationSource.catchUp(MigrationMode.HYBRID, noProgress, false, 2, 10, big, -1),
                "the process dirties as fast as rounds copy: no catch-up");
        assertEquals(true, MigrationSource.catchUp(MigrationMode.HYBRID, noProgress, true, 2, 10, big, -1),
                "the wait for the destination made it grow: catch up");
        assertEquals(true, MigrationSource.catchUp(MigrationMode.HYBRID, goal, false, 2, 10, big, -1));
        assertEquals(false, MigrationSource.catchUp(MigrationMode.HYBRID, max, true, 10, 10, big, -1), "the round limit holds");
        assertEquals(false, MigrationSource.catchUp(MigrationMode.HYBRID, goal, false, 3, 10, big, 20_000),
                "the last catch-up round did not halve it");
        assertEquals(true, MigrationSource.catchUp(MigrationMode.HYBRID, goal, true, 3, 10, big, 20_000),
                "not halved, but grown while the destination caught up: once more");
        assertEquals(false, MigrationSource.catchUp(MigrationMode.HYBRID, goal, true, 3, 10, 1000, -1), "small enough");
        assertEquals(false, MigrationSource.catchUp(MigrationMode.PRE_COPY, goal, true, 2, 10, big, -1), "hybrid only");
    }
}
