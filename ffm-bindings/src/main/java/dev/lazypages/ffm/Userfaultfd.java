package dev.lazypages.ffm;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

import dev.lazypages.ffm.gen.Native;
import dev.lazypages.ffm.gen.uffdio_api;
import dev.lazypages.ffm.gen.uffdio_copy;
import dev.lazypages.ffm.gen.uffdio_move;
import dev.lazypages.ffm.gen.uffdio_range;
import dev.lazypages.ffm.gen.uffdio_register;
import dev.lazypages.ffm.gen.uffdio_writeprotect;
import dev.lazypages.ffm.gen.uffdio_zeropage;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A userfaultfd (see the kernel's Documentation/admin-guide/mm/userfaultfd.rst): opened,
 * handshaken with UFFDIO_API, ranges registered, faults resolved with UFFDIO_COPY,
 * UFFDIO_ZEROPAGE or UFFDIO_MOVE, write protection for dirty tracking.
 *
 * <p>Expected outcomes are results, not exceptions: {@link #copy} returns {@link #EEXIST}
 * when the page is already there (a fault raced the background transfer) and {@link #EAGAIN}
 * when the mm is changing under it (retry after reading events). The ioctl argument structs
 * live in a per-thread scratch segment, so the fault path allocates nothing.
 */
public final class Userfaultfd implements AutoCloseable {
    /** copy/zeropage result: the page is already populated. */
    public static final long EEXIST = -Errno.EEXIST;
    /** copy/zeropage result: the mm changed (fork, mremap...) while copying; read events, retry. */
    public static final long EAGAIN = -Errno.EAGAIN;
    /** copy/zeropage result: the range is no longer registered or mapped (the process exited or unmapped it). */
    public static final long ENOENT = -Errno.ENOENT;
    /** copy/zeropage result: the target mm is gone (the process exited). */
    public static final long ESRCH = -Errno.ESRCH;

    public static final long REGISTER_MODE_MISSING = Native.UFFDIO_REGISTER_MODE_MISSING();
    public static final long REGISTER_MODE_WP = Native.UFFDIO_REGISTER_MODE_WP();
    public static final long REGISTER_MODE_MINOR = Native.UFFDIO_REGISTER_MODE_MINOR();
    public static final long COPY_MODE_DONTWAKE = Native.UFFDIO_COPY_MODE_DONTWAKE();
    public static final long COPY_MODE_WP = Native.UFFDIO_COPY_MODE_WP();
    public static final long ZEROPAGE_MODE_DONTWAKE = Native.UFFDIO_ZEROPAGE_MODE_DONTWAKE();
    public static final long WRITEPROTECT_MODE_WP = Native.UFFDIO_WRITEPROTECT_MODE_WP();

    public static final int EVENT_PAGEFAULT = Native.UFFD_EVENT_PAGEFAULT();
    public static final int EVENT_FORK = Native.UFFD_EVENT_FORK();
    public static final int EVENT_REMAP = Native.UFFD_EVENT_REMAP();
    public static final int EVENT_REMOVE = Native.UFFD_EVENT_REMOVE();
    public static final int EVENT_UNMAP = Native.UFFD_EVENT_UNMAP();
    public static final long PAGEFAULT_FLAG_WRITE = Native.UFFD_PAGEFAULT_FLAG_WRITE();
    public static final long PAGEFAULT_FLAG_WP = Native.UFFD_PAGEFAULT_FLAG_WP();

    /** Every UFFD_FEATURE_* bit this tool knows, by name, in bit order. */
    public static final Map<String, Long> FEATURES = java.util.Collections.unmodifiableMap(features());

    public static final long FEATURE_EVENT_FORK = Native.UFFD_FEATURE_EVENT_FORK();
    public static final long FEATURE_EVENT_REMAP = Native.UFFD_FEATURE_EVENT_REMAP();
    public static final long FEATURE_EVENT_REMOVE = Native.UFFD_FEATURE_EVENT_REMOVE();
    public static final long FEATURE_EVENT_UNMAP = Native.UFFD_FEATURE_EVENT_UNMAP();
    public static final long FEATURE_THREAD_ID = Native.UFFD_FEATURE_THREAD_ID();
    public static final long FEATURE_PAGEFAULT_FLAG_WP = Native.UFFD_FEATURE_PAGEFAULT_FLAG_WP();
    public static final long FEATURE_WP_UNPOPULATED = Native.UFFD_FEATURE_WP_UNPOPULATED();
    public static final long FEATURE_WP_ASYNC = Native.UFFD_FEATURE_WP_ASYNC();
    public static final long FEATURE_MOVE = Native.UFFD_FEATURE_MOVE();
    public static final long FEATURE_EXACT_ADDRESS = Native.UFFD_FEATURE_EXACT_ADDRESS();

    /** Every _UFFDIO_* ioctl bit, by name, as UFFDIO_API and UFFDIO_REGISTER report them. */
    public static final Map<String, Long> IOCTLS = java.util.Collections.unmodifiableMap(ioctls());

    private static final int UFFD_API = (int) Native.UFFD_API();
    private static final long MSG_SIZE = dev.lazypages.ffm.gen.uffd_msg.sizeof();

    /** Per-thread scratch for the ioctl argument structs (64 bytes is larger than any of them). */
    private static final ThreadLocal<MemorySegment> SCRATCH =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(64, 8));

    private final int fd;
    private volatile boolean closed;

    private Userfaultfd(int fd) {
        this.fd = fd;
    }

    private static java.util.LinkedHashMap<String, Long> features() {
        var m = new java.util.LinkedHashMap<String, Long>();
        m.put("PAGEFAULT_FLAG_WP", (long) Native.UFFD_FEATURE_PAGEFAULT_FLAG_WP());
        m.put("EVENT_FORK", (long) Native.UFFD_FEATURE_EVENT_FORK());
        m.put("EVENT_REMAP", (long) Native.UFFD_FEATURE_EVENT_REMAP());
        m.put("EVENT_REMOVE", (long) Native.UFFD_FEATURE_EVENT_REMOVE());
        m.put("MISSING_HUGETLBFS", (long) Native.UFFD_FEATURE_MISSING_HUGETLBFS());
        m.put("MISSING_SHMEM", (long) Native.UFFD_FEATURE_MISSING_SHMEM());
        m.put("EVENT_UNMAP", (long) Native.UFFD_FEATURE_EVENT_UNMAP());
        m.put("SIGBUS", (long) Native.UFFD_FEATURE_SIGBUS());
        m.put("THREAD_ID", (long) Native.UFFD_FEATURE_THREAD_ID());
        m.put("MINOR_HUGETLBFS", (long) Native.UFFD_FEATURE_MINOR_HUGETLBFS());
        m.put("MINOR_SHMEM", (long) Native.UFFD_FEATURE_MINOR_SHMEM());
        m.put("EXACT_ADDRESS", (long) Native.UFFD_FEATURE_EXACT_ADDRESS());
        m.put("WP_HUGETLBFS_SHMEM", (long) Native.UFFD_FEATURE_WP_HUGETLBFS_SHMEM());
        m.put("WP_UNPOPULATED", (long) Native.UFFD_FEATURE_WP_UNPOPULATED());
        m.put("POISON", (long) Native.UFFD_FEATURE_POISON());
        m.put("WP_ASYNC", (long) Native.UFFD_FEATURE_WP_ASYNC());
        m.put("MOVE", (long) Native.UFFD_FEATURE_MOVE());
        return m;
    }

    private static java.util.LinkedHashMap<String, Long> ioctls() {
        var m = new java.util.LinkedHashMap<String, Long>();
        m.put("REGISTER", 1L << Native._UFFDIO_REGISTER());
        m.put("UNREGISTER", 1L << Native._UFFDIO_UNREGISTER());
        m.put("WAKE", 1L << Native._UFFDIO_WAKE());
        m.put("COPY", 1L << Native._UFFDIO_COPY());
        m.put("ZEROPAGE", 1L << Native._UFFDIO_ZEROPAGE());
        m.put("MOVE", 1L << Native._UFFDIO_MOVE());
        m.put("WRITEPROTECT", 1L << Native._UFFDIO_WRITEPROTECT());
        m.put("CONTINUE", 1L << Native._UFFDIO_CONTINUE());
        m.put("POISON", 1L << Native._UFFDIO_POISON());
        m.put("API", 1L << Native._UFFDIO_API());
        return m;
    }

    /** Names of the bits set in {@code bits}, from {@code names}; unknown bits as {@code bit N}. */
    public static List<String> decode(long bits, Map<String, Long> names) {
        List<String> out = new ArrayList<>();
        long known = 0;
        for (var e : names.entrySet()) {
            if ((bits & e.getValue()) != 0) {
                out.add(e.getKey());
            }
            known |= e.getValue();
        }
        for (int b = 0; b < 64; b++) {
            if ((bits & ~known & (1L << b)) != 0) {
                out.add("bit " + b);
            }
        }
        return out;
    }

    /**
     * A new userfaultfd through the userfaultfd(2) system call, close-on-exec, optionally
     * non-blocking, for this process's own memory. The fd is not handshaken yet: call {@link #api}.
     */
    public static Userfaultfd open(boolean nonBlocking) {
        int flags = Posix.O_CLOEXEC | (nonBlocking ? Posix.O_NONBLOCK : 0);
        long fd = Libc.syscall(Native.SYS_userfaultfd(), flags, 0, 0, 0, 0, 0);
        if (fd < 0) {
            throw new SyscallException("userfaultfd(flags=0x" + Integer.toHexString(flags) + ")", Libc.errno());
        }
        return new Userfaultfd((int) fd);
    }

    /** A new userfaultfd through /dev/userfaultfd (USERFAULTFD_IOC_NEW), as unprivileged users may get one. */
    public static Userfaultfd openDevice(boolean nonBlocking) {
        int dev = Posix.open("/dev/userfaultfd", Posix.O_RDWR, 0);
        try {
            int flags = Posix.O_CLOEXEC | (nonBlocking ? Posix.O_NONBLOCK : 0);
            int fd = Libc.ioctl(dev, Ioctl.USERFAULTFD_IOC_NEW, flags);
            if (fd < 0) {
                throw new SyscallException("ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)", Libc.errno());
            }
            return new Userfaultfd(fd);
        } finally {
            Posix.closeQuietly(dev);
        }
    }

    /** Takes ownership of a userfaultfd that came from elsewhere (pidfd_getfd, a UFFD_EVENT_FORK message). */
    public static Userfaultfd adopt(int fd) {
        return new Userfaultfd(fd);
    }

    /** What UFFDIO_API answered: the features granted and the ioctls allowed on the fd. */
    public record Api(long features, long ioctls) {
        public boolean has(long feature) {
            return (features & feature) == feature;
        }
    }

    /** UFFDIO_API with the requested features (which must all be supported, or EINVAL). */
    public Api api(long features) {
        MemorySegment s = SCRATCH.get();
        s.fill((byte) 0);
        uffdio_api.api(s, UFFD_API);
        uffdio_api.features(s, features);
        if (Libc.ioctl(fd, Ioctl.UFFDIO_API, s.address()) < 0) {
            throw new SyscallException("ioctl(uffd=" + fd + ", UFFDIO_API, features=" + decode(features, FEATURES) + ")",
                    Libc.errno());
        }
        return new Api(uffdio_api.features(s), uffdio_api.ioctls(s));
    }

    /** UFFDIO_REGISTER; returns the ioctls allowed on the range. */
    public long register(long start, long length, long mode) {
        MemorySegment s = SCRATCH.get();
        s.fill((byte) 0);
        MemorySegment range = uffdio_register.range(s);
        uffdio_range.start(range, start);
        uffdio_range.len(range, length);
        uffdio_register.mode(s, mode);
        if (Libc.ioctl(fd, Ioctl.UFFDIO_REGISTER, s.address()) < 0) {
            throw new SyscallException("ioctl(uffd=" + fd + ", UFFDIO_REGISTER, start=0x" + Long.toHexString(start)
                    + ", len=" + length + ", mode=" + mode + ")", Libc.errno());
        }
        return uffdio_register.ioctls(s);
    }

    /** UFFDIO_UNREGISTER */
    public void unregister(long start, long length) {
        rangeIoctl(Ioctl.UFFDIO_UNREGISTER, "UFFDIO_UNREGISTER", start, length);
    }

    /** UFFDIO_WAKE: wake threads waiting on faults in the range. */
    public void wake(long start, long length) {
        rangeIoctl(Ioctl.UFFDIO_WAKE, "UFFDIO_WAKE", start, length);
    }

    private void rangeIoctl(long request, String name, long start, long length) {
        MemorySegment s = SCRATCH.get();
        uffdio_range.start(s, start);
        uffdio_range.len(s, length);
        if (Libc.ioctl(fd, request, s.address()) < 0) {
            throw new SyscallException("ioctl(uffd=" + fd + ", " + name + ", start=0x" + Long.toHexString(start)
                    + ", len=" + length + ")", Libc.errno());
        }
    }

    /**
     * UFFDIO_COPY of {@code length} bytes from local address {@code src} to {@code dst}.
     * Returns the bytes copied, or {@link #EEXIST}, {@link #EAGAIN}, {@link #ENOENT},
     * {@link #ESRCH} (negative); any other failure throws. A copy that stops part way (the
     * kernel says EAGAIN then, with the bytes it did copy: typically the next page was already
     * present) returns those bytes, fewer than {@code length}: the caller goes on from there,
     * and a copy whose first page fails returns that page's error.
     */
    public long copy(long dst, long src, long length, long mode) {
        MemorySegment s = SCRATCH.get();
        uffdio_copy.dst(s, dst);
        uffdio_copy.src(s, src);
        uffdio_copy.len(s, length);
        uffdio_copy.mode(s, mode);
        uffdio_copy.copy(s, 0);
        if (Libc.ioctl(fd, Ioctl.UFFDIO_COPY, s.address()) < 0) {
            int errno = Libc.errno();
            long partial = uffdio_copy.copy(s);
            if (errno == Errno.EAGAIN && partial > 0 && partial < length) {
                return partial;
            }
            return expected(errno, partial, "UFFDIO_COPY", dst, length);
        }
        return uffdio_copy.copy(s);
    }

    /** UFFDIO_COPY from a page buffer at {@code srcOffset}. */
    public long copy(long dst, PageBuffer src, long srcOffset, long length, long mode) {
        if (srcOffset < 0 || srcOffset + length > src.byteSize()) {
            throw new IndexOutOfBoundsException("copy of " + length + " bytes at " + srcOffset + " from a buffer of " + src.byteSize());
        }
        return copy(dst, src.address() + srcOffset, length, mode);
    }

    /** UFFDIO_ZEROPAGE: map the zero page over the range. Same results as {@link #copy}. */
    public long zeropage(long dst, long length, long mode) {
        MemorySegment s = SCRATCH.get();
        MemorySegment range = uffdio_zeropage.range(s);
        uffdio_range.start(range, dst);
        uffdio_range.len(range, length);
        uffdio_zeropage.mode(s, mode);
        uffdio_zeropage.zeropage(s, 0);
        if (Libc.ioctl(fd, Ioctl.UFFDIO_ZEROPAGE, s.address()) < 0) {
            return expected(Libc.errno(), uffdio_zeropage.zeropage(s), "UFFDIO_ZEROPAGE", dst, length);
        }
        return uffdio_zeropage.zeropage(s);
    }

    /** UFFDIO_MOVE: move pages from {@code src} to {@code dst} (both registered in this mm). */
    public long move(long dst, long src, long length, long mode) {
        MemorySegment s = SCRATCH.get();
        uffdio_move.dst(s, dst);
        uffdio_move.src(s, src);
        uffdio_move.len(s, length);
        uffdio_move.mode(s, mode);
        uffdio_move.move(s, 0);
        if (Libc.ioctl(fd, Ioctl.UFFDIO_MOVE, s.address()) < 0) {
            return expected(Libc.errno(), uffdio_move.move(s), "UFFDIO_MOVE", dst, length);
        }
        return uffdio_move.move(s);
    }

    private long expected(int errno, long partial, String name, long dst, long length) {
        if (errno == Errno.EEXIST || errno == Errno.EAGAIN || errno == Errno.ENOENT || errno == Errno.ESRCH) {
            return -errno;
        }
        throw new SyscallException("ioctl(uffd=" + fd + ", " + name + ", dst=0x" + Long.toHexString(dst) + ", len=" + length
                + (partial != 0 ? ", partial=" + partial : "") + ")", errno);
    }

    /** UFFDIO_WRITEPROTECT: protect ({@code protect=true}) or unprotect the range. */
    public void writeProtect(long start, long length, boolean protect, boolean dontWake) {
        MemorySegment s = SCRATCH.get();
        MemorySegment range = uffdio_writeprotect.range(s);
        uffdio_range.start(range, start);
        uffdio_range.len(range, length);
        long mode = (protect ? WRITEPROTECT_MODE_WP : 0) | (dontWake ? Native.UFFDIO_WRITEPROTECT_MODE_DONTWAKE() : 0);
        uffdio_writeprotect.mode(s, mode);
        if (Libc.ioctl(fd, Ioctl.UFFDIO_WRITEPROTECT, s.address()) < 0) {
            throw new SyscallException("ioctl(uffd=" + fd + ", UFFDIO_WRITEPROTECT, start=0x" + Long.toHexString(start)
                    + ", len=" + length + ", wp=" + protect + ")", Libc.errno());
        }
    }

    /**
     * Reads pending messages into {@code into}; returns how many (0 when none are pending on a
     * non-blocking fd). Blocks on a blocking fd until at least one arrives.
     */
    public int read(Messages into) {
        long n = Posix.read(fd, into.segment);
        if (n < 0) {
            return 0;
        }
        into.count = (int) (n / MSG_SIZE);
        return into.count;
    }

    /** Waits up to {@code timeoutMillis} for a message; true when one is readable. */
    public boolean await(int timeoutMillis) {
        return (Posix.pollOne(fd, Posix.POLLIN, timeoutMillis) & Posix.POLLIN) != 0;
    }

    /** The file descriptor, e.g. to register with an event loop. */
    public int fd() {
        return fd;
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            Posix.close(fd);
        }
    }

    /**
     * A reusable buffer of {@code struct uffd_msg}: read into it with {@link Userfaultfd#read},
     * then look at message {@code i} with the accessors. Not thread-safe; one per reader.
     */
    public static final class Messages {
        private static final long EVENT = dev.lazypages.ffm.gen.uffd_msg.event$offset();
        private static final long ARG = dev.lazypages.ffm.gen.uffd_msg.arg$offset();
        private static final long PF_FLAGS = ARG + dev.lazypages.ffm.gen.uffd_msg.arg.pagefault.flags$offset();
        private static final long PF_ADDRESS = ARG + dev.lazypages.ffm.gen.uffd_msg.arg.pagefault.address$offset();
        private static final long PF_PTID = ARG + dev.lazypages.ffm.gen.uffd_msg.arg.pagefault.feat$offset();
        private static final long FORK_UFD = ARG + dev.lazypages.ffm.gen.uffd_msg.arg.fork.ufd$offset();
        private static final long REMAP_FROM = ARG + dev.lazypages.ffm.gen.uffd_msg.arg.remap.from$offset();
        private static final long REMAP_TO = ARG + dev.lazypages.ffm.gen.uffd_msg.arg.remap.to$offset();
        private static final long REMAP_LEN = ARG + dev.lazypages.ffm.gen.uffd_msg.arg.remap.len$offset();
        private static final long REMOVE_START = ARG + dev.lazypages.ffm.gen.uffd_msg.arg.remove.start$offset();
        private static final long REMOVE_END = ARG + dev.lazypages.ffm.gen.uffd_msg.arg.remove.end$offset();

        private final MemorySegment segment;
        private int count;

        public Messages(Arena arena, int capacity) {
            this.segment = arena.allocate(MSG_SIZE * capacity, 8);
        }

        public int count() {
            return count;
        }

        private long base(int i) {
            return i * MSG_SIZE;
        }

        /** UFFD_EVENT_* */
        public int event(int i) {
            return segment.get(java.lang.foreign.ValueLayout.JAVA_BYTE, base(i) + EVENT) & 0xff;
        }

        /** Page fault: the faulting address (page aligned unless EXACT_ADDRESS). */
        public long address(int i) {
            return segment.get(JAVA_LONG, base(i) + PF_ADDRESS);
        }

        /** Page fault: UFFD_PAGEFAULT_FLAG_* */
        public long flags(int i) {
            return segment.get(JAVA_LONG, base(i) + PF_FLAGS);
        }

        /** Page fault: the faulting thread (with FEATURE_THREAD_ID). */
        public int threadId(int i) {
            return segment.get(java.lang.foreign.ValueLayout.JAVA_INT, base(i) + PF_PTID);
        }

        /** Fork: the child's new userfaultfd. */
        public int forkFd(int i) {
            return segment.get(java.lang.foreign.ValueLayout.JAVA_INT, base(i) + FORK_UFD);
        }

        /** Remap: old address. */
        public long remapFrom(int i) {
            return segment.get(JAVA_LONG, base(i) + REMAP_FROM);
        }

        /** Remap: new address. */
        public long remapTo(int i) {
            return segment.get(JAVA_LONG, base(i) + REMAP_TO);
        }

        /** Remap: length. */
        public long remapLength(int i) {
            return segment.get(JAVA_LONG, base(i) + REMAP_LEN);
        }

        /** Remove or unmap: start of the range. */
        public long rangeStart(int i) {
            return segment.get(JAVA_LONG, base(i) + REMOVE_START);
        }

        /** Remove or unmap: end of the range. */
        public long rangeEnd(int i) {
            return segment.get(JAVA_LONG, base(i) + REMOVE_END);
        }
    }
}
