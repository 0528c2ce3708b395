package dev.lazypages.memory;

import dev.lazypages.ffm.Posix;
import dev.lazypages.proc.Vma;
import java.util.Arrays;
import java.util.Collection;
import java.util.Iterator;
import java.util.NoSuchElementException;

/**
 * An immutable set of pages: sorted, disjoint runs {@code [start, end)} of page-aligned
 * addresses, adjacent and overlapping runs merged, so that two equal sets have equal runs.
 * Addresses compare unsigned ({@code [vsyscall]} lies above 2^63).
 *
 * <p>Stored as one {@code long[]} of bounds: run {@code i} is {@code [bounds[2i], bounds[2i+1])}.
 * Set operations are linear merges of the two run lists. Build with {@link #builder()} (runs
 * in any order), {@link #of}, {@link #ofVmas}.
 */
public final class PageRanges implements Iterable<PageRanges.Run> {
    /** The page size of this machine. */
    public static final long PAGE_SIZE = Posix.pageSize();
    private static final long PAGE_MASK = PAGE_SIZE - 1;

    /** No page. */
    public static final PageRanges EMPTY = new PageRanges(new long[0], 0);

    /** One run {@code [start, end)}. */
    public record Run(long start, long end) {
        public long bytes() {
            return end - start;
        }

        public long pages() {
            return (end - start) / PAGE_SIZE;
        }

        @Override
        public String toString() {
            return "0x" + Long.toHexString(start) + "-0x" + Long.toHexString(end);
        }
    }

    /** Receives runs in address order. */
    @FunctionalInterface
    public interface RunConsumer {
        void accept(long start, long end);
    }

    private final long[] bounds;
    private final int runs;
    private final long pages;

    private PageRanges(long[] bounds, int runs) {
        this.bounds = bounds;
        this.runs = runs;
        long p = 0;
        for (int i = 0; i < runs; i++) {
            p += (bounds[2 * i + 1] - bounds[2 * i]) / PAGE_SIZE;
        }
        this.pages = p;
    }

    /** The single run {@code [start, end)} (empty when {@code start == end}). */
    public static PageRanges of(long start, long end) {
        return builder().add(start, end).build();
    }

    /** Every page of the given VMAs. */
    public static PageRanges ofVmas(Collection<Vma> vmas) {
        Builder b = builder();
        for (Vma v : vmas) {
            b.add(v.start(), v.end());
        }
        return b.build();
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Number of runs (maximal, so never two adjacent). */
    public int runCount() {
        return runs;
    }

    public long start(int run) {
        check(run);
        return bounds[2 * run];
    }

    public long end(int run) {
        check(run);
        return bounds[2 * run + 1];
    }

    public Run run(int i) {
        return new Run(start(i), end(i));
    }

    private void check(int run) {
        if (run < 0 || run >= runs) {
            throw new IndexOutOfBoundsException("run " + run + " of " + runs);
        }
    }

    public long pageCount() {
        return pages;
    }

    public long byteCount() {
        return pages * PAGE_SIZE;
    }

    public boolean isEmpty() {
        return runs == 0;
    }

    /** The run containing {@code address}, or -1. */
    public int runContaining(long address) {
        int lo = 0;
        int hi = runs - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (Long.compareUnsigned(bounds[2 * mid + 1], address) <= 0) {
                lo = mid + 1;
            } else if (Long.compareUnsigned(bounds[2 * mid], address) > 0) {
                hi = mid - 1;
            } else {
                return mid;
            }
        }
        return -1;
    }

    public boolean contains(long address) {
        return runContaining(address) >= 0;
    }

    /** Every page of {@code [start, end)} is in the set. */
    public boolean containsAll(long start, long end) {
        if (start == end) {
            return true;
        }
        int r = runContaining(start);
        return r >= 0 && Long.compareUnsigned(end, bounds[2 * r + 1]) <= 0;
    }

    /** Some page of {@code [start, end)} is in the set. */
    public boolean intersects(long start, long end) {
        return !intersect(of(start, end)).isEmpty();
    }

    /** Pages in this set or in {@code other}. */
    public PageRanges union(PageRanges other) {
        if (other.isEmpty()) {
            return this;
        }
        if (isEmpty()) {
            return other;
        }
        Builder b = new Builder(runs + other.runs);
        int i = 0;
        int j = 0;
        while (i < runs || j < other.runs) {
            boolean takeThis = j >= other.runs
                    || (i < runs && Long.compareUnsigned(bounds[2 * i], other.bounds[2 * j]) <= 0);
            if (takeThis) {
                b.appendSorted(bounds[2 * i], bounds[2 * i + 1]);
                i++;
            } else {
                b.appendSorted(other.bounds[2 * j], other.bounds[2 * j + 1]);
                j++;
            }
        }
        return b.build();
    }

    /** Pages in both this set and {@code other}. */
    public PageRanges intersect(PageRanges other) {
        if (isEmpty() || other.isEmpty()) {
            return EMPTY;
        }
        Builder b = new Builder(Math.max(runs, other.runs));
        int i = 0;
        int j = 0;
        while (i < runs && j < other.runs) {
            long s = max(bounds[2 * i], other.bounds[2 * j]);
            long e = min(bounds[2 * i + 1], other.bounds[2 * j + 1]);
            if (Long.compareUnsigned(s, e) < 0) {
                b.appendSorted(s, e);
            }
            if (Long.compareUnsigned(bounds[2 * i + 1], other.bounds[2 * j + 1]) <= 0) {
                i++;
            } else {
                j++;
            }
        }
        return b.build();
    }

    /** Pages of this set that lie in one of {@code vmas}. */
    public PageRanges intersect(Collection<Vma> vmas) {
        return intersect(ofVmas(vmas));
    }

    /** Pages of this set within {@code [start, end)}. */
    public PageRanges intersect(long start, long end) {
        return intersect(of(start, end));
    }

    /** Pages of this set that are not in {@code other}. */
    public PageRanges subtract(PageRanges other) {
        if (isEmpty() || other.isEmpty()) {
            return this;
        }
        Builder b = new Builder(runs + other.runs);
        int j = 0;
        for (int i = 0; i < runs; i++) {
            long s = bounds[2 * i];
            long e = bounds[2 * i + 1];
            while (j < other.runs && Long.compareUnsigned(other.bounds[2 * j + 1], s) <= 0) {
                j++;
            }
            int k = j;
            while (k < other.runs && Long.compareUnsigned(other.bounds[2 * k], e) < 0 && Long.compareUnsigned(s, e) < 0) {
                long os = other.bounds[2 * k];
                long oe = other.bounds[2 * k + 1];
                if (Long.compareUnsigned(s, os) < 0) {
                    b.appendSorted(s, os);
                }
                s = max(s, oe);
                k++;
            }
            if (Long.compareUnsigned(s, e) < 0) {
                b.appendSorted(s, e);
            }
        }
        return b.build();
    }

    /** Calls {@code consumer} for each run in address order (no allocation). */
    public void forEachRun(RunConsumer consumer) {
        for (int i = 0; i < runs; i++) {
            consumer.accept(bounds[2 * i], bounds[2 * i + 1]);
        }
    }

    @Override
    public Iterator<Run> iterator() {
        return new Iterator<>() {
            private int i;

            @Override
            public boolean hasNext() {
                return i < runs;
            }

            @Override
            public Run next() {
                if (i >= runs) {
                    throw new NoSuchElementException();
                }
                return run(i++);
            }
        };
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof PageRanges p && p.runs == runs && Arrays.equals(bounds, 0, 2 * runs, p.bounds, 0, 2 * runs);
    }

    @Override
    public int hashCode() {
        int h = 1;
        for (int i = 0; i < 2 * runs; i++) {
            h = 31 * h + Long.hashCode(bounds[i]);
        }
        return h;
    }

    /** {@code [0x1000-0x3000, 0x8000-0x9000] (3 pages)}; long sets are cut after 16 runs. */
    @Override
    public String toString() {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < Math.min(runs, 16); i++) {
            b.append(i > 0 ? ", " : "").append(run(i));
        }
        if (runs > 16) {
            b.append(", ... ").append(runs - 16).append(" more");
        }
        return b.append("] (").append(pages).append(pages == 1 ? " page)" : " pages)").toString();
    }

    private static long max(long a, long b) {
        return Long.compareUnsigned(a, b) >= 0 ? a : b;
    }

    private static long min(long a, long b) {
        return Long.compareUnsigned(a, b) <= 0 ? a : b;
    }

    /**
     * Collects runs in any order, overlapping or not; {@link #build} sorts and merges. Adding in
     * address order is the fast path (merged on the fly, no sort). Not thread-safe.
     */
    public static final class Builder {
        private long[] b;
        private int n;
        private boolean sorted = true;

        private Builder() {
            this(16);
        }

        private Builder(int runs) {
            b = new long[Math.max(2, 2 * runs)];
        }

        /** Adds {@code [start, end)}; both page aligned, {@code end >= start} (unsigned). */
        public Builder add(long start, long end) {
            if ((start & PAGE_MASK) != 0 || (end & PAGE_MASK) != 0) {
                throw new IllegalArgumentException("page run 0x" + Long.toHexString(start) + "-0x" + Long.toHexString(end)
                        + " is not page aligned");
            }
            int c = Long.compareUnsigned(start, end);
            if (c > 0) {
                throw new IllegalArgumentException("page run 0x" + Long.toHexString(start) + "-0x" + Long.toHexString(end)
                        + " ends before it starts");
            }
            if (c == 0) {
                return this;
            }
            if (n > 0 && Long.compareUnsigned(start, b[2 * n - 2]) < 0) {
                sorted = false;
            }
            if (sorted && n > 0 && Long.compareUnsigned(start, b[2 * n - 1]) <= 0) {
                b[2 * n - 1] = max(b[2 * n - 1], end); // touches or overlaps the last run
                return this;
            }
            push(start, end);
            return this;
        }

        /** Adds {@code nrPages} pages from {@code start}. */
        public Builder addPages(long start, long nrPages) {
            return add(start, start + nrPages * PAGE_SIZE);
        }

        /** Adds every run of {@code ranges}. */
        public Builder addAll(PageRanges ranges) {
            for (int i = 0; i < ranges.runs; i++) {
                add(ranges.bounds[2 * i], ranges.bounds[2 * i + 1]);
            }
            return this;
        }

        /** For the merges above: runs come sorted by start, already valid. */
        private void appendSorted(long start, long end) {
            if (n > 0 && Long.compareUnsigned(start, b[2 * n - 1]) <= 0) {
                b[2 * n - 1] = max(b[2 * n - 1], end);
            } else {
                push(start, end);
            }
        }

        private void push(long start, long end) {
            if (2 * n + 2 > b.length) {
                b = Arrays.copyOf(b, b.length * 2);
            }
            b[2 * n] = start;
            b[2 * n + 1] = end;
            n++;
        }

        /** True when nothing was added. */
        public boolean isEmpty() {
            return n == 0;
        }

        public PageRanges build() {
            if (n == 0) {
                return EMPTY;
            }
            if (!sorted) {
                sortByStart();
                int m = 0;
                for (int i = 0; i < n; i++) {
                    long s = b[2 * i];
                    long e = b[2 * i + 1];
                    if (m > 0 && Long.compareUnsigned(s, b[2 * m - 1]) <= 0) {
                        b[2 * m - 1] = max(b[2 * m - 1], e);
                    } else {
                        b[2 * m] = s;
                        b[2 * m + 1] = e;
                        m++;
                    }
                }
                n = m;
                sorted = true;
            }
            return new PageRanges(Arrays.copyOf(b, 2 * n), n);
        }

        /** Sorts the (start, end) pairs by unsigned start: starts with the sign bit flipped sort as signed. */
        private void sortByStart() {
            long[] keys = new long[n];
            for (int i = 0; i < n; i++) {
                keys[i] = b[2 * i] ^ Long.MIN_VALUE;
            }
            Integer[] order = new Integer[n];
            for (int i = 0; i < n; i++) {
                order[i] = i;
            }
            Arrays.sort(order, (x, y) -> Long.compare(keys[x], keys[y]));
            long[] out = new long[b.length];
            for (int i = 0; i < n; i++) {
                out[2 * i] = b[2 * order[i]];
                out[2 * i + 1] = b[2 * order[i] + 1];
            }
            b = out;
        }
    }
}
