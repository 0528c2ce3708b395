package dev.lazypages.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.proc.Vma;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

class PageRangesTest {
    private static final long P = PageRanges.PAGE_SIZE;

    /** Runs given in page numbers: {a, b, c, d} is [a, b) and [c, d). */
    private static PageRanges pages(long... bounds) {
        PageRanges.Builder b = PageRanges.builder();
        for (int i = 0; i < bounds.length; i += 2) {
            b.add(bounds[i] * P, bounds[i + 1] * P);
        }
        return b.build();
    }

    private static BitSet bits(PageRanges r) {
        BitSet s = new BitSet();
        for (PageRanges.Run run : r) {
            s.set((int) (run.start() / P), (int) (run.end() / P));
        }
        return s;
    }

    private static PageRanges fromBits(BitSet s) {
        PageRanges.Builder b = PageRanges.builder();
        for (int i = s.nextSetBit(0); i >= 0; i = s.nextSetBit(i + 1)) {
            b.add(i * P, (i + 1) * P); // page by page, adjacent: the builder must merge
        }
        return b.build();
    }

    @Test
    void mergesAdjacentAndOverlappingRunsAddedInAnyOrder() {
        PageRanges r = pages(10, 12, 0, 2, 2, 3, 11, 15, 20, 21, 1, 2);
        assertEquals(3, r.runCount());
        assertEquals(pages(0, 3, 10, 15, 20, 21), r);
        assertEquals(3 + 5 + 1, r.pageCount());
        assertEquals(9 * P, r.byteCount());
        assertEquals(List.of(new PageRanges.Run(0, 3 * P), new PageRanges.Run(10 * P, 15 * P), new PageRanges.Run(20 * P, 21 * P)),
                toList(r));
        assertEquals(r.hashCode(), pages(0, 3, 10, 15, 20, 21).hashCode());
    }

    @Test
    void emptyRunsVanishAndMisalignedOnesAreRefused() {
        assertSame(PageRanges.EMPTY, PageRanges.of(P, P));
        assertTrue(PageRanges.EMPTY.isEmpty());
        assertEquals(0, PageRanges.EMPTY.pageCount());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> PageRanges.of(0x1001, 0x3000));
        assertEquals("page run 0x1001-0x3000 is not page aligned", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> PageRanges.of(3 * P, P));
    }

    @Test
    void setOperations() {
        PageRanges a = pages(0, 4, 8, 12, 20, 30);
        PageRanges b = pages(2, 9, 11, 21, 29, 40);
        assertEquals(pages(0, 40), a.union(b));
        assertEquals(pages(2, 4, 8, 9, 11, 12, 20, 21, 29, 30), a.intersect(b));
        assertEquals(pages(0, 2, 9, 11, 21, 29), a.subtract(b));
        assertEquals(pages(4, 8, 12, 20, 30, 40), b.subtract(a));
        assertEquals(PageRanges.EMPTY, a.subtract(a));
        assertEquals(a, a.subtract(PageRanges.EMPTY));
        assertEquals(pages(9, 12), a.intersect(9 * P, 13 * P).union(pages(9, 11)));
    }

    @Test
    void setOperationsAgreeWithBitSetsOnRandomSets() {
        Random rnd = new Random(7);
        for (int round = 0; round < 500; round++) {
            BitSet x = randomBits(rnd);
            BitSet y = randomBits(rnd);
            PageRanges a = fromBits(x);
            PageRanges b = fromBits(y);
            assertEquals(x, bits(a));
            BitSet or = (BitSet) x.clone();
            or.or(y);
            BitSet and = (BitSet) x.clone();
            and.and(y);
            BitSet andNot = (BitSet) x.clone();
            andNot.andNot(y);
            assertEquals(fromBits(or), a.union(b), "union of " + a + " and " + b);
            assertEquals(fromBits(and), a.intersect(b), "intersection of " + a + " and " + b);
            assertEquals(fromBits(andNot), a.subtract(b), a + " minus " + b);
            assertEquals(x.cardinality(), a.pageCount());
            int probe = rnd.nextInt(200);
            assertEquals(x.get(probe), a.contains(probe * P + 17));
        }
    }

    private static BitSet randomBits(Random rnd) {
        BitSet s = new BitSet();
        int n = rnd.nextInt(12);
        for (int i = 0; i < n; i++) {
            int start = rnd.nextInt(200);
            s.set(start, Math.min(200, start + 1 + rnd.nextInt(20)));
        }
        return s;
    }

    @Test
    void containsAndContainsAll() {
        PageRanges r = pages(2, 5, 9, 10);
        assertFalse(r.contains(2 * P - 1));
        assertTrue(r.contains(2 * P));
        assertTrue(r.contains(5 * P - 1));
        assertFalse(r.contains(5 * P));
        assertTrue(r.containsAll(2 * P, 5 * P));
        assertFalse(r.containsAll(2 * P, 6 * P));
        assertFalse(r.containsAll(4 * P, 10 * P));
        assertTrue(r.intersects(4 * P, 10 * P));
        assertFalse(r.intersects(5 * P, 9 * P));
        assertEquals(1, r.runContaining(9 * P));
        assertEquals(-1, r.runContaining(7 * P));
    }

    @Test
    void intersectsWithVmasAndComparesAddressesUnsigned() {
        Vma heap = vma(0x5555_0000_0000L, 0x5555_0001_0000L, "[heap]");
        Vma vsyscall = vma(0xffff_ffff_ff60_0000L, 0xffff_ffff_ff60_1000L, "[vsyscall]");
        PageRanges all = PageRanges.ofVmas(List.of(vsyscall, heap));
        assertEquals(2, all.runCount());
        assertEquals(heap.start(), all.start(0), "the address above 2^63 sorts last");
        assertEquals(vsyscall.start(), all.start(1));
        PageRanges some = PageRanges.builder().add(0x5555_0000_f000L, 0x5555_0002_0000L).add(vsyscall.start(), vsyscall.end()).build();
        assertEquals(PageRanges.builder().add(0x5555_0000_f000L, 0x5555_0001_0000L).add(vsyscall.start(), vsyscall.end()).build(),
                some.intersect(List.of(heap, vsyscall)));
        assertEquals(PageRanges.of(0x5555_0001_0000L, 0x5555_0002_0000L), some.subtract(all));
        assertTrue(all.contains(0xffff_ffff_ff60_0800L));
    }

    @Test
    void toStringShowsRunsAndPages() {
        assertEquals("[0x1000-0x3000, 0x8000-0x9000] (3 pages)",
                PageRanges.builder().add(0x8000, 0x9000).add(0x1000, 0x3000).build().toString());
        assertEquals("[] (0 pages)", PageRanges.EMPTY.toString());
    }

    @Test
    void forEachRunVisitsRunsInOrder() {
        List<Long> seen = new ArrayList<>();
        pages(5, 6, 1, 2).forEachRun((s, e) -> {
            seen.add(s / P);
            seen.add(e / P);
        });
        assertEquals(List.of(1L, 2L, 5L, 6L), seen);
    }

    static Vma vma(long start, long end, String path) {
        return new Vma(start, end, true, true, false, false, 0, 0, 0, 0, path, null);
    }

    private static List<PageRanges.Run> toList(PageRanges r) {
        List<PageRanges.Run> out = new ArrayList<>();
        r.forEach(out::add);
        return out;
    }
}
