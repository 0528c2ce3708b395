package dev.lazypages.proc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(30)
class TracerThreadTest {
    @Test
    void manyProducersGetEveryResultAndAllWorkRunsOnOneThread() throws Exception {
        int producers = 16;
        int perProducer = 5_000;
        try (TracerThread tracer = new TracerThread("test-tracer")) {
            AtomicInteger wrongThread = new AtomicInteger();
            List<Thread> threads = new ArrayList<>();
            List<List<CompletableFuture<Long>>> results = new ArrayList<>();
            CountDownLatch start = new CountDownLatch(1);
            for (int p = 0; p < producers; p++) {
                int id = p;
                List<CompletableFuture<Long>> mine = new ArrayList<>(perProducer);
                results.add(mine);
                threads.add(Thread.ofPlatform().start(() -> {
                    try {
                        start.await();
                    } catch (InterruptedException e) {
                        return;
                    }
                    for (int i = 0; i < perProducer; i++) {
                        long value = (long) id * perProducer + i;
                        if (i % 100 == 0) {
                            // mix blocking calls with futures
                            long r = tracer.call(() -> value * 2);
                            mine.add(CompletableFuture.completedFuture(r));
                        } else {
                            mine.add(tracer.submit(() -> {
                                if (Thread.currentThread() != tracer.thread()) {
                                    wrongThread.incrementAndGet();
                                }
                                return value * 2;
                            }));
                        }
                    }
                }));
            }
            start.countDown();
            for (Thread t : threads) {
                t.join();
            }
            for (int p = 0; p < producers; p++) {
                List<CompletableFuture<Long>> mine = results.get(p);
                assertEquals(perProducer, mine.size());
                for (int i = 0; i < perProducer; i++) {
                    assertEquals(((long) p * perProducer + i) * 2, mine.get(i).get(10, TimeUnit.SECONDS));
                }
            }
            assertEquals(0, wrongThread.get(), "tasks ran on a thread other than the tracer");
        }
    }

    @Test
    void aFullQueueIsBackPressureNotAHang() throws Exception {
        try (TracerThread tracer = new TracerThread("test-tracer")) {
            CountDownLatch release = new CountDownLatch(1);
            tracer.submit(() -> release.await(20, TimeUnit.SECONDS));
            int tasks = TracerThread.CAPACITY * 3;
            List<CompletableFuture<Integer>> futures = new ArrayList<>();
            Thread producer = Thread.ofPlatform().start(() -> {
                for (int i = 0; i < tasks; i++) {
                    int v = i;
                    futures.add(tracer.submit(() -> v));
                }
            });
            producer.join(300);
            assertTrue(producer.isAlive(), "the producer should be held back while the queue is full");
            release.countDown();
            producer.join(10_000);
            assertEquals(tasks, futures.size());
            for (int i = 0; i < tasks; i++) {
                assertEquals(i, futures.get(i).get(10, TimeUnit.SECONDS));
            }
        }
    }

    @Test
    void callRethrowsTheTasksException() {
        try (TracerThread tracer = new TracerThread("test-tracer")) {
            IllegalStateException thrown = new IllegalStateException("boom");
            assertSame(thrown, assertThrows(IllegalStateException.class, () -> tracer.call(() -> {
                throw thrown;
            })));
            CompletionException checked = assertThrows(CompletionException.class, () -> tracer.call(() -> {
                throw new IOException("disk");
            }));
            assertTrue(checked.getCause() instanceof IOException);
            ExecutionException viaFuture = assertThrows(ExecutionException.class, () -> tracer.submit(() -> {
                throw thrown;
            }).get());
            assertSame(thrown, viaFuture.getCause());
        }
    }

    @Test
    void workSubmittedFromTheTracerRunsInline() {
        try (TracerThread tracer = new TracerThread("test-tracer")) {
            assertEquals(42, tracer.call(() -> tracer.call(() -> 41) + 1));
        }
    }

    @Test
    void closeStopsTheThreadAndRejectsLaterWork() throws Exception {
        TracerThread tracer = new TracerThread("test-tracer");
        assertEquals(1, tracer.call(() -> 1));
        tracer.close();
        assertTrue(!tracer.thread().isAlive());
        ExecutionException e = assertThrows(ExecutionException.class, () -> tracer.submit(() -> 1).get(5, TimeUnit.SECONDS));
        assertTrue(e.getCause() instanceof RejectedExecutionException, e.getCause().toString());
    }

    @Test
    void idleTasksRunOnTheTracerWhileItWaits() throws Exception {
        try (TracerThread tracer = new TracerThread("test-tracer")) {
            CountDownLatch ran = new CountDownLatch(3);
            AtomicInteger wrongThread = new AtomicInteger();
            Runnable idle = () -> {
                if (!tracer.isTracerThread()) {
                    wrongThread.incrementAndGet();
                }
                ran.countDown();
            };
            tracer.addIdleTask(idle);
            assertTrue(ran.await(5, TimeUnit.SECONDS));
            tracer.removeIdleTask(idle);
            assertEquals(0, wrongThread.get());
        }
    }
}
