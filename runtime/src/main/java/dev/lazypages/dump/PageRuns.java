package dev.lazypages.dump;

import java.util.Arrays;

/**
 * Runs of pages to store, in address order: growable parallel arrays of (start address,
 * number of pages), adjacent runs merged as they are added. Not thread-safe.
 */
final class PageRuns {
    private final long pageSize;
    private long[] starts = new long[64];
    private long[] pages = new long[64];
    private int count;
    private long totalPages;

    PageRuns(long pageSize) {
        this.pageSize = pageSize;
    }

    /** Adds {@code nrPages} pages at {@code start}, which must not lie below the last run's end. */
    void add(long start, long nrPages) {
        if (nrPages <= 0) {
            return;
        }
        if (count > 0) {
            long lastEnd = starts[count - 1] + pages[count - 1] * pageSize;
            if (Long.compareUnsigned(start, lastEnd) < 0) {
                throw new IllegalArgumentException("page run at 0x" + Long.toHexString(start) + " lies below the end 0x"
                        + Long.toHexString(lastEnd) + " of the previous one");
            }
            if (start == lastEnd) {
                pages[count - 1] += nrPages;
                totalPages += nrPages;
                return;
            }
        }
        if (count == starts.length) {
            starts = Arrays.copyOf(starts, count * 2);
            pages = Arrays.copyOf(pages, count * 2);
        }
        starts[count] = start;
        pages[count] = nrPages;
        count++;
        totalPages += nrPages;
    }

    int count() {
        return count;
    }

    long start(int i) {
        return starts[i];
    }

    long pages(int i) {
        return pages[i];
    }

    long totalPages() {
        return totalPages;
    }

    void clear() {
        count = 0;
        totalPages = 0;
    }

    @Override
    public String toString() {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < count; i++) {
            b.append(i > 0 ? ", " : "").append("0x").append(Long.toHexString(starts[i])).append('+').append(pages[i]);
        }
        return b.append(']').toString();
    }
}
