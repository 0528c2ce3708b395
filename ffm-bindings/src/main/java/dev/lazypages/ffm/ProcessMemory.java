package dev.lazypages.ffm;

import dev.lazypages.ffm.gen.iovec;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Another process's memory through process_vm_readv(2) and process_vm_writev(2): no ptrace
 * stop needed, one system call for many ranges. A partial transfer (a range that ends in an
 * unmapped hole) is reported as the number of bytes moved, not as an error.
 */
public final class ProcessMemory {
    /** IOV_MAX: the most ranges one call takes. */
    public static final int MAX_RANGES = 1024;

    private ProcessMemory() {
    }

    /**
     * Reads {@code length} bytes at {@code remoteAddress} of {@code pid} into {@code dst} at
     * {@code dstOffset}. Returns the bytes read, which is less than {@code length} when the
     * range runs into memory the process does not have.
     */
    public static long read(int pid, long remoteAddress, PageBuffer dst, long dstOffset, long length) {
        return transfer(true, pid, new long[] {remoteAddress}, new long[] {length}, 1, dst, dstOffset);
    }

    /**
     * Reads {@code directDst.remaining()} bytes at {@code remoteAddress} of {@code pid} into the
     * direct buffer {@code directDst} from its position, with one process_vm_readv, and advances
     * the position by the bytes read. Returns the bytes read (short when the range runs into
     * memory the process does not have). Thread-safe: nothing is shared but the caller's buffer.
     */
    public static long read(int pid, long remoteAddress, java.nio.ByteBuffer directDst) {
        if (!directDst.isDirect()) {
            throw new IllegalArgumentException("process_vm_readv needs a direct buffer");
        }
        long want = directDst.remaining();
        if (want == 0) {
            return 0;
        }
        MemorySegment dst = MemorySegment.ofBuffer(directDst);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment local = iovec.allocate(arena);
            MemorySegment remote = iovec.allocate(arena);
            iovec.iov_base(local, dst);
            iovec.iov_len(local, want);
            iovec.iov_base(remote, MemorySegment.ofAddress(remoteAddress));
            iovec.iov_len(remote, want);
            long got = Libc.processVmReadv(pid, local, 1, remote, 1);
            if (got < 0) {
                throw new SyscallException("process_vm_readv(pid=" + pid + ", addr=0x" + Long.toHexString(remoteAddress)
                        + ", bytes=" + want + ")", Libc.errno());
            }
            directDst.position(directDst.position() + (int) got);
            return got;
        }
    }

    /** Writes {@code length} bytes from {@code src} at {@code srcOffset} to {@code remoteAddress} of {@code pid}. */
    public static long write(int pid, long remoteAddress, PageBuffer src, long srcOffset, long length) {
        return transfer(false, pid, new long[] {remoteAddress}, new long[] {length}, 1, src, srcOffset);
    }

    /**
     * Reads {@code count} remote ranges, given as addresses and lengths, one after another
     * into {@code dst} from {@code dstOffset}, in as few system calls as IOV_MAX allows.
     * Returns the total bytes read; it stops at the first short transfer.
     */
    public static long readv(int pid, long[] addresses, long[] lengths, int count, PageBuffer dst, long dstOffset) {
        return transfer(true, pid, addresses, lengths, count, dst, dstOffset);
    }

    /** The write counterpart of {@link #readv}. */
    public static long writev(int pid, long[] addresses, long[] lengths, int count, PageBuffer src, long srcOffset) {
        return transfer(false, pid, addresses, lengths, count, src, srcOffset);
    }

    private static long transfer(boolean read, int pid, long[] addresses, long[] lengths, int count,
                                 PageBuffer buf, long bufOffset) {
        long total = 0;
        for (int i = 0; i < count; i++) {
            total += lengths[i];
        }
        if (bufOffset < 0 || bufOffset + total > buf.byteSize()) {
            throw new IndexOutOfBoundsException("ranges of " + total + " bytes at buffer offset " + bufOffset
                    + " do not fit a buffer of " + buf.byteSize());
        }
        long moved = 0;
        try (Arena arena = Arena.ofConfined()) {
            int batch = Math.min(count, MAX_RANGES);
            MemorySegment local = iovec.allocateArray(1, arena);
            MemorySegment remote = iovec.allocateArray(batch, arena);
            for (int start = 0; start < count; start += batch) {
                int n = Math.min(batch, count - start);
                long want = 0;
                for (int i = 0; i < n; i++) {
                    MemorySegment r = iovec.asSlice(remote, i);
                    iovec.iov_base(r, MemorySegment.ofAddress(addresses[start + i]));
                    iovec.iov_len(r, lengths[start + i]);
                    want += lengths[start + i];
                }
                iovec.iov_base(local, buf.segment().asSlice(bufOffset + moved, want));
                iovec.iov_len(local, want);
                long got = read
                        ? Libc.processVmReadv(pid, local, 1, remote, n)
                        : Libc.processVmWritev(pid, local, 1, remote, n);
                if (got < 0) {
                    int e = Libc.errno();
                    if (e == Errno.EFAULT && moved > 0) {
                        return moved;
                    }
                    throw new SyscallException((read ? "process_vm_readv" : "process_vm_writev") + "(pid=" + pid
                            + ", ranges=" + n + ", first=0x" + Long.toHexString(addresses[start]) + ", bytes=" + want + ")", e);
                }
                moved += got;
                if (got < want) {
                    return moved;
                }
            }
        }
        return moved;
    }
}
