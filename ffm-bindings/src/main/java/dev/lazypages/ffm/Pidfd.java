package dev.lazypages.ffm;

import dev.lazypages.ffm.gen.Native;

/** pidfd_open(2) and pidfd_getfd(2): a stable handle to a process, and a copy of one of its fds. */
public final class Pidfd {
    private Pidfd() {
    }

    /** pidfd_open(pid, 0) */
    public static int open(int pid) {
        long fd = Libc.syscall(Native.SYS_pidfd_open(), pid, 0, 0, 0, 0, 0);
        if (fd < 0) {
            throw new SyscallException("pidfd_open(pid=" + pid + ")", Libc.errno());
        }
        return (int) fd;
    }

    /** pidfd_getfd(pidfd, targetfd, 0): a duplicate, in this process, of {@code targetFd} of the pidfd's process. */
    public static int getfd(int pidfd, int targetFd) {
        long fd = Libc.syscall(Native.SYS_pidfd_getfd(), pidfd, targetFd, 0, 0, 0, 0);
        if (fd < 0) {
            throw new SyscallException("pidfd_getfd(pidfd=" + pidfd + ", targetfd=" + targetFd + ")", Libc.errno());
        }
        return (int) fd;
    }

    /** Copies fd {@code targetFd} out of process {@code pid}. */
    public static int stealFd(int pid, int targetFd) {
        int pidfd = open(pid);
        try {
            return getfd(pidfd, targetFd);
        } finally {
            Posix.closeQuietly(pidfd);
        }
    }
}
