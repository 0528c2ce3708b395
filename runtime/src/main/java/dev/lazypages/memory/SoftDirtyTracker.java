package dev.lazypages.memory;

import dev.lazypages.ffm.Pagemap;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.Vma;
import java.util.List;

/**
 * Soft-dirty tracking (kernels with CONFIG_MEM_SOFT_DIRTY): {@code clear_refs 4} clears every
 * page's bit 55 and write-protects it; a write sets the bit again ({@link SoftDirtyScan}).
 * Memory that appeared since the previous round is added entirely, as the kernel's VM_SOFTDIRTY
 * already does.
 *
 * <p>Reading the bits and clearing them are two steps, so a write between them would be lost.
 * collect therefore runs them with the process frozen: when the {@link SeizedProcess} given to
 * arm is still attached and running, collect freezes it for the read and the clear (one pread
 * of 8 bytes per page, then the clear) and thaws it. When it was detached, collect runs without
 * the freeze and may miss writes made during the call. close leaves the soft-dirty bits as they
 * are (they change nothing for the process) and may be called frozen or running.
 */
public final class SoftDirtyTracker implements DirtyTracker {
    private final int pid;
    private SeizedProcess process;
    private Pagemap pagemap;
    private PageRanges known = PageRanges.EMPTY;
    private boolean closed;

    public SoftDirtyTracker(int pid) {
        this.pid = pid;
    }

    @Override
    public String name() {
        return "soft-dirty";
    }

    @Override
    public boolean reportsEverything() {
        return false;
    }

    @Override
    public long arm(SeizedProcess process) {
        long t0 = System.nanoTime();
        if (process.pid() != pid) {
            throw new IllegalArgumentException("tracker of pid " + pid + " armed with " + process);
        }
        if (closed || pagemap != null) {
            throw new IllegalStateException("the soft-dirty tracker of pid " + pid + " is " + (closed ? "closed" : "armed already"));
        }
        this.process = process;
        pagemap = Pagemap.open(pid);
        known = PageRanges.ofVmas(TrackedVmas.read(pid));
        Pagemap.clearSoftDirty(pid);
        return System.nanoTime() - t0;
    }

    @Override
    public DirtyReport collect() {
        if (pagemap == null || closed) {
            throw new IllegalStateException("collect on the soft-dirty tracker of pid " + pid + ": "
                    + (closed ? "closed" : "not armed"));
        }
        long t0 = System.nanoTime();
        boolean freeze = process.isAttached() && !process.isFrozen();
        if (freeze) {
            process.freeze();
        }
        try {
            List<Vma> vmas = TrackedVmas.read(pid);
            PageRanges current = PageRanges.ofVmas(vmas);
            PageRanges dirty = SoftDirtyScan.dirty(vmas, pagemap::read).union(current.subtract(known));
            Pagemap.clearSoftDirty(pid);
            known = current;
            return new DirtyReport(dirty.intersect(current), vmas, System.nanoTime() - t0);
        } finally {
            if (freeze) {
                process.thaw();
            }
        }
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            if (pagemap != null) {
                pagemap.close();
            }
        }
    }
}
