package dev.lazypages.perf;

import java.lang.management.CompilationMXBean;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;

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
}
