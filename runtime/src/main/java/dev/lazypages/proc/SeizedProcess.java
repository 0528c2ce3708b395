package dev.lazypages.proc;

import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Ptrace;
import dev.lazypages.ffm.Regs;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.WaitStatus;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * A whole thread group under ptrace: every thread seized (PTRACE_SEIZE with
 * PTRACE_O_TRACECLONE, so threads created later are traced too), frozen and thawed together,
 * detached so that it runs on as it was.
 *
 * <p>All ptrace work runs on the given {@link TracerThread}; the public methods may be called
 * from any thread. While the process runs seized, the tracer thread polls its threads' events
 * between tasks: a new thread is taken in and resumed, a signal is delivered (resumed with it),
 * a group-stop is left in place (PTRACE_LISTEN), so that being seized does not change how the
 * process behaves.
 *
 * <p>{@link #freeze} interrupts every thread and waits for each stop. A thread that reports a
 * signal-delivery-stop instead stays frozen in it; its signal is remembered and delivered by
 * {@link #thaw} or {@link #detach}. Errors are {@link ProcException}s naming the step, the pid
 * and the thread.
 */
public final class SeizedProcess implements AutoCloseable {
    /** How long freeze waits for one thread to stop. */
    public static final long STOP_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(5);
    private static final int OPTIONS = Ptrace.O_TRACECLONE;
    private static final int MAX_SEIZE_ROUNDS = 1000;

    private enum State { RUNNING, FROZEN, DETACHED }

    /** How a frozen thread is stopped. */
    enum Stop { NONE, INTERRUPT, GROUP, SIGNAL }

    /** One traced thread; touched only on the tracer thread. */
    static final class Tracee {
        final int tid;
        Stop stop = Stop.NONE;
        /** The signal of the signal-delivery-stop it was frozen in, delivered when it resumes. */
        int pendingSignal;
        /** Signals that arrived during syscall injection, raised again (tgkill) when it resumes. */
        final List<Integer> deferredSignals = new ArrayList<>(1);

        Tracee(int tid) {
            this.tid = tid;
        }
    }

    private final int pid;
    private final TracerThread tracer;
    private final int options;
    private final Map<Integer, Tracee> tracees = new LinkedHashMap<>();
    private final Runnable poller = this::pollEventsQuietly;
    private volatile State state = State.RUNNING;

    private SeizedProcess(int pid, TracerThread tracer, int options) {
        this.pid = pid;
        this.tracer = tracer;
        this.options = options;
    }

    /**
     * Seizes every thread of {@code pid}, listing /proc/PID/task again until no new thread
     * shows up. The process keeps running. Another user's process is refused unless this one
     * runs as root ({@link ProcessOwner#requireMaySeize}).
     */
    public static SeizedProcess seize(int pid, TracerThread tracer) {
        return seize(pid, tracer, OPTIONS);
    }

    /**
     * {@link #seize}, with PTRACE_O_EXITKILL: should the tracer thread end while the process is
     * still seized (its JVM killed, say), the kernel kills the process. For a process being built
     * (a restore), which must not run on half-built; never for a source process, which must
     * survive whatever happens to the tool.
     */
    public static SeizedProcess seizeKillOnTracerExit(int pid, TracerThread tracer) {
        return seize(pid, tracer, OPTIONS | Ptrace.O_EXITKILL);
    }

    private static SeizedProcess seize(int pid, TracerThread tracer, int options) {
        ProcessOwner.requireMaySeize(pid);
        SeizedProcess p = new SeizedProcess(pid, tracer, options);
        tracer.run(p::seizeAll);
        tracer.addIdleTask(p.poller);
        return p;
    }

    public int pid() {
        return pid;
    }

    public TracerThread tracer() {
        return tracer;
    }

    public boolean isFrozen() {
        return state == State.FROZEN;
    }

    public boolean isAttached() {
        return state != State.DETACHED;
    }

    /** The traced thread ids, leader first then in the order they were seized. */
    public List<Integer> threads() {
        return tracer.call(() -> List.copyOf(tracees.keySet()));
    }

    /** Stops every thread; returns when each is in a ptrace stop. */
    public void freeze() {
        tracer.run(() -> {
            requireState(State.RUNNING, "freeze");
            stopAll("freeze");
            state = State.FROZEN;
        });
    }

    /** Resumes every thread, delivering the signals it was stopped with. */
    public void thaw() {
        tracer.run(() -> {
            requireState(State.FROZEN, "thaw");
            for (Tracee t : List.copyOf(tracees.values())) {
                resume(t, "thaw");
            }
            state = State.RUNNING;
            tracer.addIdleTask(poller);
        });
    }

    /** The registers of frozen thread {@code tid}. */
    public Regs regs(int tid) {
        return tracer.call(() -> {
            frozenTracee(tid, "reading registers");
            try {
                return Ptrace.getRegs(tid);
            } catch (SyscallException e) {
                throw failure("reading registers", tid, e);
            }
        });
    }

    /** Sets the registers of frozen thread {@code tid}. */
    public void setRegs(int tid, Regs regs) {
        tracer.run(() -> {
            frozenTracee(tid, "writing registers");
            try {
                Ptrace.setRegs(tid, regs);
            } catch (SyscallException e) {
                throw failure("writing registers", tid, e);
            }
        });
    }

    /** The signal frozen thread {@code tid} will get when it resumes (0 for none). */
    public int pendingSignal(int tid) {
        return tracer.call(() -> frozenTracee(tid, "reading the pending signal").pendingSignal);
    }

    /** System-call injection into frozen thread {@code tid}, through a gadget found in the process's memory. */
    public RemoteSyscall syscalls(int tid) {
        return new RemoteSyscall(this, tid, SyscallGadget.find(pid));
    }

    /** System-call injection into frozen thread {@code tid} through a known {@code syscall} instruction at {@code gadget}. */
    public RemoteSyscall syscalls(int tid, long gadget) {
        return new RemoteSyscall(this, tid, gadget);
    }

    /** Lets the process go: every thread runs on as before seizing (pending signals delivered). */
    public void detach() {
        tracer.run(() -> {
            if (state == State.DETACHED) {
                return;
            }
            tracer.removeIdleTask(poller);
            if (state == State.RUNNING) {
                stopAll("detach"); // PTRACE_DETACH needs a stopped tracee
            }
            for (Tracee t : List.copyOf(tracees.values())) {
                raiseDeferred(t);
                try {
                    Ptrace.detach(t.tid, t.stop == Stop.SIGNAL ? t.pendingSignal : 0);
                } catch (SyscallException e) {
                    if (e.errno() != Errno.ESRCH) {
                        throw failure("detach", t.tid, e);
                    }
                }
            }
            tracees.clear();
            state = State.DETACHED;
        });
    }

    /** Detaches if still attached. */
    @Override
    public void close() {
        if (state != State.DETACHED) {
            detach();
        }
    }

    @Override
    public String toString() {
        return "seized pid " + pid + " (" + state.name().toLowerCase() + ")";
    }

    // ---- on the tracer thread ----

    private void seizeAll() {
        try {
            for (int round = 0; ; round++) {
                if (round == MAX_SEIZE_ROUNDS) {
                    throw new ProcException("seize of pid " + pid + ": the thread set did not settle after " + round + " rounds");
                }
                boolean added = false;
                for (int tid : Proc.threads(pid)) {
                    if (!tracees.containsKey(tid) && seizeThread(tid)) {
                        tracees.put(tid, new Tracee(tid));
                        added = true;
                    }
                }
                pollEvents(); // a thread creating threads waits in PTRACE_EVENT_CLONE until we resume it
                if (!added) {
                    break;
                }
            }
            if (tracees.isEmpty()) {
                throw new ProcException("seize of pid " + pid + ": it has no threads left");
            }
        } catch (RuntimeException e) {
            releaseQuietly();
            if (e.getMessage() != null && e.getMessage().startsWith("seize of pid ")) {
                throw e;
            }
            throw new ProcException("seize of pid " + pid + " failed: " + e.getMessage(), e);
        }
    }

    /** PTRACE_SEIZE of one thread; false when it is gone already. */
    private boolean seizeThread(int tid) {
        try {
            Ptrace.seize(tid, options);
            return true;
        } catch (SyscallException e) {
            if (e.errno() == Errno.ESRCH) {
                return false;
            }
            if (e.errno() == Errno.EPERM && tracedByUs(tid)) {
                return true; // taken in by PTRACE_O_TRACECLONE before we saw its clone event
            }
            throw failure("seize", tid, e);
        }
    }

    private boolean tracedByUs(int tid) {
        try {
            for (String line : Proc.readText(pid, "task/" + tid + "/status").split("\n")) {
                if (line.startsWith("TracerPid:")) {
                    // TracerPid is the tracing thread's id: this (the tracer) thread
                    return Integer.parseInt(line.substring(10).strip()) == Posix.gettid();
                }
            }
        } catch (ProcException gone) {
            return false;
        }
        return false;
    }

    /** Interrupts every thread and waits for each to stop (new threads included). */
    private void stopAll(String step) {
        tracer.removeIdleTask(poller);
        for (Tracee t : tracees.values()) {
            interrupt(t, step);
        }
        ArrayDeque<Tracee> pending = new ArrayDeque<>(tracees.values());
        while (!pending.isEmpty()) {
            awaitStop(pending.poll(), pending, step);
        }
    }

    private void interrupt(Tracee t, String step) {
        try {
            Ptrace.interrupt(t.tid);
        } catch (SyscallException e) {
            if (e.errno() != Errno.ESRCH) { // exiting: awaitStop sees it go
                throw failure(step, t.tid, e);
            }
        }
    }

    private void awaitStop(Tracee t, ArrayDeque<Tracee> pending, String step) {
        while (true) {
            WaitStatus ws = waitFor(t.tid, STOP_TIMEOUT_NANOS, step);
            if (ws == null || ws.terminated()) {
                tracees.remove(t.tid);
                return;
            }
            if (!ws.stopped()) {
                throw new ProcException(step + " of pid " + pid + ": unexpected wait status of tid " + t.tid + ": " + ws);
            }
            int event = ws.ptraceEvent();
            if (event == Ptrace.EVENT_STOP) {
                t.stop = isGroupStopSignal(ws.stopSignal()) ? Stop.GROUP : Stop.INTERRUPT;
                return;
            }
            if (event == 0) {
                // signal-delivery-stop: a ptrace stop like any other (it also cancels our interrupt)
                t.stop = Stop.SIGNAL;
                t.pendingSignal = ws.stopSignal();
                return;
            }
            if (event == Ptrace.EVENT_CLONE) {
                Tracee child = new Tracee((int) eventMessage(t.tid, step));
                if (tracees.putIfAbsent(child.tid, child) == null) {
                    pending.add(child); // it reports its own initial PTRACE_EVENT_STOP
                }
            }
            // an event stop in the middle of a system call is no place to freeze: go on, stop again
            cont(t.tid, 0, step);
            interrupt(t, step);
        }
    }

    /**
     * waitpid(tid, __WALL) with a deadline; null when the thread is gone (ECHILD). Throws
     * naming {@code step} when it does not change state in time.
     */
    WaitStatus waitFor(int tid, long timeoutNanos, String step) {
        long deadline = System.nanoTime() + timeoutNanos;
        int idle = 0;
        while (true) {
            WaitStatus ws;
            try {
                ws = Ptrace.waitpid(tid, Ptrace.WALL | Ptrace.WNOHANG);
            } catch (SyscallException e) {
                if (e.errno() == Errno.ECHILD) {
                    return null;
                }
                throw failure(step, tid, e);
            }
            if (ws.pid() != 0) {
                return ws;
            }
            if (System.nanoTime() - deadline > 0) {
                throw new ProcException(step + " of pid " + pid + ": tid " + tid + " did not stop within "
                        + TimeUnit.NANOSECONDS.toMillis(timeoutNanos) + " ms (thread state " + threadState(tid) + ")");
            }
            if (idle++ < 100) {
                Thread.onSpinWait();
            } else {
                LockSupport.parkNanos(50_000);
            }
        }
    }

    private char threadState(int tid) {
        try {
            return ProcStat.parse(Proc.readText(pid, "task/" + tid + "/stat"), "task stat").state();
        } catch (ProcException e) {
            return 'X';
        }
    }

    private static boolean isGroupStopSignal(int sig) {
        return sig == Posix.SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
    }

    private static final int SIGTSTP = 20;
    private static final int SIGTTIN = 21;
    private static final int SIGTTOU = 22;

    /** Resumes a frozen thread as it was stopped. */
    private void resume(Tracee t, String step) {
        raiseDeferred(t);
        try {
            if (t.stop == Stop.GROUP) {
                Ptrace.listen(t.tid); // stay in the group-stop, as before the freeze
            } else {
                Ptrace.cont(t.tid, t.stop == Stop.SIGNAL ? t.pendingSignal : 0);
            }
        } catch (SyscallException e) {
            if (e.errno() != Errno.ESRCH) {
                throw failure(step, t.tid, e);
            }
        }
        t.stop = Stop.NONE;
        t.pendingSignal = 0;
    }

    private void raiseDeferred(Tracee t) {
        for (int sig : t.deferredSignals) {
            try {
                Posix.tgkill(pid, t.tid, sig);
            } catch (SyscallException e) {
                // the thread is gone: nothing to deliver to
            }
        }
        t.deferredSignals.clear();
    }

    private void pollEventsQuietly() {
        if (state != State.RUNNING) {
            return;
        }
        try {
            pollEvents();
        } catch (RuntimeException e) {
            // keep polling: a thread that vanished mid-call is seen as gone on the next round
        }
    }

    /** Handles the ptrace events of a running seized process so that it runs on undisturbed. */
    private void pollEvents() {
        for (Tracee t : List.copyOf(tracees.values())) {
            WaitStatus ws;
            try {
                ws = Ptrace.waitpid(t.tid, Ptrace.WALL | Ptrace.WNOHANG);
            } catch (SyscallException e) {
                if (e.errno() == Errno.ECHILD) {
                    tracees.remove(t.tid);
                    continue;
                }
                throw failure("event poll", t.tid, e);
            }
            if (ws.pid() == 0) {
                continue;
            }
            if (ws.terminated()) {
                tracees.remove(t.tid);
                continue;
            }
            int event = ws.ptraceEvent();
            if (event == Ptrace.EVENT_CLONE) {
                int child = (int) eventMessage(t.tid, "event poll");
                tracees.putIfAbsent(child, new Tracee(child));
                cont(t.tid, 0, "event poll");
            } else if (event == Ptrace.EVENT_STOP && isGroupStopSignal(ws.stopSignal())) {
                listen(t.tid);
            } else if (event == 0) {
                cont(t.tid, ws.stopSignal(), "event poll"); // deliver the signal as if not traced
            } else {
                cont(t.tid, 0, "event poll"); // a new thread's first stop, or a late interrupt
            }
        }
    }

    private void listen(int tid) {
        try {
            Ptrace.listen(tid);
        } catch (SyscallException e) {
            if (e.errno() != Errno.ESRCH) {
                throw failure("event poll", tid, e);
            }
        }
    }

    private void cont(int tid, int sig, String step) {
        try {
            Ptrace.cont(tid, sig);
        } catch (SyscallException e) {
            if (e.errno() != Errno.ESRCH) {
                throw failure(step, tid, e);
            }
        }
    }

    private long eventMessage(int tid, String step) {
        try {
            return Ptrace.eventMessage(tid);
        } catch (SyscallException e) {
            throw failure(step, tid, e);
        }
    }

    /** After a failed seize: let go of the threads taken so far. */
    private void releaseQuietly() {
        state = State.DETACHED;
        for (Tracee t : tracees.values()) {
            try {
                Ptrace.interrupt(t.tid);
                if (waitFor(t.tid, TimeUnit.MILLISECONDS.toNanos(500), "release") != null) {
                    Ptrace.detach(t.tid, 0);
                }
            } catch (RuntimeException ignored) {
                // best effort: the error that got us here is the one to report
            }
        }
        tracees.clear();
    }

    private void requireState(State wanted, String step) {
        if (state != wanted) {
            throw new IllegalStateException(step + " of pid " + pid + ": the process is " + state.name().toLowerCase()
                    + ", not " + wanted.name().toLowerCase());
        }
    }

    /** The frozen thread {@code tid}; throws naming {@code step} when the process is not frozen or the thread unknown. */
    Tracee frozenTracee(int tid, String step) {
        requireState(State.FROZEN, step);
        Tracee t = tracees.get(tid);
        if (t == null) {
            throw new IllegalArgumentException(step + " of pid " + pid + ": tid " + tid + " is not one of its traced threads "
                    + tracees.keySet());
        }
        return t;
    }

    /** After an injected system call the thread sits in the single-step's SIGTRAP signal-delivery-stop. */
    void injected(Tracee t) {
        t.stop = Stop.SIGNAL;
    }

    /**
     * After an injected system call ({@link RemoteSyscall}): takes the thread out of the
     * single-step's SIGTRAP signal-delivery-stop into an interrupt stop without it running a
     * user instruction (PTRACE_INTERRUPT queued, then the trap cancelled with PTRACE_CONT: the
     * thread takes the interrupt before it leaves the kernel). A tracer that dies while a thread
     * sits in a signal-delivery-stop has that signal delivered (man ptrace), and SIGTRAP kills
     * the process; from an interrupt stop a dead tracer's thread just runs on (or takes a
     * pending SIGSTOP). A signal the thread was frozen with, or one that comes first, is raised
     * again when it resumes. Not for a process seized with PTRACE_O_EXITKILL: it dies with its
     * tracer anyway (and a restorer injects hundreds of calls).
     */
    void settle(Tracee t, String step) {
        if ((options & Ptrace.O_EXITKILL) != 0 || tracees.get(t.tid) != t) {
            return;
        }
        if (t.stop == Stop.SIGNAL && t.pendingSignal != 0) {
            t.deferredSignals.add(t.pendingSignal);
        }
        t.pendingSignal = 0;
        interrupt(t, step);
        cont(t.tid, 0, step);
        while (true) {
            WaitStatus ws = waitFor(t.tid, STOP_TIMEOUT_NANOS, step + ": settling");
            if (ws == null || ws.terminated()) {
                tracees.remove(t.tid);
                return;
            }
            int event = ws.ptraceEvent();
            if (event == Ptrace.EVENT_STOP) {
                t.stop = isGroupStopSignal(ws.stopSignal()) ? Stop.GROUP : Stop.INTERRUPT;
                return;
            }
            if (event == 0) {
                t.deferredSignals.add(ws.stopSignal()); // came before the interrupt: raised again on resume
            }
            cont(t.tid, 0, step);
        }
    }

    /**
     * A thread of ours stopped in PTRACE_EVENT_CLONE during an injected clone: the new thread,
     * auto-attached by PTRACE_O_TRACECLONE, is awaited in its first stop (before it runs any
     * code) and joins the frozen threads; returns its tid. Used by {@link RemoteSyscall} so that
     * a restorer can create threads by injecting clone(CLONE_THREAD | ...).
     */
    int adoptClone(int parentTid, String step) {
        int child = (int) eventMessage(parentTid, step);
        Tracee t = tracees.get(child);
        if (t == null) {
            t = new Tracee(child);
            tracees.put(child, t);
        }
        WaitStatus ws = waitFor(child, STOP_TIMEOUT_NANOS, step + ": new thread " + child);
        if (ws == null || ws.terminated()) {
            tracees.remove(child);
            throw new ProcException(step + " of pid " + pid + ": new thread " + child + " ended before its first stop (" + ws + ")");
        }
        t.stop = Stop.INTERRUPT;
        return child;
    }

    /** A thread vanished under us (killed during injection). */
    void gone(int tid) {
        tracees.remove(tid);
    }

    ProcException failure(String step, int tid, SyscallException e) {
        return new ProcException(step + " of pid " + pid + (tid != pid ? " (tid " + tid + ")" : "") + " failed: " + e.getMessage(), e);
    }
}
