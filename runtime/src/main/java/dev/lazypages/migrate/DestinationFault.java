package dev.lazypages.migrate;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * Where {@link MigrationDestination} fails on purpose (fault injection for the tests of issue 7
 * point 3: after each, exactly one copy of the process must run). Each fails the migration at
 * that step of the destination's state machine as a real failure there would; the hidden
 * {@code serve --inject-fault STEP} option takes the names below.
 */
public enum DestinationFault {
    /** No fault. */
    NONE,
    /** The pre-checks passed, before the reply. */
    PRECHECK,
    /** A pre-copy round arrived (the first one). */
    ROUND_RECEIVED,
    /** The warm process was built from round 1 (it must be killed). */
    SKELETON_BUILT,
    /** A later round was applied to the warm process (round 2). */
    ROUND_APPLIED,
    /** The final image arrived, before the restore request. */
    FINAL_RECEIVED,
    /** The process was restored, before Running is sent (it must be killed). */
    RESTORE,
    /** Running was sent, before anything else is read. */
    RUNNING_SENT,
    /** Commit arrived, before the destination takes it. */
    WAIT_COMMIT,
    /** After Commit, during post-copy: the destination's copy cannot continue. */
    POST_COPY;

    /** The name on the command line: {@code skeleton-built}. */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }

    /**
     * The fault named {@code s} (as {@link #cliName}, or the constant's name).
     *
     * @throws IllegalArgumentException naming the valid steps
     */
    public static DestinationFault parse(String s) {
        for (DestinationFault f : values()) {
            if (f.cliName().equals(s) || f.name().equals(s)) {
                return f;
            }
        }
        throw new IllegalArgumentException("unknown fault step '" + s + "' (one of " + Arrays.stream(values())
                .map(DestinationFault::cliName).collect(Collectors.joining(", ")) + ")");
    }

    /** Throws {@link Injected} when {@code this} is {@code at}. */
    void check(DestinationFault at) {
        if (this == at && this != NONE) {
            throw new Injected(this);
        }
    }

    /** The failure a {@link DestinationFault} throws. */
    public static final class Injected extends RuntimeException {
        Injected(DestinationFault step) {
            super("fault injected at step " + step.cliName());
        }
    }
}
