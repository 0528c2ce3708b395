package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.dump.ConvergencePolicy;
import dev.lazypages.ffm.testing.Requires;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Issue 7 point 3, the destination's state machine: a fault injected at each step of
 * {@link MigrationDestination} (a real memtouch migration, hybrid, with several pre-copy rounds
 * so that the warm process exists) ends with exactly one copy running, the source's, which
 * verifies and beats on; whatever the destination had built (the warm process, the restored
 * copy) is gone and its report says why.
 */
@org.junit.jupiter.api.Timeout(120)
class DestinationFaultTest {
    private static final Pattern WARM_PID = Pattern.compile("warm: round \\d+ applied .*\\(pid (\\d+)\\)");

    @TempDir
    Path tmp;
    private final List<AutoCloseable> cleanup = new ArrayList<>();
    private final List<String> log = Collections.synchronizedList(new ArrayList<>());

    @BeforeEach
    void needs() {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
    }

    @AfterEach
    void closeAll() throws Exception {
        for (AutoCloseable c : cleanup.reversed()) {
            c.close();
        }
    }

    private ServeDaemon daemon(DestinationFault fault) throws IOException {
        MigrationDestination.Options d = new MigrationDestination.Options(tmp.resolve("dest"), null, tmp.resolve("reports"),
                false, null, Duration.ofSeconds(60), Duration.ofSeconds(60), null, null, log::add).withFault(fault);
        ServeDaemon s = ServeDaemon.start(new ServeDaemon.Options(new InetSocketAddress("127.0.0.1", 0), null, d));
        cleanup.add(s);
        return s;
    }

    private Memtouch memtouch() {
        Memtouch m = Memtouch.start(32, 2, 8);
        cleanup.add(m);
        return m;
    }

    private MigrationSource.Options options(ServeDaemon d) {
        // goal 100%: with memtouch dirtying it is never reached, so three rounds run
        return MigrationSource.Options.defaults().withMode(MigrationMode.HYBRID).withToken(d.token())
                .withLimits(new ConvergencePolicy.Limits(3, 100, 0)).withReplyTimeout(Duration.ofSeconds(60))
                .withProgress(line -> log.add("source: " + line));
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(value = DestinationFault.class, names = {"PRECHECK", "ROUND_RECEIVED", "SKELETON_BUILT", "ROUND_APPLIED",
            "FINAL_RECEIVED", "RESTORE"})
    void aFaultBeforeCommitLeavesOnlyTheSourceRunningAndVerifying(DestinationFault fault) throws Exception {
        ServeDaemon d = daemon(fault);
        Memtouch m = memtouch();
        int pid = m.pid;
        MigrationException e = assertThrows(MigrationException.class, () -> MigrationSource.run(pid, d.address(), options(d)));
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
     * After Running: the destination kills its copy and sends Failed. Whether the source then
     * resumes its frozen original is MigrationSource's half of the contract (Failed after Commit
     * → resume), built on the source side: here the destination's half is asserted, and that
     * there are never two copies (a copy left at the source verifies).
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(value = DestinationFault.class, names = {"RUNNING_SENT", "WAIT_COMMIT", "POST_COPY"})
    void aFaultAfterRunningKillsTheDestinationCopyAndSendsFailed(DestinationFault fault) throws Exception {
        ServeDaemon d = daemon(fault);
        Memtouch m = memtouch();
        int pid = m.pid;
        try {
            MigrationSource.run(pid, d.address(), options(d));
        } catch (MigrationException e) {
            System.out.println(fault + ": source says " + e.getMessage());
        }
        MigrationReport dest = d.awaitReports(1, Duration.ofSeconds(60)).getFirst();
        System.out.println(fault + ": destination: " + dest.error);
        assertTrue(dest.outcome.startsWith("failed"), dest.toJson());
        assertTrue(dest.error.contains("fault injected at step " + fault.cliName()), dest.toJson());
        assertTrue(dest.destinationPid > 0, "the process had been restored: " + dest.toJson());
        assertTrue(dest.error.contains("pid " + dest.destinationPid + ") was killed"), dest.toJson());
        Memtouch.awaitGone(dest.destinationPid);
        assertNothingLeftAtTheDestination(dest);
        String step = fault == DestinationFault.POST_COPY ? "post-copy" : "wait for Commit";
        assertTrue(log.stream().anyMatch(l -> l.startsWith("source: destination: " + step + " failed: fault injected")
                        || l.startsWith("source: rolled back")),
                "the source heard Failed(" + step + "): " + String.join("\n", log));
        if (Memtouch.alive(pid)) {
            m.pid = pid;
            m.awaitBeats(1);
            m.assertVerifies();
        }
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
