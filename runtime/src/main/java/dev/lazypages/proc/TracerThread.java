package dev.lazypages.proc;

import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.jctools.queues.atomic.MpscAtomicArrayQueue;

/**
 * The one platform thread that makes every ptrace call for the processes it traces: the
 * kernel accepts ptrace requests for a tracee only from the thread that attached to it.
 *
 * <p>Other threads hand it work with {@link #submit} (a future) or {@link #call} (blocking,
 * the task's exception rethrown). Work goes through a bounded multi-producer single-consumer
 * queue; a full queue is back-pressure: the producer backs off and retries for up to
 * {@link #OFFER_TIMEOUT_NANOS} before giving up with {@link RejectedExecutionException}.
 * Work submitted from the tracer thread itself runs at once, so tasks may nest.
 *
 * <p>When the queue is empty the thread runs its idle tasks (a seized, running process
 * polls its threads' ptrace events there) and parks; with idle tasks registered it parks
 * for at most {@link #IDLE_POLL_NANOS}, else until work arrives.
 */
public final class TracerThread implements AutoCloseable {
    /** Queue capacity (a power of two). */
    public static final int CAPACITY = 1024;
    /** How long a producer retries a full queue. */
    public static final long OFFER_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(10);
    /** Park time between idle-task runs. */
    public static final long IDLE_POLL_NANOS = TimeUnit.MILLISECONDS.toNanos(1);
    private static final int DRAIN_LIMIT = 64;

    private final MpscAtomicArrayQueue<Task<?>> queue = new MpscAtomicArrayQueue<>(CAPACITY);
    private final List<Runnable> idleTasks = new CopyOnWriteArrayList<>();
    private final Thread thread;
    /** Set by the tracer before it parks; producers unpark it only when set. Volatile on both sides (Dekker with the queue's index). */
    private volatile boolean parked;
    private volatile boolean running = true;
    /** Set once the loop has ended and failed the tasks it found queued. */
    private volatile boolean terminated;

    private record Task<T>(Callable<T> work, CompletableFuture<T> result) {
        void run() {
            try {
                result.complete(work.call());
            } catch (Throwable t) {
                result.completeExceptionally(t);
            }
        }
    }

    /** Starts a tracer thread named {@code name}. */
    public TracerThread(String name) {
        thread = Thread.ofPlatform().name(name).daemon(true).unstarted(this::loop);
        thread.start();
    }

    /** Starts a tracer thread named "lp-tracer". */
    public TracerThread() {
        this("lp-tracer");
    }

    /** True when called on this tracer thread. */
    public boolean isTracerThread() {
        return Thread.currentThread() == thread;
    }

    /** The underlying thread (for diagnostics and tests). */
    public Thread thread() {
        return thread;
    }

    /** Runs {@code work} on the tracer thread; the future completes with its result or exception. */
    public <T> CompletableFuture<T> submit(Callable<T> work) {
        Task<T> task = new Task<>(work, new CompletableFuture<>());
        if (isTracerThread()) {
            task.run();
            return task.result;
        }
        if (!running) {
            task.result.completeExceptionally(new RejectedExecutionException(thread.getName() + " is closed"));
            return task.result;
        }
        if (!queue.offer(task)) {
            offerSlowPath(task);
        }
        if (parked) {
            LockSupport.unpark(thread);
        }
        if (terminated) {
            // the tracer may have failed the leftovers before this task landed: fail it here
            task.result.completeExceptionally(new RejectedExecutionException(thread.getName() + " is closed"));
        }
        return task.result;
    }

    private void offerSlowPath(Task<?> task) {
        long deadline = System.nanoTime() + OFFER_TIMEOUT_NANOS;
        long backoff = 1_000;
        while (!queue.offer(task)) {
            if (!running) {
                throw new RejectedExecutionException(thread.getName() + " is closed");
            }
            if (System.nanoTime() - deadline > 0) {
                throw new RejectedExecutionException(thread.getName() + " queue stayed full (" + CAPACITY + " tasks) for "
                        + TimeUnit.NANOSECONDS.toMillis(OFFER_TIMEOUT_NANOS) + " ms");
            }
            LockSupport.unpark(thread);
            LockSupport.parkNanos(backoff);
            backoff = Math.min(backoff * 2, 1_000_000);
        }
    }

    /**
     * Runs {@code work} on the tracer thread and waits for it. Its unchecked exceptions are
     * rethrown as they are; a checked one comes wrapped in a {@link CompletionException}.
     */
    public <T> T call(Callable<T> work) {
        try {
            return submit(work).join();
        } catch (CompletionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof RuntimeException r) {
                throw r;
            }
            if (cause instanceof Error err) {
                throw err;
            }
            throw e;
        }
    }

    /** {@link #call} for work without a result. */
    public void run(Runnable work) {
        call(() -> {
            work.run();
            return null;
        });
    }

    /** Adds work the tracer thread runs whenever its queue is empty (on the tracer thread). */
    public void addIdleTask(Runnable task) {
        idleTasks.add(task);
        LockSupport.unpark(thread);
    }

    public void removeIdleTask(Runnable task) {
        idleTasks.remove(task);
    }

    private void loop() {
        while (running) {
            int done = queue.drain(Task::run, DRAIN_LIMIT);
            if (done > 0) {
                continue;
            }
            for (Runnable idle : idleTasks) {
                try {
                    idle.run();
                } catch (RuntimeException e) {
                    // an idle task reports its own failures; one must not stop the tracer
                    idleTasks.remove(idle);
                }
            }
            parked = true;
            if (queue.isEmpty() && running) {
                if (idleTasks.isEmpty()) {
                    LockSupport.park(this);
                } else {
                    LockSupport.parkNanos(this, IDLE_POLL_NANOS);
                }
            }
            parked = false;
        }
        terminated = true;
        RejectedExecutionException closed = new RejectedExecutionException(thread.getName() + " closed before the task ran");
        Task<?> t;
        while ((t = queue.poll()) != null) {
            t.result.completeExceptionally(closed);
        }
    }

    /** Stops the thread; work still queued fails with {@link RejectedExecutionException}. Waits for the thread to end. */
    @Override
    public void close() {
        running = false;
        if (isTracerThread()) {
            return;
        }
        LockSupport.unpark(thread);
        try {
            thread.join(TimeUnit.SECONDS.toMillis(10));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
