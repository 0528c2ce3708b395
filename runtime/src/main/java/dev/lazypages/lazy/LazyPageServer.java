package dev.lazypages.lazy;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.net.FaultLoop;
import dev.lazypages.proc.CpuYield;
import java.lang.foreign.Arena;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.HdrHistogram.Recorder;

/**
 * Serves the page faults of a lazily restored process from a {@link LazySource}, and copies
 * everything else in the background until every stored page is in place.
 *
 * <h2>What the caller provides</h2>
 * <ul>
 *   <li>A {@link Userfaultfd} of the target's mm, handshaken with UFFDIO_API with at least
 *       {@code FEATURE_EVENT_REMOVE} and {@code FEATURE_EVENT_UNMAP} (without them a
 *       madvise(MADV_DONTNEED) or munmap would be undone by a later copy of stale image
 *       data), {@code FEATURE_EVENT_REMAP} if the process may mremap registered memory
 *       (without it a moved range is served at its old address: wrong), optionally
 *       {@code FEATURE_THREAD_ID} (not used yet) and {@code FEATURE_EVENT_FORK} (see below).
 *       Blocking or not: the server polls before it reads. <b>The server owns it</b>: it closes
 *       it at completion and in {@link #close()}.</li>
 *   <li>The ranges registered on it with {@code REGISTER_MODE_MISSING}, at the addresses the
 *       image gives (the source's addresses at checkpoint time).</li>
 *   <li>A {@link LazySource} for the process's stored pages.</li>
 * </ul>
 *
 * <h2>Threads</h2>
 * The fault thread polls the uffd, reads messages in batches, handles the events, then
 * serves the faults. When the source lends the event loop that delivers its fault reads
 * ({@link LazySource#faultLoop()}: the page client's FAULT connection, epoll only), there is no
 * fault thread: the uffd is watched on that loop and the same work runs there each time it is
 * readable, so reading a fault, writing its request, reading the answer and UFFDIO_COPY happen on
 * one thread with no hand-over (the uffd must then be non-blocking); pages the source holds locally
 * (a hybrid restore's image) are read there too. A watch thread only notices the end (as the fault
 * thread would, and the loop shutting down under the server: a failure) and takes the uffd off the
 * loop before finishing. Forked children's servers always use a fault thread.
 *
 * <p>A page the source never stored (or one dropped) gets UFFDIO_ZEROPAGE at once, without
 * touching the source. For a stored page not yet delivered it asks the source
 * for it (with up to {@link Options#prefetchPages} following stored pages when the fault looks
 * sequential: the first fault, or one within {@value #SEQUENTIAL_WINDOW_PAGES} pages of where one of
 * the last {@value #RECENT_FAULTS} faults ended; a random fault asks for its page alone, as a
 * minimal handler would, so random access pays for no pages it does not use, except while the
 * background transfer runs, when every page has to come anyway: then up to
 * {@link #BACKGROUND_FAULT_PAGES} pages): a source that reads
 * {@linkplain LazySource#readAsync asynchronously} (the network) takes the request and the fault
 * thread goes back to the uffd at once, so faults of several threads are in flight together;
 * the thread that receives the pages (the page client's FAULT event loop) UFFDIO_COPYs them
 * straight from the network buffer and wakes the faulting thread. Other sources are read into a
 * page-aligned buffer and copied by the fault thread itself. The background thread walks the
 * stored pages not yet delivered and asks for them in requests of
 * {@link Options#backgroundChunkPages}, {@link Options#backgroundRequests} in flight (more when
 * they are smaller: the window counts pages), copied on
 * arrival by the BULK event loop, which the fault event loop helps (when it serves the uffd) by
 * copying slices of the delivery between two polls that found no event ({@link CopyJob}); after a fault its walk jumps to the pages following the fault
 * and goes on from there (first with a request of at most {@link Options#prefetchAroundPages}),
 * and it never asks twice in one pass for a page (its own {@code asked} bitmap: a page in flight is
 * not done yet, and asking again would send it twice); whatever is still pending at the end of a
 * pass (skipped by a jump, or refused with EAGAIN) is asked for in the next. A fault on a page that
 * one of the two oldest background reads in flight is bringing waits for that delivery, whose copy
 * wakes the thread, rather than asking for the page a second time (for at most 1 ms: awaitsBackground),
 * so a process reading memory in order rides the background stream. With a bandwidth cap
 * ({@link Options#backgroundBytesPerSecond}, {@code migrate --max-postcopy-bandwidth}) the background
 * paces small requests to it ({@link Pacer}) and gives way to the faults in each of those respects: faults
 * ask for their page alone, the fault loop does not help, no fault waits for a background read
 * ({@link #LATENCY_FIRST_CHUNK_PAGES}). All of them share only a
 * page-state bitmap per region ({@code done}: delivered or dropped, set with atomic OR) and
 * the pending-page counter; there is no lock on the fault path. Races end in EEXIST, which
 * means "already there": the page is marked done and the faulting range woken.
 *
 * <p>One ordering needs more than the bitmap. The kernel zaps the pages of a
 * madvise(DONTNEED) only after the REMOVE event has been read; a background copy issued
 * between that read and the moment the fault thread marks the pages dropped could land after
 * the zap and resurrect stale data. (A single-threaded monitor is safe because its copies never
 * overlap its reads.) So the fault thread announces each read and waits (parked) for the copies
 * in flight on other threads, each at most {@link Options#backgroundCopyPages} pages, to finish;
 * those threads enter a copy section only while no read is announced, and translate addresses
 * and re-check the bitmap inside it ({@link CopyGate}: a Dekker-style handshake). A delivery
 * whose copy meets EAGAIN (an event pending) wakes the faulting thread anyway: it touches the
 * page again and faults anew, served after the event is read. Before the uffd is closed, the
 * gate is closed: late deliveries copy nothing.
 *
 * <h2>Events</h2>
 * <ul>
 *   <li>REMOVE, UNMAP: the stored pages of the range are marked dropped (never copied later; a
 *       later fault there gets a zero page). UNMAP also forgets the range's addresses.</li>
 *   <li>REMAP: the range's address translation moves; its pending pages are then served and
 *       copied at the new addresses (state is kept by image address). A fault on an address
 *       that no longer maps to the image (the old range after MREMAP_DONTUNMAP, the grown tail
 *       of a mapping) gets a zero page.</li>
 *   <li>FORK: the child is served by a <b>child server</b> on the child's new uffd (the message's
 *       {@code ufd}, installed in our fd table by the read). The child's memory at the fork is the
 *       parent's: its registered copies of the regions miss exactly the pages the parent missed
 *       then. So the child server starts from a copy of the parent's page state (delivered or
 *       dropped) and address translation, taken by the fault thread while it handles the event
 *       (under its read announcement, so no background copy is in flight, and the kernel refuses
 *       copies into the parent with EAGAIN from the fork until the event is read), and from then
 *       on keeps its own state: pages the parent receives later do not reach the child, and the
 *       child's REMOVE/UNMAP/REMAP/FORK events come on its own uffd. It serves the child's faults
 *       and runs its own background fill from a {@link LazySource#sharedView() shared view} of
 *       the same source, until all its pages are in or the child exits: ESRCH from a copy, or,
 *       when idle, from a side-effect-free UFFDIO_ZEROPAGE probe at an address outside every
 *       registered range (ENOENT while the child's mm lives, ESRCH once it is gone; the child's
 *       pid is not in the message). The parent's {@link #completion()} waits for its children
 *       (and they for theirs), so a caller that tells the source "done" on completion never
 *       does so while a child still needs pages; a child's failure fails the parent's completion.
 *       Counted in {@link LazyStats#forksServed()}; each child's statistics are in
 *       {@link LazyStats#children()}. A FORK that arrives while the server stops, or whose child
 *       server cannot be set up, has its uffd closed (the child then reads zeros where the parent
 *       had not received pages yet): {@link LazyStats#forksNotServed()}, logged as a warning.
 *       Known gap: a fork racing a madvise(DONTNEED) of another thread (the kernel zaps after the
 *       REMOVE is read, the fork may copy the page tables before the zap) leaves the child with
 *       those pages marked dropped although it may still miss them: it then reads zeros there.</li>
 * </ul>
 *
 * <h2>Results of copies</h2>
 * EEXIST: already there (wake and go on). EAGAIN: the mm is changing (an event is pending): the
 * fault is retried after the next read; a multi-page copy that stops early (a page on the way
 * present) delivers the pages before it, and the copy goes on after that page. ENOENT: the
 * range is no longer mapped or registered (a munmap raced the copy): its pages are dropped and
 * the faulting thread woken — not the end, since it happens to live processes. ESRCH: the mm is gone, the process exited: the server
 * completes (with {@link LazyStats#targetExited()}). When {@link Options#targetPid} is set, the
 * server also completes that way when the pid disappears while it waits.
 *
 * <h2>Completion</h2>
 * When every stored page is delivered or dropped, the fault thread unregisters the current
 * ranges (always explicitly: the target may hold a reference to the uffd, as the restorer's
 * targets do, and closing ours would not unregister anything then) and closes the uffd (later
 * first touches of never-populated pages are ordinary kernel zero fills), the threads end and
 * {@link #completion()} completes with {@link LazyStats}. {@link #close()} also unregisters
 * when no page is pending, and leaves pending ranges registered. On an
 * unexpected error it completes exceptionally with a {@link LazyPagesException} naming the step;
 * the uffd is then left open and registered (closing it would let the process read zeros where
 * it has data): the caller should kill the target, then {@link #close()}.
 */
public final class LazyPageServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(LazyPageServer.class.getName());
    private static final int MESSAGES_PER_READ = 64;
    /** Atomic access to the words of the done bitmaps (volatile reads, LOCK OR updates). */
    private static final VarHandle WORD = MethodHandles.arrayElementVarHandle(long[].class);

    /**
     * Tuning.
     *
     * @param prefetchPages        stored pages after the faulting one copied with it (0: only the page)
     * @param backgroundChunkPages pages the background reads from the source at a time (one request)
     * @param backgroundCopyPages  pages per background UFFDIO_COPY: bounds how long a fault-thread read
     *                             may wait for a copy in flight (see the class comment)
     * @param background           whether the background sweep runs (else only faults deliver pages)
     * @param pollTimeoutMillis    how often the fault thread wakes when idle, to notice completion and stop
     * @param targetPid            the target's pid, to notice it exiting while idle; 0 when unknown
     * @param prefetchAroundPages  after a fault served from the source, the background sweep jumps to the pages
     *                             following it and goes on from there, its first request there for at most this
     *                             many pages, so that it arrives early (0: off, the sweep ignores faults)
     * @param backgroundRequests   asynchronous background reads of full size in flight at once (pipelining);
     *                             smaller ones (scattered pages) up to 16 times as many, within the same pages
     * @param backgroundBytesPerSecond the background transfer's bandwidth cap in bytes/s, 0: none; with a cap the
     *                             background gives way to the faults ({@link #latencyFirst()})
     */
    public record Options(int prefetchPages, int backgroundChunkPages, int backgroundCopyPages, boolean background,
                          int pollTimeoutMillis, int targetPid, int prefetchAroundPages, int backgroundRequests,
                          long backgroundBytesPerSecond) {
        /**
         * The system property that turns prefetching (pages after a fault, and the background's jump
         * to the pages around recent faults) on or off: {@code -Dlazypages.prefetch=false}; default on.
         */
        public static final String PREFETCH_PROPERTY = "lazypages.prefetch";
        /**
         * The system property that turns the background sweep off ({@code -Dlazypages.background=false}: only
         * faults bring pages, for benchmarks and tests of a long post-copy); default on.
         */
        public static final String BACKGROUND_PROPERTY = "lazypages.background";

        public Options {
            if (prefetchPages < 0 || backgroundChunkPages < 1 || backgroundCopyPages < 1 || pollTimeoutMillis < 1
                    || prefetchAroundPages < 0 || backgroundRequests < 1 || backgroundBytesPerSecond < 0) {
                throw new IllegalArgumentException("invalid options " + this);
            }
        }

        /**
         * Prefetch 3 pages with a fault, the sweep going on after it (its first request there 64 pages), background
         * on in 256-page (1 MiB) requests with 4 in flight (up to 64 smaller ones) and 16-page copies, poll every 5 ms; without prefetch when {@value #PREFETCH_PROPERTY} is false,
         * without background when {@value #BACKGROUND_PROPERTY} is false.
         */
        public static Options defaults() {
            boolean prefetch = !"false".equalsIgnoreCase(System.getProperty(PREFETCH_PROPERTY, "true").trim());
            boolean background = !"false".equalsIgnoreCase(System.getProperty(BACKGROUND_PROPERTY, "true").trim());
            return new Options(prefetch ? 3 : 0, 256, 16, background, 5, 0, prefetch ? 64 : 0, 4, 0);
        }

        public boolean prefetchAroundFaults() {
            return prefetchAroundPages > 0;
        }

        public Options withPrefetchPages(int n) {
            return new Options(n, backgroundChunkPages, backgroundCopyPages, background, pollTimeoutMillis, targetPid,
                    prefetchAroundPages, backgroundRequests, backgroundBytesPerSecond);
        }

        public Options withBackground(boolean on) {
            return new Options(prefetchPages, backgroundChunkPages, backgroundCopyPages, on, pollTimeoutMillis, targetPid,
                    prefetchAroundPages, backgroundRequests, backgroundBytesPerSecond);
        }

        public Options withBackgroundChunk(int readPages, int copyPages) {
            return new Options(prefetchPages, readPages, copyPages, background, pollTimeoutMillis, targetPid,
                    prefetchAroundPages, backgroundRequests, backgroundBytesPerSecond);
        }

        public Options withTargetPid(int pid) {
            return new Options(prefetchPages, backgroundChunkPages, backgroundCopyPages, background, pollTimeoutMillis, pid,
                    prefetchAroundPages, backgroundRequests, backgroundBytesPerSecond);
        }

        /**
         * The background transfer held to {@code bytesPerSecond} (0: as fast as it goes), latency first: see
         * {@link #latencyFirst}.
         */
        public Options withBackgroundBandwidth(long bytesPerSecond) {
            return new Options(prefetchPages, backgroundChunkPages, backgroundCopyPages, background, pollTimeoutMillis, targetPid,
                    prefetchAroundPages, backgroundRequests, bytesPerSecond);
        }

        /**
         * True when the background has a bandwidth cap: then it also gives way to the faults in every other way
         * (see {@link #LATENCY_FIRST_CHUNK_PAGES}).
         */
        public boolean latencyFirst() {
            return backgroundBytesPerSecond > 0;
        }

        public Options withPrefetchAround(int pages) {
            return new Options(prefetchPages, backgroundChunkPages, backgroundCopyPages, background, pollTimeoutMillis, targetPid,
                    pages, backgroundRequests, backgroundBytesPerSecond);
        }
    }

    /** Current address range → image address; sorted by {@code cur}, disjoint. */
    private record Seg(long cur, long img, long len) {
    }

    private final Userfaultfd uffd;
    private final LazySource source;
    /** Servers of forked children (and, through them, grandchildren); guarded by itself. */
    private final List<LazyPageServer> children = new ArrayList<>();
    /** 0 for the top server, else 1 + the parent's depth (names the threads). */
    private final int depth;
    /** The shared view children read through; created on the first fork (fault thread only). */
    private LazySource childSource;
    private boolean probeBroken;
    private final Options options;
    private final int ps;
    private final int shift;

    // Regions by image address, sorted.
    private final long[] regStart;
    private final int[] regPages;
    private final long[][] stored; // immutable after construction
    private final long[][] done; // delivered or dropped; accessed through WORD only
    /** Pages the background asked the source for in its current pass (background thread only). */
    private final long[][] asked;
    private final AtomicLong pending = new AtomicLong();
    private final long storedTotal;

    /** Written by the fault thread only (under its read announcement), read by both. */
    private volatile Seg[] segs;

    /** The read/copy handshake (see the class comment); closed before the uffd is. */
    private final CopyGate gate = new CopyGate();
    /** Asynchronous fault reads not yet delivered or failed. */
    private final AtomicInteger faultsInFlight = new AtomicInteger();
    /** Asynchronous background reads not yet delivered or failed. */
    private final AtomicInteger backgroundInFlight = new AtomicInteger();
    /** The pages of those reads not yet delivered. */
    private final AtomicLong backgroundPagesInFlight = new AtomicLong();
    /**
     * {@code -Dlazypages.faultLoopHelps=false}: the fault event loop never copies background
     * deliveries between faults ({@link CopyJob}); for comparison.
     */
    static final String HELP_PROPERTY = "lazypages.faultLoopHelps";
    private static final boolean HELP_ON_LOOP = !"false".equalsIgnoreCase(System.getProperty(HELP_PROPERTY, "true").trim());
    /** Small background reads in flight per full-size one the window allows (see awaitBackgroundWindow). */
    private static final int MAX_REQUESTS_PER_FULL_REQUEST = 16;
    /** A fault this close (pages) to where a recent one ended counts as sequential: it gets the prefetch. */
    static final int SEQUENTIAL_WINDOW_PAGES = 16;
    /** How many recent faults' ends are remembered (threads scanning different places each keep theirs). */
    static final int RECENT_FAULTS = 4;
    /**
     * Pages a fault that does not look sequential asks for while the background transfer runs: the
     * faulting page and up to 31 stored pages after it ({@code -Dlazypages.backgroundFaultPages=N};
     * 1: its page alone, as without the background). Every page has to come anyway then, and a
     * fault's cost is mostly per request (the wake-ups, the system calls at both ends), so a process
     * that touches memory at random ahead of the background brings 32 pages a fault rather than one:
     * {@code lazy-bench postcopy-throughput --repeat 3} (1 GiB, random touches), alternated, medians
     * 1919 and 1969 MiB/s with 16 against 1112 and 1268 with 1 (4421-6847 faults a round against
     * 21908-24291); 32 and 64 pages gave 2069 and 2290, at a longer wait per fault (session 7). Session 10,
     * two runs each, alternated: 32 pages 1997, 1373, 2275 and 2183, 2104, 1866 MiB/s against 16 pages'
     * 1760, 1878, 954 and 1451, 1640, 1474 (sequential and bulk alike): 32, since a fault's wait matters
     * less than the transfer's end without a cap, and a capped background asks for the page alone.
     */
    static final int BACKGROUND_FAULT_PAGES = Math.max(1, Integer.getInteger("lazypages.backgroundFaultPages", 32));
    /**
     * How long a fault on a page in one of the two oldest background reads in flight waits for
     * that delivery before asking for it itself ({@code -Dlazypages.awaitBackgroundMicros=N}; 0:
     * never waits). See awaitsBackground.
     */
    static final long AWAIT_BACKGROUND_NANOS = Long.getLong("lazypages.awaitBackgroundMicros", 1000) * 1000;
    /**
     * Pages per background request under a bandwidth cap ({@link Options#latencyFirst()}). A capped background
     * gives way to the faults: requests of 16 pages (64 KiB) paced to the cap, so that its system calls at
     * both ends are short and spread out; faults ask for their page alone (not {@link #BACKGROUND_FAULT_PAGES}),
     * the fault event loop does not copy background deliveries, and a fault does not wait for a background read
     * in flight ({@link #AWAIT_BACKGROUND_NANOS}): each of those makes some faults wait for background work.
     * Measured with {@code lazy-bench fault-latency --warmups 3 --repeat 6} (1 GiB, a touch every 100 µs, ours'
     * p99 with the background, median of rounds): no cap 1235-1866 µs; 256 MiB/s in 64 KiB requests with those
     * three as without a cap 913, latency first 284 and 487; 256 MiB/s in 256 KiB requests 268 (rounds
     * 234-426); 128 MiB/s 254 (idle p99 in the same runs 148-253). The p99s of 64 KiB and 256 KiB requests
     * lie within each other's noise; the p50 with 64 KiB was lower in each of five runs (57, 71, 62, 56 and 53-87
     * µs against 83, 78, 82, 77 and 87 with 256 KiB; idle 47-56), so 64 KiB.
     */
    static final int LATENCY_FIRST_CHUNK_PAGES = 16;
    /** Background reads in flight, in the order issued (a power of two above the window's 64 reads). */
    private static final int IN_FLIGHT_RING = 256;
    /** Their image addresses and pages; slot i & (IN_FLIGHT_RING - 1), written by the background thread before inFlightTail. */
    private final long[] inFlightImg = new long[IN_FLIGHT_RING];
    private final int[] inFlightPages = new int[IN_FLIGHT_RING];
    /** Reads issued (the background thread writes it); reads delivered (done or failed, in order on one connection). */
    private volatile long inFlightTail;
    private final AtomicLong inFlightHead = new AtomicLong();
    /** Faults that waited for a background delivery rather than asking (fault thread only). */
    private long faultsAwaitingBackground;
    /** {@link #AWAIT_BACKGROUND_NANOS} for this server (tests set it before the start); 0 when latency first. */
    private long awaitBackgroundNanos;
    /** Time the background thread waited for the bandwidth cap (its thread only; read after it ended). */
    private long backgroundPacedNanos;
    /** Image addresses where recent faults' reads ended; only the fault path's thread touches them. */
    private final long[] recentFaultEnds = new long[RECENT_FAULTS];
    private int recentFaults;
    private int recentNext;

    /** The image address of the latest fault served from the source, and a count of them (prefetch around faults). */
    private volatile long lastFaultImg;
    private volatile long faultSeq;

    private volatile boolean stopping;
    private volatile boolean closing;
    private volatile boolean targetGone;
    private volatile long completedAt;
    private long startedAt;

    private final Arena arena = Arena.ofShared();
    private final Recorder copyLatency = new Recorder(3);
    private final Recorder zeroLatency = new Recorder(3);
    private final CompletableFuture<LazyStats> completion = new CompletableFuture<>();
    private Thread faultThread;
    /** Whether the uffd is served on the source's fault event loop (set in start, before the threads). */
    private boolean onLoop;
    private Thread backgroundThread;
    private boolean uffdClosed;
    private boolean closed;

    // Fault-thread counters.
    private long faults;
    private final AtomicLong faultsCopied = new AtomicLong();
    private long zeroPages;
    private long faultsAlreadyThere;
    private final AtomicLong pagesByFault = new AtomicLong();
    private final AtomicLong bytesByFault = new AtomicLong();
    private long retries;
    private long removes;
    private long unmaps;
    private long remaps;
    private long forksNotServed;
    private long forksServed;
    private final AtomicLong pagesDropped = new AtomicLong();
    private final AtomicLong pagesFoundPresent = new AtomicLong();
    // Background counters (read after join).
    private final AtomicLong pagesByBackground = new AtomicLong();
    private final AtomicLong bytesByBackground = new AtomicLong();
    private long backgroundNanos;

    /**
     * @param uffd       the target's userfaultfd, API'd and registered (MISSING) over {@code registered};
     *                   the server takes ownership
     * @param registered the registered ranges (image addresses), disjoint
     * @param source     the stored pages
     */
    public LazyPageServer(Userfaultfd uffd, List<AddressRange> registered, LazySource source, Options options) {
        this.uffd = uffd;
        this.source = source;
        this.options = options;
        this.awaitBackgroundNanos = options.latencyFirst() ? 0 : AWAIT_BACKGROUND_NANOS;
        this.depth = 0;
        this.ps = source.pageSize();
        if (ps != Posix.pageSize()) {
            throw new IllegalArgumentException("source page size " + ps + " differs from this machine's " + Posix.pageSize());
        }
        this.shift = Integer.numberOfTrailingZeros(ps);
        List<AddressRange> regions = new ArrayList<>(registered);
        regions.sort(Comparator.comparingLong(AddressRange::start));
        int n = regions.size();
        regStart = new long[n];
        regPages = new int[n];
        stored = new long[n][];
        done = new long[n][];
        asked = new long[n][];
        Seg[] initial = new Seg[n];
        for (int i = 0; i < n; i++) {
            AddressRange r = regions.get(i);
            if ((r.start() | r.end()) % ps != 0) {
                throw new IllegalArgumentException("region " + r + " is not page aligned");
            }
            if (i > 0 && r.start() < regions.get(i - 1).end()) {
                throw new IllegalArgumentException("regions " + regions.get(i - 1) + " and " + r + " overlap");
            }
            long pages = r.length() >>> shift;
            if (pages > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("region " + r + " is too large");
            }
            regStart[i] = r.start();
            regPages[i] = (int) pages;
            stored[i] = new long[(int) ((pages + 63) >>> 6)];
            done[i] = new long[stored[i].length];
            asked[i] = new long[stored[i].length];
            initial[i] = new Seg(r.start(), r.start(), r.length());
        }
        segs = initial;
        long total = 0;
        long outside = 0;
        for (LazySource.Run run : source.storedRuns()) {
            long a = run.vaddr();
            long end = run.end(ps);
            while (a < end) {
                int r = regionOf(a);
                if (r < 0) {
                    outside++;
                    a += ps;
                    continue;
                }
                long regEnd = regStart[r] + ((long) regPages[r] << shift);
                long stop = Math.min(end, regEnd);
                for (; a < stop; a += ps) {
                    int idx = (int) ((a - regStart[r]) >>> shift);
                    stored[r][idx >>> 6] |= 1L << (idx & 63);
                    total++;
                }
            }
        }
        if (outside > 0) {
            // Expected: pages of private file mappings, which userfaultfd cannot register and the
            // restorer writes before the process runs.
            LOG.log(System.Logger.Level.DEBUG, "{0} stored pages lie outside every registered range and will not be served",
                    outside);
        }
        storedTotal = total;
        pending.set(total);
    }

    /**
     * The server of a child forked by {@code parent}'s target: the parent's regions, a snapshot of
     * its page state and address translation (the caller, the parent's fault thread, holds its
     * read announcement), the child's uffd. Pending = stored pages not done in the parent.
     */
    private LazyPageServer(LazyPageServer parent, Userfaultfd childUffd, LazySource childSource) {
        this.uffd = childUffd;
        this.source = childSource;
        this.options = parent.options.withTargetPid(0);
        this.awaitBackgroundNanos = parent.awaitBackgroundNanos;
        this.ps = parent.ps;
        this.shift = parent.shift;
        this.depth = parent.depth + 1;
        this.regStart = parent.regStart;
        this.regPages = parent.regPages;
        this.stored = parent.stored;
        int n = regStart.length;
        this.done = new long[n][];
        this.asked = new long[n][];
        long total = 0;
        for (int r = 0; r < n; r++) {
            long[] pd = parent.done[r];
            long[] d = new long[pd.length];
            for (int w = 0; w < d.length; w++) {
                d[w] = (long) WORD.getVolatile(pd, w);
                total += Long.bitCount(stored[r][w] & ~d[w]);
            }
            done[r] = d;
            asked[r] = new long[d.length];
        }
        this.segs = parent.segs;
        this.storedTotal = total;
        pending.set(total);
    }

    /** How long a fault may wait for a background delivery (see awaitsBackground); for tests, before the start. */
    synchronized LazyPageServer awaitBackground(long nanos) {
        if (faultThread != null) {
            throw new IllegalStateException("already started");
        }
        awaitBackgroundNanos = nanos;
        return this;
    }

    /** Starts the fault thread and, if enabled, the background thread. */
    public synchronized LazyPageServer start() {
        if (faultThread != null) {
            throw new IllegalStateException("already started");
        }
        startedAt = System.nanoTime();
        CpuYield.compilers(); // the target runs now: no JIT compile may hold a CPU it or its faults need
        if (options.background() && storedTotal > 0) {
            backgroundThread = Thread.ofPlatform().name(threadName("lazy-background")).daemon().unstarted(this::backgroundLoop);
        }
        FaultLoop loop = depth == 0 ? source.faultLoop() : null;
        onLoop = loop != null;
        faultThread = loop != null
                ? Thread.ofPlatform().name(threadName("lazy-fault-watch")).daemon().unstarted(() -> watchOnLoop(loop))
                : Thread.ofPlatform().name(threadName("lazy-faults")).daemon().unstarted(this::faultLoop);
        if (backgroundThread != null) {
            backgroundThread.start();
        }
        faultThread.start();
        return this;
    }

    private String threadName(String base) {
        return depth == 0 ? base : base + "-child" + depth + "-uffd" + uffd.fd();
    }

    /**
     * Completes when every stored page is delivered or dropped (or the target exits) and every
     * forked child's server has completed, or fails.
     */
    public CompletableFuture<LazyStats> completion() {
        return completion;
    }

    /** Stored pages not yet delivered or dropped. */
    public long pendingPages() {
        return pending.get();
    }

    /** Stored pages inside the registered ranges. */
    public long storedPages() {
        return storedTotal;
    }

    // ------------------------------------------------------------------------------------
    // Fault thread
    // ------------------------------------------------------------------------------------

    private void faultLoop() {
        FaultReader fr = null;
        try {
            CpuYield.faultPath(); // a fault wakes this thread ahead of the background's copies
            fr = new FaultReader();
            final int timeout = options.pollTimeoutMillis();
            while (!stopping) {
                if (pending.get() == 0 || targetGone) {
                    break;
                }
                fr.step = "polling the uffd";
                if (!uffd.await(fr.nDeferred > 0 ? 1 : timeout)) {
                    if (fr.nDeferred > 0) {
                        fr.retryDeferred();
                    } else if (options.targetPid() > 0 && !Posix.processExists(options.targetPid())) {
                        targetGone = true;
                    } else if (depth > 0 && mmGone()) {
                        targetGone = true;
                    }
                    continue;
                }
                fr.readAndServe();
                if (fr.nDeferred > 0) {
                    fr.retryDeferred();
                }
            }
        } catch (Throwable t) {
            fail("fault thread, " + (fr == null ? "starting" : fr.step), t);
            return;
        }
        stopAndComplete();
    }

    /**
     * What reads the uffd (the fault thread, or the fault event loop): a message buffer, a page
     * buffer for sources read blocking, and the faults deferred by EAGAIN (retried after the next read).
     */
    private final class FaultReader {
        final Userfaultfd.Messages msgs = new Userfaultfd.Messages(arena, MESSAGES_PER_READ);
        final PageBuffer buf = PageBuffer.allocate(arena, Math.max(1 + options.prefetchPages(), BACKGROUND_FAULT_PAGES));
        long[] deferred = new long[MESSAGES_PER_READ];
        /** When each deferred fault was first read (System.nanoTime). */
        long[] deferredSince = new long[MESSAGES_PER_READ];
        int nDeferred;
        String step = "starting";

        FaultReader() {
            buf.clear(); // touch it now, not on the first fault
        }

        /** One read of up to {@link #MESSAGES_PER_READ} messages: the events (under the read announcement), then the faults. */
        int readAndServe() {
            final long t0 = System.nanoTime();
            step = "reading the uffd";
            int n;
            gate.announceRead();
            try {
                n = uffd.read(msgs);
                step = "handling events";
                for (int i = 0; i < n; i++) {
                    if (msgs.event(i) != Userfaultfd.EVENT_PAGEFAULT) {
                        handleEvent(msgs, i);
                    }
                }
            } finally {
                gate.readDone(); // release: the events' marks and segs are visible to the background now
            }
            step = "serving faults";
            for (int i = 0; i < n; i++) {
                if (msgs.event(i) == Userfaultfd.EVENT_PAGEFAULT) {
                    faults++;
                    long page = msgs.address(i) & -ps;
                    if (!serve(page, buf, t0, t0)) {
                        if (nDeferred == deferred.length) {
                            deferred = java.util.Arrays.copyOf(deferred, deferred.length * 2);
                            deferredSince = java.util.Arrays.copyOf(deferredSince, deferred.length);
                        }
                        deferredSince[nDeferred] = t0;
                        deferred[nDeferred++] = page;
                    }
                }
            }
            return n;
        }

        void retryDeferred() {
            step = "retrying faults";
            nDeferred = LazyPageServer.this.retryDeferred(deferred, deferredSince, nDeferred, buf);
        }
    }

    /**
     * The end, on the fault thread (or the watch thread), once pages are all in, the target is
     * gone, or the server stops: stop the background, wait for fault reads in flight, unregister,
     * close the uffd, wait for the children, complete.
     */
    private void stopAndComplete() {
        String step = "stopping";
        try {
            if (closing) {
                return; // close() completes the future
            }
            step = "stopping the background thread";
            stopping = true;
            if (backgroundThread != null) {
                backgroundThread.join();
            }
            step = "waiting for fault reads in flight";
            while (faultsInFlight.get() > 0 && !closing && !completion.isDone()) {
                LockSupport.parkNanos(this, 1_000_000);
            }
            if (completion.isDone() || closing) {
                return; // the background or a fault read failed, or close() takes over
            }
            step = "unregistering";
            if (!targetGone && pending.get() == 0) {
                unregisterAll();
            }
            step = "closing the uffd";
            closeUffd();
            step = "waiting for the servers of forked children";
            if (!awaitChildren()) {
                return; // closed, or a child failed (completion already failed)
            }
            completion.complete(stats());
        } catch (Throwable t) {
            fail("fault thread, " + step, t);
        }
    }

    // ------------------------------------------------------------------------------------
    // Faults served on the source's fault event loop
    // ------------------------------------------------------------------------------------

    /**
     * The watch thread when the source lends its fault event loop: the loop serves the uffd
     * ({@link LoopFaults}), this thread only watches for the end (every {@link Options#pollTimeoutMillis},
     * as the fault thread would), then takes the uffd off the loop and finishes.
     */
    private void watchOnLoop(FaultLoop loop) {
        String step = "watching the uffd on the fault event loop";
        try {
            LoopFaults lf = new LoopFaults(loop);
            FaultLoop.Watch w = loop.watch(uffd.fd(), lf::readable);
            if (HELP_ON_LOOP && !options.latencyFirst()) {
                loop.whileIdle(this::helpOnce);
                helper = loop;
                helped = true;
            }
            try {
                final long timeout = options.pollTimeoutMillis() * 1_000_000L;
                while (!stopping && pending.get() > 0 && !targetGone) {
                    LockSupport.parkNanos(this, timeout);
                    if (options.targetPid() > 0 && !Posix.processExists(options.targetPid())) {
                        targetGone = true;
                    } else if (loop.isShuttingDown() && !stopping) { // the page client closed under us
                        fail("fault watch", new LazyPagesException("the page client's fault event loop shut down, "
                                + "faults can no longer be served"));
                    }
                }
            } finally {
                step = "taking the uffd off the fault event loop";
                if (helped) {
                    helped = false;
                    helper = null;
                    loop.whileIdle(null); // before the cancel's task: no help from then on
                }
                w.cancel(); // from here on only this thread reads the loop-side counters (the cancel's task orders them)
            }
        } catch (Throwable t) {
            fail("fault watch, " + step, t);
            return;
        }
        stopAndComplete();
    }

    /**
     * The fault thread's work, done on the fault event loop each time the uffd is readable: read a
     * batch of messages, handle the events, serve the faults. A fault read goes out on the loop
     * itself (the page client writes it at once) and its answer is copied there too, so a fault
     * changes thread only in the kernel. Faults that met EAGAIN are retried after the next read, or
     * after 1 ms.
     */
    private final class LoopFaults {
        private final FaultLoop loop;
        private final FaultReader fr = new FaultReader();
        private boolean retryScheduled;

        LoopFaults(FaultLoop loop) {
            this.loop = loop;
        }

        void readable() {
            if (stopping) {
                return;
            }
            try {
                int n = fr.readAndServe();
                retry(n > 0);
            } catch (Throwable t) {
                failOnLoop(fr.step, t);
            }
        }

        /** Serves the deferred faults again if a read came since; if some remain, again in 1 ms. */
        private void retry(boolean readSince) {
            if (fr.nDeferred == 0) {
                return;
            }
            if (readSince) {
                fr.retryDeferred();
            }
            if (fr.nDeferred > 0 && !retryScheduled) {
                retryScheduled = true;
                loop.schedule(() -> {
                    retryScheduled = false;
                    if (stopping) {
                        return;
                    }
                    try {
                        retry(true);
                    } catch (Throwable t) {
                        failOnLoop(fr.step, t);
                    }
                }, 1_000_000);
            }
        }

        private void failOnLoop(String step, Throwable t) {
            fail("fault event loop, " + step, t);
            LockSupport.unpark(faultThread); // the watch thread takes the uffd off the loop now
        }
    }

    /** Waits for every child server; false when closing or when one failed (completion failed then). */
    private boolean awaitChildren() throws InterruptedException {
        List<LazyPageServer> kids;
        synchronized (children) {
            kids = List.copyOf(children);
        }
        for (LazyPageServer kid : kids) {
            while (!closing) {
                try {
                    kid.completion.get(options.pollTimeoutMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
                    break;
                } catch (java.util.concurrent.TimeoutException e) {
                    // poll closing again
                } catch (java.util.concurrent.ExecutionException e) {
                    Throwable c = e.getCause();
                    fail("the server of a forked child (uffd " + kid.uffd.fd() + ")", c);
                    return false;
                }
            }
            if (closing) {
                return false;
            }
        }
        return true;
    }

    /**
     * Whether the target's mm is gone, asked without side effects: UFFDIO_ZEROPAGE of a page
     * outside every registered range answers ENOENT (not registered) while the mm lives and
     * ESRCH once it is gone (checked before the range). Used for children, whose pid is unknown.
     */
    private boolean mmGone() {
        if (probeBroken) {
            return false;
        }
        long probe = -1;
        for (long candidate : new long[] {0x10000L, 0x7fffffffe000L, 0x200000L, 0x40000000L}) {
            if (segOfCur(segs, candidate) < 0) {
                probe = candidate;
                break;
            }
        }
        if (probe < 0) {
            probeBroken = true;
            return false;
        }
        long res;
        try {
            res = uffd.zeropage(probe, ps, Userfaultfd.ZEROPAGE_MODE_DONTWAKE);
        } catch (RuntimeException e) {
            probeBroken = true;
            LOG.log(System.Logger.Level.WARNING, "cannot probe whether a forked child exited (uffd " + uffd.fd()
                    + "); its server ends when all its pages are in", e);
            return false;
        }
        if (res == Userfaultfd.ESRCH) {
            return true;
        }
        if (res >= 0) { // mapped a zero page in a registered range we do not know: stop probing
            probeBroken = true;
            LOG.log(System.Logger.Level.WARNING, "exit probe at 0x{0} hit a registered range; probing stops",
                    Long.toHexString(probe));
        }
        return false;
    }

    /**
     * Tries the deferred faults again (after the read that followed their EAGAIN, or while they
     * wait for a background delivery); returns how many remain.
     */
    private int retryDeferred(long[] deferred, long[] since, int n, PageBuffer buf) {
        retries += n;
        int left = 0;
        long t0 = System.nanoTime();
        for (int i = 0; i < n; i++) {
            if (!serve(deferred[i], buf, t0, since[i])) {
                since[left] = since[i];
                deferred[left++] = deferred[i];
            }
        }
        return left;
    }

    /**
     * Resolves a fault on {@code page} (current address), first read at {@code since}; false on
     * EAGAIN (retry after the next read) or while it waits for a background delivery.
     */
    private boolean serve(long page, PageBuffer buf, long t0, long since) {
        Seg[] s = segs;
        int si = segOfCur(s, page);
        if (si >= 0) {
            Seg seg = s[si];
            long img = seg.img + (page - seg.cur);
            int r = regionOf(img);
            if (r >= 0) {
                int idx = (int) ((img - regStart[r]) >>> shift);
                if (isStored(r, idx) && !isDone(r, idx)) {
                    if (awaitsBackground(img, t0, since)) {
                        return false; // that delivery's copy wakes the thread; retried after the next read or 1 ms
                    }
                    return copyFault(page, img, r, idx, seg, buf, t0);
                }
            }
        }
        return zeroFault(page, t0);
    }

    /**
     * Whether a fault on a page one of the two oldest background reads in flight is bringing
     * should wait for that delivery (its copy wakes the thread) rather than ask for the page
     * again: those reads are being received now, and a second request would send the pages
     * twice, over the link and through UFFDIO_COPY (the later copy finds them present). A
     * process that reads memory in order catches up with the background stream that way (and
     * the stream, no longer jumping to each fault, runs on). Bounded: after
     * {@link #AWAIT_BACKGROUND_NANOS} (or when the read is no longer among the two oldest) the
     * fault asks for its pages.
     */
    private boolean awaitsBackground(long img, long t0, long since) {
        if (awaitBackgroundNanos <= 0 || backgroundThread == null || t0 - since >= awaitBackgroundNanos) {
            return false;
        }
        long h = inFlightHead.get();
        long t = inFlightTail;
        for (long i = h; i < t && i < h + 2; i++) {
            int slot = (int) (i & (IN_FLIGHT_RING - 1));
            long a = inFlightImg[slot];
            if (img >= a && img < a + ((long) inFlightPages[slot] << shift)) {
                if (t0 == since) {
                    faultsAwaitingBackground++;
                }
                return true;
            }
        }
        return false;
    }

    /** Whether a fault at image address {@code img} looks sequential (see the class comment). */
    private boolean sequential(long img) {
        if (recentFaults == 0) {
            return true;
        }
        long w = (long) SEQUENTIAL_WINDOW_PAGES << shift;
        for (int i = 0; i < recentFaults; i++) {
            long end = recentFaultEnds[i];
            if (img >= end - w && img <= end + w) {
                return true;
            }
        }
        return false;
    }

    private boolean copyFault(long page, long img, int r, int idx, Seg seg, PageBuffer buf, long t0) {
        int k = 1;
        int max = sequential(img) ? 1 + options.prefetchPages()
                : backgroundThread != null && options.prefetchPages() > 0 && !options.latencyFirst() ? BACKGROUND_FAULT_PAGES : 1;
        long segEnd = seg.cur + seg.len;
        while (k < max && idx + k < regPages[r] && page + ((long) k << shift) < segEnd && isStored(r, idx + k)
                && !isDone(r, idx + k)) {
            k++;
        }
        recentFaultEnds[recentNext] = img + ((long) k << shift);
        recentNext = (recentNext + 1) % RECENT_FAULTS;
        recentFaults = Math.min(recentFaults + 1, RECENT_FAULTS);
        if (options.prefetchAroundFaults()) {
            lastFaultImg = img;
            faultSeq++; // only this thread writes it; volatile for the background's read
        }
        try {
            FaultDelivery d = new FaultDelivery(page, t0);
            faultsInFlight.incrementAndGet();
            int taken;
            try {
                taken = source.readAsync(img, k, false, d);
            } catch (Exception e) {
                faultsInFlight.decrementAndGet();
                throw e;
            }
            if (taken > 0) {
                return true; // the delivering thread copies and wakes
            }
            faultsInFlight.decrementAndGet();
            if (onLoop) {
                // A page the source holds locally (see LazySource#faultLoop): that page alone, since the
                // pages after it may be remote, and a blocking remote read would wait for this very loop.
                k = 1;
            }
            source.readPages(img, k, buf, 0);
        } catch (Exception e) {
            throw new LazyPagesException("reading " + k + " pages at image address 0x" + Long.toHexString(img)
                    + " from the source for a fault at 0x" + Long.toHexString(page) + ": " + e.getMessage(), e);
        }
        long len = (long) k << shift;
        long res = uffd.copy(page, buf.address(), len, 0);
        if (res > 0 && res < len) { // stopped part way (a later page present): the pages before it, the faulting one first
            k = (int) (res >>> shift);
            len = res;
        } else if (res != len && k > 1) { // EAGAIN, or ENOENT for part of the range: the page alone
            k = 1;
            len = ps;
            res = uffd.copy(page, buf.address(), len, 0);
        }
        if (res == len) {
            pagesByFault.addAndGet(markDone(r, idx, k));
            faultsCopied.incrementAndGet();
            bytesByFault.addAndGet(len);
            copyLatency.recordValue(System.nanoTime() - t0);
            return true;
        }
        return otherResult(res, page, r, idx, "UFFDIO_COPY");
    }

    private boolean zeroFault(long page, long t0) {
        long res = uffd.zeropage(page, ps, 0);
        if (res == ps) {
            zeroPages++;
            zeroLatency.recordValue(System.nanoTime() - t0);
            return true;
        }
        return otherResult(res, page, -1, 0, "UFFDIO_ZEROPAGE");
    }

    /** EEXIST, ENOENT, ESRCH → handled (true); EAGAIN → false. */
    private boolean otherResult(long res, long page, int r, int idx, String op) {
        if (res == Userfaultfd.EAGAIN) {
            return false;
        }
        if (res == Userfaultfd.EEXIST) {
            faultsAlreadyThere++;
            if (r >= 0) {
                pagesFoundPresent.addAndGet(markDone(r, idx, 1));
            }
            uffd.wake(page, ps);
            return true;
        }
        if (res == Userfaultfd.ENOENT) { // unmapped under us: the UNMAP event drops it; wake the waiter anyway
            uffd.wake(page, ps);
            return true;
        }
        if (res == Userfaultfd.ESRCH) {
            targetGone = true;
            return true;
        }
        throw new LazyPagesException(op + " at 0x" + Long.toHexString(page) + " returned " + res);
    }

    private void handleEvent(Userfaultfd.Messages m, int i) {
        int ev = m.event(i);
        if (ev == Userfaultfd.EVENT_REMOVE) {
            removes++;
            drop(m.rangeStart(i), m.rangeEnd(i), false);
        } else if (ev == Userfaultfd.EVENT_UNMAP) {
            unmaps++;
            drop(m.rangeStart(i), m.rangeEnd(i), true);
        } else if (ev == Userfaultfd.EVENT_REMAP) {
            remaps++;
            remap(m.remapFrom(i), m.remapTo(i), m.remapLength(i));
        } else if (ev == Userfaultfd.EVENT_FORK) {
            fork(m.forkFd(i));
        } else {
            LOG.log(System.Logger.Level.WARNING, "ignoring unknown userfaultfd event {0}", ev);
        }
    }

    /** FORK: serve the child on its uffd {@code fd} (see the class comment). Under the read announcement. */
    private void fork(int fd) {
        Userfaultfd childUffd = Userfaultfd.adopt(fd);
        if (!stopping) {
            try {
                if (childSource == null) {
                    childSource = source.sharedView();
                }
                LazyPageServer kid = new LazyPageServer(this, childUffd, childSource);
                synchronized (children) {
                    if (!closing) {
                        children.add(kid);
                        kid.start();
                        forksServed++;
                        LOG.log(System.Logger.Level.DEBUG, "the target forked: serving the child on uffd {0}, {1} pages pending",
                                fd, kid.storedTotal);
                        return;
                    }
                }
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "cannot serve the forked child on uffd " + fd, e);
            }
        }
        forksNotServed++;
        LOG.log(System.Logger.Level.WARNING, "the target forked; its child is not served: closing the child''s "
                + "userfaultfd {0}, so pages not yet delivered read as zeros in the child", fd);
        childUffd.close();
    }

    /** REMOVE/UNMAP of current [start, end): never copy those pages; UNMAP also forgets the addresses. */
    private void drop(long start, long end, boolean unmap) {
        Seg[] s = segs;
        List<Seg> kept = unmap ? new ArrayList<>() : null;
        for (Seg seg : s) {
            long a = Math.max(start, seg.cur);
            long b = Math.min(end, seg.cur + seg.len);
            if (a < b) {
                dropImage(seg.img + (a - seg.cur), b - a);
            }
            if (unmap) {
                cut(seg, start, end, kept);
            }
        }
        if (unmap) {
            segs = kept.toArray(Seg[]::new);
        }
    }

    /** Adds the parts of {@code seg} outside current [start, end) to {@code out}. */
    private static void cut(Seg seg, long start, long end, List<Seg> out) {
        long segEnd = seg.cur + seg.len;
        if (end <= seg.cur || start >= segEnd) {
            out.add(seg);
            return;
        }
        if (start > seg.cur) {
            out.add(new Seg(seg.cur, seg.img, start - seg.cur));
        }
        if (end < segEnd) {
            out.add(new Seg(end, seg.img + (end - seg.cur), segEnd - end));
        }
    }

    /** Marks the image pages [img, img+len) done (dropped). */
    private void dropImage(long img, long len) {
        long a = img;
        long end = img + len;
        while (a < end) {
            int r = regionOf(a);
            if (r < 0) {
                a += ps;
                continue;
            }
            long regEnd = regStart[r] + ((long) regPages[r] << shift);
            long stop = Math.min(end, regEnd);
            int idx = (int) ((a - regStart[r]) >>> shift);
            int n = (int) ((stop - a) >>> shift);
            pagesDropped.addAndGet(markDone(r, idx, n));
            a = stop;
        }
    }

    /** REMAP: current [from, from+len) now lives at [to, to+len). */
    private void remap(long from, long to, long len) {
        Seg[] s = segs;
        List<Seg> out = new ArrayList<>();
        List<Seg> moved = new ArrayList<>();
        for (Seg seg : s) { // whatever was at the destination is gone (its UNMAP came first, if registered)
            long a = Math.max(to, seg.cur);
            long b = Math.min(to + len, seg.cur + seg.len);
            if (a < b && (seg.cur >= from + len || seg.cur + seg.len <= from)) {
                dropImage(seg.img + (a - seg.cur), b - a);
            }
        }
        for (Seg seg : s) {
            List<Seg> parts = new ArrayList<>();
            cut(seg, to, to + len, parts);
            for (Seg p : parts) {
                long a = Math.max(from, p.cur);
                long b = Math.min(from + len, p.cur + p.len);
                if (a >= b) {
                    out.add(p);
                    continue;
                }
                cut(p, from, from + len, out);
                moved.add(new Seg(to + (a - from), p.img + (a - p.cur), b - a));
            }
        }
        out.addAll(moved);
        out.sort(Comparator.comparingLong(Seg::cur));
        segs = out.toArray(Seg[]::new);
    }

    private void unregisterAll() {
        for (Seg seg : segs) {
            try {
                uffd.unregister(seg.cur, seg.len);
            } catch (RuntimeException e) { // e.g. unmapped since; what stays registered is released with the
                // last reference to the uffd, which may be the target's own (its faults there would block)
                LOG.log(System.Logger.Level.WARNING, "unregistering " + new AddressRange(seg.cur, seg.cur + seg.len), e);
            }
        }
    }

    // ------------------------------------------------------------------------------------
    // Background thread
    // ------------------------------------------------------------------------------------

    private void backgroundLoop() {
        CpuYield.thisThread(); // the target and its faults go first
        String step = "starting";
        long stepImg = 0;
        int stepPages = 0;
        long t0 = System.nanoTime();
        try {
            final int chunk = options.latencyFirst() ? Math.min(LATENCY_FIRST_CHUNK_PAGES, options.backgroundChunkPages())
                    : options.backgroundChunkPages();
            final Pacer pacer = options.latencyFirst() ? new Pacer(options.backgroundBytesPerSecond(), System.nanoTime()) : null;
            final boolean follow = options.prefetchAroundFaults();
            PageBuffer buf = null; // for sources that cannot read asynchronously
            long seenFaults = 0;
            while (!stopping && pending.get() > 0 && !targetGone) {
                long before = pending.get();
                // One pass: a cursor (region r, page idx) from the first page to the last, except that after
                // a fault it jumps to the pages following the fault and goes on from there (a process that
                // faulted there is likely to touch them next); what a jump passed over is left to the next pass.
                int r = 0;
                int idx = 0;
                int limit = chunk; // pages per request: smaller for the first one after a jump, so that it comes early
                while (r < regStart.length && !stopping && !targetGone) {
                    if (follow && faultSeq != seenFaults) {
                        seenFaults = faultSeq;
                        long img = lastFaultImg;
                        int fr = regionOf(img);
                        if (fr >= 0) {
                            r = fr;
                            idx = (int) ((img - regStart[fr]) >>> shift) + 1 + options.prefetchPages();
                            limit = Math.min(chunk, options.prefetchAroundPages());
                        }
                    }
                    if (idx >= regPages[r] || (idx = nextToAsk(r, idx)) < 0) {
                        r++;
                        idx = 0;
                        continue;
                    }
                    int k = 1;
                    while (k < limit && idx + k < regPages[r] && isStored(r, idx + k) && !isDone(r, idx + k)
                            && !isAsked(r, idx + k)) {
                        k++;
                    }
                    limit = chunk;
                    long img = regStart[r] + ((long) idx << shift);
                    step = null; // reading (no message built per request: fail() builds it from stepPages and stepImg)
                    stepImg = img;
                    stepPages = k;
                    awaitBackgroundWindow(k);
                    if (pacer != null) {
                        awaitPacer(pacer, (long) k << shift);
                    }
                    int taken = readAsync(img, k);
                    if (taken == 0) {
                        if (buf == null) {
                            buf = PageBuffer.allocate(arena, chunk);
                            buf.clear();
                        }
                        source.readPagesInBackground(img, k, buf, 0);
                        step = ""; // copying
                        copyImage(img, k, buf.address(), false);
                        taken = k;
                    }
                    markAsked(r, idx, taken);
                    idx += taken;
                }
                step = "waiting for the background reads in flight";
                awaitBackgroundIdle();
                for (long[] a : asked) { // what is still pending after this pass is asked for again in the next
                    java.util.Arrays.fill(a, 0);
                }
                if (pending.get() == before) { // nothing moved (EAGAIN everywhere): let the events through
                    LockSupport.parkNanos(100_000);
                }
            }
        } catch (Throwable t) {
            String where = stepPages + " pages at image address 0x" + Long.toHexString(stepImg);
            fail("background thread, " + (step == null ? "reading " + where + " from the source"
                    : step.isEmpty() ? "copying " + where : step), t);
        } finally {
            try {
                awaitBackgroundIdle(); // nothing of ours in flight once the thread ends
            } catch (RuntimeException ignored) {
                // failing already
            }
            backgroundNanos = System.nanoTime() - t0;
        }
    }

    /** An asynchronous background read of up to {@code k} pages at image address {@code img}; the pages taken, or 0. */
    private int readAsync(long img, int k) throws java.io.IOException {
        backgroundInFlight.incrementAndGet();
        backgroundPagesInFlight.addAndGet(k); // before the read: its delivery may come before it returns
        long t = inFlightTail;
        int slot = (int) (t & (IN_FLIGHT_RING - 1));
        inFlightImg[slot] = img;
        inFlightPages[slot] = k;
        inFlightTail = t + 1;
        int taken;
        try {
            taken = source.readAsync(img, k, true, backgroundDelivery);
        } catch (java.io.IOException | RuntimeException e) {
            backgroundPagesInFlight.addAndGet(-k);
            backgroundInFlight.decrementAndGet();
            inFlightTail = t; // no delivery comes for it, so none counted past it
            throw e;
        }
        backgroundPagesInFlight.addAndGet(taken - k);
        if (taken == 0) {
            backgroundInFlight.decrementAndGet();
            inFlightTail = t;
        } else if (taken < k) {
            inFlightPages[slot] = taken;
        }
        return taken;
    }

    /**
     * Waits until a background read of {@code k} pages fits the window: fewer than
     * {@link #MAX_REQUESTS_PER_FULL_REQUEST} times {@link Options#backgroundRequests} reads in flight, and
     * their pages and these within {@code backgroundRequests} full requests' worth (or nothing in flight).
     * So full-size requests go {@code backgroundRequests} at a time, and the single pages of a scattered
     * dirty set (a hybrid migration's post-copy part) many more at a time, instead of one round trip
     * each per {@code backgroundRequests}.
     */
    private void awaitBackgroundWindow(int k) {
        final int requests = options.backgroundRequests() * MAX_REQUESTS_PER_FULL_REQUEST;
        final long pages = (long) options.backgroundRequests() * options.backgroundChunkPages();
        while (!completion.isDone() && !closing) {
            int n = backgroundInFlight.get();
            long p = backgroundPagesInFlight.get();
            if (n < requests && (n == 0 || p + k <= pages)) {
                return;
            }
            LockSupport.parkNanos(this, 1_000_000); // a delivery unparks us
        }
    }

    /** Waits for the bandwidth cap's turn of a request of {@code bytes} (or until the server stops). */
    private void awaitPacer(Pacer pacer, long bytes) {
        long now = System.nanoTime();
        long wait = pacer.reserve(bytes, now);
        if (wait <= 0) {
            return;
        }
        long t0 = now;
        long until = now + wait;
        while (until - now > 0 && !stopping && !closing && !completion.isDone()) { // nanoTime: compare differences
            LockSupport.parkNanos(this, until - now);
            now = System.nanoTime();
        }
        backgroundPacedNanos += now - t0;
    }

    /** Waits until no background read is in flight. */
    private void awaitBackgroundIdle() {
        while (backgroundInFlight.get() > 0 && !completion.isDone() && !closing) {
            LockSupport.parkNanos(this, 1_000_000); // a delivery unparks us
        }
    }

    /**
     * Background pages arriving from the network: copied right there, on the delivering thread,
     * which the fault event loop helps with while it has nothing else to do ({@link CopyJob}).
     */
    private final LazySource.Delivery backgroundDelivery = new LazySource.Delivery() {
        @Override
        public void pages(long vaddr, int nrPages, long address) {
            copyShared(vaddr, nrPages, address);
            backgroundPagesInFlight.addAndGet(-nrPages);
        }

        @Override
        public void done() {
            inFlightHead.incrementAndGet();
            backgroundInFlight.decrementAndGet();
            LockSupport.unpark(backgroundThread);
        }

        @Override
        public void failed(Throwable cause) {
            fail("background read from the source", cause);
            inFlightHead.incrementAndGet();
            backgroundInFlight.decrementAndGet();
            LockSupport.unpark(backgroundThread);
        }
    };

    /** A fault's pages arriving from the network: copied and the faulting page woken on the delivering thread. */
    private final class FaultDelivery implements LazySource.Delivery {
        private final long page;
        private final long t0;
        private long pages;

        FaultDelivery(long page, long t0) {
            this.page = page;
            this.t0 = t0;
        }

        @Override
        public void pages(long vaddr, int nrPages, long address) {
            pages += copyImage(vaddr, nrPages, address, true);
        }

        @Override
        public void done() {
            // Wake the faulting thread whatever happened: a copy wakes it already; when the page was
            // dropped meanwhile, or the copy met EAGAIN (an event pending), the thread touches the
            // page again and faults anew, which the fault thread serves after reading the event.
            if (gate.enterCopy()) {
                try {
                    uffd.wake(page, ps);
                } finally {
                    gate.leaveCopy();
                }
            }
            if (pages > 0) {
                faultsCopied.incrementAndGet();
                copyLatency.recordValue(System.nanoTime() - t0);
            }
            faultsInFlight.decrementAndGet();
        }

        @Override
        public void failed(Throwable cause) {
            fail("reading the pages of a fault at 0x" + Long.toHexString(page) + " from the source", cause);
            faultsInFlight.decrementAndGet();
        }
    }

    /**
     * A background delivery being copied, split into slices of {@link Options#backgroundCopyPages}
     * that threads claim by number: the delivering thread (the BULK event loop) claims them one
     * after the other, and the fault event loop, between two polls of its fds when no event is
     * ready (instead of only spinning: {@link FaultLoop#whileIdle}), claims one at a time. So on
     * a machine with few cores the time the fault loop would spin waiting for the next fault
     * copies pages, and the BULK loop's receive and the copies overlap. The delivering thread
     * returns (and the network buffer is released) only after every slice is finished.
     */
    private static final class CopyJob {
        final long img;
        final int pages;
        final long src;
        final int slicePages;
        final int slices;
        final AtomicInteger next = new AtomicInteger();
        final AtomicInteger finished = new AtomicInteger();

        CopyJob(long img, int pages, long src, int slicePages) {
            this.img = img;
            this.pages = pages;
            this.src = src;
            this.slicePages = slicePages;
            this.slices = (pages + slicePages - 1) / slicePages;
        }
    }

    /** The delivery the fault loop may help with, or null; one at a time. */
    private final java.util.concurrent.atomic.AtomicReference<CopyJob> helpJob = new java.util.concurrent.atomic.AtomicReference<>();
    /** Whether a fault event loop helps (set on it in watchOnLoop). */
    private volatile boolean helped;
    /** That loop (while helped), woken for each job so it helps even when no fault woke it. */
    private volatile FaultLoop helper;
    /** Pages the fault loop copied for background deliveries. */
    private final AtomicLong pagesByHelper = new AtomicLong();

    /** copyImage for a background delivery, with the fault loop's help when it has some to give. */
    private void copyShared(long img, int n, long src) {
        int slice = options.backgroundCopyPages();
        CopyJob j;
        if (!helped || n <= slice || !helpJob.compareAndSet(null, j = new CopyJob(img, n, src, slice))) {
            copyImage(img, n, src, false);
            return;
        }
        FaultLoop h = helper;
        if (h != null) {
            h.wake(); // asleep (no fault for a while): the job is its idle work now
        }
        try {
            while (copyOneSlice(j, false)) {
                // claim the next
            }
        } finally {
            helpJob.set(null);
            for (int spins = 0; j.finished.get() < j.slices; spins++) {
                CopyGate.backOff(spins); // a slice the fault loop claimed is still being copied
            }
        }
    }

    /** Claims and copies one slice of {@code j}; false when none was left. */
    private boolean copyOneSlice(CopyJob j, boolean helper) {
        int k = j.next.getAndIncrement();
        if (k >= j.slices) {
            return false;
        }
        try {
            long off = (long) k * j.slicePages;
            int n = (int) Math.min(j.slicePages, j.pages - off);
            long got = copyImage(j.img + (off << shift), n, j.src + (off << shift), false);
            if (helper && got > 0) {
                pagesByHelper.addAndGet(got);
            }
        } finally {
            j.finished.incrementAndGet();
        }
        return true;
    }

    /** The fault loop's idle work: one slice of the delivery being copied, if any (false: nothing to do). */
    private boolean helpOnce() {
        CopyJob j = helpJob.get();
        try {
            return j != null && !stopping && copyOneSlice(j, true);
        } catch (RuntimeException | Error e) { // never out into the event loop (it would log it and sleep)
            fail("fault event loop, copying background pages", e);
            LockSupport.unpark(faultThread); // the watch thread takes the uffd off the loop now
            return false;
        }
    }

    /**
     * Copies the pages [img, img + n pages) held at native {@code src} to wherever they live now,
     * skipping pages already done, in slices of {@link Options#backgroundCopyPages} (each one copy
     * section). Stops at EAGAIN (an event pending: a later pass or fault gets them). Returns the
     * pages this call delivered.
     */
    private long copyImage(long img, int n, long src, boolean byFault) {
        final int slice = options.backgroundCopyPages();
        long delivered = 0;
        long a = img;
        long end = img + ((long) n << shift);
        while (a < end && !stopping) {
            int r = regionOf(a);
            if (r < 0) {
                a += ps;
                continue;
            }
            long regEnd = regStart[r] + ((long) regPages[r] << shift);
            int idx = (int) ((a - regStart[r]) >>> shift);
            int m = (int) ((Math.min(end, regEnd) - a) >>> shift);
            for (int i = 0; i < m; i += slice) {
                int k = Math.min(slice, m - i);
                long got = copySlice(r, idx + i, k, src + (a - img) + ((long) i << shift), byFault);
                if (got < 0) {
                    return delivered;
                }
                delivered += got;
            }
            a += (long) m << shift;
        }
        return delivered;
    }

    /** One copy section: translate, re-check, UFFDIO_COPY. The pages delivered, or -1 on EAGAIN (or closing). */
    private long copySlice(int r, int idx, int n, long srcBase, boolean byFault) {
        if (!gate.enterCopy()) {
            return -1;
        }
        AtomicLong pageCount = byFault ? pagesByFault : pagesByBackground;
        AtomicLong byteCount = byFault ? bytesByFault : bytesByBackground;
        long delivered = 0;
        try {
            Seg[] s = segs;
            int i = 0;
            while (i < n) {
                if (isDone(r, idx + i)) {
                    i++;
                    continue;
                }
                long img = regStart[r] + ((long) (idx + i) << shift);
                int si = segOfImg(s, img);
                if (si < 0) { // no longer mapped anywhere (UNMAP read): drop
                    pagesDropped.addAndGet(markDone(r, idx + i, 1));
                    i++;
                    continue;
                }
                Seg seg = s[si];
                int j = i + 1;
                long imgEnd = seg.img + seg.len;
                while (j < n && !isDone(r, idx + j) && img + ((long) (j - i) << shift) < imgEnd) {
                    j++;
                }
                int m = j - i;
                long cur = seg.cur + (img - seg.img);
                long len = (long) m << shift;
                long src = srcBase + ((long) i << shift);
                long k = copyRun(r, idx + i, m, cur, src, pageCount, byteCount);
                if (k < 0) {
                    return -1;
                }
                delivered += k;
                i = j;
            }
            return delivered;
        } finally {
            gate.leaveCopy();
        }
    }

    /**
     * UFFDIO_COPY of the run of {@code m} pages at current address {@code cur} (image pages
     * [idx, idx+m) of region r) from {@code src}: one copy, and where it stops part way (the next
     * page present: a fault or another delivery brought it) or fails on its first page, that page
     * alone, then one copy for the rest again. The pages delivered, or -1 on EAGAIN (or the mm gone).
     */
    private long copyRun(int r, int idx, int m, long cur, long src, AtomicLong pageCount, AtomicLong byteCount) {
        long delivered = 0;
        int p = 0;
        boolean alone = false; // after ENOENT for several pages: the first of them alone
        while (p < m) {
            long off = (long) p << shift;
            int n = alone ? 1 : m - p;
            alone = false;
            long res = uffd.copy(cur + off, src + off, (long) n << shift, 0);
            if (res > 0) { // all of it, or the pages before the one it stopped at
                int c = (int) (res >>> shift);
                long k = markDone(r, idx + p, c);
                pageCount.addAndGet(k);
                byteCount.addAndGet((long) c << shift);
                delivered += k;
                p += c;
                continue;
            }
            if (res == Userfaultfd.EEXIST) { // its first page is present
                pagesFoundPresent.addAndGet(markDone(r, idx + p, 1));
                p++;
                continue;
            }
            if (res == Userfaultfd.EAGAIN) {
                return -1;
            }
            if (res == Userfaultfd.ESRCH) {
                targetGone = true;
                return -1;
            }
            if (res != Userfaultfd.ENOENT) {
                throw new LazyPagesException("UFFDIO_COPY at 0x" + Long.toHexString(cur + off) + " returned " + res);
            }
            if (n > 1) { // some of the run unmapped (its UNMAP event may still be on its way): which, page by page
                alone = true;
                continue;
            }
            pagesDropped.addAndGet(markDone(r, idx + p, 1));
            p++;
        }
        return delivered;
    }

    // ------------------------------------------------------------------------------------
    // Page state
    // ------------------------------------------------------------------------------------

    private boolean isStored(int r, int idx) {
        return (stored[r][idx >>> 6] & (1L << (idx & 63))) != 0;
    }

    private boolean isDone(int r, int idx) {
        return (((long) WORD.getVolatile(done[r], idx >>> 6)) & (1L << (idx & 63))) != 0; // sees the other thread's marks
    }

    /** Marks pages [idx, idx+n) of region r done; returns how many stored pages became done. */
    private long markDone(int r, int idx, int n) {
        long newly = 0;
        long[] d = done[r];
        long[] st = stored[r];
        int i = idx;
        int end = idx + n;
        while (i < end) {
            int w = i >>> 6;
            int lo = i & 63;
            int hi = Math.min(64, lo + (end - i));
            long mask = (hi == 64 ? -1L : (1L << hi) - 1) & (-1L << lo);
            long old = (long) WORD.getAndBitwiseOr(d, w, mask);
            newly += Long.bitCount(~old & mask & st[w]);
            i += hi - lo;
        }
        if (newly > 0 && pending.addAndGet(-newly) == 0) {
            completedAt = System.nanoTime();
        }
        return newly;
    }

    private boolean isAsked(int r, int idx) {
        return (asked[r][idx >>> 6] & (1L << (idx & 63))) != 0;
    }

    /** Marks pages [idx, idx+n) of region r asked for in this pass. */
    private void markAsked(int r, int idx, int n) {
        long[] a = asked[r];
        int i = idx;
        int end = idx + n;
        while (i < end) {
            int lo = i & 63;
            int hi = Math.min(64, lo + (end - i));
            a[i >>> 6] |= (hi == 64 ? -1L : (1L << hi) - 1) & (-1L << lo);
            i += hi - lo;
        }
    }

    /** The next stored page of region r at or after idx that is neither done nor asked for in this pass, or -1. */
    private int nextToAsk(int r, int idx) {
        long[] st = stored[r];
        long[] d = done[r];
        long[] a = asked[r];
        int w = idx >>> 6;
        if (w >= st.length) {
            return -1;
        }
        long bits = st[w] & ~((long) WORD.getVolatile(d, w) | a[w]) & (-1L << (idx & 63));
        while (true) {
            if (bits != 0) {
                int p = (w << 6) + Long.numberOfTrailingZeros(bits);
                return p < regPages[r] ? p : -1;
            }
            if (++w >= st.length) {
                return -1;
            }
            bits = st[w] & ~((long) WORD.getVolatile(d, w) | a[w]);
        }
    }

    /** The region holding image address a, or -1. */
    private int regionOf(long a) {
        int lo = 0;
        int hi = regStart.length - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (a < regStart[mid]) {
                hi = mid - 1;
            } else if (a >= regStart[mid] + ((long) regPages[mid] << shift)) {
                lo = mid + 1;
            } else {
                return mid;
            }
        }
        return -1;
    }

    private static int segOfCur(Seg[] s, long a) {
        int lo = 0;
        int hi = s.length - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            Seg seg = s[mid];
            if (a < seg.cur) {
                hi = mid - 1;
            } else if (a >= seg.cur + seg.len) {
                lo = mid + 1;
            } else {
                return mid;
            }
        }
        return -1;
    }

    private static int segOfImg(Seg[] s, long img) {
        for (int i = 0; i < s.length; i++) { // few segments; sorted by current address, not image address
            if (img >= s[i].img && img < s[i].img + s[i].len) {
                return i;
            }
        }
        return -1;
    }

    // ------------------------------------------------------------------------------------
    // Completion
    // ------------------------------------------------------------------------------------

    private void fail(String step, Throwable t) {
        stopping = true;
        String msg = t instanceof LazyPagesException ? step + ": " + t.getMessage() : step + ": " + t;
        if (completion.completeExceptionally(new LazyPagesException(msg, t))) {
            LOG.log(System.Logger.Level.ERROR, msg, t);
        }
    }

    /** Closes the uffd once no copy section can use it any more (deliveries may still arrive afterwards: they copy nothing). */
    private synchronized void closeUffd() {
        if (!uffdClosed) {
            uffdClosed = true;
            gate.close(); // copy sections entered from now on leave at once; waits for those in flight
            uffd.close();
        }
    }

    private LazyStats stats() {
        List<LazyStats> kids = new ArrayList<>();
        synchronized (children) {
            for (LazyPageServer k : children) {
                LazyStats st = k.completion.getNow(null);
                if (st != null) {
                    kids.add(st);
                }
            }
        }
        long end = completedAt != 0 ? completedAt : System.nanoTime();
        double bgSeconds = backgroundNanos / 1e9;
        double mibps = bgSeconds > 0 ? bytesByBackground.get() / (1024.0 * 1024.0) / bgSeconds : 0;
        return new LazyStats(faults, faultsCopied.get(), zeroPages, faultsAlreadyThere, pagesByFault.get(), pagesByBackground.get(),
                pagesDropped.get(), pagesFoundPresent.get(), bytesByFault.get() + bytesByBackground.get(), retries, removes, unmaps, remaps, forksNotServed,
                copyLatency.getIntervalHistogram(), zeroLatency.getIntervalHistogram(), mibps,
                Duration.ofNanos(end - startedAt), targetGone, forksServed, List.copyOf(kids), pagesByHelper.get(),
                faultsAwaitingBackground, gate.readsWaited(), gate.readWaitNanos(), backgroundPacedNanos);
    }

    /**
     * Stops the threads (if still running), closes the uffd and frees the buffers. If the server
     * had not completed, {@link #completion()} fails with "closed before completion".
     */
    @Override
    public void close() throws InterruptedException {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        closing = true;
        stopping = true;
        List<LazyPageServer> kids;
        synchronized (children) {
            kids = List.copyOf(children);
        }
        for (LazyPageServer kid : kids) {
            kid.close();
        }
        Thread f;
        Thread b;
        synchronized (this) {
            f = faultThread;
            b = backgroundThread;
        }
        if (f != null) {
            f.join();
        }
        if (b != null) {
            b.join();
        }
        completion.completeExceptionally(new LazyPagesException("closed before completion"));
        // every page in: nothing to wait for, unregister (the target may hold the uffd too, and its
        // ranges would stay registered). Pages still missing stay registered: faults there block
        // until the target is killed rather than read zeros.
        synchronized (this) {
            if (!uffdClosed && !targetGone && pending.get() == 0) {
                unregisterAll();
            }
        }
        closeUffd();
        arena.close();
    }
}
