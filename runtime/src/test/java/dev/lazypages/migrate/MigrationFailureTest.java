package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.dump.ConvergencePolicy;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Issue 5 point 10: a destination that goes away or fails during the freeze leaves the source
 * process running and verifying, with nothing left at the destination; and one large run.
 * Issue 7 point 3 (the destination's half): a fault injected at each step of
 * {@link MigrationDestination}.
 */
class MigrationFailureTest {
    @TempDir
    Path tmp;
    private MigrationRig rig;
    private List<String> log;
    private static final Pattern WARM_PID = Pattern.compile("warm: round \\d+ applied .*\\(pid (\\d+)\\)");

    @BeforeEach
    void needs() {
        rig = new MigrationRig(tmp);
        log = rig.log;
    }

    @AfterEach
    void closeAll() throws Exception {
        rig.close();
    }

    private ServeDaemon daemon(Path stub, Consumer<String> progress) throws IOException {
        return daemon(stub, progress, DestinationFault.NONE);
    }

    private ServeDaemon daemon(Path stub, Consumer<String> progress, DestinationFault fault) throws IOException {
        return rig.daemon(stub, null, null, fault, progress);
    }

    private Memtouch memtouch(int mib, int threads, int rate) {
        return rig.memtouch(mib, threads, rate);
    }

    private MigrationSource.Options options(ServeDaemon d, MigrationMode mode) {
        return rig.options(d, mode);
    }

    /** The source runs on, untraced, and its memory checks out; no copy of it runs at the destination. */
    private void assertSourceRunsOnAndNothingAtTheDestination(Memtouch m, int pid, ServeDaemon d) throws IOException {
        assertEquals(pid, m.pid, "still the original process");
        assertEquals(0, MigrationTest.tracerPid(pid), "detached");
        m.awaitBeats(2);
        m.assertVerifies();
        for (MigrationReport r : d.reports()) {
            assertFalse("migrated".equals(r.outcome), r.toJson());
            if (r.destinationPid > 0) {
                Memtouch.awaitGone(r.destinationPid); // a restored copy that never got Commit is killed
            }
        }
        m.awaitBeats(1);
        m.assertVerifies();
    }

    /** The daemon goes away after Freeze (final image on its way, before Running): the source resumes. */
    @Test
    void theDaemonClosedDuringTheFreezeLeavesTheSourceRunningAndVerifying() throws Exception {
        ServeDaemon[] d = new ServeDaemon[1];
        d[0] = daemon(null, line -> {
            if (line.contains("source frozen")) {
                Thread.ofPlatform().start(() -> d[0].close());
            }
        });
        Memtouch m = memtouch(256, 2, 16);
        int pid = m.pid;
        MigrationException e = assertThrows(MigrationException.class,
                () -> MigrationSource.run(pid, d[0].address(), options(d[0], MigrationMode.HYBRID)));
        System.out.println("daemon closed at the freeze: " + e.getMessage() + "\n" + String.join("\n", log));
        assertTrue(e.sourceRunning(), e.getMessage());
        assertTrue(log.stream().anyMatch(l -> l.contains("source frozen")), "the freeze was reached: " + log);
        assertSourceRunsOnAndNothingAtTheDestination(m, pid, d[0]);
    }

    /** The same in post-copy mode: no pre-copy rounds, the freeze comes at once. */
    @Test
    void theDaemonClosedDuringThePostCopyFreezeLeavesTheSourceRunningAndVerifying() throws Exception {
        ServeDaemon[] d = new ServeDaemon[1];
        d[0] = daemon(null, line -> {
            if (line.contains("source frozen")) {
                Thread.ofPlatform().start(() -> d[0].close());
            }
        });
        Memtouch m = memtouch(128, 2, 16);
        int pid = m.pid;
        MigrationException e = assertThrows(MigrationException.class,
                () -> MigrationSource.run(pid, d[0].address(), options(d[0], MigrationMode.POST_COPY)));
        assertTrue(e.sourceRunning(), e.getMessage());
        assertSourceRunsOnAndNothingAtTheDestination(m, pid, d[0]);
    }

    /** The destination's restore fails (its restorer stub is not there): Failed → the source resumes. */
    @Test
    void aRestoreFailingAtTheDestinationLeavesTheSourceRunningAndVerifying() throws Exception {
        ServeDaemon d = daemon(tmp.resolve("no-such-stub"), null);
        Memtouch m = memtouch(64, 2, 8);
        int pid = m.pid;
        MigrationException e = assertThrows(MigrationException.class,
                () -> MigrationSource.run(pid, d.address(), options(d, MigrationMode.HYBRID)));
        System.out.println("restore failed at the destination: " + e.getMessage());
        assertTrue(e.sourceRunning(), e.getMessage());
        assertTrue(log.stream().anyMatch(l -> l.contains("restore failed")), String.join("\n", log));
        MigrationReport dest = d.awaitReports(1, Duration.ofSeconds(60)).getFirst();
        assertEquals("failed", dest.outcome, dest.toJson());
        assertSourceRunsOnAndNothingAtTheDestination(m, pid, d);
    }

    /** One large run: 1 GiB, 8 threads dirtying, hybrid; VERIFY OK at the destination. */
    @Test
    void aOneGibHybridMigrationWithEightThreadsVerifiesAtTheDestination() throws Exception {
        ServeDaemon d = daemon(null, null);
        Memtouch m = memtouch(1024, 8, 16);
        long beats = m.beats();
        int before = m.pid;
        MigrationReport r = MigrationSource.run(before, d.address(), options(d, MigrationMode.HYBRID)
                .withLimits(new ConvergencePolicy.Limits(5, 70, 0)));
        System.out.printf("1 GiB hybrid 8 threads: downtime %.1f ms, rounds %d, %s%n", r.downtimeMs, r.rounds.size(), r.stopReason);
        assertEquals("migrated", r.outcome, r.toJson());
        assertTrue(r.destinationPid > 0, r.toJson());
        m.pid = r.destinationPid;
        Memtouch.awaitGone(before);
        m.assertVerifies();
        m.awaitCount(l -> l.startsWith("HEARTBEAT "), beats + 2);
        MigrationReport dest = d.awaitReports(1, Duration.ofSeconds(120)).getFirst();
        assertEquals("migrated", dest.outcome, dest.toJson());
        m.assertVerifies();
        try (var s = Files.list(tmp.resolve("dest"))) {
            assertEquals(0, s.count(), "the daemon's work dir is cleaned");
        }
    }

    /**
     * Issue 7 point 3, the source's side: a fault injected at each step before Commit fails the
     * migration, and exactly one copy runs after it: the original, untraced, verifying, and
     * nothing at the destination (whatever it built is killed).
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"handshake", "precheck", "round:1", "round:2", "after-round:1", "after-round:2", "freeze",
        "final-dump", "state-transfer", "restore-request", "running"})
    void aFaultBeforeCommitLeavesOnlyTheSourceRunningAndVerifying(String step) throws Exception {
        ServeDaemon d = daemon(null, null);
        Memtouch m = memtouch(64, 2, 4);
        int pid = m.pid;
        FaultStep.At at = FaultStep.parse(step);
        MigrationException e = assertThrows(MigrationException.class, () -> MigrationSource.run(pid, d.address(),
                options(d, MigrationMode.HYBRID).withLimits(new ConvergencePolicy.Limits(2, 100, 0)).withFault(at)));
        System.out.println("fault at " + step + ": " + e.getMessage());
        assertTrue(e.sourceRunning(), e.getMessage());
        assertTrue(e.getMessage().contains("fault injected at step " + at.step().cliName()), e.getMessage());
        if (at.step() != FaultStep.HANDSHAKE && at.step() != FaultStep.PRECHECK) {
            // the daemon saw the migration through to its end (it killed whatever it had restored)
            assertFalse("migrated".equals(d.awaitReports(1, Duration.ofSeconds(60)).getFirst().outcome));
        }
        assertSourceRunsOnAndNothingAtTheDestination(m, pid, d);
    }

    /**
     * From Commit on, the destination's copy is the live one: the control connection cut just
     * after Commit or during post-copy does not stop the migration (the page server serves on
     * and its DONE ends it), and a failed first attempt to end the original is retried. Exactly
     * one copy runs after it: the migrated one, verifying, heartbeat going on; the original is gone.
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"commit", "post-copy", "end-original"})
    void aFaultAfterCommitStillEndsWithOnlyTheMigratedCopyRunning(String step) throws Exception {
        ServeDaemon d = daemon(null, null);
        Memtouch m = memtouch(64, 2, 4);
        long beats = m.beats();
        int before = m.pid;
        MigrationReport r = MigrationSource.run(before, d.address(), options(d, MigrationMode.HYBRID)
                .withLimits(new ConvergencePolicy.Limits(2, 100, 0)).withFault(FaultStep.parse(step)));
        System.out.println("fault at " + step + ":\n" + String.join("\n", log));
        assertEquals("migrated", r.outcome, r.toJson());
        assertTrue(log.stream().anyMatch(l -> l.contains("fault injected at step " + step) || l.contains("ending pid")),
                "the fault happened: " + log);
        m.pid = r.destinationPid;
        Memtouch.awaitGone(before);
        m.assertVerifies();
        m.awaitCount(l -> l.startsWith("HEARTBEAT "), beats + 2);
    }

    /**
     * After Commit the destination reports Failed (its copy could not go on, and it killed it):
     * the source resumes its frozen original, which is complete, instead of ending it. Driven by
     * a test destination speaking the real protocol over a real connection (handshake, pre-check
     * reply, rounds received, Running, then Failed after Commit), restoring nothing.
     */
    @Test
    void failedAfterCommitResumesTheOriginal() throws Exception {
        String token = "test-destination";
        Path rounds = Files.createDirectories(tmp.resolve("test-destination"));
        java.util.concurrent.CompletableFuture<List<String>> seen = new java.util.concurrent.CompletableFuture<>();
        try (dev.lazypages.net.ControlServer server = dev.lazypages.net.ControlServer.listen(
                new InetSocketAddress("127.0.0.1", 0), NetLink.hello(dev.lazypages.net.proto.Role.DESTINATION, token, null),
                conn -> {
                    List<String> got = new ArrayList<>();
                    try (NetLink link = new NetLink(conn)) {
                        while (true) {
                            Msg msg = link.receive(Duration.ofSeconds(60), rounds);
                            got.add(msg.getClass().getSimpleName());
                            switch (msg) {
                                case Msg.PrecheckRequest p -> link.send(new Msg.PrecheckReply(List.of()));
                                case Msg.RestoreRequest q -> link.send(new Msg.Running(Integer.MAX_VALUE - 1, 1.0));
                                case Msg.Commit c -> {
                                    link.send(new Msg.Failed("post-copy", "test destination: its copy could not go on"));
                                    link.receive(Duration.ofSeconds(30), null); // until the source hangs up
                                    seen.complete(got);
                                    return;
                                }
                                default -> { }
                            }
                        }
                    } catch (Exception ex) {
                        seen.complete(got);
                    }
                })) {
            Memtouch m = memtouch(64, 2, 4);
            int pid = m.pid;
            MigrationException e = assertThrows(MigrationException.class, () -> MigrationSource.run(pid,
                    server.localAddress(), options(null, MigrationMode.HYBRID).withToken(token)));
            System.out.println("Failed after Commit: " + e.getMessage() + "\n" + String.join("\n", log));
            assertTrue(e.sourceRunning(), e.getMessage());
            assertTrue(seen.get(60, java.util.concurrent.TimeUnit.SECONDS).contains("Commit"), "Commit was sent: " + seen.get());
            assertTrue(e.getMessage().contains("its copy could not go on"), e.getMessage());
            assertEquals(pid, m.pid, "still the original process");
            assertEquals(0, MigrationTest.tracerPid(pid), "detached");
            m.awaitBeats(2);
            m.assertVerifies();
            String json = Files.readString(tmp.resolve("source-report.json"));
            assertTrue(json.contains("\"outcome\": \"resumed\""), json);
        }
    }
    private MigrationSource.Options faultOptions(ServeDaemon d) {
        // goal 100%: with memtouch dirtying it is never reached, so three rounds run
        return MigrationSource.Options.defaults().withMode(MigrationMode.HYBRID).withToken(d.token())
                .withLimits(new ConvergencePolicy.Limits(3, 100, 0)).withReplyTimeout(Duration.ofSeconds(60))
                .withProgress(line -> log.add("source: " + line));
    }

    /**
     * Issue 7 point 3, the destination's state machine: a fault injected at each step before
     * Commit (hybrid, three pre-copy rounds so that the warm process exists) ends with exactly
     * one copy running, the source's, which verifies and beats on; whatever the destination had
     * built (the warm process, the restored copy) is gone and its report says why.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(value = DestinationFault.class, names = {"PRECHECK", "ROUND_RECEIVED", "SKELETON_BUILT", "ROUND_APPLIED",
            "FINAL_RECEIVED", "RESTORE"})
    void aFaultBeforeCommitLeavesOnlyTheSourceRunningAndVerifying(DestinationFault fault) throws Exception {
        ServeDaemon d = daemon(null, null, fault);
        Memtouch m = memtouch(32, 2, 8);
        int pid = m.pid;
        MigrationException e = assertThrows(MigrationException.class, () -> MigrationSource.run(pid, d.address(), faultOptions(d)));
        assertTrue(e.sourceRunning(), e.getMessage());
        MigrationReport dest = d.awaitReports(1, Duration.ofSeconds(60)).getFirst();
        System.out.println(fault + ": source says " + e.getMessage() + "; destination: " + dest.error);
        assertEquals("failed", dest.outcome, dest.toJson());
        assertTrue(dest.error.contains("fault injected at step " + fault.cliName()), dest.toJson());
        assertNothingLeftAtTheDestination(dest);
        // exactly one copy: the original, detached, verifying, beating
        assertEquals(pid, m.pid);
        assertEquals(0, MigrationTest.tracerPid(pid), "detached");
        m.awaitBeats(2);
        m.assertVerifies();
        try (var s = Files.list(tmp.resolve("dest"))) {
            assertEquals(0, s.count(), "the daemon's work dir is cleaned");
        }
    }

    /**
     * After Running: the destination kills its copy and sends Failed; the source resumes its
     * frozen original (Failed after Commit → resume). Exactly one copy runs after it, the
     * original, and it verifies.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(value = DestinationFault.class, names = {"RUNNING_SENT", "WAIT_COMMIT", "POST_COPY"})
    void aFaultAfterRunningKillsTheDestinationCopyAndSendsFailed(DestinationFault fault) throws Exception {
        ServeDaemon d = daemon(null, null, fault);
        Memtouch m = memtouch(32, 2, 8);
        int pid = m.pid;
        try {
            MigrationSource.run(pid, d.address(), faultOptions(d));
        } catch (MigrationException e) {
            System.out.println(fault + ": source says " + e.getMessage());
        }
        MigrationReport dest = d.awaitReports(1, Duration.ofSeconds(60)).getFirst();
        System.out.println(fault + ": destination: " + dest.error);
        assertTrue(dest.outcome.startsWith("failed"), dest.toJson());
        assertTrue(dest.error.contains("fault injected at step " + fault.cliName()), dest.toJson());
        assertTrue(dest.destinationPid > 0, "the process had been restored: " + dest.toJson());
        assertTrue(dest.error.contains("killed restored pid " + dest.destinationPid), dest.toJson());
        Memtouch.awaitGone(dest.destinationPid);
        assertNothingLeftAtTheDestination(dest);
        String step = fault == DestinationFault.POST_COPY ? "post-copy" : "wait for Commit";
        assertTrue(log.stream().anyMatch(l -> l.startsWith("source: destination: " + step + " failed")),
                "the source heard Failed(" + step + "): " + String.join("\n", log));
        // exactly one copy: the source resumed its frozen original, which is complete
        assertTrue(log.stream().anyMatch(l -> l.startsWith("source: resumed: pid " + pid)), String.join("\n", log));
        assertTrue(Memtouch.alive(pid), "the original runs on");
        m.pid = pid;
        m.awaitBeats(1);
        m.assertVerifies();
    }

    @Test
    void faultStepsParseFromTheirCommandLineNames() {
        assertEquals(DestinationFault.SKELETON_BUILT, DestinationFault.parse("skeleton-built"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> DestinationFault.parse("later"));
        assertTrue(e.getMessage().contains("unknown fault step 'later'") && e.getMessage().contains("post-copy"),
                e.getMessage());
    }

    /** Every warm process the destination built, and the restored copy, are dead. */
    private void assertNothingLeftAtTheDestination(MigrationReport dest) {
        List<String> lines = List.copyOf(log);
        for (String l : lines) {
            Matcher w = WARM_PID.matcher(l);
            if (w.find()) {
                Memtouch.awaitGone(Integer.parseInt(w.group(1)));
            }
        }
        if (dest.destinationPid > 0) {
            Memtouch.awaitGone(dest.destinationPid);
        }
        assertFalse(dest.destinationPid > 0 && Memtouch.alive(dest.destinationPid), dest.toJson());
    }
}
