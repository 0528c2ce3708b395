package dev.lazypages.perf;

/** A benchmark run that went wrong: the workload failed its check, or did not answer in time. */
public final class BenchFailure extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public BenchFailure(String message) {
        super(message);
    }
}
