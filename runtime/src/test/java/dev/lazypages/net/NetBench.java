package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertNull;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.net.proto.Role;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;

/**
 * Loopback measurements, run on demand: {@code -Dlp.bench=true -Dtest=NetBench}. Closed loop
 * (one request at a time), so latency is recorded per request after a warm-up.
 */
@EnabledIfSystemProperty(named = "lp.bench", matches = "true")
class NetBench {
    static final int PS = PageServerClientTest.PS;
    @TempDir
    Path tmp;

    @Test
    void faultRoundTripAndBulkThroughput() throws Exception {
        GeneratedPages pages = new GeneratedPages(PS, 1);
        GeneratedPages cheap = new GeneratedPages(PS, 1);
        cheap.firstWordOnly = true;
        try (PageServer server = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), pages, "t");
             PageClient c = PageClient.connect(server.localAddress(), "t");
             PageBuffer one = PageBuffer.allocate(1)) {
            long base = PageServerClientTest.BASE;
            for (int i = 0; i < 20_000; i++) {
                c.fetch(base + (long) (i & 1023) * PS, 1, one, 0);
            }
            server.resetServeLatency();
            Histogram rtt = new Histogram(3);
            for (int i = 0; i < 10_000; i++) {
                long t0 = System.nanoTime();
                c.fetch(base + (long) (i & 1023) * PS, 1, one, 0);
                rtt.recordValue(System.nanoTime() - t0);
            }
            Histogram serve = server.serveLatency();
            System.out.printf("fault fetch 1 page, 10k closed-loop: p50 %.1f µs, p90 %.1f µs, p99 %.1f µs, p99.9 %.1f µs, "
                            + "max %.1f µs; server serve p50 %.1f µs p99 %.1f µs%n",
                    rtt.getValueAtPercentile(50) / 1e3, rtt.getValueAtPercentile(90) / 1e3,
                    rtt.getValueAtPercentile(99) / 1e3, rtt.getValueAtPercentile(99.9) / 1e3, rtt.getMaxValue() / 1e3,
                    serve.getValueAtPercentile(50) / 1e3, serve.getValueAtPercentile(99) / 1e3);

            // the same while another thread pulls bulk pages as fast as it can
            java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
            java.util.concurrent.atomic.AtomicLong bulkBytes = new java.util.concurrent.atomic.AtomicLong();
            Thread bulk = Thread.ofPlatform().start(() -> {
                try (PageBuffer b = PageBuffer.allocate(16384)) {
                    while (!stop.get()) {
                        c.fetchBulk(base, 16384, b, 0);
                        bulkBytes.addAndGet(16384L * PS);
                    }
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            Thread.sleep(200);
            Histogram loaded = new Histogram(3);
            long b0 = bulkBytes.get();
            long l0 = System.nanoTime();
            for (int i = 0; i < 5_000; i++) {
                long t0 = System.nanoTime();
                c.fetch(base + (long) (i & 1023) * PS, 1, one, 0);
                loaded.recordValue(System.nanoTime() - t0);
            }
            double secs = (System.nanoTime() - l0) / 1e9;
            stop.set(true);
            bulk.join();
            System.out.printf("fault fetch 1 page during bulk (%.2f GiB/s bulk): p50 %.1f µs, p90 %.1f µs, p99 %.1f µs, max %.1f µs%n",
                    (bulkBytes.get() - b0) / secs / (1 << 30), loaded.getValueAtPercentile(50) / 1e3,
                    loaded.getValueAtPercentile(90) / 1e3, loaded.getValueAtPercentile(99) / 1e3, loaded.getMaxValue() / 1e3);

            int total = (512 << 20) / PS;
            try (PageBuffer big = PageBuffer.allocate(total)) {
                big.clear();
                c.fetchBulk(base, total, big, 0); // warm-up
                for (int rep = 0; rep < 3; rep++) {
                    long t0 = System.nanoTime();
                    c.fetchBulk(base, total, big, 0);
                    long t1 = System.nanoTime();
                    System.out.printf("fetchBulk 512 MiB in one call (64-page requests, 8 in flight): %.2f GiB/s%n",
                            0.5 / ((t1 - t0) / 1e9));
                }
                assertNull(pages.check(big, 0, base, total));
            }
        }
        // Transport only: the provider writes one word per page (generating every word costs as much as the network)
        try (PageServer server = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), cheap, "t");
             PageClient c = PageClient.connect(server.localAddress(), "t")) {
            long base = PageServerClientTest.BASE;
            int total = (512 << 20) / PS;
            try (PageBuffer big = PageBuffer.allocate(total)) {
                big.clear();
                c.fetchBulk(base, total, big, 0); // warm-up
                for (int rep = 0; rep < 3; rep++) {
                    long t0 = System.nanoTime();
                    c.fetchBulk(base, total, big, 0);
                    long t1 = System.nanoTime();
                    System.out.printf("fetchBulk 512 MiB, cheap provider, one call: %.2f GiB/s%n", 0.5 / ((t1 - t0) / 1e9));
                }
                long t0 = System.nanoTime();
                for (int p = 0; p < total; p += 64) {
                    c.fetchBulk(base + (long) p * PS, 64, big, (long) p * PS);
                }
                long t1 = System.nanoTime();
                System.out.printf("fetchBulk 512 MiB as 64-page calls (one in flight, as LazyPageServer's sweep): %.2f GiB/s%n",
                        0.5 / ((t1 - t0) / 1e9));
                try (dev.lazypages.lazy.RemoteLazySource src = new dev.lazypages.lazy.RemoteLazySource(c,
                        java.util.List.of(new dev.lazypages.lazy.LazySource.Run(base, total)))) {
                    asyncSweep(src, base, total, big);
                    for (int rep = 0; rep < 3; rep++) {
                        long s0 = System.nanoTime();
                        for (int p = 0; p < total; p += 64) {
                            src.readPagesInBackground(base + (long) p * PS, 64, big, (long) p * PS);
                        }
                        long s1 = System.nanoTime();
                        System.out.printf("RemoteLazySource blocking background sweep 512 MiB, 64-page reads: %.2f GiB/s%n",
                                0.5 / ((s1 - s0) / 1e9));
                    }
                }
            }
        }
    }

    /**
     * The way LazyPageServer's background reads now: 256-page asynchronous requests, 4 in flight,
     * each delivered from the network buffer's own memory on the event loop (copied into
     * {@code big} here, as UFFDIO_COPY copies into the process there).
     */
    private static void asyncSweep(dev.lazypages.lazy.RemoteLazySource src, long base, int total, PageBuffer big)
            throws Exception {
        java.lang.foreign.MemorySegment dst = java.lang.foreign.MemorySegment.ofAddress(big.address()).reinterpret(big.byteSize());
        for (int rep = 0; rep < 3; rep++) {
            java.util.concurrent.Semaphore window = new java.util.concurrent.Semaphore(4);
            long s0 = System.nanoTime();
            for (int p = 0; p < total; p += 256) {
                window.acquire();
                src.readAsync(base + (long) p * PS, 256, true, new dev.lazypages.lazy.LazySource.Delivery() {
                    @Override
                    public void pages(long vaddr, int nrPages, long address) {
                        java.lang.foreign.MemorySegment.copy(java.lang.foreign.MemorySegment.ofAddress(address)
                                .reinterpret((long) nrPages * PS), 0, dst, vaddr - base, (long) nrPages * PS);
                    }

                    @Override
                    public void done() {
                        window.release();
                    }

                    @Override
                    public void failed(Throwable cause) {
                        window.release();
                    }
                });
            }
            window.acquire(4);
            long s1 = System.nanoTime();
            System.out.printf("RemoteLazySource readAsync sweep 512 MiB, 256-page requests, 4 in flight, copied from the "
                    + "network buffer on the event loop: %.2f GiB/s%n", 0.5 / ((s1 - s0) / 1e9));
        }
        // a fault as LazyPageServer serves it now: request, the event loop copies and "wakes" (a volatile flag here)
        Histogram rtt = new Histogram(3);
        java.util.concurrent.atomic.AtomicBoolean[] flag = {new java.util.concurrent.atomic.AtomicBoolean()};
        for (int i = 0; i < 30_000; i++) {
            java.util.concurrent.atomic.AtomicBoolean f = new java.util.concurrent.atomic.AtomicBoolean();
            flag[0] = f;
            long t0 = System.nanoTime();
            src.readAsync(base + (long) (i & 1023) * PS, 1, false, new dev.lazypages.lazy.LazySource.Delivery() {
                @Override
                public void pages(long vaddr, int nrPages, long address) {
                    java.lang.foreign.MemorySegment.copy(java.lang.foreign.MemorySegment.ofAddress(address).reinterpret(PS), 0,
                            dst, 0, PS);
                }

                @Override
                public void done() {
                    f.set(true);
                }

                @Override
                public void failed(Throwable cause) {
                    f.set(true);
                }
            });
            while (!f.get()) {
                Thread.onSpinWait();
            }
            if (i >= 20_000) {
                rtt.recordValue(System.nanoTime() - t0);
            }
        }
        System.out.printf("readAsync fault 1 page (copied on the event loop), 10k closed-loop after 20k warm-up: p50 %.1f µs, "
                        + "p90 %.1f µs, p99 %.1f µs, max %.1f µs%n", rtt.getValueAtPercentile(50) / 1e3,
                rtt.getValueAtPercentile(90) / 1e3, rtt.getValueAtPercentile(99) / 1e3, rtt.getMaxValue() / 1e3);
    }

    @Test
    void directoryTransferOfOneGiB() throws Exception {
        // tmpfs when there is one: on this VM's disk, writeback throttles to ~550 MB/s after the first GiB
        Path shm = Path.of("/dev/shm");
        Path root = Files.isDirectory(shm) ? Files.createTempDirectory(shm, "lp-bench") : tmp;
        try {
            directoryTransferOfOneGiB(root);
        } finally {
            if (root != tmp) {
                try (var s = Files.walk(root)) {
                    s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
                }
            }
        }
    }

    private void directoryTransferOfOneGiB(Path tmp) throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("img"));
        byte[] buf = new byte[1 << 20];
        new java.util.Random(1).nextBytes(buf);
        try (FileChannel out = FileChannel.open(dir.resolve("pages.img"), StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            for (int i = 0; i < 1024; i++) {
                out.write(ByteBuffer.wrap(buf));
            }
        }
        LinkedBlockingQueue<ControlConnection> accepted = new LinkedBlockingQueue<>();
        try (ControlServer server = ControlServer.listen(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0),
                ControlConnectionTest.hello(Role.DESTINATION, 1, "t"), accepted::add);
             ControlConnection src = ControlClient.connect(server.localAddress(),
                     ControlConnectionTest.hello(Role.SOURCE, 1, "t"), Duration.ofSeconds(10))) {
            ControlConnection dst = accepted.poll(10, TimeUnit.SECONDS);
            for (int rep = 0; rep < 2; rep++) {
                Path into = Files.createDirectory(tmp.resolve("into" + rep));
                CompletableFuture<DirectoryTransfer.Stats> got = CompletableFuture.supplyAsync(() -> {
                    try {
                        return DirectoryTransfer.receive(dst, into, Duration.ofSeconds(60));
                    } catch (Exception e) {
                        throw new java.util.concurrent.CompletionException(e);
                    }
                });
                DirectoryTransfer.send(src, rep, dir);
                DirectoryTransfer.Stats s = got.get(120, TimeUnit.SECONDS);
                System.out.printf("directory transfer 1 GiB: %d ms, %.0f MiB/s%n", s.elapsed().toMillis(), s.mibPerSecond());
            }
        }
    }
}
