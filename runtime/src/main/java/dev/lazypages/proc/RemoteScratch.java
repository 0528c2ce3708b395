package dev.lazypages.proc;

import dev.lazypages.ffm.Posix;
import java.nio.charset.StandardCharsets;

/**
 * A private anonymous read-write mapping made in a frozen process by injected mmap, where
 * the arguments of later injected calls (paths, structs) are put. {@link #put} copies bytes
 * in and returns their address in the target; {@link #close} unmaps it with injected munmap.
 */
public final class RemoteScratch implements AutoCloseable {
    private static final int ALIGN = 16;

    private final RemoteSyscall syscalls;
    private final int pid;
    private final long address;
    private final long size;
    private long used;
    private boolean closed;

    private RemoteScratch(RemoteSyscall syscalls, int pid, long address, long size) {
        this.syscalls = syscalls;
        this.pid = pid;
        this.address = address;
        this.size = size;
    }

    /** Maps {@code size} bytes (rounded up to pages) in the process of {@code syscalls}. */
    public static RemoteScratch map(SeizedProcess process, RemoteSyscall syscalls, long size) {
        long page = Posix.pageSize();
        long bytes = (size + page - 1) / page * page;
        long addr = syscalls.mmap(0, bytes, RemoteSyscall.PROT_READ | RemoteSyscall.PROT_WRITE,
                RemoteSyscall.MAP_PRIVATE | RemoteSyscall.MAP_ANONYMOUS, -1, 0);
        return new RemoteScratch(syscalls, process.pid(), addr, bytes);
    }

    public long address() {
        return address;
    }

    public long size() {
        return size;
    }

    /** Copies {@code data} into the mapping and returns its address there (16-byte aligned). */
    public long put(byte[] data) {
        long at = (used + ALIGN - 1) & -ALIGN;
        if (at + data.length > size) {
            throw new IllegalStateException("scratch mapping of " + size + " bytes in pid " + pid + " has no room for "
                    + data.length + " more bytes (" + at + " used)");
        }
        RemoteMemory.write(pid, address + at, data);
        used = at + data.length;
        return address + at;
    }

    /** Puts a NUL-terminated string (e.g. a path) and returns its address. */
    public long putString(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        byte[] z = new byte[b.length + 1];
        System.arraycopy(b, 0, z, 0, b.length);
        return put(z);
    }

    /** Forgets everything put so far; the memory is reused. */
    public void reset() {
        used = 0;
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            syscalls.munmap(address, size);
        }
    }
}
