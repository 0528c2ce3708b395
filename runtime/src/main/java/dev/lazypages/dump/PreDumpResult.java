package dev.lazypages.dump;

import java.nio.file.Path;
import java.util.Locale;

/**
 * What one pre-dump (a memory-only image taken while the process ran) stored.
 *
 * @param pid           the process
 * @param imagesDir     where the image is
 * @param round         1 for the first pre-dump of a session, then 2, 3, ...
 * @param pagesStored   pages copied (PRESENT)
 * @param pagesInParent pages left to the parent (IN_PARENT)
 * @param pageSize      bytes per page
 * @param frozenNanos   time the process was stopped (to arm the tracker; 0 after the first round)
 * @param copyNanos     time spent finding and copying pages, process running
 * @param scanNanos     time the tracker took to collect the dirty set this round copied
 * @param dirtyPages    pages the tracker reported dirty for this round (round 1: every page stored)
 * @param dirtyRate     pages per second dirtied before this round (0 for round 1)
 * @param parent        the parent as the inventory names it, empty for none
 * @param tracker       the tracker name
 * @param totalNanos    the whole pre-dump
 */
public record PreDumpResult(int pid, Path imagesDir, int round, long pagesStored, long pagesInParent, int pageSize,
                            long frozenNanos, long copyNanos, long scanNanos, long dirtyPages, double dirtyRate, String parent,
                            String tracker, long totalNanos) {
    private static final double MIB = 1024.0 * 1024.0;

    public long bytesStored() {
        return pagesStored * pageSize;
    }

    /** The round as the convergence policy records it. */
    public ConvergencePolicy.Round toRound() {
        return new ConvergencePolicy.Round(round, pagesStored, pagesInParent, bytesStored(), copyNanos, frozenNanos, scanNanos,
                dirtyPages, dirtyRate);
    }

    /**
     * One line, e.g. {@code pre-dumped pid 12 to /img/2: 1024 pages stored (4.0 MiB), 64512 pages in parent ../1
     * (pagemap-scan), frozen 0.0 ms, copy 12 ms}.
     */
    public String summary() {
        String inc = parent.isEmpty() ? "" : String.format(Locale.ROOT, ", %d pages in parent %s", pagesInParent, parent);
        return String.format(Locale.ROOT, "pre-dumped pid %d to %s: %d pages stored (%.1f MiB)%s (%s), frozen %.1f ms, copy %d ms",
                pid, imagesDir, pagesStored, bytesStored() / MIB, inc, tracker, frozenNanos / 1e6, copyNanos / 1_000_000);
    }
}
