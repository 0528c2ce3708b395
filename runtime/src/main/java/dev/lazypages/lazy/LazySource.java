package dev.lazypages.lazy;

import dev.lazypages.ffm.PageBuffer;
import java.io.IOException;
import java.util.List;

/**
 * Where a {@link LazyPageServer} gets the contents of the pages it serves: a local image
 * ({@link ImageLazySource}) now, a remote page server later. Addresses are the process's
 * addresses at checkpoint time ("image addresses"); the server translates them when the
 * process moves memory with mremap.
 *
 * <p>Must be safe for two concurrent callers: the fault thread ({@link #readPages}) and the
 * background thread ({@link #readPagesInBackground}). A remote source should send the two on
 * separate channels (or with priority) so that a fault never queues behind bulk transfer.
 */
public interface LazySource {
    /** Bytes per page; must equal the local page size. */
    int pageSize();

    /**
     * The page runs that hold data, sorted by address, disjoint, adjacent runs merged. Every
     * other page of a registered region is zero or was never populated: the server resolves
     * it with UFFDIO_ZEROPAGE and never asks the source for it.
     */
    List<Run> storedRuns();

    /**
     * Reads {@code nrPages} pages starting at image address {@code vaddr} into {@code dst} at
     * byte offset {@code dstOffset} (a multiple of the page size), straight into its memory
     * so that the caller can UFFDIO_COPY from there. The pages must lie inside
     * {@link #storedRuns()} (possibly across adjacent runs).
     *
     * @throws IOException when the data cannot be read or is corrupt
     */
    void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException;

    /** {@link #readPages} for the background sweep: bulk, lower priority. */
    default void readPagesInBackground(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        readPages(vaddr, nrPages, dst, dstOffset);
    }

    /**
     * Where the pages of an {@link #readAsync asynchronous read} go, on whatever thread delivers
     * them (a network event loop): {@link #pages} once or more, covering exactly the pages taken,
     * in address order, then {@link #done}; or {@link #failed} (possibly after some pages). Keep
     * it short and never block in it.
     */
    interface Delivery {
        /** {@code nrPages} pages at image address {@code vaddr} are at native {@code address}, valid during the call. */
        void pages(long vaddr, int nrPages, long address);

        /** Every page taken was handed to {@link #pages}. */
        void done();

        /** The pages will not come (the message says why). */
        void failed(Throwable cause);
    }

    /**
     * Starts reading up to {@code maxPages} pages at image address {@code vaddr} without waiting,
     * the pages handed to {@code delivery} straight from where they arrive (a network buffer), so
     * that the caller can UFFDIO_COPY from there. Returns how many pages it took (from
     * {@code vaddr} on, at least 1), or 0 when this source cannot read them asynchronously (the
     * caller then uses {@link #readPages}). The default takes none.
     *
     * @param background a background read (bulk, lower priority), else a fault's
     * @throws IOException the source is gone for good
     */
    default int readAsync(long vaddr, int maxPages, boolean background, Delivery delivery) throws IOException {
        return 0;
    }

    /**
     * Where this source delivers its {@link #readAsync asynchronous} fault reads, when the server
     * may serve the userfaultfd right there ({@link dev.lazypages.net.FaultLoop}: reading the fault,
     * sending the request, copying the answer on one thread, no hand-over); null (the default) when
     * the server should use a fault thread of its own. A source that returns a loop must read every
     * page that comes from the network {@link #readAsync asynchronously}: when it declines a fault,
     * the server reads just the faulting page with {@link #readPages} on the loop (a page it holds
     * locally, e.g. a hybrid restore's image); a blocking read that waited for an answer only that
     * loop can deliver would never end.
     */
    default dev.lazypages.net.FaultLoop faultLoop() {
        return null;
    }

    /**
     * A view of this source for one more concurrent server (the server of a forked child):
     * same pages, but its {@link #readPagesInBackground} must not disturb this source's own
     * background state (e.g. a readahead that belongs to one background thread). The default,
     * {@code this}, suits sources whose methods keep no per-caller state. The view's lifetime
     * ends with this source's.
     */
    default LazySource sharedView() {
        return this;
    }

    /** A run of stored pages: [{@code vaddr}, {@code vaddr + nrPages * pageSize}). */
    record Run(long vaddr, int nrPages) {
        public Run {
            if (nrPages <= 0) {
                throw new IllegalArgumentException("empty run at 0x" + Long.toHexString(vaddr));
            }
        }

        /** Exclusive end address for pages of {@code pageSize} bytes. */
        public long end(int pageSize) {
            return vaddr + (long) nrPages * pageSize;
        }
    }
}
