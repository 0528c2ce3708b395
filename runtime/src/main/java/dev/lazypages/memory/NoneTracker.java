package dev.lazypages.memory;

import dev.lazypages.ffm.Features;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.Vma;
import java.util.List;

/**
 * No dirty tracking: every collect reports all there is, every present or swapped page of the
 * tracked VMAs ({@link PopulatedPages}: PAGEMAP_SCAN when available, else pagemap entries).
 * Pages never populated are left out: they read as zeros on both sides. Touches nothing in the
 * process; arm and close may be called frozen or running.
 */
public final class NoneTracker implements DirtyTracker {
    private final int pid;
    private final String reason;
    private PopulatedPages pages;
    private boolean closed;

    /** {@code reason} says why there is no real tracking (for logs). */
    public NoneTracker(int pid, String reason) {
        this.pid = pid;
        this.reason = reason;
    }

    @Override
    public String name() {
        return "none";
    }

    /** Why this tracker was chosen. */
    public String reason() {
        return reason;
    }

    @Override
    public boolean reportsEverything() {
        return true;
    }

    @Override
    public long arm(SeizedProcess process) {
        long t0 = System.nanoTime();
        if (process.pid() != pid) {
            throw new IllegalArgumentException("tracker of pid " + pid + " armed with " + process);
        }
        if (closed || pages != null) {
            throw new IllegalStateException("the none tracker of pid " + pid + " is " + (closed ? "closed" : "armed already"));
        }
        pages = new PopulatedPages(pid, Features.pagemapScan().available());
        return System.nanoTime() - t0;
    }

    @Override
    public DirtyReport collect() {
        if (pages == null || closed) {
            throw new IllegalStateException("collect on the none tracker of pid " + pid + ": " + (closed ? "closed" : "not armed"));
        }
        long t0 = System.nanoTime();
        List<Vma> vmas = TrackedVmas.read(pid);
        PageRanges all = pages.of(vmas);
        return new DirtyReport(all, vmas, System.nanoTime() - t0);
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            if (pages != null) {
                pages.close();
            }
        }
    }
}
