package dev.lazypages.lazy;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.net.PageClient;
import dev.lazypages.net.PageData;
import dev.lazypages.net.PageFrameDescriptor;
import dev.lazypages.net.PageSink;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * A {@link LazySource} whose pages live on the migration source and come over the network
 * from its {@link dev.lazypages.net.PageServer}: faults ({@link #readPages}) on the client's
 * FAULT connection, the background sweep ({@link #readPagesInBackground}) on its BULK
 * connection, so a fault never waits behind bulk transfer.
 *
 * <h2>Background readahead</h2>
 * A {@link LazyPageServer}'s background thread reads one chunk, copies it, then reads the next:
 * one request in flight, so the network idles while it copies. This source keeps up to
 * {@link #READAHEAD_DEPTH} requests of {@link #READAHEAD_CHUNK_PAGES} pages in flight ahead of
 * the sweep, over the stored runs in address order, into buffers of its own; a background read
 * whose pages are all there (or on their way) is copied from them, anything else is fetched
 * directly. A read below the previous one (a new pass) starts the readahead over. The source
 * is frozen, so prefetched pages cannot go stale; pages a fault delivered meanwhile are fetched
 * for nothing (at most the readahead window).
 *
 * <p>Threads: {@link #readPages} keeps no state; the readahead state belongs to the one
 * background thread that calls {@link #readPagesInBackground}. The client stays the caller's:
 * close this source (which waits for requests in flight and frees the readahead buffers), then
 * the client.
 */
public final class RemoteLazySource implements LazySource, AutoCloseable {
    private static final System.Logger LOG = System.getLogger(RemoteLazySource.class.getName());
    /** Pages per readahead request (256 KiB of 4 KiB pages). */
    public static final int READAHEAD_CHUNK_PAGES = PageClient.BULK_REQUEST_PAGES;
    /** Readahead requests in flight. */
    public static final int READAHEAD_DEPTH = 8;

    private final PageClient client;
    private final List<Run> runs;
    private final long[] runStart;
    private final long[] runEnd;
    private final int ps;
    private final boolean readahead;

    // Background thread only.
    private final Arena arena = Arena.ofShared();
    private final ArrayDeque<Ahead> ahead = new ArrayDeque<>();
    private final ArrayDeque<PageBuffer> free = new ArrayDeque<>();
    private long cursor = Long.MIN_VALUE;
    private long lastEnd = Long.MIN_VALUE;
    private volatile long pagesFromReadahead;
    private volatile long pagesFetchedDirectly;
    private final java.util.concurrent.atomic.AtomicLong pagesReadAsync = new java.util.concurrent.atomic.AtomicLong();
    private boolean closed;

    private static final class Ahead {
        final long vaddr;
        final long end;
        final PageBuffer buf;
        final PageClient.Fetch fetch;
        boolean awaited;
        boolean ok;

        Ahead(long vaddr, long end, PageBuffer buf, PageClient.Fetch fetch) {
            this.vaddr = vaddr;
            this.end = end;
            this.buf = buf;
            this.fetch = fetch;
        }
    }

    /** With background readahead. */
    public RemoteLazySource(PageClient client, List<Run> runs) {
        this(client, runs, true);
    }

    /**
     * @param client    the connected page client
     * @param runs      the pages the remote side serves (any order; must not overlap; adjacent runs are merged)
     * @param readahead whether background reads keep requests in flight ahead of the sweep
     */
    public RemoteLazySource(PageClient client, List<Run> runs, boolean readahead) {
        this.client = client;
        this.ps = client.pageSize();
        this.runs = normalize(runs, ps);
        this.readahead = readahead;
        int n = this.runs.size();
        runStart = new long[n];
        runEnd = new long[n];
        for (int i = 0; i < n; i++) {
            runStart[i] = this.runs.get(i).vaddr();
            runEnd[i] = this.runs.get(i).end(ps);
        }
    }

    static List<Run> normalize(List<Run> runs, int pageSize) {
        List<Run> sorted = new ArrayList<>(runs);
        sorted.sort(Comparator.comparingLong(Run::vaddr));
        List<Run> out = new ArrayList<>(sorted.size());
        Run cur = null;
        for (Run r : sorted) {
            if (r.vaddr() % pageSize != 0) {
                throw new IllegalArgumentException("run at 0x" + Long.toHexString(r.vaddr()) + " is not page aligned");
            }
            if (cur == null) {
                cur = r;
            } else if (r.vaddr() < cur.end(pageSize)) {
                throw new IllegalArgumentException("runs at 0x" + Long.toHexString(cur.vaddr()) + " and 0x"
                        + Long.toHexString(r.vaddr()) + " overlap");
            } else if (r.vaddr() == cur.end(pageSize) && (long) cur.nrPages() + r.nrPages() <= Integer.MAX_VALUE) {
                cur = new Run(cur.vaddr(), cur.nrPages() + r.nrPages());
            } else {
                out.add(cur);
                cur = r;
            }
        }
        if (cur != null) {
            out.add(cur);
        }
        return List.copyOf(out);
    }

    @Override
    public int pageSize() {
        return ps;
    }

    @Override
    public List<Run> storedRuns() {
        return runs;
    }

    /** One request on the FAULT connection (blocking until the pages are in {@code dst}). */
    @Override
    public void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        client.fetch(vaddr, nrPages, dst, dstOffset);
    }

    /**
     * One request (at most {@link PageFrameDescriptor#MAX_PAGES} pages, clipped to the stored run)
     * on the BULK connection if {@code background}, else on FAULT; the pages go to
     * {@code delivery} from the received network buffer's own memory, on the connection's event loop.
     */
    @Override
    public int readAsync(long vaddr, int maxPages, boolean background, Delivery delivery) throws IOException {
        int r = SortedAddresses.floorIndex(runStart, vaddr);
        if (r < 0 || vaddr >= runEnd[r]) {
            throw new IllegalArgumentException("page 0x" + Long.toHexString(vaddr) + " is not served by " + client.serverAddress());
        }
        int n = (int) Math.min(Math.min(maxPages, PageFrameDescriptor.MAX_PAGES), (runEnd[r] - vaddr) / ps);
        client.fetchAsync(vaddr, n, background, new PageSink() {
            @Override
            public void received(PageData data) {
                data.forEachRun((first, k, address) -> delivery.pages(vaddr + (long) first * ps, k, address));
                delivery.done();
            }

            @Override
            public void failed(IOException cause) {
                delivery.failed(cause);
            }
        });
        pagesReadAsync.addAndGet(n);
        return n;
    }

    /** Pages asked for with {@link #readAsync} (faults and the background). */
    public long pagesReadAsync() {
        return pagesReadAsync.get();
    }

    /** From the readahead where it holds the pages, else pipelined requests on the BULK connection. */
    @Override
    public void readPagesInBackground(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        if (!readahead) {
            client.fetchBulk(vaddr, nrPages, dst, dstOffset);
            pagesFetchedDirectly += nrPages;
            return;
        }
        if (closed) {
            throw new IOException("remote lazy source closed");
        }
        long end = vaddr + (long) nrPages * ps;
        if (vaddr < lastEnd) { // a new pass over the runs: start over
            dropAll();
            cursor = end;
        }
        lastEnd = end;
        while (!ahead.isEmpty() && ahead.peekFirst().end <= vaddr) {
            recycle(ahead.pollFirst());
        }
        long cur = vaddr;
        for (Ahead a : ahead) {
            if (cur >= end || a.vaddr > cur || !await(a)) {
                break;
            }
            long m = Math.min(a.end, end) - cur;
            dst.copyFrom(a.buf, cur - a.vaddr, dstOffset + (cur - vaddr), m);
            cur += m;
        }
        pagesFromReadahead += (cur - vaddr) / ps;
        if (cur < end) {
            int rest = (int) ((end - cur) / ps);
            client.fetchBulk(cur, rest, dst, dstOffset + (cur - vaddr));
            pagesFetchedDirectly += rest;
        }
        refill(end);
    }

    private void refill(long end) throws IOException {
        if (cursor < end) {
            cursor = end;
        }
        while (ahead.size() < READAHEAD_DEPTH) {
            int r = runEndingAfter(cursor);
            if (r < 0) {
                return;
            }
            long start = Math.max(cursor, runStart[r]);
            int k = (int) Math.min(READAHEAD_CHUNK_PAGES, (runEnd[r] - start) / ps);
            PageBuffer b = free.isEmpty() ? PageBuffer.allocate(arena, READAHEAD_CHUNK_PAGES) : free.poll();
            PageClient.Fetch f;
            try {
                f = client.fetchBulkAsync(start, k, b, 0);
            } catch (IOException e) {
                free.add(b);
                throw e;
            }
            ahead.addLast(new Ahead(start, start + (long) k * ps, b, f));
            cursor = start + (long) k * ps;
        }
    }

    /** Index of the first run that ends after {@code addr}, or -1. */
    private int runEndingAfter(long addr) {
        int lo = 0;
        int hi = runEnd.length - 1;
        int found = -1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (runEnd[mid] > addr) {
                found = mid;
                hi = mid - 1;
            } else {
                lo = mid + 1;
            }
        }
        return found;
    }

    /** Waits for a readahead request; false when it failed (the caller then fetches directly). */
    private static boolean await(Ahead a) {
        if (!a.awaited) {
            a.awaited = true;
            try {
                a.fetch.await();
                a.ok = true;
            } catch (IOException e) {
                LOG.log(System.Logger.Level.DEBUG, "readahead at 0x{0} failed: {1}", Long.toHexString(a.vaddr), e);
            }
        }
        return a.ok;
    }

    /** Returns a buffer to the free list once nothing can write into it any more. */
    private void recycle(Ahead a) {
        await(a);
        free.add(a.buf);
    }

    private void dropAll() {
        while (!ahead.isEmpty()) {
            recycle(ahead.pollFirst());
        }
    }

    /** Pages the background got from the readahead. */
    public long pagesFromReadahead() {
        return pagesFromReadahead;
    }

    /** Pages the background fetched itself (readahead miss or off). */
    public long pagesFetchedDirectly() {
        return pagesFetchedDirectly;
    }

    /**
     * Waits for readahead requests in flight and frees their buffers. Call it after the
     * {@link LazyPageServer} using this source stopped (its background thread is the only user).
     */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            dropAll();
            arena.close();
        }
    }

    /**
     * For another server at the same time (a forked child's): faults as here, background reads
     * straight on the BULK connection (no readahead: that state belongs to this source's one
     * background thread). Valid while this source is open.
     */
    @Override
    public LazySource sharedView() {
        RemoteLazySource self = this;
        return new LazySource() {
            @Override
            public int pageSize() {
                return ps;
            }

            @Override
            public List<Run> storedRuns() {
                return runs;
            }

            @Override
            public void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
                self.readPages(vaddr, nrPages, dst, dstOffset);
            }

            @Override
            public void readPagesInBackground(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
                client.fetchBulk(vaddr, nrPages, dst, dstOffset);
            }
        };
    }
}
