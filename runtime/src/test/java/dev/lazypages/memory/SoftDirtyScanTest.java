package dev.lazypages.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Pagemap;
import dev.lazypages.proc.ProcMaps;
import dev.lazypages.proc.Vma;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Soft-dirty selection on recorded pagemap data (this kernel has no soft-dirty to test it live). */
class SoftDirtyScanTest {
    /** The parsed resource: VMAs, entries by page address, the expected runs. */
    record Recording(List<Vma> vmas, Map<Long, Long> entries, PageRanges dirty, PageRanges populated) {
        /** An EntryReader over the recorded entries that also logs the ranges it was asked for. */
        SoftDirtyScan.EntryReader reader(List<long[]> asked) {
            return (start, count, out) -> {
                asked.add(new long[] {start, count});
                for (int i = 0; i < count; i++) {
                    out[i] = entries.getOrDefault(start + i * PageRanges.PAGE_SIZE, 0L);
                }
            };
        }
    }

    static Recording load(String resource) throws IOException {
        String text;
        try (InputStream in = SoftDirtyScanTest.class.getResourceAsStream(resource)) {
            text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        List<Vma> vmas = new ArrayList<>();
        Map<Long, Long> entries = new HashMap<>();
        PageRanges.Builder dirty = PageRanges.builder();
        PageRanges.Builder populated = PageRanges.builder();
        for (String line : text.split("\n")) {
            if (line.isBlank() || line.startsWith("#")) {
                continue;
            }
            String[] w = line.split("\\s+", 2);
            switch (w[0]) {
                case "maps" -> vmas.addAll(ProcMaps.parseMaps(w[1], resource));
                case "entry" -> {
                    String[] a = w[1].split("\\s+");
                    String[] at = a[0].split("\\+");
                    long addr = Long.parseUnsignedLong(at[0], 16);
                    int n = at.length > 1 ? Integer.parseInt(at[1]) : 1;
                    for (int i = 0; i < n; i++) {
                        entries.put(addr + i * PageRanges.PAGE_SIZE, Long.parseUnsignedLong(a[1], 16));
                    }
                }
                case "dirty", "populated" -> {
                    String[] r = w[1].strip().split("-");
                    (w[0].equals("dirty") ? dirty : populated).add(Long.parseUnsignedLong(r[0], 16), Long.parseUnsignedLong(r[1], 16));
                }
                default -> throw new IllegalArgumentException(resource + ": unknown line " + line);
            }
        }
        return new Recording(vmas, entries, dirty.build(), populated.build());
    }

    @Test
    void reportsExactlyTheSoftDirtyPagesOfWritablePrivateVmas() throws IOException {
        Recording rec = load("softdirty-pagemap.txt");
        assertEquals(8, rec.vmas().size());
        List<long[]> asked = new ArrayList<>();
        PageRanges dirty = SoftDirtyScan.dirty(rec.vmas(), rec.reader(asked));
        assertEquals(rec.dirty(), dirty);
        assertEquals(1 + 1 + 2 + 2 + 16 + 1, dirty.pageCount());
        // only the tracked VMAs were read: .data, [heap], the new anonymous one, [stack]
        assertEquals(4, asked.size());
        for (long[] a : asked) {
            Vma v = rec.vmas().stream().filter(x -> x.start() == a[0]).findFirst().orElseThrow();
            assertTrue(TrackedVmas.tracked(v), "read entries of untracked " + v);
            assertEquals(v.size() / PageRanges.PAGE_SIZE, a[1]);
        }
    }

    @Test
    void thePopulatedSelectionTakesPresentAndSwappedPages() throws IOException {
        Recording rec = load("softdirty-pagemap.txt");
        assertEquals(rec.populated(), SoftDirtyScan.select(rec.vmas(), rec.reader(new ArrayList<>()), false));
    }

    @Test
    void decidesOnBit55Alone() {
        assertTrue(SoftDirtyScan.dirty(Pagemap.PM_SOFT_DIRTY));
        assertTrue(SoftDirtyScan.dirty(Pagemap.PM_SWAPPED | Pagemap.PM_SOFT_DIRTY | 0x41));
        assertFalse(SoftDirtyScan.dirty(Pagemap.PM_PRESENT | Pagemap.PM_MMAP_EXCLUSIVE | 0x1234));
        assertFalse(SoftDirtyScan.dirty(0));
    }

    @Test
    void runsAcrossReadChunksAreJoined() {
        long ps = PageRanges.PAGE_SIZE;
        long start = 0x7f00_0000_0000L;
        int pages = SoftDirtyScan.CHUNK + 3;
        Vma big = PageRangesTest.vma(start, start + pages * ps, "");
        Map<Long, Long> entries = new HashMap<>();
        entries.put(start + (SoftDirtyScan.CHUNK - 1) * ps, Pagemap.PM_PRESENT | Pagemap.PM_SOFT_DIRTY);
        entries.put(start + SoftDirtyScan.CHUNK * ps, Pagemap.PM_PRESENT | Pagemap.PM_SOFT_DIRTY);
        entries.put(start + (pages - 1) * ps, Pagemap.PM_SOFT_DIRTY);
        List<long[]> asked = new ArrayList<>();
        PageRanges dirty = SoftDirtyScan.dirty(List.of(big), new Recording(List.of(big), entries, null, null).reader(asked));
        assertEquals(PageRanges.builder().addPages(start + (SoftDirtyScan.CHUNK - 1) * ps, 2).addPages(start + (pages - 1) * ps, 1).build(),
                dirty);
        assertEquals(2, asked.size(), "two reads: a full chunk and the rest");
    }
}
