package dev.lazypages.lazy;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * The read/copy handshake of a {@link LazyPageServer} (see its class comment): the fault thread
 * announces each read of the uffd and waits until no copy section is in flight; a copy section
 * (translate, re-check the bitmap, UFFDIO_COPY, on the background's or a delivering thread) starts
 * only while no read is announced. Dekker-style: a volatile flag against a count, each side
 * writing its own and then reading the other's.
 *
 * <p>A read that finds a section in flight polls briefly ({@value #READ_SPINS} pauses), then
 * parks until the last section out unparks it. It used to poll and then yield in a loop: under
 * load a yield hands the CPU to the busiest thread, often the very copier, which then kept it
 * for its whole slice while the read sat in the run queue; and a read thread with a real-time
 * policy yielded to nobody and spun for up to 7.9 ms (perf record of fault-latency with
 * SCHED_FIFO fault loops) while the copier it waited for could not run. Parked, the read thread
 * uses no CPU and is woken by the copier the moment its section ends (a wake-up, which the
 * scheduler honours ahead of threads that used their share).
 *
 * <p>Copy sections that find a read announced poll and yield until it is over: a read is a
 * system call and the handling of its events, a few µs. Once {@link #close}d, sections are refused.
 */
final class CopyGate {
    /** Pauses a read polls for the sections in flight before it parks (a 16-page copy takes ~12 µs). */
    static final int READ_SPINS = 100;
    /** Longest park between two looks at the count (a lost unpark costs at most this). */
    private static final long PARK_NANOS = 1_000_000;

    private volatile boolean readIntent;
    /** Threads inside a copy section. */
    private final AtomicInteger copiers = new AtomicInteger();
    /** Set once: sections entered later do nothing. */
    private volatile boolean closed;
    /** The read parked until the sections in flight end, or null. */
    private volatile Thread waiter;
    private final AtomicLong readsWaited = new AtomicLong();
    private final AtomicLong readWaitNanos = new AtomicLong();

    /** Announces a read (one thread at a time) and waits until no copy section is in flight. */
    void announceRead() {
        readIntent = true; // volatile store, then volatile load: Dekker with enterCopy's pair
        if (copiers.get() == 0) {
            return;
        }
        long t0 = System.nanoTime();
        for (int i = 0; i < READ_SPINS && copiers.get() > 0; i++) {
            Thread.onSpinWait();
        }
        if (copiers.get() > 0) {
            waiter = Thread.currentThread(); // then look at the count: leaveCopy decrements, then looks here
            while (copiers.get() > 0) {
                LockSupport.parkNanos(this, PARK_NANOS);
            }
            waiter = null;
        }
        readsWaited.incrementAndGet();
        readWaitNanos.addAndGet(System.nanoTime() - t0);
    }

    /** The read is over (its events handled): copy sections may start again. */
    void readDone() {
        readIntent = false;
    }

    /** Enters a copy section: false once closed (copy nothing). Leave with {@link #leaveCopy}. */
    boolean enterCopy() {
        for (;;) {
            copiers.incrementAndGet(); // a full fence: then look for a read announcement
            if (!readIntent) {
                if (closed) {
                    leaveCopy();
                    return false;
                }
                return true;
            }
            leaveCopy();
            for (int spins = 0; readIntent; spins++) {
                if (closed) {
                    return false;
                }
                backOff(spins);
            }
        }
    }

    /** Leaves a copy section; the last one out wakes a read waiting for it. */
    void leaveCopy() {
        if (copiers.decrementAndGet() == 0) {
            Thread w = waiter;
            if (w != null) {
                LockSupport.unpark(w);
            }
        }
    }

    /** Refuses copy sections from now on and waits for those in flight. */
    void close() {
        closed = true;
        readIntent = true; // sections entered from now on see closed and leave
        for (int spins = 0; copiers.get() > 0; spins++) {
            backOff(spins);
        }
    }

    /** Whether {@link #close} was called. */
    boolean closed() {
        return closed;
    }

    /** Reads that found a copy section in flight and waited for it. */
    long readsWaited() {
        return readsWaited.get();
    }

    /** The time those reads waited, in ns. */
    long readWaitNanos() {
        return readWaitNanos.get();
    }

    /** Spin a little, then yield: the thread we wait for may have lost its CPU (2 cores, many threads). */
    static void backOff(int spins) {
        if (spins < 200) {
            Thread.onSpinWait();
        } else {
            Thread.yield();
        }
    }
}
