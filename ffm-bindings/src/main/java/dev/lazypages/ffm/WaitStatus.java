package dev.lazypages.ffm;

/**
 * A status word from waitpid(2), decoded as the W* macros of {@code <sys/wait.h>} do.
 *
 * @param pid    the thread or process the status is about (0 for "nothing yet" with WNOHANG)
 * @param status the raw status word
 */
public record WaitStatus(int pid, int status) {
    /** WIFEXITED */
    public boolean exited() {
        return (status & 0x7f) == 0;
    }

    /** WEXITSTATUS */
    public int exitCode() {
        return (status >> 8) & 0xff;
    }

    /** WIFSIGNALED */
    public boolean signaled() {
        return ((byte) ((status & 0x7f) + 1) >> 1) > 0;
    }

    /** WTERMSIG */
    public int termSignal() {
        return status & 0x7f;
    }

    /** WIFSTOPPED */
    public boolean stopped() {
        return (status & 0xff) == 0x7f;
    }

    /** WSTOPSIG */
    public int stopSignal() {
        return (status >> 8) & 0xff;
    }

    /** The PTRACE_EVENT_* in the high bits of a ptrace stop (status >> 16), 0 for none. */
    public int ptraceEvent() {
        return (status >> 16) & 0xff;
    }

    /** Gone: exited or killed. */
    public boolean terminated() {
        return exited() || signaled();
    }

    @Override
    public String toString() {
        if (pid == 0) {
            return "no change";
        }
        if (exited()) {
            return "pid " + pid + " exited with " + exitCode();
        }
        if (signaled()) {
            return "pid " + pid + " killed by signal " + termSignal();
        }
        if (stopped()) {
            return "pid " + pid + " stopped by signal " + stopSignal() + (ptraceEvent() != 0 ? " event " + ptraceEvent() : "");
        }
        return "pid " + pid + " status 0x" + Integer.toHexString(status);
    }
}
