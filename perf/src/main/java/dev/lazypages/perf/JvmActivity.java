package dev.lazypages.perf;

import java.lang.management.CompilationMXBean;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.util.concurrent.locks.LockSupport;

/**
 * What this JVM's own machinery did over a window: collections (count and time, as the
 * collectors report it) and JIT compilation time. Both take CPUs (and a pause stops the threads
 * that serve faults), so a benchmark round they fell in says so next to its figures.
 *
 * @param gcCount    collections that ran
 * @param gcMillis   time the collectors report for them (pauses, and for concurrent collectors their cycles)
 * @param jitMillis  time the JIT compilers spent compiling (-1 where the JVM does not tell)
 */
public record JvmActivity(long gcCount, long gcMillis, long jitMillis) {
    /** Totals since the JVM started. */
    public static JvmActivity now() {
        long count = 0;
        long millis = 0;
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            count += Math.max(0, gc.getCollectionCount());
            millis += Math.max(0, gc.getCollectionTime());
        }
        CompilationMXBean jit = ManagementFactory.getCompilationMXBean();
        long jitMillis = jit != null && jit.isCompilationTimeMonitoringSupported() ? jit.getTotalCompilationTime() : -1;
        return new JvmActivity(count, millis, jitMillis);
    }

    /** What happened between {@code earlier} and this. */
    public JvmActivity since(JvmActivity earlier) {
        return new JvmActivity(gcCount - earlier.gcCount, gcMillis - earlier.gcMillis,
                jitMillis < 0 || earlier.jitMillis < 0 ? -1 : jitMillis - earlier.jitMillis);
    }

    /** Polling period of {@link #awaitQuietCompilers}. */
    private static final long QUIET_POLL_NANOS = 10_000_000;

    /**
     * Waits until this JVM's JIT compiler threads have used less than 1 ms of CPU over the last
     * {@code quietMillis}, or {@code maxMillis} passed; returns how long it waited (ms). A
     * benchmark round calls it before its measured part: compiles that the round's own set-up
     * (dumping, restoring: code that runs once per round, in a real migration in another JVM or
     * before the process runs) queued would otherwise run during the touches, beside the
     * process and the threads that serve it on the same CPUs. What the JIT still does during the
     * touches is reported as before.
     */
    public static long awaitQuietCompilers(long quietMillis, long maxMillis) {
        long t0 = System.nanoTime();
        long deadline = t0 + maxMillis * 1_000_000;
        int window = (int) Math.max(1, quietMillis * 1_000_000 / QUIET_POLL_NANOS);
        long[] ring = new long[window + 1];
        int n = 0;
        while (true) {
            long cpu = compilerCpuNanos();
            ring[n % ring.length] = cpu;
            n++;
            if (n > window && cpu - ring[n % ring.length] < 1_000_000) {
                break; // less than 1 ms over the window
            }
            if (System.nanoTime() - deadline > 0) {
                break;
            }
            LockSupport.parkNanos(QUIET_POLL_NANOS);
        }
        return (System.nanoTime() - t0) / 1_000_000;
    }

    /** CPU time of this JVM's JIT compiler threads so far, in ns. */
    static long compilerCpuNanos() {
        return ThreadCpu.nanos(dev.lazypages.proc.CpuYield::isCompiler);
    }
}
