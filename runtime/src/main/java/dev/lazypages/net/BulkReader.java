package dev.lazypages.net;

import dev.lazypages.proc.CpuYield;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.jctools.queues.atomic.MpscUnboundedAtomicArrayQueue;

/**
 * The page server's bulk thread: runs the BULK requests the I/O loops hand it, in order, so that
 * a long provider read never delays a FAULT request on a shared loop. The hand-over is a JCTools
 * MPSC queue (the I/O loops produce, this thread consumes with {@code drain}) and park/unpark
 * only when the thread is idle: no lock per request. Unbounded: a client keeps a bounded window
 * of bulk requests in flight, and a connection whose answers are not read stops being read
 * ({@link PageServer}'s autoRead), so what waits here stays small.
 */
final class BulkReader {
    private static final System.Logger LOG = System.getLogger(BulkReader.class.getName());
    private static final int DRAIN_LIMIT = 64;
    /** A safety net: the thread looks at the queue at least this often even if an unpark were missed. */
    private static final long IDLE_PARK_NANOS = TimeUnit.MILLISECONDS.toNanos(100);

    private final String name;
    private final MpscUnboundedAtomicArrayQueue<Runnable> queue = new MpscUnboundedAtomicArrayQueue<>(256);
    /** Set by the thread before it parks; producers unpark it only when set (Dekker with the queue's index). */
    private volatile boolean parked;
    private volatile boolean closing;
    private volatile boolean dropQueued;
    private volatile Thread thread;

    BulkReader(String name) {
        this.name = name;
    }

    /**
     * Runs {@code task} on the bulk thread (started on the first call).
     *
     * @throws RejectedExecutionException after {@link #shutdown}
     */
    void execute(Runnable task) {
        if (closing) {
            throw new RejectedExecutionException(name + " is shut down");
        }
        Thread t = thread;
        if (t == null) {
            t = start();
        }
        queue.offer(task); // then read parked: the thread sets parked before it looks at the queue a last time
        if (parked) {
            LockSupport.unpark(t);
        }
    }

    private synchronized Thread start() { // once per server
        if (thread == null) {
            thread = Thread.ofPlatform().name(name).daemon().start(this::run);
        }
        return thread;
    }

    private void run() {
        CpuYield.thisThread(); // a fault's read on the I/O loops, and the process it wakes, go first
        while (true) {
            if (dropQueued) {
                queue.clear();
            }
            int done = queue.drain(this::runOne, DRAIN_LIMIT);
            if (done > 0) {
                continue;
            }
            if (closing) {
                return; // shut down and nothing left
            }
            parked = true;
            if (queue.isEmpty() && !closing) {
                LockSupport.parkNanos(this, IDLE_PARK_NANOS);
            }
            parked = false;
        }
    }

    private void runOne(Runnable task) {
        if (dropQueued) {
            return; // shut down now: what has not started is dropped
        }
        try {
            task.run();
        } catch (RuntimeException | Error e) {
            LOG.log(System.Logger.Level.ERROR, "page server bulk task failed", e);
        }
    }

    /** No new tasks; those queued still run ({@code now}: those not started yet are dropped). */
    void shutdown(boolean now) {
        dropQueued = now;
        closing = true;
        Thread t = thread;
        if (t != null) {
            LockSupport.unpark(t);
        }
    }

    /** Waits for the thread to end (after {@link #shutdown}); false if it still runs after {@code millis}. */
    boolean awaitTermination(long millis) throws InterruptedException {
        Thread t;
        synchronized (this) {
            t = thread;
        }
        if (t == null) {
            return true;
        }
        t.join(millis);
        return !t.isAlive();
    }
}
