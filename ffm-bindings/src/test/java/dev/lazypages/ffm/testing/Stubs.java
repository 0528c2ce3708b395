package dev.lazypages.ffm.testing;

import static org.junit.jupiter.api.Assertions.fail;

import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Ptrace;
import dev.lazypages.ffm.SyscallException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Predicate;
import java.util.regex.MatchResult;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The C workloads of native-stubs (memtouch, sleeper, uapi-consts...) for tests: where they are,
 * and how to start one so that the JVM does not reap it.
 *
 * <p>The binaries are in the directory named by the system property {@value #DIR_PROPERTY},
 * which Surefire sets to {@code native-stubs/target/bin}.
 *
 * <p>Why detached: the JDK waits for every child it starts with {@link ProcessBuilder} on a
 * reaper thread, and a ptrace stop of a child is reported to any thread of the parent that
 * waits for it, so that reaper would swallow the stops a tracer thread waits for. {@link #spawn}
 * therefore starts the program through {@code /bin/sh -c 'setsid PROGRAM ARGS >LOG 2>&1
 * </dev/null & echo $!'}: the shell prints the pid and exits, the program is re-parented away
 * from the JVM, runs in its own session, and writes stdout and stderr to a log file that
 * {@link Running#awaitLine} polls. Always close a {@link Running} (try-with-resources or
 * {@code @AfterEach}): close SIGKILLs it.
 */
public final class Stubs {
    /** The system property naming the directory of the built stubs. */
    public static final String DIR_PROPERTY = "lazypages.stubs.dir";

    private static final Duration SHELL_TIMEOUT = Duration.ofSeconds(10);
    private static final Duration EXEC_TIMEOUT = Duration.ofSeconds(2);
    private static final Duration DEATH_TIMEOUT = Duration.ofSeconds(5);
    private static final AtomicInteger SEQUENCE = new AtomicInteger();
    private static volatile Path logDir;

    private Stubs() {
    }

    /** The directory of the built stubs; fails the test clearly when it is not configured or not there. */
    public static Path dir() {
        String d = System.getProperty(DIR_PROPERTY);
        if (d == null || d.isBlank()) {
            fail("system property " + DIR_PROPERTY + " is not set: run the tests through Maven (./lp mvn verify),"
                    + " or pass -D" + DIR_PROPERTY + "=<repo>/native-stubs/target/bin");
        }
        Path dir = Path.of(d);
        if (!Files.isDirectory(dir)) {
            fail(DIR_PROPERTY + "=" + dir + " is not a directory: build the C stubs first (./lp build,"
                    + " or ./lp mvn -pl native-stubs compile)");
        }
        return dir;
    }

    /** The path of stub {@code name}; fails the test clearly when it has not been built. */
    public static Path path(String name) {
        Path p = dir().resolve(name);
        if (!Files.isRegularFile(p) || !Files.isExecutable(p)) {
            fail("stub '" + name + "' is missing or not executable at " + p
                    + ": build the C stubs first (./lp build, or ./lp mvn -pl native-stubs compile)");
        }
        return p;
    }

    /**
     * Runs stub {@code name} to completion as an ordinary child (for programs that print and
     * exit, like uapi-consts) and returns its stdout; fails the test on a non-zero exit.
     */
    public static String run(String name, String... args) {
        List<String> cmd = new ArrayList<>();
        cmd.add(path(name).toString());
        cmd.addAll(List.of(args));
        try {
            Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            p.getOutputStream().close();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(SHELL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                p.destroyForcibly();
                fail(cmd + " did not finish within " + SHELL_TIMEOUT);
            }
            if (p.exitValue() != 0) {
                fail(cmd + " exited with " + p.exitValue() + "; stdout:\n" + out);
            }
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot run " + cmd, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while running " + cmd, e);
        }
    }

    /** Starts stub {@code name} detached from the JVM (see the class comment). */
    public static Running spawn(String name, String... args) {
        return spawn(path(name), args);
    }

    /** Starts any program detached from the JVM, e.g. {@code /bin/sleep} (see the class comment). */
    public static Running spawn(Path program, String... args) {
        Path log = newLogFile(program.getFileName().toString());
        List<String> cmd = new ArrayList<>();
        cmd.add("/bin/sh");
        cmd.add("-c");
        // $0 is the program, "$@" its arguments; the log path travels in the environment, unquoted nowhere.
        cmd.add("setsid \"$0\" \"$@\" >\"$LP_STUB_LOG\" 2>&1 </dev/null & echo $!");
        cmd.add(program.toString());
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().put("LP_STUB_LOG", log.toString());
        String out;
        try {
            Process sh = pb.start();
            sh.getOutputStream().close();
            out = new String(sh.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
            if (!sh.waitFor(SHELL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                sh.destroyForcibly();
                fail("the shell starting " + program + " did not exit within " + SHELL_TIMEOUT);
            }
            if (sh.exitValue() != 0 || !out.matches("\\d+")) {
                fail("the shell starting " + program + " exited with " + sh.exitValue() + " and printed '" + out + "'");
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start /bin/sh for " + program, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while starting " + program, e);
        }
        Running r = new Running(Integer.parseInt(out), program, log, String.join(" ", cmd.subList(3, cmd.size())));
        r.awaitExec();
        return r;
    }

    private static Path newLogFile(String program) {
        try {
            Path dir = logDir;
            if (dir == null) {
                synchronized (Stubs.class) {
                    dir = logDir;
                    if (dir == null) {
                        dir = Files.createTempDirectory("lazypages-stubs-");
                        dir.toFile().deleteOnExit();
                        logDir = dir;
                    }
                }
            }
            return dir.resolve(program + "-" + SEQUENCE.incrementAndGet() + ".log");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create a directory for stub logs", e);
        }
    }

    /** A detached program: its pid and its log. {@link #close} kills it. */
    public static final class Running implements AutoCloseable {
        private final int pid;
        private final Path program;
        private final Path log;
        private final String commandLine;
        private boolean closed;

        private Running(int pid, Path program, Path log, String commandLine) {
            this.pid = pid;
            this.program = program;
            this.log = log;
            this.commandLine = commandLine;
        }

        /** The program's pid (also the id of its main thread). */
        public int pid() {
            return pid;
        }

        /** The file its stdout and stderr go to. */
        public Path log() {
            return log;
        }

        /** The lines of the log so far (an unfinished last line included). */
        public List<String> lines() {
            return Stubs.lines(log);
        }

        /**
         * Polls the log until a line matches {@code wanted} and returns the first such line;
         * fails the test, quoting the log's tail, when none does within {@code timeout} or the
         * program dies first.
         */
        public String awaitLine(Predicate<String> wanted, Duration timeout) {
            return awaitMatches(pid, log, toString(), wanted, 1, timeout, 20).getFirst();
        }

        /** {@link #awaitLine(Predicate, Duration)} for a regular expression matching the whole line. */
        public MatchResult awaitLine(String regex, Duration timeout) {
            Pattern p = Pattern.compile(regex);
            Matcher m = p.matcher(awaitLine(line -> p.matcher(line).matches(), timeout));
            if (!m.matches()) {
                throw new AssertionError("unreachable: " + regex);
            }
            return m.toMatchResult();
        }

        /** The state letter of /proc/PID/stat ('R', 'S', 't' for a ptrace stop, 'Z'...), or 'X' when gone. */
        public char state() {
            return stateOf(pid);
        }

        /** Running or stopped; false once it is a zombie or gone. */
        public boolean isAlive() {
            return Stubs.isAlive(pid);
        }

        /** kill(2) with {@code signal}. */
        public void signal(int signal) {
            Posix.kill(pid, signal);
        }

        /** The last lines of the log, for failure messages. */
        public String tail() {
            return Stubs.tail(log, 20);
        }

        /** SIGKILLs the program, waits until it is dead (a zombie counts) and removes its log. */
        @Override
        public void close() {
            if (closed) {
                return;
            }
            closed = true;
            sigkill(pid);
            long deadline = System.nanoTime() + DEATH_TIMEOUT.toNanos();
            reapIfTraced();
            while (isAlive()) {
                if (System.nanoTime() - deadline > 0) {
                    fail(this + " is still alive " + DEATH_TIMEOUT + " after SIGKILL (state " + state() + ")");
                }
                sleep(2);
            }
            try {
                Files.deleteIfExists(log);
            } catch (IOException e) {
                // a left-over log in the temp directory is harmless
            }
        }

        /**
         * A tracee that dies stays a zombie until its tracer waits for it; when a test that
         * traced this process failed before detaching, this JVM is that tracer, so reap it here
         * (waitpid(__WALL | WNOHANG) answers ECHILD when it is not ours: nothing to do).
         */
        private void reapIfTraced() {
            long deadline = System.nanoTime() + DEATH_TIMEOUT.toNanos();
            while (state() != 'X' && tracedByUs() && System.nanoTime() - deadline < 0) {
                try {
                    Ptrace.waitpid(pid, Ptrace.WALL | Ptrace.WNOHANG); // a stop report, the exit, or nothing yet
                } catch (SyscallException e) {
                    return; // ECHILD: not ours after all
                }
                sleep(1);
            }
        }

        /** TracerPid in /proc/PID/status names a thread of this JVM. */
        private boolean tracedByUs() {
            try {
                for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
                    if (line.startsWith("TracerPid:")) {
                        int tracer = Integer.parseInt(line.substring(10).trim());
                        return tracer != 0 && Files.exists(Path.of("/proc/self/task/" + tracer));
                    }
                }
            } catch (IOException | NumberFormatException e) {
                return false;
            }
            return false;
        }

        /** Waits until the pid runs the program (not yet the shell or setsid), or has already exited. */
        private void awaitExec() {
            Path want;
            try {
                want = program.toRealPath();
            } catch (IOException e) {
                want = program;
            }
            Path exe = Path.of("/proc/" + pid + "/exe");
            long deadline = System.nanoTime() + EXEC_TIMEOUT.toNanos();
            Path seen = null;
            while (true) {
                try {
                    seen = Files.readSymbolicLink(exe);
                    if (seen.equals(want)) {
                        return;
                    }
                } catch (IOException e) {
                    return; // exited already (or became a zombie): nothing to wait for, the log tells why
                }
                if (System.nanoTime() - deadline > 0) {
                    close();
                    fail("pid " + pid + " runs " + seen + ", not " + want + " (did setsid fork?)");
                }
                sleep(1);
            }
        }

        @Override
        public String toString() {
            return "'" + commandLine + "' (pid " + pid + ")";
        }
    }

    /*
     * Helpers for processes known only by pid and log file: a stub started with
     * spawnToLog (its log can be shared, e.g. with a restored copy of it), or such a restored copy.
     */

    /**
     * Starts stub {@code name} with {@link Features#spawnDetached} through {@code /bin/sh -c
     * 'exec "$@" >LOG 2>&1'} ({@code >>} when {@code append}, so that two processes can share the
     * log) and waits up to {@code execTimeout} until it runs the stub; returns its pid. Fails the
     * test (after killing it) when it does not exec in time, or exits first.
     */
    public static int spawnToLog(Path log, boolean append, Duration execTimeout, String name, String... args) {
        Path program = path(name);
        String[] all = new String[args.length + 4];
        all[0] = "-c";
        all[1] = "exec \"$@\" " + (append ? ">>" : ">") + "'" + log + "' 2>&1";
        all[2] = "sh";
        all[3] = program.toString();
        System.arraycopy(args, 0, all, 4, args.length);
        try {
            int pid = Features.spawnDetached("/bin/sh", all);
            Path want = program.toRealPath();
            long deadline = System.nanoTime() + execTimeout.toNanos();
            while (true) {
                try {
                    if (Files.readSymbolicLink(Path.of("/proc/" + pid + "/exe")).equals(want)) {
                        return pid;
                    }
                } catch (IOException e) {
                    fail("pid " + pid + " exited before running " + name);
                }
                if (System.nanoTime() - deadline > 0) {
                    kill(pid, DEATH_TIMEOUT);
                    fail("pid " + pid + " did not exec " + name);
                }
                sleep(2);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The lines of {@code log} so far (an unfinished last line included); none while it does not exist. */
    public static List<String> lines(Path log) {
        try {
            return Files.readAllLines(log, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            return List.of();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + log, e);
        }
    }

    /** The last {@code n} lines of {@code log}, for failure messages. */
    public static String tail(Path log, int n) {
        List<String> l = lines(log);
        return String.join("\n", l.subList(Math.max(0, l.size() - n), l.size()));
    }

    /**
     * Polls {@code log} until at least {@code n} of its lines match {@code wanted} and returns all
     * the matching lines (in order); fails the test, naming {@code who} and quoting the last
     * {@code tailLines} lines of the log, when {@code pid} dies first or {@code timeout} passes.
     */
    public static List<String> awaitMatches(int pid, Path log, String who, Predicate<String> wanted, long n,
            Duration timeout, int tailLines) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            boolean aliveBefore = isAlive(pid); // read the log after this, so no last words are missed
            List<String> m = lines(log).stream().filter(wanted).toList();
            if (m.size() >= n) {
                return m;
            }
            if (!aliveBefore) {
                fail(who + " died (state " + stateOf(pid) + ") before printing the expected line; log:\n"
                        + tail(log, tailLines));
            }
            if (System.nanoTime() - deadline > 0) {
                fail(who + " printed no expected line within " + timeout + "; log:\n" + tail(log, tailLines));
            }
            sleep(5);
        }
    }

    /** Running or stopped; false once {@code pid} is a zombie or gone. */
    public static boolean isAlive(int pid) {
        char s = stateOf(pid);
        return s != 'Z' && s != 'X';
    }

    /** SIGKILLs {@code pid}; no such process is fine. */
    public static void sigkill(int pid) {
        try {
            Posix.kill(pid, Posix.SIGKILL);
        } catch (SyscallException e) {
            if (e.errno() != Errno.ESRCH) {
                throw e;
            }
        }
    }

    /** {@link #sigkill}, then {@link #awaitDead}. */
    public static void kill(int pid, Duration timeout) {
        sigkill(pid);
        awaitDead(pid, timeout);
    }

    /** Waits until {@code pid} is a zombie or gone (this container's init does not always reap); fails after {@code timeout}. */
    public static void awaitDead(int pid, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            char s = stateOf(pid);
            if (s == 'Z' || s == 'X') {
                return;
            }
            if (System.nanoTime() - deadline > 0) {
                fail("pid " + pid + " is still alive (state " + s + ")");
            }
            sleep(2);
        }
    }

    /** The state letter of /proc/PID/stat, 'X' when there is no such process. */
    public static char stateOf(int pid) {
        return stateOf(Path.of("/proc/" + pid + "/stat"));
    }

    /** The state letter of one thread, from /proc/PID/task/TID/stat; 'X' when gone. */
    public static char threadState(int pid, int tid) {
        return stateOf(Path.of("/proc/" + pid + "/task/" + tid + "/stat"));
    }

    private static char stateOf(Path stat) {
        try {
            String s = Files.readString(stat, StandardCharsets.UTF_8);
            // "pid (comm) S ...": comm may contain spaces and parentheses, the last ')' ends it
            return s.charAt(s.lastIndexOf(')') + 2);
        } catch (IOException e) {
            return 'X';
        }
    }

    /** Thread.sleep, rethrowing an interrupt as IllegalStateException (the interrupt flag kept). */
    public static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }
}
