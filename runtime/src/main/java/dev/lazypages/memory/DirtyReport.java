package dev.lazypages.memory;

import dev.lazypages.proc.Vma;
import java.util.List;

/**
 * What one {@link DirtyTracker#collect()} found.
 *
 * @param dirty     pages written (or new) since the previous collect; always within {@code vmas}
 * @param vmas      the writable private VMAs of the process as read at the start of this collect, in address order
 * @param scanNanos time the collect took (reading maps, scanning, re-arming)
 */
public record DirtyReport(PageRanges dirty, List<Vma> vmas, long scanNanos) {
    public DirtyReport {
        vmas = List.copyOf(vmas);
    }
}
