package dev.lazypages.memory;

import dev.lazypages.ffm.Pagemap;
import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.TracerThread;
import dev.lazypages.proc.Vma;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.function.LongSupplier;

/**
 * Cost of one dirty-set collection over a large, mostly idle process: memtouch with
 * {@code mib} MiB (default 1024) dirtying {@code rate} MiB/s (default 1), one worker. Compares
 * <ul>
 *   <li>{@code pagemap-scan}: {@link PagemapScanTracker#collect()} (maps, PAGEMAP_SCAN with
 *       WP_MATCHING over every tracked VMA, re-protection included);</li>
 *   <li>{@code pagemap-read}: maps, then every 64-bit /proc/PID/pagemap entry of the tracked VMAs
 *       read and tested ({@link SoftDirtyScan}: what a soft-dirty collect costs, clear_refs
 *       aside);</li>
 *   <li>{@code none}: {@link NoneTracker#collect()} (the populated pages, by PAGEMAP_SCAN).</li>
 * </ul>
 * Median of {@code runs} (default 5) after one warm-up, printed in milliseconds with the page
 * counts. Needs root.
 *
 * <p>Run: {@code java --enable-native-access=ALL-UNNAMED -Dlazypages.stubs.dir=native-stubs/target/bin
 * -cp <runtime test classpath> dev.lazypages.memory.DirtyTrackingBench [mib=1024] [rate=1] [runs=5]}
 */
public final class DirtyTrackingBench {
    private DirtyTrackingBench() {
    }

    public static void main(String[] args) throws Exception {
        int mib = args.length > 0 ? Integer.parseInt(args[0]) : 1024;
        int rate = args.length > 1 ? Integer.parseInt(args[1]) : 1;
        int runs = args.length > 2 ? Integer.parseInt(args[2]) : 5;
        try (Stubs.Running mt = Stubs.spawn("memtouch", "--size-mib", Integer.toString(mib), "--threads", "1",
                "--dirty-mib-per-sec", Integer.toString(rate));
             TracerThread tracer = new TracerThread("bench-tracer")) {
            mt.awaitLine(l -> l.startsWith("REGION "), Duration.ofMinutes(2));
            int pid = mt.pid();
            List<Vma> vmas = TrackedVmas.read(pid);
            System.out.printf("memtouch %d MiB at %d MiB/s, pid %d: %d tracked VMAs, %d MiB tracked%n", mib, rate, pid,
                    vmas.size(), PageRanges.ofVmas(vmas).byteCount() >> 20);

            long[] pages = new long[1];
            try (Pagemap pm = Pagemap.open(pid)) {
                report("pagemap-read", runs, () -> {
                    PageRanges d = SoftDirtyScan.select(TrackedVmas.read(pid), pm::read, false);
                    return d.pageCount();
                });
            }
            try (SeizedProcess p = SeizedProcess.seize(pid, tracer); NoneTracker none = new NoneTracker(pid, "bench");
                 PagemapScanTracker scan = new PagemapScanTracker(pid)) {
                p.freeze();
                none.arm(p);
                long coldNanos;
                try (PagemapScanTracker warmUp = new PagemapScanTracker(pid)) {
                    coldNanos = warmUp.arm(p); // class loading, linking, first injection
                }
                long armNanos = scan.arm(p);
                p.thaw();
                System.out.printf("pagemap-scan arm (frozen): %.2f ms (first, cold: %.2f ms)%n", armNanos / 1e6, coldNanos / 1e6);
                report("none", runs, () -> none.collect().dirty().pageCount());
                report("pagemap-scan", runs, () -> scan.collect().dirty().pageCount());
            }
        }
    }

    /** Runs {@code collect} once to warm up, then {@code runs} times; prints the median time and the last page count. */
    private static void report(String name, int runs, LongSupplier collect) {
        collect.getAsLong();
        long[] nanos = new long[runs];
        long pages = 0;
        for (int i = 0; i < runs; i++) {
            try {
                Thread.sleep(200); // let some dirtying happen between rounds
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            long t0 = System.nanoTime();
            pages = collect.getAsLong();
            nanos[i] = System.nanoTime() - t0;
        }
        Arrays.sort(nanos);
        System.out.printf("%-13s median %8.3f ms  (min %.3f, max %.3f)  %d pages reported%n", name, nanos[runs / 2] / 1e6,
                nanos[0] / 1e6, nanos[runs - 1] / 1e6, pages);
    }
}
