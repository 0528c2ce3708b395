package dev.lazypages.lazy;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.net.PageClient;
import dev.lazypages.net.PageData;
import dev.lazypages.net.PageFrameDescriptor;
import dev.lazypages.net.PageSink;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A {@link LazySource} whose pages live on the migration source and come over the network
 * from its {@link dev.lazypages.net.PageServer}: faults on the client's FAULT connection, the
 * background sweep on its BULK connection, so a fault never waits behind bulk transfer.
 * {@link #readAsync} is how a {@link LazyPageServer} reads: one request, answered on the
 * connection's event loop straight from the received buffer; {@link #readPages} and
 * {@link #readPagesInBackground} block until the pages are copied into a page buffer (the
 * latter as pipelined bulk requests).
 *
 * <p>Threads: it keeps no per-caller state; any thread may call any method. The client stays
 * the caller's: close this source, then the client.
 */
public final class RemoteLazySource implements LazySource, AutoCloseable {
    private final PageClient client;
    private final List<Run> runs;
    private final long[] runStart;
    private final long[] runEnd;
    private final int ps;
    private final AtomicLong pagesFetchedDirectly = new AtomicLong();
    private final AtomicLong pagesReadAsync = new AtomicLong();
    private volatile boolean closed;

    /**
     * @param client the connected page client
     * @param runs   the pages the remote side serves (any order; must not overlap; adjacent runs are merged)
     */
    public RemoteLazySource(PageClient client, List<Run> runs) {
        this.client = client;
        this.ps = client.pageSize();
        this.runs = normalize(runs, ps);
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
        if (closed) {
            throw new IOException("remote lazy source closed");
        }
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

    /** The page client's FAULT event loop (epoll only): the server serves the uffd there. */
    @Override
    public dev.lazypages.net.FaultLoop faultLoop() {
        return client.faultLoop();
    }

    /** Pages asked for with {@link #readAsync} (faults and the background). */
    public long pagesReadAsync() {
        return pagesReadAsync.get();
    }

    /** Pipelined requests on the BULK connection, blocking until the pages are in {@code dst}. */
    @Override
    public void readPagesInBackground(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        if (closed) {
            throw new IOException("remote lazy source closed");
        }
        client.fetchBulk(vaddr, nrPages, dst, dstOffset);
        pagesFetchedDirectly.addAndGet(nrPages);
    }

    /** Pages read with the blocking {@link #readPagesInBackground}. */
    public long pagesFetchedDirectly() {
        return pagesFetchedDirectly.get();
    }

    /** Later reads fail; requests in flight are the client's (closing it fails them). */
    @Override
    public void close() {
        closed = true;
    }

    /**
     * For another server at the same time (a forked child's): the same pages, read blocking
     * (not {@link #readAsync}: a child's server copies with its own threads). Valid while this
     * source is open.
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
