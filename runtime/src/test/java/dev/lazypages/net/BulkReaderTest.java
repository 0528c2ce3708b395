package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/** The page server's bulk thread: a lock-free hand-over from several producers, in order per producer. */
class BulkReaderTest {
    @Test
    void everyTaskOfFourProducersRunsOnceInTheirOrderAcrossIdleParks() throws Exception {
        BulkReader r = new BulkReader("bulk-test");
        int producers = 4;
        int perProducer = 50_000;
        int[] last = new int[producers];
        java.util.Arrays.fill(last, -1);
        AtomicInteger ran = new AtomicInteger();
        AtomicReference<String> wrong = new AtomicReference<>();
        Thread[] ts = new Thread[producers];
        for (int p = 0; p < producers; p++) {
            int id = p;
            ts[p] = Thread.ofPlatform().start(() -> {
                for (int i = 0; i < perProducer; i++) {
                    int seq = i;
                    r.execute(() -> { // only the bulk thread touches last[]
                        if (last[id] != seq - 1) {
                            wrong.compareAndSet(null, "producer " + id + ": task " + seq + " after " + last[id]);
                        }
                        last[id] = seq;
                        ran.incrementAndGet();
                    });
                    if (i % 5000 == 0) {
                        java.util.concurrent.locks.LockSupport.parkNanos(2_000_000); // let the thread go idle and park
                    }
                }
            });
        }
        for (Thread t : ts) {
            t.join();
        }
        r.shutdown(false); // what is queued still runs
        assertTrue(r.awaitTermination(20_000));
        assertNull(wrong.get());
        assertEquals(producers * perProducer, ran.get());
        assertThrows(RejectedExecutionException.class, () -> r.execute(() -> { }));
    }

    @Test
    void shutdownNowDropsWhatIsQueuedAndATaskThatThrowsDoesNotStopTheThread() throws Exception {
        BulkReader r = new BulkReader("bulk-test");
        CountDownLatch inside = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        AtomicInteger ran = new AtomicInteger();
        r.execute(() -> {
            throw new IllegalStateException("a bad task (logged)");
        });
        r.execute(() -> {
            inside.countDown();
            try {
                release.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        assertTrue(inside.await(10, TimeUnit.SECONDS), "the thread went on after the failing task");
        for (int i = 0; i < 100; i++) {
            r.execute(ran::incrementAndGet);
        }
        r.shutdown(true);
        release.countDown();
        assertTrue(r.awaitTermination(10_000));
        assertEquals(0, ran.get(), "queued tasks that ran after shutdown(true)");
    }
}
