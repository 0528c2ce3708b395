package dev.lazypages.dump;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.ProcessMemory;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.memory.PageRanges;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.TracerThread;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The source side of a post-copy after a lazy final dump ({@link PreCopySession#finalDumpLazy},
 * {@link Dumper#dumpLazy}): the image in {@link #imagesDir} is complete except for the pages it
 * records REMOTE ({@link #remote}), whose bytes are still in the process, which stays frozen
 * and seized. The page server reads them with {@link #readPages}; once the destination has
 * every page, {@link #commitAndKill} ends the original; before the destination confirmed,
 * {@link #resume} rolls back (the process runs on exactly as before: the dirty tracker and the
 * scratch page are gone already, the threads are thawed and detached).
 *
 * <p>{@link #readPages} is safe from any number of threads (process_vm_readv, no ptrace);
 * {@link #commitAndKill} and {@link #resume} wait for reads in progress and make later reads
 * fail with {@link IllegalStateException}. {@link #close} resumes a process neither committed
 * nor resumed.
 */
public final class FrozenProcess implements AutoCloseable {
    /** What became of the process. */
    public enum State {
        /** Frozen, pages can be read. */
        FROZEN,
        /** Killed after the destination took over. */
        COMMITTED,
        /** Thawed and detached: running again. */
        RESUMED
    }

    private final SeizedProcess process;
    private final boolean ownsTracer;
    private final Path imagesDir;
    private final PageRanges remote;
    private final int pageSize;
    private final long frozenAt;
    private final DumpResult dump;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private volatile State state = State.FROZEN;
    /** A SIGSTOP is pending for the process (see stopIfTracerDies). */
    private boolean stopQueued;
    private volatile long endedAt;
    /** /proc/PID/mem, opened on the first page process_vm_readv cannot read (no PROT_READ). */
    private volatile int memFd = -1;
    /** The dirty tracker, still registered: closed once the process is killed or resumed, outside the frozen window. */
    private AutoCloseable tracker;

    /**
     * @param ownsTracer release the process's tracer thread when done (it was handed over)
     * @param tracker    the dirty tracker to close at the end, or null
     */
    FrozenProcess(SeizedProcess process, boolean ownsTracer, Path imagesDir, PageRanges remote, int pageSize, long frozenAt,
                  DumpResult dump, AutoCloseable tracker) {
        this(process, ownsTracer, imagesDir, remote, pageSize, frozenAt, dump);
        this.tracker = tracker;
    }

    /** @param ownsTracer release the process's tracer thread when done (it was handed over) */
    FrozenProcess(SeizedProcess process, boolean ownsTracer, Path imagesDir, PageRanges remote, int pageSize, long frozenAt,
                  DumpResult dump) {
        this.process = Objects.requireNonNull(process);
        this.ownsTracer = ownsTracer;
        this.imagesDir = imagesDir;
        this.remote = remote;
        this.pageSize = pageSize;
        this.frozenAt = frozenAt;
        this.dump = dump;
    }

    public int pid() {
        return process.pid();
    }

    /** The image the lazy dump wrote (REMOTE runs for {@link #remote}). */
    public Path imagesDir() {
        return imagesDir;
    }

    /** The pages the image records REMOTE: what the destination will ask for. */
    public PageRanges remote() {
        return remote;
    }

    public int pageSize() {
        return pageSize;
    }

    /** The dump's summary: {@code frozenNanos} there is freeze → image ready (the downtime's source part). */
    public DumpResult dump() {
        return dump;
    }

    public State state() {
        return state;
    }

    /** Time frozen so far (until {@link #commitAndKill} or {@link #resume} once either ran). */
    public long frozenNanos() {
        long end = endedAt;
        return (end != 0 ? end : System.nanoTime()) - frozenAt;
    }

    /**
     * Reads {@code nrPages} pages at {@code vaddr} of the frozen process into {@code directDst}
     * from its position (which advances by {@code nrPages * pageSize()}).
     *
     * @throws IllegalArgumentException a page is not in {@link #remote}, or the buffer is not direct or too small
     * @throws IllegalStateException    the process was committed or resumed, or the read came up short
     */
    public void readPages(long vaddr, int nrPages, ByteBuffer directDst) {
        long bytes = (long) nrPages * pageSize;
        if (nrPages <= 0 || (vaddr & (pageSize - 1)) != 0) {
            throw new IllegalArgumentException(nrPages + " pages at 0x" + Long.toHexString(vaddr) + ": not a page-aligned run");
        }
        if (!remote.containsAll(vaddr, vaddr + bytes)) {
            throw new IllegalArgumentException("pages 0x" + Long.toHexString(vaddr) + "-0x" + Long.toHexString(vaddr + bytes)
                    + " of pid " + pid() + " are not all REMOTE in " + imagesDir);
        }
        if (!directDst.isDirect() || directDst.remaining() < bytes) {
            throw new IllegalArgumentException("need a direct buffer with " + bytes + " bytes remaining, got "
                    + (directDst.isDirect() ? directDst.remaining() + " bytes" : "a heap buffer"));
        }
        ReentrantReadWriteLock.ReadLock r = lock.readLock();
        r.lock();
        try {
            if (state != State.FROZEN) {
                throw new IllegalStateException("pid " + pid() + " is " + state + ": its pages are gone");
            }
            int start = directDst.position();
            ByteBuffer slot = directDst.slice(start, (int) bytes);
            long got;
            try {
                got = ProcessMemory.read(pid(), vaddr, slot);
            } catch (SyscallException e) {
                got = 0; // EFAULT on the first page: no PROT_READ
            }
            if (got != bytes) {
                readProtected(vaddr + got, slot);
            }
            directDst.position(start + (int) bytes);
        } finally {
            r.unlock();
        }
    }

    /** The rest of {@code slot} from /proc/PID/mem, which ignores protections (as PageCopier does). */
    private void readProtected(long addr, ByteBuffer slot) {
        int fd = memFd;
        if (fd < 0) {
            synchronized (this) {
                if (memFd < 0) {
                    memFd = Posix.openRead("/proc/" + pid() + "/mem");
                }
                fd = memFd;
            }
        }
        long want = slot.remaining();
        ByteBuffer rest = slot.slice();
        long got;
        if (want % pageSize == 0 && MemorySegment.ofBuffer(rest).address() % pageSize == 0) {
            got = PageBuffer.wrap(rest).readFrom(fd, addr);
        } else {
            got = -1;
        }
        if (got != want) {
            throw new IllegalStateException("reading pages 0x" + Long.toHexString(addr) + "+" + want + " bytes of frozen pid "
                    + pid() + " came up short (" + got + "): memory changed under a frozen process?");
        }
    }

    /**
     * The destination has every page: SIGKILLs the frozen original and reaps its threads (gone
     * on return), then releases the tracer. Idempotent once committed.
     *
     * @throws IllegalStateException after {@link #resume}
     */
    public void commitAndKill() {
        release(State.COMMITTED, () -> Dumper.kill(process));
    }

    /**
     * Rollback before the destination confirmed: thaws and detaches the process, which runs on
     * exactly as before. Idempotent once resumed.
     *
     * @throws IllegalStateException after {@link #commitAndKill}
     */
    public void resume() {
        release(State.RESUMED, () -> {
            if (stopQueued) {
                Posix.kill(pid(), Posix.SIGCONT); // discards the pending SIGSTOP (see stopIfTracerDies)
            }
            process.detach();
        });
    }

    /**
     * Queues a SIGSTOP for the frozen process, to be taken only if it is let go without {@link
     * #resume()}: the kernel detaches a dead tracer's tracees and they run on, so from Commit on a
     * source JVM killed with kill -9 would let the original run beside the destination's copy.
     * With the SIGSTOP pending it stops instead, for an operator to continue or kill (as {@link
     * #leaveStopped()}); {@link #resume()} withdraws it with a SIGCONT (which discards pending
     * stop signals; a SIGCONT handler, if the process has one, runs once).
     */
    public void stopIfTracerDies() {
        ReentrantReadWriteLock.WriteLock w = lock.writeLock();
        w.lock();
        try {
            if (state == State.FROZEN && !stopQueued) {
                Posix.kill(pid(), Posix.SIGSTOP);
                stopQueued = true;
            }
        } finally {
            w.unlock();
        }
    }

    /**
     * Under the write lock, unless the process is {@code to} already: closes the tracker (its
     * unregistering walks every tracked page, so it waits until here, outside the frozen window),
     * runs {@code action}, then releases the process.
     */
    private void release(State to, Runnable action) {
        ReentrantReadWriteLock.WriteLock w = lock.writeLock();
        w.lock();
        try {
            if (state == to) {
                return;
            }
            if (state != State.FROZEN) {
                throw new IllegalStateException("pid " + pid() + " was " + (state == State.COMMITTED ? "killed: it cannot resume"
                        : "resumed: nothing to commit"));
            }
            boolean done = false;
            try {
                closeTracker(); // still frozen: the process runs on exactly as before it was tracked
                action.run();
                done = true;
            } finally {
                if (done || to != State.COMMITTED) { // a kill that failed can be tried again
                    state = to;
                    endedAt = System.nanoTime();
                    release();
                }
            }
        } finally {
            w.unlock();
        }
    }

    /**
     * Neither resume nor kill: for when the source cannot know whether the destination's copy
     * runs (unreachable after Commit). The process is left stopped (SIGSTOP, then detached, so it
     * does not run on when this JVM exits), for an operator to continue or kill.
     */
    public void leaveStopped() {
        if (state != State.FROZEN) {
            return;
        }
        release(State.RESUMED, () -> {
            Posix.kill(pid(), Posix.SIGSTOP);
            process.detach();
        });
    }

    private void closeTracker() {
        AutoCloseable t = tracker;
        tracker = null;
        if (t != null) {
            try {
                t.close();
            } catch (Exception e) {
                // the registration ends with the uffd anyway
            }
        }
    }

    private void release() {
        Posix.closeQuietly(memFd);
        memFd = -1;
        if (ownsTracer) {
            TracerThread t = process.tracer();
            t.close();
        }
    }

    /** Resumes the process unless it was committed or resumed already (the safe default). */
    @Override
    public void close() {
        if (state == State.FROZEN) {
            resume();
        }
    }

    @Override
    public String toString() {
        return "FrozenProcess[pid " + pid() + ", " + state + ", " + remote.pageCount() + " REMOTE pages, " + imagesDir + "]";
    }
}
