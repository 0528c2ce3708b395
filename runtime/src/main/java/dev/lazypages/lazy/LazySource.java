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
