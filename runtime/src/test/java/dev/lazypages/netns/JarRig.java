package dev.lazypages.netns;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;

/**
 * What the migration ITs between network namespaces share, one per test class: a {@link Netns}
 * pair, a work directory, copies of the shaded jars, and the three kinds of processes a user
 * starts: {@code lazy-pages.jar serve} daemons ({@link Daemon}), memtouch ({@link Workload}) and
 * {@code lazy-dump.jar migrate} ({@link Migrate}), each in the namespace it is told. Every JVM it
 * starts gets {@code java.io.tmpdir} = {@link #jvmTmp()}, so that a test can check that nothing
 * was left there. {@link #close} kills what still runs and removes everything.
 */
final class JarRig implements AutoCloseable {
    static final String TOKEN = "netns-it-token";
    private static final Pattern SERVING = Pattern.compile("serving on ([0-9.]+):(\\d+) .*");
    private static final Pattern MIGRATED = Pattern.compile("migrated pid (\\d+) to \\S+ \\(pid (\\d+) there\\)");
    private static final Predicate<String> BEAT = l -> l.startsWith("HEARTBEAT ");
    private static final Predicate<String> VERIFY = l -> l.startsWith("VERIFY");

    /** Where a process runs: the source namespace (10.199.N.1) or the destination's (.2). */
    enum Side {
        SRC, DST;

        Side other() {
            return this == SRC ? DST : SRC;
        }
    }

    final Netns netns;
    private final Path work;
    private final Path jvmTmp;
    private final List<Daemon> daemons = new CopyOnWriteArrayList<>();
    private final List<Workload> workloads = new CopyOnWriteArrayList<>();
    private int sequence;

    private JarRig(Netns netns, Path work) throws IOException {
        this.netns = netns;
        this.work = work;
        this.jvmTmp = Files.createDirectories(work.resolve("jvm-tmp"));
    }

    /** Checks what the ITs need (failsafe's jars, root, ptrace, userfaultfd, namespaces) and creates the pair. */
    static JarRig create(String name) throws IOException {
        // an IT: failsafe runs it after package; a -Dtest pattern may also hand it to surefire, which has no jars
        Assumptions.assumeTrue(System.getProperty("lazypages.jar.dir") != null,
                name + " runs under failsafe (-Dit.test=" + name + "), where the jars exist");
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
        Netns n = Netns.create();
        try {
            JarRig r = new JarRig(n, Files.createTempDirectory("lp-" + name + "-"));
            for (String jar : new String[] {"lazy-pages.jar", "lazy-dump.jar"}) {
                // a copy: others may rebuild target/ while the tests run
                Files.copy(built(jar), r.work.resolve(jar));
            }
            return r;
        } catch (IOException | RuntimeException e) {
            n.close();
            throw e;
        }
    }

    /** The directory every JVM started here uses as java.io.tmpdir. */
    Path jvmTmp() {
        return jvmTmp;
    }

    Path work() {
        return work;
    }

    String namespace(Side s) {
        return s == Side.SRC ? netns.srcNamespace() : netns.dstNamespace();
    }

    String address(Side s) {
        return s == Side.SRC ? netns.srcAddress() : netns.dstAddress();
    }

    private List<String> in(Side s, List<String> command) {
        String[] c = command.toArray(String[]::new);
        return s == Side.SRC ? netns.inSrc(c) : netns.inDst(c);
    }

    private synchronized String next(String what) {
        return what + "-" + (++sequence);
    }

    private List<String> jvm(String jar, List<String> jvmOptions, String... args) {
        List<String> c = new ArrayList<>(List.of(java(), "-Djava.io.tmpdir=" + jvmTmp, "-XX:-UsePerfData"));
        c.addAll(jvmOptions);
        c.addAll(List.of("-jar", work.resolve(jar).toString()));
        c.addAll(List.of(args));
        return c;
    }

    // ---- the destination daemon

    /** {@code lazy-pages.jar serve} in {@code side}'s namespace, listening on its address, any port; waits until it serves. */
    Daemon serve(Side side, String... jvmOptions) throws IOException, InterruptedException {
        return serve(side, List.of(jvmOptions), List.of());
    }

    /** As {@link #serve(Side, String...)}, with {@code serveArgs} added to serve's command line. */
    Daemon serve(Side side, List<String> jvmOptions, List<String> serveArgs) throws IOException, InterruptedException {
        String name = next("serve");
        Path dir = Files.createDirectories(work.resolve(name));
        Path out = dir.resolve("serve.out");
        Path workDir = dir.resolve("work");
        Path reports = dir.resolve("reports");
        List<String> args = new ArrayList<>(List.of("serve", "--listen", address(side) + ":0", "--token", TOKEN, "--stub",
                Stubs.dir().toString(), "--work-dir", workDir.toString(), "--report-dir", reports.toString()));
        args.addAll(serveArgs);
        ProcessBuilder pb = new ProcessBuilder(in(side, jvm("lazy-pages.jar", jvmOptions, args.toArray(String[]::new))))
                .redirectErrorStream(true).redirectOutput(out.toFile());
        Process p = pb.start();
        p.getOutputStream().close();
        Daemon d = new Daemon(this, side, p, out, workDir, reports);
        daemons.add(d);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (true) {
            for (String l : d.lines()) {
                Matcher m = SERVING.matcher(l);
                if (m.matches()) {
                    assertEquals(address(side), m.group(1), l);
                    d.port = Integer.parseInt(m.group(2));
                    return d;
                }
            }
            if (!p.isAlive() || System.nanoTime() - deadline > 0) {
                fail("the daemon in " + namespace(side) + " did not start:\n" + read(out));
            }
            Thread.sleep(50);
        }
    }

    /** A running {@code serve}: its pid is the JVM's ({@code ip netns exec} execs it). */
    static final class Daemon {
        final Side side;
        final Process process;
        final Path out;
        final Path workDir;
        final Path reportDir;
        private final JarRig rig;
        volatile int port;

        private Daemon(JarRig rig, Side side, Process process, Path out, Path workDir, Path reportDir) {
            this.rig = rig;
            this.side = side;
            this.process = process;
            this.out = out;
            this.workDir = workDir;
            this.reportDir = reportDir;
        }

        int pid() {
            return (int) process.pid();
        }

        String target() {
            return rig.address(side) + ":" + port;
        }

        List<String> lines() {
            return read(out).lines().toList();
        }

        String log() {
            return read(out);
        }

        /** Polls the daemon's output until a line matches; false after {@code timeout} or when it died. */
        boolean awaitLine(Predicate<String> wanted, Duration timeout) throws InterruptedException {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (System.nanoTime() - deadline < 0 && process.isAlive()) {
                if (lines().stream().anyMatch(wanted)) {
                    return true;
                }
                Thread.sleep(2);
            }
            return lines().stream().anyMatch(wanted);
        }

        /** kill -9, and wait until it is gone. */
        void kill9() throws InterruptedException {
            process.destroyForcibly();
            assertTrue(process.waitFor(20, TimeUnit.SECONDS), "daemon pid " + pid() + " survived SIGKILL");
        }

        /** SIGTERM (its shutdown hook closes it), SIGKILL after 20 s. */
        void stop() throws InterruptedException {
            process.destroy();
            if (!process.waitFor(20, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                process.waitFor(10, TimeUnit.SECONDS);
            }
        }

        /** What its work directory holds (a migration's directory while one runs; nothing between migrations). */
        List<String> workDirEntries() {
            try (var s = Files.list(workDir)) {
                return s.map(p -> p.getFileName().toString()).toList();
            } catch (NoSuchFileException e) {
                return List.of();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        /** The daemon removes a migration's directory right after its last message: waits a little for that. */
        void assertWorkDirEmptySoon() throws InterruptedException {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (!workDirEntries().isEmpty() && System.nanoTime() - deadline < 0) {
                Thread.sleep(20);
            }
            assertEquals(List.of(), workDirEntries(), "the daemon's work dir " + workDir + " is not empty");
        }

        /** Waits until it has written {@code n} reports (it writes each right after its last message); their outcomes. */
        List<String> awaitReports(int n) throws IOException, InterruptedException {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            List<String> r = reportOutcomes();
            while (r.size() < n && System.nanoTime() - deadline < 0) {
                Thread.sleep(20);
                r = reportOutcomes();
            }
            assertEquals(n, r.size(), "reports in " + reportDir + ": " + r + "\n--- daemon\n" + log());
            return r;
        }

        /** The outcome of every migration report it wrote (in no particular order). */
        List<String> reportOutcomes() throws IOException {
            if (!Files.isDirectory(reportDir)) {
                return List.of();
            }
            Pattern outcome = Pattern.compile("\"outcome\"\\s*:\\s*\"([a-z-]+)\"");
            List<String> out = new ArrayList<>();
            try (var s = Files.list(reportDir)) {
                for (Path p : s.filter(f -> f.toString().endsWith(".json")).toList()) {
                    Matcher m = outcome.matcher(Files.readString(p));
                    out.add(m.find() ? m.group(1) : "?");
                }
            }
            return out;
        }
    }

    // ---- memtouch

    /**
     * memtouch ({@code --size-mib mib --threads threads --dirty-mib-per-sec rate}) started
     * detached in {@code side}'s namespace, logging to a file of the work directory; waits for its
     * first heartbeat. With {@code extraFile}, it also holds that file open on fd 3.
     */
    Workload memtouch(Side side, int mib, int threads, int rate, Path extraFile) throws IOException {
        Path log = work.resolve(next("memtouch") + ".log");
        Path memtouch = Stubs.path("memtouch");
        List<String> cmd = new ArrayList<>();
        if (extraFile != null) {
            cmd.addAll(List.of("-c", "exec \"$@\" 3<\"$0\"", extraFile.toString()));
        }
        cmd.addAll(in(side, List.of(memtouch.toString(), "--size-mib", Integer.toString(mib), "--threads",
                Integer.toString(threads), "--dirty-mib-per-sec", Integer.toString(rate))));
        String program = extraFile != null ? "/bin/sh" : cmd.removeFirst();
        int pid = Features.spawnDetachedWithLog(log, program, cmd.toArray(String[]::new));
        Workload w = new Workload(pid, log, mib * 256L);
        workloads.add(w);
        w.awaitCount(BEAT, 1);
        // sh and ip exec'd memtouch (no fork): the same pid
        assertEquals(memtouch.toRealPath(), Files.readSymbolicLink(Path.of("/proc/" + pid + "/exe")), "pid " + pid);
        assertEquals(nsInode(namespace(side)), nsOf(pid), "memtouch runs in " + namespace(side));
        return w;
    }

    /** memtouch as a user sees it: the pid it runs as now (a new one after each migration), and its log. */
    static final class Workload {
        final Path log;
        final int original;
        final long pages;
        volatile int pid;

        private Workload(int pid, Path log, long pages) {
            this.original = pid;
            this.pid = pid;
            this.log = log;
            this.pages = pages;
        }

        List<String> lines() {
            return Stubs.lines(log);
        }

        long count(Predicate<String> p) {
            return lines().stream().filter(p).count();
        }

        String awaitCount(Predicate<String> wanted, long n) {
            int p = pid;
            return Stubs.awaitMatches(p, log, "memtouch pid " + p, wanted, n, Duration.ofSeconds(60), 20).getLast();
        }

        /** The number of its last HEARTBEAT line (its counter lives in its memory, so it goes on across migrations). */
        long lastBeat() {
            List<String> b = lines().stream().filter(BEAT).toList();
            return b.isEmpty() ? 0 : Long.parseLong(b.getLast().substring(10).trim());
        }

        /** SIGUSR1 to the current pid; the next VERIFY line must be {@code VERIFY OK pages=<every page>}. */
        void assertVerifies() {
            long n = count(VERIFY);
            Posix.kill(pid, Posix.SIGUSR1);
            String v = awaitCount(VERIFY, n + 1);
            assertTrue(v.startsWith("VERIFY OK pages=" + pages), "pid " + pid + " failed its check: " + v + "\n" + tail());
        }

        /** Two more heartbeats from the current pid, numbered past {@code before}. */
        void assertBeatsOnPast(long before) {
            awaitCount(BEAT, count(BEAT) + 2);
            long now = lastBeat();
            assertTrue(now > before + 1, "heartbeat went from " + before + " to " + now + "\n" + tail());
        }

        boolean alive() {
            return Stubs.isAlive(pid);
        }

        String tail() {
            return Stubs.tail(log, 20);
        }

        void kill() {
            for (int p : new int[] {pid, original}) {
                Stubs.sigkill(p);
            }
        }
    }

    // ---- migrate

    /** What one {@code lazy-dump.jar migrate} printed and how it ended. */
    record Migrate(int exit, String stdout, String stderr, double ms) {
        /** The pid the process runs as at the destination ({@code migrated pid X to ... (pid Y there)}), or -1. */
        int migratedPid() {
            return stdout.lines().map(MIGRATED::matcher).filter(Matcher::matches).findFirst()
                    .map(m -> Integer.parseInt(m.group(2))).orElse(-1);
        }

        @Override
        public String toString() {
            return "migrate exit " + exit + " after " + Math.round(ms) + " ms\n--- stdout\n" + stdout + "--- stderr\n" + stderr;
        }
    }

    /**
     * {@code lazy-dump.jar migrate -t PID --to DAEMON --token T --mode MODE EXTRA...}, run in the
     * namespace where the process lives ({@code from}); waits up to {@code timeout}.
     */
    Migrate migrate(Side from, int pid, Daemon to, String mode, Duration timeout, String... extra)
            throws IOException, InterruptedException {
        return migrate(from, pid, to, mode, timeout, null, extra);
    }

    /**
     * As {@link #migrate(Side, int, Daemon, String, Duration, String...)}, but the migrate JVM is
     * killed with SIGKILL as soon as {@code killWhen} holds for the daemon (polled every 2 ms);
     * with {@code null}, never.
     */
    Migrate migrate(Side from, int pid, Daemon to, String mode, Duration timeout, Predicate<Daemon> killWhen,
                    String... extra) throws IOException, InterruptedException {
        List<String> args = new ArrayList<>(List.of("migrate", "-t", Integer.toString(pid), "--to", to.target(), "--token",
                TOKEN, "--mode", mode));
        args.addAll(List.of(extra));
        String name = next("migrate");
        Path out = work.resolve(name + ".out");
        Path err = work.resolve(name + ".err");
        long t0 = System.nanoTime();
        Process m = new ProcessBuilder(in(from, jvm("lazy-dump.jar", List.of(), args.toArray(String[]::new))))
                .redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        m.getOutputStream().close();
        if (killWhen != null) {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (m.isAlive() && System.nanoTime() - deadline < 0 && !killWhen.test(to)) {
                Thread.sleep(2);
            }
            m.destroyForcibly();
        }
        if (!m.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
            m.destroyForcibly();
            m.waitFor(10, TimeUnit.SECONDS);
            fail("migrate --mode " + mode + " did not finish within " + timeout + "\n" + new Migrate(-1, read(out), read(err), 0)
                    + "--- daemon\n" + to.log());
        }
        return new Migrate(m.exitValue(), read(out), read(err), (System.nanoTime() - t0) / 1e6);
    }

    /**
     * The whole user-visible check of a migration of {@code w} (living in {@code from}) to {@code to}:
     * migrate exits 0 naming the new pid, the original is gone, the new one runs in the daemon's
     * namespace, verifies every page, and beats on past where it was. Returns what migrate printed.
     */
    Migrate migrateAndCheck(Workload w, Side from, Daemon to, String mode, Duration timeout, String... extra)
            throws IOException, InterruptedException {
        long beat = w.lastBeat();
        int before = w.pid;
        Migrate r = migrate(from, before, to, mode, timeout, extra);
        assertEquals(0, r.exit(), r + "--- daemon\n" + to.log() + "--- memtouch\n" + w.tail());
        int now = r.migratedPid();
        assertTrue(now > 0 && now != before, "no 'migrated pid' line naming a new pid\n" + r);
        w.pid = now;
        Stubs.awaitDead(before, Duration.ofSeconds(30));
        assertTrue(w.alive(), "pid " + now + " is not running\n" + w.tail());
        assertEquals(nsInode(namespace(to.side)), nsOf(now), "the migrated process runs in " + namespace(to.side));
        w.assertVerifies();
        w.assertBeatsOnPast(beat);
        return r;
    }

    // ---- helpers

    /** The pids in both namespaces (the daemons, workloads and migrate JVMs that still run in them). */
    List<Integer> pidsInNamespaces() throws IOException, InterruptedException {
        List<Integer> out = new ArrayList<>();
        for (String ns : new String[] {netns.srcNamespace(), netns.dstNamespace()}) {
            Process p = new ProcessBuilder(Netns.ipCommand(), "netns", "pids", ns).redirectErrorStream(true).start();
            String s = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            p.waitFor(10, TimeUnit.SECONDS);
            for (String t : s.split("\\s+")) {
                if (t.matches("\\d+") && Stubs.isAlive(Integer.parseInt(t))) {
                    out.add(Integer.parseInt(t));
                }
            }
        }
        return out;
    }

    static String describe(int pid) {
        try {
            return pid + " (" + Files.readString(Path.of("/proc/" + pid + "/cmdline")).replace('\0', ' ').strip() + ")";
        } catch (IOException e) {
            return pid + " (gone)";
        }
    }

    static Object nsInode(String name) throws IOException {
        return Files.getAttribute(Path.of("/run/netns", name), "unix:ino");
    }

    static Object nsOf(int pid) throws IOException {
        return Files.getAttribute(Path.of("/proc/" + pid + "/ns/net"), "unix:ino");
    }

    static String read(Path p) {
        try {
            return Files.readString(p, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            return "";
        } catch (IOException e) {
            return "(cannot read " + p + ": " + e + ")";
        }
    }

    static String java() {
        return ProcessHandle.current().info().command().orElse("java");
    }

    private static Path built(String name) {
        Path p = Path.of(System.getProperty("lazypages.jar.dir"), name);
        if (!Files.isRegularFile(p)) {
            throw new IllegalStateException(p + " does not exist: run the package phase first");
        }
        return p;
    }

    /** Kills what still runs, stops the daemons, deletes the namespaces and the work directory. */
    @Override
    public void close() throws Exception {
        try {
            for (Workload w : workloads) {
                w.kill();
            }
            for (Daemon d : daemons) {
                d.stop();
            }
        } finally {
            netns.close();
            new ProcessBuilder("rm", "-rf", work.toString()).start().waitFor(60, TimeUnit.SECONDS);
        }
    }
}
