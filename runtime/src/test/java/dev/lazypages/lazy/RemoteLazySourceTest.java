package dev.lazypages.lazy;

import static dev.lazypages.lazy.LazyFixture.PS;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.net.PageClient;
import dev.lazypages.net.PageProvider;
import dev.lazypages.net.PageServer;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real {@link LazyPageServer} on this JVM's own memory (see {@link LazyFixture}) whose pages
 * come over loopback from a {@link PageServer}: faults on the FAULT connection, the background
 * sweep on the BULK connection.
 */
class RemoteLazySourceTest {
    private static final long FEATURES = Userfaultfd.FEATURE_EVENT_REMOVE | Userfaultfd.FEATURE_EVENT_UNMAP
            | Userfaultfd.FEATURE_EVENT_REMAP;
    private static final int SEED = 11;

    @TempDir
    Path tmp;
    private final List<AutoCloseable> cleanup = new ArrayList<>();

    @AfterEach
    void release() throws Exception {
        for (int i = cleanup.size() - 1; i >= 0; i--) {
            cleanup.get(i).close();
        }
    }

    /** Pages as LazyFixture's images hold them, generated from the address; optionally slow. */
    private static final class Generated implements PageProvider {
        final java.util.concurrent.atomic.AtomicInteger reads = new java.util.concurrent.atomic.AtomicInteger();
        /** Each read takes at least this long (a slow source: requests stay in flight). */
        volatile long delayNanos;

        @Override
        public int pageSize() {
            return PS;
        }

        @Override
        public void readPages(long vaddr, int nrPages, ByteBuffer dst) {
            reads.incrementAndGet();
            if (delayNanos > 0) {
                java.util.concurrent.locks.LockSupport.parkNanos(delayNanos);
            }
            ByteBuffer w = dst.order(ByteOrder.nativeOrder());
            for (int p = 0; p < nrPages; p++) {
                long a = vaddr + (long) p * PS;
                for (int i = 0; i < PS; i += 8) {
                    w.putLong(p * PS + i, LazyFixture.word(SEED, a, i));
                }
            }
        }
    }

    private static List<LazySource.Run> runs(long base, BitSet stored) {
        List<LazySource.Run> runs = new ArrayList<>();
        for (int i = stored.nextSetBit(0); i >= 0; ) {
            int end = stored.nextClearBit(i);
            runs.add(new LazySource.Run(base + (long) i * PS, end - i));
            i = stored.nextSetBit(end);
        }
        return runs;
    }

    private byte[] expected(BitSet stored, long base, int page) {
        return stored.get(page) ? LazyFixture.page(SEED, base + (long) page * PS) : new byte[PS];
    }

    /** The statistics of the last serveRemotely. */
    private LazyStats lastStats;

    private void serveRemotely(int pages, BitSet stored, LazyPageServer.Options options, int[] touch) throws Exception {
        serveRemotely(pages, stored, options, touch, new Generated(), false);
    }

    /**
     * Serves {@code pages} pages of fresh memory from a page server over {@code provider}, touches {@code touch}
     * (all at once, or when {@code oneByOneOnceSweeping} one after the other once the provider got its first
     * read), checks every page, and returns the lazy server's statistics and the pages the page server sent.
     */
    private long[] serveRemotely(int pages, BitSet stored, LazyPageServer.Options options, int[] touch, Generated provider,
                                 boolean oneByOneOnceSweeping) throws Exception {
        Requires.userfaultfd();
        PageServer remote = generatedPageServer(provider);
        PageClient client = PageClient.connect(remote.localAddress(), "tok");
        cleanup.add(client);

        PageBuffer mem = Posix.mmapAnonymous((long) pages * PS);
        long base = mem.address();
        cleanup.add(() -> Posix.munmap(mem));
        Userfaultfd uffd = Userfaultfd.open(true);
        Userfaultfd.Api api = uffd.api(FEATURES);
        assertTrue(api.has(FEATURES), api.toString());
        uffd.register(base, (long) pages * PS, Userfaultfd.REGISTER_MODE_MISSING);
        RemoteLazySource source = new RemoteLazySource(client, runs(base, stored));
        cleanup.add(source);
        LazyPageServer server = new LazyPageServer(uffd, List.of(new AddressRange(base, base + (long) pages * PS)), source,
                options);
        cleanup.add(server::close);
        server.start();

        if (oneByOneOnceSweeping) {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (provider.reads.get() == 0 && System.nanoTime() - deadline < 0) {
                Thread.sleep(1);
            }
            for (int p : touch) {
                assertArrayEquals(expected(stored, base, p), LazyFixture.touch(mem, p, tmp).get(20, TimeUnit.SECONDS),
                        "page " + p + " as the fault saw it");
            }
        }
        List<CompletableFuture<byte[]>> seen = new ArrayList<>();
        for (int p : oneByOneOnceSweeping ? new int[0] : touch) {
            seen.add(LazyFixture.touch(mem, p, tmp));
        }
        for (int i = 0; i < seen.size(); i++) {
            assertArrayEquals(expected(stored, base, touch[i]), seen.get(i).get(20, TimeUnit.SECONDS),
                    "page " + touch[i] + " as the fault saw it");
        }
        LazyStats st = server.completion().get(60, TimeUnit.SECONDS);
        lastStats = st;
        for (int p = 0; p < pages; p++) {
            assertArrayEquals(expected(stored, base, p), LazyFixture.read(mem, p), "page " + p + " after completion");
        }
        assertEquals(stored.cardinality(), st.pagesByFault() + st.pagesByBackground() + st.pagesFoundPresent(),
                st.toString());
        assertTrue(remote.servedPages() >= st.pagesByFault() + st.pagesByBackground(), st + " vs " + remote.servedPages());
        assertTrue(source.pagesReadAsync() >= st.pagesByFault() + st.pagesByBackground(),
                "every page came asynchronously, copied from the network buffer: " + source.pagesReadAsync() + " vs " + st);
        assertEquals(0, source.pagesFetchedDirectly(), "no blocking background read");
        client.done();
        remote.done().get(10, TimeUnit.SECONDS);
        return new long[] {st.faults(), remote.servedPages()};
    }

    @Test
    void faultsAmongPagesTheSweepHasInFlightDoNotMakeItAskForThemAgain() throws Exception {
        int pages = 4096; // 16 MiB: the sweep's first four requests (1024 pages) are in flight when the faults come
        BitSet stored = new BitSet();
        stored.set(0, pages);
        Generated slow = new Generated();
        slow.delayNanos = TimeUnit.MILLISECONDS.toNanos(30);
        LazyPageServer.Options options = LazyPageServer.Options.defaults();
        long[] faultsAndServed = serveRemotely(pages, stored, options, new int[] {100, 600, 900}, slow, true);
        long faults = faultsAndServed[0];
        long served = faultsAndServed[1];
        // Each fault asks for its page and the pages after it (prefetched, or, for a random fault while the
        // background runs, BACKGROUND_FAULT_PAGES), which the sweep may have in flight too; the sweep itself
        // jumps past each fault but asks for no page twice: before, it asked again for the prefetch-around
        // pages that were already on their way.
        long bound = stored.cardinality() + faults * Math.max(1 + options.prefetchPages(), LazyPageServer.BACKGROUND_FAULT_PAGES);
        assertTrue(faults >= 3, "the touches faulted: " + faults);
        assertTrue(served <= bound, "the page server sent " + served + " pages for " + stored.cardinality()
                + " stored and " + faults + " faults (at most " + bound + ")");
    }

    @Test
    void blockingBackgroundReadsServeASweepWithSkipsAndASecondPassCorrectly() throws Exception {
        PageServer remote = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), new Generated(),
                "tok");
        cleanup.add(remote);
        PageClient client = PageClient.connect(remote.localAddress(), "tok");
        cleanup.add(client);
        long base = 0x5500_0000_0000L;
        List<LazySource.Run> runs = List.of(new LazySource.Run(base, 1000), new LazySource.Run(base + 1003L * PS, 1),
                new LazySource.Run(base + 1100L * PS, 900));
        RemoteLazySource source = new RemoteLazySource(client, runs);
        cleanup.add(source);
        PageBuffer buf = PageBuffer.allocate(64);
        cleanup.add(buf);
        java.util.Random rnd = new java.util.Random(3);
        for (int pass = 0; pass < 2; pass++) {
            for (LazySource.Run r : runs) {
                int i = 0;
                while (i < r.nrPages()) {
                    if (rnd.nextInt(10) == 0) { // a fault delivered some pages: the sweep skips them
                        i += 1 + rnd.nextInt(100);
                        continue;
                    }
                    int k = Math.min(1 + rnd.nextInt(64), r.nrPages() - i);
                    long v = r.vaddr() + (long) i * PS;
                    buf.clear();
                    source.readPagesInBackground(v, k, buf, 0);
                    for (int p = 0; p < k; p++) {
                        byte[] got = new byte[PS];
                        buf.copyTo((long) p * PS, got, 0, PS);
                        assertArrayEquals(LazyFixture.page(SEED, v + (long) p * PS), got, "page at 0x"
                                + Long.toHexString(v + (long) p * PS));
                    }
                    i += k;
                }
            }
        }
        assertTrue(source.pagesFetchedDirectly() > 0, "read blocking: " + source.pagesFetchedDirectly());
    }

    @Test
    void faultsAndBackgroundSweepGetEveryPageOverTheNetwork() throws Exception {
        int pages = 2048; // 8 MiB
        BitSet stored = new BitSet();
        stored.set(0, 700);
        stored.set(710, 1500);
        stored.set(1501);
        stored.set(1600, 2048);
        serveRemotely(pages, stored, LazyPageServer.Options.defaults(), new int[] {5, 1800, 705, 1501, 2047});
    }

    @Test
    void theFaultLoopCopiesPartOfTheBackgroundDeliveriesAndEveryPageArrivesIntact() throws Exception {
        int pages = 32_768; // 128 MiB: 128 deliveries of 1 MiB, each split into 16-page slices the fault loop may take
        BitSet stored = new BitSet();
        stored.set(0, pages);
        stored.clear(5000, 5003); // a hole: slices that skip pages nobody stored
        int[] touch = new int[64];
        for (int i = 0; i < touch.length; i++) {
            touch[i] = (i * 7919) % pages;
        }
        serveRemotely(pages, stored, LazyPageServer.Options.defaults(), touch, new Generated(), true);
        LazyStats st = lastStats;
        assertTrue(st.pagesByFaultLoopHelp() > 0, "the fault loop copied background pages between faults: " + st);
        assertTrue(st.pagesByFaultLoopHelp() <= st.pagesByBackground(), st.toString());
    }

    @Test
    void faultsAloneGetTheirPagesOverTheFaultConnection() throws Exception {
        BitSet stored = new BitSet();
        stored.set(2, 5);
        stored.set(9);
        serveRemotely(16, stored, LazyPageServer.Options.defaults().withBackground(false).withPrefetchPages(0),
                new int[] {3, 9, 2, 4});
    }

    private PageServer generatedPageServer() throws java.io.IOException {
        return generatedPageServer(new Generated());
    }

    private PageServer generatedPageServer(Generated provider) throws java.io.IOException {
        PageServer remote = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), provider, "tok");
        cleanup.add(remote);
        return remote;
    }

    /** A registered mapping of {@code pages} pages, with a server over {@code source}: faults only, one page each. */
    private LazyPageServer serveFaultsOnly(PageBuffer mem, int pages, LazySource source) {
        return serveFaultsOnly(mem, pages, source, 0);
    }

    /** The same, each fault with up to {@code prefetch} stored pages after it. */
    private LazyPageServer serveFaultsOnly(PageBuffer mem, int pages, LazySource source, int prefetch) {
        long base = mem.address();
        Userfaultfd uffd = Userfaultfd.open(true);
        uffd.api(FEATURES);
        uffd.register(base, (long) pages * PS, Userfaultfd.REGISTER_MODE_MISSING);
        LazyPageServer server = new LazyPageServer(uffd, List.of(new AddressRange(base, base + (long) pages * PS)), source,
                LazyPageServer.Options.defaults().withBackground(false).withPrefetchPages(prefetch).withPrefetchAround(0));
        cleanup.add(server::close);
        return server.start();
    }

    /** Every one of {@code pages} pages at {@code base} from the remote side. */
    private RemoteLazySource remoteSource(PageClient client, long base, int pages) {
        RemoteLazySource source = new RemoteLazySource(client, List.of(new LazySource.Run(base, pages)));
        cleanup.add(source);
        return source;
    }

    private PageBuffer mapping(int pages) {
        PageBuffer mem = Posix.mmapAnonymous((long) pages * PS);
        cleanup.add(() -> Posix.munmap(mem));
        return mem;
    }

    /** The uffd is read on the page client's FAULT loop: a watch thread runs, no fault thread does. */
    private static void assertNoFaultThread() {
        java.util.Set<String> names = new java.util.HashSet<>();
        Thread.getAllStackTraces().keySet().forEach(t -> names.add(t.getName()));
        assertTrue(names.contains("lazy-fault-watch"), "the watch thread runs: " + names);
        assertTrue(names.stream().noneMatch(n -> n.startsWith("lazy-faults")), "no fault thread: " + names);
    }

    /**
     * Issue 5 point 4, the hop-free fault path: with the epoll transport the uffd is served on the page
     * client's FAULT event loop (no fault thread reads it), and a fault read there while the connection
     * is down waits, is sent again on the new connection and is served.
     */
    @Test
    void faultsAreServedOnTheFaultLoopWithoutAFaultThreadAndWaitThroughAnOutage() throws Exception {
        Requires.userfaultfd();
        PageServer remote = generatedPageServer();
        dev.lazypages.net.CuttingProxy proxy = new dev.lazypages.net.CuttingProxy(remote.localAddress());
        cleanup.add(proxy);
        PageClient client = PageClient.connect(proxy.address(), "tok");
        cleanup.add(client);
        int pages = 8;
        PageBuffer mem = mapping(pages);
        long base = mem.address();
        LazyPageServer server = serveFaultsOnly(mem, pages, remoteSource(client, base, pages));
        BitSet stored = new BitSet();
        stored.set(0, pages);

        assertArrayEquals(expected(stored, base, 0), LazyFixture.touch(mem, 0, tmp).get(20, TimeUnit.SECONDS));
        assertNoFaultThread();

        proxy.refuse(true);
        proxy.cutAll();
        CompletableFuture<byte[]> during = LazyFixture.touch(mem, 5, tmp);
        Thread.sleep(500);
        assertTrue(!during.isDone(), "the fault waits while the source cannot be reached");
        proxy.refuse(false);
        assertArrayEquals(expected(stored, base, 5), during.get(20, TimeUnit.SECONDS), "page 5 after the reconnection");
        assertTrue(client.reconnects() >= 1, "reconnected: " + client.reconnects());
        for (int p : new int[] {1, 2, 3, 4, 6, 7}) {
            assertArrayEquals(expected(stored, base, p), LazyFixture.touch(mem, p, tmp).get(20, TimeUnit.SECONDS));
        }
        LazyStats st = server.completion().get(20, TimeUnit.SECONDS);
        assertEquals(pages, st.pagesByFault(), st.toString());
    }

    /** The page client closed under a server on its loop (the destination failing): the server fails, it does not hang. */
    @Test
    void aServerOnTheFaultLoopFailsWhenItsPageClientCloses() throws Exception {
        Requires.userfaultfd();
        PageServer remote = generatedPageServer();
        PageClient client = PageClient.connect(remote.localAddress(), "tok");
        int pages = 4;
        PageBuffer mem = mapping(pages);
        LazyPageServer server = serveFaultsOnly(mem, pages, remoteSource(client, mem.address(), pages));
        BitSet stored = new BitSet();
        stored.set(0, pages);
        assertArrayEquals(expected(stored, mem.address(), 1), LazyFixture.touch(mem, 1, tmp).get(20, TimeUnit.SECONDS));
        client.close();
        java.util.concurrent.ExecutionException e = assertThrows(java.util.concurrent.ExecutionException.class,
                () -> server.completion().get(10, TimeUnit.SECONDS));
        assertTrue(e.getCause().getMessage().contains("fault event loop shut down"), e.getCause().getMessage());
    }

    /**
     * A hybrid restore's source (local image pages plus REMOTE ones, as the lazy handoff builds it)
     * lends the remote's FAULT loop too: remote pages come asynchronously there, local ones are read
     * on the loop from the local source, one page per fault, so that a prefetch never turns into a
     * blocking remote read on the loop (which would wait for itself: MigrationTest's hybrid runs).
     */
    @Test
    void aHybridSourceServesLocalAndRemotePagesOnTheFaultLoop() throws Exception {
        Requires.userfaultfd();
        PageServer remote = generatedPageServer();
        PageClient client = PageClient.connect(remote.localAddress(), "tok");
        cleanup.add(client);
        int pages = 8;
        PageBuffer mem = mapping(pages);
        long base = mem.address();
        java.util.concurrent.atomic.AtomicInteger localReads = new java.util.concurrent.atomic.AtomicInteger();
        LazySource local = new LazySource() { // pages 0-3, as a local image would hold them
            @Override
            public int pageSize() {
                return PS;
            }

            @Override
            public List<Run> storedRuns() {
                return List.of(new Run(base, 4));
            }

            @Override
            public void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) {
                localReads.incrementAndGet();
                for (int p = 0; p < nrPages; p++) {
                    dst.copyFrom(LazyFixture.page(SEED, vaddr + (long) p * PS), 0, dstOffset + (long) p * PS, PS);
                }
            }
        };
        List<LazySource.Run> remoteRuns = List.of(new LazySource.Run(base + 4L * PS, 4));
        RemoteLazySource net = new RemoteLazySource(client, remoteRuns);
        cleanup.add(net);
        // prefetch 3: a fault on local page 3 would read 3-6, across into the remote pages
        LazyPageServer server = serveFaultsOnly(mem, pages, new CompositeLazySource(local, net, remoteRuns), 3);

        BitSet all = new BitSet();
        all.set(0, pages);
        for (int p : new int[] {3, 6, 1, 4, 0, 7, 2, 5}) {
            assertArrayEquals(expected(all, base, p), LazyFixture.touch(mem, p, tmp).get(20, TimeUnit.SECONDS), "page " + p);
            if (p == 3) {
                assertNoFaultThread();
            }
        }
        LazyStats st = server.completion().get(20, TimeUnit.SECONDS);
        assertEquals(pages, st.pagesByFault(), st.toString());
        assertEquals(4, localReads.get(), "the local pages came from the local source");
        assertEquals(4, net.pagesReadAsync(), "the remote ones over the FAULT connection");
    }

    @Test
    void runsAreSortedAndAdjacentOnesMerged() {
        List<LazySource.Run> in = List.of(new LazySource.Run(10L * PS, 2), new LazySource.Run(0, 3),
                new LazySource.Run(3L * PS, 1), new LazySource.Run(12L * PS, 4));
        assertEquals(List.of(new LazySource.Run(0, 4), new LazySource.Run(10L * PS, 6)), RemoteLazySource.normalize(in, PS));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> RemoteLazySource.normalize(
                List.of(new LazySource.Run(0, 3), new LazySource.Run(2L * PS, 1)), PS));
        assertTrue(e.getMessage().contains("overlap"), e.getMessage());
    }
}
