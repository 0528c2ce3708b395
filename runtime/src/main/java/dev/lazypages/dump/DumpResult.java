package dev.lazypages.dump;

import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.TimeUnit;

/**
 * What a dump wrote and how long it took.
 *
 * @param pid           the dumped process
 * @param imagesDir     where the image is
 * @param threads       threads recorded
 * @param vmas          VMAs recorded
 * @param pagesStored   pages written to pages.img
 * @param pageSize      bytes per page
 * @param frozenNanos   from the freeze until the process was thawed (or killed)
 * @param totalNanos    the whole dump, seizing and image writing included
 * @param pagesInParent pages left to the parent image (IN_PARENT); 0 without one
 * @param parent        the parent image as the inventory names it, empty without one
 * @param tracker       the dirty tracker that decided what is IN_PARENT ("none" for a full dump)
 * @param scannedBytes  address space whose page tables the page selection walked (a final dump
 *                      after pre-copy with the pagemap-scan tracker walks only the dirty pages)
 */
public record DumpResult(int pid, Path imagesDir, int threads, int vmas, long pagesStored, int pageSize,
                         long frozenNanos, long totalNanos, long pagesInParent, String parent, String tracker,
                         long scannedBytes) {
    private static final double MIB = 1024.0 * 1024.0;

    public DumpResult(int pid, Path imagesDir, int threads, int vmas, long pagesStored, int pageSize, long frozenNanos,
                      long totalNanos) {
        this(pid, imagesDir, threads, vmas, pagesStored, pageSize, frozenNanos, totalNanos, 0, "", Dumper.TRACKER, 0);
    }

    public long bytesStored() {
        return pagesStored * pageSize;
    }

    public long frozenMillis() {
        return TimeUnit.NANOSECONDS.toMillis(frozenNanos);
    }

    public long totalMillis() {
        return TimeUnit.NANOSECONDS.toMillis(totalNanos);
    }

    /**
     * One line, e.g. {@code dumped pid 123 to /img: 3 threads, 24 VMAs, 65601 pages stored (256.3 MiB), frozen 180 ms, total 260 ms};
     * an incremental dump adds {@code , 60000 pages in parent ../2 (pagemap-scan)} after the pages stored.
     */
    public String summary() {
        String inc = parent.isEmpty() ? "" : String.format(Locale.ROOT, ", %d pages in parent %s (%s)", pagesInParent, parent, tracker);
        return String.format(Locale.ROOT, "dumped pid %d to %s: %d threads, %d VMAs, %d pages stored (%.1f MiB)%s, frozen %d ms, total %d ms",
                pid, imagesDir, threads, vmas, pagesStored, bytesStored() / MIB, inc, frozenMillis(), totalMillis());
    }
}
