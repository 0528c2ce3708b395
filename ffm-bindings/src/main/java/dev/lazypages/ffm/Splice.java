package dev.lazypages.ffm;

import static java.lang.foreign.ValueLayout.JAVA_INT;

import dev.lazypages.ffm.gen.Native;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Pipes and splice(2): moving pages to a socket by reference instead of by copy. A pipe filled by
 * vmsplice(2) holds references to the memory of the process that called it; splice(2) from that
 * pipe to a TCP socket hands the same pages to the network stack, so neither step copies.
 */
public final class Splice {
    public static final int F_MOVE = Native.SPLICE_F_MOVE();
    public static final int F_NONBLOCK = Native.SPLICE_F_NONBLOCK();
    public static final int F_MORE = Native.SPLICE_F_MORE();
    /** The syscall numbers, for injecting them into another process. */
    public static final int NR_PIPE2 = (int) Native.SYS_pipe2();
    public static final int NR_VMSPLICE = (int) Native.SYS_vmsplice();
    public static final short POLLOUT = (short) Native.POLLOUT();

    private Splice() {
    }

    /** pipe2(flags): {read end, write end}. */
    public static int[] pipe(int flags) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment fds = arena.allocate(JAVA_INT, 2);
            if (Libc.syscall(Native.SYS_pipe2(), fds.address(), flags, 0, 0, 0, 0) < 0) {
                throw new SyscallException("pipe2(flags=" + flags + ")", Libc.errno());
            }
            return new int[] {fds.getAtIndex(JAVA_INT, 0), fds.getAtIndex(JAVA_INT, 1)};
        }
    }

    /** fcntl(F_SETPIPE_SZ): sets a pipe's capacity; returns the capacity the kernel gave (at least {@code bytes}). */
    public static int setPipeSize(int fd, int bytes) {
        int r = Libc.fcntl(fd, Native.F_SETPIPE_SZ(), bytes);
        if (r < 0) {
            throw new SyscallException("fcntl(fd=" + fd + ", F_SETPIPE_SZ, " + bytes + ")", Libc.errno());
        }
        return r;
    }

    /**
     * splice(in, NULL, out, NULL, len, flags): moves up to {@code len} bytes from {@code in} to
     * {@code out}, one of which is a pipe; returns the bytes moved (0: {@code in} is at its end), or
     * -1 when a non-blocking end would block (EAGAIN). EINTR is retried.
     */
    public static long splice(int in, int out, long len, int flags) {
        while (true) {
            long n = Libc.syscall(Native.SYS_splice(), in, 0, out, 0, len, flags);
            if (n >= 0) {
                return n;
            }
            int e = Libc.errno();
            if (e == Errno.EAGAIN) {
                return -1;
            }
            if (e != Errno.EINTR) {
                throw new SyscallException("splice(in=" + in + ", out=" + out + ", len=" + len + ")", e);
            }
        }
    }
}
