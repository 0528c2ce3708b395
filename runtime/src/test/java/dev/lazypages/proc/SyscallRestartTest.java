package dev.lazypages.proc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Regs;
import org.junit.jupiter.api.Test;

class SyscallRestartTest {
    private static Regs stoppedIn(long nr, long rax, long rip) {
        Regs r = Regs.zero();
        r.origRax(nr);
        r.rax(rax);
        r.rip(rip);
        return r;
    }

    @Test
    void pauseInterruptedWithErestartnohandRunsTheSyscallAgain() {
        // What PTRACE_INTERRUPT leaves in a thread sleeping in pause(2) (nr 34), as measured here.
        Regs r = stoppedIn(34, SyscallRestart.ERESTARTNOHAND, 0x401002);
        assertEquals(SyscallRestart.Outcome.RESTART, SyscallRestart.fixUp(r));
        assertEquals(34, r.rax());
        assertEquals(0x401000, r.rip());
    }

    @Test
    void erestartsysAndNointrRestartToo() {
        for (long code : new long[] {SyscallRestart.ERESTARTSYS, SyscallRestart.ERESTARTNOINTR}) {
            Regs r = stoppedIn(0, code, 0x1002);
            assertEquals(SyscallRestart.Outcome.RESTART, SyscallRestart.fixUp(r));
            assertEquals(0, r.rax());
            assertEquals(0x1000, r.rip());
        }
    }

    @Test
    void aCallThatNeedsItsRestartBlockReturnsEintr() {
        Regs r = stoppedIn(35, SyscallRestart.ERESTART_RESTARTBLOCK, 0x1002);
        assertEquals(SyscallRestart.Outcome.EINTR, SyscallRestart.fixUp(r));
        assertEquals(-4, r.rax());
        assertEquals(0x1002, r.rip(), "rip stays after the syscall instruction");
    }

    @Test
    void aThreadOutsideASyscallIsLeftAlone() {
        Regs user = stoppedIn(-1, 12345, 0x5000);
        assertFalse(SyscallRestart.interrupted(user));
        assertEquals(SyscallRestart.Outcome.NONE, SyscallRestart.fixUp(user));
        assertEquals(12345, user.rax());
        assertEquals(0x5000, user.rip());
        // A finished call (a real result in rax) is not restarted either.
        Regs done = stoppedIn(0, 4096, 0x5000);
        assertEquals(SyscallRestart.Outcome.NONE, SyscallRestart.fixUp(done));
    }

    @Test
    void onlyTheLowThirtyTwoBitsOfRaxCount() {
        Regs r = stoppedIn(34, 0x00000000_fffffdfeL, 0x1002); // -514 as a 32-bit value
        assertTrue(SyscallRestart.interrupted(r));
    }
}
