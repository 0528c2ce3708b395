package dev.lazypages.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

class SchedTest {
    /** The policy field (41st) of /proc/self/task/TID/stat, as the kernel reports it. */
    private static int procPolicy(int tid) throws Exception {
        String stat = Files.readString(Path.of("/proc/self/task/" + tid + "/stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return Integer.parseInt(f[41 - 3]);
    }

    @Test
    void setsAndReadsBackOneThreadsPolicyAndNice() throws Exception {
        CompletableFuture<int[]> seen = new CompletableFuture<>();
        Thread t = Thread.ofPlatform().start(() -> {
            try {
                int tid = Posix.gettid();
                Sched.Attr before = Sched.get(0);
                Sched.set(0, Sched.BATCH, 7);
                Sched.Attr batch = Sched.get(tid);
                int procBatch = procPolicy(tid);
                Sched.set(tid, Sched.IDLE, 0);
                seen.complete(new int[] {before.policy(), batch.policy(), batch.nice(), procBatch, Sched.get(0).policy(),
                        procPolicy(tid)});
            } catch (Throwable e) {
                seen.completeExceptionally(e);
            }
        });
        int[] r = seen.get();
        t.join();
        assertEquals(Sched.NORMAL, r[0]);
        assertEquals(Sched.BATCH, r[1]);
        assertEquals(7, r[2]);
        assertEquals(Sched.BATCH, r[3]);
        assertEquals(Sched.IDLE, r[4]);
        assertEquals(Sched.IDLE, r[5]);
        // the calling thread is untouched: policy is per thread
        assertEquals(Sched.NORMAL, Sched.get(0).policy());
    }

    @Test
    void aFairThreadAsksForAShortSliceAndKeepsItsPolicyAndNice() throws Exception {
        CompletableFuture<Sched.Attr[]> seen = new CompletableFuture<>();
        Thread t = Thread.ofPlatform().start(() -> {
            try {
                Sched.Attr before = Sched.get(0);
                Sched.set(0, before.policy(), before.nice(), 100_000);
                seen.complete(new Sched.Attr[] {before, Sched.get(0)});
            } catch (Throwable e) {
                seen.completeExceptionally(e);
            }
        });
        Sched.Attr[] r = seen.get();
        t.join();
        assertEquals(Sched.NORMAL, r[1].policy());
        assertEquals(r[0].nice(), r[1].nice());
        assertEquals(100_000, r[1].sliceNanos(), "the kernel reports the slice asked for (Linux 6.12+): " + r[1]);
        assertNotEquals(100_000, r[0].sliceNanos(), "not the default: " + r[0]);
        assertNotEquals(100_000, Sched.get(0).sliceNanos(), "the calling thread is untouched");
    }

    @Test
    void aMissingThreadIsAnErrorNamingIt() {
        SyscallException e = assertThrows(SyscallException.class, () -> Sched.get(Integer.MAX_VALUE - 1));
        assertEquals(Errno.ESRCH, e.errno());
    }
}
