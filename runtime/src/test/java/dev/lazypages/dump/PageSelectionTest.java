package dev.lazypages.dump;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Pagemap;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import org.junit.jupiter.api.Test;

/** Which pages a dump stores, on recorded pagemap data and on this JVM's own memory. */
class PageSelectionTest {
    private static final long PS = 4096;
    private static final long ZERO_PFN = 0x1234;
    private static final long PRESENT = Pagemap.PM_PRESENT;
    private static final long SWAPPED = Pagemap.PM_SWAPPED;
    private static final long FILE = Pagemap.PM_FILE;

    @Test
    void anonymousMemoryKeepsPresentAndSwappedPagesButNotTheZeroPage() {
        assertTrue(PageSelection.wanted(PRESENT | 0x99, false, ZERO_PFN));
        assertTrue(PageSelection.wanted(SWAPPED | 0x55, false, ZERO_PFN));
        assertFalse(PageSelection.wanted(PRESENT | ZERO_PFN, false, ZERO_PFN), "zero page");
        assertFalse(PageSelection.wanted(0, false, ZERO_PFN), "never populated");
        assertTrue(PageSelection.wanted(PRESENT, false, PageSelection.UNKNOWN_PFN), "pfn hidden: stored to be safe");
    }

    @Test
    void privateFileMappingsKeepOnlyAnonymousCopies() {
        assertFalse(PageSelection.wanted(PRESENT | FILE | 0x99, true, ZERO_PFN), "page cache");
        assertTrue(PageSelection.wanted(PRESENT | 0x99, true, ZERO_PFN), "written copy");
        assertTrue(PageSelection.wanted(SWAPPED, true, ZERO_PFN), "swapped copy");
        assertFalse(PageSelection.wanted(PRESENT | ZERO_PFN, true, ZERO_PFN));
    }

    @Test
    void entriesBecomeMergedRuns() {
        // a recorded pagemap of 10 pages: data, data, zero page, none, swapped, data, file, data, none, data
        long[] entries = {PRESENT | 7, PRESENT | 8, PRESENT | ZERO_PFN, 0, SWAPPED | 3, PRESENT | 9, PRESENT | FILE | 5,
            PRESENT | 11, 0, PRESENT | 12};
        long base = 0x7f0000000000L;
        PageRuns anon = new PageRuns(PS);
        PageSelection.fromEntries(base, entries, entries.length, PS, false, ZERO_PFN, anon);
        assertEquals("[0x7f0000000000+2, 0x7f0000004000+4, 0x7f0000009000+1]", anon.toString());
        assertEquals(7, anon.totalPages());
        PageRuns file = new PageRuns(PS);
        PageSelection.fromEntries(base, entries, entries.length, PS, true, ZERO_PFN, file);
        assertEquals("[0x7f0000000000+2, 0x7f0000004000+2, 0x7f0000007000+1, 0x7f0000009000+1]", file.toString());
    }

    @Test
    void scanMasksMatchTheKernelFilterLikeTheEntryRule() {
        long present = Pagemap.PAGE_IS_PRESENT;
        long swapped = Pagemap.PAGE_IS_SWAPPED;
        long file = Pagemap.PAGE_IS_FILE;
        long zero = Pagemap.PAGE_IS_PFNZERO;
        long written = Pagemap.PAGE_IS_WRITTEN;
        assertTrue(PageSelection.scanMatches(present | written, false));
        assertTrue(PageSelection.scanMatches(swapped, false));
        assertTrue(PageSelection.scanMatches(present | file, false), "anonymous VMAs keep every present page");
        assertFalse(PageSelection.scanMatches(present | zero, false));
        assertFalse(PageSelection.scanMatches(written, false), "neither present nor swapped");
        assertFalse(PageSelection.scanMatches(0, false));
        assertTrue(PageSelection.scanMatches(present, true));
        assertTrue(PageSelection.scanMatches(swapped, true));
        assertFalse(PageSelection.scanMatches(present | file, true));
        assertFalse(PageSelection.scanMatches(present | zero, true));
        assertNotEquals(0, PageSelection.scanRequest(0, PS, false).returnMask());
    }

    @Test
    void runsMergeOnlyWhenAdjacent() {
        PageRuns r = new PageRuns(PS);
        r.add(0x1000, 1);
        r.add(0x2000, 2);
        r.add(0x5000, 1);
        r.add(0x6000, 0);
        assertEquals("[0x1000+3, 0x5000+1]", r.toString());
        r.clear();
        assertEquals(0, r.count());
    }

    /** Written pages 0, 1, 5; page 3 only read (the zero page); the rest never touched. */
    @Test
    void skipsReadOnlyZeroPagesOfOwnMemoryWithBothMethods() {
        long ps = Posix.pageSize();
        PageBuffer mem = Posix.mmapAnonymous(8 * ps);
        try {
            mem.putLong(0, 1);
            mem.putLong(ps, 2);
            mem.putLong(5 * ps, 3);
            assertEquals(0, mem.getByte(3 * ps));
            long base = mem.address();
            String expected = "[0x" + Long.toHexString(base) + "+2, 0x" + Long.toHexString(base + 5 * ps) + "+1]";

            try (PageScanner entries = PageScanner.open(0, false)) {
                org.junit.jupiter.api.Assumptions.assumeTrue(entries.zeroPagePfn() != PageSelection.UNKNOWN_PFN,
                        "pagemap hides pfns here (needs CAP_SYS_ADMIN)");
                PageRuns runs = new PageRuns(ps);
                entries.select(base, base + 8 * ps, false, runs);
                assertEquals(expected, runs.toString(), "pagemap entries");
            }
            Requires.pagemapScan();
            try (PageScanner scan = PageScanner.open(0, true)) {
                PageRuns runs = new PageRuns(ps);
                scan.select(base, base + 8 * ps, false, runs);
                assertEquals(expected, runs.toString(), "PAGEMAP_SCAN");
            }
        } finally {
            Posix.munmap(mem);
        }
    }

    /**
     * Under a userfaultfd with WP_ASYNC | WP_UNPOPULATED (as the pagemap-scan tracker arms it) a
     * never-touched page carries a PTE marker, which PAGEMAP_SCAN reports as swapped: the scanner
     * hands those runs out separately (swapOnly) so that a store can drop them.
     */
    @Test
    void markersOfNeverTouchedPagesComeBackAsSwappedOnly() {
        Requires.pagemapScan();
        Requires.userfaultfd();
        long ps = Posix.pageSize();
        PageBuffer mem = Posix.mmapAnonymous(8 * ps);
        try (dev.lazypages.ffm.Userfaultfd uffd = dev.lazypages.ffm.Userfaultfd.open(true)) {
            mem.putLong(0, 1);
            mem.putLong(ps, 2);
            long base = mem.address();
            uffd.api(dev.lazypages.ffm.Userfaultfd.FEATURE_WP_ASYNC | dev.lazypages.ffm.Userfaultfd.FEATURE_WP_UNPOPULATED);
            uffd.register(base, 8 * ps, dev.lazypages.ffm.Userfaultfd.REGISTER_MODE_WP);
            uffd.writeProtect(base, 8 * ps, true, false);
            try (PageScanner scan = PageScanner.open(0, true)) {
                PageRuns runs = new PageRuns(ps);
                PageRuns swapOnly = new PageRuns(ps);
                scan.select(base, base + 8 * ps, false, runs, swapOnly);
                assertEquals("[0x" + Long.toHexString(base) + "+8]", runs.toString(), "markers read as swapped pages");
                assertEquals("[0x" + Long.toHexString(base + 2 * ps) + "+6]", swapOnly.toString());
            }
        } finally {
            Posix.munmap(mem);
        }
    }

    @Test
    void coalesceFillsOnlyTheSmallGaps() {
        PageSpans s = new PageSpans.Builder().add(0x10000, 0x11000).add(0x13000, 0x14000).add(0x40000, 0x41000).build();
        assertEquals(new PageSpans.Builder().add(0x10000, 0x14000).add(0x40000, 0x41000).build(),
                PageStore.coalesce(s, 2 * PS));
        assertEquals(s, PageStore.coalesce(s, PS));
        assertEquals(new PageSpans.Builder().add(0x10000, 0x41000).build(), PageStore.coalesce(s, 0x40000));
    }
}
