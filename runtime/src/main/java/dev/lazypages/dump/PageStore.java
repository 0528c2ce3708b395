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
     */
    record Stats(long copied, long inParent, PageSpans held, long nanos, PageSpans remote) {
        Stats(long copied, long inParent, PageSpans held, long nanos) {
            this(copied, inParent, held, nanos, new PageSpans.Builder().build());
        }
    }

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
        return store(pid, writer, vmas, dirty, tracked, parentHeld, running, false, progress);
    }

    /**
     * As {@link #store(int, ImageWriter, List, PageSpans, PageSpans, PageSpans, boolean, Consumer)};
     * with {@code remote} every page that would be copied is recorded REMOTE instead (its bytes
     * stay in the frozen process, served later): nothing is read, only the pagemap is scanned.
     */
    static Stats store(int pid, ImageWriter writer, List<Vma> vmas, PageSpans dirty, PageSpans tracked, PageSpans parentHeld,
                       boolean running, boolean remote,
                       Consumer<String> progress) throws IOException {
        return store(pid, writer, vmas, dirty, tracked, parentHeld, running, remote, null, progress);
    }

    /**
     * As {@link #store(int, ImageWriter, List, PageSpans, PageSpans, PageSpans, boolean, boolean, Consumer)},
     * but with {@code remote} the pages of {@code eager} (null: none) that would be REMOTE are
     * copied all the same: the few pages the restore itself writes before the process runs (its
     * threads' rseq areas), which would otherwise cost a fetch from the source while it restores.
     */
    static Stats store(int pid, ImageWriter writer, List<Vma> vmas, PageSpans dirty, PageSpans tracked, PageSpans parentHeld,
                       boolean running, boolean remote, PageSpans eager,
                       Consumer<String> progress) throws IOException {
        long t0 = System.nanoTime();
        long eagerCopied = 0;
        PageSpans.Builder remoteSpans = new PageSpans.Builder();
        long pageSize = writer.pageSize();
        boolean scan = Features.pagemapScan().available();
        boolean incremental = parentHeld != null && !parentHeld.isEmpty() && dirty != null && tracked != null;
        PageSpans.Builder held = new PageSpans.Builder();
        long inParent = 0;
        try (PageScanner scanner = PageScanner.open(pid, scan);
             PageCopier copier = remote ? null : writer.streams()
                     ? new PageCopier(pid, writer, PageCopier.STREAM_BUFFER_PAGES, running, PageCopier.STREAM_BUFFERS)
                     : new PageCopier(pid, writer, PageCopier.DEFAULT_BUFFER_PAGES, running)) {
            PageRuns runs = new PageRuns(pageSize);
            PageRuns copy = new PageRuns(pageSize);
            long nextReport = REPORT_EVERY;
            for (Vma v : vmas) {
                if (!VmaRecords.hasPages(v)) {
                    continue;
                }
                runs.clear();
                scanner.select(v.start(), v.end(), VmaRecords.privateFile(v), runs);
                if (runs.count() == 0) {
                    continue;
                }
                PageSpans selected = PageSpans.of(runs, pageSize);
                held.addAll(selected);
                PageRuns toCopy = runs;
                if (incremental) {
                    PageSpans keep = selected.intersect(parentHeld.clip(v.start(), v.end()))
                            .intersect(tracked.clip(v.start(), v.end()))
                            .subtract(dirty.clip(v.start(), v.end()));
                    if (!keep.isEmpty()) {
                        for (int i = 0; i < keep.count(); i++) {
                            addInParent(writer, pid, keep.start(i), keep.end(i), pageSize);
                        }
                        inParent += keep.pages(pageSize);
                        PageSpans c = selected.subtract(keep);
                        copy.clear();
                        for (int i = 0; i < c.count(); i++) {
                            copy.add(c.start(i), (c.end(i) - c.start(i)) / pageSize);
                        }
                        toCopy = copy;
                    }
                }
                if (remote) {
                    PageSpans now = eager == null ? null : PageSpans.of(toCopy, pageSize).intersect(eager.clip(v.start(), v.end()));
                    PageSpans later = now == null || now.isEmpty() ? PageSpans.of(toCopy, pageSize)
                            : PageSpans.of(toCopy, pageSize).subtract(now);
                    for (int i = 0; i < later.count(); i++) {
                        addRemote(writer, pid, later.start(i), later.end(i), pageSize);
                        remoteSpans.add(later.start(i), later.end(i));
                    }
                    if (now != null && !now.isEmpty()) {
                        eagerCopied += copyNow(pid, writer, now, v.read(), pageSize);
                    }
                    continue;
                }
                copier.copy(toCopy, v.read());
                long done = copier.pagesStored() * pageSize;
                if (done >= nextReport) {
                    progress.accept(String.format(Locale.ROOT, "pages: %.0f MiB", done / MIB));
                    nextReport = (done / REPORT_EVERY + 1) * REPORT_EVERY;
                }
            }
            if (remote) {
                return new Stats(eagerCopied, inParent, held.build(), System.nanoTime() - t0, remoteSpans.build());
            }
            copier.flush();
            PageSpans skipped = copier.skipped();
            PageSpans all = held.build();
            return new Stats(copier.pagesStored(), inParent, skipped.isEmpty() ? all : all.subtract(skipped),
                    System.nanoTime() - t0);
        }
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
