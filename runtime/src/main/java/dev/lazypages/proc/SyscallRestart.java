package dev.lazypages.proc;

import dev.lazypages.ffm.Regs;

/**
 * A thread frozen inside a system call has the call's number in {@code orig_rax} and a
 * -ERESTART* code in {@code rax}; the kernel would restart the call when the thread resumed,
 * but a restored thread resumes in a new process that never made the call. Rewriting the
 * registers as the kernel's restart logic would ({@code arch/x86/kernel/signal.c}) makes the
 * restored thread execute the {@code syscall} instruction again: rax back to the call number,
 * rip back over the two-byte instruction. A call that needs its restart block (relative
 * nanosleep and friends: -ERESTART_RESTARTBLOCK) cannot be restarted in another process and
 * returns -EINTR instead, as CRIU does.
 */
public final class SyscallRestart {
    /** -ERESTARTSYS */
    public static final long ERESTARTSYS = -512;
    /** -ERESTARTNOINTR */
    public static final long ERESTARTNOINTR = -513;
    /** -ERESTARTNOHAND */
    public static final long ERESTARTNOHAND = -514;
    /** -ERESTART_RESTARTBLOCK */
    public static final long ERESTART_RESTARTBLOCK = -516;
    private static final long EINTR = -4;
    private static final long SYSCALL_INSN_LENGTH = 2;

    /** What was done to the registers. */
    public enum Outcome {
        /** The thread was not in a system call, or the call had finished: nothing to do. */
        NONE,
        /** rip and rax set so that the call runs again. */
        RESTART,
        /** The call needed its restart block: it returns -EINTR. */
        EINTR
    }

    private SyscallRestart() {
    }

    /** True when {@code regs} show a thread stopped inside a system call that the kernel would restart. */
    public static boolean interrupted(Regs regs) {
        if (regs.origRax() < 0) {
            return false;
        }
        long rax = (int) regs.rax(); // the kernel compares the low 32 bits, sign-extended
        return rax == ERESTARTSYS || rax == ERESTARTNOINTR || rax == ERESTARTNOHAND || rax == ERESTART_RESTARTBLOCK;
    }

    /** Rewrites {@code regs} in place for a restored thread; see the class comment. */
    public static Outcome fixUp(Regs regs) {
        if (!interrupted(regs)) {
            return Outcome.NONE;
        }
        long rax = (int) regs.rax();
        if (rax == ERESTART_RESTARTBLOCK) {
            regs.rax(EINTR);
            return Outcome.EINTR;
        }
        regs.rax(regs.origRax());
        regs.rip(regs.rip() - SYSCALL_INSN_LENGTH);
        return Outcome.RESTART;
    }
}
