package dev.lazypages.netns;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.netns.JarRig.Daemon;
import dev.lazypages.netns.JarRig.Side;
import dev.lazypages.netns.JarRig.Workload;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Migrations that must not happen, between two network namespaces and through the jars (issue 5
 * point 10): a failed pre-check, and the destination daemon killed with SIGKILL during pre-copy
 * and during the freeze. Each time {@code migrate} exits 1 saying the process runs on, the source
 * process is the same pid, no longer traced, verifies every page and beats on, and nothing of
 * the migration is left running in the destination namespace.
 */
class NetnsMigrationFailureIT {
    private static final Duration T = Duration.ofSeconds(120);

    private static JarRig rig;
    private final List<Workload> workloads = new ArrayList<>();

    @BeforeAll
    static void namespaces() throws Exception {
        rig = JarRig.create("NetnsMigrationFailureIT");
    }

    @AfterAll
    static void removeNamespaces() throws Exception {
        if (rig != null) {
            rig.close();
        }
    }

    @AfterEach
    void killWorkloads() {
        workloads.forEach(Workload::kill);
    }

    private Workload memtouch(int mib, int threads, int rate, Path extraFile) throws Exception {
        Workload w = rig.memtouch(Side.SRC, mib, threads, rate, extraFile);
        workloads.add(w);
        return w;
    }

    /** A file the process holds open was deleted: the destination cannot have it, the pre-check refuses. */
    @Test
    void aFailedPreCheckLeavesTheSourceUntouched() throws Exception {
        Daemon d = rig.serve(Side.DST);
        try {
            Path extra = rig.work().resolve("data-only-at-the-source");
            Files.writeString(extra, "x");
            Workload w = memtouch(64, 2, 8, extra);
            Files.delete(extra);
            JarRig.Migrate r = rig.migrate(Side.SRC, w.pid, d, "hybrid", T);
            assertEquals(1, r.exit(), r.toString());
            assertTrue(r.stderr().contains(extra + " (deleted)") && r.stderr().contains("does not exist at the destination")
                    && r.stderr().contains("the process runs on at the source"), r.toString());
            assertEquals(1, r.stderr().lines().count(), "one line, no stack trace: " + r);
            assertEquals(0, tracerPid(w.pid), "never seized");
            assertSourceRunsOnAndDestinationIsClean(w, d);
            assertEquals(List.of("refused"), d.awaitReports(1));
        } finally {
            d.stop();
        }
    }

    /** kill -9 of the daemon once it has the first pre-copy round (rounds would go on: goal 100%). */
    @Test
    void theDestinationDaemonKilledDuringPreCopyLeavesTheSourceRunningAndVerifying() throws Exception {
        Workload w = memtouch(256, 2, 32, null);
        killDaemonAndMigrate(w, "hybrid", printed("received 1 "), "--max-iterations", "10", "--goal", "100");
    }

    /**
     * kill -9 of the daemon while the process is frozen at the source: once the daemon hears of the
     * freeze (the final dump is under way), or once the final image has arrived (the restore is
     * about to start).
     */
    @ParameterizedTest(name = "{0}, at ''{1}''")
    @CsvSource({"hybrid, source frozen", "pre-copy, source frozen", "post-copy, source frozen",
        "pre-copy, received final", "post-copy, received final"})
    void theDestinationDaemonKilledDuringTheFreezeLeavesTheSourceRunningAndVerifying(String mode, String line) throws Exception {
        Workload w = memtouch(256, 2, 16, null);
        killDaemonAndMigrate(w, mode, printed(line));
    }

    /**
     * kill -9 of the daemon in the middle of the restore: as soon as the restorer has seized its
     * lp-stub in the destination namespace. The half-built process must not outlive its restorer.
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"pre-copy", "hybrid"})
    void theDestinationDaemonKilledDuringTheRestoreLeavesNothingThereAndTheSourceRunning(String mode) throws Exception {
        Workload w = memtouch(256, 2, 16, null);
        killDaemonAndMigrate(w, mode, d -> stubsIn(Side.DST).stream().anyMatch(p -> traced(p)));
    }

    /**
     * kill -9 of the source's migrate JVM once the daemon has the first pre-copy round: the kernel
     * detaches the process when its tracer dies (and drops the tracker's write-protect registration
     * with its userfaultfd), so it runs on, same pid, untraced, verifying; the daemon sees the
     * control connection end, kills the warm skeleton it was building and reports the migration
     * failed; nothing is left in the destination namespace.
     */
    @Test
    void theSourceKilledDuringPreCopyLeavesTheProcessRunningAndTheDestinationClean() throws Exception {
        Daemon d = rig.serve(Side.DST);
        try {
            Workload w = memtouch(256, 2, 32, null);
            int pid = w.pid;
            long beat = w.lastBeat();
            JarRig.Migrate r = rig.migrate(Side.SRC, pid, d, "hybrid", T, printed("received 1 "),
                    "--max-iterations", "10", "--goal", "100");
            System.out.printf("netns: source killed during pre-copy: %s%n--- daemon\n%s%n", r, d.log());
            assertEquals(137, r.exit(), "killed by SIGKILL: " + r);
            assertEquals(pid, w.pid);
            assertEquals(0, tracerPid(pid), "detached by the kernel when its tracer died");
            assertSourceRunsOnAndDestinationIsClean(w, d);
            w.assertBeatsOnPast(beat);
            assertEquals(List.of("failed"), d.awaitReports(1), d.log());
            assertTrue(d.process.isAlive(), "the daemon goes on with the next migration");
        } finally {
            d.stop();
        }
    }

    /**
     * kill -9 of the source's migrate JVM after Commit, mid-post-copy (no background transfer, so
     * pages stay missing): the kernel detaches the dead tracer's original, which must not run on
     * beside the destination's copy: a SIGSTOP queued before Commit stops it. The destination
     * cannot reach the source within --recover-timeout and kills its copy (memory is missing), so
     * no copy runs; the operator's SIGCONT brings the original back, complete and verifying.
     */
    @Test
    void theSourceKilledAfterCommitLeavesItsOriginalStoppedNotRunningBesideTheCopy() throws Exception {
        Daemon d = rig.serve(Side.DST, List.of("-Dlazypages.background=false"), List.of("--recover-timeout", "3"));
        try {
            Workload w = memtouch(128, 2, 4, null);
            int pid = w.pid;
            long beat = w.lastBeat();
            JarRig.Migrate r = rig.migrate(Side.SRC, pid, d, "post-copy", T, printed("committed: "));
            System.out.printf("netns: source killed after Commit: %s%n--- daemon\n%s%n", r, d.log());
            assertEquals(137, r.exit(), "killed by SIGKILL: " + r);
            assertEquals('T', awaitState(pid, 'T', Duration.ofSeconds(5)), "the original must not run on");
            assertEquals(0, tracerPid(pid), "detached by the kernel when its tracer died");
            assertEquals(List.of("failed-after-commit"), d.awaitReports(1), d.log());
            assertEquals(List.of(), rig.pidsInNamespaces().stream().filter(p -> p != pid && p != d.pid()).map(JarRig::describe)
                    .toList(), "the destination's copy is killed");
            assertEquals('T', state(pid), "still stopped: nothing runs");
            dev.lazypages.ffm.Posix.kill(pid, dev.lazypages.ffm.Posix.SIGCONT);
            w.assertVerifies();
            w.assertBeatsOnPast(beat); // frozen, then stopped, since that beat: these come after the SIGCONT
        } finally {
            d.stop();
        }
    }

    /** The state letter of {@code pid} in /proc/PID/stat (R, S, T...). */
    private static char state(int pid) throws IOException {
        String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
        return stat.charAt(stat.lastIndexOf(')') + 2);
    }

    private static char awaitState(int pid, char wanted, Duration within) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + within.toNanos();
        char s = state(pid);
        while (s != wanted && System.nanoTime() - deadline < 0) {
            Thread.sleep(10);
            s = state(pid);
        }
        return s;
    }

    private static Predicate<Daemon> printed(String line) {
        return d -> d.lines().stream().anyMatch(l -> l.contains("] " + line));
    }

    private static boolean traced(int pid) {
        try {
            return tracerPid(pid) > 0;
        } catch (IOException gone) {
            return false;
        }
    }

    /** The pids of lp-stub processes (a restore under way) in {@code side}'s namespace. */
    private static List<Integer> stubsIn(Side side) {
        try {
            Path stub = Stubs.path("lp-stub").toRealPath();
            Object ns = JarRig.nsInode(rig.namespace(side));
            List<Integer> out = new ArrayList<>();
            try (var s = Files.list(Path.of("/proc"))) {
                for (Path p : s.filter(f -> f.getFileName().toString().matches("\\d+")).toList()) {
                    try {
                        if (Files.readSymbolicLink(p.resolve("exe")).equals(stub)
                                && Files.getAttribute(p.resolve("ns/net"), "unix:ino").equals(ns)) {
                            out.add(Integer.parseInt(p.getFileName().toString()));
                        }
                    } catch (IOException gone) {
                        // exited, or a kernel thread
                    }
                }
            }
            return out;
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private void killDaemonAndMigrate(Workload w, String mode, Predicate<Daemon> when, String... extra) throws Exception {
        Daemon d = rig.serve(Side.DST);
        int pid = w.pid;
        long beat = w.lastBeat();
        AtomicBoolean hit = new AtomicBoolean();
        Thread killer = Thread.ofPlatform().name("kill-daemon").start(() -> {
            try {
                long deadline = System.nanoTime() + T.toNanos();
                while (d.process.isAlive() && System.nanoTime() - deadline < 0) {
                    if (when.test(d)) {
                        hit.set(true); // first: the migration may fail and interrupt us while kill9 waits for the exit
                        d.kill9();
                        return;
                    }
                    Thread.sleep(1);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        JarRig.Migrate r;
        try {
            r = rig.migrate(Side.SRC, pid, d, mode, T, extra);
        } finally {
            killer.interrupt();
            killer.join(30_000);
        }
        System.out.printf("netns: daemon killed (%s): %s%n--- daemon\n%s%n", mode, r, d.log());
        assertTrue(hit.get(), "the daemon never reached the point to kill it at\n" + r + "--- daemon\n" + d.log());
        assertTrue(d.process.waitFor(20, java.util.concurrent.TimeUnit.SECONDS), "the daemon survived SIGKILL");
        assertEquals(1, r.exit(), r.toString());
        assertTrue(r.stderr().contains("the process runs on at the source"), r.toString());
        assertEquals(-1, r.migratedPid(), r.toString());
        assertEquals(pid, w.pid);
        assertEquals(0, tracerPid(pid), "detached");
        assertSourceRunsOnAndDestinationIsClean(w, d);
        w.assertBeatsOnPast(beat);
    }

    /** The source verifies and beats on; in the destination namespace only the daemon (if alive) runs, its work dir empty. */
    private void assertSourceRunsOnAndDestinationIsClean(Workload w, Daemon d) throws Exception {
        w.assertVerifies();
        w.assertBeatsOnPast(w.lastBeat());
        // what a killed daemon had restored must not run on: give the kernel a moment to end it
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        List<Integer> left;
        while (true) {
            left = rig.pidsInNamespaces().stream()
                    .filter(p -> p != w.pid && p != d.pid() && workloads.stream().noneMatch(o -> o.pid == p)).toList();
            if (left.isEmpty() || System.nanoTime() - deadline > 0) {
                break;
            }
            Thread.sleep(50);
        }
        List<String> described = left.stream().map(JarRig::describe).toList();
        left.forEach(Stubs::sigkill); // so that the next test starts clean
        assertEquals(List.of(), described, "left running in the namespaces");
        if (d.process.isAlive()) {
            d.assertWorkDirEmptySoon();
        }
    }

    static int tracerPid(int pid) throws IOException {
        for (String l : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
            if (l.startsWith("TracerPid:")) {
                return Integer.parseInt(l.substring(10).trim());
            }
        }
        return -1;
    }
}
