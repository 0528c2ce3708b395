package dev.lazypages.lazy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** The read/copy handshake between the fault thread's uffd reads and the copy sections of other threads. */
class CopyGateTest {
    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();

    @Test
    void aReadWaitsForTheCopyInFlightParkedAndGoesOnWhenItEnds() throws Exception {
        CopyGate g = new CopyGate();
        assertTrue(g.enterCopy(), "no read announced: the section starts");
        AtomicLong readCpuNanos = new AtomicLong(-1);
        AtomicLong returnedAt = new AtomicLong();
        Thread reader = Thread.ofPlatform().start(() -> {
            long cpu0 = THREADS.getCurrentThreadCpuTime();
            g.announceRead();
            returnedAt.set(System.nanoTime());
            readCpuNanos.set(THREADS.getCurrentThreadCpuTime() - cpu0);
            g.readDone();
        });
        Thread.sleep(200);
        assertTrue(reader.isAlive(), "the read waits while the section is in flight");
        assertEquals(Thread.State.TIMED_WAITING, reader.getState(), "parked, not polling");
        long left = System.nanoTime();
        g.leaveCopy();
        reader.join(5000);
        assertFalse(reader.isAlive());
        long after = TimeUnit.NANOSECONDS.toMillis(returnedAt.get() - left);
        assertTrue(after < 100, "the last section out wakes the read at once (took " + after + " ms)");
        assertTrue(readCpuNanos.get() < 50_000_000L, "waiting 200 ms cost the read thread "
                + readCpuNanos.get() / 1_000_000 + " ms of CPU: it spun");
        assertEquals(1, g.readsWaited());
        assertTrue(g.readWaitNanos() >= 150_000_000L, g.readWaitNanos() + " ns counted");
    }

    @Test
    void aReadWithNoCopyInFlightDoesNotWait() {
        CopyGate g = new CopyGate();
        g.announceRead();
        g.readDone();
        assertTrue(g.enterCopy());
        g.leaveCopy();
        g.announceRead();
        g.readDone();
        assertEquals(0, g.readsWaited());
        assertEquals(0, g.readWaitNanos());
    }

    @Test
    void aCopySectionWaitsWhileAReadIsAnnounced() throws Exception {
        CopyGate g = new CopyGate();
        g.announceRead();
        AtomicBoolean entered = new AtomicBoolean();
        CountDownLatch done = new CountDownLatch(1);
        Thread copier = Thread.ofPlatform().start(() -> {
            if (g.enterCopy()) {
                entered.set(true);
                g.leaveCopy();
            }
            done.countDown();
        });
        Thread.sleep(100);
        assertFalse(entered.get(), "no section starts during a read");
        g.readDone();
        assertTrue(done.await(5, TimeUnit.SECONDS));
        assertTrue(entered.get(), "it starts once the read is over");
        copier.join();
    }

    @Test
    void aClosedGateRefusesSectionsAndCloseWaitsForThoseInFlight() throws Exception {
        CopyGate g = new CopyGate();
        assertTrue(g.enterCopy());
        AtomicLong closedAt = new AtomicLong();
        Thread closer = Thread.ofPlatform().start(() -> {
            g.close();
            closedAt.set(System.nanoTime());
        });
        Thread.sleep(100);
        assertTrue(closer.isAlive(), "close waits for the section in flight");
        assertFalse(g.enterCopy(), "no new section once closing");
        long left = System.nanoTime();
        g.leaveCopy();
        closer.join(5000);
        assertFalse(closer.isAlive());
        assertTrue(closedAt.get() >= left);
        assertTrue(g.closed());
        assertFalse(g.enterCopy());
    }
}
