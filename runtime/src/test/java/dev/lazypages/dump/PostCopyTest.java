package dev.lazypages.dump;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.image.ImageReader;
import dev.lazypages.image.PageFlags;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.lazy.LazyStats;
import dev.lazypages.restore.FrozenProcessSource;
import dev.lazypages.restore.ImageLazyHandoff;
import dev.lazypages.restore.RestoreException;
import dev.lazypages.restore.Restorer;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Post-copy and hybrid lazy final dumps of real memtouch processes, restored in-process with the
 * REMOTE pages read straight from the frozen original ({@link FrozenProcessSource}, no network):
 * a page missed or served from the wrong place fails memtouch's own verification.
 */
class PostCopyTest {
    private static final int MIB = 256;
    private static final int THREADS = 2;

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

    private static long count(Path image, int flag) throws IOException {
        try (ImageReader r = ImageReader.open(image)) {
            return r.image().pageMap().getEntriesList().stream().filter(e -> e.getFlags() == flag)
                    .mapToLong(e -> Integer.toUnsignedLong(e.getNrPages())).sum();
        }
    }

    private static void report(String what, FrozenProcess f) {
        System.out.printf(Locale.ROOT, "%s: %s; frozen until the image was ready %.1f ms, %d REMOTE pages (%.1f MiB)%n",
                what, f.dump().summary(), f.dump().frozenNanos() / 1e6, f.remote().pageCount(),
                f.remote().byteCount() / 1048576.0);
    }

    /** Restores {@code image} lazily with REMOTE pages from {@code f}, checks it runs and verifies, waits for completion. */
    private static LazyStats restoreLazily(LogProcess original, Path image, FrozenProcess f) throws Exception {
        int beatsBefore = (int) original.count(l -> l.startsWith("HEARTBEAT "));
        try (ImageLazyHandoff h = new ImageLazyHandoff()) {
            Restorer.Result res = Restorer.restore(Restorer.Options.eager(image).withLazy(h)
                    .withRemote(new FrozenProcessSource(f)));
            assertTrue(res.lazyBytes() > 0);
            assertEquals(f.remote().pageCount(), res.remotePages());
            LogProcess c = new LogProcess(res.pid(), original.log);
            try {
                c.awaitCount(l -> l.startsWith("HEARTBEAT "), beatsBefore + 1, LogProcess.TIMEOUT);
                c.assertVerifies();
                LazyStats stats = h.completion().get(60, TimeUnit.SECONDS);
                System.out.println("lazy restore: " + res + "; remote pages " + h.remotePages() + "; " + stats);
                assertFalse(stats.targetExited());
                c.assertVerifies();
                c.awaitBeats(1);
                // every page is at the destination: the original can go
                assertEquals(FrozenProcess.State.FROZEN, f.state());
                f.commitAndKill();
                assertGone(original.pid);
                c.awaitBeats(1);
                c.assertVerifies();
                return stats;
            } finally {
                c.close();
            }
        }
    }

    @Test
    void postCopyFreezesBrieflyAndRestoresLazilyFromTheFrozenOriginal() throws Exception {
        Requires.userfaultfd();
        Path image = tmp.resolve("final");
        try (LogProcess w = LogProcess.memtouch(tmp, MIB, THREADS, 16)) {
            FrozenProcess f;
            try (PreCopySession s = PreCopySession.start(w.pid, "auto", null)) {
                f = s.finalDumpLazy(DumpOptions.of(image)); // no pre-copy round: post-copy
            }
            try (f) {
                report("post-copy", f);
                assertEquals(FrozenProcess.State.FROZEN, f.state());
                assertEquals('t', Stubs.stateOf(w.pid), "still frozen after the session closed");
                long regionPages = (long) MIB * 256;
                assertTrue(f.remote().pageCount() >= regionPages, "every page REMOTE: " + f.remote().pageCount());
                assertEquals(0, f.dump().pagesStored());
                assertTrue(f.dump().frozenNanos() < TimeUnit.MILLISECONDS.toNanos(500),
                        "no page is copied at the freeze: " + f.dump().frozenNanos() / 1e6 + " ms");
                try (ImageReader r = ImageReader.open(image)) {
                    assertEquals(0, r.image().pagesInFile());
                    assertEquals(Inventory.Kind.FULL, r.image().inventory().getKind());
                    assertEquals("", r.image().inventory().getParent());
                    for (PageMapEntry e : r.image().pageMap().getEntriesList()) {
                        assertEquals(PageFlags.REMOTE, e.getFlags(), "post-copy: every stored page is REMOTE");
                    }
                }
                assertEquals(f.remote().pageCount(), count(image, PageFlags.REMOTE));

                // the page-server facade: direct reads of REMOTE pages only
                long first = f.remote().start(0);
                ByteBuffer buf = ByteBuffer.allocateDirect(2 * f.pageSize());
                f.readPages(first, 1, buf);
                assertEquals(f.pageSize(), buf.position());
                assertThrows(IllegalArgumentException.class, () -> f.readPages(first - f.pageSize(), 1, buf.clear()));
                assertThrows(IllegalArgumentException.class, () -> f.readPages(first, 1, ByteBuffer.allocate(f.pageSize())));

                RestoreException refused = assertThrows(RestoreException.class,
                        () -> Restorer.restore(Restorer.Options.eager(image)));
                assertTrue(refused.getMessage().contains("REMOTE"), refused.getMessage());

                LazyStats stats = restoreLazily(w, image, f);
                assertTrue(stats.pagesByFault() + stats.pagesByBackground() + stats.pagesFoundPresent() > 0);
                assertEquals(FrozenProcess.State.COMMITTED, f.state());
                assertThrows(IllegalStateException.class, () -> f.readPages(first, 1, buf.clear()));
                System.out.printf(Locale.ROOT, "post-copy %d MiB: source frozen %.1f ms until the image was ready, "
                        + "%.1f ms until commit%n", MIB, f.dump().frozenNanos() / 1e6, f.frozenNanos() / 1e6);
            }
        }
    }

    @Test
    void hybridLeavesOnlyTheLastDirtyPagesRemoteAndRestoresFromTheChainAndTheSource() throws Exception {
        Requires.userfaultfd();
        assumePagemapScanTracker();
        Path dir = tmp.resolve("hybrid");
        try (LogProcess w = LogProcess.memtouch(tmp, MIB, THREADS, 16)) {
            FrozenProcess f;
            try (PreCopySession s = PreCopySession.start(w.pid, "pagemap-scan", null)) {
                for (int n = 1; n <= 2; n++) {
                    System.out.println(s.preDump(dir.resolve(Integer.toString(n))).summary());
                    Thread.sleep(300);
                }
                f = s.finalDumpLazy(DumpOptions.of(dir.resolve("final")));
            }
            try (f) {
                report("hybrid", f);
                long total = (long) MIB * 256;
                long remote = count(dir.resolve("final"), PageFlags.REMOTE);
                long inParent = count(dir.resolve("final"), PageFlags.IN_PARENT);
                assertEquals(f.remote().pageCount(), remote);
                assertTrue(remote > 0 && remote * 10 < total, "few REMOTE pages: " + remote + " of " + total);
                assertTrue(inParent > total / 2, "most IN_PARENT: " + inParent);
                assertEquals(f.dump().pagesInParent(), inParent);
                try (ImageReader r = ImageReader.open(dir.resolve("final"))) {
                    assertEquals("../2", r.image().inventory().getParent());
                    // copied at the freeze: only the few pages written since round 2 of the threads' rseq areas and of
                    // private file mappings (the restore needs those before the process runs)
                    assertTrue(r.image().pagesInFile() <= 64, "pages copied: " + r.image().pagesInFile());
                }
                restoreLazily(w, dir.resolve("final"), f);
            }
        }
    }

    @Test
    void resumeRollsBackSoTheOriginalRunsOnWithNothingLeftBehind() throws Exception {
        Path image = tmp.resolve("rollback");
        try (LogProcess w = LogProcess.memtouch(tmp, 64, THREADS, 16)) {
            String mapsBefore = DumpWorkloads.maps(w.pid);
            List<String> fdsBefore = fds(w.pid);
            FrozenProcess f;
            try (PreCopySession s = PreCopySession.start(w.pid, "auto", null)) {
                s.preDump(tmp.resolve("r1")); // arms the tracker: its uffd must be gone after the rollback too
                f = s.finalDumpLazy(DumpOptions.of(image));
            }
            report("rollback", f);
            assertEquals('t', Stubs.stateOf(w.pid));
            f.resume();
            assertEquals(FrozenProcess.State.RESUMED, f.state());
            f.resume(); // idempotent
            assertThrows(IllegalStateException.class, f::commitAndKill);
            assertThrows(IllegalStateException.class, () -> f.readPages(f.remote().start(0), 1,
                    ByteBuffer.allocateDirect(f.pageSize())));
            w.awaitBeats(2);
            w.assertVerifies();
            DumpWorkloads.assertNotTraced(w.pid);
            assertEquals(fdsBefore, fds(w.pid), "no userfaultfd or other fd left in the process");
            assertTrue(fds(w.pid).stream().noneMatch(l -> l.contains("userfaultfd")));
            assertEquals(mapsBefore, DumpWorkloads.maps(w.pid), "no scratch mapping left");
        }
    }

    @Test
    void standaloneDumpLazyServesAnEagerRestore() throws Exception {
        Path image = tmp.resolve("standalone");
        try (LogProcess w = LogProcess.memtouch(tmp, 64, THREADS, 16)) {
            FrozenProcess f = Dumper.dumpLazy(w.pid, DumpOptions.of(image));
            try (f) {
                report("dump --lazy-pages", f);
                assertEquals(f.remote().pageCount(), count(image, PageFlags.REMOTE));
                assertEquals(0, count(image, PageFlags.PRESENT));
                int beatsBefore = (int) w.count(l -> l.startsWith("HEARTBEAT "));
                // eager: every REMOTE page is fetched from the source before the process runs
                Restorer.Result res = Restorer.restore(Restorer.Options.eager(image).withRemote(new FrozenProcessSource(f)));
                assertEquals(f.remote().byteCount(), res.remoteBytesFetched());
                try (LogProcess c = new LogProcess(res.pid(), w.log)) {
                    c.awaitCount(l -> l.startsWith("HEARTBEAT "), beatsBefore + 1, LogProcess.TIMEOUT);
                    c.assertVerifies();
                    f.commitAndKill();
                    assertGone(w.pid);
                    c.awaitBeats(1);
                    c.assertVerifies();
                }
            }
        }
    }

    @Test
    void standaloneDumpLazyRestoresLazily() throws Exception {
        Requires.userfaultfd();
        Path image = tmp.resolve("standalone-lazy");
        try (LogProcess w = LogProcess.memtouch(tmp, 64, THREADS, 16)) {
            try (FrozenProcess f = Dumper.dumpLazy(w.pid, DumpOptions.of(image))) {
                report("dump --lazy-pages (lazy restore)", f);
                restoreLazily(w, image, f);
            }
        }
    }

    /** Dead on return from commitAndKill: gone, or a zombie its (non-JVM) parent has not reaped yet. */
    private static void assertGone(int pid) {
        char s = Stubs.stateOf(pid);
        assertTrue(s == 'X' || s == 'Z', "pid " + pid + " is still alive after commitAndKill (state " + s + ")");
    }

    private static List<String> fds(int pid) throws IOException {
        try (Stream<Path> s = Files.list(Path.of("/proc/" + pid + "/fd"))) {
            return s.map(p -> {
                try {
                    return p.getFileName() + " -> " + Files.readSymbolicLink(p);
                } catch (IOException e) {
                    return p.getFileName() + " -> ?";
                }
            }).sorted().toList();
        }
    }
}
