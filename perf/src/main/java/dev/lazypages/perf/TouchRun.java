package dev.lazypages.perf;

import java.util.ArrayList;
import java.util.List;
import org.HdrHistogram.Histogram;

/**
 * What one touch run measured.
 *
 * @param pipeline    {@code ours} or {@code floor}
 * @param spec        what was run
 * @param toucher     the toucher's own output (latencies, verification)
 * @param bytesIn     bytes the pipeline delivered until every page was in (background runs), else 0
 * @param allInNanos  transfer start to every page in (background runs), else -1
 * @param touchLagNanos transfer start to the first touch (ours: the lazy server starts during the restore,
 *                    the process touches once it runs; floor: the toucher starts its transfer, then touches)
 * @param progress    {ms since transfer start, bytes in} samples, in time order (background runs)
 * @param detail      one line of the pipeline's own statistics
 * @param kernelMillis CPU time of the kernel's own threads during the touches ({@link KernelCpu}), -1 unknown
 */
public record TouchRun(String pipeline, TouchSpec spec, ToucherResult toucher, long bytesIn, long allInNanos,
                       long touchLagNanos, List<double[]> progress, String detail, JvmActivity jvm, long kernelMillis) {
    /** A touch faster than this found its page in: no fault can be served that fast over TCP. */
    public static final long HIT_NANOS = 2_000;

    /** MiB/s from transfer start to every page in; NaN without a background run. */
    public double throughputMiBps() {
        return allInNanos > 0 ? bytesIn / 1048576.0 / (allInNanos / 1e9) : Double.NaN;
    }

    /** Touches that faulted (took at least {@link #HIT_NANOS}). */
    public long faultedTouches() {
        long n = 0;
        for (long v : toucher.latencies()) {
            if (v >= HIT_NANOS) {
                n++;
            }
        }
        return n;
    }

    /**
     * The latencies of the touches that faulted, in ns. At a fixed rate ({@code intervalMicros >
     * 0}) each is recorded with that expected interval, so a stall that delayed the touches
     * behind it counts for them too (coordinated omission).
     */
    public Histogram faultHistogram() {
        return histogram(toucher, true);
    }

    static Histogram histogram(ToucherResult t, boolean faultsOnly) {
        Histogram h = new Histogram(3);
        long expected = t.intervalMicros() * 1000;
        for (long v : t.latencies()) {
            if (faultsOnly && v < HIT_NANOS) {
                continue;
            }
            if (expected > 0) {
                h.recordValueWithExpectedInterval(v, expected);
            } else {
                h.recordValue(v);
            }
        }
        return h;
    }

    /**
     * The transfer rate over time: {ms, MiB/s over the interval ending there}, from the progress
     * samples, over intervals of at least {@code minIntervalMs} (a fifth of the whole transfer when
     * that is shorter, so that a fast transfer still has a curve).
     */
    public List<double[]> rateSeries(double minIntervalMs) {
        List<double[]> out = new ArrayList<>();
        if (progress.size() < 2) {
            return out;
        }
        double step = Math.min(minIntervalMs, (progress.getLast()[0] - progress.getFirst()[0]) / 5);
        double[] prev = null;
        for (double[] p : progress) {
            if (prev == null) {
                prev = p;
                continue;
            }
            double dt = p[0] - prev[0];
            if (dt > 0 && dt >= step) {
                out.add(new double[] {p[0], (p[1] - prev[1]) / 1048576.0 / (dt / 1000.0)});
                prev = p;
            }
        }
        return out;
    }
}
