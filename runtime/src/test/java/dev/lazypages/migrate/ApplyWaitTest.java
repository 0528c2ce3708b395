package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import org.junit.jupiter.api.Test;

/** How long the source waits, before the freeze, for the destination to write the rounds. */
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
}
