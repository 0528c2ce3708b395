package dev.lazypages.net;

import io.netty.channel.SelectStrategy;
import io.netty.channel.SelectStrategyFactory;
import io.netty.util.IntSupplier;
import java.util.function.BooleanSupplier;
import java.util.function.LongSupplier;

/**
 * An event loop's select strategy that, on a loop that asked for it ({@link #enableHere}), keeps
 * polling (epoll_wait with no timeout) for a while after the last ready event before it blocks:
 * a fault that follows within that time is read without waking a sleeping thread, which on this
 * 2-core VM costs tens of µs a time (a halted virtual CPU). Every other loop blocks at once, as
 * Netty's default strategy does. The page client's FAULT loop spins {@value #CLIENT_DEFAULT_MICROS}
 * µs ({@value #CLIENT_PROPERTY}); the page server's FAULT loop does not by default
 * ({@value #SERVER_PROPERTY}): with both ends on one 2-core machine, as in lazy-bench, two spinning
 * loops and the faulting process fight for the CPUs (measured: idle fault p99 1.3 ms against 0.2-1.0
 * with the client's alone).
 *
 * <p>Each poll of the spin yields the CPU (sched_yield) rather than only pausing: a thread woken
 * onto the spinning loop's CPU (the faulting process, the page server's loop on the same machine)
 * otherwise waited for the spin to end, since the kernel lets the running thread keep its slice
 * before a woken one preempts it. Measured with lazy-bench fault-latency (the toucher keeping each
 * touch's latency): in every round's first ~50 ms about 60 faults took 226 µs (424 µs with a
 * 400 µs spin: the spin plus the fault's own time), enough to make the idle p99 224-228 µs;
 * yielding, the idle p99 was 95-119 µs in all five rounds.
 *
 * <p>But a yield hands the CPU to the threads waiting for it, and under load (the background
 * transfer's threads, the source's, the process) the loop gets it back only when they block or
 * their slices end, while a fault that arrives meanwhile wakes nobody: the loop is not asleep.
 * {@code perf sched} of fault-latency with the background on showed it: the page client's FAULT
 * loop back on a CPU p50 11 µs but p99 0.64 ms (up to 3.2 ms) after its yields, queued behind the
 * BULK loop on one CPU while the other ran only a SCHED_IDLE compiler thread, where the page
 * server's FAULT loop, which blocks, ran p99 35 µs after the wake-up a request gave it. So a yield
 * that kept the CPU away longer than {@value #CONTENDED_YIELD_NANOS} ns stops the spinning for a
 * while: the loop blocks, and an event wakes it (placed on an idle CPU, or ahead of the threads
 * that used theirs). The hold-off is {@value #MIN_HOLD_OFF_NANOS} ns after a first slow yield,
 * twice as long after each slow one that follows, up to {@value #MAX_HOLD_OFF_NANOS} ns, and half
 * as long after each fast one. {@value #HOLD_OFF_PROPERTY}{@code =false} turns it off.
 */
final class SpinThenBlock implements SelectStrategy {
    /** Microseconds the page client's FAULT loop polls after an event before it blocks (0: never). */
    static final String CLIENT_PROPERTY = "lazypages.faultSpinMicros";
    static final long CLIENT_DEFAULT_MICROS = 200;
    /** The same for the page server's FAULT loop (default 0). */
    static final String SERVER_PROPERTY = "lazypages.serverFaultSpinMicros";

    /** The spin of {@code property} in nanoseconds. */
    static long spinNanos(String property, long defaultMicros) {
        return Math.max(0, Long.getLong(property, defaultMicros)) * 1000;
    }
    /** Loops that spin: set on the loop's own thread. */
    private static final ThreadLocal<long[]> SPIN = new ThreadLocal<>();
    /** Loops that have work for when no event is ready ({@link FaultLoop#whileIdle}): set on the loop's own thread. */
    private static final ThreadLocal<BooleanSupplier> IDLE = new ThreadLocal<>();

    static final SelectStrategyFactory FACTORY = SpinThenBlock::new;

    /** {@code -Dlazypages.faultSpinHoldOff=false}: spin (and yield) whatever the yields cost. */
    static final String HOLD_OFF_PROPERTY = "lazypages.faultSpinHoldOff";
    private static final boolean HOLD_OFF = !"false".equals(System.getProperty(HOLD_OFF_PROPERTY));
    /** A yield that took longer (another thread had the CPU meanwhile) means the CPUs are contended. */
    static final long CONTENDED_YIELD_NANOS = 50_000;
    /** No spinning for this long after a first slow yield; doubled after each slow one that follows. */
    static final long MIN_HOLD_OFF_NANOS = 1_000_000;
    static final long MAX_HOLD_OFF_NANOS = 500_000_000;

    private final Runnable yield;
    private final LongSupplier clock;
    private final boolean holdOffs;
    private long lastEvent;
    /** The current hold-off (0: none, or decayed to nothing) and when the last one ends. */
    private long holdOff;
    private long noSpinUntil;

    SpinThenBlock() {
        this(Thread::yield, System::nanoTime, HOLD_OFF);
    }

    /** With {@code yield} in place of sched_yield and {@code clock} in place of System.nanoTime (tests). */
    SpinThenBlock(Runnable yield, LongSupplier clock, boolean holdOffs) {
        this.yield = yield;
        this.clock = clock;
        this.holdOffs = holdOffs;
    }

    /** Makes the calling event loop spin for {@code spinNanos} after each event (0: off). */
    static void enableHere(long spinNanos) {
        SPIN.set(spinNanos > 0 ? new long[] {spinNanos} : null);
    }

    /** Gives the calling event loop {@code work} for when no event is ready (null: none). */
    static void idleWorkHere(BooleanSupplier work) {
        if (work == null) {
            IDLE.remove();
        } else {
            IDLE.set(work);
        }
    }

    @Override
    public int calculateStrategy(IntSupplier selectSupplier, boolean hasTasks) throws Exception {
        long[] spin = SPIN.get();
        if (hasTasks) {
            int n = selectSupplier.get();
            if (n > 0) {
                lastEvent = clock.getAsLong();
            }
            return n;
        }
        BooleanSupplier work = IDLE.get();
        if (spin == null && work == null) {
            return SelectStrategy.SELECT;
        }
        int n = selectSupplier.get();
        long now = clock.getAsLong();
        if (n > 0) {
            lastEvent = now;
            return n;
        }
        if (work != null && work.getAsBoolean()) {
            return SelectStrategy.CONTINUE; // did some: poll again, then maybe more
        }
        if (spin != null && now - lastEvent < spin[0] && (!holdOffs || now - noSpinUntil >= 0)) {
            yield.run(); // sched_yield: a thread woken onto this CPU runs now, not after the spin (see above)
            if (holdOffs) {
                long took = clock.getAsLong() - now;
                if (took > CONTENDED_YIELD_NANOS) { // contended: block for a while, an event wakes us
                    holdOff = Math.min(MAX_HOLD_OFF_NANOS, Math.max(MIN_HOLD_OFF_NANOS, holdOff * 2));
                    noSpinUntil = now + took + holdOff;
                    return SelectStrategy.SELECT;
                }
                holdOff /= 2;
            }
            return SelectStrategy.CONTINUE;
        }
        return SelectStrategy.SELECT;
    }
}
