package dev.lazypages.restore;

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
 * A process of a restore test known by pid and log file: a workload spawned detached (its
 * stdout and stderr to the log, truncated with {@code >} or appended with {@code >>}), or the
 * restored copy writing to the same log. {@link #close} SIGKILLs it; a zombie counts as dead
 * (this container's init does not always reap).
 */
final class TestProcess implements AutoCloseable {
    static final Duration TIMEOUT = Duration.ofSeconds(10);

    private final int pid;
    private final Path log;

    TestProcess(int pid, Path log) {
        this.pid = pid;
        this.log = log;
    }

    /** Starts stub {@code name} detached; {@code append} opens the log O_APPEND (two copies can share it). */
    static TestProcess spawn(Path logDir, boolean append, String name, String... args) {
        Path log = logDir.resolve(name + ".log");
        String redirect = append ? ">>" : ">";
        String[] all = new String[args.length + 1];
        all[0] = Stubs.path(name).toString();
        System.arraycopy(args, 0, all, 1, args.length);
        try {
            int pid = Features.spawnDetached("/bin/sh", withScript(redirect, log, all));
            TestProcess p = new TestProcess(pid, log);
            p.awaitExec(Stubs.path(name));
            return p;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static String[] withScript(String redirect, Path log, String[] program) {
        // spawnDetached runs /bin/sh ARGS detached; we need it to exec the program with our redirect
        String[] out = new String[program.length + 3];
        out[0] = "-c";
        out[1] = "exec \"$@\" " + redirect + "'" + log + "' 2>&1";
        out[2] = "sh";
        System.arraycopy(program, 0, out, 3, program.length);
        return out;
    }

    private void awaitExec(Path program) throws IOException {
        Path want = program.toRealPath();
        long deadline = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        while (System.nanoTime() - deadline < 0) {
            try {
                if (Files.readSymbolicLink(Path.of("/proc/" + pid + "/exe")).equals(want)) {
                    return;
                }
            } catch (IOException e) {
                fail("pid " + pid + " exited before running " + program);
            }
            sleep(2);
        }
        fail("pid " + pid + " did not exec " + program);
    }

    int pid() {
        return pid;
    }

    Path log() {
        return log;
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

    /** Polls the log until a line matches; fails quoting the log's tail. */
    String awaitLine(Predicate<String> wanted, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            boolean alive = isAlive();
            for (String line : lines()) {
                if (wanted.test(line)) {
                    return line;
                }
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

    /** Number of lines matching now. */
    long count(Predicate<String> p) {
        return lines().stream().filter(p).count();
    }

    /** Waits until more lines match {@code p} than {@code before}. */
    void awaitMore(Predicate<String> p, long before, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (count(p) <= before) {
            if (!isAlive()) {
                fail("pid " + pid + " died; log:\n" + tail());
            }
            if (System.nanoTime() - deadline > 0) {
                fail("pid " + pid + ": no new matching line within " + timeout + "; log:\n" + tail());
            }
            sleep(5);
        }
    }

    boolean isAlive() {
        char s = Stubs.stateOf(pid);
        return s != 'Z' && s != 'X';
    }

    void signal(int sig) {
        Posix.kill(pid, sig);
    }

    String tail() {
        List<String> l = lines();
        return String.join("\n", l.subList(Math.max(0, l.size() - 30), l.size()));
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
        try {
            Posix.kill(pid, Posix.SIGKILL);
        } catch (SyscallException e) {
            if (e.errno() != Errno.ESRCH) {
                throw e;
            }
        }
        awaitDead(pid);
    }

    static void awaitDead(int pid) {
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

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }
}
