package dev.lazypages.ffm;

import dev.lazypages.ffm.gen.Native;
import dev.lazypages.ffm.gen.sched_attr;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * sched_getattr(2) and sched_setattr(2) on one thread (a tid; 0 is the calling thread): its
 * scheduling policy and nice value. Linux schedules threads, not processes, so this acts on the
 * one thread named and on no other thread of its process.
 */
public final class Sched {
    /** SCHED_OTHER: the default, fair-share policy. */
    public static final int NORMAL = Native.SCHED_NORMAL();
    /** SCHED_BATCH: fair share, but never preempts on wakeup. */
    public static final int BATCH = Native.SCHED_BATCH();
    /**
     * SCHED_IDLE: runs on CPU time no other thread wants; a SCHED_OTHER thread that wakes on its
     * CPU preempts it (on a kernel built without preemption, only once it is back in user space).
     */
    public static final int IDLE = Native.SCHED_IDLE();

    private Sched() {
    }

    /**
     * A thread's policy (one of the constants above, or a real-time one), nice value, and for the
     * fair policies its slice in ns (sched_runtime: what the kernel reports, its default or a
     * requested one; 0 where the kernel reports none).
     */
    public record Attr(int policy, int nice, long sliceNanos) {
    }

    /** sched_getattr(tid): the thread's policy, nice value and slice. */
    public static Attr get(int tid) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = arena.allocate(sched_attr.layout());
            if (Libc.syscall(Native.SYS_sched_getattr(), tid, a.address(), sched_attr.sizeof(), 0, 0, 0) < 0) {
                throw new SyscallException("sched_getattr(tid=" + tid + ")", Libc.errno());
            }
            return new Attr(sched_attr.sched_policy(a), sched_attr.sched_nice(a), sched_attr.sched_runtime(a));
        }
    }

    /** sched_setattr(tid) with {@code policy} and {@code nice} (nice is ignored by the kernel for SCHED_IDLE). */
    public static void set(int tid, int policy, int nice) {
        set(tid, policy, nice, 0);
    }

    /**
     * sched_setattr(tid) with {@code policy}, {@code nice} and, for a fair policy, a slice of
     * {@code sliceNanos} (0: the kernel's default). Since Linux 6.12 (EEVDF) the slice is the
     * time the thread asks to run at a time, clamped to 0.1-100 ms: a thread with a shorter slice
     * than the running one's gets an earlier deadline, so when it wakes it preempts that thread
     * instead of waiting for its slice to end, at the same share of CPU time. Older kernels
     * ignore it.
     */
    public static void set(int tid, int policy, int nice, long sliceNanos) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = arena.allocate(sched_attr.layout());
            sched_attr.size(a, (int) sched_attr.sizeof());
            sched_attr.sched_policy(a, policy);
            sched_attr.sched_nice(a, nice);
            sched_attr.sched_runtime(a, sliceNanos);
            if (Libc.syscall(Native.SYS_sched_setattr(), tid, a.address(), 0, 0, 0, 0) < 0) {
                throw new SyscallException("sched_setattr(tid=" + tid + ", policy=" + policy + ", nice=" + nice
                        + (sliceNanos != 0 ? ", slice=" + sliceNanos + " ns" : "") + ")", Libc.errno());
            }
        }
    }
}
