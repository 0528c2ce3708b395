package dev.lazypages.proc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Regs;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(60)
class SeizedProcessTest {
    private static TracerThread tracer;

    @BeforeAll
    static void startTracer() {
        tracer = new TracerThread("seized-test-tracer");
    }

    @AfterAll
    static void stopTracer() {
        tracer.close();
    }

    @Test
    void seizesFreezesThawsAndDetachesEveryThreadOfEightThreadMemtouch() throws Exception {
        try (Stubs.Running memtouch = Workloads.memtouch(8, 8)) {
            int pid = memtouch.pid();
            try (SeizedProcess p = SeizedProcess.seize(pid, tracer)) {
                List<Integer> threads = p.threads();
                int tracerTid = tracer.call(Posix::gettid);
                assertEquals(Proc.threads(pid), threads.stream().sorted().toList());
                assertEquals(9, threads.size());
                for (int tid : threads) {
                    assertEquals(tracerTid, Workloads.tracerPid(pid, tid), "TracerPid is the tracer thread");
                }
                Workloads.awaitMore(memtouch, "HEARTBEAT", 1, Workloads.TIMEOUT); // seized, still running

                p.freeze();
                assertTrue(p.isFrozen());
                for (int tid : threads) {
                    assertEquals('t', Stubs.threadState(pid, tid), "tid " + tid + " is in a ptrace stop");
                    Regs regs = p.regs(tid);
                    assertNotEquals(0, regs.rip());
                    assertNotEquals(0, regs.fsBase(), "every glibc thread has a TLS base");
                }
                int beats = Workloads.lastCount(memtouch, "HEARTBEAT");
                Thread.sleep(1500);
                assertEquals(beats, Workloads.lastCount(memtouch, "HEARTBEAT"), "no heartbeat while frozen");

                p.thaw();
                Workloads.awaitMore(memtouch, "HEARTBEAT", 1, Workloads.TIMEOUT);
                p.freeze();
                p.detach();
                assertFalse(p.isAttached());
                for (int tid : threads) {
                    assertEquals(0, Workloads.tracerPid(pid, tid));
                }
            }
            Workloads.assertMemtouchHealthy(memtouch);
        }
    }

    /** PTRACE_O_EXITKILL for a process being restored: it must not outlive its restorer; a source must. */
    @Test
    void aProcessSeizedToBeBuiltDiesWithItsTracerThreadAndAnOrdinarySeizeDoesNot() {
        try (Stubs.Running built = Workloads.memtouch(1, 1); Stubs.Running source = Workloads.memtouch(1, 1)) {
            TracerThread t = new TracerThread("exitkill-test-tracer");
            SeizedProcess.seizeKillOnTracerExit(built.pid(), t).freeze();
            SeizedProcess.seize(source.pid(), t).freeze();
            t.close(); // the tracer thread ends with both still seized and frozen, as when a restorer's JVM is killed
            Stubs.awaitDead(built.pid(), Duration.ofSeconds(10));
            Workloads.awaitMore(source, "HEARTBEAT", 1, Workloads.TIMEOUT);
            assertEquals(0, Workloads.tracerPid(source.pid(), source.pid()), "released when its tracer ended");
            Workloads.assertMemtouchHealthy(source);
        }
    }

    @Test
    void detachWhileRunningLeavesTheProcessRunning() {
        try (Stubs.Running memtouch = Workloads.memtouch(1, 2)) {
            SeizedProcess p = SeizedProcess.seize(memtouch.pid(), tracer);
            p.close();
            assertEquals(0, Workloads.tracerPid(memtouch.pid(), memtouch.pid()));
            Workloads.assertMemtouchHealthy(memtouch);
        }
    }

    @Test
    void aSignalSentWhileFrozenIsDeliveredAfterThaw() {
        try (Stubs.Running sleeper = Workloads.sleeper("pause")) {
            try (SeizedProcess p = SeizedProcess.seize(sleeper.pid(), tracer)) {
                p.freeze();
                sleeper.signal(Posix.SIGUSR1);
                sleeper.awaitLine(l -> true, Duration.ofMillis(1)); // log readable
                assertFalse(sleeper.lines().stream().anyMatch(l -> l.startsWith("ALIVE")), "frozen: no handler ran");
                p.thaw();
                sleeper.awaitLine("ALIVE 1", Workloads.TIMEOUT);
                // and a signal while running seized goes through the event poll
                sleeper.signal(Posix.SIGUSR1);
                sleeper.awaitLine("ALIVE 2", Workloads.TIMEOUT);
            }
            sleeper.signal(Posix.SIGUSR1);
            sleeper.awaitLine("ALIVE 3", Workloads.TIMEOUT);
        }
    }

    @Test
    void aSignalDeliveryStopDuringFreezeIsKeptAndDeliveredAtThaw() {
        try (Stubs.Running sleeper = Workloads.sleeper("pause")) {
            try (SeizedProcess p = SeizedProcess.seize(sleeper.pid(), tracer)) {
                // the signal stops the thread in a signal-delivery-stop before the poll can pass it on
                tracer.run(() -> {
                    sleeper.signal(Posix.SIGUSR1);
                    // the event poll cannot run during this task: wait for the stop, then freeze
                    long deadline = System.nanoTime() + Workloads.TIMEOUT.toNanos();
                    while (Stubs.threadState(sleeper.pid(), sleeper.pid()) != 't' && System.nanoTime() - deadline < 0) {
                        Thread.onSpinWait();
                    }
                    p.freeze();
                });
                assertEquals(Posix.SIGUSR1, p.pendingSignal(sleeper.pid()));
                p.thaw();
                sleeper.awaitLine("ALIVE 1", Workloads.TIMEOUT);
            }
        }
    }

    @Test
    void threadsCreatedWhileSeizedAreTraced() {
        Requires.root();
        Requires.ptrace();
        // a shell that forks would be a new process; memtouch makes its threads at start, so seize it early
        try (Stubs.Running memtouch = Stubs.spawn("memtouch", "--size-mib", "64", "--threads", "6")) {
            SeizedProcess p;
            try {
                p = SeizedProcess.seize(memtouch.pid(), tracer);
            } catch (ProcException e) {
                throw new AssertionError(e.getMessage() + "; log:\n" + memtouch.tail(), e);
            }
            try (p) {
                memtouch.awaitLine("REGION addr=.*", Workloads.TIMEOUT);
                p.freeze();
                assertEquals(Proc.threads(memtouch.pid()), p.threads().stream().sorted().toList());
                assertEquals(7, p.threads().size());
                p.thaw();
            }
            Workloads.assertMemtouchHealthy(memtouch);
        }
    }

    @Test
    void errorsNameTheStepAndThePid() {
        ProcException e = assertThrows(ProcException.class, () -> SeizedProcess.seize(Integer.MAX_VALUE, tracer));
        assertTrue(e.getMessage().startsWith("seize of pid " + Integer.MAX_VALUE), e.getMessage());
        try (Stubs.Running memtouch = Workloads.memtouch(1, 1); SeizedProcess p = SeizedProcess.seize(memtouch.pid(), tracer)) {
            IllegalStateException notFrozen = assertThrows(IllegalStateException.class, () -> p.regs(memtouch.pid()));
            assertEquals("reading registers of pid " + memtouch.pid() + ": the process is running, not frozen", notFrozen.getMessage());
        }
    }
}
