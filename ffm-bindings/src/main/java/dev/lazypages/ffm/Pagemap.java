package dev.lazypages.ffm;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

import dev.lazypages.ffm.gen.Native;
import dev.lazypages.ffm.gen.page_region;
import dev.lazypages.ffm.gen.pm_scan_arg;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * /proc/PID/pagemap of one process (Documentation/admin-guide/mm/pagemap.rst): 64-bit entries
 * read with pread, and the PAGEMAP_SCAN ioctl (Linux 6.7+) that reports page categories for a
 * whole range in one call and, with a userfaultfd in WP_ASYNC mode, write-protects what it
 * reports (the basis of dirty tracking without soft-dirty).
 */
public final class Pagemap implements AutoCloseable {
    /** Entry bit 63: page present in RAM. */
    public static final long PM_PRESENT = 1L << 63;
    /** Entry bit 62: page swapped. */
    public static final long PM_SWAPPED = 1L << 62;
    /** Entry bit 61: file-page or shared-anon. */
    public static final long PM_FILE = 1L << 61;
    /** Entry bit 57: write-protected by userfaultfd. */
    public static final long PM_UFFD_WP = 1L << 57;
    /** Entry bit 56: page exclusively mapped. */
    public static final long PM_MMAP_EXCLUSIVE = 1L << 56;
    /** Entry bit 55: soft-dirty. */
    public static final long PM_SOFT_DIRTY = 1L << 55;
    /** Entry bits 0-54: page frame number (zero without CAP_SYS_ADMIN). */
    public static final long PM_PFN_MASK = (1L << 55) - 1;

    public static final long PAGE_IS_WPALLOWED = Native.PAGE_IS_WPALLOWED();
    public static final long PAGE_IS_WRITTEN = Native.PAGE_IS_WRITTEN();
    public static final long PAGE_IS_FILE = Native.PAGE_IS_FILE();
    public static final long PAGE_IS_PRESENT = Native.PAGE_IS_PRESENT();
    public static final long PAGE_IS_SWAPPED = Native.PAGE_IS_SWAPPED();
    public static final long PAGE_IS_PFNZERO = Native.PAGE_IS_PFNZERO();
    public static final long PAGE_IS_HUGE = Native.PAGE_IS_HUGE();
    public static final long PAGE_IS_SOFT_DIRTY = Native.PAGE_IS_SOFT_DIRTY();
    public static final long PM_SCAN_WP_MATCHING = Native.PM_SCAN_WP_MATCHING();
    public static final long PM_SCAN_CHECK_WPASYNC = Native.PM_SCAN_CHECK_WPASYNC();

    private static final long REGION_SIZE = page_region.sizeof();

    private final int pid;
    private final int fd;
    private final long pageSize;

    private Pagemap(int pid, int fd) {
        this.pid = pid;
        this.fd = fd;
        this.pageSize = Posix.pageSize();
    }

    /** Opens /proc/PID/pagemap ({@code pid} 0 means this process). */
    public static Pagemap open(int pid) {
        String path = pid == 0 ? "/proc/self/pagemap" : "/proc/" + pid + "/pagemap";
        return new Pagemap(pid, Posix.openRead(path));
    }

    /** Reads the entries of {@code count} pages from {@code startAddress} into {@code out}. */
    public void read(long startAddress, int count, long[] out) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(8L * count, 8);
            long n = Posix.preadFully(fd, buf, startAddress / pageSize * 8);
            if (n != 8L * count) {
                throw new SyscallException("pread(/proc/" + pid + "/pagemap, pages=" + count + ", addr=0x"
                        + Long.toHexString(startAddress) + ") short read of " + n + " bytes", Errno.EIO);
            }
            MemorySegment.copy(buf, JAVA_LONG, 0, out, 0, count);
        }
    }

    /** One entry. */
    public long entry(long address) {
        long[] one = new long[1];
        read(address, 1, one);
        return one[0];
    }

    public static boolean present(long entry) {
        return (entry & PM_PRESENT) != 0;
    }

    public static boolean swapped(long entry) {
        return (entry & PM_SWAPPED) != 0;
    }

    public static boolean uffdWriteProtected(long entry) {
        return (entry & PM_UFFD_WP) != 0;
    }

    public static boolean softDirty(long entry) {
        return (entry & PM_SOFT_DIRTY) != 0;
    }

    /**
     * Present or swapped: the page has content the process wrote or read in. One exception:
     * under a userfaultfd with WP_UNPOPULATED, a write-protected page that was never touched is
     * a PTE marker and reads as swapped with bit 57 set, as a write-protected page in swap does;
     * PAGEMAP_SCAN cannot tell them apart either (both are {@link #PAGE_IS_SWAPPED} without
     * {@link #PAGE_IS_WRITTEN}, measured on 6.18): only what the caller knows of the page's
     * history can (see the runtime's PageStore.Hints).
     */
    public static boolean populated(long entry) {
        return (entry & (PM_PRESENT | PM_SWAPPED)) != 0;
    }

    /** The parameters of one PAGEMAP_SCAN call; see the kernel's pagemap.rst. */
    public record ScanRequest(long start, long end, long flags, long maxPages,
                              long categoryInverted, long categoryMask, long categoryAnyofMask, long returnMask) {
    }

    /**
     * A reusable output buffer of {@code struct page_region}: scan into it, then read region
     * {@code i} with the accessors. Not thread-safe.
     */
    public static final class Regions {
        private final MemorySegment segment;
        private final int capacity;
        private int count;
        private long walkEnd;

        public Regions(Arena arena, int capacity) {
            this.segment = page_region.allocateArray(capacity, arena);
            this.capacity = capacity;
        }

        public int count() {
            return count;
        }

        public int capacity() {
            return capacity;
        }

        /** Where the walk stopped; less than the requested end when the buffer or max_pages ran out. */
        public long walkEnd() {
            return walkEnd;
        }

        public long start(int i) {
            return page_region.start(page_region.asSlice(segment, i));
        }

        public long end(int i) {
            return page_region.end(page_region.asSlice(segment, i));
        }

        public long categories(int i) {
            return page_region.categories(page_region.asSlice(segment, i));
        }
    }

    /** PAGEMAP_SCAN: returns the number of regions written into {@code out}. */
    public int scan(ScanRequest r, Regions out) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = pm_scan_arg.allocate(arena);
            pm_scan_arg.size(a, pm_scan_arg.sizeof());
            pm_scan_arg.flags(a, r.flags());
            pm_scan_arg.start(a, r.start());
            pm_scan_arg.end(a, r.end());
            pm_scan_arg.vec(a, out.segment.address());
            pm_scan_arg.vec_len(a, out.capacity);
            pm_scan_arg.max_pages(a, r.maxPages());
            pm_scan_arg.category_inverted(a, r.categoryInverted());
            pm_scan_arg.category_mask(a, r.categoryMask());
            pm_scan_arg.category_anyof_mask(a, r.categoryAnyofMask());
            pm_scan_arg.return_mask(a, r.returnMask());
            int n = Libc.ioctl(fd, Ioctl.PAGEMAP_SCAN, a.address());
            if (n < 0) {
                throw new SyscallException("ioctl(/proc/" + pid + "/pagemap, PAGEMAP_SCAN, start=0x" + Long.toHexString(r.start())
                        + ", end=0x" + Long.toHexString(r.end()) + ", flags=" + r.flags() + ")", Libc.errno());
            }
            out.count = n;
            out.walkEnd = pm_scan_arg.walk_end(a);
            return n;
        }
    }

    /** Clears the soft-dirty bits of every page of {@code pid} (writes 4 to /proc/PID/clear_refs). */
    public static void clearSoftDirty(int pid) {
        Posix.writeString(pid == 0 ? "/proc/self/clear_refs" : "/proc/" + pid + "/clear_refs", "4");
    }

    public int pid() {
        return pid;
    }

    @Override
    public void close() {
        Posix.close(fd);
    }
}
