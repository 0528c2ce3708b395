package dev.lazypages.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Stubs;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class PidfdTest {
    @Test
    void getfdCopiesTheTargetsStdoutWhichIsItsLogFile() throws Exception {
        try (Stubs.Running sleeper = Stubs.spawn("sleeper", "--mode", "pause")) {
            sleeper.awaitLine("READY pid=" + sleeper.pid(), Duration.ofSeconds(10));
            int pidfd = Pidfd.open(sleeper.pid());
            int fd = -1;
            try {
                fd = Pidfd.getfd(pidfd, 1);
                assertEquals(sleeper.log().toRealPath(), Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd)),
                        "our copy of its fd 1 is its log file");

                // The same open file description: what we write lands in its log, after its own lines.
                try (Arena arena = Arena.ofConfined()) {
                    MemorySegment text = arena.allocateFrom("written through the stolen fd\n");
                    Posix.writeFully(fd, text.asSlice(0, text.byteSize() - 1));
                }
                sleeper.awaitLine("written through the stolen fd"::equals, Duration.ofSeconds(5));
                assertEquals("READY pid=" + sleeper.pid(), sleeper.lines().get(0), "its own output was not overwritten");
            } finally {
                Posix.closeQuietly(fd);
                Posix.close(pidfd);
            }
        }
    }

    @Test
    void stealFdGivesAnFdOfThisProcess() throws Exception {
        try (Stubs.Running sleeper = Stubs.spawn("sleeper", "--mode", "pause")) {
            sleeper.awaitLine("READY pid=" + sleeper.pid(), Duration.ofSeconds(10));
            int fd = Pidfd.stealFd(sleeper.pid(), 0);
            try {
                assertEquals(Path.of("/dev/null"), Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd)),
                        "its stdin is /dev/null");
            } finally {
                Posix.close(fd);
            }
        }
    }

    @Test
    void pidfdOpenOfAPidThatDoesNotExistFailsWithEsrch() {
        int pid = 4_194_303;
        while (Posix.processExists(pid)) {
            pid--;
        }
        int missing = pid;
        SyscallException e = assertThrows(SyscallException.class, () -> Pidfd.open(missing));
        assertEquals(Errno.ESRCH, e.errno(), e.getMessage());
        assertTrue(e.getMessage().startsWith("pidfd_open(pid=" + missing + ")"), e.getMessage());
    }

    @Test
    void getfdOfAnFdTheTargetDoesNotHaveFailsWithEbadf() {
        try (Stubs.Running sleeper = Stubs.spawn("sleeper", "--mode", "pause")) {
            sleeper.awaitLine("READY pid=" + sleeper.pid(), Duration.ofSeconds(10));
            int pidfd = Pidfd.open(sleeper.pid());
            try {
                SyscallException e = assertThrows(SyscallException.class, () -> Pidfd.getfd(pidfd, 999));
                assertEquals(Errno.EBADF, e.errno(), e.getMessage());
            } finally {
                Posix.close(pidfd);
            }
        }
    }
}
