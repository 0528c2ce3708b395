package dev.lazypages.lazy;

/** Lookups in arrays of start addresses sorted as unsigned values. */
final class SortedAddresses {
    private SortedAddresses() {
    }

    /** Index of the last entry of {@code starts} at or below {@code vaddr} (unsigned), or -1. */
    static int floorIndex(long[] starts, long vaddr) {
        int lo = 0;
        int hi = starts.length - 1;
        int found = -1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (Long.compareUnsigned(starts[mid], vaddr) <= 0) {
                found = mid;
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        return found;
    }
}
