package dev.lazypages.proc;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.ProcessMemory;
import dev.lazypages.ffm.SyscallException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Finds a {@code syscall} instruction (bytes 0f 05) in the executable memory of a process, for
 * {@link RemoteSyscall}. It looks in [vdso] first (small, always there), then libc's text,
 * then any other readable executable mapping; [vsyscall] is never used (it is emulated, not
 * real code). Any 0f 05 pair will do, even inside another instruction: only those two bytes run.
 */
public final class SyscallGadget {
    private static final int CHUNK_PAGES = 64;
    private static final long MAX_SCAN_BYTES = 64L << 20;

    private SyscallGadget() {
    }

    /** The address of a {@code syscall} instruction in {@code pid}; throws naming the process when there is none. */
    public static long find(int pid) {
        List<Vma> candidates = new ArrayList<>();
        for (Vma v : ProcMaps.read(pid)) {
            if (v.exec() && v.read() && v.kind() != Vma.Kind.VSYSCALL) {
                candidates.add(v);
            }
        }
        candidates.sort(Comparator.comparingInt(SyscallGadget::preference));
        for (Vma v : candidates) {
            long at = scan(pid, v);
            if (at >= 0) {
                return at;
            }
        }
        throw new ProcException("finding a syscall gadget in pid " + pid + ": no 0f 05 in its " + candidates.size()
                + " readable executable mappings");
    }

    private static int preference(Vma v) {
        if (v.kind() == Vma.Kind.VDSO) {
            return 0;
        }
        String file = v.filePath();
        return file.contains("/libc.so") || file.contains("/libc-") ? 1 : 2;
    }

    /** The first 0f 05 in {@code vma}, or -1. */
    static long scan(int pid, Vma vma) {
        long size = Math.min(vma.size(), MAX_SCAN_BYTES);
        try (PageBuffer buf = PageBuffer.allocate(CHUNK_PAGES)) {
            byte[] bytes = new byte[(int) buf.byteSize()];
            byte prev = 0;
            for (long off = 0; off < size; off += buf.byteSize()) {
                long want = Math.min(buf.byteSize(), size - off);
                long got;
                try {
                    got = ProcessMemory.read(pid, vma.start() + off, buf, 0, want);
                } catch (SyscallException e) {
                    return -1; // not readable after all (e.g. unmapped meanwhile): try the next mapping
                }
                buf.copyTo(0, bytes, 0, (int) got);
                for (int i = 0; i < got; i++) {
                    if (prev == 0x0f && bytes[i] == 0x05) {
                        return vma.start() + off + i - 1;
                    }
                    prev = bytes[i];
                }
                if (got < want) {
                    return -1;
                }
            }
        }
        return -1;
    }
}
