package dev.lazypages.net;

import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.SelectStrategy;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.util.IntSupplier;
import io.netty.util.concurrent.DefaultThreadFactory;

/**
 * The page client's select strategy: an event loop that has just sent a fault request polls
 * epoll without blocking (epoll_wait with a zero timeout, again and again) for up to
 * {@link #SPIN_PROPERTY} µs before it blocks, so the answer is read without the wake-up of a
 * sleeping thread (a few tens of µs on a loaded machine: most of a loopback fault's cost). The spin
 * is bounded and armed only by a request in flight ({@link #spinAfterRequest}), so an idle loop
 * never spins; with 0 it never spins at all. While spinning, tasks handed to the loop by other
 * threads wait at most the spin (their wake-up write is skipped while the loop is awake).
 */
final class SpinSelect implements SelectStrategy {
    /** {@code -Dlazypages.faultSpinMicros=N}: how long the FAULT loop spins for an answer (default 50, 0: off). */
    static final String SPIN_PROPERTY = "lazypages.faultSpinMicros";
    static final long SPIN_NANOS = Math.max(0, Long.getLong(SPIN_PROPERTY, 50)) * 1000;
    /** The strategy of the loop running on this thread (set on its first select). */
    private static final ThreadLocal<SpinSelect> CURRENT = new ThreadLocal<>();

    /** Loop thread only: spin until this System.nanoTime(). */
    private long spinUntil;
    private boolean bound;

    /** An epoll event loop group of daemon threads named {@code name-N}, spinning as above. */
    static EventLoopGroup group(String name, int threads) {
        return new MultiThreadIoEventLoopGroup(threads, new DefaultThreadFactory(name, true),
                EpollIoHandler.newFactory(0, SpinSelect::new));
    }

    /** On a loop of such a group: a request just went out, spin for its answer. Elsewhere: nothing. */
    static void spinAfterRequest() {
        if (SPIN_NANOS == 0) {
            return;
        }
        SpinSelect s = CURRENT.get();
        if (s != null) {
            s.spinUntil = System.nanoTime() + SPIN_NANOS;
        }
    }

    @Override
    public int calculateStrategy(IntSupplier selectNow, boolean hasTasks) throws Exception {
        if (!bound) {
            bound = true;
            CURRENT.set(this);
        }
        if (hasTasks) {
            return selectNow.get();
        }
        final long until = spinUntil;
        if (until != 0) {
            while (true) {
                int n = selectNow.get();
                if (n > 0) {
                    return n;
                }
                if (System.nanoTime() - until >= 0) {
                    break;
                }
                Thread.onSpinWait();
            }
            spinUntil = 0;
        }
        return SelectStrategy.SELECT;
    }
}
