package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Posix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** A file descriptor watched on the page client's FAULT event loop (the way the lazy page server serves a uffd there). */
class FaultLoopTest {
    private PageServer server;
    private PageClient client;
    private int efd = -1;
    private final Arena arena = Arena.ofShared();

    @BeforeEach
    void start() throws Exception {
        server = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0),
                new GeneratedPages(PageServerClientTest.PS, 3), "tok");
        client = PageClient.connect(server.localAddress(), "tok");
        efd = Posix.eventfd(0, Posix.EFD_NONBLOCK);
    }

    @AfterEach
    void stop() {
        client.close();
        server.close();
        Posix.closeQuietly(efd);
        arena.close();
    }

    private void signal() {
        MemorySegment one = arena.allocate(ValueLayout.JAVA_LONG);
        one.set(ValueLayout.JAVA_LONG, 0, 1);
        Posix.writeFully(efd, one);
    }

    private void drain() {
        Posix.read(efd, arena.allocate(8));
    }

    @Test
    void aReadableFdIsHandledOnTheFaultConnectionsLoopUntilItIsDrainedAndNotAfterCancel() throws Exception {
        FaultLoop loop = client.faultLoop();
        assertNotNull(loop, "the epoll transport lends the FAULT loop");
        ConcurrentLinkedQueue<String> threads = new ConcurrentLinkedQueue<>();
        AtomicInteger calls = new AtomicInteger();
        CompletableFuture<Void> drained = new CompletableFuture<>();
        FaultLoop.Watch w = loop.watch(efd, () -> {
            threads.add(Thread.currentThread().getName());
            if (calls.incrementAndGet() == 3) { // level-triggered: called again while still readable
                drain();
                drained.complete(null);
            }
        });
        signal();
        drained.get(5, TimeUnit.SECONDS);
        Thread.sleep(50);
        assertEquals(3, calls.get(), "called while readable, not after the drain");
        String loopThread = loop.threadName();
        assertTrue(loopThread.startsWith("page-client"), loopThread);
        assertTrue(threads.stream().allMatch(loopThread::equals), "every call on the FAULT loop " + loopThread + ": " + threads);

        w.cancel();
        signal();
        Thread.sleep(100);
        assertEquals(3, calls.get(), "no call after cancel");
    }

    @Test
    void aFaultRequestFromTheLoopGoesOutAndItsAnswerComesBackOnTheSameThread() throws Exception {
        FaultLoop loop = client.faultLoop();
        CompletableFuture<String> answeredOn = new CompletableFuture<>();
        CompletableFuture<String> askedOn = new CompletableFuture<>();
        FaultLoop.Watch w = loop.watch(efd, () -> {
            drain();
            askedOn.complete(Thread.currentThread().getName());
            try {
                client.fetchAsync(PageServerClientTest.BASE, 1, false, new PageSink() {
                    @Override
                    public void received(PageData data) {
                        answeredOn.complete(Thread.currentThread().getName());
                    }

                    @Override
                    public void failed(java.io.IOException cause) {
                        answeredOn.completeExceptionally(cause);
                    }
                });
            } catch (java.io.IOException e) {
                answeredOn.completeExceptionally(e);
            }
        });
        signal();
        assertEquals(askedOn.get(5, TimeUnit.SECONDS), answeredOn.get(5, TimeUnit.SECONDS));
        w.cancel();
    }

    @Test
    void theLoopSaysItIsShuttingDownOnceItsClientCloses() throws Exception {
        FaultLoop loop = client.faultLoop();
        loop.watch(efd, () -> { });
        assertTrue(!loop.isShuttingDown());
        client.close();
        assertTrue(loop.isShuttingDown());
    }
}
