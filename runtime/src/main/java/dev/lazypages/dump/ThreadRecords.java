package dev.lazypages.dump;

import com.google.protobuf.ByteString;
import dev.lazypages.ffm.Ptrace;
import dev.lazypages.ffm.Regs;
import dev.lazypages.image.proto.InSyscall;
import dev.lazypages.image.proto.Rseq;
import dev.lazypages.image.proto.SigAction;
import dev.lazypages.image.proto.ThreadState;
import dev.lazypages.proc.RemoteMemory;
import dev.lazypages.proc.RemoteScratch;
import dev.lazypages.proc.RemoteSyscall;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.SyscallRestart;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * Per-thread and per-process kernel state of a frozen {@link SeizedProcess} (docs/IMAGE.md,
 * Process and threads): registers exactly as read, xstate, fpregs, sigmask and rseq of each
 * thread through ptrace on the tracer thread; the signal actions and brk by injected system
 * calls.
 */
final class ThreadRecords {
    static final int NR_BRK = 12;
    static final int NR_RT_SIGACTION = 13;
    /** Kernel {@code struct sigaction} on x86-64: handler, flags, restorer, mask. */
    static final int SIGACTION_BYTES = 32;
    static final int SIGKILL = 9;
    static final int SIGSTOP = 19;
    static final int MAX_SIGNAL = 64;
    private static final long SIG_DFL = 0;

    private ThreadRecords() {
    }

    /** The state of frozen thread {@code tid}. */
    static ThreadState thread(SeizedProcess process, int tid) {
        Regs regs = process.regs(tid);
        return process.tracer().call(() -> {
            ThreadState.Builder b = ThreadState.newBuilder().setTid(tid);
            for (long w : regs.words()) {
                b.addRegs(w);
            }
            b.setFsBase(regs.fsBase()).setGsBase(regs.gsBase());
            b.setFpregs(ByteString.copyFrom(Ptrace.getFpRegs(tid)));
            b.setXstate(ByteString.copyFrom(Ptrace.getXstate(tid)));
            b.setSigmask(Ptrace.getSigmask(tid));
            Ptrace.RseqConfiguration rseq = Ptrace.getRseqConfiguration(tid);
            if (rseq.address() != 0) {
                b.setRseq(Rseq.newBuilder().setAddress(rseq.address()).setLength(rseq.length())
                        .setSignature(rseq.signature()).setFlags(rseq.flags()));
            }
            if (SyscallRestart.interrupted(regs)) {
                b.setInSyscall(InSyscall.newBuilder().setOrigRax(regs.origRax()).setRax(regs.rax()));
            }
            return b.build();
        });
    }

    /** brk(0): the current program break. */
    static long brk(RemoteSyscall syscalls) {
        return syscalls.call("brk", NR_BRK, 0);
    }

    /** The disposition of signal {@code signo}, or null when it is SIG_DFL; {@code scratch} receives the struct. */
    static SigAction sigaction(int pid, RemoteSyscall syscalls, RemoteScratch scratch, int signo) {
        syscalls.call("rt_sigaction", NR_RT_SIGACTION, signo, 0, scratch.address(), 8);
        ByteBuffer b = ByteBuffer.wrap(RemoteMemory.read(pid, scratch.address(), SIGACTION_BYTES)).order(ByteOrder.LITTLE_ENDIAN);
        long handler = b.getLong();
        if (handler == SIG_DFL) {
            return null;
        }
        return SigAction.newBuilder().setSigno(signo).setHandler(handler).setFlags(b.getLong())
                .setRestorer(b.getLong()).setMask(b.getLong()).build();
    }

    /** Signals whose disposition is read: 1..64 but SIGKILL and SIGSTOP. */
    static List<Integer> signals() {
        return signals(-1L);
    }

    /**
     * The signals of {@link #signals()} whose bit (signal s is bit s-1) is set in {@code notDefault}:
     * the union of SigCgt and SigIgn from /proc/PID/status, read while frozen. A signal in neither
     * has SIG_DFL, which the image leaves out anyway, so injecting rt_sigaction for it is wasted
     * (0.4 ms each, ~25 ms for all 62).
     */
    static List<Integer> signals(long notDefault) {
        List<Integer> out = new ArrayList<>(MAX_SIGNAL - 2);
        for (int s = 1; s <= MAX_SIGNAL; s++) {
            if (s != SIGKILL && s != SIGSTOP && (notDefault & (1L << (s - 1))) != 0) {
                out.add(s);
            }
        }
        return out;
    }

    /**
     * SigCgt | SigIgn of {@code pid}'s /proc/PID/status (process-wide: the signal handlers are
     * shared by the thread group), or -1 (every signal) when it cannot be read or parsed.
     */
    static long notDefaultSignals(String status) {
        long cgt = -1;
        long ign = -1;
        for (String line : status.split("\n")) {
            try {
                if (line.startsWith("SigCgt:")) {
                    cgt = Long.parseUnsignedLong(line.substring(7).strip(), 16);
                } else if (line.startsWith("SigIgn:")) {
                    ign = Long.parseUnsignedLong(line.substring(7).strip(), 16);
                }
            } catch (NumberFormatException e) {
                return -1;
            }
        }
        return cgt == -1 || ign == -1 ? -1 : cgt | ign;
    }
}
