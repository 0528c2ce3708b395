package dev.lazypages.migrate;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * How memory moves.
 *
 * <ul>
 *   <li>{@link #PRE_COPY}: rounds while the process runs, then a frozen final dump holding the
 *       last dirty pages; the destination restores eagerly (every page in place before it runs).</li>
 *   <li>{@link #POST_COPY}: no rounds; the frozen final dump leaves every page at the source
 *       (REMOTE), the destination runs the process at once and faults its pages in from the
 *       source's page server.</li>
 *   <li>{@link #HYBRID}: rounds as in pre-copy, then the final dirty pages are left REMOTE and
 *       served as in post-copy.</li>
 * </ul>
 */
public enum MigrationMode {
    PRE_COPY("pre-copy"), POST_COPY("post-copy"), HYBRID("hybrid");

    private final String label;

    MigrationMode(String label) {
        this.label = label;
    }

    /** pre-copy, post-copy, hybrid. */
    public String label() {
        return label;
    }

    /** Whether the process runs before its memory is all at the destination (a page server is needed). */
    public boolean lazy() {
        return this != PRE_COPY;
    }

    /** Whether memory is copied in rounds while the process runs. */
    public boolean preCopies() {
        return this != POST_COPY;
    }

    /** Parses a label (case-insensitive, '_' accepted for '-'). */
    public static MigrationMode parse(String s) {
        String k = s.trim().toLowerCase(Locale.ROOT).replace('_', '-');
        for (MigrationMode m : values()) {
            if (m.label.equals(k)) {
                return m;
            }
        }
        throw new IllegalArgumentException("unknown migration mode '" + s + "' (one of "
                + Arrays.stream(values()).map(MigrationMode::label).collect(Collectors.joining(", ")) + ")");
    }

    @Override
    public String toString() {
        return label;
    }
}
