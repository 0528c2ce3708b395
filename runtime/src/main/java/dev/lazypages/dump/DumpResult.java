package dev.lazypages.dump;

import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.TimeUnit;

/**
 * What a dump wrote and how long it took.
 *
 * @param pid          the dumped process
 * @param imagesDir    where the image is
 * @param threads      threads recorded
 * @param vmas         VMAs recorded
 * @param pagesStored  pages written to pages.img
 * @param pageSize     bytes per page
 * @param frozenNanos  from the freeze until the process was thawed (or killed)
 * @param totalNanos   the whole dump, seizing and image writing included
 */
public record DumpResult(int pid, Path imagesDir, int threads, int vmas, long pagesStored, int pageSize,
                         long frozenNanos, long totalNanos) {
    private static final double MIB = 1024.0 * 1024.0;

    public long bytesStored() {
        return pagesStored * pageSize;
    }

    public long frozenMillis() {
        return TimeUnit.NANOSECONDS.toMillis(frozenNanos);
    }

    public long totalMillis() {
        return TimeUnit.NANOSECONDS.toMillis(totalNanos);
    }

    /** One line, e.g. {@code dumped pid 123 to /img: 3 threads, 24 VMAs, 65601 pages stored (256.3 MiB), frozen 180 ms, total 260 ms}. */
    public String summary() {
        return String.format(Locale.ROOT, "dumped pid %d to %s: %d threads, %d VMAs, %d pages stored (%.1f MiB), frozen %d ms, total %d ms",
                pid, imagesDir, threads, vmas, pagesStored, bytesStored() / MIB, frozenMillis(), totalMillis());
    }
}
