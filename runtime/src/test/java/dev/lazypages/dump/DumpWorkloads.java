package dev.lazypages.dump;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.cli.DumpCommand;
import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import picocli.CommandLine;

/** The processes the dump tests take apart, and small checks on them. */
final class DumpWorkloads {
    static final Duration TIMEOUT = Duration.ofSeconds(10);

    private DumpWorkloads() {
    }

    /** memtouch of {@code mib} MiB with {@code threads} workers dirtying {@code dirtyMibPerSec}, after its REGION line. */
    static Stubs.Running memtouch(int mib, int threads, int dirtyMibPerSec) {
        Requires.root();
        Requires.ptrace();
        Stubs.Running r = Stubs.spawn("memtouch", "--size-mib", Integer.toString(mib), "--threads", Integer.toString(threads),
                "--dirty-mib-per-sec", Integer.toString(dirtyMibPerSec));
        r.awaitLine("REGION addr=.*", TIMEOUT);
        return r;
    }

    /** The highest "HEARTBEAT n" so far. */
    static int heartbeats(Stubs.Running r) {
        return r.lines().stream().filter(l -> l.startsWith("HEARTBEAT ")).mapToInt(l -> Integer.parseInt(l.substring(10).strip()))
                .max().orElse(0);
    }

    /** memtouch beats on and verifies every page. */
    static void assertMemtouchHealthy(Stubs.Running memtouch) {
        int target = heartbeats(memtouch) + 1;
        memtouch.awaitLine(l -> l.startsWith("HEARTBEAT ") && Integer.parseInt(l.substring(10).strip()) >= target, TIMEOUT);
        memtouch.signal(Posix.SIGUSR1);
        String line = memtouch.awaitLine(l -> l.startsWith("VERIFY"), TIMEOUT);
        assertTrue(line.startsWith("VERIFY OK"), memtouch + " failed its check: " + line);
    }

    static String maps(int pid) {
        try {
            return Files.readString(Path.of("/proc/" + pid + "/maps"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** TracerPid of every thread is 0. */
    static void assertNotTraced(int pid) {
        try (var tasks = Files.list(Path.of("/proc/" + pid + "/task"))) {
            for (Path t : tasks.toList()) {
                String tracer = Files.readAllLines(t.resolve("status")).stream().filter(l -> l.startsWith("TracerPid:"))
                        .findFirst().orElseThrow().substring(10).strip();
                assertEquals("0", tracer, "thread " + t.getFileName() + " of pid " + pid + " is still traced");
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** What a run of the dump command printed. */
    record CliRun(int exitCode, String out, String err) {
    }

    /** Runs {@code dump ARGS} as the lazy-dump command line does (one-line errors, exit codes). */
    static CliRun dumpCommand(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new DumpCommand());
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        cl.setExecutionExceptionHandler((ex, line, parse) -> {
            line.getErr().println(line.getCommandName() + ": " + ex.getMessage());
            return ex instanceof IllegalArgumentException ? 4 : 1;
        });
        int code = cl.execute(args);
        return new CliRun(code, out.toString(), err.toString());
    }

    /**
     * sleeper --mode read whose stdin is a FIFO opened read-write (so the read blocks forever),
     * started detached like {@link Stubs#spawn}; close kills it.
     */
    static final class FifoSleeper implements AutoCloseable {
        final int pid;
        final Path dir;
        final Path log;

        FifoSleeper() throws IOException, InterruptedException {
            Requires.root();
            Requires.ptrace();
            dir = Files.createTempDirectory("lp-dump-fifo-");
            Path fifo = dir.resolve("stdin.fifo");
            log = dir.resolve("sleeper.log");
            run(new ProcessBuilder("mkfifo", fifo.toString()));
            ProcessBuilder pb = new ProcessBuilder("/bin/sh", "-c",
                    "setsid \"$0\" --mode read <>\"$LP_FIFO\" >\"$LP_LOG\" 2>&1 & echo $!", Stubs.path("sleeper").toString());
            pb.environment().put("LP_FIFO", fifo.toString());
            pb.environment().put("LP_LOG", log.toString());
            pid = Integer.parseInt(run(pb).strip());
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (!Files.exists(log) || !Files.readString(log).contains("READY")) {
                if (System.nanoTime() - deadline > 0) {
                    close();
                    throw new AssertionError("sleeper with a FIFO stdin did not get READY");
                }
                Thread.sleep(5);
            }
        }

        private static String run(ProcessBuilder pb) throws IOException, InterruptedException {
            Process p = pb.redirectErrorStream(true).start();
            p.getOutputStream().close();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertEquals(0, p.waitFor(), pb.command() + " failed: " + out);
            return out;
        }

        @Override
        public void close() throws IOException {
            try {
                Posix.kill(pid, Posix.SIGKILL);
            } catch (SyscallException e) {
                if (e.errno() != Errno.ESRCH) {
                    throw e;
                }
            }
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (Stubs.stateOf(pid) != 'X' && Stubs.stateOf(pid) != 'Z' && System.nanoTime() - deadline < 0) {
                Thread.onSpinWait();
            }
            for (Path p : List.of(dir.resolve("stdin.fifo"), log, dir)) {
                Files.deleteIfExists(p);
            }
        }
    }
}
