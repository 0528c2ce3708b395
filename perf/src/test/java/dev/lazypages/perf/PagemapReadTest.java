package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Pagemap;
import dev.lazypages.memory.PageRanges;
import dev.lazypages.memory.SoftDirtyScan;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class PagemapReadTest {
    private static final long PS = PageRanges.PAGE_SIZE;

    @Test
    void keepsPresentAndSwappedPagesReadingEveryEntryOnce() {
        long base = 0x7f0000000000L;
        long pages = SoftDirtyScan.CHUNK + 10; // two reads for the first run
        // present: pages 0-2 and the last page of the first chunk and the first of the next; swapped: page 5
        List<long[]> calls = new ArrayList<>();
        SoftDirtyScan.EntryReader reader = (start, count, out) -> {
            calls.add(new long[] {start, count});
            for (int i = 0; i < count; i++) {
                long page = (start - base) / PS + i;
                long e = 0;
                if (page <= 2 || page == SoftDirtyScan.CHUNK - 1 || page == SoftDirtyScan.CHUNK) {
                    e = Pagemap.PM_PRESENT | 1234;
                } else if (page == 5) {
                    e = Pagemap.PM_SWAPPED;
                } else if (page == 7) {
                    e = Pagemap.PM_SOFT_DIRTY; // soft-dirty alone is not populated
                }
                out[i] = e;
            }
        };
        PageRanges memory = PageRanges.of(base, base + pages * PS).union(PageRanges.of(base + (pages + 4) * PS, base + (pages + 6) * PS));
        PageRanges got = PagemapRead.populated(memory, reader);
        PageRanges want = PageRanges.builder().add(base, base + 3 * PS).add(base + 5 * PS, base + 6 * PS)
                .add(base + (SoftDirtyScan.CHUNK - 1) * PS, base + (SoftDirtyScan.CHUNK + 1) * PS).build();
        assertEquals(want, got);
        // every entry read exactly once: CHUNK + 10 + 2 entries in 3 calls
        assertEquals(3, calls.size());
        assertEquals(pages + 2, calls.stream().mapToLong(c -> c[1]).sum());
        assertTrue(calls.stream().allMatch(c -> c[1] <= SoftDirtyScan.CHUNK));
    }

    @Test
    void nothingPopulatedIsEmpty() {
        PageRanges got = PagemapRead.populated(PageRanges.of(0x10000, 0x10000 + 8 * PS), (s, c, out) -> java.util.Arrays.fill(out, 0, c, 0));
        assertTrue(got.isEmpty());
    }
}
