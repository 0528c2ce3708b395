package dev.lazypages.ffm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class SpliceTest {
    @Test
    void movesBytesFromOnePipeToAnotherAndSaysWhenItWouldBlock() {
        int[] a = Splice.pipe(Posix.O_NONBLOCK | Posix.O_CLOEXEC);
        int[] b = Splice.pipe(Posix.O_CLOEXEC);
        try (Arena arena = Arena.ofConfined()) {
            assertTrue(Splice.setPipeSize(a[1], 1 << 20) >= 1 << 20);
            assertEquals(-1, Splice.splice(a[0], b[1], 4096, Splice.F_NONBLOCK), "empty non-blocking pipe: EAGAIN");
            byte[] msg = "pages by reference".getBytes(StandardCharsets.UTF_8);
            Posix.writeFully(a[1], arena.allocateFrom(ValueLayout.JAVA_BYTE, msg));
            assertEquals(msg.length, Splice.splice(a[0], b[1], 1 << 20, Splice.F_MOVE));
            MemorySegment got = arena.allocate(64);
            long n = Posix.read(b[0], got);
            assertArrayEquals(msg, got.asSlice(0, n).toArray(ValueLayout.JAVA_BYTE));
            Posix.close(a[1]);
            assertEquals(0, Splice.splice(a[0], b[1], 4096, 0), "write end closed and pipe empty: end of input");
        } finally {
            Posix.closeQuietly(a[0]);
            Posix.closeQuietly(b[0]);
            Posix.closeQuietly(b[1]);
        }
    }
}
