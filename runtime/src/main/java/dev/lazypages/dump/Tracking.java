package dev.lazypages.dump;

import dev.lazypages.proc.SeizedProcess;

/**
 * The dirty tracker as the dump package uses it: the memory package's tracker seen through
 * {@link PageSpans} (see {@link Trackings}). One instance follows one process across rounds.
 */
interface Tracking extends AutoCloseable {
    /** "pagemap-scan", "soft-dirty", "none". */
    String name();

    /** Why this tracker was chosen (for {@code auto}), for reports. */
    String reason();

    /** Starts tracking; {@code process} is frozen. Returns the nanoseconds it took. */
    long arm(SeizedProcess process);

    /** Pages written since {@link #arm} or the last collect, and resets; the process may run. */
    Collected collect();

    /** The none tracker: every page is always dirty. */
    boolean reportsEverything();

    /** See {@link dev.lazypages.memory.DirtyTracker#leavesMarkers}. */
    default boolean leavesMarkers() {
        return false;
    }

    /** Drops the kernel-side registration; the process is as it was. */
    @Override
    void close();

    /**
     * One collect's result.
     *
     * @param dirty     the dirty pages (ignored when {@link #reportsEverything})
     * @param tracked   the memory the tracker watched at this collect (its VMAs): pages outside
     *                  it are not known to be clean and count as dirty
     * @param scanNanos time the collect took
     */
    record Collected(PageSpans dirty, PageSpans tracked, long scanNanos) {
    }
}
