package dev.lazypages.lazy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.restore.ImageLazyHandoff;
import dev.lazypages.restore.Restorer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * UFFD_EVENT_FORK end to end: the {@code forker} stub is dumped with its memory full of a known
 * pattern, restored lazily from the image, and told to fork (SIGUSR1) while most of its pages
 * are still missing; the child (served by a child server) and the parent both check every page.
 */
@Timeout(value = 3, unit = TimeUnit.MINUTES, threadMode = Timeout.ThreadMode.SEPARATE_THREAD) // backstop: never hang the build
class LazyForkTest {
    private static final Duration TIMEOUT = Duration.ofSeconds(20);
    private static final int SIZE_MIB = 64;

    @TempDir
    Path tmp;

    @BeforeEach
    void requirements() {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
    }

    /** Background off: every page of the pattern is missing in the parent at the fork, so all the child's come through its server. */
    @Test
    void forkEventServesTheChildWhosePagesWereMissingAtTheFork() throws Exception {
        Path img = dumpForker();
        Path log = tmp.resolve("forker.log");
        try (ImageLazyHandoff h = new ImageLazyHandoff(LazyPageServer.Options.defaults().withBackground(false))) {
            int pid = Restorer.restore(Restorer.Options.eager(img).withLazy(h)).pid();
            try {
                signalWhenPaused(pid, log);
                awaitLine(log, pid, "CHILD STATUS");
                List<String> lines = lines(log);
                assertTrue(lines.contains("CHILD OK pages=" + pages()), String.join("\n", lines));
                assertTrue(lines.contains("PARENT OK pages=" + pages()), String.join("\n", lines));
                assertTrue(lines.contains("CHILD STATUS 0"), String.join("\n", lines));
                awaitNoChildServer(); // background off: the exit probe (ESRCH) ended the child's server
                // a second fork, now that the parent has every pattern page: served too
                signalWhenPaused(pid, log);
                awaitCount(log, pid, "CHILD STATUS", 2);
                lines = lines(log);
                assertEquals(2, lines.stream().filter(l -> l.equals("CHILD OK pages=" + pages())).count(), String.join("\n", lines));
                assertEquals(2, lines.stream().filter(l -> l.equals("CHILD STATUS 0")).count(), String.join("\n", lines));
            } finally {
                kill(pid);
            }
        }
    }

    /** Background on (small chunks): the fork races the fill; the completion waits for the child and reports it. */
    @Test
    void forkEventDuringTheBackgroundFillCompletesWithTheChildServersStatistics() throws Exception {
        Path img = dumpForker();
        Path log = tmp.resolve("forker.log");
        try (ImageLazyHandoff h = new ImageLazyHandoff(LazyPageServer.Options.defaults().withBackgroundChunk(1, 1))) {
            int pid = Restorer.restore(Restorer.Options.eager(img).withLazy(h)).pid();
            try {
                signalWhenPaused(pid, log);
                awaitLine(log, pid, "CHILD STATUS");
                List<String> lines = lines(log);
                assertTrue(lines.contains("CHILD OK pages=" + pages()), String.join("\n", lines));
                assertTrue(lines.contains("PARENT OK pages=" + pages()), String.join("\n", lines));
                assertTrue(lines.contains("CHILD STATUS 0"), String.join("\n", lines));
                LazyStats stats;
                try {
                    stats = h.completion().get(60, TimeUnit.SECONDS);
                } catch (TimeoutException e) {
                    throw new AssertionError("the lazy restore did not complete within 60 s after the child exited; " + diagnose(pid), e);
                }
                System.out.println("lazy fork stats: " + stats);
                assertEquals(1, stats.forksServed(), stats.toString());
                assertEquals(0, stats.forksNotServed(), stats.toString());
                assertEquals(1, stats.children().size(), stats.toString());
                LazyStats child = stats.children().get(0);
                // the child checked every page and exited: its server served faults, then saw it gone
                assertTrue(child.faults() > 0 || child.pagesByBackground() > 0, child.toString());
                assertTrue(Posix.processExists(pid), "the parent went on");
            } finally {
                kill(pid);
            }
        }
    }

    /**
     * Sends SIGUSR1 once {@code forker} is blocked in pause(). Earlier, the signal can be lost: a
     * restored process resumes by re-executing the pause() it was dumped in (syscall restart), so a
     * SIGUSR1 that arrives between the restorer's detach and that re-entry is handled (the flag is
     * set) and then pause() blocks for good, since the flag is only checked before pause(). Under
     * CPU load that window is wide (the detached process waits for a CPU while we signal at once).
     * The same holds between "CHILD STATUS" and the loop's next pause(). Once the process sleeps in
     * pause(), a signal interrupts it and the loop sees the flag.
     */
    private static void signalWhenPaused(int pid, Path log) throws IOException {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (!inPause(pid)) {
            char s = Stubs.stateOf(pid);
            if (s == 'Z' || s == 'X' || System.nanoTime() - deadline > 0) {
                fail("pid " + pid + " never sat in pause() to be signalled; " + diagnose(pid) + "; log:\n" + String.join("\n", lines(log)));
            }
            sleep(2);
        }
        Posix.kill(pid, Posix.SIGUSR1);
    }

    /** Blocked in pause(): /proc/PID/syscall names syscall 34 only while the task sleeps in it ("running" otherwise). */
    private static boolean inPause(int pid) throws IOException {
        try {
            return Files.readString(Path.of("/proc/" + pid + "/syscall")).startsWith("34 ");
        } catch (NoSuchFileException e) {
            return false;
        }
    }

    /** State, wait channel, current syscall and pending signals of pid and its children, for failure messages. */
    private static String diagnose(int pid) {
        StringBuilder sb = new StringBuilder();
        List<String> pids = new java.util.ArrayList<>(List.of(Integer.toString(pid)));
        try {
            for (String c : Files.readString(Path.of("/proc/" + pid + "/task/" + pid + "/children")).trim().split("\\s+")) {
                if (!c.isEmpty()) {
                    pids.add(c);
                }
            }
        } catch (IOException e) {
            // gone
        }
        for (String p : pids) {
            sb.append("[pid ").append(p).append(" state ").append(Stubs.stateOf(Integer.parseInt(p)))
                    .append(" wchan ").append(read("/proc/" + p + "/wchan"))
                    .append(" syscall ").append(read("/proc/" + p + "/syscall").split(" ")[0]);
            for (String l : read("/proc/" + p + "/status").split("\n")) {
                if (l.startsWith("SigPnd") || l.startsWith("ShdPnd") || l.startsWith("SigBlk")) {
                    sb.append(' ').append(l.replace(":\t", "="));
                }
            }
            sb.append(']');
        }
        StringBuilder servers = new StringBuilder();
        Thread.getAllStackTraces().forEach((t, st) -> {
            if (t.getName().startsWith("lazy-")) {
                servers.append("\n  ").append(t.getName()).append(' ').append(t.getState())
                        .append(st.length > 0 ? " at " + st[0] : "");
            }
        });
        return sb + "; server threads:" + servers;
    }

    private static String read(String file) {
        try {
            return Files.readString(Path.of(file)).trim();
        } catch (IOException e) {
            return "?";
        }
    }

    private static void awaitNoChildServer() {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.getName().startsWith("lazy-faults-child"))) {
            if (System.nanoTime() - deadline > 0) {
                fail("the forked child exited but its server still runs");
            }
            sleep(10);
        }
    }

    private long pages() {
        return ((long) SIZE_MIB << 20) / Posix.pageSize();
    }

    private Path dumpForker() throws Exception {
        Path log = tmp.resolve("forker.log");
        Path img = tmp.resolve("img");
        int pid = Features.spawnDetached("/bin/sh", "-c", "exec \"$@\" >>'" + log + "' 2>&1", "sh",
                Stubs.path("forker").toString(), "--size-mib", Integer.toString(SIZE_MIB));
        try {
            awaitLine(log, pid, "READY");
            awaitSyscall(pid);
            Dumper.dump(pid, DumpOptions.of(img));
            awaitDead(pid);
        } finally {
            kill(pid);
        }
        return img;
    }

    /** Waits until the process sits in pause() (syscall 34), so the dump catches it there. */
    private static void awaitSyscall(int pid) throws IOException {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (!Files.readString(Path.of("/proc/" + pid + "/syscall")).startsWith("34 ")) {
            if (System.nanoTime() - deadline > 0) {
                fail("pid " + pid + " not in pause()");
            }
            sleep(5);
        }
    }

    private static List<String> lines(Path log) throws IOException {
        try {
            return Files.readAllLines(log, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            return List.of();
        }
    }

    private static void awaitLine(Path log, int pid, String prefix) throws IOException {
        awaitCount(log, pid, prefix, 1);
    }

    private static void awaitCount(Path log, int pid, String prefix, int n) throws IOException {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (lines(log).stream().filter(l -> l.startsWith(prefix)).count() < n) {
            char s = Stubs.stateOf(pid);
            if (s == 'Z' || s == 'X' || System.nanoTime() - deadline > 0) {
                fail("pid " + pid + " (state " + s + "): no " + n + " line(s) " + prefix + " within " + TIMEOUT.toSeconds() + " s; "
                        + diagnose(pid) + "; log:\n" + String.join("\n", lines(log)));
            }
            sleep(5);
        }
    }

    private static void kill(int pid) {
        try {
            Posix.kill(pid, Posix.SIGKILL);
        } catch (SyscallException e) {
            if (e.errno() != Errno.ESRCH) {
                throw e;
            }
        }
        awaitDead(pid);
    }

    private static void awaitDead(int pid) {
        long deadline = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        while (true) {
            char s = Stubs.stateOf(pid);
            if (s == 'Z' || s == 'X') {
                return;
            }
            if (System.nanoTime() - deadline > 0) {
                fail("pid " + pid + " is still alive (state " + s + ")");
            }
            sleep(2);
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }
}
