package dev.lazypages.lazy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class PacerTest {
    private static final long MIB = 1 << 20;

    @Test
    void requestsBackToBackAreSpacedByTheirShareOfTheRate() {
        Pacer p = new Pacer(256 * MIB, 0); // 256 KiB take 1/1024 s
        long now = 0;
        long waited = 0;
        for (int i = 0; i < 1024; i++) { // 256 MiB, each request issued as soon as allowed
            long w = p.reserve(256 << 10, now);
            waited += w;
            now += w;
        }
        // one second's worth, less the one request the start may go ahead with
        assertEquals(1_000_000_000L - 976_562, now, 1_000);
        assertEquals(now, waited);
    }

    @Test
    void unusedTimeIsCreditedForAtMostTheBurst() {
        Pacer p = new Pacer(MIB, 0); // 1 MiB/s: 1 KiB takes 976.6 µs
        long idle = 10_000_000_000L; // ten seconds without a request
        assertEquals(0, p.reserve(1024, idle)); // starts 1 ms early on credit: its time ends at idle - 23 µs
        assertEquals(0, p.reserve(1024, idle)); // the rest of the credit
        long w = p.reserve(1024, idle); // the credit is spent: waits its predecessor's share
        assertEquals(2 * 976_562 - Pacer.BURST_NANOS, w, 1);
    }

    @Test
    void aRequestLaterThanItsTurnWaitsNothingAndPushesTheNextOne() {
        Pacer p = new Pacer(1_000_000_000L, 0); // 1 byte per ns: 10 MB take 10 ms
        assertEquals(0, p.reserve(10_000_000, 0));
        assertEquals(5_000_000, p.reserve(10_000_000, 5_000_000)); // the first's 10 ms are not over
        assertEquals(0, p.reserve(10_000_000, 50_000_000)); // late: starts at once (1 ms of credit: its time ends at 59 ms)
        assertEquals(9_000_000, p.reserve(10_000_000, 50_000_000)); // after the one before
    }

    @Test
    void largeRequestsDoNotOverflow() {
        Pacer p = new Pacer(1, 0);
        assertEquals(Long.MAX_VALUE / 2 / 1_000_000_000L * 1_000_000_000L, p.nanosFor(Long.MAX_VALUE / 2 / 1_000_000_000L), 0);
        assertEquals(4e18, p.nanosFor(4_000_000_000L), 1e6); // past Long.MAX_VALUE / 1e9 bytes: computed in doubles
    }

    @Test
    void aRateOfZeroOrLessIsRefused() {
        assertThrows(IllegalArgumentException.class, () -> new Pacer(0, 0));
        assertThrows(IllegalArgumentException.class, () -> new Pacer(-5, 0));
    }
}
