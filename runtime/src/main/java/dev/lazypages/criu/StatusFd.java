package dev.lazypages.criu;

import dev.lazypages.ffm.Posix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * CRIU's {@code --status-fd FD}: once the service is ready (here: the page server listens),
 * one byte is written to the inherited descriptor FD, which is then closed, so a script can
 * wait for it ({@code read -n1 <&FD}) instead of polling.
 */
public final class StatusFd {
    private StatusFd() {
    }

    /** Writes one byte ({@code '\0'}, as CRIU does) to {@code fd} and closes it; nothing for a negative fd. */
    public static void signal(int fd) {
        if (fd < 0) {
            return;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment b = a.allocate(1);
            b.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (byte) 0);
            Posix.writeFully(fd, b);
        } finally {
            Posix.closeQuietly(fd);
        }
    }
}
