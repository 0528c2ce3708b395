package dev.lazypages.ffm;

/**
 * A system call or libc function failed. The message names the call, the arguments that
 * matter and the errno by name, e.g. {@code ptrace(PTRACE_SEIZE, pid=123) failed: ESRCH (No such process)}.
 */
public final class SyscallException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String call;
    private final int errno;

    public SyscallException(String call, int errno) {
        super(call + " failed: " + Errno.describe(errno));
        this.call = call;
        this.errno = errno;
    }

    /** The call as it was made, e.g. {@code ptrace(PTRACE_SEIZE, pid=123)}. */
    public String call() {
        return call;
    }

    /** The raw errno value. */
    public int errno() {
        return errno;
    }

    /** The errno's symbolic name, e.g. {@code ESRCH}. */
    public String errnoName() {
        return Errno.name(errno);
    }
}
