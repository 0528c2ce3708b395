package dev.lazypages.perf;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.SyscallException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Predicate;

/**
 * One memtouch process (native-stubs) known by pid and log: started detached from this JVM
 * (so that the JDK's reaper never swallows a ptrace stop), its stdout and stderr in the log. A
 * restored copy goes on writing to the same log; {@link #restoredAs} follows it.
 */
final class Memtouch implements AutoCloseable {
    private final int pid;
    private final Path log;

    private Memtouch(int pid, Path log) {
        this.pid = pid;
        this.log = log;
    }

    static Memtouch start(Path program, Path log, long sizeMib, int threads, int dirtyMibPerSec) throws IOException {
        int pid = Features.spawnDetachedWithLog(log, program.toString(), "--size-mib", Long.toString(sizeMib),
                "--threads", Integer.toString(threads), "--dirty-mib-per-sec", Integer.toString(dirtyMibPerSec));
        return new Memtouch(pid, log);
    }

    /** The restored process {@code newPid}, writing to this one's log. */
    Memtouch restoredAs(int newPid) {
        return new Memtouch(newPid, log);
    }

    int pid() {
        return pid;
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

    /** The {@code n}th line matching {@code p} (1-based), once it is there. */
    String awaitNth(Predicate<String> p, long n, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            boolean alive = isAlive();
            List<String> hits = lines().stream().filter(p).toList();
            if (hits.size() >= n) {
                return hits.get((int) n - 1);
            }
            if (!alive) {
                throw new BenchFailure("memtouch pid " + pid + " died; log " + log + " ends: " + tail());
            }
            if (System.nanoTime() - deadline > 0) {
                throw new BenchFailure("memtouch pid " + pid + " printed no expected line within " + timeout + "; log "
                        + log + " ends: " + tail());
            }
            LockSupport.parkNanos(2_000_000);
        }
    }

    String awaitLine(Predicate<String> p, Duration timeout) {
        return awaitNth(p, 1, timeout);
    }

    /** SIGUSR1, then the VERIFY line it prints; throws unless it is VERIFY OK. */
    String verify(Duration timeout) {
        Predicate<String> v = l -> l.startsWith("VERIFY");
        long before = count(v);
        Posix.kill(pid, Posix.SIGUSR1);
        String line = awaitNth(v, before + 1, timeout);
        if (!line.startsWith("VERIFY OK")) {
            throw new BenchFailure("memtouch pid " + pid + " failed its check: " + line);
        }
        return line;
    }

    boolean isAlive() {
        char s = state(pid);
        return s != 'Z' && s != 'X';
    }

    /** Waits until the process is gone (a zombie counts). */
    void awaitDead(Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (isAlive()) {
            if (System.nanoTime() - deadline > 0) {
                throw new BenchFailure("pid " + pid + " is still alive after " + timeout);
            }
            LockSupport.parkNanos(1_000_000);
        }
    }

    private String tail() {
        List<String> l = lines();
        return String.join(" | ", l.subList(Math.max(0, l.size() - 5), l.size()));
    }

    /** SIGKILL if still alive (and still memtouch: the pid of a dead one may have been reused). */
    @Override
    public void close() {
        if (!isAlive() || !isMemtouch()) {
            return;
        }
        try {
            Posix.kill(pid, Posix.SIGKILL);
        } catch (SyscallException e) {
            return; // gone meanwhile
        }
        awaitDead(Duration.ofSeconds(5));
    }

    private boolean isMemtouch() {
        try {
            return Files.readSymbolicLink(Path.of("/proc/" + pid + "/exe")).getFileName().toString().equals("memtouch");
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    /** The state letter of /proc/PID/stat, 'X' when there is no such process. */
    static char state(int pid) {
        try {
            String s = Files.readString(Path.of("/proc/" + pid + "/stat"));
            return s.charAt(s.lastIndexOf(')') + 2);
        } catch (IOException | RuntimeException e) {
            return 'X';
        }
    }
}
