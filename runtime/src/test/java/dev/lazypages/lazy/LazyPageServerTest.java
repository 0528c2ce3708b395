package dev.lazypages.lazy;

import static dev.lazypages.lazy.LazyFixture.PS;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.image.ImageReader;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The lazy page server on this JVM's own memory: a fresh anonymous mapping registered with a
 * userfaultfd, a synthetic image of it, faults raised from inside system calls (see
 * {@link LazyFixture}). Memory is read with Java loads only after the server completed (it
 * unregistered everything by then).
 */
class LazyPageServerTest {
    private static final long FEATURES = Userfaultfd.FEATURE_EVENT_REMOVE | Userfaultfd.FEATURE_EVENT_UNMAP
            | Userfaultfd.FEATURE_EVENT_REMAP;
    private static final int SEED = 7;

    @TempDir
    Path tmp;

    private final List<AutoCloseable> cleanup = new ArrayList<>();
    private PageBuffer mem;
    private long base;
    private int pages;
    private BitSet stored;
    private LazyFixture.CountingSource source;
    private LazyPageServer server;
    private Userfaultfd uffd;
    private int run;
    /** What the server reads through, around the counting source. */
    private java.util.function.UnaryOperator<LazySource> wrapSource = java.util.function.UnaryOperator.identity();

    @BeforeEach
    void needsUserfaultfd() {
        Requires.userfaultfd();
    }

    @AfterEach
    void release() throws Exception {
        for (int i = cleanup.size() - 1; i >= 0; i--) {
            cleanup.get(i).close();
        }
    }

    /** Maps {@code pages} fresh pages, writes an image storing {@code stored}, registers, builds the server. */
    private LazyPageServer setUp(int pages, BitSet stored, LazyPageServer.Options options) throws Exception {
        this.pages = pages;
        this.stored = stored;
        PageBuffer m = Posix.mmapAnonymous((long) pages * PS);
        mem = m;
        base = m.address();
        cleanup.add(() -> Posix.munmap(m));
        Path dir = LazyFixture.write(tmp.resolve("img" + run++), base, pages, stored, SEED);
        ImageReader reader = ImageReader.open(dir);
        cleanup.add(reader);
        ImageLazySource image = ImageLazySource.open(reader, LazyFixture.PID);
        cleanup.add(image);
        source = new LazyFixture.CountingSource(image);
        Userfaultfd uffd = Userfaultfd.open(true);
        this.uffd = uffd;
        Userfaultfd.Api api = uffd.api(FEATURES);
        assertTrue(api.has(FEATURES), api.toString());
        uffd.register(base, (long) pages * PS, Userfaultfd.REGISTER_MODE_MISSING);
        LazyPageServer s = new LazyPageServer(uffd, List.of(new AddressRange(base, base + (long) pages * PS)),
                wrapSource.apply(source), options);
        server = s;
        cleanup.add(s::close);
        return s;
    }

    /**
     * A source that records the pages of each fault read and of each background read, and whose background brings
     * nothing before {@code gate} opens (the background runs, but the faults are served first).
     */
    private static java.util.function.UnaryOperator<LazySource> gated(java.util.concurrent.CountDownLatch gate,
            java.util.Queue<Integer> faultReads, java.util.Queue<Integer> backgroundReads) {
        return src -> new LazyFixture.WrappingSource(src) {
            @Override
            public void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws java.io.IOException {
                faultReads.add(nrPages);
                inner.readPages(vaddr, nrPages, dst, dstOffset);
            }

            @Override
            public void readPagesInBackground(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws java.io.IOException {
                try {
                    gate.await();
                } catch (InterruptedException e) {
                    throw new java.io.InterruptedIOException();
                }
                backgroundReads.add(nrPages);
                inner.readPages(vaddr, nrPages, dst, dstOffset);
            }
        };
    }

    private static BitSet bits(int... pages) {
        BitSet b = new BitSet();
        for (int p : pages) {
            b.set(p);
        }
        return b;
    }

    private static BitSet range(int from, int to) {
        BitSet b = new BitSet();
        b.set(from, to);
        return b;
    }

    private byte[] expected(int page) {
        return stored.get(page) ? LazyFixture.page(SEED, base + (long) page * PS) : new byte[PS];
    }

    private static <T> T await(CompletableFuture<T> f) throws Exception {
        return f.get(20, TimeUnit.SECONDS);
    }

    /** After completion: every page still mapped holds what the image says, except those in {@code zeroed}. */
    private void assertMemoryMatchesImage(BitSet zeroed, BitSet unmapped) {
        for (int p = 0; p < pages; p++) {
            if (unmapped.get(p)) {
                continue;
            }
            byte[] want = zeroed.get(p) ? new byte[PS] : expected(p);
            assertArrayEquals(want, LazyFixture.read(mem, p), "page " + p);
        }
    }

    private static LazyPageServer.Options faultsOnly() {
        return LazyPageServer.Options.defaults().withBackground(false).withPrefetchPages(0);
    }

    @Test
    void faultsOnStoredPagesGetTheImageBytes() throws Exception {
        LazyPageServer s = setUp(16, bits(2, 3, 4, 10), faultsOnly()).start();
        for (int p : new int[] {3, 10, 2, 4}) {
            assertArrayEquals(expected(p), await(LazyFixture.touch(mem, p, tmp)), "page " + p + " as the fault saw it");
        }
        LazyStats st = await(s.completion());
        assertEquals(4, st.faultsCopied(), st.toString());
        assertEquals(4, st.pagesByFault(), st.toString());
        assertEquals(0, st.pagesByBackground(), st.toString());
        assertEquals(4, st.copyLatency().getTotalCount());
        assertEquals(4, source.reads.get(), "one source read per fault without prefetch");
        assertMemoryMatchesImage(new BitSet(), new BitSet());
    }

    @Test
    void prefetchCopiesTheFollowingStoredPagesWithTheFault() throws Exception {
        LazyPageServer s = setUp(16, range(0, 8), faultsOnly().withPrefetchPages(3)).start();
        assertArrayEquals(expected(0), await(LazyFixture.touch(mem, 0, tmp)));
        assertArrayEquals(expected(4), await(LazyFixture.touch(mem, 4, tmp)));
        LazyStats st = await(s.completion());
        assertEquals(2, st.faultsCopied(), st.toString());
        assertEquals(8, st.pagesByFault(), st.toString());
        assertMemoryMatchesImage(new BitSet(), new BitSet());
    }

    /**
     * Prefetch only where access looks sequential: after the first fault, one far from where every
     * recent fault ended reads its page alone (a random access pays for no neighbours), one right
     * after a recent fault's pages gets the following pages too.
     */
    @Test
    void randomFaultsReadTheirPageAloneSequentialOnesPrefetch() throws Exception {
        LazyPageServer s = setUp(256, range(0, 256), faultsOnly().withPrefetchPages(3)).start();
        assertArrayEquals(expected(0), await(LazyFixture.touch(mem, 0, tmp)));
        assertEquals(4, source.pages.get(), "the first fault prefetches");
        for (int p : new int[] {100, 200, 50}) { // far from every recent fault: random
            int before = source.pages.get();
            assertArrayEquals(expected(p), await(LazyFixture.touch(mem, p, tmp)));
            assertEquals(1, source.pages.get() - before, "random fault at page " + p + " read its page alone");
        }
        int before = source.pages.get();
        assertArrayEquals(expected(101), await(LazyFixture.touch(mem, 101, tmp))); // right after the fault at 100
        assertEquals(4, source.pages.get() - before, "a sequential fault prefetches");
        assertArrayEquals(expected(105), await(LazyFixture.touch(mem, 105, tmp))); // where that one ended (101-104)
        assertEquals(8, source.pages.get() - before);
        assertEquals(4 + 3 + 8, source.pages.get(), "pages read in all");
        // the faulting page is woken before the copy's other pages are counted delivered: wait for the count
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (s.storedPages() - s.pendingPages() < 15 && System.nanoTime() - deadline < 0) {
            Thread.sleep(1);
        }
        assertEquals(15, s.storedPages() - s.pendingPages(), "15 pages delivered, none twice");
    }

    /**
     * While the background transfer runs, every page has to come anyway: a random fault brings the
     * stored pages after it too ({@link LazyPageServer#BACKGROUND_FAULT_PAGES}), so that a process
     * touching memory at random ahead of the background pays one request per 16 pages, not per page.
     */
    @Test
    void withTheBackgroundRunningRandomFaultsBringTheFollowingPagesToo() throws Exception {
        java.util.concurrent.CountDownLatch gate = new java.util.concurrent.CountDownLatch(1);
        java.util.Queue<Integer> faultReads = new java.util.concurrent.ConcurrentLinkedQueue<>();
        wrapSource = gated(gate, faultReads, new java.util.concurrent.ConcurrentLinkedQueue<>());
        int n = LazyPageServer.BACKGROUND_FAULT_PAGES;
        assertTrue(n > 1, "the default brings more than the faulting page");
        LazyPageServer s = setUp(256, range(0, 256), LazyPageServer.Options.defaults().withPrefetchPages(3)).start();
        try {
            assertArrayEquals(expected(0), await(LazyFixture.touch(mem, 0, tmp)));
            for (int p : new int[] {100, 200, 50, 250}) { // far from every recent fault: random
                assertArrayEquals(expected(p), await(LazyFixture.touch(mem, p, tmp)), "page " + p);
            }
        } finally {
            gate.countDown();
        }
        assertEquals(List.of(4, n, n, n, 6), List.copyOf(faultReads), "the first fault prefetches 3 pages; random ones bring "
                + n + " pages, or up to the region's end (250-255)");
        for (int p : new int[] {100 + n - 1, 200 + n - 1, 50 + n - 1, 255}) {
            assertArrayEquals(expected(p), LazyFixture.read(mem, p), "page " + p + " came with its fault");
        }
        await(s.completion());
        assertMemoryMatchesImage(new BitSet(), new BitSet());
    }

    /**
     * With a bandwidth cap the background gives way to the faults: a random fault brings its page alone,
     * as without the background, and the background's requests are at most 64 pages.
     */
    @Test
    void withACappedBackgroundRandomFaultsBringTheirPageAloneAndTheBackgroundAsksInSmallRequests() throws Exception {
        java.util.concurrent.CountDownLatch gate = new java.util.concurrent.CountDownLatch(1);
        java.util.Queue<Integer> faultReads = new java.util.concurrent.ConcurrentLinkedQueue<>();
        java.util.Queue<Integer> backgroundReads = new java.util.concurrent.ConcurrentLinkedQueue<>();
        wrapSource = gated(gate, faultReads, backgroundReads);
        LazyPageServer.Options o = LazyPageServer.Options.defaults().withPrefetchPages(3).withBackgroundBandwidth(64L << 20);
        assertTrue(o.latencyFirst());
        LazyPageServer s = setUp(1024, range(0, 1024), o).start();
        try {
            assertArrayEquals(expected(0), await(LazyFixture.touch(mem, 0, tmp)));
            for (int p : new int[] {400, 800, 200, 1000}) {
                assertArrayEquals(expected(p), await(LazyFixture.touch(mem, p, tmp)), "page " + p);
            }
        } finally {
            gate.countDown();
        }
        assertEquals(List.of(4, 1, 1, 1, 1), List.copyOf(faultReads), "the first fault prefetches 3 pages, random ones bring their page");
        LazyStats st = await(s.completion());
        assertTrue(backgroundReads.stream().allMatch(n -> n <= LazyPageServer.LATENCY_FIRST_CHUNK_PAGES), backgroundReads.toString());
        assertTrue(backgroundReads.stream().anyMatch(n -> n == LazyPageServer.LATENCY_FIRST_CHUNK_PAGES), backgroundReads.toString());
        assertEquals(0, st.faultsAwaitingBackground(), st.toString());
        assertMemoryMatchesImage(new BitSet(), new BitSet());
    }

    /** 16 MiB at 64 MiB/s take a quarter of a second at least: the cap holds (and the stats say how long it held). */
    @Test
    void aCappedBackgroundMovesNoFasterThanItsCap() throws Exception {
        LazyPageServer s = setUp(4096, range(0, 4096), LazyPageServer.Options.defaults().withBackgroundBandwidth(64L << 20));
        long t0 = System.nanoTime();
        s.start();
        LazyStats st = await(s.completion());
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms >= 250 - 2, "16 MiB in " + ms + " ms: faster than 64 MiB/s (" + st + ")");
        assertTrue(st.backgroundPacedNanos() > 100_000_000L, st.toString());
        assertTrue(st.toString().contains("waiting for the bandwidth cap"), st.toString());
        assertEquals(4096, st.pagesByBackground(), st.toString());
        assertMemoryMatchesImage(new BitSet(), new BitSet());
    }

    @Test
    void aNegativeCapIsRefused() {
        assertThrows(IllegalArgumentException.class, () -> LazyPageServer.Options.defaults().withBackgroundBandwidth(-1));
    }

    @Test
    void faultsOnPagesNotInTheImageGetZerosWithoutReadingTheSource() throws Exception {
        LazyPageServer s = setUp(16, bits(1), faultsOnly()).start();
        for (int p : new int[] {0, 7, 15}) {
            assertArrayEquals(new byte[PS], await(LazyFixture.touch(mem, p, tmp)), "page " + p);
        }
        assertEquals(0, source.reads.get(), "zero pages never reach the source");
        assertEquals(1, s.pendingPages());
        assertArrayEquals(expected(1), await(LazyFixture.touch(mem, 1, tmp)));
        LazyStats st = await(s.completion());
        assertEquals(3, st.zeroPages(), st.toString());
        assertEquals(1, source.reads.get());
    }

    @Test
    void backgroundFillCompletesAndEverythingMatchesTheImage() throws Exception {
        BitSet st = new BitSet();
        Random rnd = new Random(1);
        for (int p = 0; p < 2048; p++) {
            if (rnd.nextInt(4) != 0) {
                st.set(p);
            }
        }
        LazyPageServer s = setUp(2048, st, LazyPageServer.Options.defaults()).start();
        LazyStats stats = await(s.completion());
        assertEquals(st.cardinality(), stats.pagesByBackground() + stats.pagesByFault() + stats.pagesFoundPresent(), stats.toString());
        assertEquals(0, s.pendingPages());
        assertTrue(stats.backgroundMiBps() > 0, stats.toString());
        assertMemoryMatchesImage(new BitSet(), new BitSet());
    }

    @Test
    void afterAFaultTheBackgroundSweepGoesOnFromThePagesFollowingIt() throws Exception {
        LazyPageServer.Options options = LazyPageServer.Options.defaults();
        LazyPageServer s = setUp(4096, range(0, 4096), options);
        source.delayNanos = TimeUnit.MILLISECONDS.toNanos(5); // the sweep needs ~80 ms to get to the fault by itself
        s.start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (source.backgroundReads.isEmpty() && System.nanoTime() - deadline < 0) {
            Thread.sleep(1);
        }
        int fault = 3000;
        assertArrayEquals(expected(fault), await(LazyFixture.touch(mem, fault, tmp)));
        LazyStats stats = await(s.completion());
        assertMemoryMatchesImage(new BitSet(), new BitSet());
        List<Integer> reads = new ArrayList<>();
        for (long a : source.backgroundReads) {
            reads.add((int) ((a - base) / PS));
        }
        int jump = 0;
        while (jump < reads.size() && reads.get(jump) < fault) {
            jump++;
        }
        int after = fault + 1 + options.prefetchPages();
        assertTrue(jump + 1 < reads.size(), "reads " + reads + ", " + stats);
        assertEquals(after, reads.get(jump), "the sweep jumped to the pages after the fault's: " + reads);
        assertEquals(after + options.prefetchAroundPages(), reads.get(jump + 1),
                "and went on from there (its first request there of " + options.prefetchAroundPages() + " pages): " + reads);
        assertTrue(reads.get(jump - 1) < 1024, "before the fault it was at the start: " + reads);
    }

    @Test
    void scatteredPagesGoManyAtATimeOverALinkWithLatencyFullRequestsOnlyAFew() throws Exception {
        LazyPageServer.Options options = LazyPageServer.Options.defaults();
        BitSet st = new BitSet();
        for (int p = 0; p < 2048; p += 4) { // 512 single pages: a hybrid migration's last dirty set
            st.set(p);
        }
        st.set(4096, 4096 + 8 * options.backgroundChunkPages()); // and 8 full-size requests' worth after them
        LazyFixture.LatentSource[] latent = new LazyFixture.LatentSource[1];
        wrapSource = src -> latent[0] = new LazyFixture.LatentSource(src, TimeUnit.MILLISECONDS.toNanos(2));
        LazyPageServer s = setUp(4096 + 8 * options.backgroundChunkPages(), st, options);
        cleanup.add(latent[0]);
        LazyStats stats = await(s.start().completion());
        assertMemoryMatchesImage(new BitSet(), new BitSet());
        assertEquals(st.cardinality(), stats.pagesByBackground() + stats.pagesByFault() + stats.pagesFoundPresent(), stats.toString());
        // A window of backgroundRequests reads would take 512 / 4 round trips for the single pages; it counts pages.
        assertTrue(latent[0].maxOutstanding.get() > 4 * options.backgroundRequests(),
                "at most " + latent[0].maxOutstanding.get() + " reads were in flight at once");
        assertTrue(latent[0].maxOutstandingPages.get() <= (long) options.backgroundRequests() * options.backgroundChunkPages(),
                latent[0].maxOutstandingPages.get() + " pages in flight at once");
    }

    /**
     * A fault on a page the oldest background reads in flight are bringing waits for them (their
     * copy wakes the thread) instead of asking for the page a second time; one on a page of a
     * later read asks. Reads here take 200 ms, and the wait is unbounded, so which fault asked
     * does not depend on timing.
     */
    @Test
    void aFaultOnAPageTheOldestBackgroundReadsAreBringingWaitsForThemInsteadOfAskingAgain() throws Exception {
        LazyFixture.LatentSource latent = startWithTheFirstBackgroundReadsInFlight(TimeUnit.SECONDS.toNanos(60));
        int chunk = LazyPageServer.Options.defaults().backgroundChunkPages();
        int inOldest = 5;
        int inLater = 3 * chunk + 5; // the fourth read
        CompletableFuture<byte[]> waits = LazyFixture.touch(mem, inOldest, tmp);
        CompletableFuture<byte[]> asks = LazyFixture.touch(mem, inLater, tmp);
        assertArrayEquals(expected(inOldest), await(waits));
        assertArrayEquals(expected(inLater), await(asks));
        LazyStats stats = await(server.completion());
        assertMemoryMatchesImage(new BitSet(), new BitSet());
        assertEquals(List.of(base + (long) inLater * PS), List.copyOf(latent.faultReads),
                "only the fault beyond the two oldest reads asked the source: " + stats);
        assertEquals(1, stats.faultsAwaitingBackground(), stats.toString());
    }

    /** The same faults with waiting off (-Dlazypages.awaitBackgroundMicros=0) both ask: what the wait saves. */
    @Test
    void withoutTheWaitBothFaultsAskTheSource() throws Exception {
        LazyFixture.LatentSource latent = startWithTheFirstBackgroundReadsInFlight(0);
        assertArrayEquals(expected(5), await(LazyFixture.touch(mem, 5, tmp)));
        LazyStats stats = await(server.completion());
        assertMemoryMatchesImage(new BitSet(), new BitSet());
        assertEquals(List.of(base + 5L * PS), List.copyOf(latent.faultReads), stats.toString());
        assertEquals(0, stats.faultsAwaitingBackground(), stats.toString());
    }

    /** 8 full background reads' worth of stored pages behind a 200 ms link; started, returns once the first reads are in flight. */
    private LazyFixture.LatentSource startWithTheFirstBackgroundReadsInFlight(long awaitBackgroundNanos) throws Exception {
        LazyPageServer.Options options = LazyPageServer.Options.defaults();
        int chunk = options.backgroundChunkPages();
        LazyFixture.LatentSource[] latent = new LazyFixture.LatentSource[1];
        wrapSource = src -> latent[0] = new LazyFixture.LatentSource(src, TimeUnit.MILLISECONDS.toNanos(200));
        LazyPageServer s = setUp(8 * chunk, range(0, 8 * chunk), options);
        cleanup.add(latent[0]);
        s.awaitBackground(awaitBackgroundNanos).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (latent[0].outstanding.get() < options.backgroundRequests() && System.nanoTime() - deadline < 0) {
            Thread.sleep(1);
        }
        assertEquals(options.backgroundRequests(), latent[0].outstanding.get(), "the first reads are in flight");
        return latent[0];
    }

    /**
     * A background copy whose run meets a page already present part way (UFFDIO_COPY stops there:
     * the kernel's EAGAIN with the pages before it copied) credits the pages it did copy to the
     * background, counts the present one as found present, and copies the rest of the run after it.
     */
    @Test
    void aBackgroundCopyStoppedPartWayByAPresentPageCountsWhatItCopiedAndGoesOn() throws Exception {
        LazyPageServer s = setUp(64, range(0, 64), LazyPageServer.Options.defaults().withBackgroundChunk(64, 64));
        try (PageBuffer src = PageBuffer.allocate(1)) {
            src.copyFrom(expected(20), 0, 0, PS);
            assertEquals(PS, uffd.copy(base + 20L * PS, src.address(), PS, 0), "page 20 present before the server starts");
        }
        LazyStats stats = await(s.start().completion());
        assertMemoryMatchesImage(new BitSet(), new BitSet());
        assertEquals(1, stats.pagesFoundPresent(), stats.toString());
        assertEquals(63, stats.pagesByBackground(), stats.toString());
    }

    @Test
    void faultAndBackgroundRacingOnTheSamePagesNeverLoseOrCorruptAPage() throws Exception {
        long alreadyThere = 0;
        for (int iter = 0; iter < 25; iter++) {
            cleanupNow();
            BitSet st = range(0, 256);
            st.clear(100, 110); // some zero pages among them
            LazyPageServer s = setUp(256, st, LazyPageServer.Options.defaults().withPrefetchPages(iter % 3)
                    .withBackgroundChunk(8, 2)).start();
            List<CompletableFuture<byte[]>> touches = new ArrayList<>();
            List<Integer> touched = new ArrayList<>();
            Random rnd = new Random(iter);
            for (int t = 0; t < 12; t++) {
                int p = rnd.nextInt(256);
                touched.add(p);
                touches.add(LazyFixture.touch(mem, p, tmp));
            }
            for (int t = 0; t < touches.size(); t++) {
                assertArrayEquals(expected(touched.get(t)), await(touches.get(t)), "iteration " + iter + ", page " + touched.get(t));
            }
            LazyStats stats = await(s.completion());
            alreadyThere += stats.faultsAlreadyThere();
            assertEquals(st.cardinality(), stats.pagesByBackground() + stats.pagesByFault() + stats.pagesFoundPresent(), stats.toString());
            assertMemoryMatchesImage(new BitSet(), new BitSet());
        }
        System.out.println("EEXIST races seen by faults over 25 runs: " + alreadyThere);
    }

    private void cleanupNow() throws Exception {
        release();
        cleanup.clear();
    }

    @Test
    void removeEventDontneedBeforeTheFillMeansThatRangeIsNeverCopied() throws Exception {
        LazyPageServer s = setUp(32, range(0, 32), faultsOnly()).start();
        assertArrayEquals(expected(9), await(LazyFixture.touch(mem, 9, tmp)), "one page delivered before the madvise");
        Posix.madvise(mem.pages(8, 8), Posix.MADV_DONTNEED); // blocks until the server read the REMOVE event
        for (int p = 0; p < 32; p++) {
            if (p < 8 || p >= 16) {
                assertArrayEquals(expected(p), await(LazyFixture.touch(mem, p, tmp)), "page " + p);
            }
        }
        assertArrayEquals(new byte[PS], await(LazyFixture.touch(mem, 12, tmp)), "a dropped page faults in as zeros");
        LazyStats st = await(s.completion());
        assertEquals(1, st.removes(), st.toString());
        assertEquals(7, st.pagesDropped(), st.toString());
        assertMemoryMatchesImage(range(8, 16), new BitSet());
    }

    @Test
    void dontneedDuringTheBackgroundFillLeavesTheRangeZero() throws Exception {
        for (int iter = 0; iter < 10; iter++) {
            cleanupNow();
            LazyPageServer s = setUp(1024, range(0, 1024), LazyPageServer.Options.defaults().withBackgroundChunk(16, 4));
            source.delayNanos = 200_000; // 64 reads of 16 pages: about 13 ms of fill
            s.start();
            int from = 64 + 80 * iter;
            LockSupport.parkNanos(iter * 500_000L); // from before the fill reaches the range to after
            Posix.madvise(mem.pages(from, 64), Posix.MADV_DONTNEED);
            LazyStats st = await(s.completion());
            assertEquals(1, st.removes(), st.toString());
            assertMemoryMatchesImage(range(from, from + 64), new BitSet());
        }
    }

    @Test
    void unmapEventMunmapOfPartMeansThosePagesAreNeverCopiedAndTheServerCompletes() throws Exception {
        LazyPageServer s = setUp(64, range(0, 64), faultsOnly()).start();
        Posix.munmap(mem.pages(16, 16)); // blocks until the UNMAP event is read
        for (int p = 0; p < 64; p++) {
            if (p < 16 || p >= 32) {
                assertArrayEquals(expected(p), await(LazyFixture.touch(mem, p, tmp)), "page " + p);
            }
        }
        LazyStats st = await(s.completion());
        assertEquals(1, st.unmaps(), st.toString());
        assertEquals(16, st.pagesDropped(), st.toString());
        assertEquals(0, source.pages.get() - 48, "the unmapped pages were never read");
        assertMemoryMatchesImage(new BitSet(), range(16, 32));
    }

    @Test
    void munmapDuringTheBackgroundFillCompletes() throws Exception {
        LazyPageServer s = setUp(1024, range(0, 1024), LazyPageServer.Options.defaults()).start();
        Posix.munmap(mem.pages(512, 256));
        LazyStats st = await(s.completion());
        assertEquals(1024, st.pagesByBackground() + st.pagesByFault() + st.pagesDropped() + st.pagesFoundPresent(), st.toString());
        assertMemoryMatchesImage(new BitSet(), range(512, 768));
    }

    @Test
    void remapEventMremapOfTheRegisteredRangeMovesWhatIsServed() throws Exception {
        LazyPageServer s = setUp(32, bits(0, 1, 5, 20, 31), faultsOnly()).start();
        assertArrayEquals(expected(1), await(LazyFixture.touch(mem, 1, tmp)), "delivered before the move");
        PageBuffer target = Posix.mmapAnonymous(32L * PS); // a place to move to, not registered
        PageBuffer moved = Posix.mremap(mem, 32L * PS, Posix.MREMAP_MAYMOVE | Posix.MREMAP_FIXED, target.address());
        PageBuffer old = mem;
        mem = moved;
        cleanup.add(() -> Posix.munmap(moved));
        assertEquals(target.address(), moved.address());
        for (int p : new int[] {0, 5, 20, 31}) {
            assertArrayEquals(LazyFixture.page(SEED, old.address() + (long) p * PS),
                    await(LazyFixture.touch(moved, p, tmp)), "page " + p + " at its new address");
        }
        assertArrayEquals(new byte[PS], await(LazyFixture.touch(moved, 7, tmp)), "a page not stored, at the new address");
        LazyStats st = await(s.completion());
        assertEquals(1, st.remaps(), st.toString());
        for (int p = 0; p < 32; p++) {
            assertArrayEquals(stored.get(p) ? LazyFixture.page(SEED, old.address() + (long) p * PS) : new byte[PS],
                    LazyFixture.read(moved, p), "page " + p);
        }
        mem = old;
    }

    @Test
    void mremapDuringTheBackgroundFillMovesThePendingPages() throws Exception {
        // A slowed source (64 reads of 16 pages, about 13 ms) so that the move lands mid-fill.
        LazyPageServer s = setUp(1024, range(0, 1024), LazyPageServer.Options.defaults().withBackgroundChunk(16, 4));
        source.delayNanos = 200_000;
        s.start();
        LockSupport.parkNanos(2_000_000L);
        PageBuffer target = Posix.mmapAnonymous(1024L * PS);
        PageBuffer moved = Posix.mremap(mem, 1024L * PS, Posix.MREMAP_MAYMOVE | Posix.MREMAP_FIXED, target.address());
        cleanup.add(() -> Posix.munmap(moved));
        long oldBase = base;
        LazyStats st = await(s.completion());
        assertEquals(1, st.remaps(), st.toString());
        for (int p = 0; p < 1024; p++) {
            assertArrayEquals(LazyFixture.page(SEED, oldBase + (long) p * PS), LazyFixture.read(moved, p), "page " + p);
        }
    }

    @Test
    void afterCompletionTheRangeIsUnregisteredAndNeverPopulatedPagesWorkWithoutTheServer() throws Exception {
        LazyPageServer s = setUp(64, bits(3, 4), LazyPageServer.Options.defaults()).start();
        LazyStats st = await(s.completion());
        assertEquals(2, st.pagesByBackground() + st.pagesByFault() + st.pagesFoundPresent(), st.toString());
        // Java loads and stores on pages never populated: plain kernel zero fill now, no uffd
        assertEquals(0L, mem.getLong(40L * PS));
        assertMemoryMatchesImage(new BitSet(), new BitSet());
        mem.putLong(41L * PS, 0x1234);
        assertEquals(0x1234, mem.getLong(41L * PS));
    }

    @Test
    void anImageWithNoStoredPagesCompletesAtOnce() throws Exception {
        LazyPageServer s = setUp(8, new BitSet(), LazyPageServer.Options.defaults()).start();
        LazyStats st = await(s.completion());
        assertEquals(0, st.pagesByBackground());
        assertEquals(0L, mem.getLong(0));
    }

    @Test
    void aFailingSourceFailsTheCompletionNamingTheStep() throws Exception {
        PageBuffer m = Posix.mmapAnonymous(8L * PS);
        cleanup.add(() -> Posix.munmap(m));
        LazySource broken = new LazySource() {
            @Override
            public int pageSize() {
                return PS;
            }

            @Override
            public List<Run> storedRuns() {
                return List.of(new Run(m.address(), 8));
            }

            @Override
            public void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws java.io.IOException {
                throw new java.io.IOException("disk on fire");
            }
        };
        Userfaultfd uffd = Userfaultfd.open(true);
        uffd.api(FEATURES);
        uffd.register(m.address(), 8L * PS, Userfaultfd.REGISTER_MODE_MISSING);
        LazyPageServer s = new LazyPageServer(uffd, List.of(new AddressRange(m.address(), m.address() + 8L * PS)),
                broken, LazyPageServer.Options.defaults());
        cleanup.add(s::close);
        s.start();
        ExecutionException e = assertThrows(ExecutionException.class, () -> s.completion().get(10, TimeUnit.SECONDS));
        assertTrue(e.getCause().getMessage().contains("background thread, reading 8 pages"), e.getCause().getMessage());
        assertTrue(e.getCause().getMessage().contains("disk on fire"), e.getCause().getMessage());
        s.close(); // closes the uffd: the range reads as zeros now
        assertTrue(s.completion().isCompletedExceptionally());
        assertEquals(0L, m.getLong(0));
    }
}
