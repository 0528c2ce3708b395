package dev.lazypages.ffm;

import dev.lazypages.ffm.gen.Native;
import dev.lazypages.ffm.gen.pollfd;
import dev.lazypages.ffm.gen.utsname;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * File descriptors and process basics: open, close, read and write at offsets, poll,
 * eventfd, kill, uname, and anonymous mappings (mmap/munmap) for memory of one's own. Each
 * failure throws {@link SyscallException} naming the call.
 */
public final class Posix {
    public static final int O_RDONLY = Native.O_RDONLY();
    public static final int O_WRONLY = Native.O_WRONLY();
    public static final int O_RDWR = Native.O_RDWR();
    public static final int O_CLOEXEC = Native.O_CLOEXEC();
    public static final int O_NONBLOCK = Native.O_NONBLOCK();
    public static final int O_CREAT = Native.O_CREAT();
    public static final int O_TRUNC = Native.O_TRUNC();
    public static final int O_APPEND = Native.O_APPEND();
    public static final int O_EXCL = Native.O_EXCL();
    public static final short POLLIN = (short) Native.POLLIN();
    public static final short POLLERR = (short) Native.POLLERR();
    public static final short POLLHUP = (short) Native.POLLHUP();
    public static final int EFD_CLOEXEC = Native.EFD_CLOEXEC();
    public static final int EFD_NONBLOCK = Native.EFD_NONBLOCK();
    public static final int SIGKILL = Native.SIGKILL();
    public static final int SIGSTOP = Native.SIGSTOP();
    public static final int SIGCONT = Native.SIGCONT();
    public static final int SIGTERM = Native.SIGTERM();
    public static final int SIGUSR1 = Native.SIGUSR1();
    public static final int SIGUSR2 = Native.SIGUSR2();
    public static final int SIGTRAP = Native.SIGTRAP();

    private Posix() {
    }

    /** open(2); returns the fd. */
    public static int open(String path, int flags, int mode) {
        try (Arena arena = Arena.ofConfined()) {
            int fd = Libc.open(arena.allocateFrom(path), flags | O_CLOEXEC, mode);
            if (fd < 0) {
                throw new SyscallException("open(" + path + ", flags=0x" + Integer.toHexString(flags) + ")", Libc.errno());
            }
            return fd;
        }
    }

    /**
     * execve(2): replaces this process (every thread, the JVM included) with {@code path} run
     * with {@code argv} and {@code env} ("NAME=value" each). Returns only by throwing.
     *
     * @throws SyscallException the exec failed; this process runs on unchanged
     */
    public static void execve(String path, java.util.List<String> argv, java.util.List<String> env) {
        try (Arena arena = Arena.ofConfined()) {
            int code = Libc.execve(arena.allocateFrom(path), cStrings(arena, argv), cStrings(arena, env));
            throw new SyscallException("execve(" + path + ") = " + code, Libc.errno());
        }
    }

    /** A NULL-terminated array of C strings. */
    private static MemorySegment cStrings(Arena arena, java.util.List<String> strings) {
        MemorySegment a = arena.allocate(java.lang.foreign.ValueLayout.ADDRESS, strings.size() + 1L);
        for (int i = 0; i < strings.size(); i++) {
            a.setAtIndex(java.lang.foreign.ValueLayout.ADDRESS, i, arena.allocateFrom(strings.get(i)));
        }
        a.setAtIndex(java.lang.foreign.ValueLayout.ADDRESS, strings.size(), MemorySegment.NULL);
        return a;
    }

    /** open(2) read-only. */
    public static int openRead(String path) {
        return open(path, O_RDONLY, 0);
    }

    /** close(2). EINTR is not retried: on Linux the fd is gone either way. */
    public static void close(int fd) {
        if (Libc.close(fd) < 0) {
            int e = Libc.errno();
            if (e != Errno.EINTR) {
                throw new SyscallException("close(fd=" + fd + ")", e);
            }
        }
    }

    /** close(2) that never throws, for clean-up paths that already carry an error. */
    public static void closeQuietly(int fd) {
        if (fd >= 0) {
            Libc.close(fd);
        }
    }

    /** pread(2) into {@code buf}; returns bytes read (0 at end of file). */
    public static long pread(int fd, MemorySegment buf, long offset) {
        long n = Libc.pread(fd, buf, buf.byteSize(), offset);
        if (n < 0) {
            throw new SyscallException("pread(fd=" + fd + ", len=" + buf.byteSize() + ", offset=" + offset + ")", Libc.errno());
        }
        return n;
    }

    /** pread(2) until {@code buf} is full or the file ends; returns bytes read. */
    public static long preadFully(int fd, MemorySegment buf, long offset) {
        long done = 0;
        long len = buf.byteSize();
        while (done < len) {
            long n = Libc.pread(fd, buf.asSlice(done), len - done, offset + done);
            if (n < 0) {
                int e = Libc.errno();
                if (e == Errno.EINTR) {
                    continue;
                }
                throw new SyscallException("pread(fd=" + fd + ", len=" + (len - done) + ", offset=" + (offset + done) + ")", e);
            }
            if (n == 0) {
                break;
            }
            done += n;
        }
        return done;
    }

    /** pwrite(2) of the whole of {@code buf}. */
    public static void pwriteFully(int fd, MemorySegment buf, long offset) {
        long done = 0;
        long len = buf.byteSize();
        while (done < len) {
            long n = Libc.pwrite(fd, buf.asSlice(done), len - done, offset + done);
            if (n < 0) {
                int e = Libc.errno();
                if (e == Errno.EINTR) {
                    continue;
                }
                throw new SyscallException("pwrite(fd=" + fd + ", len=" + (len - done) + ", offset=" + (offset + done) + ")", e);
            }
            done += n;
        }
    }

    /** read(2); returns bytes read, or -1 for EAGAIN on a non-blocking fd. */
    public static long read(int fd, MemorySegment buf) {
        while (true) {
            long n = Libc.read(fd, buf, buf.byteSize());
            if (n >= 0) {
                return n;
            }
            int e = Libc.errno();
            if (e == Errno.EAGAIN) {
                return -1;
            }
            if (e != Errno.EINTR) {
                throw new SyscallException("read(fd=" + fd + ", len=" + buf.byteSize() + ")", e);
            }
        }
    }

    /** write(2) of the whole of {@code buf}. */
    public static void writeFully(int fd, MemorySegment buf) {
        long done = 0;
        long len = buf.byteSize();
        while (done < len) {
            long n = Libc.write(fd, buf.asSlice(done), len - done);
            if (n < 0) {
                int e = Libc.errno();
                if (e == Errno.EINTR) {
                    continue;
                }
                throw new SyscallException("write(fd=" + fd + ", len=" + (len - done) + ")", e);
            }
            done += n;
        }
    }

    /** Writes a string to a file path, as {@code echo s > path} would (for /proc knobs). */
    public static void writeString(String path, String s) {
        int fd = open(path, O_WRONLY, 0);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment bytes = arena.allocateFrom(s);
            writeFully(fd, bytes.asSlice(0, bytes.byteSize() - 1));
        } finally {
            closeQuietly(fd);
        }
    }

    /**
     * poll(2) on one fd for {@code events}; returns the revents, or 0 on time-out.
     * {@code timeoutMillis} &lt; 0 waits forever. EINTR returns 0.
     */
    public static short pollOne(int fd, short events, int timeoutMillis) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = pollfd.allocate(arena);
            pollfd.fd(p, fd);
            pollfd.events(p, events);
            int n = Libc.poll(p, 1, timeoutMillis);
            if (n < 0) {
                int e = Libc.errno();
                if (e == Errno.EINTR) {
                    return 0;
                }
                throw new SyscallException("poll(fd=" + fd + ", timeout=" + timeoutMillis + "ms)", e);
            }
            return n == 0 ? 0 : pollfd.revents(p);
        }
    }

    /** eventfd(2). */
    public static int eventfd(int initval, int flags) {
        int fd = Libc.eventfd(initval, flags | EFD_CLOEXEC);
        if (fd < 0) {
            throw new SyscallException("eventfd(flags=0x" + Integer.toHexString(flags) + ")", Libc.errno());
        }
        return fd;
    }

    /** kill(2). */
    public static void kill(int pid, int sig) {
        if (Libc.kill(pid, sig) < 0) {
            throw new SyscallException("kill(pid=" + pid + ", sig=" + sig + ")", Libc.errno());
        }
    }

    /** kill(pid, 0): true when the process exists (EPERM counts as existing). */
    public static boolean processExists(int pid) {
        if (Libc.kill(pid, 0) == 0) {
            return true;
        }
        return Libc.errno() == Errno.EPERM;
    }

    /** tgkill(2): a signal to one thread. */
    public static void tgkill(int tgid, int tid, int sig) {
        if (Libc.tgkill(tgid, tid, sig) < 0) {
            throw new SyscallException("tgkill(tgid=" + tgid + ", tid=" + tid + ", sig=" + sig + ")", Libc.errno());
        }
    }

    /**
     * mmap(2) of {@code length} bytes (a multiple of the page size) of anonymous, private,
     * read-write memory that nothing has touched yet: every page is missing until first use,
     * which is what UFFDIO_REGISTER and PAGEMAP_SCAN need and what an arena's (zero-filled,
     * malloc-backed) memory is not. The buffer does not own the mapping: its {@code close()}
     * does nothing; release it with {@link #munmap}, after which it must not be touched.
     */
    public static PageBuffer mmapAnonymous(long length) {
        long ps = pageSize();
        if (length <= 0 || length % ps != 0) {
            throw new IllegalArgumentException("mmap length " + length + " is not a positive multiple of " + ps);
        }
        MemorySegment m = Libc.mmap(0, length, Native.PROT_READ() | Native.PROT_WRITE(),
                Native.MAP_PRIVATE() | Native.MAP_ANONYMOUS(), -1, 0);
        if (m.address() == -1L) { // MAP_FAILED
            throw new SyscallException("mmap(len=" + length + ", PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)",
                    Libc.errno());
        }
        return PageBuffer.ofMapping(m.reinterpret(length), ps);
    }

    /**
     * munmap(2) of a buffer from {@link #mmapAnonymous} (the whole of it), or of a
     * {@link PageBuffer#pages} view of one (that part only).
     */
    public static void munmap(PageBuffer mapping) {
        if (Libc.munmap(mapping.segment(), mapping.byteSize()) < 0) {
            throw new SyscallException("munmap(addr=0x" + Long.toHexString(mapping.address()) + ", len="
                    + mapping.byteSize() + ")", Libc.errno());
        }
    }

    /** madvise(2) advice: drop the pages (private anonymous memory reads zeros afterwards). */
    public static final int MADV_DONTNEED = Native.MADV_DONTNEED();
    /** mremap(2) flag: the kernel may move the mapping. */
    public static final int MREMAP_MAYMOVE = Native.MREMAP_MAYMOVE();
    /** mremap(2) flag: move to exactly {@code newAddress} (with MREMAP_MAYMOVE). */
    public static final int MREMAP_FIXED = Native.MREMAP_FIXED();

    /**
     * madvise(2) over the whole of {@code range}: a mapping from {@link #mmapAnonymous} or a
     * {@link PageBuffer#pages} view of one (e.g. MADV_DONTNEED on part of it).
     */
    public static void madvise(PageBuffer range, int advice) {
        if (Libc.madvise(range.segment(), range.byteSize(), advice) < 0) {
            throw new SyscallException("madvise(addr=0x" + Long.toHexString(range.address()) + ", len=" + range.byteSize()
                    + ", advice=" + advice + ")", Libc.errno());
        }
    }

    /**
     * mremap(2) of the whole of {@code mapping} (a mapping from {@link #mmapAnonymous} or a
     * {@link PageBuffer#pages} view of one) to {@code newLength} bytes, at {@code newAddress}
     * when {@code flags} has MREMAP_FIXED. Returns the mapping at its new place; the old
     * buffer must not be touched afterwards. Release the result with {@link #munmap}.
     */
    public static PageBuffer mremap(PageBuffer mapping, long newLength, int flags, long newAddress) {
        long r = Libc.syscall(Native.SYS_mremap(), mapping.address(), mapping.byteSize(), newLength, flags, newAddress, 0);
        if (r == -1L) {
            throw new SyscallException("mremap(addr=0x" + Long.toHexString(mapping.address()) + ", len=" + mapping.byteSize()
                    + ", newLen=" + newLength + ", flags=" + flags + ", newAddr=0x" + Long.toHexString(newAddress) + ")",
                    Libc.errno());
        }
        return PageBuffer.ofMapping(MemorySegment.ofAddress(r).reinterpret(newLength), pageSize());
    }

    /** The kernel's name and release, from uname(2). */
    public record Uname(String sysname, String release, String version, String machine) {
    }

    /** uname(2). */
    public static Uname uname() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment u = utsname.allocate(arena);
            if (Libc.uname(u) < 0) {
                throw new SyscallException("uname()", Libc.errno());
            }
            return new Uname(utsname.sysname(u).getString(0), utsname.release(u).getString(0),
                    utsname.version(u).getString(0), utsname.machine(u).getString(0));
        }
    }

    /** The page size, from sysconf(_SC_PAGESIZE). */
    public static long pageSize() {
        return Native.sysconf(Native._SC_PAGESIZE());
    }

    /** This process's pid. */
    public static int getpid() {
        return Native.getpid();
    }

    /** The calling thread's id. */
    public static int gettid() {
        return Native.gettid();
    }

    /** The effective user id. */
    public static int geteuid() {
        return Native.geteuid();
    }
}
