package dev.lazypages.proc;

/**
 * Reading or controlling a live process failed. The message names the step and the process
 * (and thread, where it matters), e.g. {@code freeze of pid 123: tid 125 did not stop within 5000 ms}.
 */
public final class ProcException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public ProcException(String message) {
        super(message);
    }

    public ProcException(String message, Throwable cause) {
        super(message, cause);
    }
}
