package dev.lazypages.perf;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.lazy.LazySource;
import dev.lazypages.lazy.RemoteLazySource;
import dev.lazypages.net.ControlClient;
import dev.lazypages.net.ControlConnection;
import dev.lazypages.net.ControlServer;
import dev.lazypages.net.DirectoryTransfer;
import dev.lazypages.net.PageClient;
import dev.lazypages.net.PageProvider;
import dev.lazypages.net.PageServer;
import dev.lazypages.net.proto.Hello;
import dev.lazypages.net.proto.Role;
import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteResult;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code net}: the page plane and the control plane on loopback, no process involved (a page
 * provider that writes each page's address into its first word: transport only).
 * <ol>
 *   <li>fault fetch, one page at a time: closed loop (each request after the last answer), and at
 *       a fixed rate, idle and while another thread pulls bulk pages as fast as it can; fixed-rate
 *       latencies are measured from each request's intended send time, so a stall is charged to
 *       every request it delayed (coordinated omission);</li>
 *   <li>bulk transfer rate over time: {@link PageClient#fetchBulk} (64-page requests, 8 in
 *       flight) and {@link RemoteLazySource}'s background sweep (64-page reads with readahead),
 *       sampled every 100 ms;</li>
 *   <li>{@link DirectoryTransfer} of one file over the control connection (tmpfs to tmpfs).</li>
 * </ol>
 * Formerly the runtime test {@code net.NetBench}.
 */
@Command(name = "net", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Page-plane fault latency and bulk throughput, and control-plane directory transfer, on loopback.",
            "",
            "Writes DIR/net.json, DIR/net.md, .hgrm files and PNG plots, and prints the table."
        })
final class NetBench implements Callable<Integer> {
    static final String NAME = "net";
    static final String TITLE = "Page plane and control plane on loopback (transport only)";
    private static final long BASE = 0x7f0000000000L;
    private static final String TOKEN = "lazy-bench";
    private static final int BULK_PAGES = 16384;
    /** Pages per call of the transfer-rate series: 4 MiB, so a 100 ms sample resolves 40 MiB/s. */
    private static final int RATE_PAGES = 1024;
    private static final long SAMPLE_NANOS = 100_000_000L;

    @Spec
    private CommandSpec spec;

    @Option(names = "--requests", defaultValue = "10000", description = "Measured fault requests per series (default ${DEFAULT-VALUE}).")
    int requests;

    @Option(names = "--rate", defaultValue = "2000", description = "Fixed request rate per second of the fixed-rate series (default ${DEFAULT-VALUE}).")
    int rate;

    @Option(names = "--seconds", defaultValue = "4", description = "Seconds of each bulk transfer-rate series (default ${DEFAULT-VALUE}).")
    double seconds;

    @Option(names = "--dir-mib", defaultValue = "1024", description = "Size of the directory transfer in MiB (default ${DEFAULT-VALUE}).")
    int dirMib;

    @Option(names = "--repeat", defaultValue = "3", description = "Directory transfers measured, after one warm-up (default ${DEFAULT-VALUE}).")
    int repeat;

    @Option(names = "--out", defaultValue = "bench-results", paramLabel = "DIR",
            description = "Where net.json, net.md, .hgrm and PNG files go (default ${DEFAULT-VALUE}).")
    private Path out;

    private Consumer<String> progress = line -> { };

    @Override
    public Integer call() throws Exception {
        return SuiteCommands.runAlone(spec, out, NAME, TITLE, this::measure);
    }

    /** The suite's net: 10000 requests per series, 4 s per bulk series, 1 GiB directory (quick: 2000, 1 s, 128 MiB). */
    static SuiteBench suite() {
        return SuiteBench.of(NAME, TITLE, ctx -> {
            NetBench b = new NetBench();
            b.requests = ctx.quick() ? 2000 : 10000;
            b.rate = 2000;
            b.seconds = ctx.quick() ? 1 : 4;
            b.dirMib = ctx.quick() ? 128 : 1024;
            b.repeat = ctx.quick() ? 1 : 3;
            return b.measure(ctx.progress());
        });
    }

    /** Page contents: the first word of each page is its address; the rest is left as the buffer had it. */
    static final class AddressPages implements PageProvider {
        @Override
        public int pageSize() {
            return 4096;
        }

        @Override
        public void readPages(long vaddr, int nrPages, ByteBuffer dst) {
            ByteBuffer b = dst.order(ByteOrder.nativeOrder());
            int base = b.position();
            for (int i = 0; i < nrPages; i++) {
                b.putLong(base + i * 4096, vaddr + (long) i * 4096);
            }
        }

        /** The first page of {@code buf} (from {@code offset}) whose first word is not its address, or -1. */
        static long firstWrong(PageBuffer buf, long offset, long vaddr, int nrPages) {
            for (int i = 0; i < nrPages; i++) {
                if (buf.getLong(offset + (long) i * 4096) != vaddr + (long) i * 4096) {
                    return i;
                }
            }
            return -1;
        }
    }

    SuiteResult measure(Consumer<String> progress) throws Exception {
        this.progress = progress;
        if (requests < 1 || rate < 1 || seconds <= 0 || dirMib < 1 || repeat < 1) {
            throw new IllegalArgumentException("--requests, --rate, --seconds, --dir-mib and --repeat must be positive");
        }
        SuiteResult r = new SuiteResult();
        r.chart("fault-fetch", "Page plane: one-page fault fetch on loopback", "percentile", "latency (µs)");
        r.chart("transfer-rate", "Page plane: bulk transfer rate over time (loopback)", "time (s)", "MiB/s");
        AddressPages pages = new AddressPages();
        try (PageServer server = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), pages, TOKEN);
             PageClient c = PageClient.connect(server.localAddress(), TOKEN);
             PageBuffer one = PageBuffer.allocate(1)) {
            for (int i = 0; i < Math.max(20_000, requests); i++) { // warm-up, discarded
                c.fetch(BASE + (long) (i & 1023) * 4096, 1, one, 0);
            }
            server.resetServeLatency();
            Histogram closed = new Histogram(3);
            for (int i = 0; i < requests; i++) {
                long vaddr = BASE + (long) (i & 1023) * 4096;
                long t0 = System.nanoTime();
                c.fetch(vaddr, 1, one, 0);
                closed.recordValue(System.nanoTime() - t0);
                check(one, 0, vaddr, 1);
            }
            r.histogram("fault-fetch", "closed loop, idle", closed);
            r.histogram("fault-fetch", "server: request decoded to reply written, idle", server.serveLatency());
            Histogram idleFixed = fixedRate(c, one, null);
            r.histogram("fault-fetch", String.format(Locale.ROOT, "%d/s fixed rate, idle", rate), idleFixed);
            double[] bulkRate = new double[1];
            Histogram loaded = fixedRate(c, one, bulkRate);
            r.histogram("fault-fetch", String.format(Locale.ROOT, "%d/s fixed rate, during bulk", rate), loaded);
            r.note(String.format(Locale.ROOT, "fault fetch: %d measured requests per series after %d discarded; fixed-rate series are "
                    + "measured from each request's intended send time (a stall is charged to every request it delays); the bulk "
                    + "thread pulled %.2f GiB/s meanwhile", requests, Math.max(20_000, requests), bulkRate[0]));
            r.note(String.format(Locale.ROOT, "fixed rate p99 during bulk / idle: %.2f (the page plane's share of the fault path's "
                    + "p99 target of 1.5; on 2 shared cores the bulk thread and the fault thread compete for CPU)",
                    (double) loaded.getValueAtPercentile(99) / Math.max(1, idleFixed.getValueAtPercentile(99))));

            Samples fb = new Samples("fetchBulk (64-page requests, 8 in flight)", "MiB/s");
            r.series("transfer-rate", fb.name(), transferRate(fb, (off, n, buf) -> c.fetchBulk(BASE + off, n, buf, 0), RATE_PAGES));
            r.row("bulk transfer rate (per 100 ms interval, first 2 intervals left out)", fb);
            List<LazySource.Run> runs = List.of(new LazySource.Run(BASE, 1 << 20)); // 4 GiB of address space
            try (RemoteLazySource src = new RemoteLazySource(c, runs)) {
                Samples sw = new Samples("RemoteLazySource asynchronous sweep (256-page requests, 4 in flight)", "MiB/s");
                r.series("transfer-rate", sw.name(), transferRate(sw, (off, n, buf) -> asyncSweep(src, BASE + off, n, buf),
                        RATE_PAGES));
                r.row("bulk transfer rate (per 100 ms interval, first 2 intervals left out)", sw);
            }
        }
        r.row("directory transfer", directoryTransfer());
        r.note(String.format(Locale.ROOT, "directory transfer: one %d MiB file from tmpfs to tmpfs over the control connection, %d "
                + "measured after one warm-up", dirMib, repeat));
        r.put("requests", requests);
        r.put("rate_per_second", rate);
        r.put("bulk_seconds", seconds);
        r.put("directory_mib", dirMib);
        return r;
    }

    /**
     * The way LazyPageServer's background pulls pages: {@code readAsync} requests of 256 pages, 4 in
     * flight, each delivered from the network buffer's own memory on the event loop (copied into
     * {@code buf} here, where UFFDIO_COPY copies into the process).
     */
    private static void asyncSweep(RemoteLazySource src, long base, int nrPages, PageBuffer buf) throws IOException {
        java.lang.foreign.MemorySegment dst = java.lang.foreign.MemorySegment.ofAddress(buf.address()).reinterpret(buf.byteSize());
        java.util.concurrent.Semaphore window = new java.util.concurrent.Semaphore(4);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        for (int p = 0; p < nrPages; ) {
            acquire(window, 1);
            p += src.readAsync(base + (long) p * 4096, Math.min(256, nrPages - p), true, new LazySource.Delivery() {
                @Override
                public void pages(long vaddr, int n, long address) {
                    java.lang.foreign.MemorySegment.copy(java.lang.foreign.MemorySegment.ofAddress(address)
                            .reinterpret((long) n * 4096), 0, dst, vaddr - base, (long) n * 4096);
                }

                @Override
                public void done() {
                    window.release();
                }

                @Override
                public void failed(Throwable cause) {
                    failure.set(cause);
                    window.release();
                }
            });
        }
        acquire(window, 4);
        if (failure.get() != null) {
            throw new BenchFailure("asynchronous sweep failed: " + failure.get());
        }
    }

    private static void acquire(java.util.concurrent.Semaphore s, int permits) throws IOException {
        try {
            s.acquire(permits);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted");
        }
    }

    /**
     * {@link #requests} one-page fetches at {@link #rate} per second, latency from each one's
     * intended send time; with {@code bulkGiBps} non-null, a second thread pulls bulk pages all
     * along and its rate is returned there.
     */
    private Histogram fixedRate(PageClient c, PageBuffer one, double[] bulkGiBps) throws Exception {
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong bulkBytes = new AtomicLong();
        AtomicReference<Throwable> bulkError = new AtomicReference<>();
        Thread bulk = null;
        if (bulkGiBps != null) {
            bulk = Thread.ofPlatform().name("bench-bulk").start(() -> {
                try (PageBuffer b = PageBuffer.allocate(BULK_PAGES)) {
                    while (!stop.get()) {
                        c.fetchBulk(BASE + (1L << 32), BULK_PAGES, b, 0);
                        bulkBytes.addAndGet(BULK_PAGES * 4096L);
                    }
                } catch (Throwable e) {
                    bulkError.set(e);
                }
            });
            Thread.sleep(200);
        }
        Histogram h = new Histogram(3);
        long interval = 1_000_000_000L / rate;
        long b0 = bulkBytes.get();
        long start = System.nanoTime();
        try {
            for (int i = 0; i < requests; i++) {
                long intended = start + i * interval;
                long wait;
                while ((wait = intended - System.nanoTime()) > 0) {
                    LockSupport.parkNanos(wait);
                }
                long vaddr = BASE + (long) (i & 1023) * 4096;
                c.fetch(vaddr, 1, one, 0);
                h.recordValue(System.nanoTime() - intended);
                check(one, 0, vaddr, 1);
            }
        } finally {
            stop.set(true);
            if (bulk != null) {
                bulk.join();
            }
        }
        if (bulkError.get() != null) {
            throw new BenchFailure("the bulk thread failed: " + bulkError.get());
        }
        if (bulkGiBps != null) {
            bulkGiBps[0] = (bulkBytes.get() - b0) / (1024.0 * 1024 * 1024) / ((System.nanoTime() - start) / 1e9);
        }
        long late = h.getValueAtPercentile(50);
        progress.accept(String.format(Locale.ROOT, "fixed rate %d/s%s: p50 %.1f µs, p99 %.1f µs, max %.1f µs", rate,
                bulkGiBps != null ? " during bulk" : "", late / 1e3, h.getValueAtPercentile(99) / 1e3, h.getMaxValue() / 1e3));
        return h;
    }

    /** Moves pages at offset {@code off} (bytes), {@code n} of them, into {@code buf}. */
    @FunctionalInterface
    private interface Transfer {
        void move(long off, int n, PageBuffer buf) throws IOException;
    }

    /**
     * Runs {@code t} over consecutive windows of {@code pagesPerCall} pages for {@link #seconds}, sampling the bytes
     * moved every 100 ms; returns (time s, MiB/s) points and adds the rates after the first two
     * intervals to {@code s}. Each window's first and last page are checked.
     */
    private List<double[]> transferRate(Samples s, Transfer t, int pagesPerCall) throws Exception {
        AtomicLong moved = new AtomicLong();
        AtomicBoolean stop = new AtomicBoolean();
        AtomicReference<Throwable> error = new AtomicReference<>();
        Thread worker = Thread.ofPlatform().name("bench-transfer").start(() -> {
            try (PageBuffer buf = PageBuffer.allocate(pagesPerCall)) {
                long off = 0;
                long window = (long) pagesPerCall * 4096;
                while (!stop.get()) {
                    t.move(off, pagesPerCall, buf);
                    if (AddressPages.firstWrong(buf, 0, BASE + off, 1) >= 0
                            || AddressPages.firstWrong(buf, window - 4096, BASE + off + window - 4096, 1) >= 0) {
                        throw new BenchFailure("wrong page contents at offset " + off);
                    }
                    moved.addAndGet(window);
                    off = (off + window) % (4L << 30);
                }
            } catch (Throwable e) {
                error.set(e);
            }
        });
        List<double[]> pts = new ArrayList<>();
        long start = System.nanoTime();
        long last = 0;
        int n = (int) Math.round(seconds * 1e9 / SAMPLE_NANOS);
        try {
            for (int i = 1; i <= n && error.get() == null; i++) {
                long tick = start + i * SAMPLE_NANOS;
                long wait;
                while ((wait = tick - System.nanoTime()) > 0) {
                    LockSupport.parkNanos(wait);
                }
                long now = moved.get();
                double mibps = (now - last) / (1024.0 * 1024) / (SAMPLE_NANOS / 1e9);
                last = now;
                pts.add(new double[] {i * SAMPLE_NANOS / 1e9, mibps});
                if (i > 2) {
                    s.add(mibps);
                }
            }
        } finally {
            stop.set(true);
            worker.join();
        }
        if (error.get() != null) {
            throw new BenchFailure(s.name() + " failed: " + error.get());
        }
        progress.accept(String.format(Locale.ROOT, "%s: median %.0f MiB/s over %d intervals", s.name(), s.median(), s.count()));
        return pts;
    }

    private static void check(PageBuffer buf, long offset, long vaddr, int n) {
        long wrong = AddressPages.firstWrong(buf, offset, vaddr, n);
        if (wrong >= 0) {
            throw new BenchFailure("page " + wrong + " at 0x" + Long.toHexString(vaddr) + " came back with wrong contents");
        }
    }

    private Samples directoryTransfer() throws Exception {
        Path shm = Path.of("/dev/shm");
        Path root = Files.isDirectory(shm) ? Files.createTempDirectory(shm, "lazy-bench-net") : Files.createTempDirectory("lazy-bench-net");
        Samples s = new Samples(dirMib + " MiB file", "MiB/s");
        try {
            Path dir = Files.createDirectory(root.resolve("img"));
            byte[] buf = new byte[1 << 20];
            new Random(1).nextBytes(buf);
            try (FileChannel out = FileChannel.open(dir.resolve("pages.img"), StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                for (int i = 0; i < dirMib; i++) {
                    out.write(ByteBuffer.wrap(buf));
                }
            }
            LinkedBlockingQueue<ControlConnection> accepted = new LinkedBlockingQueue<>();
            try (ControlServer server = ControlServer.listen(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0),
                    hello(Role.DESTINATION), accepted::add);
                 ControlConnection src = ControlClient.connect(server.localAddress(), hello(Role.SOURCE), Duration.ofSeconds(10))) {
                ControlConnection dst = accepted.poll(10, TimeUnit.SECONDS);
                if (dst == null) {
                    throw new BenchFailure("the control server accepted no connection within 10 s");
                }
                for (int rep = 0; rep <= repeat; rep++) {
                    Path into = Files.createDirectory(root.resolve("into" + rep));
                    CompletableFuture<DirectoryTransfer.Stats> got = CompletableFuture.supplyAsync(() -> {
                        try {
                            return DirectoryTransfer.receive(dst, into, Duration.ofSeconds(60));
                        } catch (Exception e) {
                            throw new CompletionException(e);
                        }
                    });
                    DirectoryTransfer.send(src, rep, dir);
                    DirectoryTransfer.Stats st = got.get(120, TimeUnit.SECONDS);
                    if (st.bytes() != (long) dirMib << 20) {
                        throw new BenchFailure("directory transfer delivered " + st.bytes() + " of " + ((long) dirMib << 20) + " bytes");
                    }
                    progress.accept(String.format(Locale.ROOT, "%s directory transfer %d MiB: %d ms, %.0f MiB/s", rep == 0 ? "warm-up " : "measured",
                            dirMib, st.elapsed().toMillis(), st.mibPerSecond()));
                    if (rep > 0) {
                        s.add(st.mibPerSecond());
                    }
                    RestoreBench.deleteTree(into);
                }
            }
        } finally {
            RestoreBench.deleteTree(root);
        }
        return s;
    }

    private static Hello hello(Role role) {
        return Hello.newBuilder().setProtocolVersion(1).setSoftwareVersion("lazy-bench").addCapabilities("post-copy")
                .setPageSize(4096).setToken(TOKEN).setRole(role).setMigrationId("bench").build();
    }
}
