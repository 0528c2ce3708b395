package dev.lazypages.lazy;

/**
 * Holds the background transfer to a byte rate ({@code lazy-dump migrate --max-postcopy-bandwidth},
 * {@link LazyPageServer.Options#backgroundBytesPerSecond}): each request reserves its bytes' share
 * of time and may start only when the requests before it have had theirs. Time the transfer left
 * unused is credited for at most {@value #BURST_NANOS} ns, so after a pause the requests do not
 * come in one long burst (a burst is what holds the CPUs from the faults). Not thread-safe: the
 * background thread owns it.
 */
final class Pacer {
    /** The most unused time credited. */
    static final long BURST_NANOS = 1_000_000;
    private final long bytesPerSecond;
    /** The time (System.nanoTime) at which the requests reserved so far have had their share. */
    private long next;

    /** A pacer at {@code bytesPerSecond} (> 0), starting at {@code now}. */
    Pacer(long bytesPerSecond, long now) {
        if (bytesPerSecond <= 0) {
            throw new IllegalArgumentException("need a rate > 0 bytes/s, not " + bytesPerSecond);
        }
        this.bytesPerSecond = bytesPerSecond;
        this.next = now;
    }

    /**
     * Reserves a request of {@code bytes} at {@code now}; returns how many ns to wait before it
     * starts (0: at once).
     */
    long reserve(long bytes, long now) {
        long start = Math.max(next, now - BURST_NANOS);
        next = start + nanosFor(bytes);
        return Math.max(0, start - now);
    }

    /** The time {@code bytes} take at this rate. */
    long nanosFor(long bytes) {
        return bytes <= Long.MAX_VALUE / 1_000_000_000L ? bytes * 1_000_000_000L / bytesPerSecond
                : (long) (bytes * 1e9 / bytesPerSecond);
    }
}
