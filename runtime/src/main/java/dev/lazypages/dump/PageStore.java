package dev.lazypages.dump;

import dev.lazypages.ffm.Features;
import dev.lazypages.image.ImageWriter;
import dev.lazypages.proc.Vma;
import java.io.IOException;
import java.util.List;
import java.util.Locale;
import java.util.function.Consumer;

/**
 * Stores the pages of a process into an image, whole or incrementally against a parent image.
 *
 * <p>For each VMA the pages to store are selected as always ({@link PageSelection}); of those,
 * a page is written IN_PARENT when the parent image holds it ({@code parentHeld}) and the
 * tracker did not see it written since the parent was taken ({@code dirty}); every other
 * selected page is copied (PRESENT). Pages the parent held that are no longer selected (freed,
 * unmapped) are simply absent. So a page is left to the parent only when both facts hold, and
 * an unknown or new page is always copied.
 */
final class PageStore {
    private static final double MIB = 1024.0 * 1024.0;
    /** Progress is reported every this many bytes of pages. */
    private static final long REPORT_EVERY = 64L << 20;

    /**
     * What was stored.
     *
     * @param copied   pages stored PRESENT
     * @param inParent pages stored IN_PARENT
     * @param held     every page the image now holds (PRESENT or IN_PARENT): the next image's {@code parentHeld}
     * @param nanos    time spent
     * @param remote   pages recorded REMOTE instead of copied (a lazy final dump); empty otherwise
     * @param scanned  bytes of address space whose page tables were scanned to select the pages
     */
    record Stats(long copied, long inParent, PageSpans held, long nanos, PageSpans remote, long scanned) {
    }

    /**
     * What the dirty tracker lets a store assume when it selects pages ({@link #NONE}: nothing,
     * every VMA is scanned and every selected page stored).
     *
     * @param markers     the tracker leaves uffd-wp PTE markers on the never-touched pages of
     *                    the memory it tracks (pagemap-scan, with WP_UNPOPULATED), and
     *                    PAGEMAP_SCAN reports a marker as swapped, like a page in swap: of the
     *                    swapped-only pages of tracked memory, only those the parent holds or the
     *                    tracker saw written are selected. A page in swap that is neither was not
     *                    populated when the tracker was armed (the arm round selects before it
     *                    arms, see {@code preselected}) and was not written since: it cannot be
     *                    in swap, so it is a marker. In a private file mapping a written page that
     *                    the process frees with madvise(DONTNEED) reads the file again and gets a
     *                    marker too (anonymous memory gets an empty PTE, which reads as written):
     *                    there a swapped-only page is never left IN_PARENT, it is read as it is
     * @param trustHeld   the process is frozen and was collected after it froze (a final dump):
     *                    a page of tracked anonymous memory that the parent holds and the tracker
     *                    did not see written is populated as the parent has it, because every way
     *                    an anonymous page goes away (madvise DONTNEED, reclaim after MADV_FREE)
     *                    leaves an empty PTE that the tracker reports written, or no VMA. Those
     *                    pages are left IN_PARENT without a pagemap scan; only the dirty pages,
     *                    untracked memory and private file mappings (where DONTNEED leaves a
     *                    marker, not an empty PTE) are scanned. Needs an incremental store
     * @param preselected the pages selected before the tracker was armed, while frozen (the arm
     *                    round: no markers yet), used instead of a scan and clipped to the VMAs
     *                    read since; null: scan
     */
    record Hints(boolean markers, boolean trustHeld, PageSpans preselected) {
        static final Hints NONE = new Hints(false, false, null);
    }

    /**
     * Dirty runs closer than this many pages are scanned as one range (a PAGEMAP_SCAN ioctl
     * costs more than walking this many clean PTEs; the pages between are not selected).
     */
    static final long SCAN_GAP_PAGES = 256;

    private PageStore() {
    }

    /**
     * Stores the pages of {@code vmas} of {@code pid}.
     *
     * @param dirty      pages written since the parent was taken; {@code null}: every page is dirty
     * @param tracked    the memory the tracker watched (pages outside it count as dirty); {@code null}
     *                   with {@code dirty null}
     * @param parentHeld the pages the parent image holds; {@code null} without a parent
     * @param running    the process runs (pre-dump): pages that vanish while copied are skipped
     */
    static Stats store(int pid, ImageWriter writer, List<Vma> vmas, PageSpans dirty, PageSpans tracked, PageSpans parentHeld,
                       boolean running,
                       Consumer<String> progress) throws IOException {
        return store(pid, writer, vmas, dirty, tracked, parentHeld, running, false, null, Hints.NONE, progress);
    }

    /**
     * As {@link #store(int, ImageWriter, List, PageSpans, PageSpans, PageSpans, boolean, Consumer)};
     * with {@code remote} every page that would be copied is recorded REMOTE instead (its bytes
     * stay in the frozen process, served later): nothing is read, only the pagemap is scanned;
     * the pages of {@code eager} (null: none) that would be REMOTE are copied all the same: the
     * few pages the restore itself writes before the process runs (its threads' rseq areas),
     * which would otherwise cost a fetch from the source while it restores. {@code hints} says
     * what the tracker lets the selection assume.
     */
    static Stats store(int pid, ImageWriter writer, List<Vma> vmas, PageSpans dirty, PageSpans tracked, PageSpans parentHeld,
                       boolean running, boolean remote, PageSpans eager, Hints hints,
                       Consumer<String> progress) throws IOException {
        long t0 = System.nanoTime();
        long eagerCopied = 0;
        long scanned = 0;
        PageSpans.Builder remoteSpans = new PageSpans.Builder();
        long pageSize = writer.pageSize();
        boolean scan = Features.pagemapScan().available();
        boolean incremental = parentHeld != null && !parentHeld.isEmpty() && dirty != null && tracked != null;
        boolean markers = hints.markers() && dirty != null && tracked != null;
        PageSpans none = PageSpans.EMPTY;
        PageSpans.Builder held = new PageSpans.Builder();
        long inParent = 0;
        try (PageScanner scanner = PageScanner.open(pid, scan);
             PageCopier copier = remote ? null : writer.streams()
                     ? new PageCopier(pid, writer, PageCopier.STREAM_BUFFER_PAGES, running, PageCopier.STREAM_BUFFERS)
                     : new PageCopier(pid, writer, PageCopier.DEFAULT_BUFFER_PAGES, running)) {
            PageRuns runs = new PageRuns(pageSize);
            PageRuns swapOnly = new PageRuns(pageSize);
            PageRuns copy = new PageRuns(pageSize);
            long nextReport = REPORT_EVERY;
            for (Vma v : vmas) {
                if (!VmaRecords.hasPages(v)) {
                    continue;
                }
                boolean privateFile = VmaRecords.privateFile(v);
                runs.clear();
                swapOnly.clear();
                PageSpans vHeld = incremental ? parentHeld.clip(v.start(), v.end()) : none;
                PageSpans vTracked = tracked != null ? tracked.clip(v.start(), v.end()) : none;
                PageSpans vDirty = dirty != null ? dirty.clip(v.start(), v.end()) : none;
                PageSpans selected;
                PageSpans swapped = PageSpans.EMPTY; // swapped-only pages, when markers are told apart
                if (hints.preselected() != null) {
                    selected = hints.preselected().clip(v.start(), v.end());
                } else if (hints.trustHeld() && incremental && !privateFile) {
                    PageSpans clean = vHeld.intersect(vTracked).subtract(vDirty);
                    PageSpans toScan = new PageSpans.Builder().add(v.start(), v.end()).build().subtract(vTracked)
                            .union(vDirty.intersect(vTracked));
                    PageSpans windows = coalesce(toScan, SCAN_GAP_PAGES * pageSize);
                    for (int i = 0; i < windows.count(); i++) {
                        scanner.select(windows.start(i), windows.end(i), false, runs);
                        scanned += windows.end(i) - windows.start(i);
                    }
                    selected = PageSpans.of(runs, pageSize).intersect(toScan).union(clean);
                } else {
                    scanner.select(v.start(), v.end(), privateFile, runs, markers ? swapOnly : null);
                    scanned += v.end() - v.start();
                    selected = PageSpans.of(runs, pageSize);
                    if (swapOnly.count() > 0) {
                        swapped = PageSpans.of(swapOnly, pageSize);
                        PageSpans neverTouched = swapped.intersect(vTracked).subtract(vHeld).subtract(vDirty);
                        selected = selected.subtract(neverTouched);
                    }
                }
                if (selected.isEmpty()) {
                    continue;
                }
                held.addAll(selected);
                PageSpans toCopy = selected;
                if (incremental) {
                    PageSpans keep = selected.intersect(vHeld).intersect(vTracked).subtract(vDirty);
                    if (privateFile && !swapped.isEmpty()) {
                        // in a file mapping, madvise(DONTNEED) of a written page leaves a marker (it reads the
                        // file again), not an empty PTE: never IN_PARENT, read as it is now
                        keep = keep.subtract(swapped);
                    }
                    if (!keep.isEmpty()) {
                        for (int i = 0; i < keep.count(); i++) {
                            addInParent(writer, pid, keep.start(i), keep.end(i), pageSize);
                        }
                        inParent += keep.pages(pageSize);
                        toCopy = selected.subtract(keep);
                    }
                }
                if (remote) {
                    PageSpans now = eager == null ? null : toCopy.intersect(eager.clip(v.start(), v.end()));
                    PageSpans later = now == null || now.isEmpty() ? toCopy : toCopy.subtract(now);
                    for (int i = 0; i < later.count(); i++) {
                        addRemote(writer, pid, later.start(i), later.end(i), pageSize);
                        remoteSpans.add(later.start(i), later.end(i));
                    }
                    if (now != null && !now.isEmpty()) {
                        eagerCopied += copyNow(pid, writer, now, v.read(), pageSize);
                    }
                    continue;
                }
                copy.clear();
                for (int i = 0; i < toCopy.count(); i++) {
                    copy.add(toCopy.start(i), (toCopy.end(i) - toCopy.start(i)) / pageSize);
                }
                copier.copy(copy, v.read());
                long done = copier.pagesStored() * pageSize;
                if (done >= nextReport) {
                    progress.accept(String.format(Locale.ROOT, "pages: %.0f MiB", done / MIB));
                    nextReport = (done / REPORT_EVERY + 1) * REPORT_EVERY;
                }
            }
            if (remote) {
                return new Stats(eagerCopied, inParent, held.build(), System.nanoTime() - t0, remoteSpans.build(), scanned);
            }
            copier.flush();
            PageSpans skipped = copier.skipped();
            PageSpans all = held.build();
            return new Stats(copier.pagesStored(), inParent, skipped.isEmpty() ? all : all.subtract(skipped),
                    System.nanoTime() - t0, none, scanned);
        }
    }

    /**
     * The selection of {@link #store} before anything is stored, for the arm round of a tracker
     * that leaves markers ({@link Hints#preselected}): every page to store of {@code vmas}, by a
     * scan of each.
     */
    static PageSpans select(int pid, List<Vma> vmas) {
        try (PageScanner scanner = PageScanner.open(pid, Features.pagemapScan().available())) {
            PageRuns runs = new PageRuns(scanner.pageSize());
            for (Vma v : vmas) {
                if (VmaRecords.hasPages(v)) {
                    scanner.select(v.start(), v.end(), VmaRecords.privateFile(v), runs);
                }
            }
            return PageSpans.of(runs, scanner.pageSize());
        }
    }

    /** {@code spans} with every gap of at most {@code gap} bytes filled in. */
    static PageSpans coalesce(PageSpans spans, long gap) {
        PageSpans.Builder b = new PageSpans.Builder();
        int i = 0;
        while (i < spans.count()) {
            long start = spans.start(i);
            long end = spans.end(i);
            while (i + 1 < spans.count() && Long.compareUnsigned(spans.start(i + 1) - end, gap) <= 0) {
                i++;
                end = spans.end(i);
            }
            b.add(start, end);
            i++;
        }
        return b.build();
    }

    /** Copies {@code spans} (a few pages) into the image now; returns the pages copied. */
    private static long copyNow(int pid, ImageWriter writer, PageSpans spans, boolean readable, long pageSize) throws IOException {
        PageRuns runs = new PageRuns(pageSize);
        long n = 0;
        for (int i = 0; i < spans.count(); i++) {
            runs.add(spans.start(i), (spans.end(i) - spans.start(i)) / pageSize);
            n += (spans.end(i) - spans.start(i)) / pageSize;
        }
        try (PageCopier c = new PageCopier(pid, writer, (int) Math.max(1, n), false)) {
            c.copy(runs, readable);
            c.flush();
            return c.pagesStored();
        }
    }

    private static void addRemote(ImageWriter writer, int pid, long start, long end, long pageSize) {
        long at = start;
        while (at != end) {
            int n = (int) Math.min(Integer.MAX_VALUE / 2, (end - at) / pageSize);
            writer.addRemote(pid, at, n);
            at += n * pageSize;
        }
    }

    private static void addInParent(ImageWriter writer, int pid, long start, long end, long pageSize) {
        long at = start;
        while (at != end) {
            int n = (int) Math.min(Integer.MAX_VALUE / 2, (end - at) / pageSize);
            writer.addInParent(pid, at, n);
            at += n * pageSize;
        }
    }
}
