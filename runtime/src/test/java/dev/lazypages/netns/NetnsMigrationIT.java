package dev.lazypages.netns;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Live migration between two network namespaces joined by a veth pair ({@link Netns}), with the
 * shaded jars as a user runs them: the destination daemon {@code lazy-pages.jar serve} in the
 * destination namespace, memtouch (256 MiB, 1 thread dirtying) and {@code lazy-dump.jar migrate}
 * in the source namespace, once per mode. The migrated process runs in the destination
 * namespace, verifies every page, beats on, and the original is gone.
 */
class NetnsMigrationIT {
    private static final Duration T = Duration.ofSeconds(180);
    private static final String TOKEN = "netns-it-token";
    private static final Pattern SERVING = Pattern.compile("serving on ([0-9.]+):(\\d+) .*");
    private static final Pattern MIGRATED = Pattern.compile("migrated pid (\\d+) to \\S+ \\(pid (\\d+) there\\)");

    private static Netns netns;
    private static Process daemon;
    private static Path daemonOut;
    private static int port;
    private static Path work;

    private int original = -1;
    private int migrated = -1;
    private Path log;

    @BeforeAll
    static void startDestination() throws Exception {
        // an IT: failsafe runs it after package; a -Dtest pattern may also hand it to surefire, which has no jars
        Assumptions.assumeTrue(System.getProperty("lazypages.jar.dir") != null,
                "NetnsMigrationIT runs under failsafe (-Dit.test=NetnsMigrationIT), where the jars exist");
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
        netns = Netns.create();
        work = Files.createTempDirectory("lp-netns-it-");
        daemonOut = work.resolve("serve.out");
        daemon = new ProcessBuilder(netns.inDst(java(), "-jar", jar("lazy-pages.jar").toString(), "serve", "--listen",
                netns.dstAddress() + ":0", "--token", TOKEN, "--stub", Stubs.dir().toString(), "--work-dir",
                work.resolve("dst").toString()))
                .redirectErrorStream(true).redirectOutput(daemonOut.toFile()).start();
        daemon.getOutputStream().close();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (true) {
            for (String l : read(daemonOut).lines().toList()) {
                Matcher m = SERVING.matcher(l);
                if (m.matches()) {
                    assertEquals(netns.dstAddress(), m.group(1), l);
                    port = Integer.parseInt(m.group(2));
                    return;
                }
            }
            if (!daemon.isAlive() || System.nanoTime() - deadline > 0) {
                fail("the daemon in " + netns.dstNamespace() + " did not start:\n" + read(daemonOut));
            }
            Thread.sleep(50);
        }
    }

    @AfterAll
    static void stopDestination() throws Exception {
        try {
            if (daemon != null) {
                daemon.destroy();
                if (!daemon.waitFor(20, TimeUnit.SECONDS)) {
                    daemon.destroyForcibly();
                }
            }
        } finally {
            if (netns != null) {
                netns.close();
            }
            if (work != null) {
                new ProcessBuilder("rm", "-rf", work.toString()).start().waitFor();
            }
        }
    }

    @AfterEach
    void killWorkloads() {
        for (int pid : new int[] {migrated, original}) {
            if (pid > 0 && alive(pid)) {
                Posix.kill(pid, Posix.SIGKILL);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"hybrid", "post-copy", "pre-copy"})
    void migratesFromTheSourceNamespaceToTheDestinationNamespace(String mode) throws Exception {
        migrateAndVerify(mode, null, null);
    }

    /**
     * Issue 7 point 1: the veth link goes down for 2 s while the process runs at the destination
     * and its pages still come from the source (post-copy); the faulting threads wait, TCP
     * retransmits (or the page client reconnects), and the migration completes and verifies.
     */
    @Test
    void aTwoSecondLinkCutDuringPostCopyIsSurvivedAndTheProcessVerifies() throws Exception {
        boolean[] midPostCopy = new boolean[1];
        long running = daemonLines("running as pid");
        long everyPage = daemonLines("every page in");
        migrateAndVerify("post-copy", () -> daemonLines("running as pid") > running, () -> {
            midPostCopy[0] = daemonLines("every page in") == everyPage;
            netns.setLinkUp(false);
            try {
                Thread.sleep(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                netns.setLinkUp(true);
            }
        });
        System.out.println("link cut: daemon output\n" + read(daemonOut));
        assertTrue(midPostCopy[0], "the link went down while pages were still missing at the destination\n" + read(daemonOut));
    }

    private static long daemonLines(String part) {
        return read(daemonOut).lines().filter(l -> l.contains(part)).count();
    }

    /** Migrates a fresh memtouch in {@code mode}, running {@code cut} once {@code when} holds (polled). */
    private void migrateAndVerify(String mode, java.util.function.BooleanSupplier when, Runnable cut) throws Exception {
        spawnMemtouchInSource();
        long beatsBefore = count("HEARTBEAT ");
        long t0 = System.nanoTime();
        Path out = work.resolve("migrate-" + mode + "-" + System.nanoTime() + ".out");
        Path err = work.resolve("migrate-" + mode + "-" + System.nanoTime() + ".err");
        Process m = new ProcessBuilder(netns.inSrc(java(), "-jar", jar("lazy-dump.jar").toString(), "migrate", "-t",
                Integer.toString(original), "--to", netns.dstAddress() + ":" + port, "--token", TOKEN, "--mode", mode))
                .redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        m.getOutputStream().close();
        if (when != null) {
            long deadline = System.nanoTime() + T.toNanos();
            while (m.isAlive() && !when.getAsBoolean() && System.nanoTime() - deadline < 0) {
                Thread.sleep(5);
            }
            cut.run();
        }
        if (!m.waitFor(T.toSeconds(), TimeUnit.SECONDS)) {
            m.destroyForcibly();
            fail("migrate --mode " + mode + " did not finish within " + T + "\n" + report(out, err));
        }
        double ms = (System.nanoTime() - t0) / 1e6;
        assertEquals(0, m.exitValue(), report(out, err));
        Matcher mm = read(out).lines().map(MIGRATED::matcher).filter(Matcher::matches).findFirst()
                .orElseThrow(() -> new AssertionError("no 'migrated pid' line\n" + report(out, err)));
        assertEquals(original, Integer.parseInt(mm.group(1)));
        migrated = Integer.parseInt(mm.group(2));
        System.out.printf("netns %s: migrate --mode %s took %.0f ms (pid %d -> %d)%n", netns, mode, ms, original, migrated);

        awaitGone(original);
        assertTrue(alive(migrated), "pid " + migrated + " is not running\n" + tail());
        assertEquals(netnsInode(netns.dstNamespace()), netnsOf(migrated), "the migrated process runs in " + netns.dstNamespace());
        long verifies = count("VERIFY");
        Posix.kill(migrated, Posix.SIGUSR1);
        String v = awaitNth("VERIFY", verifies + 1);
        assertTrue(v.startsWith("VERIFY OK pages=65536"), "pid " + migrated + " failed its check: " + v + "\n" + tail());
        awaitNth("HEARTBEAT ", Math.max(beatsBefore, count("HEARTBEAT ")) + 2);
    }

    // ---- helpers

    /** {@code ip netns exec SRC setsid memtouch ...}, detached from this JVM, logging to a file. */
    private void spawnMemtouchInSource() throws Exception {
        Path memtouch = Stubs.path("memtouch");
        log = work.resolve("memtouch-" + System.nanoTime() + ".log");
        List<String> cmd = new ArrayList<>(List.of("/bin/sh", "-c",
                "\"$0\" \"$@\" >\"$LP_LOG\" 2>&1 </dev/null & echo $!"));
        cmd.addAll(netns.inSrc("setsid", memtouch.toString(), "--size-mib", "256", "--threads", "1",
                "--dirty-mib-per-sec", "8"));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().put("LP_LOG", log.toString());
        Process sh = pb.start();
        sh.getOutputStream().close();
        String pid = new String(sh.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        assertTrue(sh.waitFor(10, TimeUnit.SECONDS) && sh.exitValue() == 0 && pid.matches("\\d+"), "spawn: " + pid);
        original = Integer.parseInt(pid);
        awaitNth("HEARTBEAT ", count("HEARTBEAT ") + 1);
        // ip exec'd setsid, which exec'd memtouch (no fork: not a group leader): same pid
        assertEquals(memtouch.toRealPath(), Files.readSymbolicLink(Path.of("/proc/" + original + "/exe")));
        assertEquals(netnsInode(netns.srcNamespace()), netnsOf(original), "memtouch runs in " + netns.srcNamespace());
    }

    private static Object netnsInode(String name) throws IOException {
        return Files.getAttribute(Path.of("/run/netns", name), "unix:ino");
    }

    private static Object netnsOf(int pid) throws IOException {
        return Files.getAttribute(Path.of("/proc/" + pid + "/ns/net"), "unix:ino");
    }

    private long count(String prefix) {
        return lines().stream().filter(l -> l.startsWith(prefix)).count();
    }

    private List<String> lines() {
        return read(log).lines().toList();
    }

    private String tail() {
        List<String> l = lines();
        return String.join("\n", l.subList(Math.max(0, l.size() - 20), l.size()));
    }

    private String awaitNth(String prefix, long n) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (true) {
            List<String> l = lines().stream().filter(s -> s.startsWith(prefix)).toList();
            if (l.size() >= n) {
                return l.getLast();
            }
            if (System.nanoTime() - deadline > 0) {
                fail("no " + n + "th '" + prefix + "' line within 30 s; log:\n" + tail() + "\n--- daemon\n" + read(daemonOut));
            }
            Thread.sleep(20);
        }
    }

    private static String report(Path out, Path err) {
        return "--- stdout\n" + read(out) + "\n--- stderr\n" + read(err) + "\n--- daemon\n" + read(daemonOut);
    }

    private static String read(Path p) {
        try {
            return Files.readString(p, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            return "";
        } catch (IOException e) {
            return "(cannot read " + p + ": " + e + ")";
        }
    }

    private static boolean alive(int pid) {
        char s = Stubs.stateOf(pid);
        return s != 'Z' && s != 'X';
    }

    private static void awaitGone(int pid) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (alive(pid)) {
            if (System.nanoTime() - deadline > 0) {
                fail("pid " + pid + " is still alive (state " + Stubs.stateOf(pid) + ")");
            }
            Thread.sleep(10);
        }
    }

    private static String java() {
        return ProcessHandle.current().info().command().orElse("java");
    }

    /** A copy of the built jar in this test's work directory (others may rebuild target/ meanwhile). */
    private static Path jar(String name) throws IOException {
        Path copy = work.resolve(name);
        if (!Files.exists(copy)) {
            Files.copy(built(name), copy);
        }
        return copy;
    }

    private static Path built(String name) {
        String dir = System.getProperty("lazypages.jar.dir");
        if (dir == null) {
            throw new IllegalStateException("system property lazypages.jar.dir is not set (run through Maven failsafe)");
        }
        Path p = Path.of(dir, name);
        if (!Files.isRegularFile(p)) {
            throw new IllegalStateException(p + " does not exist: run the package phase first");
        }
        return p;
    }
}
