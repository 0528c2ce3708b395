package dev.lazypages.lazy;

/** A page-aligned address range [{@code start}, {@code end}), e.g. one registered with a userfaultfd. */
public record AddressRange(long start, long end) {
    public AddressRange {
        if (Long.compareUnsigned(start, end) >= 0) {
            throw new IllegalArgumentException("empty range [0x" + Long.toHexString(start) + ", 0x" + Long.toHexString(end) + ")");
        }
    }

    public long length() {
        return end - start;
    }

    @Override
    public String toString() {
        return "[0x" + Long.toHexString(start) + ", 0x" + Long.toHexString(end) + ")";
    }
}
