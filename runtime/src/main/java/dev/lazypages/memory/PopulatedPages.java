package dev.lazypages.memory;

import dev.lazypages.ffm.Pagemap;
import dev.lazypages.proc.Vma;
import java.lang.foreign.Arena;
import java.util.List;

/**
 * Every present or swapped page of the tracked VMAs of a process: with PAGEMAP_SCAN (category
 * any-of PAGE_IS_PRESENT | PAGE_IS_SWAPPED) when the kernel has it, else from the 64-bit
 * entries of /proc/PID/pagemap. Not thread-safe.
 */
final class PopulatedPages implements AutoCloseable {
    private static final long ANY = Pagemap.PAGE_IS_PRESENT | Pagemap.PAGE_IS_SWAPPED;

    private final Pagemap pagemap;
    private final boolean useScan;
    private final Arena arena = Arena.ofShared();
    private final Pagemap.Regions regions;

    PopulatedPages(int pid, boolean useScan) {
        this.pagemap = Pagemap.open(pid);
        this.useScan = useScan;
        this.regions = useScan ? new Pagemap.Regions(arena, PagemapScanTracker.DEFAULT_REGIONS) : null;
    }

    boolean usesScan() {
        return useScan;
    }

    PageRanges of(List<Vma> vmas) {
        if (!useScan) {
            return SoftDirtyScan.select(vmas, pagemap::read, false);
        }
        PageRanges.Builder out = PageRanges.builder();
        for (Vma v : vmas) {
            if (!TrackedVmas.tracked(v)) {
                continue;
            }
            long from = v.start();
            while (Long.compareUnsigned(from, v.end()) < 0) {
                int n = pagemap.scan(new Pagemap.ScanRequest(from, v.end(), 0, 0, 0, 0, ANY, ANY), regions);
                for (int i = 0; i < n; i++) {
                    out.add(regions.start(i), regions.end(i));
                }
                long walked = regions.walkEnd();
                if (Long.compareUnsigned(walked, from) <= 0) {
                    throw new IllegalStateException("PAGEMAP_SCAN of pid " + pagemap.pid() + " made no progress at 0x"
                            + Long.toHexString(from));
                }
                from = walked;
            }
        }
        return out.build();
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
