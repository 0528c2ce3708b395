package dev.lazypages.restore;

/**
 * A restore that did not complete; the half-built process is gone. The message is one line
 * naming the step, e.g. {@code restore failed at 'map vma 0x7f12...-0x7f12... /usr/lib/libc.so.6': ...}.
 */
public final class RestoreException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** Why it failed, for exit codes. */
    public enum Reason {
        /** Something went wrong while rebuilding the process. */
        FAILED,
        /** The image is corrupt or inconsistent (an {@code ImageFormatException} is the cause). */
        BAD_IMAGE,
        /** The image cannot be restored on this machine (other CPU features, vdso size, files changed). */
        UNSUPPORTED
    }

    private final String step;
    private final Reason reason;

    public RestoreException(String step, Reason reason, String problem, Throwable cause) {
        super("restore failed at '" + step + "': " + problem, cause);
        this.step = step;
        this.reason = reason;
    }

    /** The step that failed, as named in the message. */
    public String step() {
        return step;
    }

    public Reason reason() {
        return reason;
    }
}
