package dev.lazypages.proc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Sched;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

class CpuYieldTest {
    private static <T> T withProperty(String name, String value, Supplier<T> body) {
        String before = System.getProperty(name);
        System.setProperty(name, value);
        try {
            return body.get();
        } finally {
            if (before == null) {
                System.clearProperty(name);
            } else {
                System.setProperty(name, before);
            }
        }
    }

    @Test
    void recognisesHotSpotAndJvmciCompilerThreadNames() {
        assertTrue(CpuYield.isCompiler("C1 CompilerThre"));
        assertTrue(CpuYield.isCompiler("C2 CompilerThre"));
        assertTrue(CpuYield.isCompiler("JVMCI CompilerT"));
        assertFalse(CpuYield.isCompiler("page-client-3-1"));
        assertFalse(CpuYield.isCompiler("G1 Conc#0"));
    }

    @Test
    void makesEveryCompilerThreadOfThisJvmIdleAndLeavesTheOthers() {
        List<Integer> compilers = CpuYield.compilerThreads();
        assertFalse(compilers.isEmpty(), "this HotSpot JVM has JIT compiler threads");
        assertEquals(0, withProperty(CpuYield.JIT_PROPERTY, "false", CpuYield::compilers), "switched off: nothing changes");
        CpuYield.compilers();
        for (int tid : CpuYield.compilerThreads()) {
            assertEquals(Sched.IDLE, Sched.get(tid).policy(), "compiler thread " + tid);
        }
        assertEquals(0, CpuYield.compilers(), "a second call finds nothing left to change");
        assertEquals(Sched.NORMAL, Sched.get(0).policy(), "the calling thread keeps its policy");
    }

    @Test
    void givesTheCallingBulkThreadALongSliceAndMakesItIdleOnlyWhenAskedTo() throws Exception {
        CompletableFuture<Object[]> seen = new CompletableFuture<>();
        Thread.ofPlatform().start(() -> {
            try {
                boolean slice = CpuYield.thisThread(); // the default: a long slice
                Sched.Attr sliced = Sched.get(0);
                boolean on = withProperty(CpuYield.BULK_PROPERTY, "true", CpuYield::thisThread);
                boolean again = withProperty(CpuYield.BULK_PROPERTY, "true", CpuYield::thisThread);
                seen.complete(new Object[] {slice, sliced, on, Sched.get(0).policy(), again});
            } catch (Throwable t) {
                seen.completeExceptionally(t);
            }
        });
        Object[] r = seen.get();
        assertEquals(true, r[0]);
        assertEquals(Sched.NORMAL, ((Sched.Attr) r[1]).policy());
        assertEquals(CpuYield.BULK_SLICE_DEFAULT_MICROS * 1000, ((Sched.Attr) r[1]).sliceNanos(), r[1].toString());
        assertEquals(true, r[2]);
        assertEquals(Sched.IDLE, r[3]);
        assertEquals(false, r[4], "already idle: nothing to change");
        assertEquals(Sched.NORMAL, Sched.get(0).policy(), "only the calling thread changed");
    }

    @Test
    void givesTheCallingFaultThreadAShortSliceUnlessSwitchedOff() throws Exception {
        CompletableFuture<long[]> seen = new CompletableFuture<>();
        Thread.ofPlatform().start(() -> {
            try {
                long before = Sched.get(0).sliceNanos();
                boolean off = withProperty(CpuYield.FAULT_SLICE_PROPERTY, "0", CpuYield::faultPath);
                long afterOff = Sched.get(0).sliceNanos();
                boolean on = CpuYield.faultPath();
                seen.complete(new long[] {before, off ? 1 : 0, afterOff, on ? 1 : 0, Sched.get(0).sliceNanos(), Sched.get(0).policy()});
            } catch (Throwable t) {
                seen.completeExceptionally(t);
            }
        });
        long[] r = seen.get();
        assertEquals(0, r[1], "0: left as it is");
        assertEquals(r[0], r[2]);
        assertEquals(1, r[3]);
        assertEquals(CpuYield.FAULT_SLICE_DEFAULT_MICROS * 1000, r[4]);
        assertEquals(Sched.NORMAL, r[5], "still a normal thread");
    }
}
