package dev.lazypages.migrate;

/**
 * Where {@link MigrationSource} throws on purpose (fault injection for rollback tests):
 * the injected failure happens just after the named step.
 */
public enum FaultStep {
    /** No fault. */
    NONE,
    /** After the handshake, before the pre-checks. */
    AFTER_HANDSHAKE,
    /** After the pre-checks passed. */
    AFTER_PRECHECK,
    /** After the first pre-copy round was sent. */
    AFTER_FIRST_ROUND,
    /** After the freeze and final dump, before anything of it is sent. */
    AFTER_FREEZE,
    /** After the final image and the restore request were sent, before Running. */
    AFTER_RESTORE_REQUEST;

    /** Throws {@link InjectedFault} when {@code this} is {@code at}. */
    void check(FaultStep at) {
        if (this == at && this != NONE) {
            throw new InjectedFault(this);
        }
    }

    /** The failure {@link FaultStep} throws. */
    public static final class InjectedFault extends RuntimeException {
        private final FaultStep step;

        InjectedFault(FaultStep step) {
            super("fault injected after step " + step);
            this.step = step;
        }

        public FaultStep step() {
            return step;
        }
    }
}
