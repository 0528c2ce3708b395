package dev.lazypages.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Requires;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.Test;

/**
 * /proc/self/pagemap: entries read with pread, and PAGEMAP_SCAN with a userfaultfd in
 * WP_ASYNC mode, the dirty tracking that works without soft-dirty.
 */
class PagemapTest {
    private static final int PAGES = 64;
    private final long ps = Posix.pageSize();

    @Test
    void pagemapScanReportsExactlyThePagesWrittenSinceTheLastScan() {
        Requires.uffdWpAsync();
        Requires.pagemapScan();
        PageBuffer mem = Posix.mmapAnonymous(PAGES * ps);
        long start = mem.address();
        long end = start + mem.byteSize();
        try (Userfaultfd uffd = Userfaultfd.open(true); Pagemap pm = Pagemap.open(0); Arena arena = Arena.ofConfined()) {
            Userfaultfd.Api api = uffd.api(Userfaultfd.FEATURE_WP_ASYNC | Userfaultfd.FEATURE_WP_UNPOPULATED);
            assertTrue(api.has(Userfaultfd.FEATURE_WP_ASYNC | Userfaultfd.FEATURE_WP_UNPOPULATED), api.toString());
            uffd.register(start, mem.byteSize(), Userfaultfd.REGISTER_MODE_WP);
            uffd.writeProtect(start, mem.byteSize(), true, false);

            for (int p : new int[] {3, 17, 40}) {
                mem.putLong(p * ps + 8, 0xD1D1L * p); // WP_ASYNC: the kernel unprotects and records, no message
            }

            Pagemap.Regions out = new Pagemap.Regions(arena, PAGES);
            Pagemap.ScanRequest written = new Pagemap.ScanRequest(start, end,
                    Pagemap.PM_SCAN_WP_MATCHING | Pagemap.PM_SCAN_CHECK_WPASYNC, 0,
                    0, Pagemap.PAGE_IS_WRITTEN, 0, Pagemap.PAGE_IS_WRITTEN);
            assertEquals(3, pm.scan(written, out), "three separate pages, three regions");
            assertEquals(List.of(3, 17, 40), pages(out, start));
            for (int i = 0; i < out.count(); i++) {
                assertEquals(Pagemap.PAGE_IS_WRITTEN, out.categories(i), "return_mask keeps only PAGE_IS_WRITTEN");
            }
            assertEquals(end, out.walkEnd(), "the walk covered the whole range");
            assertFalse(uffd.await(0), "WP_ASYNC writes send no messages");

            assertEquals(0, pm.scan(written, out), "WP_MATCHING protected them again: nothing written since");
            assertEquals(List.of(), pages(out, start));

            mem.putLong(17 * ps, 1);
            mem.putLong(63 * ps + ps - 8, 2);
            assertEquals(List.of(17, 63), pages(out, start, pm.scan(written, out)));

            long[] entries = new long[PAGES];
            pm.read(start, PAGES, entries);
            for (int i = 0; i < PAGES; i++) {
                boolean touched = i == 3 || i == 17 || i == 40 || i == 63;
                assertEquals(touched, Pagemap.present(entries[i]), "present bit of page " + i);
                assertTrue((entries[i] & Pagemap.PM_UFFD_WP) != 0, "every page is write-protected again: page " + i);
                if (!touched) {
                    // A trap worth pinning down: WP_UNPOPULATED protects a never-touched page with a
                    // PTE marker, and pagemap reports markers as swap entries (bit 62), so under
                    // WP_UNPOPULATED "swapped" does not mean "has content".
                    assertTrue((entries[i] & Pagemap.PM_SWAPPED) != 0,
                            "page " + i + ": a uffd-wp marker reads as a swap entry: 0x" + Long.toHexString(entries[i]));
                }
            }
            assertEquals(0xD1D1L * 40, mem.getLong(40 * ps + 8), "the data written is there");
        } finally {
            Posix.munmap(mem);
        }
    }

    @Test
    void aWalkThatFillsTheOutputStopsAndSaysWhere() {
        Requires.pagemapScan();
        PageBuffer mem = Posix.mmapAnonymous(PAGES * ps);
        long start = mem.address();
        try (Pagemap pm = Pagemap.open(0); Arena arena = Arena.ofConfined()) {
            for (int p = 0; p < PAGES; p += 2) {
                mem.putByte(p * ps, (byte) 1); // every other page present: 32 regions
            }
            Pagemap.Regions two = new Pagemap.Regions(arena, 2);
            Pagemap.ScanRequest present = new Pagemap.ScanRequest(start, start + mem.byteSize(), 0, 0,
                    0, Pagemap.PAGE_IS_PRESENT, 0, Pagemap.PAGE_IS_PRESENT);
            assertEquals(2, pm.scan(present, two));
            assertEquals(List.of(0, 2), pages(two, start));
            assertTrue(two.walkEnd() > start + 2 * ps && two.walkEnd() <= start + 4 * ps,
                    "the walk stops at the third present page: walk_end=0x" + Long.toHexString(two.walkEnd()));
        } finally {
            Posix.munmap(mem);
        }
    }

    @Test
    void readShowsPresentOnlyForTouchedPages() {
        PageBuffer mem = Posix.mmapAnonymous(8 * ps);
        try (Pagemap pm = Pagemap.open(0)) {
            mem.putByte(ps, (byte) 7);
            mem.putByte(6 * ps + 100, (byte) 7);
            long[] entries = new long[8];
            pm.read(mem.address(), 8, entries);
            for (int i = 0; i < 8; i++) {
                boolean touched = i == 1 || i == 6;
                assertEquals(touched, Pagemap.present(entries[i]), "page " + i);
                assertEquals(touched, Pagemap.populated(entries[i]), "page " + i);
                assertFalse(Pagemap.swapped(entries[i]), "page " + i);
            }
            assertEquals(entries[1], pm.entry(mem.address() + ps), "entry() reads the same word");
            assertTrue((entries[1] & Pagemap.PM_MMAP_EXCLUSIVE) != 0, "a private anonymous page is exclusively mapped");
        } finally {
            Posix.munmap(mem);
        }
    }

    /**
     * clear_refs 4, then a write: the soft-dirty bit is set exactly when the kernel has
     * CONFIG_MEM_SOFT_DIRTY (this project's reference kernel, 6.18 without it, never sets it,
     * which is why dirty tracking uses PAGEMAP_SCAN with WP_ASYNC).
     */
    @Test
    void softDirtyBitIsReportedExactlyAsTheKernelConfigurationAllows() {
        PageBuffer mem = Posix.mmapAnonymous(ps);
        try (Pagemap pm = Pagemap.open(0)) {
            boolean kernelHasSoftDirty = kernelHasSoftDirty(mem.address());
            Pagemap.clearSoftDirty(0);
            mem.putLong(0, 42);
            long entry = pm.entry(mem.address());
            assertTrue(Pagemap.present(entry));
            assertEquals(kernelHasSoftDirty, Pagemap.softDirty(entry), kernelHasSoftDirty
                    ? "the kernel has CONFIG_MEM_SOFT_DIRTY, so a write after clear_refs sets bit 55"
                    : "this kernel lacks CONFIG_MEM_SOFT_DIRTY: bit 55 is never set (entry 0x" + Long.toHexString(entry) + ")");
            assertEquals((entry >>> 55 & 1) == 1, Pagemap.softDirty(entry), "softDirty() is bit 55");
        } finally {
            Posix.munmap(mem);
        }
    }

    @Test
    void decodesHandMadeEntries() {
        long presentSoftDirtyExclusive = 0x8180000000012345L; // bits 63, 56, 55 and PFN 0x12345
        assertTrue(Pagemap.present(presentSoftDirtyExclusive));
        assertTrue(Pagemap.softDirty(presentSoftDirtyExclusive));
        assertFalse(Pagemap.swapped(presentSoftDirtyExclusive));
        assertTrue(Pagemap.populated(presentSoftDirtyExclusive));
        assertEquals(0x12345L, presentSoftDirtyExclusive & Pagemap.PM_PFN_MASK);
        assertTrue((presentSoftDirtyExclusive & Pagemap.PM_MMAP_EXCLUSIVE) != 0);

        long swapped = 0x4000000000000abcL; // bit 62, swap type and offset in the low bits
        assertFalse(Pagemap.present(swapped));
        assertTrue(Pagemap.swapped(swapped));
        assertTrue(Pagemap.populated(swapped));
        assertFalse(Pagemap.softDirty(swapped));

        long presentWriteProtected = 0x830000000014f4abL; // recorded: bits 63, 57, 56 and a PFN (as root)
        assertTrue(Pagemap.present(presentWriteProtected));
        assertFalse(Pagemap.softDirty(presentWriteProtected));
        assertTrue((presentWriteProtected & Pagemap.PM_UFFD_WP) != 0);
        assertEquals(0x14f4abL, presentWriteProtected & Pagemap.PM_PFN_MASK);

        assertFalse(Pagemap.populated(0));
        assertFalse(Pagemap.softDirty(0));
        assertTrue(Pagemap.softDirty(1L << 55));
        assertFalse(Pagemap.softDirty(~(1L << 55)));
    }

    /** Page numbers (from {@code start}) covered by the regions of the last scan. */
    private List<Integer> pages(Pagemap.Regions out, long start) {
        return pages(out, start, out.count());
    }

    private List<Integer> pages(Pagemap.Regions out, long start, int count) {
        List<Integer> pages = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            for (long a = out.start(i); a < out.end(i); a += ps) {
                pages.add((int) ((a - start) / ps));
            }
        }
        return pages;
    }

    /**
     * Whether the kernel tracks soft-dirty: from its configuration (/proc/config.gz or
     * /boot/config-RELEASE) when it is there, else from /proc/self/smaps, whose VmFlags show
     * "sd" on a fresh mapping exactly when CONFIG_MEM_SOFT_DIRTY is built in.
     */
    private static boolean kernelHasSoftDirty(long mappingStart) {
        Optional<String> config = kernelConfig();
        if (config.isPresent()) {
            return config.get().lines().anyMatch(l -> l.equals("CONFIG_MEM_SOFT_DIRTY=y"));
        }
        try {
            boolean inMapping = false;
            for (String line : Files.readAllLines(Path.of("/proc/self/smaps"))) {
                if (line.matches("^[0-9a-f]+-[0-9a-f]+ .*")) {
                    String[] range = line.substring(0, line.indexOf(' ')).split("-");
                    // the mapping may have merged with a neighbour: look for the one containing it
                    inMapping = Long.compareUnsigned(Long.parseUnsignedLong(range[0], 16), mappingStart) <= 0
                            && Long.compareUnsigned(mappingStart, Long.parseUnsignedLong(range[1], 16)) < 0;
                } else if (inMapping && line.startsWith("VmFlags:")) {
                    return List.of(line.substring(8).trim().split(" ")).contains("sd");
                }
            }
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        throw new AssertionError("no mapping containing 0x" + Long.toHexString(mappingStart) + " in /proc/self/smaps");
    }

    private static Optional<String> kernelConfig() {
        try {
            Path gz = Path.of("/proc/config.gz");
            if (Files.isReadable(gz)) {
                try (InputStream in = new GZIPInputStream(Files.newInputStream(gz))) {
                    return Optional.of(new String(in.readAllBytes(), StandardCharsets.UTF_8));
                }
            }
            Path boot = Path.of("/boot/config-" + Posix.uname().release());
            if (Files.isReadable(boot)) {
                return Optional.of(Files.readString(boot));
            }
        } catch (IOException e) {
            // no configuration to read: fall back to smaps
        }
        return Optional.empty();
    }
}
