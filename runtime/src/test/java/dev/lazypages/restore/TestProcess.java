package dev.lazypages.restore;

import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Stubs;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.function.Predicate;

/**
 * A process of a restore test known by pid and log file: a workload spawned detached (its
 * stdout and stderr to the log, truncated with {@code >} or appended with {@code >>}), or the
 * restored copy writing to the same log. {@link #close} SIGKILLs it; a zombie counts as dead
 * (this container's init does not always reap).
 */
final class TestProcess implements AutoCloseable {
    static final Duration TIMEOUT = Duration.ofSeconds(10);
    private static final Duration EXEC_AND_DEATH_TIMEOUT = Duration.ofSeconds(5);

    private final int pid;
    private final Path log;

    TestProcess(int pid, Path log) {
        this.pid = pid;
        this.log = log;
    }

    /** Starts stub {@code name} detached; {@code append} opens the log O_APPEND (two copies can share it). */
    static TestProcess spawn(Path logDir, boolean append, String name, String... args) {
        Path log = logDir.resolve(name + ".log");
        return new TestProcess(Stubs.spawnToLog(log, append, EXEC_AND_DEATH_TIMEOUT, name, args), log);
    }

    int pid() {
        return pid;
    }

    Path log() {
        return log;
    }

    List<String> lines() {
        return Stubs.lines(log);
    }

    /** Polls the log until a line matches; fails quoting the log's tail. */
    String awaitLine(Predicate<String> wanted, Duration timeout) {
        return Stubs.awaitMatches(pid, log, "pid " + pid, wanted, 1, timeout, 30).getFirst();
    }

    /** Number of lines matching now. */
    long count(Predicate<String> p) {
        return lines().stream().filter(p).count();
    }

    /** Waits until more lines match {@code p} than {@code before}. */
    void awaitMore(Predicate<String> p, long before, Duration timeout) {
        Stubs.awaitMatches(pid, log, "pid " + pid, p, before + 1, timeout, 30);
    }

    boolean isAlive() {
        return Stubs.isAlive(pid);
    }

    void signal(int sig) {
        Posix.kill(pid, sig);
    }

    String tail() {
        return Stubs.tail(log, 30);
    }

    /** The highest n of the "PREFIX n" lines (0 if none). */
    int last(String prefix) {
        int max = 0;
        for (String line : lines()) {
            if (line.startsWith(prefix + " ")) {
                try {
                    max = Math.max(max, Integer.parseInt(line.substring(prefix.length() + 1).strip()));
                } catch (NumberFormatException ignored) {
                    // a torn line
                }
            }
        }
        return max;
    }

    @Override
    public void close() {
        Stubs.kill(pid, EXEC_AND_DEATH_TIMEOUT);
    }

    static void awaitDead(int pid) {
        Stubs.awaitDead(pid, EXEC_AND_DEATH_TIMEOUT);
    }

    static void sleep(long ms) {
        Stubs.sleep(ms);
    }
}
