package dev.lazypages.dump;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.image.ImageReader;
import dev.lazypages.image.PageFlags;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.OpenFile;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.SigAction;
import dev.lazypages.image.proto.ThreadState;
import dev.lazypages.image.proto.Vma;
import dev.lazypages.proc.ProcMaps;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.MatchResult;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Dumps of real processes: what the image holds, and what becomes of the process. */
class DumperTest {
    private static final long MEMTOUCH_MAGIC = 0x4d454d544f554348L;
    private static final int SIGUSR1 = 10;

    @TempDir
    Path tmp;

    @Test
    void dumpsRunningMemtouchCompletelyAndLeavesItRunningAsBefore() throws Exception {
        try (Stubs.Running mt = DumpWorkloads.memtouch(256, 2, 8)) {
            MatchResult region = mt.awaitLine("REGION addr=0x([0-9a-f]+) size=(\\d+) pages=(\\d+).*", DumpWorkloads.TIMEOUT);
            long addr = Long.parseUnsignedLong(region.group(1), 16);
            long size = Long.parseLong(region.group(2));
            int pid = mt.pid();
            String mapsBefore = DumpWorkloads.maps(pid);
            Path dir = tmp.resolve("img");

            DumpWorkloads.CliRun run = DumpWorkloads.dumpCommand("-t", Integer.toString(pid), "-D", dir.toString(), "--leave-running");

            assertEquals(0, run.exitCode(), run.err());
            System.out.println("memtouch 256 MiB: " + run.out().strip());
            assertTrue(run.out().startsWith("dumped pid " + pid), run.out());
            assertEquals(1, run.out().strip().lines().count(), run.out());
            assertEquals(mapsBefore, DumpWorkloads.maps(pid), "maps changed by the dump (scratch page left behind?)");
            DumpWorkloads.assertNotTraced(pid);

            try (ImageReader r = ImageReader.open(dir)) {
                r.verifyPages();
                Inventory inv = r.image().inventory();
                assertEquals(Inventory.Kind.FULL, inv.getKind());
                assertEquals(pid, inv.getRootPid());
                assertEquals(Posix.pageSize(), inv.getPageSize());
                assertEquals("none", inv.getTracker());
                Process p = r.image().processes().getProcesses(0);
                assertEquals(pid, p.getPid());
                assertEquals(ProcMaps.parseMaps(mapsBefore, "maps").size(), p.getVmasCount(), "VMAs are the maps before the dump");
                assertTrue(p.getVmasList().stream().anyMatch(v -> v.getStart() <= addr && v.getEnd() >= addr + size),
                        "no VMA covers the region");
                assertTrue(p.getVmasList().stream().anyMatch(v -> v.getKind() == Vma.Kind.VDSO));
                assertNotEquals(0, p.getMm().getBrk());
                assertTrue(p.getExe().endsWith("memtouch"), p.getExe());

                long ps = inv.getPageSize();
                for (long a = addr; a < addr + size; a += ps) {
                    PageMapEntry e = r.find(pid, a);
                    if (e == null || e.getFlags() != PageFlags.PRESENT) {
                        throw new AssertionError("region page 0x" + Long.toHexString(a) + " not stored: " + e);
                    }
                }
                ByteBuffer page = ByteBuffer.allocate((int) ps).order(ByteOrder.LITTLE_ENDIAN);
                for (long index : new long[] {0, 1, 4097, size / ps - 1}) {
                    page.clear();
                    r.readPages(pid, addr + index * ps, 1, page);
                    assertEquals(MEMTOUCH_MAGIC, page.getLong(0), "magic of page " + index);
                    assertEquals(index, page.getLong(8), "index of page " + index);
                }

                assertEquals(3, p.getThreadsCount());
                assertEquals(pid, p.getThreads(0).getTid(), "leader first");
                for (ThreadState t : p.getThreadsList()) {
                    assertEquals(27, t.getRegsCount());
                    assertEquals(512, t.getFpregs().size());
                    assertFalse(t.getXstate().isEmpty());
                    assertNotEquals(0, t.getFsBase(), "glibc threads have a TLS base");
                }
                OpenFile stdout = p.getFilesList().stream().filter(f -> f.getFd() == 1).findFirst().orElseThrow();
                assertEquals(OpenFile.Kind.REGULAR, stdout.getKind());
                assertEquals(mt.log().toRealPath().toString(), stdout.getPath());
                assertTrue(stdout.getPos() > 0, "stdout position " + stdout.getPos());
                assertEquals(OpenFile.Kind.DEV_NULL, p.getFiles(0).getKind(), "stdin is /dev/null");
                SigAction usr1 = p.getSigactionsList().stream().filter(s -> s.getSigno() == SIGUSR1).findFirst().orElseThrow();
                assertNotEquals(0, usr1.getHandler());
            }
            DumpWorkloads.assertMemtouchHealthy(mt);
        }
    }

    @Test
    void killsTheProcessAfterTheDumpByDefault() throws Exception {
        try (Stubs.Running mt = DumpWorkloads.memtouch(16, 1, 0)) {
            DumpResult r = Dumper.dump(mt.pid(), DumpOptions.of(tmp.resolve("img")));
            assertEquals(2, r.threads());
            assertFalse(mt.isAlive(), "still alive after the dump: " + mt.state());
            try (ImageReader img = ImageReader.open(tmp.resolve("img"))) {
                img.verifyPages();
                assertEquals(r.pagesStored(), img.image().pagesInFile());
            }
        }
    }

    @Test
    void recordsNineThreadsOfAnEightWorkerMemtouch() throws Exception {
        try (Stubs.Running mt = DumpWorkloads.memtouch(16, 8, 4)) {
            DumpResult r = Dumper.dump(mt.pid(), DumpOptions.of(tmp.resolve("img")).withLeaveRunning(true));
            assertEquals(9, r.threads());
            try (ImageReader img = ImageReader.open(tmp.resolve("img"))) {
                List<ThreadState> threads = img.image().processes().getProcesses(0).getThreadsList();
                assertEquals(9, threads.size());
                assertEquals(9, threads.stream().map(ThreadState::getTid).distinct().count());
            }
            DumpWorkloads.assertMemtouchHealthy(mt);
        }
    }

    @Test
    void refusesAPipeNamingTheFdAndLeavesTheProcessUntouched() throws Exception {
        try (DumpWorkloads.FifoSleeper s = new DumpWorkloads.FifoSleeper()) {
            String mapsBefore = DumpWorkloads.maps(s.pid);
            Path dir = tmp.resolve("img");
            DumpException e = assertThrows(DumpException.class, () -> Dumper.dump(s.pid, DumpOptions.of(dir)));
            assertTrue(e.getMessage().startsWith("dump of pid " + s.pid + " failed at 'list open files': fd 0 is a pipe"),
                    e.getMessage());
            assertFalse(e.getMessage().contains("\n"));
            assertFalse(Files.exists(dir), "partial image left behind");
            assertNotEquals('X', Stubs.stateOf(s.pid));
            DumpWorkloads.assertNotTraced(s.pid);
            assertEquals(mapsBefore, DumpWorkloads.maps(s.pid));

            DumpResult r = Dumper.dump(s.pid, DumpOptions.of(dir).withLeaveRunning(true).withUnsupportedFds(UnsupportedFds.DEVNULL));
            assertEquals(1, r.threads());
            try (ImageReader img = ImageReader.open(dir)) {
                OpenFile stdin = img.image().processes().getProcesses(0).getFiles(0);
                assertEquals(0, stdin.getFd());
                assertEquals(OpenFile.Kind.DEV_NULL, stdin.getKind());
                assertEquals(Posix.O_RDWR, stdin.getFlags() & 3, "opened <> (read-write)");
                assertNotNull(stdin.getPath());
            }
            DumpWorkloads.assertNotTraced(s.pid);
            assertEquals(mapsBefore, DumpWorkloads.maps(s.pid));
        }
    }

    @Test
    void refusesANonexistentPidInOneLine() {
        int pid = 0x3ffffff; // above pid_max's ceiling (4194304)
        DumpWorkloads.CliRun run = DumpWorkloads.dumpCommand("-t", Integer.toString(pid), "-D", tmp.resolve("img").toString());
        assertEquals(4, run.exitCode());
        assertEquals("dump: no process with pid " + pid, run.err().strip());
        assertFalse(Files.exists(tmp.resolve("img")));
    }

    @Test
    void refusesANonEmptyDirectoryAndLeavesTheProcessUntouched() throws Exception {
        try (Stubs.Running mt = DumpWorkloads.memtouch(8, 1, 0)) {
            Path dir = tmp.resolve("img");
            Files.createDirectories(dir);
            Files.writeString(dir.resolve("keep.txt"), "mine");
            String mapsBefore = DumpWorkloads.maps(mt.pid());
            DumpWorkloads.CliRun run = DumpWorkloads.dumpCommand("--tree", Integer.toString(mt.pid()), "--images-dir", dir.toString());
            assertEquals(4, run.exitCode());
            assertEquals("dump: images directory " + dir + " is not empty: refusing to overwrite it", run.err().strip());
            assertEquals("mine", Files.readString(dir.resolve("keep.txt")));
            assertEquals(List.of(dir.resolve("keep.txt")), Files.list(dir).toList());
            DumpWorkloads.assertNotTraced(mt.pid());
            assertEquals(mapsBefore, DumpWorkloads.maps(mt.pid()));
            DumpWorkloads.assertMemtouchHealthy(mt);
        }
    }
}
