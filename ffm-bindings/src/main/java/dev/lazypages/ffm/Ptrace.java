package dev.lazypages.ffm;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import dev.lazypages.ffm.gen.Native;
import dev.lazypages.ffm.gen.__ptrace_rseq_configuration;
import dev.lazypages.ffm.gen.iovec;
import dev.lazypages.ffm.gen.user_fpregs_struct;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * ptrace(2) and waitpid(2) for a tracer.
 *
 * <p>The kernel accepts ptrace requests for a tracee only from the thread that attached to it:
 * every call here must come from that one thread (the runtime keeps a tracer thread per seized
 * process and hands it work). Failures throw {@link SyscallException}, e.g.
 * {@code ptrace(PTRACE_SEIZE, pid=123) failed: ESRCH (No such process)}.
 */
public final class Ptrace {
    public static final int O_TRACESYSGOOD = Native.PTRACE_O_TRACESYSGOOD();
    public static final int O_TRACECLONE = Native.PTRACE_O_TRACECLONE();
    public static final int O_EXITKILL = Native.PTRACE_O_EXITKILL();
    public static final int EVENT_STOP = Native.PTRACE_EVENT_STOP();
    public static final int EVENT_CLONE = Native.PTRACE_EVENT_CLONE();
    /** waitpid flag: wait for all children, clone or not. */
    public static final int WALL = Native.__WALL();
    public static final int WNOHANG = Native.WNOHANG();

    private static final int NT_PRSTATUS = Native.NT_PRSTATUS();
    private static final int NT_X86_XSTATE = Native.NT_X86_XSTATE();
    /** Large enough for the xstate of every x86 CPU in use (AMX makes it ~11 KiB). */
    private static final int XSTATE_MAX = 16384;

    private Ptrace() {
    }

    private static String requestName(int request) {
        if (request == Native.PTRACE_SEIZE()) return "PTRACE_SEIZE";
        if (request == Native.PTRACE_INTERRUPT()) return "PTRACE_INTERRUPT";
        if (request == Native.PTRACE_DETACH()) return "PTRACE_DETACH";
        if (request == Native.PTRACE_CONT()) return "PTRACE_CONT";
        if (request == Native.PTRACE_SINGLESTEP()) return "PTRACE_SINGLESTEP";
        if (request == Native.PTRACE_GETREGS()) return "PTRACE_GETREGS";
        if (request == Native.PTRACE_SETREGS()) return "PTRACE_SETREGS";
        if (request == Native.PTRACE_GETFPREGS()) return "PTRACE_GETFPREGS";
        if (request == Native.PTRACE_SETFPREGS()) return "PTRACE_SETFPREGS";
        if (request == Native.PTRACE_GETREGSET()) return "PTRACE_GETREGSET";
        if (request == Native.PTRACE_SETREGSET()) return "PTRACE_SETREGSET";
        if (request == Native.PTRACE_PEEKDATA()) return "PTRACE_PEEKDATA";
        if (request == Native.PTRACE_POKEDATA()) return "PTRACE_POKEDATA";
        if (request == Native.PTRACE_SETOPTIONS()) return "PTRACE_SETOPTIONS";
        if (request == Native.PTRACE_GETEVENTMSG()) return "PTRACE_GETEVENTMSG";
        if (request == Native.PTRACE_LISTEN()) return "PTRACE_LISTEN";
        if (request == Native.PTRACE_GETSIGMASK()) return "PTRACE_GETSIGMASK";
        if (request == Native.PTRACE_SETSIGMASK()) return "PTRACE_SETSIGMASK";
        if (request == Native.PTRACE_GET_RSEQ_CONFIGURATION()) return "PTRACE_GET_RSEQ_CONFIGURATION";
        return "ptrace request " + request;
    }

    private static long call(int request, int tid, long addr, long data, String extra) {
        long r = Libc.ptrace(request, tid, addr, data);
        if (r == -1) {
            int e = Libc.errno();
            if (e != 0) {
                throw new SyscallException("ptrace(" + requestName(request) + ", pid=" + tid + extra + ")", e);
            }
        }
        return r;
    }

    private static long call(int request, int tid, long addr, long data) {
        return call(request, tid, addr, data, "");
    }

    /** PTRACE_SEIZE with options: attach without stopping. */
    public static void seize(int pid, int options) {
        call(Native.PTRACE_SEIZE(), pid, 0, options);
    }

    /** PTRACE_INTERRUPT: stop a seized thread (a group-stop-like PTRACE_EVENT_STOP follows). */
    public static void interrupt(int tid) {
        call(Native.PTRACE_INTERRUPT(), tid, 0, 0);
    }

    /** PTRACE_DETACH, delivering {@code signal} (0 for none). */
    public static void detach(int tid, int signal) {
        call(Native.PTRACE_DETACH(), tid, 0, signal);
    }

    /** PTRACE_CONT, delivering {@code signal} (0 for none). */
    public static void cont(int tid, int signal) {
        call(Native.PTRACE_CONT(), tid, 0, signal);
    }

    /** PTRACE_LISTEN: leave a thread in its group stop but report further events. */
    public static void listen(int tid) {
        call(Native.PTRACE_LISTEN(), tid, 0, 0);
    }

    /** PTRACE_SINGLESTEP, delivering {@code signal} (0 for none). */
    public static void singleStep(int tid, int signal) {
        call(Native.PTRACE_SINGLESTEP(), tid, 0, signal);
    }

    /** PTRACE_SETOPTIONS */
    public static void setOptions(int tid, int options) {
        call(Native.PTRACE_SETOPTIONS(), tid, 0, options);
    }

    /** PTRACE_GETEVENTMSG, e.g. the new thread's id after PTRACE_EVENT_CLONE. */
    public static long eventMessage(int tid) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment msg = arena.allocate(JAVA_LONG);
            call(Native.PTRACE_GETEVENTMSG(), tid, 0, msg.address());
            return msg.get(JAVA_LONG, 0);
        }
    }

    /** PTRACE_GETREGS */
    public static Regs getRegs(int tid) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment regs = arena.allocate(Regs.SIZE, 8);
            call(Native.PTRACE_GETREGS(), tid, 0, regs.address());
            return Regs.readFrom(regs);
        }
    }

    /** PTRACE_SETREGS */
    public static void setRegs(int tid, Regs regs) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(Regs.SIZE, 8);
            regs.writeTo(seg);
            call(Native.PTRACE_SETREGS(), tid, 0, seg.address(), " " + regs);
        }
    }

    /** PTRACE_GETREGSET NT_PRSTATUS: the same registers through the regset interface. */
    public static Regs getRegsViaRegset(int tid) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment regs = arena.allocate(Regs.SIZE, 8);
            MemorySegment iov = iovec.allocate(arena);
            iovec.iov_base(iov, regs);
            iovec.iov_len(iov, regs.byteSize());
            call(Native.PTRACE_GETREGSET(), tid, NT_PRSTATUS, iov.address(), ", NT_PRSTATUS");
            return Regs.readFrom(regs);
        }
    }

    /** PTRACE_GETFPREGS: the legacy FXSAVE area ({@code struct user_fpregs_struct}, 512 bytes). */
    public static byte[] getFpRegs(int tid) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment fp = user_fpregs_struct.allocate(arena);
            call(Native.PTRACE_GETFPREGS(), tid, 0, fp.address());
            return fp.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        }
    }

    /** PTRACE_GETREGSET NT_X86_XSTATE: the whole XSAVE area, as long as the kernel reports it. */
    public static byte[] getXstate(int tid) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(XSTATE_MAX, 64);
            MemorySegment iov = iovec.allocate(arena);
            iovec.iov_base(iov, buf);
            iovec.iov_len(iov, XSTATE_MAX);
            call(Native.PTRACE_GETREGSET(), tid, NT_X86_XSTATE, iov.address(), ", NT_X86_XSTATE");
            long len = iovec.iov_len(iov);
            return buf.asSlice(0, len).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        }
    }

    /** PTRACE_SETREGSET NT_X86_XSTATE */
    public static void setXstate(int tid, byte[] xstate) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(xstate.length, 64);
            MemorySegment.copy(xstate, 0, buf, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, xstate.length);
            MemorySegment iov = iovec.allocate(arena);
            iovec.iov_base(iov, buf);
            iovec.iov_len(iov, xstate.length);
            call(Native.PTRACE_SETREGSET(), tid, NT_X86_XSTATE, iov.address(), ", NT_X86_XSTATE, len=" + xstate.length);
        }
    }

    /** PTRACE_GETSIGMASK: the thread's blocked signals as a 64-bit mask. */
    public static long getSigmask(int tid) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mask = arena.allocate(JAVA_LONG);
            call(Native.PTRACE_GETSIGMASK(), tid, 8, mask.address());
            return mask.get(JAVA_LONG, 0);
        }
    }

    /** PTRACE_SETSIGMASK */
    public static void setSigmask(int tid, long mask) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment m = arena.allocate(JAVA_LONG);
            m.set(JAVA_LONG, 0, mask);
            call(Native.PTRACE_SETSIGMASK(), tid, 8, m.address());
        }
    }

    /** A thread's rseq registration (address 0 when it has none). */
    public record RseqConfiguration(long address, int length, int flags, int signature) {
    }

    /** PTRACE_GET_RSEQ_CONFIGURATION */
    public static RseqConfiguration getRseqConfiguration(int tid) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment conf = __ptrace_rseq_configuration.allocate(arena);
            call(Native.PTRACE_GET_RSEQ_CONFIGURATION(), tid, conf.byteSize(), conf.address());
            return new RseqConfiguration(__ptrace_rseq_configuration.rseq_abi_pointer(conf),
                    __ptrace_rseq_configuration.rseq_abi_size(conf),
                    __ptrace_rseq_configuration.flags(conf),
                    __ptrace_rseq_configuration.signature(conf));
        }
    }

    /** PTRACE_PEEKDATA: one word of the tracee's memory. */
    public static long peekData(int tid, long address) {
        return call(Native.PTRACE_PEEKDATA(), tid, address, 0, ", addr=0x" + Long.toHexString(address));
    }

    /** PTRACE_POKEDATA: one word into the tracee's memory (works on read-only text, too). */
    public static void pokeData(int tid, long address, long word) {
        call(Native.PTRACE_POKEDATA(), tid, address, word, ", addr=0x" + Long.toHexString(address));
    }

    /** waitpid(2), retrying EINTR. {@code flags} is a mix of {@link #WALL} and {@link #WNOHANG}. */
    public static WaitStatus waitpid(int pid, int flags) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment status = arena.allocate(JAVA_INT);
            while (true) {
                int r = Libc.waitpid(pid, status, flags);
                if (r >= 0) {
                    return new WaitStatus(r, r == 0 ? 0 : status.get(JAVA_INT, 0));
                }
                int e = Libc.errno();
                if (e != Errno.EINTR) {
                    throw new SyscallException("waitpid(pid=" + pid + ", flags=0x" + Integer.toHexString(flags) + ")", e);
                }
            }
        }
    }
}
