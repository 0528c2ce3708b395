package dev.lazypages.fuzz;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;
import java.util.HexFormat;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;

/**
 * A small deterministic fuzzer: each case draws its input from a {@link SplittableRandom}
 * seeded by (suite seed, case number), runs the property on a worker thread with a time limit
 * and a per-case allocation budget (measured with {@code ThreadMXBean.getThreadAllocatedBytes},
 * so a length field that sizes an allocation before it is checked shows up as a failure, not
 * as an OutOfMemoryError in some later test).
 *
 * <p>A failure names the suite, the case, its seed and its input (hex of the first bytes, the
 * whole in base64 under {@code target/fuzz-failures/}); {@code -Dfuzz.seed=S -Dfuzz.case=N}
 * replays exactly that case, {@code -Dfuzz.cases=N} changes how many run. Own code rather than
 * Jazzer or jqwik: the build runs offline from a local repository that has neither, and what is
 * needed here (seeded structure-aware mutation of inputs made by the real encoders, a timeout
 * and an allocation budget per case) is a page of code.
 */
public final class Fuzz {
    /** The suite seed unless {@code -Dfuzz.seed} says otherwise: fixed, so CI runs the same cases. */
    public static final long DEFAULT_SEED = 0x1A2B_3C4D_5E6F_7081L;

    /** Why a case's input is rejected, or null when the outcome is acceptable. */
    @FunctionalInterface
    public interface Property {
        void check(byte[] input) throws Exception;
    }

    private final String name;
    private final long seed;
    private final long timeoutMillis;
    private final long allocationBudget;

    private Fuzz(String name, long seed, long timeoutMillis, long allocationBudget) {
        this.name = name;
        this.seed = seed;
        this.timeoutMillis = timeoutMillis;
        this.allocationBudget = allocationBudget;
    }

    /** A suite named {@code name}: 2 s per case, 64 MiB of allocation per case. */
    public static Fuzz suite(String name) {
        return new Fuzz(name, Long.getLong("fuzz.seed", DEFAULT_SEED), 2000, 64L << 20);
    }

    public Fuzz allocationBudget(long bytes) {
        return new Fuzz(name, seed, timeoutMillis, bytes);
    }

    /** Cases to run: {@code -Dfuzz.cases} or {@code defaultCases}. */
    public static int cases(int defaultCases) {
        return Integer.getInteger("fuzz.cases", defaultCases);
    }

    /**
     * Runs {@code cases} cases: input = {@code generator(random of the case)}, then
     * {@code property(input)}, which must return or throw only what it considers acceptable
     * (it rethrows anything else). Returns how many ran.
     */
    public int run(int cases, Function<SplittableRandom, byte[]> generator, Property property) {
        Integer only = Integer.getInteger("fuzz.case");
        var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        ExecutorService worker = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "fuzz-" + name);
            t.setDaemon(true);
            return t;
        });
        int ran = 0;
        // thousands of refused inputs each log their one-line warning: keep the test output readable
        java.util.logging.Logger quiet = java.util.logging.Logger.getLogger("dev.lazypages");
        java.util.logging.Level level = quiet.getLevel();
        quiet.setLevel(java.util.logging.Level.SEVERE);
        try {
            for (int i = 0; i < cases; i++) {
                if (only != null && only != i) {
                    continue;
                }
                long caseSeed = caseSeed(seed, i);
                byte[] input = generator.apply(new SplittableRandom(caseSeed));
                Future<Long> f = worker.submit(() -> {
                    long tid = Thread.currentThread().threadId();
                    long before = mx.getThreadAllocatedBytes(tid);
                    property.check(input);
                    return mx.getThreadAllocatedBytes(tid) - before;
                });
                long allocated;
                try {
                    allocated = f.get(timeoutMillis, TimeUnit.MILLISECONDS);
                } catch (TimeoutException e) {
                    f.cancel(true);
                    throw failure(i, input, "no result within " + timeoutMillis + " ms (hang?)", null);
                } catch (ExecutionException e) {
                    throw failure(i, input, String.valueOf(e.getCause()), e.getCause());
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new AssertionError("interrupted", e);
                }
                if (allocated > allocationBudget) {
                    throw failure(i, input, "allocated " + allocated + " bytes for a " + input.length
                            + "-byte input (budget " + allocationBudget + ")", null);
                }
                ran++;
            }
        } finally {
            worker.shutdownNow();
            quiet.setLevel(level);
        }
        return ran;
    }

    private AssertionError failure(int i, byte[] input, String what, Throwable cause) {
        String b64 = Base64.getEncoder().encodeToString(input);
        Path saved = Path.of("target", "fuzz-failures", name + "-" + Long.toHexString(seed) + "-" + i + ".b64");
        try {
            Files.createDirectories(saved.getParent());
            Files.writeString(saved, b64);
        } catch (IOException ignored) {
            saved = null;
        }
        String head = HexFormat.of().formatHex(input, 0, Math.min(input.length, 128));
        return new AssertionError(name + " case " + i + " failed: " + what + "\n  replay: -Dfuzz.seed=" + seed
                + " -Dfuzz.case=" + i + " (case seed " + caseSeed(seed, i) + ")\n  input: " + input.length + " bytes, "
                + head + (input.length > 128 ? "..." : "") + (saved != null ? "\n  whole input (base64): " + saved.toAbsolutePath()
                : "\n  whole input (base64): " + b64), cause);
    }

    static long caseSeed(long seed, int i) {
        return new SplittableRandom(seed ^ (0x9E3779B97F4A7C15L * (i + 1))).nextLong();
    }
}
