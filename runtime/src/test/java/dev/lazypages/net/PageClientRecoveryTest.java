package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.PageBuffer;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Issue 7 point 1 at the page plane: a lost connection is reconnected and its requests are sent again. */
class PageClientRecoveryTest {
    static final int PS = PageServerClientTest.PS;
    static final long BASE = PageServerClientTest.BASE;
    private GeneratedPages pages;
    private PageServer server;
    private CuttingProxy proxy;

    @BeforeEach
    void start() throws IOException {
        pages = new GeneratedPages(PS, 9);
        server = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), pages, "tok");
        proxy = new CuttingProxy(server.localAddress());
    }

    @AfterEach
    void stop() {
        proxy.close();
        server.close();
    }

    @Test
    void aBulkTransferCutInTheMiddleCompletesWithEveryPageRight() throws Exception {
        try (PageClient c = PageClient.connect(proxy.address(), "tok");
             PageBuffer big = PageBuffer.allocate(4096)) {
            proxy.cutWhen(bytes -> bytes > 6L << 20); // about a third of the way
            c.fetchBulk(BASE, 4096, big, 0);
            assertNull(pages.check(big, 0, BASE, 4096));
            assertEquals(1, proxy.cuts(), "the connections were cut once");
            assertTrue(c.reconnects() >= 1, "reconnected: " + c.reconnects());
            PageBuffer one = PageBuffer.allocate(1);
            c.fetch(BASE + 77L * PS, 1, one, 0); // and the fault connection works after it too
            assertNull(pages.check(one, 0, BASE + 77L * PS, 1));
            one.close();
        }
    }

    @Test
    void aFaultWaitsThroughAnOutageAndIsSentAgainWhenTheServerIsReachable() throws Exception {
        try (PageClient c = PageClient.connect(proxy.address(), "tok");
             PageBuffer one = PageBuffer.allocate(1)) {
            proxy.refuse(true);
            proxy.cutAll();
            CountDownLatch started = new CountDownLatch(1);
            CompletableFuture<Void> f = CompletableFuture.runAsync(() -> {
                started.countDown();
                try {
                    c.fetch(BASE + 5L * PS, 1, one, 0);
                } catch (IOException e) {
                    throw new java.util.concurrent.CompletionException(e);
                }
            });
            started.await();
            Thread.sleep(800);
            assertTrue(!f.isDone(), "the fault waits while the server cannot be reached");
            proxy.refuse(false);
            f.get(10, TimeUnit.SECONDS);
            assertNull(pages.check(one, 0, BASE + 5L * PS, 1));
        }
    }

    @Test
    void aServerThatDoesNotAnswerWithinTheDeadlineCountsAsALostConnection() throws Exception {
        CountDownLatch stuck = new CountDownLatch(1);
        PageProvider once = new PageProvider() {
            @Override
            public int pageSize() {
                return PS;
            }

            @Override
            public void readPages(long vaddr, int nrPages, java.nio.ByteBuffer dst) throws IOException {
                if (stuck.getCount() > 0) { // the first request never gets an answer in time
                    stuck.countDown();
                    try {
                        Thread.sleep(1500);
                    } catch (InterruptedException e) {
                        throw new IOException(e);
                    }
                }
                pages.readPages(vaddr, nrPages, dst);
            }
        };
        try (PageServer slow = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), once, "tok");
             PageClient c = PageClient.connect(slow.localAddress(), "tok",
                     PageClient.Options.defaults().withResponseDeadline(Duration.ofMillis(300)));
             PageBuffer big = PageBuffer.allocate(64)) {
            c.fetchBulk(BASE, 64, big, 0);
            assertNull(pages.check(big, 0, BASE, 64));
            assertTrue(c.reconnects() >= 1, "the stuck connection was replaced");
        }
    }

    @Test
    void anUnreachableServerFailsTheRequestAfterTheRecoverTimeoutWithAClearMessage() throws Exception {
        try (PageClient c = PageClient.connect(proxy.address(), "tok",
                PageClient.Options.defaults().withRecoverTimeout(Duration.ofMillis(700)));
             PageBuffer one = PageBuffer.allocate(1)) {
            proxy.refuse(true);
            proxy.cutAll();
            long t0 = System.nanoTime();
            IOException e = assertThrows(IOException.class, () -> c.fetch(BASE, 1, one, 0));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(e.getMessage().contains("not recovered within the recover timeout of 700 ms"), e.getMessage());
            assertTrue(ms < 5000, "failed after " + ms + " ms");
            assertThrows(IOException.class, () -> c.fetch(BASE, 1, one, 0), "and later requests fail at once");
        }
    }
}
