package dev.lazypages.lazy;

import dev.lazypages.memory.PageRanges;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

/**
 * JMH: the page-set structures. {@link PageRanges} (sorted runs of pages: the dirty sets and
 * page maps of pre-copy) built from {@link #RUNS} scattered runs, combined and looked up; and
 * {@link SortedAddresses#floorIndex} (the lazy page server's region lookup per fault) over
 * {@link #RUNS} sorted starts. Lives in {@code dev.lazypages.lazy} (in the perf jar) because
 * SortedAddresses is package-private.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class PageSetJmh {
    /** Runs per page set. */
    public static final int RUNS = 4096;
    private static final long PS = 4096;
    private static final long BASE = 0x7f0000000000L;

    private long[] aStarts;
    private long[] aEnds;
    private PageRanges a;
    private PageRanges b;
    private long[] probes;
    private int probe;

    @Setup(Level.Trial)
    public void setUp() {
        Random r = new Random(42);
        aStarts = new long[RUNS];
        aEnds = new long[RUNS];
        long at = BASE;
        PageRanges.Builder bb = PageRanges.builder();
        for (int i = 0; i < RUNS; i++) {
            at += (1 + r.nextInt(16)) * PS;
            aStarts[i] = at;
            at += (1 + r.nextInt(64)) * PS;
            aEnds[i] = at;
            long bs = aStarts[i] + r.nextInt(8) * PS;
            bb.add(bs, bs + (1 + r.nextInt(32)) * PS);
        }
        a = build();
        b = bb.build();
        probes = new long[1024];
        for (int i = 0; i < probes.length; i++) {
            probes[i] = BASE + (long) (r.nextDouble() * (at - BASE)) / PS * PS;
        }
    }

    private PageRanges build() {
        PageRanges.Builder x = PageRanges.builder();
        for (int i = 0; i < RUNS; i++) {
            x.add(aStarts[i], aEnds[i]);
        }
        return x.build();
    }

    /** Builds a set of 4096 sorted runs. */
    @Benchmark
    public PageRanges build4096Runs() {
        return build();
    }

    /** Union of two 4096-run sets. */
    @Benchmark
    public PageRanges union() {
        return a.union(b);
    }

    /** Difference of two 4096-run sets (pages still to send). */
    @Benchmark
    public PageRanges subtract() {
        return a.subtract(b);
    }

    /** Intersection of two 4096-run sets. */
    @Benchmark
    public PageRanges intersect() {
        return a.intersect(b);
    }

    /** One membership lookup in a 4096-run set (binary search). */
    @Benchmark
    public boolean contains() {
        return a.contains(probes[probe++ & 1023]);
    }

    /** One floor lookup over 4096 sorted starts (unsigned). */
    @Benchmark
    public int floorIndex() {
        return SortedAddresses.floorIndex(aStarts, probes[probe++ & 1023]);
    }
}
