package dev.lazypages.migrate;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * Where {@link MigrationSource} fails on purpose (fault injection, issue 7 point 3): one value
 * per step of the source's state machine, in order, each named on the command line by its
 * lower-case, dashed name ({@code lazy-dump migrate --inject-fault final-dump}, a hidden option).
 *
 * <p>The contract each one tests: up to and including {@link #RUNNING} the migration fails and
 * the source process runs on as it was (the destination kills what it built); from
 * {@link #COMMIT} on the destination's copy is the live one and the migration completes anyway,
 * because the source keeps serving pages without its control connection, and ending the frozen
 * original is retried until it is gone. Exactly one copy runs after each.
 */
public enum FaultStep {
    /** No fault. */
    NONE,
    /** After the handshake, before the pre-checks. */
    HANDSHAKE,
    /** After the pre-checks passed, before anything touches the process. */
    PRECHECK,
    /** In the middle of pre-copy round N (its first pages are on the wire, the directory is half sent). */
    ROUND,
    /** After pre-copy round N was sent, before the dirty pages are collected. */
    AFTER_ROUND,
    /** Inside the final dump, just after every thread was frozen. */
    FREEZE,
    /** After the final dump, before the page server is announced and the state sent. */
    FINAL_DUMP,
    /** After the final image (the state) was sent, before the restore request. */
    STATE_TRANSFER,
    /** After the restore request, before Running arrives. */
    RESTORE_REQUEST,
    /** Running arrived (the destination's copy runs), before Commit is sent. */
    RUNNING,
    /** The control connection is cut just after Commit was sent. */
    COMMIT,
    /** The control connection is cut during post-copy, while the page server serves. */
    POST_COPY,
    /** The first attempt to end the frozen original fails. */
    END_ORIGINAL;

    /** The command-line name: {@code FINAL_DUMP} is {@code final-dump}. */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }

    /**
     * Parses {@code STEP} or {@code STEP:N} (N: the pre-copy round of {@code round} and
     * {@code after-round}, default 1).
     *
     * @throws IllegalArgumentException naming the steps there are
     */
    public static At parse(String spec) {
        String s = spec.strip();
        int round = 1;
        int colon = s.indexOf(':');
        if (colon >= 0) {
            try {
                round = Integer.parseInt(s.substring(colon + 1));
            } catch (NumberFormatException e) {
                round = 0;
            }
            if (round < 1) {
                throw new IllegalArgumentException("bad round in fault step '" + spec + "': a number from 1");
            }
            s = s.substring(0, colon);
        }
        for (FaultStep f : values()) {
            if (f != NONE && f.cliName().equals(s.toLowerCase(Locale.ROOT))) {
                if (colon >= 0 && f != ROUND && f != AFTER_ROUND) {
                    throw new IllegalArgumentException("fault step " + f.cliName() + " takes no round number");
                }
                return new At(f, round);
            }
        }
        throw new IllegalArgumentException("unknown fault step '" + spec + "'; one of: " + Arrays.stream(values())
                .filter(f -> f != NONE).map(FaultStep::cliName).collect(Collectors.joining(", ")));
    }

    /** Throws {@link InjectedFault} when {@code this} is {@code at}. */
    void check(FaultStep at) {
        if (this == at && this != NONE) {
            throw new InjectedFault(this, 0);
        }
    }

    /**
     * A fault step and, for the round steps, the round it applies to.
     *
     * @param step  where
     * @param round the pre-copy round of {@link #ROUND} and {@link #AFTER_ROUND} (from 1)
     */
    public record At(FaultStep step, int round) {
        public static final At NONE = new At(FaultStep.NONE, 1);

        /** Throws {@link InjectedFault} at {@code at} (of any round). */
        void check(FaultStep at) {
            step.check(at);
        }

        /** Throws {@link InjectedFault} at {@code at} of round {@code n}. */
        void check(FaultStep at, int n) {
            if (step == at && step != FaultStep.NONE && n == round) {
                throw new InjectedFault(step, n);
            }
        }

        /** Whether the fault is {@code at}. */
        boolean is(FaultStep at) {
            return step == at && step != FaultStep.NONE;
        }

        @Override
        public String toString() {
            return step == ROUND || step == AFTER_ROUND ? step.cliName() + ":" + round : step.cliName();
        }
    }

    /** The failure {@link FaultStep} throws. */
    public static final class InjectedFault extends RuntimeException {
        private final FaultStep step;

        InjectedFault(FaultStep step, int round) {
            super("fault injected at step " + step.cliName() + (round > 0 ? " of round " + round : ""));
            this.step = step;
        }

        public FaultStep step() {
            return step;
        }
    }
}
