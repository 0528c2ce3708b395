package dev.lazypages.migrate;

/**
 * A migration that did not happen, naming the step that failed; {@link #sourceRunning()} says
 * whether the process still runs at the source, untouched (pre-check refused, or rolled back).
 */
public class MigrationException extends RuntimeException {
    private final String step;
    private final boolean sourceRunning;

    public MigrationException(String step, String message, boolean sourceRunning, Throwable cause) {
        super("migration failed at '" + step + "': " + message + (sourceRunning ? " (the process runs on at the source)" : ""),
                cause);
        this.step = step;
        this.sourceRunning = sourceRunning;
    }

    public String step() {
        return step;
    }

    public boolean sourceRunning() {
        return sourceRunning;
    }

    /** The destination's pre-checks refused the migration: nothing was done to the process. */
    public static final class Refused extends MigrationException {
        private final java.util.List<String> differences;

        public Refused(java.util.List<String> differences) {
            super("pre-check", String.join("; ", differences), true, null);
            this.differences = java.util.List.copyOf(differences);
        }

        public java.util.List<String> differences() {
            return differences;
        }
    }
}
