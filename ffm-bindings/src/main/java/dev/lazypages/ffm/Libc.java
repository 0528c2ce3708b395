package dev.lazypages.ffm;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import dev.lazypages.ffm.gen.Native;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/**
 * The thin hand-written layer between the generated bindings and the facade.
 *
 * <p>jextract cannot add {@code Linker.Option.captureCallState}, so every function that sets
 * errno is linked again here, once, from the generated {@code X$address()} and
 * {@code X$descriptor()}, with errno captured in the same call into a segment that belongs to
 * the calling thread (allocated once per thread, never per call). Variadic functions get an
 * explicit descriptor and {@code firstVariadicArg}. Each method returns the raw result; after a
 * failure the caller reads {@link #errno()} on the same thread and throws
 * {@link SyscallException}. Pointers to remote or local memory travel as {@code long}
 * addresses, which is exact for the variadic arguments of x86-64's calling convention.
 *
 * <p>Package-private: only the facade classes call it.
 */
final class Libc {
    private static final Linker LINKER = Linker.nativeLinker();
    private static final Linker.Option CAPTURE = Linker.Option.captureCallState("errno");
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO_HANDLE =
            CAPTURE_LAYOUT.varHandle(java.lang.foreign.MemoryLayout.PathElement.groupElement("errno"));

    /** One capture segment per thread, allocated on first use and freed with the thread. */
    private static final ThreadLocal<MemorySegment> CAPTURED =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(CAPTURE_LAYOUT));

    private static MethodHandle link(MemorySegment address, FunctionDescriptor descriptor) {
        return LINKER.downcallHandle(address, descriptor, CAPTURE);
    }

    private static MethodHandle linkVariadic(MemorySegment address, FunctionDescriptor descriptor, int firstVariadic) {
        return LINKER.downcallHandle(address, descriptor, CAPTURE, Linker.Option.firstVariadicArg(firstVariadic));
    }

    // long ptrace(enum __ptrace_request request, pid_t pid, void *addr, void *data): variadic after request
    private static final MethodHandle PTRACE = linkVariadic(Native.ptrace.address(),
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG), 1);
    // long syscall(long number, ...): six long arguments after the number
    private static final MethodHandle SYSCALL = linkVariadic(Native.syscall.address(),
            FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG), 1);
    // int ioctl(int fd, unsigned long request, ...): one pointer-sized argument
    private static final MethodHandle IOCTL = linkVariadic(Native.ioctl.address(),
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG), 2);
    // int open(const char *path, int flags, ...): mode_t after flags
    private static final MethodHandle OPEN = linkVariadic(Native.open.address(),
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT), 2);
    // int prctl(int option, ...): four unsigned long arguments
    private static final MethodHandle PRCTL = linkVariadic(Native.prctl.address(),
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG), 1);
    // int fcntl(int fd, int cmd, ...): one long argument
    private static final MethodHandle FCNTL = linkVariadic(Native.fcntl.address(),
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG), 2);

    private static final MethodHandle WAITPID = link(Native.waitpid$address(), Native.waitpid$descriptor());
    private static final MethodHandle WAITID = link(Native.waitid$address(), Native.waitid$descriptor());
    private static final MethodHandle PROCESS_VM_READV =
            link(Native.process_vm_readv$address(), Native.process_vm_readv$descriptor());
    private static final MethodHandle PROCESS_VM_WRITEV =
            link(Native.process_vm_writev$address(), Native.process_vm_writev$descriptor());
    private static final MethodHandle READ = link(Native.read$address(), Native.read$descriptor());
    private static final MethodHandle WRITE = link(Native.write$address(), Native.write$descriptor());
    private static final MethodHandle PREAD = link(Native.pread$address(), Native.pread$descriptor());
    private static final MethodHandle PWRITE = link(Native.pwrite$address(), Native.pwrite$descriptor());
    private static final MethodHandle CLOSE = link(Native.close$address(), Native.close$descriptor());
    private static final MethodHandle EXECVE = link(Native.execve$address(), Native.execve$descriptor());
    private static final MethodHandle POLL = link(Native.poll$address(), Native.poll$descriptor());
    private static final MethodHandle EVENTFD = link(Native.eventfd$address(), Native.eventfd$descriptor());
    private static final MethodHandle KILL = link(Native.kill$address(), Native.kill$descriptor());
    private static final MethodHandle TGKILL = link(Native.tgkill$address(), Native.tgkill$descriptor());
    private static final MethodHandle MMAP = link(Native.mmap$address(), Native.mmap$descriptor());
    private static final MethodHandle MUNMAP = link(Native.munmap$address(), Native.munmap$descriptor());
    private static final MethodHandle MADVISE = link(Native.madvise$address(), Native.madvise$descriptor());
    private static final MethodHandle MPROTECT = link(Native.mprotect$address(), Native.mprotect$descriptor());
    private static final MethodHandle UNAME = link(Native.uname$address(), Native.uname$descriptor());
    private static final MethodHandle LSEEK = link(Native.lseek$address(), Native.lseek$descriptor());

    private Libc() {
    }

    /** errno as captured by the last call this thread made through this class. */
    static int errno() {
        return (int) ERRNO_HANDLE.get(CAPTURED.get(), 0L);
    }

    private static MemorySegment capture() {
        return CAPTURED.get();
    }

    private static AssertionError unexpected(Throwable t) {
        return new AssertionError("native call failed to link or run", t);
    }

    static long ptrace(int request, int pid, long addr, long data) {
        try {
            MemorySegment c = capture();
            ERRNO_HANDLE.set(c, 0L, 0); // PEEK requests return data: errno tells failure apart
            return (long) PTRACE.invokeExact(c, request, pid, addr, data);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static long syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
        try {
            return (long) SYSCALL.invokeExact(capture(), nr, a1, a2, a3, a4, a5, a6);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int ioctl(int fd, long request, long arg) {
        try {
            return (int) IOCTL.invokeExact(capture(), fd, request, arg);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int open(MemorySegment path, int flags, int mode) {
        try {
            return (int) OPEN.invokeExact(capture(), path, flags, mode);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int prctl(int option, long a2, long a3, long a4, long a5) {
        try {
            return (int) PRCTL.invokeExact(capture(), option, a2, a3, a4, a5);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int fcntl(int fd, int cmd, long arg) {
        try {
            return (int) FCNTL.invokeExact(capture(), fd, cmd, arg);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int waitpid(int pid, MemorySegment status, int options) {
        try {
            return (int) WAITPID.invokeExact(capture(), pid, status, options);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int waitid(int idtype, int id, MemorySegment siginfo, int options) {
        try {
            return (int) WAITID.invokeExact(capture(), idtype, id, siginfo, options);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static long processVmReadv(int pid, MemorySegment local, long localCount, MemorySegment remote, long remoteCount) {
        try {
            return (long) PROCESS_VM_READV.invokeExact(capture(), pid, local, localCount, remote, remoteCount, 0L);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static long processVmWritev(int pid, MemorySegment local, long localCount, MemorySegment remote, long remoteCount) {
        try {
            return (long) PROCESS_VM_WRITEV.invokeExact(capture(), pid, local, localCount, remote, remoteCount, 0L);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static long read(int fd, MemorySegment buf, long count) {
        try {
            return (long) READ.invokeExact(capture(), fd, buf, count);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static long write(int fd, MemorySegment buf, long count) {
        try {
            return (long) WRITE.invokeExact(capture(), fd, buf, count);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static long pread(int fd, MemorySegment buf, long count, long offset) {
        try {
            return (long) PREAD.invokeExact(capture(), fd, buf, count, offset);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static long pwrite(int fd, MemorySegment buf, long count, long offset) {
        try {
            return (long) PWRITE.invokeExact(capture(), fd, buf, count, offset);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int execve(MemorySegment path, MemorySegment argv, MemorySegment envp) {
        try {
            return (int) EXECVE.invokeExact(capture(), path, argv, envp);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int close(int fd) {
        try {
            return (int) CLOSE.invokeExact(capture(), fd);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int poll(MemorySegment fds, long count, int timeoutMillis) {
        try {
            return (int) POLL.invokeExact(capture(), fds, count, timeoutMillis);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int eventfd(int initval, int flags) {
        try {
            return (int) EVENTFD.invokeExact(capture(), initval, flags);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int kill(int pid, int sig) {
        try {
            return (int) KILL.invokeExact(capture(), pid, sig);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int tgkill(int tgid, int tid, int sig) {
        try {
            return (int) TGKILL.invokeExact(capture(), tgid, tid, sig);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static MemorySegment mmap(long addr, long len, int prot, int flags, int fd, long offset) {
        try {
            return (MemorySegment) MMAP.invokeExact(capture(), MemorySegment.ofAddress(addr), len, prot, flags, fd, offset);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int munmap(MemorySegment addr, long len) {
        try {
            return (int) MUNMAP.invokeExact(capture(), addr, len);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int madvise(MemorySegment addr, long len, int advice) {
        try {
            return (int) MADVISE.invokeExact(capture(), addr, len, advice);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int mprotect(MemorySegment addr, long len, int prot) {
        try {
            return (int) MPROTECT.invokeExact(capture(), addr, len, prot);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static int uname(MemorySegment buf) {
        try {
            return (int) UNAME.invokeExact(capture(), buf);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static long lseek(int fd, long offset, int whence) {
        try {
            return (long) LSEEK.invokeExact(capture(), fd, offset, whence);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }
}
