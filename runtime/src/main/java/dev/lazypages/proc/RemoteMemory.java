package dev.lazypages.proc;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.ProcessMemory;

/**
 * Small reads and writes of another process's memory through process_vm_readv/writev: the
 * arguments of injected system calls that take pointers, and checks in tests. The memory
 * must be mapped and, for writes, writable (use {@link RemoteScratch} for a place of our own).
 */
public final class RemoteMemory {
    private RemoteMemory() {
    }

    /** Writes {@code data} at {@code address} of {@code pid}. */
    public static void write(int pid, long address, byte[] data) {
        try (PageBuffer buf = PageBuffer.allocate(pagesFor(data.length))) {
            buf.copyFrom(data, 0, 0, data.length);
            long n = ProcessMemory.write(pid, address, buf, 0, data.length);
            if (n != data.length) {
                throw new ProcException("writing " + data.length + " bytes at 0x" + Long.toHexString(address) + " of pid " + pid
                        + ": only " + n + " written (the range runs into unmapped memory)");
            }
        }
    }

    /** Reads {@code length} bytes at {@code address} of {@code pid}. */
    public static byte[] read(int pid, long address, int length) {
        try (PageBuffer buf = PageBuffer.allocate(pagesFor(length))) {
            long n = ProcessMemory.read(pid, address, buf, 0, length);
            if (n != length) {
                throw new ProcException("reading " + length + " bytes at 0x" + Long.toHexString(address) + " of pid " + pid
                        + ": only " + n + " read (the range runs into unmapped memory)");
            }
            byte[] out = new byte[length];
            buf.copyTo(0, out, 0, length);
            return out;
        }
    }

    private static long pagesFor(int bytes) {
        long ps = Posix.pageSize();
        return Math.max(1, (bytes + ps - 1) / ps);
    }
}
