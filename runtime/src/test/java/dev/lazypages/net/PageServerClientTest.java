package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The page plane on loopback, with pages generated from their address. */
class PageServerClientTest {
    static final int PS = (int) Posix.pageSize();
    static final long BASE = 0x7f12_3400_0000L;
    private GeneratedPages pages;
    private PageServer server;
    private final List<AutoCloseable> cleanup = new ArrayList<>();

    @BeforeEach
    void start() throws IOException {
        pages = new GeneratedPages(PS, 5);
        server = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), pages, "tok");
    }

    @AfterEach
    void stop() throws Exception {
        for (int i = cleanup.size() - 1; i >= 0; i--) {
            cleanup.get(i).close();
        }
        server.close();
    }

    private <T extends AutoCloseable> T closing(T t) {
        cleanup.add(t);
        return t;
    }

    private PageClient client() throws IOException {
        return closing(PageClient.connect(server.localAddress(), "tok"));
    }

    @Test
    void fetchGetsTheRightPagesAtRandomAddresses() throws Exception {
        PageClient c = client();
        PageBuffer buf = closing(PageBuffer.allocate(8));
        Random r = new Random(1);
        for (int i = 0; i < 500; i++) {
            long vaddr = BASE + (long) r.nextInt(1 << 20) * PS;
            int n = 1 + r.nextInt(4);
            int at = r.nextInt(8 - n + 1);
            c.fetch(vaddr, n, buf, (long) at * PS);
            assertNull(pages.check(buf, (long) at * PS, vaddr, n), "fetch " + n + " at 0x" + Long.toHexString(vaddr));
        }
        assertTrue(server.servedPages() >= 500);
        Histogram h = server.serveLatency();
        for (int i = 0; i < 100 && h.getTotalCount() < 500; i++) { // recorded just after the response is written
            Thread.sleep(10);
            h = server.serveLatency();
        }
        assertEquals(500, h.getTotalCount());
        assertTrue(h.getValueAtPercentile(50) > 0);
    }

    @Test
    void fetchBulkGetsTheRightPagesPipelined() throws Exception {
        PageClient c = client();
        int n = 64 * 20 + 5; // 21 requests, 8 in flight
        PageBuffer buf = closing(PageBuffer.allocate(2000));
        c.fetchBulk(BASE, n, buf, 3L * PS);
        assertNull(pages.check(buf, 3L * PS, BASE, n));
        assertEquals(21, server.servedRequests());
        c.fetch(BASE + 4L * 1024 * 1024 * PS, 2000, buf, 0); // more than MAX_PAGES on the fault connection: split
        assertNull(pages.check(buf, 0, BASE + 4L * 1024 * 1024 * PS, 1024));
    }

    @Test
    void bulkAnswersArriveInLargeReadsSoTheirPagesComeAsFewLongRuns() throws Exception {
        PageClient c = client();
        pages.firstWordOnly = true; // the network is what is measured here, not generating pages
        int requests = 32;
        java.util.concurrent.Semaphore window = new java.util.concurrent.Semaphore(4);
        java.util.concurrent.atomic.AtomicLong runs = new java.util.concurrent.atomic.AtomicLong();
        java.util.concurrent.atomic.AtomicReference<Throwable> failed = new java.util.concurrent.atomic.AtomicReference<>();
        for (int i = 0; i < requests; i++) {
            assertTrue(window.tryAcquire(10, TimeUnit.SECONDS), "an answer did not come");
            c.fetchAsync(BASE + (long) i * 256 * PS, 256, true, new PageSink() {
                @Override
                public void received(PageData data) {
                    data.forEachRun((first, k, address) -> runs.incrementAndGet());
                    window.release();
                }

                @Override
                public void failed(IOException cause) {
                    failed.set(cause);
                    window.release();
                }
            });
        }
        assertTrue(window.tryAcquire(4, 10, TimeUnit.SECONDS), "answers did not come");
        assertNull(failed.get());
        // Netty's default reads of at most 64 KiB cut each 1 MiB answer into 17 reads or more, and every cut splits
        // a page (the 24-byte header shifts them): at least 32 runs per answer, each a UFFDIO_COPY of its own.
        // With reads of up to 1 MiB, 2.5 to 14 runs were measured (the more, the faster the reader drains the
        // socket); only a reader that always found a single 64 KiB segment waiting would come near 32.
        double perAnswer = runs.get() / (double) requests;
        assertTrue(perAnswer < 28, perAnswer + " runs per 1 MiB answer");
    }

    @Test
    void twoThreadsFetchAndFetchBulkConcurrently() throws Exception {
        PageClient c = client();
        ExecutorService ex = Executors.newFixedThreadPool(2);
        try {
            List<Future<String>> fs = new ArrayList<>();
            for (int t = 0; t < 2; t++) {
                int seed = t;
                fs.add(ex.submit(() -> {
                    Random r = new Random(seed);
                    try (PageBuffer buf = PageBuffer.allocate(200)) {
                        for (int i = 0; i < 300; i++) {
                            long vaddr = BASE + (long) r.nextInt(1 << 24) * PS;
                            int n = 1 + r.nextInt(i % 10 == 0 ? 200 : 4);
                            if (i % 2 == 0) {
                                c.fetch(vaddr, n, buf, 0);
                            } else {
                                c.fetchBulk(vaddr, n, buf, 0);
                            }
                            String bad = pages.check(buf, 0, vaddr, n);
                            if (bad != null) {
                                return "thread " + seed + " request " + i + ": wrong word at " + bad;
                            }
                        }
                    }
                    return null;
                }));
            }
            for (Future<String> f : fs) {
                assertNull(f.get(60, TimeUnit.SECONDS));
            }
        } finally {
            ex.shutdownNow();
        }
    }

    @Test
    void providerErrorBecomesAnExceptionNamingTheAddress() throws Exception {
        PageClient c = client();
        PageBuffer buf = closing(PageBuffer.allocate(4));
        pages.failFrom = BASE + 10L * PS;
        pages.failTo = BASE + 11L * PS;
        IOException e = assertThrows(IOException.class, () -> c.fetch(BASE + 9L * PS, 2, buf, 0));
        assertTrue(e.getMessage().contains("2 pages at 0x" + Long.toHexString(BASE + 9L * PS)), e.getMessage());
        assertTrue(e.getMessage().contains("EFAULT"), e.getMessage());
        // the connection survives an error
        c.fetch(BASE, 4, buf, 0);
        assertNull(pages.check(buf, 0, BASE, 4));
        IOException b = assertThrows(IOException.class, () -> c.fetchBulk(BASE, 200, closing(PageBuffer.allocate(200)), 0));
        assertTrue(b.getMessage().contains("at 0x" + Long.toHexString(BASE)), b.getMessage());
    }

    @Test
    void wrongTokenIsRefusedAndLogged() throws Exception {
        List<LogRecord> logged = new CopyOnWriteArrayList<>();
        Logger log = Logger.getLogger(PageServer.class.getName());
        Handler h = new Handler() {
            @Override
            public void publish(LogRecord r) {
                logged.add(r);
            }

            @Override
            public void flush() {
            }

            @Override
            public void close() {
            }
        };
        log.addHandler(h);
        try {
            HandshakeException e = assertThrows(HandshakeException.class,
                    () -> PageClient.connect(server.localAddress(), "wrong"));
            assertEquals("token mismatch", e.reason());
            assertTrue(e.byPeer());
            assertEquals(1, server.refusedConnections());
            assertTrue(logged.stream().anyMatch(r -> java.text.MessageFormat.format(r.getMessage(), r.getParameters())
                    .contains("refused connection from") && java.text.MessageFormat.format(r.getMessage(),
                    r.getParameters()).contains("token mismatch")), "a warning was logged");
            assertEquals(0, pages.reads.get());
        } finally {
            log.removeHandler(h);
        }
    }

    @Test
    void requestWithoutTokenIsRefused() throws Exception {
        try (java.net.Socket s = new java.net.Socket(server.localAddress().getAddress(), server.localAddress().getPort())) {
            io.netty.buffer.ByteBuf b = io.netty.buffer.Unpooled.buffer();
            PageFrameDescriptor.writeHeader(b, PageFrameDescriptor.TYPE_REQUEST, 0, 1, BASE, 1);
            byte[] a = new byte[b.readableBytes()];
            b.readBytes(a);
            s.getOutputStream().write(a);
            byte[] reply = s.getInputStream().readAllBytes(); // the server closes after its ERROR
            String text = new String(reply, java.nio.charset.StandardCharsets.UTF_8);
            assertTrue(text.contains("missing token"), text);
        }
        assertEquals(1, server.refusedConnections());
        assertEquals(0, pages.reads.get());
    }

    @Test
    void faultIsServedWhileABulkReadIsStuck() throws Exception {
        java.util.concurrent.CountDownLatch inBulk = new java.util.concurrent.CountDownLatch(1);
        java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
        PageProvider slowBulk = new PageProvider() {
            @Override
            public int pageSize() {
                return PS;
            }

            @Override
            public void readPages(long vaddr, int nrPages, java.nio.ByteBuffer dst) throws IOException {
                if (nrPages >= 64) {
                    inBulk.countDown();
                    try {
                        release.await(10, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        throw new IOException(e);
                    }
                }
                pages.readPages(vaddr, nrPages, dst);
            }
        };
        try (PageServer slow = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), slowBulk, "tok");
             PageClient c = PageClient.connect(slow.localAddress(), "tok");
             PageBuffer big = PageBuffer.allocate(64);
             PageBuffer one = PageBuffer.allocate(1)) {
            java.util.concurrent.CompletableFuture<Void> bulk = java.util.concurrent.CompletableFuture.runAsync(() -> {
                try {
                    c.fetchBulk(BASE, 64, big, 0);
                } catch (IOException e) {
                    throw new java.util.concurrent.CompletionException(e);
                }
            });
            assertTrue(inBulk.await(10, TimeUnit.SECONDS));
            long t0 = System.nanoTime();
            c.fetch(BASE + 100L * PS, 1, one, 0);
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms < 2000, "fault took " + ms + " ms behind a stuck bulk read");
            assertFalse(bulk.isDone(), "the bulk read is still stuck");
            assertNull(pages.check(one, 0, BASE + 100L * PS, 1));
            release.countDown();
            bulk.get(10, TimeUnit.SECONDS);
            assertNull(pages.check(big, 0, BASE, 64));
        }
    }

    @Test
    void doneCompletesTheServersDoneFuture() throws Exception {
        PageClient c = client();
        assertFalse(server.done().isDone());
        c.done();
        server.done().get(10, TimeUnit.SECONDS);
    }

    @Test
    void fetchAfterTheServerWentAwayFailsOnceTheRecoverTimeoutPassed() throws Exception {
        PageClient c = closing(PageClient.connect(server.localAddress(), "tok",
                PageClient.Options.defaults().withRecoverTimeout(java.time.Duration.ofMillis(300))));
        server.close();
        PageBuffer buf = closing(PageBuffer.allocate(1));
        IOException e = assertThrows(IOException.class, () -> {
            for (int i = 0; i < 100; i++) { // the close reaches the client asynchronously
                c.fetch(BASE, 1, buf, 0);
                Thread.sleep(20);
            }
        });
        assertTrue(e.getMessage().contains("not recovered within the recover timeout of 300 ms"), e.getMessage());
    }
}
