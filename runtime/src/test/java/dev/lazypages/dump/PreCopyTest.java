package dev.lazypages.dump;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.image.ImageReader;
import dev.lazypages.image.PageFlags;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.restore.ImageLazyHandoff;
import dev.lazypages.restore.Restorer;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * Pre-dump chains of real memtouch processes restored: a page missed by the dirty tracking, or
 * taken from the wrong image of the chain, fails memtouch's own verification.
 */
class PreCopyTest {
    @TempDir
    Path tmp;

    @BeforeEach
    void requirements() {
        Requires.root();
        Requires.ptrace();
    }

    private static void assumePagemapScanTracker() {
        Assumptions.assumeTrue(Features.pagemapScan().available() && Features.uffdWpAsync().available(),
                "pagemap-scan tracker unavailable: " + Features.pagemapScan().detail() + "; " + Features.uffdWpAsync().detail());
    }

    @Test
    void chainOfThreePreDumpsAndAFinalDumpRestoresOneThreadThatVerifies() throws Exception {
        chainRestoresAndVerifies(1, false);
    }

    @Test
    void chainOfThreePreDumpsAndAFinalDumpRestoresEightThreadsThatVerify() throws Exception {
        chainRestoresAndVerifies(8, false);
    }

    @Test
    void chainRestoresLazilyAndVerifies() throws Exception {
        Requires.userfaultfd();
        chainRestoresAndVerifies(4, true);
    }

    private void chainRestoresAndVerifies(int threads, boolean lazy) throws Exception {
        assumePagemapScanTracker();
        Path dir = tmp.resolve("chain");
        try (LogProcess w = LogProcess.memtouch(tmp, 192, threads, 16)) {
            List<PreDumpResult> rounds = new ArrayList<>();
            DumpResult fin;
            try (PreCopySession s = PreCopySession.start(w.pid, "pagemap-scan", null)) {
                assertEquals("pagemap-scan", s.tracker());
                for (int n = 1; n <= 3; n++) {
                    rounds.add(s.preDump(dir.resolve(Integer.toString(n))));
                    Thread.sleep(300); // memtouch dirties ~5 MiB meanwhile
                }
                fin = s.finalDump(DumpOptions.of(dir.resolve("final")));
            }
            LogProcess.awaitDead(w.pid);
            for (PreDumpResult r : rounds) {
                System.out.println(r.summary());
            }
            System.out.println(fin.summary());
            long first = rounds.get(0).pagesStored();
            assertTrue(first >= 192 * 256, "round 1 stored every page of the region: " + first);
            assertTrue(rounds.get(0).frozenNanos() > 0, "round 1 froze the process to arm the tracker");
            for (int i = 1; i < 3; i++) {
                PreDumpResult r = rounds.get(i);
                assertTrue(r.pagesStored() * 4 < first, "round " + (i + 1) + " stored " + r.pagesStored() + " of " + first);
                assertTrue(r.pagesInParent() > first / 2, "round " + (i + 1) + " left " + r.pagesInParent() + " in parent");
                assertEquals("../" + i, r.parent());
                assertEquals(0, r.frozenNanos());
            }
            assertTrue(fin.pagesStored() * 4 < first, "final dump stored " + fin.pagesStored());
            assertTrue(fin.pagesInParent() > first / 2);
            assertEquals("../3", fin.parent());
            try (ImageReader r = ImageReader.open(dir.resolve("final"))) {
                r.verifyPages();
                assertEquals(Inventory.Kind.FULL, r.image().inventory().getKind());
                assertEquals("pagemap-scan", r.image().inventory().getTracker());
                assertEquals(Inventory.Kind.PRE_DUMP, r.parent().image().inventory().getKind());
                assertEquals(dir.resolve("1").toRealPath(), r.parent().parent().parent().image().dir().toRealPath());
            }

            int lastBefore = (int) w.count(l -> l.startsWith("HEARTBEAT "));
            Restorer.Options opts = Restorer.Options.eager(dir.resolve("final"));
            if (lazy) {
                try (ImageLazyHandoff h = new ImageLazyHandoff()) {
                    Restorer.Result res = Restorer.restore(opts.withLazy(h));
                    assertTrue(res.lazyBytes() > 0, "lazy bytes " + res.lazyBytes());
                    try (LogProcess c = new LogProcess(res.pid(), w.log)) {
                        c.awaitCount(l -> l.startsWith("HEARTBEAT "), lastBefore + 1, LogProcess.TIMEOUT);
                        c.assertVerifies();
                        h.completion().get(60, TimeUnit.SECONDS);
                        c.assertVerifies();
                        c.awaitBeats(1);
                    }
                }
            } else {
                Restorer.Result res = Restorer.restore(opts);
                assertEquals(threads + 1, res.threads());
                try (LogProcess c = new LogProcess(res.pid(), w.log)) {
                    c.awaitCount(l -> l.startsWith("HEARTBEAT "), lastBefore + 1, LogProcess.TIMEOUT);
                    c.assertVerifies();
                    c.awaitBeats(1);
                    c.assertVerifies();
                }
            }
        }
    }

    /**
     * Arming pagemap-scan puts a PTE marker on every never-touched page of tracked memory, and
     * PAGEMAP_SCAN reports a marker as swapped: the first round must not take the untouched
     * rest of eight 8 MiB thread stacks for swapped pages (it did: 80 MiB stored for 16), nor
     * must a later round or the final dump. The final dump walks only the dirty pages' page
     * tables: the clean pages the parent holds stay IN_PARENT without a walk.
     */
    @Test
    void neverTouchedPagesAreNotStoredAndTheFinalDumpWalksOnlyTheDirtyPages() throws Exception {
        assumePagemapScanTracker();
        Path dir = tmp.resolve("sparse");
        long ps = Posix.pageSize();
        try (LogProcess w = LogProcess.memtouch(tmp, 16, 8, 0)) {
            PreDumpResult first;
            PreDumpResult second;
            DumpResult fin;
            try (PreCopySession s = PreCopySession.start(w.pid, "pagemap-scan", null)) {
                first = s.preDump(dir.resolve("1"));
                second = s.preDump(dir.resolve("2"));
                fin = s.finalDump(DumpOptions.of(dir.resolve("final")));
            }
            LogProcess.awaitDead(w.pid);
            System.out.println(first.summary() + "\n" + second.summary() + "\n" + fin.summary() + ", walked "
                    + fin.scannedBytes() + " bytes");
            assertTrue(first.pagesStored() >= 16 * 256, "round 1 stored the region: " + first.pagesStored());
            assertTrue(first.pagesStored() * ps < 24L << 20, "round 1 stored " + first.pagesStored()
                    + " pages: the never-touched stack pages were taken for swapped ones");
            assertTrue(second.pagesStored() * ps < 1L << 20, "round 2 stored " + second.pagesStored() + " pages");
            assertTrue(fin.pagesStored() * ps < 1L << 20, "the final dump stored " + fin.pagesStored() + " pages");
            assertTrue(fin.pagesInParent() >= 16 * 256, "in parent " + fin.pagesInParent());
            assertTrue(fin.scannedBytes() < 8L << 20, "the final dump walked " + fin.scannedBytes()
                    + " bytes of page tables: more than its dirty pages and private file mappings");
            try (ImageReader r = ImageReader.open(dir.resolve("final"))) {
                r.verifyPages();
            }
            Restorer.Result res = Restorer.restore(Restorer.Options.eager(dir.resolve("final")));
            try (LogProcess c = new LogProcess(res.pid(), w.log)) {
                c.assertVerifies();
            }
        }
    }

    @Test
    void preCopyLoopStopsOnTheGoalAndItsFinalImageRestores() throws Exception {
        assumePagemapScanTracker();
        Path dir = tmp.resolve("pc");
        Path report = tmp.resolve("report.json");
        try (LogProcess w = LogProcess.memtouch(tmp, 128, 2, 16)) {
            StringWriter out = new StringWriter();
            CommandLine cl = new CommandLine(new dev.lazypages.cli.PreCopyCommand());
            cl.setOut(new PrintWriter(out, true));
            StringWriter err = new StringWriter();
            cl.setErr(new PrintWriter(err, true));
            int rc = cl.execute("-t", Integer.toString(w.pid), "-D", dir.toString(), "--report", report.toString());
            assertEquals(0, rc, err.toString());
            System.out.println(out);
            assertTrue(out.toString().contains("goal-reached"), out.toString());
            String json = Files.readString(report);
            assertTrue(json.contains("\"stop_reason\": \"goal-reached\""), json);
            assertTrue(json.contains("\"total_frozen_ms\""), json);
            LogProcess.awaitDead(w.pid);
            assertTrue(Files.isDirectory(dir.resolve("1")));
            Restorer.Result res = Restorer.restore(Restorer.Options.eager(dir.resolve("final")));
            try (LogProcess c = new LogProcess(res.pid(), w.log)) {
                c.assertVerifies();
            }
        }
    }

    @Test
    void preCopyWithTheNoneTrackerDegradesToFullCopiesAndSaysSo() throws Exception {
        Path dir = tmp.resolve("none");
        try (LogProcess w = LogProcess.memtouch(tmp, 64, 1, 16)) {
            List<String> progress = new ArrayList<>();
            PreCopy.Report r = PreCopy.run(w.pid, dir, new ConvergencePolicy.Limits(3, 70, 0),
                    DumpOptions.of(dir).withTrackMem("none").withProgress(progress::add), null);
            System.out.println(r.text());
            assertEquals("none", r.tracker());
            assertTrue(progress.stream().anyMatch(l -> l.contains("every round copies all memory")), progress.toString());
            assertTrue(r.rounds().size() >= 2);
            for (ConvergencePolicy.Round round : r.rounds()) {
                assertEquals(0, round.pagesInParent());
                assertTrue(round.pagesSent() >= 64 * 256);
            }
            assertEquals(0, r.finalDump().pagesInParent());
            LogProcess.awaitDead(w.pid);
            Restorer.Result res = Restorer.restore(Restorer.Options.eager(dir.resolve("final")));
            try (LogProcess c = new LogProcess(res.pid(), w.log)) {
                c.assertVerifies();
            }
        }
    }

    @Test
    void standaloneCliChainOfSeparatePreDumpsRestores() throws Exception {
        Path d1 = tmp.resolve("s1");
        Path d2 = tmp.resolve("s2");
        Path fin = tmp.resolve("sfinal");
        try (LogProcess w = LogProcess.memtouch(tmp, 64, 2, 16)) {
            String pid = Integer.toString(w.pid);
            DumpWorkloads.CliRun r1 = run(new dev.lazypages.cli.PreDumpCommand(), "-t", pid, "-D", d1.toString());
            assertEquals(0, r1.exitCode(), r1.err());
            System.out.println(r1.out());
            assertTrue(r1.out().matches("(?s)pre-dumped pid " + pid + " to .*frozen [0-9.]+ ms, copy \\d+ ms\n.*"), r1.out());
            DumpWorkloads.CliRun r2 = run(new dev.lazypages.cli.PreDumpCommand(), "-t", pid, "-D", d2.toString(),
                    "--prev-images-dir", d1.toString());
            assertEquals(0, r2.exitCode(), r2.err());
            System.out.println(r2.out());
            w.awaitBeats(1);
            DumpWorkloads.CliRun r3 = DumpWorkloads.dumpCommand("-t", pid, "-D", fin.toString(), "--prev-images-dir", d2.toString());
            assertEquals(0, r3.exitCode(), r3.err());
            System.out.println(r3.out());
            LogProcess.awaitDead(w.pid);
            try (ImageReader r = ImageReader.open(fin)) {
                assertEquals("../s2", r.image().inventory().getParent());
                assertEquals("../s1", r.parent().image().inventory().getParent());
                assertEquals(Inventory.Kind.PRE_DUMP, r.parent().parent().image().inventory().getKind());
                for (PageMapEntry e : r.image().pageMap().getEntriesList()) {
                    assertFalse(e.getFlags() == PageFlags.IN_PARENT, "a standalone dump has no live tracker: " + e);
                }
            }
            Restorer.Result res = Restorer.restore(Restorer.Options.eager(fin));
            try (LogProcess c = new LogProcess(res.pid(), w.log)) {
                c.assertVerifies();
            }
        }
    }

    @Test
    void softDirtyOnAKernelWithoutItFailsWithAClearMessage() {
        Assumptions.assumeFalse(Features.softDirty().available(), "this kernel has soft-dirty");
        try (LogProcess w = LogProcess.memtouch(tmp, 16, 1, 0)) {
            DumpWorkloads.CliRun r = run(new dev.lazypages.cli.PreDumpCommand(), "-t", Integer.toString(w.pid), "-D",
                    tmp.resolve("sd").toString(), "--track-mem=soft-dirty");
            assertEquals(3, r.exitCode(), r.err());
            assertTrue(r.err().contains("soft-dirty") && r.err().contains("not available"), r.err());
            assertEquals(1, r.err().strip().lines().count(), r.err());
            assertFalse(Files.exists(tmp.resolve("sd")));
            DumpWorkloads.assertNotTraced(w.pid);
            w.assertVerifies();
        }
    }

    @Test
    void refusesAnUnknownTrackingMode() {
        assertThrows(IllegalArgumentException.class, () -> Trackings.checkMode("dirty-bits"));
    }

    /** Runs a command the way lazy-dump does (one-line errors, exit codes). */
    static DumpWorkloads.CliRun run(Object command, String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(command);
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        cl.setExecutionExceptionHandler((ex, line, parse) -> {
            line.getErr().println(line.getCommandName() + ": " + ex.getMessage());
            return ex instanceof UnsupportedOperationException ? 3 : ex instanceof IllegalArgumentException ? 4 : 1;
        });
        int code = cl.execute(args);
        return new DumpWorkloads.CliRun(code, out.toString(), err.toString());
    }

    static String fmt(String f, Object... a) {
        return String.format(Locale.ROOT, f, a);
    }
}
