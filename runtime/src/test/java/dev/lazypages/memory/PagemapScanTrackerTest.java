package dev.lazypages.memory;

import static dev.lazypages.memory.MemoryWorkloads.PS;
import static dev.lazypages.memory.MemoryWorkloads.hex;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Pagemap;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.proc.ProcMaps;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.TracerThread;
import dev.lazypages.proc.Vma;
import java.time.Duration;
import java.util.Map;
import java.util.regex.MatchResult;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(60)
class PagemapScanTrackerTest {
    private static TracerThread tracer;

    @BeforeAll
    static void startTracer() {
        tracer = new TracerThread("memory-test-tracer");
    }

    @AfterAll
    static void stopTracer() {
        tracer.close();
    }

    /** Seizes, freezes, arms, and leaves the process seized and running. */
    private static long armRunning(DirtyTracker t, SeizedProcess p) {
        p.freeze();
        long nanos = t.arm(p);
        p.thaw();
        return nanos;
    }

    private static PageRanges base(MemoryWorkloads.Mapper m) {
        return PageRanges.of(m.base, m.base + m.baseLen);
    }

    @Test
    void reportsExactlyThePagesWrittenThenNothingMore() {
        MemoryWorkloads.requirePagemapScanTracking();
        try (MemoryWorkloads.Mapper m = MemoryWorkloads.mapper(); SeizedProcess p = SeizedProcess.seize(m.pid(), tracer);
             PagemapScanTracker t = new PagemapScanTracker(m.pid())) {
            assertTrue(armRunning(t, p) > 0);
            assertFalse(MemoryWorkloads.hasUserfaultfd(m.pid()), "the target's copy of the uffd is closed");
            assertTrue(t.registered().containsAll(m.base, m.base + m.baseLen), "BASE registered: " + t.registered());
            assertEquals(PageRanges.EMPTY, t.collect().dirty().intersect(base(m)), "BASE was written before arm only");
            m.step(); // a new mapping elsewhere
            assertEquals(PageRanges.EMPTY, t.collect().dirty().intersect(base(m)), "BASE untouched by step 1");

            Map<String, String> step2 = m.step();
            assertEquals("write", step2.get("what"));
            PageRanges.Builder want = PageRanges.builder();
            for (String i : step2.get("at").split(",")) {
                want.addPages(m.base + Long.parseLong(i) * PS, 1);
            }
            DirtyReport r = t.collect();
            assertEquals(want.build(), r.dirty().intersect(base(m)), "exactly the pages mapper wrote, in " + r.dirty());
            assertTrue(r.scanNanos() > 0);
            assertTrue(r.vmas().stream().anyMatch(v -> v.start() <= m.base && v.end() >= m.base + m.baseLen));
            assertEquals(PageRanges.EMPTY, t.collect().dirty().intersect(base(m)), "a second collect has nothing new there");
        }
    }

    @Test
    void aFullOutputBufferIsScannedOnFromWalkEnd() {
        MemoryWorkloads.requirePagemapScanTracking();
        try (MemoryWorkloads.Mapper m = MemoryWorkloads.mapper(); SeizedProcess p = SeizedProcess.seize(m.pid(), tracer);
             PagemapScanTracker t = new PagemapScanTracker(m.pid(), 1)) {
            armRunning(t, p);
            m.step();
            t.collect();
            m.step(); // pages 1, 5, 6, 11: three regions through a one-region buffer
            assertEquals(PageRanges.builder().addPages(m.base + PS, 1).addPages(m.base + 5 * PS, 2).addPages(m.base + 11 * PS, 1).build(),
                    t.collect().dirty().intersect(base(m)));
            assertEquals(PageRanges.EMPTY, t.collect().dirty().intersect(base(m)));
        }
    }

    @Test
    void memoryThatAppearsIsDirtyEntirelyAndVanishedMemoryIsAbsent() {
        MemoryWorkloads.requirePagemapScanTracking();
        try (MemoryWorkloads.Mapper m = MemoryWorkloads.mapper(); PagemapScanTracker t = new PagemapScanTracker(m.pid())) {
            try (SeizedProcess p = SeizedProcess.seize(m.pid(), tracer)) {
                p.freeze();
                t.arm(p);
            } // detached: the tracker needs the process seized for arm only
            t.collect();

            Map<String, String> s1 = m.step(); // mmap
            PageRanges fresh = PageRanges.of(hex(s1.get("addr")), hex(s1.get("addr")) + Long.parseLong(s1.get("len")));
            DirtyReport r1 = t.collect();
            assertEquals(fresh, r1.dirty().intersect(fresh), "a new mapping is dirty entirely");
            assertTrue(PageRanges.ofVmas(r1.vmas()).containsAll(fresh.start(0), fresh.end(0)));
            assertEquals(PageRanges.EMPTY, t.collect().dirty().intersect(fresh), "and tracked from then on");

            m.step(); // write in BASE
            assertEquals(4, t.collect().dirty().intersect(base(m)).pageCount());

            m.step(); // munmap of the step-1 mapping
            DirtyReport r3 = t.collect();
            assertEquals(PageRanges.EMPTY, r3.dirty().intersect(fresh), "unmapped memory is absent");
            assertEquals(PageRanges.EMPTY, PageRanges.ofVmas(r3.vmas()).intersect(fresh));

            Map<String, String> s4 = m.step(); // mremap of BASE, then one page written
            long len = Long.parseLong(s4.get("len"));
            PageRanges moved = PageRanges.of(hex(s4.get("new")), hex(s4.get("new")) + len);
            PageRanges old = PageRanges.of(hex(s4.get("old")), hex(s4.get("old")) + len);
            DirtyReport r4 = t.collect();
            assertEquals(moved, r4.dirty().intersect(moved), "moved memory is dirty entirely");
            assertEquals(PageRanges.EMPTY, r4.dirty().intersect(old), "its old place is gone");
            assertEquals(PageRanges.EMPTY, t.collect().dirty().intersect(moved), "and the moved range is tracked again");

            Map<String, String> s5 = m.step(); // brk grows
            PageRanges grown = PageRanges.of(hex(s5.get("old")), hex(s5.get("new")));
            DirtyReport r5 = t.collect();
            assertEquals(grown, r5.dirty().intersect(grown), "heap growth is dirty: " + r5.dirty());
            assertEquals(PageRanges.EMPTY, t.collect().dirty().intersect(grown));

            m.step(); // brk shrinks back
            DirtyReport r6 = t.collect();
            assertEquals(PageRanges.EMPTY, r6.dirty().intersect(grown));
            assertEquals(PageRanges.EMPTY, PageRanges.ofVmas(r6.vmas()).intersect(grown), "the heap shrank: " + r6.vmas());

            t.close();
            assertFalse(MemoryWorkloads.hasUserfaultfd(m.pid()));
            assertEquals("IDLE", m.step().get("what"), "mapper runs on");
        }
    }

    @Test
    void privateFileMappingsRegisterToo() {
        MemoryWorkloads.requirePagemapScanTracking();
        try (MemoryWorkloads.Mapper m = MemoryWorkloads.mapper(); SeizedProcess p = SeizedProcess.seize(m.pid(), tracer);
             PagemapScanTracker t = new PagemapScanTracker(m.pid())) {
            armRunning(t, p);
            var fileVmas = TrackedVmas.read(m.pid()).stream().filter(v -> v.kind() == Vma.Kind.FILE).toList();
            assertFalse(fileVmas.isEmpty(), "libc and mapper have writable private file mappings");
            for (Vma v : fileVmas) {
                assertTrue(t.registered().containsAll(v.start(), v.end()), v + " registered; refused: " + t.unregistrable());
            }
            assertEquals(PageRanges.EMPTY, t.unregistrable());
        }
    }

    @Test
    void memtouchDirtyCountsAreSaneAndCloseLeavesNoTrace() throws InterruptedException {
        MemoryWorkloads.requirePagemapScanTracking();
        int mibPerSec = 8;
        try (Stubs.Running mt = Stubs.spawn("memtouch", "--size-mib", "64", "--threads", "2", "--dirty-mib-per-sec",
                Integer.toString(mibPerSec))) {
            MatchResult region = mt.awaitLine("REGION addr=0x([0-9a-f]+) size=(\\d+) pages=(\\d+).*", MemoryWorkloads.TIMEOUT);
            long addr = Long.parseUnsignedLong(region.group(1), 16);
            PageRanges data = PageRanges.of(addr, addr + Long.parseLong(region.group(2)));
            try (SeizedProcess p = SeizedProcess.seize(mt.pid(), tracer); PagemapScanTracker t = new PagemapScanTracker(mt.pid())) {
                long armNanos = armRunning(t, p);
                assertFalse(MemoryWorkloads.hasUserfaultfd(mt.pid()));
                t.collect();
                long t0 = System.nanoTime();
                Thread.sleep(1000);
                DirtyReport r = t.collect();
                double seconds = (System.nanoTime() - t0) / 1e9;
                long dirtyData = r.dirty().intersect(data).pageCount();
                long maxPages = (long) (mibPerSec * 1024.0 * 1024 * (seconds + 0.1) / PS) + 64;
                System.out.printf("memtouch 64 MiB at %d MiB/s: arm %.1f ms, %d data pages dirty in %.3f s (bound %d), collect %.2f ms%n",
                        mibPerSec, armNanos / 1e6, dirtyData, seconds, maxPages, r.scanNanos() / 1e6);
                assertTrue(dirtyData > 0, "memtouch wrote something in a second");
                assertTrue(dirtyData <= maxPages, dirtyData + " dirty pages in " + seconds + " s at " + mibPerSec + " MiB/s");
                // write-protection is in place on the data region while armed
                try (Pagemap pm = Pagemap.open(mt.pid())) {
                    long[] e = new long[64];
                    pm.read(addr, e.length, e);
                    assertTrue(java.util.Arrays.stream(e).anyMatch(Pagemap::uffdWriteProtected), "uffd-wp bits while armed");
                }
                t.close();
                assertFalse(MemoryWorkloads.hasUserfaultfd(mt.pid()), "no uffd left in " + MemoryWorkloads.fdTargets(mt.pid()));
                try (Pagemap pm = Pagemap.open(mt.pid())) {
                    long[] e = new long[(int) data.pageCount()];
                    pm.read(addr, e.length, e);
                    assertTrue(java.util.Arrays.stream(e).noneMatch(Pagemap::uffdWriteProtected), "close clears every uffd-wp bit");
                }
                assertTrue(ProcMaps.readSmaps(mt.pid()).stream().noneMatch(v -> v.smaps().hasFlag("uw")),
                        "no VMA is uffd-wp registered any more");
            }
            int beats = heartbeats(mt);
            mt.awaitLine(l -> l.startsWith("HEARTBEAT ") && Integer.parseInt(l.substring(10).strip()) > beats, MemoryWorkloads.TIMEOUT);
            mt.signal(Posix.SIGUSR1);
            String verify = mt.awaitLine(l -> l.startsWith("VERIFY"), Duration.ofSeconds(20));
            assertTrue(verify.startsWith("VERIFY OK"), verify);
        }
    }

    private static int heartbeats(Stubs.Running r) {
        return r.lines().stream().filter(l -> l.startsWith("HEARTBEAT ")).mapToInt(l -> Integer.parseInt(l.substring(10).strip()))
                .max().orElse(0);
    }
}
