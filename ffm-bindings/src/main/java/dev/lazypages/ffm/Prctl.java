package dev.lazypages.ffm;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import dev.lazypages.ffm.gen.Native;
import dev.lazypages.ffm.gen.prctl_mm_map;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * prctl(2), PR_SET_MM_MAP above all: it sets a process's code, data, heap, stack, argument and
 * environment bounds, auxv and exe link in one call. It acts on the calling process, so the
 * restorer runs it inside the target by syscall injection with a struct built by
 * {@link MmMap#encode}; {@link #setMmMap} is the same call on this process (used to probe it).
 */
public final class Prctl {
    public static final int PR_SET_MM = Native.PR_SET_MM();
    public static final int PR_SET_MM_MAP = Native.PR_SET_MM_MAP();
    public static final int PR_SET_MM_MAP_SIZE = Native.PR_SET_MM_MAP_SIZE();
    /** sizeof(struct prctl_mm_map) */
    public static final long MM_MAP_SIZE = prctl_mm_map.sizeof();

    private Prctl() {
    }

    /** The fields of {@code struct prctl_mm_map}; {@code auxv} is a list of (type, value) words. */
    public record MmMap(long startCode, long endCode, long startData, long endData, long startBrk, long brk,
                        long startStack, long argStart, long argEnd, long envStart, long envEnd,
                        long[] auxv, int exeFd) {

        /**
         * Writes the struct into {@code out} at 0 and the auxv words right after it, pointing
         * {@code auxv} at {@code auxvAddress} (where that copy will be in the target).
         * {@code out} must hold {@link #encodedSize()} bytes.
         */
        public void encode(PageBuffer out, long auxvAddress) {
            MemorySegment s = out.segment();
            s.asSlice(0, encodedSize()).fill((byte) 0);
            prctl_mm_map.start_code(s, startCode);
            prctl_mm_map.end_code(s, endCode);
            prctl_mm_map.start_data(s, startData);
            prctl_mm_map.end_data(s, endData);
            prctl_mm_map.start_brk(s, startBrk);
            prctl_mm_map.brk(s, brk);
            prctl_mm_map.start_stack(s, startStack);
            prctl_mm_map.arg_start(s, argStart);
            prctl_mm_map.arg_end(s, argEnd);
            prctl_mm_map.env_start(s, envStart);
            prctl_mm_map.env_end(s, envEnd);
            prctl_mm_map.auxv(s, MemorySegment.ofAddress(auxvAddress));
            prctl_mm_map.auxv_size(s, auxv.length * 8);
            prctl_mm_map.exe_fd(s, exeFd);
            MemorySegment.copy(auxv, 0, s, JAVA_LONG, MM_MAP_SIZE, auxv.length);
        }

        /** Bytes {@link #encode} writes: the struct then the auxv words. */
        public long encodedSize() {
            return MM_MAP_SIZE + 8L * auxv.length;
        }
    }

    /** prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE): the struct size the kernel expects. */
    public static int mmMapSize() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment size = arena.allocate(JAVA_INT);
            if (Libc.prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, size.address(), 0, 0) < 0) {
                throw new SyscallException("prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)", Libc.errno());
            }
            return size.get(JAVA_INT, 0);
        }
    }

    /** prctl(PR_SET_MM, PR_SET_MM_MAP) on this process. */
    public static void setMmMap(MmMap map) {
        try (Arena arena = Arena.ofConfined()) {
            PageBuffer buf = PageBuffer.allocate(arena, 1);
            long auxvAddress = buf.address() + MM_MAP_SIZE;
            map.encode(buf, auxvAddress);
            if (Libc.prctl(PR_SET_MM, PR_SET_MM_MAP, buf.address(), MM_MAP_SIZE, 0) < 0) {
                throw new SyscallException("prctl(PR_SET_MM, PR_SET_MM_MAP, exe_fd=" + map.exeFd() + ")", Libc.errno());
            }
        }
    }

    /** This process's auxiliary vector as (type, value) words, from /proc/self/auxv. */
    public static long[] selfAuxv() {
        int fd = Posix.openRead("/proc/self/auxv");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(4096, 8);
            long n = Posix.preadFully(fd, buf, 0);
            return buf.asSlice(0, n).toArray(ValueLayout.JAVA_LONG);
        } finally {
            Posix.closeQuietly(fd);
        }
    }
}
