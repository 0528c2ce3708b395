package dev.lazypages.proc;

import dev.lazypages.ffm.Sched;
import dev.lazypages.ffm.SyscallException;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Who gets a CPU first while pages move: a migrated process and the threads that serve its
 * faults, before the background transfer, before this JVM's JIT compilers.
 *
 * <p>On a machine with few cores, the kernel lets a thread that holds a CPU run on for up to a
 * slice (milliseconds) before a thread it woke gets that CPU. Traced with {@code perf sched} on a
 * 2-core machine, the restored process woken by UFFDIO_COPY, and the event loops serving its
 * faults, waited 1-7 ms, several times a second, behind a C1 or C2 compiler thread, or behind a
 * thread of the background transfer, and each such wait is a fault that took milliseconds. A
 * SCHED_IDLE thread gives way when a normal thread wakes on its CPU (in this kernel's
 * non-preemptible configuration, not while it is inside a system call), and runs on the CPU time
 * nothing else wants: the compilers still finish, in the gaps.
 *
 * <p>{@link #compilers} sets this JVM's JIT compiler threads SCHED_IDLE; the engine calls it when
 * it starts serving pages and the command-line tools at start (compiler threads the JVM adds
 * later are caught by the next call); {@code -Dlazypages.jitIdle=false} leaves them as they are.
 * {@link #thisThread} sets the calling thread SCHED_IDLE if {@code -Dlazypages.bulkIdle=true}; the
 * background transfer's threads call it. That is off by default: measured with lazy-bench
 * postcopy-throughput on 2 cores, a SCHED_IDLE background transfer beside a process that faults
 * back to back moved 0.67-0.89 GiB/s instead of 1.17 (it gets only the CPU time the faults leave),
 * and a destination whose workload keeps every core busy would starve it; it is for workloads that
 * need their fault latency more than an early end of the transfer.
 *
 * <p>Slices (EEVDF, Linux 6.12+; older kernels ignore them): a thread that wakes with a shorter
 * slice than the running thread's preempts it, where one with the same slice waits until the
 * running thread's slice ends (milliseconds); the share of CPU time stays the same. So
 * {@link #faultPath} gives the threads that carry faults (the event loops at both ends, the fault
 * thread) a short slice ({@value #FAULT_SLICE_DEFAULT_MICROS} µs, {@code -Dlazypages.faultSliceMicros=N}),
 * and {@link #thisThread} the background transfer's threads a long one ({@value #BULK_SLICE_DEFAULT_MICROS}
 * µs, {@code -Dlazypages.bulkSliceMicros=N}), so that any thread that wakes, the migrated process
 * first, preempts them; 0 leaves the kernel's default. Measured with a C program on this 2-core
 * VM, a thread waking every 100 µs beside two or three busy threads: wake-up overshoot p99.9
 * 0.5-3.5 ms, against 0.1 ms with a 100 µs slice of its own or with the busy threads at 20 ms.
 * {@code lazy-bench fault-latency --repeat 10}, medians of 10 rounds: ours' p99 with the
 * background 1.88 ms with both slices against 4.25 ms with neither (idle 0.22 against 0.54 ms).
 */
public final class CpuYield {
    /** The system property that leaves the JIT compilers as they are ({@code false}). */
    public static final String JIT_PROPERTY = "lazypages.jitIdle";
    /** The system property that makes the background transfer's threads SCHED_IDLE ({@code true}). */
    public static final String BULK_PROPERTY = "lazypages.bulkIdle";

    private CpuYield() {
    }

    /** The system property with the fault path's threads' slice in µs (0: the kernel's default). */
    public static final String FAULT_SLICE_PROPERTY = "lazypages.faultSliceMicros";
    static final long FAULT_SLICE_DEFAULT_MICROS = 100;
    /** The system property with the background transfer's threads' slice in µs (0: the kernel's default). */
    public static final String BULK_SLICE_PROPERTY = "lazypages.bulkSliceMicros";
    static final long BULK_SLICE_DEFAULT_MICROS = 20_000;

    /** True for a thread name (a comm, at most 15 characters) of a HotSpot or JVMCI compiler thread. */
    public static boolean isCompiler(String comm) {
        return comm.startsWith("C1 CompilerThre") || comm.startsWith("C2 CompilerThre") || comm.startsWith("JVMCI Compiler");
    }

    /**
     * Sets this JVM's compiler threads SCHED_IDLE (unless {@value #JIT_PROPERTY} is false); returns
     * how many it changed. Threads that are SCHED_IDLE already, or gone, are skipped; a thread the
     * kernel refuses to change keeps its policy.
     */
    public static int compilers() {
        if ("false".equals(System.getProperty(JIT_PROPERTY))) {
            return 0;
        }
        int changed = 0;
        for (int tid : compilerThreads()) {
            if (idle(tid)) {
                changed++;
            }
        }
        return changed;
    }

    /**
     * For threads of the background transfer: sets the calling thread SCHED_IDLE if
     * {@value #BULK_PROPERTY} is true, else gives it a long slice ({@value #BULK_SLICE_PROPERTY}).
     * True when it changed.
     */
    public static boolean thisThread() {
        if ("true".equals(System.getProperty(BULK_PROPERTY))) {
            return idle(0);
        }
        return slice(Long.getLong(BULK_SLICE_PROPERTY, BULK_SLICE_DEFAULT_MICROS));
    }

    /**
     * Gives the calling thread the fault path's short slice ({@value #FAULT_SLICE_PROPERTY}), if
     * it has a fair policy; true when it changed. A kernel that refuses leaves it as it was.
     */
    public static boolean faultPath() {
        return slice(Long.getLong(FAULT_SLICE_PROPERTY, FAULT_SLICE_DEFAULT_MICROS));
    }

    /** Sets the calling thread's slice to {@code micros} (≤ 0: leaves it) if its policy is a fair one. */
    private static boolean slice(long micros) {
        if (micros <= 0) {
            return false;
        }
        try {
            Sched.Attr a = Sched.get(0);
            if (a.policy() != Sched.NORMAL && a.policy() != Sched.BATCH) {
                return false;
            }
            Sched.set(0, a.policy(), a.nice(), micros * 1000);
            return true;
        } catch (SyscallException e) {
            return false;
        }
    }

    private static boolean idle(int tid) {
        try {
            if (Sched.get(tid).policy() == Sched.IDLE) {
                return false;
            }
            Sched.set(tid, Sched.IDLE, 0);
            return true;
        } catch (SyscallException e) {
            return false; // gone meanwhile (ESRCH), or not ours to change: it keeps its policy
        }
    }

    /** This JVM's compiler threads' tids, found by name in /proc/self/task. */
    static List<Integer> compilerThreads() {
        List<Integer> out = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(Path.of("/proc/self/task"))) {
            for (Path t : ds) {
                String comm;
                try {
                    comm = Files.readString(t.resolve("comm")).strip();
                } catch (IOException e) {
                    continue; // the thread ended
                }
                if (isCompiler(comm)) {
                    out.add(Integer.parseInt(t.getFileName().toString()));
                }
            }
        } catch (IOException e) {
            return out;
        }
        return out;
    }
}
