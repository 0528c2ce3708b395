package dev.lazypages.dump;

import dev.lazypages.ffm.Pagemap;

/**
 * Which pages of a VMA a dump stores (docs/IMAGE.md, Memory): of anonymous memory every page
 * that is present or swapped, except pages mapped to the shared zero page; of a private file
 * mapping only pages that are anonymous copies (present without PM_FILE, or swapped), since
 * the rest is in the file. Pages never populated are not stored.
 *
 * <p>Two sources say the same thing: PAGEMAP_SCAN categories (Linux 6.7+), filtered by the
 * kernel with the masks of {@link #scanRequest}, and the 64-bit entries of /proc/PID/pagemap,
 * filtered here by {@link #wanted}. The kernel's filter, mirrored by {@link #scanMatches}, is
 * {@code c ^= inverted; (c & mask) == mask && (anyof == 0 || (c & anyof) != 0)}
 * ({@code fs/proc/task_mmu.c}, pagemap_scan_is_interesting_page).
 */
final class PageSelection {
    /** Categories reported back: any constant set merges neighbouring matches into one region. */
    static final long RETURN_MASK = Pagemap.PAGE_IS_PRESENT | Pagemap.PAGE_IS_SWAPPED;
    /** Zero-page pfn unknown (no CAP_SYS_ADMIN: pagemap shows pfn 0): present pages are all stored. */
    static final long UNKNOWN_PFN = -1;

    private PageSelection() {
    }

    /** Must be clear: the zero page always, the page cache too for private file mappings. */
    static long excluded(boolean privateFile) {
        return Pagemap.PAGE_IS_PFNZERO | (privateFile ? Pagemap.PAGE_IS_FILE : 0);
    }

    /** The PAGEMAP_SCAN request for the pages of [start, end) to store. */
    static Pagemap.ScanRequest scanRequest(long start, long end, boolean privateFile) {
        long excluded = excluded(privateFile);
        return new Pagemap.ScanRequest(start, end, 0, 0, excluded, excluded,
                Pagemap.PAGE_IS_PRESENT | Pagemap.PAGE_IS_SWAPPED, RETURN_MASK);
    }

    /** The kernel's PAGEMAP_SCAN filter applied to a page's {@code categories}, with our request's masks. */
    static boolean scanMatches(long categories, boolean privateFile) {
        Pagemap.ScanRequest r = scanRequest(0, 0, privateFile);
        long c = categories ^ r.categoryInverted();
        return (c & r.categoryMask()) == r.categoryMask()
                && (r.categoryAnyofMask() == 0 || (c & r.categoryAnyofMask()) != 0);
    }

    /** Whether the page with pagemap {@code entry} is stored; {@code zeroPfn} is {@link #UNKNOWN_PFN} when unknown. */
    static boolean wanted(long entry, boolean privateFile, long zeroPfn) {
        boolean present = Pagemap.present(entry);
        if (!present && !Pagemap.swapped(entry)) {
            return false;
        }
        if (present && zeroPfn != UNKNOWN_PFN && (entry & Pagemap.PM_PFN_MASK) == zeroPfn) {
            return false;
        }
        return !privateFile || (entry & Pagemap.PM_FILE) == 0;
    }

    /** Adds the wanted pages among {@code count} pagemap entries, the first at {@code start}, to {@code out}. */
    static void fromEntries(long start, long[] entries, int count, long pageSize, boolean privateFile, long zeroPfn,
                            PageRuns out) {
        int i = 0;
        while (i < count) {
            if (!wanted(entries[i], privateFile, zeroPfn)) {
                i++;
                continue;
            }
            int first = i;
            while (i < count && wanted(entries[i], privateFile, zeroPfn)) {
                i++;
            }
            out.add(start + first * pageSize, i - first);
        }
    }
}
