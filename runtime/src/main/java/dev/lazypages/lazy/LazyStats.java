package dev.lazypages.lazy;

import java.time.Duration;
import org.HdrHistogram.Histogram;

/**
 * What a {@link LazyPageServer} did, from {@link LazyPageServer#start} to completion.
 *
 * @param faults              page-fault messages read
 * @param faultsCopied        faults resolved with UFFDIO_COPY of stored pages
 * @param zeroPages           faults resolved with UFFDIO_ZEROPAGE (pages not stored, or dropped)
 * @param faultsAlreadyThere  faults whose page was already present (EEXIST: the background won); woken
 * <p>The four page counts partition the stored pages: each is credited to whoever marked it done
 * first, so {@code pagesByFault + pagesByBackground + pagesDropped + pagesFoundPresent} is the
 * number of stored pages at completion.
 *
 * @param pagesByFault        stored pages copied by the fault thread (faulting page and prefetch)
 * @param pagesByBackground   stored pages copied by the background sweep
 * @param pagesDropped        stored pages never copied because of REMOVE, UNMAP or an unmapped range
 * @param pagesFoundPresent   stored pages first seen as EEXIST (copied by another thread that had not
 *                            marked them yet: sent twice)
 * @param bytesCopied         bytes copied by UFFDIO_COPY (both threads)
 * @param retries             deferred faults served again: after EAGAIN (mm changing), or while waiting
 *                            for a background delivery
 * @param removes             UFFD_EVENT_REMOVE events
 * @param unmaps              UFFD_EVENT_UNMAP events
 * @param remaps              UFFD_EVENT_REMAP events
 * @param forksNotServed      UFFD_EVENT_FORK events whose child uffd was closed (child not served)
 * @param copyLatency         fault service time, message available → UFFDIO_COPY done, in ns (stored pages)
 * @param zeroLatency         the same for UFFDIO_ZEROPAGE faults, in ns
 * @param backgroundMiBps     background throughput while it ran (MiB/s of pages it copied)
 * @param timeToCompletion    start → every stored page delivered or dropped
 * @param targetExited        the process went away (ESRCH, or its pid vanished) before completion
 * @param forksServed         UFFD_EVENT_FORK events whose child got its own server
 * @param children            the statistics of those child servers (each with its own children), in fork order
 * @param pagesByFaultLoopHelp of {@code pagesByBackground}, the pages the fault event loop copied between
 *                            faults, helping the BULK loop with its deliveries
 * @param faultsAwaitingBackground faults on a page that one of the two oldest background reads in flight
 *                            was bringing, which waited for that delivery rather than asking again
 * @param readsWaitedForCopies reads of the uffd that found a copy section in flight on another thread
 *                            and waited for it to end (the read/copy handshake, {@link CopyGate})
 * @param readWaitNanos       the time those reads waited, in ns
 * @param backgroundPacedNanos the time the background transfer waited for its bandwidth cap, in ns (0 without one)
 */
public record LazyStats(long faults, long faultsCopied, long zeroPages, long faultsAlreadyThere, long pagesByFault,
                        long pagesByBackground, long pagesDropped, long pagesFoundPresent, long bytesCopied, long retries, long removes,
                        long unmaps, long remaps, long forksNotServed, Histogram copyLatency, Histogram zeroLatency,
                        double backgroundMiBps, Duration timeToCompletion, boolean targetExited,
                        long forksServed, java.util.List<LazyStats> children, long pagesByFaultLoopHelp,
                        long faultsAwaitingBackground, long readsWaitedForCopies, long readWaitNanos, long backgroundPacedNanos) {

    /** A percentile (0-100) of the copy-fault latency, in µs. */
    public double copyMicros(double percentile) {
        return micros(copyLatency, percentile);
    }

    /** A percentile (0-100) of the zero-page-fault latency, in µs. */
    public double zeroMicros(double percentile) {
        return micros(zeroLatency, percentile);
    }

    private static double micros(Histogram h, double percentile) {
        if (h.getTotalCount() == 0) {
            return 0;
        }
        return (percentile >= 100 ? h.getMaxValue() : h.getValueAtPercentile(percentile)) / 1000.0;
    }

    /** p50/p90/p99/p99.9/max of a latency histogram in µs. */
    public static String percentiles(Histogram h) {
        return String.format("n=%d p50=%.1f p90=%.1f p99=%.1f p99.9=%.1f max=%.1f µs", h.getTotalCount(),
                micros(h, 50), micros(h, 90), micros(h, 99), micros(h, 99.9), micros(h, 100));
    }

    @Override
    public String toString() {
        return "faults=" + faults + " (copied " + faultsCopied + ", zero " + zeroPages + ", already there "
                + faultsAlreadyThere + ", waited for the background " + faultsAwaitingBackground + "), pages by fault " + pagesByFault + ", by background " + pagesByBackground
                + (pagesByFaultLoopHelp > 0 ? " (" + pagesByFaultLoopHelp + " of them copied by the fault loop)" : "")
                + ", dropped " + pagesDropped + ", found present " + pagesFoundPresent + ", bytes " + bytesCopied + ", retries " + retries + ", events remove="
                + removes + " unmap=" + unmaps + " remap=" + remaps + " fork(served)=" + forksServed + " fork(not served)=" + forksNotServed
                + ", reads that waited for a copy " + readsWaitedForCopies + String.format(" (%.1f ms)", readWaitNanos / 1e6)
                + ", copy latency " + percentiles(copyLatency) + ", zero latency " + percentiles(zeroLatency)
                + String.format(", background %.1f MiB/s", backgroundMiBps)
                + (backgroundPacedNanos > 0 ? String.format(" (%.1f ms waiting for the bandwidth cap)", backgroundPacedNanos / 1e6) : "")
                + ", completed in "
                + timeToCompletion.toMillis() + " ms" + (targetExited ? ", target exited" : "")
                + (children.isEmpty() ? "" : ", children " + children);
    }
}
