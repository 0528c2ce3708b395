package dev.lazypages.proc;

import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Ptrace;
import dev.lazypages.ffm.Regs;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.WaitStatus;
import java.util.StringJoiner;
import java.util.concurrent.TimeUnit;

/**
 * System calls made by a frozen thread of a {@link SeizedProcess} on our behalf, without
 * code injected into it: the thread's registers are saved, rip is pointed at a {@code syscall}
 * instruction (0f 05) of its own memory (a {@link SyscallGadget}), rax and orig_rax get the
 * number, rdi, rsi, rdx, r10, r8, r9 the arguments; one PTRACE_SINGLESTEP runs the
 * instruction, the SIGTRAP stop after it gives the result in rax, and the saved registers go
 * back.
 *
 * <p>A thread frozen inside an interrupted system call has orig_rax &gt;= 0 and one of
 * -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK in rax; the kernel's
 * restart logic would rewrite rip and rax of the injected call when the thread resumes to run
 * it. orig_rax = -1 turns that off for the injection; the saved registers, restored after,
 * let the original call restart as it would have.
 *
 * <p>A result in [-4095, -1] is -errno and throws {@link SyscallException}, e.g.
 * {@code injected mmap(0x0, 4096, 0x3, 0x22, -1, 0x0) in pid 123 failed: ENOMEM (Cannot allocate memory)}.
 * Numbers and flags are x86-64's ({@code arch/x86/entry/syscalls/syscall_64.tbl}).
 */
public final class RemoteSyscall {
    public static final int NR_CLOSE = 3;
    public static final int NR_MMAP = 9;
    public static final int NR_MPROTECT = 10;
    public static final int NR_MUNMAP = 11;
    public static final int NR_GETPID = 39;
    public static final int NR_PRCTL = 157;
    public static final int NR_GETTID = 186;

    public static final int PROT_NONE = 0;
    public static final int PROT_READ = 1;
    public static final int PROT_WRITE = 2;
    public static final int PROT_EXEC = 4;
    public static final int MAP_SHARED = 0x01;
    public static final int MAP_PRIVATE = 0x02;
    public static final int MAP_FIXED = 0x10;
    public static final int MAP_ANONYMOUS = 0x20;

    /** How long one injected call may take. */
    public static final long TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(5);
    private static final int SYSCALL_INSN_LENGTH = 2;
    private static final int MAX_STEPS = 100;

    private final SeizedProcess process;
    private final int tid;
    private final long gadget;

    RemoteSyscall(SeizedProcess process, int tid, long gadget) {
        this.process = process;
        this.tid = tid;
        this.gadget = gadget;
    }

    public int tid() {
        return tid;
    }

    /** The address of the {@code syscall} instruction used. */
    public long gadget() {
        return gadget;
    }

    /**
     * Runs system call {@code nr} with up to six arguments in the thread and returns rax.
     * {@code name} is for messages only.
     */
    public long call(String name, int nr, long... args) {
        return process.tracer().call(() -> callOnTracer(name, nr, args));
    }

    public long mmap(long addr, long length, int prot, int flags, int fd, long offset) {
        return call("mmap", NR_MMAP, addr, length, prot, flags, fd, offset);
    }

    public void munmap(long addr, long length) {
        call("munmap", NR_MUNMAP, addr, length);
    }

    public void mprotect(long addr, long length, int prot) {
        call("mprotect", NR_MPROTECT, addr, length, prot);
    }

    public void close(int fd) {
        call("close", NR_CLOSE, fd);
    }

    public int getpid() {
        return (int) call("getpid", NR_GETPID);
    }

    public int gettid() {
        return (int) call("gettid", NR_GETTID);
    }

    public long prctl(int option, long arg2, long arg3, long arg4, long arg5) {
        return call("prctl", NR_PRCTL, option, arg2, arg3, arg4, arg5);
    }

    /** True when {@code regs} are those of a thread stopped in a system call the kernel will restart. */
    public static boolean inRestartableSyscall(Regs regs) {
        return SyscallRestart.interrupted(regs);
    }

    private long callOnTracer(String name, int nr, long[] args) {
        String what = describe(name, args);
        SeizedProcess.Tracee t = process.frozenTracee(tid, what);
        Regs saved;
        try {
            saved = Ptrace.getRegs(tid);
        } catch (SyscallException e) {
            throw process.failure(what + ": saving registers", tid, e);
        }
        Regs regs = saved.copy();
        regs.syscallArgs(nr, args);
        regs.rip(gadget);
        if (inRestartableSyscall(saved)) {
            regs.origRax(-1);
        }
        long result;
        try {
            Ptrace.setRegs(tid, regs);
            result = step(t, what);
        } catch (SyscallException e) {
            throw process.failure(what, tid, e);
        } finally {
            restore(t, saved, what);
            process.settle(t, what);
        }
        if (result < 0 && result >= -4095) {
            throw new SyscallException(what, (int) -result);
        }
        return result;
    }

    /** Single-steps over the gadget; returns rax after it. Stops on the way (a signal, a late interrupt) are stepped past. */
    private long step(SeizedProcess.Tracee t, String what) {
        for (int i = 0; i < MAX_STEPS; i++) {
            Ptrace.singleStep(tid, 0);
            process.injected(t);
            WaitStatus ws = process.waitFor(tid, TIMEOUT_NANOS, what);
            if (ws == null || ws.terminated()) {
                process.gone(tid);
                throw new ProcException(what + ": tid " + tid + " ended during the call (" + ws + ")");
            }
            if (ws.ptraceEvent() == Ptrace.EVENT_CLONE) {
                // an injected clone: PTRACE_O_TRACECLONE stops the caller inside the call (rax is not
                // the result yet); take the new thread in, frozen, and step on to the call's return
                process.adoptClone(tid, what);
                continue;
            }
            Regs now = Ptrace.getRegs(tid);
            boolean stepped = now.rip() == gadget + SYSCALL_INSN_LENGTH;
            if (ws.ptraceEvent() == 0 && ws.stopSignal() == Posix.SIGTRAP && stepped) {
                return now.rax();
            }
            if (ws.ptraceEvent() == 0 && ws.stopSignal() != Posix.SIGTRAP) {
                t.deferredSignals.add(ws.stopSignal()); // raised again when the thread resumes
            }
            if (now.rip() != gadget && !stepped) {
                throw new ProcException(what + ": tid " + tid + " stopped at rip=0x" + Long.toHexString(now.rip())
                        + ", neither at the gadget 0x" + Long.toHexString(gadget) + " nor after it (" + ws + ")");
            }
            if (stepped) {
                // stopped after the syscall by something else first: the single-step trap is still to come
                return now.rax();
            }
        }
        throw new ProcException(what + ": tid " + tid + " did not get past the gadget in " + MAX_STEPS + " steps");
    }

    private void restore(SeizedProcess.Tracee t, Regs saved, String what) {
        try {
            Ptrace.setRegs(tid, saved);
        } catch (SyscallException e) {
            if (e.errno() != Errno.ESRCH) {
                throw process.failure(what + ": restoring registers", tid, e);
            }
        }
    }

    private String describe(String name, long[] args) {
        StringJoiner j = new StringJoiner(", ", "injected " + name + "(", ")");
        for (long a : args) {
            j.add(a >= -4096 && a < 4096 ? Long.toString(a) : "0x" + Long.toHexString(a));
        }
        return j + " in pid " + process.pid() + (tid != process.pid() ? " tid " + tid : "");
    }
}
