package dev.lazypages.dump;

import java.util.Arrays;

/**
 * An immutable set of addresses as sorted, disjoint, non-adjacent spans [start, end) of whole
 * pages: what an image holds, what a tracker reported dirty. Addresses compare unsigned.
 * Built with {@link Builder}, which merges overlapping and adjacent spans added in any order.
 */
final class PageSpans {
    static final PageSpans EMPTY = new PageSpans(new long[0], new long[0], 0);

    private final long[] starts;
    private final long[] ends;
    private final int count;

    private PageSpans(long[] starts, long[] ends, int count) {
        this.starts = starts;
        this.ends = ends;
        this.count = count;
    }

    int count() {
        return count;
    }

    long start(int i) {
        return starts[i];
    }

    long end(int i) {
        return ends[i];
    }

    boolean isEmpty() {
        return count == 0;
    }

    /** Bytes covered. */
    long bytes() {
        long b = 0;
        for (int i = 0; i < count; i++) {
            b += ends[i] - starts[i];
        }
        return b;
    }

    long pages(long pageSize) {
        return bytes() / pageSize;
    }

    /** The spans of {@code runs}. */
    static PageSpans of(PageRuns runs, long pageSize) {
        Builder b = new Builder();
        for (int i = 0; i < runs.count(); i++) {
            b.add(runs.start(i), runs.start(i) + runs.pages(i) * pageSize);
        }
        return b.build();
    }

    /** Whether [start, end) lies wholly inside one span. */
    boolean contains(long start, long end) {
        int i = firstEndingAfter(start);
        return i < count && Long.compareUnsigned(starts[i], start) <= 0 && Long.compareUnsigned(end, ends[i]) <= 0;
    }

    /** Index of the first span whose end lies above {@code address}. */
    private int firstEndingAfter(long address) {
        int lo = 0;
        int hi = count;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (Long.compareUnsigned(ends[mid], address) <= 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    /** The part of this set inside [start, end). */
    PageSpans clip(long start, long end) {
        Builder b = new Builder();
        for (int i = firstEndingAfter(start); i < count && Long.compareUnsigned(starts[i], end) < 0; i++) {
            b.add(maxU(starts[i], start), minU(ends[i], end));
        }
        return b.build();
    }

    PageSpans intersect(PageSpans o) {
        Builder b = new Builder();
        int i = 0;
        int j = 0;
        while (i < count && j < o.count) {
            long s = maxU(starts[i], o.starts[j]);
            long e = minU(ends[i], o.ends[j]);
            if (Long.compareUnsigned(s, e) < 0) {
                b.add(s, e);
            }
            if (Long.compareUnsigned(ends[i], o.ends[j]) < 0) {
                i++;
            } else {
                j++;
            }
        }
        return b.build();
    }

    PageSpans subtract(PageSpans o) {
        Builder b = new Builder();
        int j = 0;
        for (int i = 0; i < count; i++) {
            long s = starts[i];
            long e = ends[i];
            while (j < o.count && Long.compareUnsigned(o.ends[j], s) <= 0) {
                j++;
            }
            int k = j;
            while (k < o.count && Long.compareUnsigned(o.starts[k], e) < 0) {
                if (Long.compareUnsigned(o.starts[k], s) > 0) {
                    b.add(s, o.starts[k]);
                }
                s = maxU(s, o.ends[k]);
                if (Long.compareUnsigned(s, e) >= 0) {
                    break;
                }
                k++;
            }
            if (Long.compareUnsigned(s, e) < 0) {
                b.add(s, e);
            }
        }
        return b.build();
    }

    PageSpans union(PageSpans o) {
        Builder b = new Builder();
        for (int i = 0; i < count; i++) {
            b.add(starts[i], ends[i]);
        }
        for (int i = 0; i < o.count; i++) {
            b.add(o.starts[i], o.ends[i]);
        }
        return b.build();
    }

    private static long maxU(long a, long b) {
        return Long.compareUnsigned(a, b) >= 0 ? a : b;
    }

    private static long minU(long a, long b) {
        return Long.compareUnsigned(a, b) <= 0 ? a : b;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof PageSpans p && p.count == count
                && Arrays.equals(starts, 0, count, p.starts, 0, count) && Arrays.equals(ends, 0, count, p.ends, 0, count);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(Arrays.copyOf(starts, count)) * 31 + Arrays.hashCode(Arrays.copyOf(ends, count));
    }

    @Override
    public String toString() {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < count; i++) {
            b.append(i > 0 ? ", " : "").append("0x").append(Long.toHexString(starts[i])).append("-0x")
                    .append(Long.toHexString(ends[i]));
        }
        return b.append(']').toString();
    }

    /** The same spans as {@link dev.lazypages.memory.PageRanges} (public, page aligned). */
    dev.lazypages.memory.PageRanges toRanges() {
        dev.lazypages.memory.PageRanges.Builder b = dev.lazypages.memory.PageRanges.builder();
        for (int i = 0; i < count; i++) {
            b.add(starts[i], ends[i]);
        }
        return b.build();
    }

    /** Collects spans in any order; {@link #build} sorts and merges them. */
    static final class Builder {
        private long[] s = new long[16];
        private long[] e = new long[16];
        private int n;
        private boolean sorted = true;

        Builder add(long start, long end) {
            if (Long.compareUnsigned(start, end) >= 0) {
                return this;
            }
            if (n > 0) {
                if (Long.compareUnsigned(start, e[n - 1]) == 0) { // the common case: appended in order, adjacent
                    e[n - 1] = end;
                    return this;
                }
                if (Long.compareUnsigned(start, s[n - 1]) < 0) {
                    sorted = false;
                }
            }
            if (n == s.length) {
                s = Arrays.copyOf(s, n * 2);
                e = Arrays.copyOf(e, n * 2);
            }
            s[n] = start;
            e[n] = end;
            n++;
            return this;
        }

        Builder addAll(PageSpans p) {
            for (int i = 0; i < p.count; i++) {
                add(p.starts[i], p.ends[i]);
            }
            return this;
        }

        PageSpans build() {
            if (n == 0) {
                return EMPTY;
            }
            long[] bs = Arrays.copyOf(s, n);
            long[] be = Arrays.copyOf(e, n);
            if (!sorted) {
                Integer[] idx = new Integer[n];
                for (int i = 0; i < n; i++) {
                    idx[i] = i;
                }
                Arrays.sort(idx, (a, b) -> Long.compareUnsigned(s[a], s[b]));
                for (int i = 0; i < n; i++) {
                    bs[i] = s[idx[i]];
                    be[i] = e[idx[i]];
                }
            }
            int m = 0;
            for (int i = 0; i < n; i++) {
                if (m > 0 && Long.compareUnsigned(bs[i], be[m - 1]) <= 0) {
                    be[m - 1] = maxU(be[m - 1], be[i]);
                } else {
                    bs[m] = bs[i];
                    be[m] = be[i];
                    m++;
                }
            }
            return new PageSpans(bs, be, m);
        }
    }
}
