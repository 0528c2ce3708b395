package dev.lazypages.proc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.ProcessMemory;
import dev.lazypages.ffm.Regs;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(60)
class RemoteSyscallTest {
    private static TracerThread tracer;

    @BeforeAll
    static void startTracer() {
        tracer = new TracerThread("inject-test-tracer");
    }

    @AfterAll
    static void stopTracer() {
        tracer.close();
    }

    /** getpid, then an mmap'd page written and read back, then munmap: the usual round. */
    private static void injectRound(SeizedProcess p, RemoteSyscall sys) {
        int pid = p.pid();
        assertEquals(pid, sys.getpid());
        long page = sys.mmap(0, 4096, RemoteSyscall.PROT_READ | RemoteSyscall.PROT_WRITE,
                RemoteSyscall.MAP_PRIVATE | RemoteSyscall.MAP_ANONYMOUS, -1, 0);
        assertTrue(page > 0 && page % 4096 == 0, Long.toHexString(page));
        assertTrue(ProcMaps.read(pid).stream().anyMatch(v -> v.start() <= page && v.end() >= page + 4096 && v.write()));
        try (PageBuffer buf = PageBuffer.allocate(1)) {
            for (int i = 0; i < 512; i++) {
                buf.putLong(i * 8L, 0x1234_5678_0000_0000L + i);
            }
            assertEquals(4096, ProcessMemory.write(pid, page, buf, 0, 4096));
            buf.clear();
            assertEquals(4096, ProcessMemory.read(pid, page, buf, 0, 4096));
            assertEquals(0x1234_5678_0000_0000L + 511, buf.getLong(511 * 8L));
        }
        sys.munmap(page, 4096);
        assertTrue(ProcMaps.read(pid).stream().noneMatch(v -> v.contains(page)), "unmapped again");
    }

    @Test
    void injectsIntoFrozenMemtouchWhichRunsOnAfterDetach() {
        try (Stubs.Running memtouch = Workloads.memtouch(4, 1); SeizedProcess p = SeizedProcess.seize(memtouch.pid(), tracer)) {
            p.freeze();
            Regs before = p.regs(memtouch.pid());
            RemoteSyscall sys = p.syscalls(memtouch.pid());
            Vma gadgetVma = ProcMaps.read(memtouch.pid()).stream().filter(v -> v.contains(sys.gadget())).findFirst().orElseThrow();
            assertEquals(Vma.Kind.VDSO, gadgetVma.kind(), "the vdso is the preferred place for the gadget");
            injectRound(p, sys);
            assertEquals(before, p.regs(memtouch.pid()), "registers are put back exactly");

            SyscallException e = assertThrows(SyscallException.class, () -> sys.munmap(0x1001, 4096));
            assertEquals("injected munmap(0x1001, 0x1000) in pid " + memtouch.pid() + " failed: EINVAL (Invalid argument)",
                    e.getMessage());
            p.detach();
            Workloads.assertMemtouchHealthy(memtouch);
        }
    }

    @Test
    void injectsThroughTheKnownGadgetOfLpStub() {
        Requires.root();
        Requires.ptrace();
        try (Stubs.Running stub = Stubs.spawn("lp-stub"); SeizedProcess p = SeizedProcess.seize(stub.pid(), tracer)) {
            p.freeze();
            Regs before = p.regs(stub.pid());
            RemoteSyscall sys = p.syscalls(stub.pid(), Workloads.lpStubGadget());
            injectRound(p, sys);
            try (RemoteScratch scratch = RemoteScratch.map(p, sys, 100)) {
                long at = scratch.putString("/lp-stub scratch");
                assertArrayEquals("/lp-stub scratch\0".getBytes(StandardCharsets.UTF_8), RemoteMemory.read(stub.pid(), at, 17));
            }
            assertEquals(before, p.regs(stub.pid()));
            p.detach();
            // still alive and back in pause(): nr 34 in /proc/PID/syscall
            awaitSyscall(stub.pid(), "34 ");
            assertTrue(stub.isAlive());
        }
    }

    @Test
    void injectsIntoTheMainThreadOfEightThreadMemtouch() {
        try (Stubs.Running memtouch = Workloads.memtouch(16, 8); SeizedProcess p = SeizedProcess.seize(memtouch.pid(), tracer)) {
            p.freeze();
            List<Integer> threads = p.threads();
            assertEquals(9, threads.size());
            injectRound(p, p.syscalls(memtouch.pid()));
            int worker = threads.stream().filter(t -> t != memtouch.pid()).findFirst().orElseThrow();
            assertEquals(worker, p.syscalls(worker).gettid(), "the call runs in the thread asked for");
            p.thaw();
            Workloads.awaitMore(memtouch, "HEARTBEAT", 1, Workloads.TIMEOUT);
            p.detach();
            Workloads.assertMemtouchHealthy(memtouch);
        }
    }

    @Test
    void aThreadInterruptedInNanosleepRestartsItAfterInjection() {
        try (Stubs.Running sleeper = Workloads.sleeper("nanosleep")) {
            int pid = sleeper.pid();
            awaitSyscall(pid, "35 ");
            try (SeizedProcess p = SeizedProcess.seize(pid, tracer)) {
                p.freeze();
                Regs before = p.regs(pid);
                assertEquals(35, before.origRax(), "stopped inside nanosleep: " + before);
                assertTrue(RemoteSyscall.inRestartableSyscall(before), "rax is -ERESTART*: " + before);
                assertEquals(pid, p.syscalls(pid).getpid());
                assertEquals(before, p.regs(pid));
                p.detach();
            }
            // the interrupted sleep restarts and the loop goes on ticking every 5 s
            sleeper.awaitLine("TICK 1", Duration.ofSeconds(8));
            awaitSyscall(pid, "35 ");
            assertTrue(sleeper.isAlive());
        }
    }

    /**
     * The tracer ends (as when the dumping JVM is killed) right after an injected call, with every
     * thread still frozen and nothing detached: the kernel lets the threads go. They must run on:
     * a thread left in the single-step's SIGTRAP signal-delivery-stop would have SIGTRAP delivered
     * and the process killed (SeizedProcess.settle). A SIGSTOP queued before stops it instead.
     */
    @Test
    void aTracerThatEndsAfterAnInjectionLeavesTheProcessRunning() throws Exception {
        try (Stubs.Running memtouch = Workloads.memtouch(4, 2)) {
            int pid = memtouch.pid();
            TracerThread own = new TracerThread("inject-test-dying-tracer");
            SeizedProcess p = SeizedProcess.seize(pid, own);
            p.freeze();
            for (int tid : p.threads()) {
                assertEquals(pid, p.syscalls(tid).getpid());
            }
            own.close(); // the tracer thread ends: no detach, no thaw
            long beats = memtouch.lines().stream().filter(l -> l.startsWith("HEARTBEAT ")).count();
            memtouch.awaitLine(l -> l.startsWith("HEARTBEAT ") && Long.parseLong(l.substring(10).trim()) > beats + 1,
                    Duration.ofSeconds(10));
            assertTrue(memtouch.isAlive());
            assertEquals("0", Proc.readText(pid, "status").lines().filter(l -> l.startsWith("TracerPid:"))
                    .findFirst().orElseThrow().substring(10).trim(), "detached by the kernel");
        }
    }

    private static void awaitSyscall(int pid, String prefix) {
        long deadline = System.nanoTime() + Workloads.TIMEOUT.toNanos();
        String s = "";
        while (System.nanoTime() - deadline < 0) {
            s = Proc.readText(pid, "syscall");
            if (s.startsWith(prefix)) {
                return;
            }
            try {
                Thread.sleep(5);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
        throw new AssertionError("pid " + pid + " is not in syscall '" + prefix.trim() + "': " + s);
    }
}
