package dev.lazypages.dump;

import dev.lazypages.memory.DirtyReport;
import dev.lazypages.memory.DirtyTracker;
import dev.lazypages.memory.DirtyTrackers;
import dev.lazypages.memory.PageRanges;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.Vma;
import java.util.List;
import java.util.Set;

/**
 * Makes the {@link Tracking} for a {@code --track-mem} mode: the memory package's trackers
 * adapted to {@link PageSpans}.
 */
public final class Trackings {
    /** The {@code --track-mem} modes (public for callers building {@link DumpOptions}); the rest stays internal. */
    public static final String AUTO = "auto";
    public static final String NONE = "none";
    public static final String PAGEMAP_SCAN = "pagemap-scan";
    public static final String SOFT_DIRTY = "soft-dirty";
    public static final Set<String> MODES = Set.of(AUTO, PAGEMAP_SCAN, SOFT_DIRTY, NONE);

    private Trackings() {
    }

    /** Checks a {@code --track-mem} value. */
    static String checkMode(String mode) {
        if (!MODES.contains(mode)) {
            throw new IllegalArgumentException("--track-mem " + mode + ": expected auto, pagemap-scan, soft-dirty or none");
        }
        return mode;
    }

    /**
     * The tracker for {@code mode} and process {@code pid}, not armed yet.
     *
     * @throws UnsupportedOperationException when the mode asked for is not available here, saying why
     */
    static Tracking create(String mode, int pid) {
        checkMode(mode);
        DirtyTrackers.Selection sel = DirtyTrackers.select(mode);
        return new Adapter(DirtyTrackers.create(mode, pid), sel.reason());
    }

    /** The dump package's view of a memory-package tracker. */
    static Tracking adapt(DirtyTracker t, String reason) {
        return new Adapter(t, reason);
    }

    static PageSpans spans(PageRanges r) {
        PageSpans.Builder b = new PageSpans.Builder();
        for (int i = 0; i < r.runCount(); i++) {
            b.add(r.start(i), r.end(i));
        }
        return b.build();
    }

    static PageSpans spans(List<Vma> vmas) {
        PageSpans.Builder b = new PageSpans.Builder();
        for (Vma v : vmas) {
            b.add(v.start(), v.end());
        }
        return b.build();
    }

    private record Adapter(DirtyTracker t, String reason) implements Tracking {
        @Override
        public String name() {
            return t.name();
        }

        @Override
        public long arm(SeizedProcess process) {
            return t.arm(process);
        }

        @Override
        public Collected collect() {
            DirtyReport r = t.collect();
            return new Collected(spans(r.dirty()), spans(r.vmas()), r.scanNanos());
        }

        @Override
        public boolean reportsEverything() {
            return t.reportsEverything();
        }

        @Override
        public boolean leavesMarkers() {
            return t.leavesMarkers();
        }

        @Override
        public void close() {
            t.close();
        }
    }
}
