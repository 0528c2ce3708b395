package dev.lazypages.memory;

import dev.lazypages.ffm.Pagemap;
import dev.lazypages.proc.Vma;
import java.util.List;

/**
 * The pure part of soft-dirty tracking: which pages of the tracked VMAs have bit 55
 * (PM_SOFT_DIRTY) set in their /proc/PID/pagemap entries (Documentation/admin-guide/mm/soft-dirty.rst).
 *
 * <p>The bit alone decides, whatever bits 61-63 say: a present or swapped page written since
 * the last {@code clear_refs 4} has it, and so has every page, populated or not, of a VMA
 * created or moved since then (the kernel marks such VMAs VM_SOFTDIRTY and pagemap reports
 * their holes soft-dirty), which is exactly "new memory counts as dirty entirely".
 */
public final class SoftDirtyScan {
    /** Entries read per call (512 KiB). */
    public static final int CHUNK = 64 * 1024;

    /** Reads {@code count} pagemap entries from {@code start} into {@code out}; {@link Pagemap#read} is one. */
    @FunctionalInterface
    public interface EntryReader {
        void read(long start, int count, long[] out);
    }

    private SoftDirtyScan() {
    }

    /** Whether the page of {@code entry} counts as written. */
    public static boolean dirty(long entry) {
        return Pagemap.softDirty(entry);
    }

    /** The soft-dirty pages of the tracked VMAs among {@code vmas}. */
    public static PageRanges dirty(List<Vma> vmas, EntryReader reader) {
        return select(vmas, reader, true);
    }

    /**
     * The pages of the tracked VMAs among {@code vmas} whose entries have bit 55 set
     * ({@code softDirty}) or are present or swapped ({@code !softDirty}).
     */
    static PageRanges select(List<Vma> vmas, EntryReader reader, boolean softDirty) {
        long ps = PageRanges.PAGE_SIZE;
        long[] entries = new long[CHUNK];
        PageRanges.Builder out = PageRanges.builder();
        for (Vma v : vmas) {
            if (!TrackedVmas.tracked(v)) {
                continue;
            }
            long at = v.start();
            while (Long.compareUnsigned(at, v.end()) < 0) {
                int n = (int) Math.min(CHUNK, (v.end() - at) / ps);
                reader.read(at, n, entries);
                int i = 0;
                while (i < n) {
                    if (!wanted(entries[i], softDirty)) {
                        i++;
                        continue;
                    }
                    int first = i;
                    while (i < n && wanted(entries[i], softDirty)) {
                        i++;
                    }
                    out.add(at + first * ps, at + i * ps);
                }
                at += n * ps;
            }
        }
        return out.build();
    }

    private static boolean wanted(long entry, boolean softDirty) {
        return softDirty ? dirty(entry) : Pagemap.populated(entry);
    }
}
