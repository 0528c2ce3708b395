package dev.lazypages.criu;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * One of the command lines (LazyDump, LazyPages) in a JVM of its own, on this test's class
 * path, the way `java -jar` would run it, with stdout and stderr in files. With a status FIFO
 * the child gets it as descriptor 3 ({@code 3>FIFO}, through /bin/sh), for {@code --status-fd 3}.
 */
final class ChildJvm implements AutoCloseable {
    final Process process;
    final Path out;
    final Path err;
    final String commandLine;

    private ChildJvm(Process process, Path out, Path err, String commandLine) {
        this.process = process;
        this.out = out;
        this.err = err;
        this.commandLine = commandLine;
    }

    static ChildJvm start(Path fifoFd3, String mainClass, String... args) throws IOException {
        return start(java.util.Map.of(), fifoFd3, mainClass, args);
    }

    /** As {@link #start(Path, String, String...)} with more environment variables (e.g. JAVA_TOOL_OPTIONS). */
    static ChildJvm start(java.util.Map<String, String> env, Path fifoFd3, String mainClass, String... args) throws IOException {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>();
        if (fifoFd3 != null) {
            cmd.addAll(List.of("/bin/sh", "-c", "exec \"$0\" \"$@\" 3>\"$LP_STATUS_FIFO\""));
        }
        cmd.addAll(List.of(java, "--enable-native-access=ALL-UNNAMED", "-cp", classPath(), mainClass));
        cmd.addAll(List.of(args));
        Path out = Files.createTempFile("child-out", ".txt");
        Path err = Files.createTempFile("child-err", ".txt");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile());
        if (fifoFd3 != null) {
            pb.environment().put("LP_STATUS_FIFO", fifoFd3.toString());
        }
        pb.environment().putAll(env);
        Process p = pb.start();
        p.getOutputStream().close();
        return new ChildJvm(p, out, err, mainClass + " " + String.join(" ", args));
    }

    private static String classPath;

    /**
     * This JVM's class path with every directory (target/classes of the modules) copied once to
     * a temporary snapshot: others may rebuild those directories while the tests run, and a
     * child JVM loads its classes later than this one did.
     */
    static synchronized String classPath() throws IOException {
        if (classPath == null) {
            Path snap = Files.createTempDirectory("lp-child-cp-");
            snap.toFile().deleteOnExit();
            List<String> out = new ArrayList<>();
            int i = 0;
            for (String e : System.getProperty("java.class.path").split(java.io.File.pathSeparator)) {
                Path p = Path.of(e);
                if (Files.isDirectory(p)) {
                    Path copy = snap.resolve(Integer.toString(i++));
                    try (var walk = Files.walk(p)) {
                        for (Path f : (Iterable<Path>) walk::iterator) {
                            Path t = copy.resolve(p.relativize(f).toString());
                            if (Files.isDirectory(f)) {
                                Files.createDirectories(t);
                            } else {
                                Files.copy(f, t);
                            }
                        }
                    }
                    out.add(copy.toString());
                } else {
                    out.add(e);
                }
            }
            classPath = String.join(java.io.File.pathSeparator, out);
        }
        return classPath;
    }

    String stdout() {
        return read(out);
    }

    String stderr() {
        return read(err);
    }

    private static String read(Path p) {
        try {
            return Files.readString(p, StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "(cannot read " + p + ": " + e + ")";
        }
    }

    /** Waits for it to exit; fails the test after {@code timeout}. */
    int await(Duration timeout) throws InterruptedException {
        if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
            fail(commandLine + " did not finish within " + timeout + "\n" + this);
        }
        return process.exitValue();
    }

    /** Polls stdout for a line matching {@code wanted}. */
    String awaitLine(Predicate<String> wanted, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            boolean aliveBefore = process.isAlive();
            for (String l : stdout().lines().toList()) {
                if (wanted.test(l)) {
                    return l;
                }
            }
            if (!aliveBefore) {
                fail(commandLine + " exited before printing the expected line\n" + this);
            }
            if (System.nanoTime() - deadline > 0) {
                fail(commandLine + ": no expected line within " + timeout + "\n" + this);
            }
            Thread.sleep(20);
        }
    }

    @Override
    public String toString() {
        return (process.isAlive() ? "running" : "exit " + process.exitValue()) + "\n--- stdout\n" + stdout()
                + "\n--- stderr\n" + stderr();
    }

    @Override
    public void close() throws IOException {
        if (process.isAlive()) {
            process.destroyForcibly();
            try {
                process.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        Files.deleteIfExists(out);
        Files.deleteIfExists(err);
    }
}
