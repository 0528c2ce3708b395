package dev.lazypages.net;

import io.netty.channel.SelectStrategy;
import io.netty.channel.SelectStrategyFactory;
import io.netty.util.IntSupplier;
import java.util.function.BooleanSupplier;

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

    private long lastEvent;

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
                lastEvent = System.nanoTime();
            }
            return n;
        }
        BooleanSupplier work = IDLE.get();
        if (spin == null && work == null) {
            return SelectStrategy.SELECT;
        }
        int n = selectSupplier.get();
        long now = System.nanoTime();
        if (n > 0) {
            lastEvent = now;
            return n;
        }
        if (work != null && work.getAsBoolean()) {
            return SelectStrategy.CONTINUE; // did some: poll again, then maybe more
        }
        if (spin != null && now - lastEvent < spin[0]) {
            Thread.yield(); // sched_yield: a thread woken onto this CPU runs now, not after the spin (see above)
            return SelectStrategy.CONTINUE;
        }
        return SelectStrategy.SELECT;
    }
}
