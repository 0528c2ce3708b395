package dev.lazypages.net;

import io.netty.channel.IoEvent;
import io.netty.channel.IoEventLoop;
import io.netty.channel.IoRegistration;
import io.netty.channel.epoll.EpollIoHandle;
import io.netty.channel.epoll.EpollIoOps;
import io.netty.channel.unix.FileDescriptor;
import java.io.IOException;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;

/**
 * The event loop of a {@link PageClient}'s FAULT connection, lent out so that one more file
 * descriptor (the userfaultfd of a lazily restored process) is watched on the same epoll loop
 * that writes the fault requests and reads their answers. The fault path then never changes
 * thread: the loop reads the fault, writes the request (a write(2) right there, no task queued,
 * no wake-up of another thread), reads the answer and UFFDIO_COPYs it, the way the C floor's
 * single handler thread does with blocking I/O.
 *
 * <p>Only with the native epoll transport ({@link PageClient#faultLoop()} is null otherwise).
 * The fd is watched level-triggered for EPOLLIN; it must be non-blocking, since a message seen
 * by epoll can be gone by the time it is read (the faulting thread took a signal).
 */
public final class FaultLoop {
    private final IoEventLoop loop;

    FaultLoop(IoEventLoop loop) {
        this.loop = loop;
    }

    /** Whether the caller runs on this loop. */
    public boolean inLoop() {
        return loop.inEventLoop();
    }

    /** Runs {@code task} on the loop, later (never inline). */
    public void execute(Runnable task) {
        loop.execute(task);
    }

    /** Runs {@code task} on the loop after {@code delayNanos}. */
    public void schedule(Runnable task, long delayNanos) {
        loop.schedule(task, delayNanos, TimeUnit.NANOSECONDS);
    }

    /**
     * Gives the loop work to do between two polls of its fds when no event is ready, instead of
     * only spinning or sleeping: {@code work} returns true when it did some (the loop then polls
     * again at once and calls it again), false when there is none (the loop spins, as configured,
     * or sleeps). Each call must be short: an event that comes meanwhile waits for it. Null takes
     * it away. Takes effect on the loop, after the tasks queued before it.
     */
    public void whileIdle(java.util.function.BooleanSupplier work) {
        loop.execute(() -> SpinThenBlock.idleWorkHere(work));
    }

    /** Wakes the loop if it sleeps in epoll_wait (so that it looks for {@link #whileIdle} work); cheap if it does not. */
    public void wake() {
        try {
            loop.execute(NOTHING);
        } catch (RejectedExecutionException e) {
            // shutting down: nothing to help with any more
        }
    }

    private static final Runnable NOTHING = () -> { };

    /** Whether the loop is shutting down or gone (its page client closed): it serves nothing any more. */
    public boolean isShuttingDown() {
        return loop.isShuttingDown();
    }

    /** The loop's thread name, for logs and tests. */
    public String threadName() {
        try {
            return loop.submit(() -> Thread.currentThread().getName()).get();
        } catch (Exception e) {
            return "?";
        }
    }

    /** A file descriptor watched on the loop; see {@link #watch}. */
    public interface Watch {
        /**
         * Stops watching. From another thread it waits until the loop has taken it off (so
         * {@code onReadable} is not running and will not run again); the fd may be closed then.
         */
        void cancel();
    }

    /**
     * Watches {@code fd} for readability: {@code onReadable} runs on the loop each time epoll
     * reports it readable (again and again while something is left to read), until {@link Watch#cancel}
     * or the loop shuts down ({@link #isShuttingDown}). The fd stays the caller's: nothing here closes it.
     *
     * @throws IOException the loop is shutting down, or epoll refused the fd
     */
    public Watch watch(int fd, Runnable onReadable) throws IOException {
        Handle h = new Handle(fd, onReadable);
        try {
            IoRegistration reg = loop.register(h).sync().getNow();
            loop.submit(() -> {
                reg.submit(EpollIoOps.EPOLLIN); // level-triggered: read what we like, epoll reports the rest again
                return null;
            }).sync();
            h.registration = reg;
            return h;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted while registering fd " + fd + " on the fault event loop");
        } catch (RejectedExecutionException e) {
            throw new IOException("the fault event loop is shutting down", e);
        } catch (Exception e) {
            throw new IOException("cannot watch fd " + fd + " on the fault event loop: " + e, e);
        }
    }

    private final class Handle implements EpollIoHandle, Watch {
        private final FileDescriptor fd;
        private final Runnable onReadable;
        private volatile IoRegistration registration;
        private volatile boolean cancelled;

        Handle(int fd, Runnable onReadable) {
            this.fd = new FileDescriptor(fd); // never closed here: close() below does not touch it
            this.onReadable = onReadable;
        }

        @Override
        public FileDescriptor fd() {
            return fd;
        }

        @Override
        public void handle(IoRegistration reg, IoEvent event) {
            if (!cancelled) {
                onReadable.run();
            }
        }

        /** Netty closes the handles of a loop that shuts down: the fd stays open, it is the caller's. */
        @Override
        public void close() {
            cancelled = true;
        }

        @Override
        public void cancel() {
            if (loop.inEventLoop()) {
                cancelOnLoop();
                return;
            }
            try {
                loop.submit(this::cancelOnLoop).syncUninterruptibly();
            } catch (RejectedExecutionException e) {
                cancelled = true; // the loop is gone: it closed (and so took off) every handle
            }
        }

        private void cancelOnLoop() {
            cancelled = true;
            IoRegistration reg = registration;
            if (reg != null) {
                reg.cancel();
            }
        }
    }
}
