package dev.lazypages.dump;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Pagemap;
import dev.lazypages.ffm.Posix;
import java.lang.foreign.Arena;

/**
 * Finds the pages of a VMA to store ({@link PageSelection}) in a live process: with
 * PAGEMAP_SCAN when the kernel has it (one ioctl per up to {@link #REGIONS} runs), else by
 * reading /proc/PID/pagemap entries {@link #ENTRIES} at a time. Not thread-safe.
 */
final class PageScanner implements AutoCloseable {
    /** page_region slots per PAGEMAP_SCAN call. */
    static final int REGIONS = 1024;
    /** pagemap entries per pread in the fallback (512 KiB). */
    static final int ENTRIES = 64 * 1024;

    private final Pagemap pagemap;
    private final boolean useScan;
    private final long pageSize;
    private final Arena arena = Arena.ofConfined();
    private Pagemap.Regions regions;
    private long[] entries;
    private long zeroPfn = Long.MIN_VALUE;

    private PageScanner(Pagemap pagemap, boolean useScan) {
        this.pagemap = pagemap;
        this.useScan = useScan;
        this.pageSize = Posix.pageSize();
    }

    /** Opens /proc/PID/pagemap ({@code pid} 0: this process); {@code useScan} picks PAGEMAP_SCAN over entries. */
    static PageScanner open(int pid, boolean useScan) {
        return new PageScanner(Pagemap.open(pid), useScan);
    }

    long pageSize() {
        return pageSize;
    }

    /** "pagemap-scan" or "pagemap", for messages. */
    String method() {
        return useScan ? "PAGEMAP_SCAN" : "pagemap entries";
    }

    /** Appends the pages of [start, end) to store to {@code out}. */
    void select(long start, long end, boolean privateFile, PageRuns out) {
        select(start, end, privateFile, out, null);
    }

    /**
     * As {@link #select(long, long, boolean, PageRuns)}; with PAGEMAP_SCAN, the selected pages
     * that are swapped and not present also go to {@code swapOnly} (when not null). Under a
     * userfaultfd with WP_UNPOPULATED (the pagemap-scan tracker) a page never touched since the
     * write-protect carries a PTE marker, which PAGEMAP_SCAN reports as swapped exactly like a
     * page in swap: the caller tells them apart ({@link PageStore.Hints#markers}). The entries
     * fallback (no PAGEMAP_SCAN, so no such tracker) leaves {@code swapOnly} empty.
     */
    void select(long start, long end, boolean privateFile, PageRuns out, PageRuns swapOnly) {
        if (useScan) {
            scan(start, end, privateFile, out, swapOnly);
        } else {
            readEntries(start, end, privateFile, out);
        }
    }

    private void scan(long start, long end, boolean privateFile, PageRuns out, PageRuns swapOnly) {
        if (regions == null) {
            regions = new Pagemap.Regions(arena, REGIONS);
        }
        long from = start;
        while (Long.compareUnsigned(from, end) < 0) {
            int n = pagemap.scan(PageSelection.scanRequest(from, end, privateFile), regions);
            for (int i = 0; i < n; i++) {
                long pages = (regions.end(i) - regions.start(i)) / pageSize;
                out.add(regions.start(i), pages);
                if (swapOnly != null && (regions.categories(i) & Pagemap.PAGE_IS_PRESENT) == 0) {
                    swapOnly.add(regions.start(i), pages);
                }
            }
            long walked = regions.walkEnd();
            if (Long.compareUnsigned(walked, from) <= 0) {
                throw new IllegalStateException("PAGEMAP_SCAN of 0x" + Long.toHexString(from) + "-0x" + Long.toHexString(end)
                        + " made no progress (walk_end 0x" + Long.toHexString(walked) + ")");
            }
            from = walked;
        }
    }

    private void readEntries(long start, long end, boolean privateFile, PageRuns out) {
        if (entries == null) {
            entries = new long[ENTRIES];
        }
        long zero = zeroPagePfn();
        long at = start;
        while (Long.compareUnsigned(at, end) < 0) {
            int n = (int) Math.min(ENTRIES, (end - at) / pageSize);
            pagemap.read(at, n, entries);
            PageSelection.fromEntries(at, entries, n, pageSize, privateFile, zero, out);
            at += n * pageSize;
        }
    }

    /**
     * The pfn of the shared zero page, learnt from a page of our own that was read but never
     * written; {@link PageSelection#UNKNOWN_PFN} when pagemap hides pfns (no CAP_SYS_ADMIN).
     */
    long zeroPagePfn() {
        if (zeroPfn == Long.MIN_VALUE) {
            zeroPfn = probeZeroPfn(pageSize);
        }
        return zeroPfn;
    }

    static long probeZeroPfn(long pageSize) {
        PageBuffer page = Posix.mmapAnonymous(pageSize);
        try (Pagemap self = Pagemap.open(0)) {
            if (page.getByte(0) != 0) { // the read maps the zero page
                return PageSelection.UNKNOWN_PFN;
            }
            long e = self.entry(page.address());
            long pfn = e & Pagemap.PM_PFN_MASK;
            return Pagemap.present(e) && pfn != 0 ? pfn : PageSelection.UNKNOWN_PFN;
        } finally {
            Posix.munmap(page);
        }
    }

    @Override
    public void close() {
        try {
            pagemap.close();
        } finally {
            arena.close();
        }
    }
}
