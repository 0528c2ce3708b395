package dev.lazypages.dump;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.testing.Stubs;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.function.Predicate;

/**
 * A workload started detached with stdout and stderr appended to a log file (so that a dump can
 * take it and its restored copy writes to the same log), or that restored copy. close SIGKILLs it.
 */
final class LogProcess implements AutoCloseable {
    static final Duration TIMEOUT = Duration.ofSeconds(20);
    private static final Predicate<String> VERIFY = l -> l.startsWith("VERIFY");

    final int pid;
    final Path log;

    LogProcess(int pid, Path log) {
        this.pid = pid;
        this.log = log;
    }

    static LogProcess spawn(Path dir, String name, String... args) {
        Path log = dir.resolve(name + ".log");
        String[] all = new String[args.length + 4];
        all[0] = "-c";
        all[1] = "exec \"$@\" >>'" + log + "' 2>&1";
        all[2] = "sh";
        all[3] = Stubs.path(name).toString();
        System.arraycopy(args, 0, all, 4, args.length);
        try {
            LogProcess p = new LogProcess(Features.spawnDetached("/bin/sh", all), log);
            Path want = Stubs.path(name).toRealPath();
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (true) {
                try {
                    if (Files.readSymbolicLink(Path.of("/proc/" + p.pid + "/exe")).equals(want)) {
                        return p;
                    }
                } catch (IOException e) {
                    fail("pid " + p.pid + " exited before running " + name);
                }
                if (System.nanoTime() - deadline > 0) {
                    p.close();
                    fail("pid " + p.pid + " did not exec " + name);
                }
                sleep(2);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** memtouch of {@code mib} MiB, {@code threads} workers, dirtying {@code rate} MiB/s, once it has beaten once. */
    static LogProcess memtouch(Path dir, int mib, int threads, int rate) {
        LogProcess p = spawn(dir, "memtouch", "--size-mib", Integer.toString(mib), "--threads", Integer.toString(threads),
                "--dirty-mib-per-sec", Integer.toString(rate));
        p.awaitLine(l -> l.startsWith("HEARTBEAT "), TIMEOUT);
        return p;
    }

    List<String> lines() {
        try {
            return Files.readAllLines(log, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            return List.of();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    long count(Predicate<String> p) {
        return lines().stream().filter(p).count();
    }

    String awaitLine(Predicate<String> wanted, Duration timeout) {
        return awaitCount(wanted, 1, timeout);
    }

    /** Waits until {@code n} lines match; returns the last. */
    String awaitCount(Predicate<String> wanted, long n, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            boolean alive = isAlive();
            List<String> m = lines().stream().filter(wanted).toList();
            if (m.size() >= n) {
                return m.getLast();
            }
            if (!alive) {
                fail("pid " + pid + " died (state " + Stubs.stateOf(pid) + "); log:\n" + tail());
            }
            if (System.nanoTime() - deadline > 0) {
                fail("pid " + pid + " printed no expected line within " + timeout + "; log:\n" + tail());
            }
            sleep(5);
        }
    }

    /** SIGUSR1, then the next VERIFY line must be VERIFY OK. */
    void assertVerifies() {
        long n = count(VERIFY);
        Posix.kill(pid, Posix.SIGUSR1);
        String v = awaitCount(VERIFY, n + 1, TIMEOUT);
        assertTrue(v.startsWith("VERIFY OK"), "pid " + pid + " failed its check:\n" + tail());
    }

    /** Waits for {@code more} further heartbeats. */
    void awaitBeats(int more) {
        long n = count(l -> l.startsWith("HEARTBEAT "));
        awaitCount(l -> l.startsWith("HEARTBEAT "), n + more, TIMEOUT);
    }

    boolean isAlive() {
        char s = Stubs.stateOf(pid);
        return s != 'Z' && s != 'X';
    }

    String tail() {
        List<String> l = lines();
        return String.join("\n", l.subList(Math.max(0, l.size() - 30), l.size()));
    }

    static void awaitDead(int pid) {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
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

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    @Override
    public void close() {
        try {
            Posix.kill(pid, Posix.SIGKILL);
        } catch (SyscallException e) {
            if (e.errno() != Errno.ESRCH) {
                throw e;
            }
        }
        awaitDead(pid);
    }
}
