package dev.lazypages.perf;

import dev.lazypages.ffm.Pagemap;
import dev.lazypages.memory.PageRanges;
import dev.lazypages.memory.SoftDirtyScan;

/**
 * The {@code pagemap-read} baseline of {@code lazy-bench tracker}: every 64-bit
 * /proc/PID/pagemap entry of the tracked memory read ({@link SoftDirtyScan#CHUNK} entries per
 * call) and tested, which is what a soft-dirty collect costs apart from clear_refs. The test is
 * "populated" (present or swapped, {@link Pagemap#populated}), as the runtime's package-private
 * {@code SoftDirtyScan.select(vmas, reader, false)} does; the cost is that of reading the entries,
 * whatever bit is tested. Pure apart from the reader.
 */
final class PagemapRead {
    private PagemapRead() {
    }

    /** The populated pages of {@code memory}, read through {@code reader} (e.g. {@code pagemap::read}). */
    static PageRanges populated(PageRanges memory, SoftDirtyScan.EntryReader reader) {
        long ps = PageRanges.PAGE_SIZE;
        long[] entries = new long[SoftDirtyScan.CHUNK];
        PageRanges.Builder out = PageRanges.builder();
        for (PageRanges.Run r : memory) {
            long at = r.start();
            while (Long.compareUnsigned(at, r.end()) < 0) {
                int n = (int) Math.min(SoftDirtyScan.CHUNK, (r.end() - at) / ps);
                reader.read(at, n, entries);
                int i = 0;
                while (i < n) {
                    if (!Pagemap.populated(entries[i])) {
                        i++;
                        continue;
                    }
                    int first = i;
                    while (i < n && Pagemap.populated(entries[i])) {
                        i++;
                    }
                    out.add(at + first * ps, at + i * ps);
                }
                at += n * ps;
            }
        }
        return out.build();
    }
}
