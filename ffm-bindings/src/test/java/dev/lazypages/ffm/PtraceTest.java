package dev.lazypages.ffm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * ptrace on a running, multithreaded memtouch. Every ptrace request comes from the thread that
 * seized, which JUnit guarantees by running a test method (and its @AfterEach) on one thread.
 */
class PtraceTest {
    private static final Duration STARTUP = Duration.ofSeconds(10);
    private static final Duration STOP = Duration.ofSeconds(5);
    /** glibc's RSEQ_SIG on x86: the signature word before every rseq abort handler. */
    private static final int RSEQ_SIG_X86 = 0x53053053;
    private static final Pattern HEARTBEAT = Pattern.compile("HEARTBEAT (\\d+)");

    private final List<Stubs.Running> started = new ArrayList<>();

    @BeforeEach
    void needsPtrace() {
        Requires.ptrace();
    }

    @AfterEach
    void killEverythingStarted() {
        started.forEach(Stubs.Running::close);
    }

    private Stubs.Running memtouch() {
        Stubs.Running m = Stubs.spawn("memtouch", "--size-mib", "16", "--threads", "2", "--dirty-mib-per-sec", "4");
        started.add(m);
        m.awaitLine("READY pid=" + m.pid(), STARTUP);
        return m;
    }

    @Test
    void interruptsAMultithreadedProcessReadsItsStateAndLetsItRunOn() {
        Stubs.Running m = memtouch();
        int pid = m.pid();
        List<Integer> tids = threads(pid);
        assertEquals(3, tids.size(), "memtouch with 2 workers has 3 threads: " + tids);
        assertEquals(pid, tids.get(0), "the main thread's tid is the pid");
        long heartbeatBefore = lastHeartbeat(m);

        for (int tid : tids) {
            Ptrace.seize(tid, Ptrace.O_EXITKILL);
        }
        boolean inspected = false;
        try {
            for (int tid : tids) {
                Ptrace.interrupt(tid);
            }
            for (int tid : tids) {
                WaitStatus ws = awaitStop(tid);
                assertEquals(tid, ws.pid(), ws.toString());
                assertTrue(ws.stopped(), ws.toString());
                assertEquals(Ptrace.EVENT_STOP, ws.ptraceEvent(), "PTRACE_INTERRUPT reports PTRACE_EVENT_STOP: " + ws);
                assertEquals(Posix.SIGTRAP, ws.stopSignal(), ws.toString());
                assertEquals('t', Stubs.threadState(pid, tid), "thread " + tid + " is in a ptrace stop");
            }

            for (int tid : tids) {
                Regs regs = Ptrace.getRegs(tid);
                assertNotEquals(0, regs.rip(), "rip of " + tid);
                assertNotEquals(0, regs.rsp(), "rsp of " + tid);
                assertNotEquals(0, regs.fsBase(), "every glibc thread has a thread pointer");
                assertEquals(regs, Ptrace.getRegsViaRegset(tid), "GETREGS and GETREGSET NT_PRSTATUS agree");
                assertEquals(0x33, regs.cs(), "a 64-bit user code segment");

                byte[] xstate = Ptrace.getXstate(tid);
                assertTrue(xstate.length >= 576, "XSAVE area is at least legacy 512 + header 64 bytes, got " + xstate.length);
                byte[] fxsave = Ptrace.getFpRegs(tid);
                assertEquals(512, fxsave.length);
                // The legacy region of XSAVE is FXSAVE's layout; FCW (bytes 0-1) and MXCSR (24-27) match.
                assertArrayEquals(java.util.Arrays.copyOfRange(fxsave, 0, 2), java.util.Arrays.copyOfRange(xstate, 0, 2), "FCW");
                assertArrayEquals(java.util.Arrays.copyOfRange(fxsave, 24, 28), java.util.Arrays.copyOfRange(xstate, 24, 28), "MXCSR");

                Ptrace.RseqConfiguration rseq = Ptrace.getRseqConfiguration(tid);
                if (glibcRegistersRseq()) {
                    assertNotEquals(0, rseq.address(), "glibc 2.35+ registers rseq for every thread: " + rseq);
                    assertEquals(RSEQ_SIG_X86, rseq.signature(), "RSEQ_SIG: " + rseq);
                    assertTrue(rseq.length() >= 32, "struct rseq is at least 32 bytes: " + rseq);
                    assertTrue(Math.abs(rseq.address() - regs.fsBase()) < 64 * 1024,
                            "glibc's rseq area lives in the thread's struct pthread, next to fs_base: " + rseq + ", " + regs);
                }

                assertEquals(sigBlk(pid, tid), Ptrace.getSigmask(tid), "GETSIGMASK agrees with SigBlk in /proc for " + tid);
            }
            long usr1 = 1L << (Posix.SIGUSR1 - 1);
            assertEquals(0, Ptrace.getSigmask(pid) & usr1, "the main thread takes SIGUSR1");
            for (int tid : tids.subList(1, tids.size())) {
                assertEquals(usr1, Ptrace.getSigmask(tid) & usr1, "memtouch's workers block SIGUSR1");
            }
            inspected = true;
        } finally {
            detachAll(tids, inspected); // after a failure, quietly: the failure is the news
        }

        for (int tid : tids) {
            assertNotEquals('t', Stubs.threadState(pid, tid), "thread " + tid + " left its ptrace stop");
        }
        long after = Math.max(heartbeatBefore, lastHeartbeat(m)) + 2;
        m.awaitLine(line -> heartbeatOf(line) >= after, Duration.ofSeconds(5));
        m.signal(Posix.SIGUSR1);
        m.awaitLine(line -> line.startsWith("VERIFY "), Duration.ofSeconds(5));
        assertTrue(m.lines().contains("VERIFY OK pages=4096"), "memtouch verifies its memory after the stop: " + m.tail());
    }

    @Test
    void seizingAPidThatDoesNotExistNamesPtraceAndEsrch() {
        int pid = 4_194_303;
        while (Posix.processExists(pid)) {
            pid--;
        }
        int missing = pid;
        SyscallException e = assertThrows(SyscallException.class, () -> Ptrace.seize(missing, 0));
        assertTrue(e.getMessage().contains("ptrace(PTRACE_SEIZE"), e.getMessage());
        assertTrue(e.getMessage().contains("ESRCH"), e.getMessage());
        assertTrue(e.getMessage().contains("pid=" + missing), e.getMessage());
        assertEquals(Errno.ESRCH, e.errno());
    }

    @Test
    void requestsOnAThreadThatIsNotTracedFailWithEsrch() {
        Stubs.Running m = memtouch();
        SyscallException e = assertThrows(SyscallException.class, () -> Ptrace.getRegs(m.pid()));
        assertEquals(Errno.ESRCH, e.errno(), e.getMessage());
        assertTrue(e.getMessage().startsWith("ptrace(PTRACE_GETREGS, pid=" + m.pid()), e.getMessage());
    }

    /** Detaches every thread; with {@code strict}, throws the first failure after trying them all. */
    private static void detachAll(List<Integer> tids, boolean strict) {
        SyscallException first = null;
        for (int tid : tids) {
            try {
                Ptrace.detach(tid, 0);
            } catch (SyscallException e) {
                first = first == null ? e : first;
            }
        }
        if (first != null && strict) {
            throw first;
        }
    }

    /** waitpid(__WALL | WNOHANG) until {@code tid} reports, so a missing stop fails instead of hanging. */
    private static WaitStatus awaitStop(int tid) {
        long deadline = System.nanoTime() + STOP.toNanos();
        while (true) {
            WaitStatus ws = Ptrace.waitpid(tid, Ptrace.WALL | Ptrace.WNOHANG);
            if (ws.pid() != 0) {
                return ws;
            }
            if (System.nanoTime() - deadline > 0) {
                fail("thread " + tid + " did not stop within " + STOP);
            }
            Thread.onSpinWait();
        }
    }

    private static List<Integer> threads(int pid) {
        try (Stream<Path> s = Files.list(Path.of("/proc/" + pid + "/task"))) {
            return s.map(p -> Integer.parseInt(p.getFileName().toString())).sorted().toList();
        } catch (IOException e) {
            throw new AssertionError("cannot list threads of " + pid, e);
        }
    }

    /** SigBlk of /proc/PID/task/TID/status: the blocked-signal mask in hex. */
    private static long sigBlk(int pid, int tid) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/task/" + tid + "/status"))) {
                if (line.startsWith("SigBlk:")) {
                    return Long.parseUnsignedLong(line.substring(7).trim(), 16);
                }
            }
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        throw new AssertionError("no SigBlk for " + tid);
    }

    private static boolean glibcRegistersRseq() {
        String tunables = System.getenv("GLIBC_TUNABLES");
        return tunables == null || !tunables.contains("glibc.pthread.rseq=0");
    }

    private static long heartbeatOf(String line) {
        Matcher h = HEARTBEAT.matcher(line);
        return h.matches() ? Long.parseLong(h.group(1)) : -1;
    }

    private static long lastHeartbeat(Stubs.Running m) {
        return m.lines().stream().mapToLong(PtraceTest::heartbeatOf).max().orElse(0);
    }
}
