package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Where a round's CPU time went, and the wait for a quiet JIT before a round. */
class ThreadCpuTest {
    @Test
    void threadsCountByKindWithoutTheirInstanceNumbers() {
        assertEquals("page-client", ThreadCpu.kind("page-client-11-2"));
        assertEquals("page-server", ThreadCpu.kind("page-server-1-1"));
        assertEquals("page-server-bul", ThreadCpu.kind("page-server-bul"));
        assertEquals("C2 CompilerThre", ThreadCpu.kind("C2 CompilerThre"));
        assertEquals("GC Thread#0", ThreadCpu.kind("GC Thread#0"));
    }

    @Test
    void aWindowShowsTheThreadThatBurnedCpuInIt() throws Exception {
        ThreadCpu w = ThreadCpu.start();
        java.util.concurrent.CountDownLatch burnt = new java.util.concurrent.CountDownLatch(1);
        java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
        Thread t = Thread.ofPlatform().name("burner-1").start(() -> {
            long end = System.nanoTime() + 60_000_000;
            long x = 0;
            while (System.nanoTime() < end) {
                x += System.nanoTime() & 1;
            }
            if (x == 42) {
                System.out.print("");
            }
            burnt.countDown();
            try {
                release.await(); // alive when the window closes: a thread that ended is not in /proc any more
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        burnt.await();
        String line = w.since((int) ProcessHandle.current().pid(), "this process");
        release.countDown();
        t.join();
        assertTrue(line.matches("CPU ms in this JVM:.* burner [0-9]+.*; this process [0-9]+"), line);
    }

    @Test
    void theWaitForAQuietJitEndsAndIsBounded() {
        assertTrue(JvmActivity.compilerCpuNanos() >= 0, "compiler threads' CPU time is readable");
        long waited = JvmActivity.awaitQuietCompilers(50, 2000);
        assertTrue(waited >= 50 && waited < 3000, "waited " + waited + " ms");
    }

    @Test
    void kernelThreadsCpuIsReportedInMilliseconds() {
        KernelCpu k = KernelCpu.start();
        String line = k.since();
        assertTrue(line.matches("kernel threads [0-9]+ ms( \\(.*\\))?"), line);
    }
}
