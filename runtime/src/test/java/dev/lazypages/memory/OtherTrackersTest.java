package dev.lazypages.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.TracerThread;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** DirtyTrackers' choice, the none tracker, and the soft-dirty tracker where the kernel has it. */
@Timeout(60)
class OtherTrackersTest {
    private static final Features.Probe YES = new Features.Probe("x", true, "fine");
    private static TracerThread tracer;

    @BeforeAll
    static void startTracer() {
        tracer = new TracerThread("memory-test-tracer-2");
    }

    @AfterAll
    static void stopTracer() {
        tracer.close();
    }

    private static Features.Probe no(String name, String why) {
        return new Features.Probe(name, false, why);
    }

    @Test
    void autoPrefersPagemapScanThenSoftDirtyThenNone() {
        var all = new DirtyTrackers.Probes(YES, YES, YES, YES);
        assertEquals("pagemap-scan", DirtyTrackers.select("auto", all).name());
        var noWp = new DirtyTrackers.Probes(YES, no("uffd_wp_async", "UFFDIO_API does not offer [WP_ASYNC]"), YES, YES);
        DirtyTrackers.Selection s = DirtyTrackers.select("auto", noWp);
        assertEquals("soft-dirty", s.name());
        assertTrue(s.reason().contains("uffd_wp_async, which is not available: UFFDIO_API does not offer [WP_ASYNC]"), s.reason());
        var nothing = new DirtyTrackers.Probes(no("pagemap_scan", "ENOTTY"), YES, no("pidfd_getfd", "ENOSYS"),
                no("soft_dirty", "bit 55 stayed clear"));
        DirtyTrackers.Selection n = DirtyTrackers.select("auto", nothing);
        assertEquals("none", n.name());
        assertTrue(n.reason().contains("pagemap_scan, which is not available: ENOTTY; pidfd_getfd, which is not available: ENOSYS"),
                n.reason());
        assertTrue(n.reason().contains("soft-dirty unavailable (bit 55 stayed clear)"), n.reason());
    }

    @Test
    void askingForAnUnavailableTrackerNamesWhatIsMissing() {
        var nothing = new DirtyTrackers.Probes(YES, no("uffd_wp_async", "too old"), YES, no("soft_dirty", "bit 55 stayed clear"));
        UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                () -> DirtyTrackers.select("pagemap-scan", nothing));
        assertEquals("dirty tracker pagemap-scan needs uffd_wp_async, which is not available: too old", e.getMessage());
        e = assertThrows(UnsupportedOperationException.class, () -> DirtyTrackers.select("soft-dirty", nothing));
        assertEquals("dirty tracker soft-dirty needs soft_dirty, which is not available: bit 55 stayed clear", e.getMessage());
        assertEquals("none", DirtyTrackers.select("none", nothing).name());
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> DirtyTrackers.select("fast", nothing));
        assertEquals("unknown dirty tracking mode 'fast' (one of [auto, pagemap-scan, soft-dirty, none])", bad.getMessage());
    }

    @Test
    void autoPicksPagemapScanWhereTheKernelHasIt() {
        MemoryWorkloads.requirePagemapScanTracking();
        if (!Features.pidfdGetfd().available()) {
            assertNotEquals("pagemap-scan", DirtyTrackers.select("auto").name(), "pagemap-scan needs pidfd_getfd");
            return;
        }
        try (DirtyTracker t = DirtyTrackers.create("auto", Posix.getpid())) {
            assertInstanceOf(PagemapScanTracker.class, t);
            assertEquals("pagemap-scan", t.name());
            assertFalse(t.reportsEverything());
        }
    }

    @Test
    void theNoneTrackerReportsEveryPopulatedPageEachTime() {
        MemoryWorkloads.requireTracing();
        try (MemoryWorkloads.Mapper m = MemoryWorkloads.mapper(); SeizedProcess p = SeizedProcess.seize(m.pid(), tracer);
             DirtyTracker t = DirtyTrackers.create("none", m.pid())) {
            assertTrue(t.reportsEverything());
            assertEquals("none", t.name());
            p.freeze();
            t.arm(p);
            p.thaw();
            PageRanges base = PageRanges.of(m.base, m.base + m.baseLen);
            for (int i = 0; i < 2; i++) {
                DirtyReport r = t.collect();
                assertEquals(base, r.dirty().intersect(base), "BASE, written once before arm, is reported every time");
                assertEquals(r.dirty(), r.dirty().intersect(r.vmas()));
            }
            Map<String, String> s1 = m.step();
            long a = MemoryWorkloads.hex(s1.get("addr"));
            PageRanges fresh = PageRanges.of(a, a + Long.parseLong(s1.get("len")));
            assertEquals(fresh, t.collect().dirty().intersect(fresh));
            assertFalse(MemoryWorkloads.hasUserfaultfd(m.pid()));
        }
    }

    @Test
    void theSoftDirtyTrackerIsUsedExactlyWhereTheKernelHasIt() {
        MemoryWorkloads.requireTracing();
        if (!Features.softDirty().available()) {
            // This kernel (like the development machine's) lacks CONFIG_MEM_SOFT_DIRTY: auto must
            // never pick it, and asking for it must say why not. The tracking logic itself is
            // tested on recorded pagemap data in SoftDirtyScanTest.
            assertNotEquals("soft-dirty", DirtyTrackers.select("auto").name());
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                    () -> DirtyTrackers.create("soft-dirty", Posix.getpid()));
            assertTrue(e.getMessage().contains(Features.softDirty().detail()), e.getMessage());
            return;
        }
        try (MemoryWorkloads.Mapper m = MemoryWorkloads.mapper(); SeizedProcess p = SeizedProcess.seize(m.pid(), tracer);
             DirtyTracker t = DirtyTrackers.create("soft-dirty", m.pid())) {
            p.freeze();
            t.arm(p);
            p.thaw();
            PageRanges base = PageRanges.of(m.base, m.base + m.baseLen);
            t.collect();
            m.step();
            assertEquals(4, t.collect().dirty().intersect(base).pageCount());
            assertEquals(PageRanges.EMPTY, t.collect().dirty().intersect(base));
        }
    }
}
