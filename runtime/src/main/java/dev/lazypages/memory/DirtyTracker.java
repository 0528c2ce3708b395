package dev.lazypages.memory;

import dev.lazypages.proc.SeizedProcess;

/**
 * Which pages of a process were written between two points in time: the basis of pre-copy.
 * Made by {@link DirtyTrackers#create}. Implementations are not thread-safe: one thread at a
 * time (not necessarily the same one) calls them.
 *
 * <p>What is tracked: the process's writable private VMAs ({@link TrackedVmas}). Pages that
 * became unpopulated (MADV_DONTNEED, MADV_FREE reclaimed) are <em>not</em> reported as dirty by
 * any tracker; the final pass at freeze must compare presence (what the dumper stores) with
 * what was copied before.
 */
public interface DirtyTracker extends AutoCloseable {
    /** "pagemap-scan", "soft-dirty" or "none". */
    String name();

    /** Starts tracking; called once with the process FROZEN (injection allowed). Returns nanoseconds spent. */
    long arm(SeizedProcess process);

    /**
     * Pages written since arm() or the last collect(), over the process's current writable private VMAs, and resets
     * tracking so the next collect() reports only later writes. May be called while the process runs. Memory that
     * appeared since the previous call (new VMAs, grown VMAs, moved ranges) counts as dirty entirely; vanished memory
     * is simply absent.
     */
    DirtyReport collect();

    /** True when collect() cannot tell dirty pages apart and reports all memory (the none tracker). */
    boolean reportsEverything();

    /**
     * True for a userfaultfd write-protect tracker with WP_UNPOPULATED (pagemap-scan): once
     * armed, a page of tracked memory never touched since carries a PTE marker, which pagemap
     * reports as swapped, and a page that went away (an empty PTE: madvise DONTNEED, reclaim
     * after MADV_FREE) is reported written by the next collect. Page selection relies on both.
     */
    default boolean leavesMarkers() {
        return false;
    }

    /**
     * Stops tracking and drops every kernel-side registration so the process is as it was. Called with the process
     * frozen or running (every implementation here accepts either).
     */
    @Override
    void close();
}
