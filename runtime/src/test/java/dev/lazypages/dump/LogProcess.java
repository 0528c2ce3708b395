package dev.lazypages.dump;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Stubs;
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
        return new LogProcess(Stubs.spawnToLog(log, true, TIMEOUT, name, args), log);
    }

    /** memtouch of {@code mib} MiB, {@code threads} workers, dirtying {@code rate} MiB/s, once it has beaten once. */
    static LogProcess memtouch(Path dir, int mib, int threads, int rate) {
        LogProcess p = spawn(dir, "memtouch", "--size-mib", Integer.toString(mib), "--threads", Integer.toString(threads),
                "--dirty-mib-per-sec", Integer.toString(rate));
        p.awaitLine(l -> l.startsWith("HEARTBEAT "), TIMEOUT);
        return p;
    }

    List<String> lines() {
        return Stubs.lines(log);
    }

    long count(Predicate<String> p) {
        return lines().stream().filter(p).count();
    }

    String awaitLine(Predicate<String> wanted, Duration timeout) {
        return awaitCount(wanted, 1, timeout);
    }

    /** Waits until {@code n} lines match; returns the last. */
    String awaitCount(Predicate<String> wanted, long n, Duration timeout) {
        return Stubs.awaitMatches(pid, log, "pid " + pid, wanted, n, timeout, 30).getLast();
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
        return Stubs.isAlive(pid);
    }

    String tail() {
        return Stubs.tail(log, 30);
    }

    static void awaitDead(int pid) {
        Stubs.awaitDead(pid, TIMEOUT);
    }

    @Override
    public void close() {
        Stubs.kill(pid, TIMEOUT);
    }
}
