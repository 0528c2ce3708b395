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
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Live migrations of memtouch over loopback, source and destination daemon in this JVM. */
@org.junit.jupiter.api.Timeout(180)
class MigrationTest {
    @TempDir
    Path tmp;
    private MigrationRig rig;
    private List<String> log;

    @BeforeEach
    void needs() {
        rig = new MigrationRig(tmp);
        log = rig.log;
    }

    @AfterEach
    void closeAll() throws Exception {
        rig.close();
    }

    private ServeDaemon daemon(UnaryOperator<HostFacts> hook, Consumer<String> progress) throws IOException {
        return rig.daemon(null, hook, null, null, progress);
    }

    private Memtouch memtouch(int mib, int threads, int rate) {
        return rig.memtouch(mib, threads, rate);
    }

    private MigrationSource.Options options(ServeDaemon d, MigrationMode mode) {
        return rig.options(d, mode);
    }

    private MigrationReport migrate(Memtouch m, ServeDaemon d, MigrationSource.Options o) {
        long beats = m.beats();
        int before = m.pid;
        MigrationReport r = MigrationSource.run(before, d.address(), o);
        assertEquals("migrated", r.outcome, r.toJson());
        assertTrue(r.destinationPid > 0, r.toJson());
        m.pid = r.destinationPid;
        Memtouch.awaitGone(before);
        m.assertVerifies();
        m.awaitCount(l -> l.startsWith("HEARTBEAT "), beats + 2);
        return r;
    }

    @ParameterizedTest(name = "{0} with {1} thread(s)")
    @CsvSource({"pre-copy, 1", "post-copy, 1", "hybrid, 1", "pre-copy, 4", "post-copy, 4", "hybrid, 4", "pre-copy, 8",
            "hybrid, 8"})
    void migratesMemtouchAndItVerifiesAtTheDestination(String mode, int threads) throws Exception {
        ServeDaemon d = daemon(null, null);
        Memtouch m = memtouch(256, threads, 4);
        MigrationReport r = migrate(m, d, options(d, MigrationMode.parse(mode)));
        System.out.printf("%s %d threads: downtime %.1f ms, rounds %d, %s%n", mode, threads, r.downtimeMs, r.rounds.size(),
                r.stopReason);
        System.out.println(r.toJson());
        List<MigrationReport> dest = d.awaitReports(1, Duration.ofSeconds(60));
        System.out.println(dest.getFirst().toJson());
        if (MigrationMode.parse(mode).lazy()) {
            // copy faults are a subset of every fault (zero-page and already-there faults are not in it)
            assertTrue(r.faultLatency != null && r.faultLatency.getTotalCount() <= r.faults, "the source has the histogram: " + r.toJson());
            assertEquals(dest.getFirst().faults, r.faults, "the destination's count reached the source");
            assertTrue(Files.exists(tmp.resolve("source-report.hgrm")), "hgrm beside the report");
            assertTrue(r.serveLatency != null && r.serveLatency.getTotalCount() > 0, r.toJson());
        }
        assertEquals("migrated", dest.getFirst().outcome, dest.getFirst().toJson());
        assertTrue(Files.exists(tmp.resolve("source-report.json")));
        assertTrue(Files.exists(tmp.resolve("reports").resolve("migration-" + r.migrationId + ".json")));
        if (MigrationMode.parse(mode).preCopies()) {
            assertFalse(r.rounds.isEmpty(), r.toJson());
            assertWarm(dest.getFirst());
        } else {
            assertTrue(r.rounds.isEmpty(), r.toJson());
        }
        try (var s = Files.list(tmp.resolve("dest"))) {
            assertEquals(0, s.count(), "the daemon's work dir is cleaned");
        }
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({"pre-copy", "hybrid"})
    void aChainOfSeveralRoundsIsRestoredAtTheDestination(String mode) throws Exception {
        ServeDaemon d = daemon(null, null);
        Memtouch m = memtouch(64, 2, 16);
        MigrationReport r = migrate(m, d, options(d, MigrationMode.parse(mode)).withLimits(new ConvergencePolicy.Limits(3, 100, 0)));
        assertTrue(r.rounds.size() >= 2, r.toJson());
        assertTrue(r.rounds.get(1).pages() < r.rounds.get(0).pages(), "round 2 sends only what was dirtied: " + r.toJson());
        MigrationReport dest = d.awaitReports(1, Duration.ofSeconds(60)).getFirst();
        assertEquals(r.rounds.size(), dest.rounds.size());
        assertWarm(dest);
        for (int i = 1; i <= r.rounds.size(); i++) {
            assertTrue(dest.phasesMs.containsKey("warm: round " + i), "round " + i + " applied to the warm process: "
                    + dest.phasesMs);
        }
    }

    /**
     * What the freeze no longer waits for: the destination's page client connects as soon as the
     * source's page server listens, before the freeze; the source freezes only once the destination
     * has written the last round into its warm process (RoundApplied); and the dirty set a long
     * round 1 left (it grows with the memory size) gets one short catch-up round in hybrid mode,
     * so that the freeze leaves only what that round saw dirtied.
     */
    @Test
    void hybridPreparesTheDestinationBeforeTheFreezeAndCatchesUpALargeDirtySet() throws Exception {
        ServeDaemon d = daemon(null, null);
        Memtouch m = memtouch(256, 2, 64);
        MigrationReport r = migrate(m, d, options(d, MigrationMode.HYBRID));
        int last = r.rounds.size();
        assertTrue(last >= 2, "round 1, then catch-up rounds: " + r.toJson());
        assertTrue(r.stopDetail.contains("catch-up round 2"), r.stopDetail);
        assertTrue(r.rounds.get(last - 1).pages() < r.rounds.get(0).pages() / 2, "catch-up rounds are short: " + r.toJson());
        assertTrue(r.phasesMs.containsKey("round " + last + " wait applied"), "waited for the destination's warm process: "
                + r.phasesMs);
        List<String> lines = List.copyOf(log);
        int frozen = indexOf(lines, "] source frozen");
        assertTrue(frozen > 0, String.join("\n", lines));
        assertTrue(indexOf(lines, "] page client connected to ") < frozen, "page client before the freeze:\n"
                + String.join("\n", lines));
        assertTrue(indexOf(lines, "] warm: round " + last + " applied") < frozen, "last round written before the freeze:\n"
                + String.join("\n", lines));
        MigrationReport dest = d.awaitReports(1, Duration.ofSeconds(60)).getFirst();
        assertWarm(dest);
        // what the restore needs before the process runs (private file mappings' pages, the rseq areas) came with
        // the final image: nothing fetched from the source in the downtime
        assertFalse(dest.phasesMs.containsKey("restore: fetch remote"), "fetched while frozen: " + dest.phasesMs);
        // both sides empty their heap before the freeze (after the last round applied, after the freeze prep), so
        // that no young collection pauses the JVM in the frozen window
        assertTrue(r.phasesMs.containsKey("before freeze: heap collected") && dest.phasesMs.containsKey("warm: heap collected"),
                r.phasesMs + "\n" + dest.phasesMs);
        // the warm process has the image's protections between rounds: the freeze changes none it did not write
        assertFalse(dest.phasesMs.containsKey("restore: mprotect vma"), "re-protected while frozen: " + dest.phasesMs);
        try (var fds = Files.list(Path.of("/proc/" + r.destinationPid + "/fd"))) {
            for (Path fd : fds.toList()) {
                String target = Files.readSymbolicLink(fd).toString();
                assertFalse(target.contains("pidfd"), "the restore's own pidfd left in the process: " + fd + " -> " + target);
            }
        }
    }

    /** The user's round limit holds: no catch-up round after the last round allowed. */
    @Test
    void noCatchUpRoundBeyondTheRoundLimit() throws Exception {
        ServeDaemon d = daemon(null, null);
        Memtouch m = memtouch(64, 2, 64);
        MigrationReport r = migrate(m, d, options(d, MigrationMode.HYBRID).withLimits(new ConvergencePolicy.Limits(1, 70, 0)));
        assertEquals(1, r.rounds.size(), r.toJson());
        assertFalse(r.stopDetail.contains("catch-up"), r.stopDetail);
    }

    private static int indexOf(List<String> lines, String part) {
        for (int i = 0; i < lines.size(); i++) {
            if (lines.get(i).contains(part)) {
                return i;
            }
        }
        return Integer.MAX_VALUE;
    }

    /**
     * The warm destination: the process was built from round 1 before the freeze (the frozen-time
     * restore spawned nothing and wrote no pre-copied page: its pages step is the final one only).
     */
    static void assertWarm(MigrationReport dest) {
        Map<String, Double> p = dest.phasesMs;
        assertTrue(p.containsKey("warm: round 1"), "the skeleton was built during pre-copy: " + p);
        assertFalse(p.containsKey("restore: spawn lp-stub"), "nothing spawned while frozen: " + p);
        assertFalse(p.containsKey("restore: write pages"), "no pre-copied page written while frozen: " + p);
        assertTrue(p.containsKey("restore: apply the"), "the final image was applied to the warm process: " + p);
    }

    @Test
    void aPageSizeTheDestinationDoesNotHaveRefusesAndLeavesTheSourceUntouched() throws Exception {
        ServeDaemon d = daemon(f -> f.withPageSize(65536), null);
        Memtouch m = memtouch(64, 2, 4);
        MigrationException e = assertThrows(MigrationException.Refused.class,
                () -> MigrationSource.run(m.pid, d.address(), options(d, MigrationMode.HYBRID)));
        assertTrue(e.getMessage().contains("page size differs: source 4096 bytes, destination 65536"), e.getMessage());
        assertTrue(e.sourceRunning());
        assertEquals(0, tracerPid(m.pid), "never seized");
        m.awaitBeats(1);
        m.assertVerifies();
    }

    @Test
    void aMissingFileRefusesAndLeavesTheSourceUntouched() throws Exception {
        MigrationDestination.Options opts = new MigrationDestination.Options(tmp.resolve("dest"), null, null, false, null,
                null, null, null, path -> path.endsWith(".log") ? null : Prechecks.localFiles().apply(path), log::add);
        ServeDaemon d = rig.closeLater(ServeDaemon.start(new ServeDaemon.Options(new InetSocketAddress("127.0.0.1", 0), "secret", opts)));
        Memtouch m = memtouch(64, 1, 4);
        MigrationException e = assertThrows(MigrationException.Refused.class,
                () -> MigrationSource.run(m.pid, d.address(), options(d, MigrationMode.PRE_COPY)));
        assertTrue(e.getMessage().contains(".log") && e.getMessage().contains("does not exist at the destination"), e.getMessage());
        assertEquals(0, tracerPid(m.pid));
        m.awaitBeats(1);
        m.assertVerifies();
    }

    @Test
    void aWrongTokenIsRefusedAtTheHandshake() throws Exception {
        ServeDaemon d = daemon(null, null);
        Memtouch m = memtouch(16, 1, 1);
        MigrationException e = assertThrows(MigrationException.class,
                () -> MigrationSource.run(m.pid, d.address(), options(d, MigrationMode.HYBRID).withToken("wrong")));
        assertTrue(e.getMessage().contains("token mismatch"), e.getMessage());
        assertTrue(e.sourceRunning());
        m.assertVerifies();
    }

    @Test
    void theDaemonClosedDuringPreCopyLeavesTheSourceRunning() throws Exception {
        ServeDaemon[] d = new ServeDaemon[1];
        d[0] = daemon(null, line -> {
            if (line.contains("received 1 ")) {
                Thread.ofPlatform().start(() -> d[0].close());
            }
        });
        Memtouch m = memtouch(256, 2, 64);
        MigrationException e = assertThrows(MigrationException.class,
                () -> MigrationSource.run(m.pid, d[0].address(), options(d[0], MigrationMode.HYBRID)
                        .withLimits(new ConvergencePolicy.Limits(10, 100, 0))));
        assertTrue(e.sourceRunning(), e.getMessage());
        assertEquals(0, tracerPid(m.pid), "detached");
        m.awaitBeats(2);
        m.assertVerifies();
    }

    @Test
    void aFailureAfterTheRestoreRequestRollsBackAndKillsTheDestinationCopy() throws Exception {
        ServeDaemon d = daemon(null, null);
        Memtouch m = memtouch(64, 2, 4);
        MigrationException e = assertThrows(MigrationException.class,
                () -> MigrationSource.run(m.pid, d.address(), options(d, MigrationMode.HYBRID)
                        .withFault(FaultStep.RESTORE_REQUEST)));
        assertTrue(e.sourceRunning(), e.getMessage());
        MigrationReport dest = d.awaitReports(1, Duration.ofSeconds(60)).getFirst();
        assertFalse(dest.outcome.equals("migrated"), dest.toJson());
        if (dest.destinationPid > 0) {
            Memtouch.awaitGone(dest.destinationPid);
        }
        m.awaitBeats(2);
        m.assertVerifies();
    }

    @Test
    void oneDaemonTakesTwoMigrationsInARow() throws Exception {
        ServeDaemon d = daemon(null, null);
        Memtouch m = memtouch(64, 2, 4);
        migrate(m, d, options(d, MigrationMode.HYBRID));
        migrate(m, d, options(d, MigrationMode.POST_COPY)); // the migrated process, migrated again
        List<MigrationReport> reports = d.awaitReports(2, Duration.ofSeconds(60));
        assertEquals(List.of("migrated", "migrated"), reports.stream().map(r -> r.outcome).toList());
    }

    /** A daemon runs for months: the reports it keeps in memory (each with its histograms) are bounded. */
    @Test
    void aDaemonKeepsOnlyItsLastReportsInMemory() throws Exception {
        ServeDaemon d = daemon(f -> f.withPageSize(65536), null); // every migration is refused at once, cheaply
        Memtouch m = memtouch(16, 1, 1);
        int n = ServeDaemon.REPORTS_KEPT + 4;
        for (int i = 0; i < n; i++) {
            assertThrows(MigrationException.Refused.class, () -> MigrationSource.run(m.pid, d.address(), options(d, MigrationMode.HYBRID)));
        }
        List<MigrationReport> kept = d.awaitReports(n, Duration.ofSeconds(60));
        assertEquals(ServeDaemon.REPORTS_KEPT, kept.size());
        assertEquals(kept, d.reports());
        assertTrue(kept.stream().allMatch(r -> r.outcome.equals("refused")), kept.getLast().toJson());
        m.assertVerifies();
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
