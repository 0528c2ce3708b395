package dev.lazypages.dump;

import dev.lazypages.ffm.Posix;
import dev.lazypages.image.ImageFile;
import dev.lazypages.image.ImageWriter;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.ProcessTree;
import dev.lazypages.proc.Proc;
import dev.lazypages.proc.ProcMaps;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.TracerThread;
import dev.lazypages.proc.Vma;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.function.Consumer;

/**
 * The in-process pre-copy API: one process seized for the whole session and ONE dirty tracker
 * alive across rounds, so that every pre-dump after the first stores only the pages written
 * since the previous one (the rest IN_PARENT), and the final dump only what changed since the
 * last pre-dump. Used by {@code pre-copy}, by the standalone {@code pre-dump}, and later by
 * live migration.
 *
 * <pre>
 *   try (PreCopySession s = PreCopySession.start(pid, "auto", progress)) {
 *       s.preDump(dir.resolve("1"));         // freezes only to arm the tracker; copies every page
 *       s.collect();                         // what was dirtied meanwhile (for the policy)
 *       s.preDump(dir.resolve("2"));         // copies the dirty pages, parent ../1
 *       s.finalDump(DumpOptions.of(dir.resolve("final")));  // frozen; parent ../2
 *   }
 * </pre>
 *
 * <p>Invariant behind IN_PARENT: a page of image k that the tracker has not seen written since
 * the collect that started round k reads, through the chain, as it is now. Round 1 copies after
 * arm (its pages selected just before the arm, in the same freeze: a tracker that leaves
 * markers makes never-touched pages look swapped afterwards); round k copies the pages dirtied
 * since round k-1's collect, after collecting them; so a page written during a copy is always in
 * the next collect. A page is left IN_PARENT only when
 * the parent holds it, the tracker watched its memory and did not see it written; everything
 * else selected is copied; pages no longer present are left out.
 *
 * <p>Across separate processes (the standalone CLI) a pagemap-scan tracker cannot survive: its
 * userfaultfd lives in this JVM and its registration ends with it. {@link #adoptParent} then
 * records the parent, and the next round, with a freshly armed tracker, copies every page again
 * (correct, not incremental). Soft-dirty state lives in the kernel (clear_refs), so a later
 * process could read the bits set since the previous one cleared them; this kernel lacks
 * soft-dirty, and that continuation is not built.
 *
 * <p>Not thread-safe; the process runs between calls.
 */
public final class PreCopySession implements AutoCloseable {
    private final int pid;
    private final int pageSize = (int) Posix.pageSize();
    private final Consumer<String> progress;
    private final TracerThread tracer;
    private final SeizedProcess process;
    private final Tracking tracker;
    private boolean armed;
    private boolean durable = true;
    private boolean rehearse;
    private boolean trackerClosed;
    /** The process and the tracer thread belong to a FrozenProcess now. */
    private boolean handedOff;
    private int rounds;
    /** The last image of the chain, and the pages it holds. */
    private Path lastImage;
    private PageSpans held;
    /** Collected dirty pages not stored since {@link #lastImage}, and the memory the last collect watched. */
    private PageSpans pending;
    private PageSpans tracked;
    private long lastCollectAt;
    private double lastRate;
    private long lastScanNanos;

    private PreCopySession(int pid, Consumer<String> progress, TracerThread tracer, SeizedProcess process, Tracking tracker) {
        this.pid = pid;
        this.progress = progress;
        this.tracer = tracer;
        this.process = process;
        this.tracker = tracker;
    }

    /**
     * Seizes {@code pid} (it keeps running) and makes the tracker for {@code trackMem}, not armed yet.
     *
     * @throws IllegalArgumentException      no such process, or a bad mode
     * @throws UnsupportedOperationException the tracker asked for is not available here
     */
    public static PreCopySession start(int pid, String trackMem, Consumer<String> progress) {
        Consumer<String> p = progress != null ? progress : line -> { };
        Dumper.checkTarget(pid, Path.of("/nonexistent-lazy-pages-dir"));
        Trackings.checkMode(trackMem);
        Tracking t = Trackings.create(trackMem, pid);
        TracerThread tracer = new TracerThread("lp-precopy-" + pid);
        try {
            SeizedProcess sp = SeizedProcess.seize(pid, tracer);
            return new PreCopySession(pid, p, tracer, sp, t);
        } catch (RuntimeException | Error e) {
            t.close();
            tracer.close();
            throw e;
        }
    }

    public int pid() {
        return pid;
    }

    /**
     * {@code false}: pre-dumps are not fsynced (see {@link ImageWriter#durable}): for images
     * that are disposable anyway, e.g. live migration's rounds, sent away at once. Default true.
     */
    public PreCopySession durable(boolean d) {
        this.durable = d;
        return this;
    }

    /**
     * {@code true}: the tracker's arm freeze also rehearses the final dump's frozen reads
     * ({@link Dumper#rehearse}: a few ms more of that pause, to save them, cold, in the final
     * freeze). For live migration, whose final dump runs once per JVM. Default false.
     */
    public PreCopySession rehearse(boolean r) {
        this.rehearse = r;
        return this;
    }

    public int pageSize() {
        return pageSize;
    }

    /** The tracker's name (pagemap-scan, soft-dirty, none). */
    public String tracker() {
        return tracker.name();
    }

    /** Why this tracker (for auto), or "asked for". */
    public String trackerReason() {
        return tracker.reason();
    }

    /** Whether every round copies all memory (the none tracker). */
    public boolean copiesEverything() {
        return tracker.reportsEverything();
    }

    /** The last image of the chain, or {@code null}. */
    public Path lastImage() {
        return lastImage;
    }

    /**
     * Makes {@code prev}, an image of this process taken by another session, the parent of the
     * next image. Its tracker is gone, so the next round copies every page (and arms a fresh tracker).
     */
    public void adoptParent(Path prev) {
        if (armed) {
            throw new IllegalStateException("adoptParent after the tracker was armed");
        }
        ParentImage p = ParentImage.load(prev, pid);
        progress.accept("parent " + prev + " was tracked by " + p.tracker() + ", which is not alive in this process: "
                + "re-arming " + tracker.name() + ", every page counts as dirty this round");
        lastImage = prev;
        held = p.held();
    }

    /**
     * What a {@link #collect} found.
     *
     * @param pendingPages dirty pages waiting to be stored (for the none tracker: every page held)
     * @param newPages     pages this collect reported
     * @param rate         pages per second dirtied since the previous collect (or the arm)
     * @param scanNanos    time the collect took
     */
    public record Collect(long pendingPages, long newPages, double rate, long scanNanos) {
    }

    /** Collects the pages dirtied since the last collect (or the arm) into the pending set; the process runs on. */
    public Collect collect() {
        requireArmed("collect");
        if (tracker.reportsEverything()) {
            long all = held != null ? held.pages(pageSize) : 0;
            return new Collect(all, all, 0, 0);
        }
        Tracking.Collected c = tracker.collect();
        long now = System.nanoTime();
        long n = c.dirty().pages(pageSize);
        lastRate = now > lastCollectAt ? n * 1e9 / (now - lastCollectAt) : 0;
        lastCollectAt = now;
        lastScanNanos = c.scanNanos();
        pending = pending == null ? c.dirty() : pending.union(c.dirty());
        tracked = c.tracked();
        return new Collect(pending.pages(pageSize), n, lastRate, c.scanNanos());
    }

    private void requireArmed(String what) {
        if (!armed) {
            throw new IllegalStateException(what + " before the first pre-dump armed the tracker");
        }
        if (trackerClosed) {
            throw new IllegalStateException(what + " after the final dump");
        }
    }

    /**
     * Takes a pre-dump into {@code dir} (created if missing, must be empty): the first freezes
     * the process only to arm the tracker and copies every page; later ones copy the pages
     * dirtied since the previous image (collecting first unless {@link #collect} was just called).
     *
     * @throws DumpException naming the step; the process runs on, the partial image is removed
     */
    public PreDumpResult preDump(Path dir) {
        return preDump(dir, null);
    }

    /**
     * As {@link #preDump(Path)}, but with {@code pagesOut} the pages go there as they are read
     * (pages.img is never written to {@code dir}; the other image files are): a round streamed to
     * the destination while it is taken, copied once from the process into a send buffer.
     */
    public PreDumpResult preDump(Path dir, ImageWriter.PagesOut pagesOut) {
        Objects.requireNonNull(dir, "dir");
        Dumper.checkTarget(pid, dir);
        if (trackerClosed) {
            throw new IllegalStateException("pre-dump after the final dump");
        }
        long t0 = System.nanoTime();
        long frozen = 0;
        PageSpans dirty;
        PageSpans watched;
        long dirtyPages;
        double rate;
        long scan;
        String step = "arm the dirty tracker";
        boolean existed = Files.isDirectory(dir);
        ImageWriter writer = null;
        PageSpans preselected = null;
        try {
            if (!armed) {
                process.freeze();
                long f0 = System.nanoTime();
                try {
                    if (tracker.leavesMarkers()) {
                        // once armed, never-touched pages read as swapped (markers): select before
                        step = "select the pages before arming";
                        preselected = PageStore.select(pid, ProcMaps.read(pid));
                        step = "arm the dirty tracker";
                    }
                    tracker.arm(process);
                    if (rehearse) {
                        Dumper.rehearse(process, progress);
                    }
                } finally {
                    process.thaw();
                    frozen = System.nanoTime() - f0;
                }
                armed = true;
                lastCollectAt = System.nanoTime();
                dirty = null;
                watched = null;
                dirtyPages = -1;
                rate = 0;
                scan = 0;
                progress.accept(String.format(java.util.Locale.ROOT, "armed %s in %.1f ms (process frozen)", tracker.name(),
                        frozen / 1e6));
            } else {
                step = "collect dirty pages";
                if (pending == null) {
                    collect();
                }
                dirty = tracker.reportsEverything() ? null : pending;
                watched = tracked;
                dirtyPages = pending != null ? pending.pages(pageSize) : -1;
                rate = lastRate;
                scan = lastScanNanos;
            }
            step = "read memory mappings";
            List<Vma> vmas = ProcMaps.readSmaps(pid);
            VmaRecords.checkSupported(vmas);
            String exe = Proc.exe(pid);
            String parent = lastImage != null ? ParentImage.relative(dir, lastImage) : "";
            step = "create the image in " + dir;
            Inventory inv = Dumper.inventory(pid, pageSize, Inventory.Kind.PRE_DUMP, parent, tracker.name());
            writer = (pagesOut != null ? ImageWriter.create(dir, inv, pagesOut) : ImageWriter.create(dir, inv)).durable(durable);
            step = "store pages";
            long c0 = System.nanoTime();
            PageStore.Hints hints = new PageStore.Hints(tracker.leavesMarkers(), false, preselected);
            PageStore.Stats s = PageStore.store(pid, writer, vmas, dirty, watched, held, true, false, null, hints, progress);
            long copyNanos = System.nanoTime() - c0;
            step = "write the image";
            Process proc = Process.newBuilder().setPid(pid).setExe(exe)
                    .addAllVmas(vmas.stream().map(VmaRecords::toImage).toList()).build();
            writer.finish(ProcessTree.newBuilder().addProcesses(proc).build());
            closeQuietly(writer);
            rounds++;
            lastImage = dir;
            held = s.held();
            pending = null;
            return new PreDumpResult(pid, dir, rounds, s.copied(), s.inParent(), pageSize, frozen, copyNanos, scan,
                    dirtyPages < 0 ? s.copied() : dirtyPages, rate, parent, tracker.name(), System.nanoTime() - t0);
        } catch (DumpException e) {
            removePartial(e, writer, dir, existed);
            throw e;
        } catch (Exception | Error e) {
            removePartial(e, writer, dir, existed);
            throw new DumpException(pid, step, e);
        }
    }

    private static void removePartial(Throwable cause, ImageWriter writer, Path dir, boolean existed) {
        if (writer != null) {
            closeQuietly(writer);
        }
        try {
            for (ImageFile.Kind k : ImageFile.Kind.values()) {
                Files.deleteIfExists(dir.resolve(k.fileName()));
            }
            if (!existed) {
                Files.deleteIfExists(dir);
            }
        } catch (IOException e) {
            cause.addSuppressed(e);
        }
    }

    private static void closeQuietly(ImageWriter w) {
        try {
            w.close();
        } catch (IOException e) {
            // a temporary file stays behind: harmless
        }
    }

    /**
     * The final dump, frozen, into {@code options.imagesDir()} with the last pre-dump as parent:
     * the tracker is collected once more while frozen and only pages dirty since the last image
     * (with those collected but not yet stored) are copied. Ends the session's tracking; the
     * process is killed, or thawed and detached with {@link DumpOptions#leaveRunning}.
     */
    public DumpResult finalDump(DumpOptions options) {
        requireArmed("final dump");
        String parent = lastImage != null ? ParentImage.relative(options.imagesDir(), lastImage) : "";
        boolean live = !tracker.reportsEverything();
        Dumper.Plan plan = new Dumper.Plan(parent, lastImage != null ? held : null, live ? tracker : null,
                live ? pending : null, tracker.name());
        DumpResult r = Dumper.finalDump(process, options, plan.withPrep(FreezePrep.read(pid)));
        trackerClosed = true;
        if (!live) {
            tracker.close();
        }
        return r;
    }

    /**
     * The lazy final dump (post-copy, or hybrid after pre-dumps) into {@code options.imagesDir()}:
     * frozen like {@link #finalDump}, but every page it would copy is recorded REMOTE instead, so
     * the freeze reads no page contents. Without any pre-dump (post-copy: the tracker was never
     * armed) every selected page is REMOTE and the image has no parent; after pre-dumps the pages
     * dirty since the last image (plus any not IN_PARENT) are REMOTE, the rest IN_PARENT of the
     * last pre-dump. The scratch page is unmapped before it returns (the tracker is closed by the FrozenProcess at its end); the
     * process stays FROZEN and seized, owned from here on by the returned {@link FrozenProcess}
     * (closing this session no longer touches it). {@link DumpOptions#leaveRunning} is ignored.
     *
     * @throws DumpException naming the step; the process was thawed and stays with this session
     */
    public FrozenProcess finalDumpLazy(DumpOptions options) {
        return finalDumpLazy(options, null);
    }

    /**
     * As {@link #finalDumpLazy(DumpOptions)}, with what {@code prep} read before the freeze (see
     * {@link FreezePrep}); the live tracker is handed to the returned {@link FrozenProcess}, which
     * closes it once the process is killed or resumed (unregistering walks every tracked page:
     * not in the frozen window).
     */
    public FrozenProcess finalDumpLazy(DumpOptions options, FreezePrep prep) {
        if (trackerClosed) {
            throw new IllegalStateException("final dump after the final dump");
        }
        Dumper.Plan plan;
        boolean live = armed && !tracker.reportsEverything();
        if (!armed) {
            plan = new Dumper.Plan("", null, null, null, tracker.name(), prep);
        } else {
            String parent = lastImage != null ? ParentImage.relative(options.imagesDir(), lastImage) : "";
            plan = new Dumper.Plan(parent, lastImage != null ? held : null, live ? tracker : null, live ? pending : null,
                    tracker.name(), prep);
        }
        FrozenProcess f = Dumper.finalDumpLazy(process, options, prep != null ? plan : plan.withPrep(FreezePrep.read(pid)));
        trackerClosed = true;
        if (!live) {
            tracker.close();
        }
        handedOff = true;
        return f;
    }

    /**
     * Takes a throwaway lazy final image of the running process into {@code scratch} (removed
     * after) with every {@link #REHEARSAL_STRIDE}th page held counted as dirty: the page
     * selection, the IN_PARENT/REMOTE runs and the writing of a page map of tens of thousands of
     * entries run once before the freeze, so that the JIT has compiled them when the real final
     * dump runs them frozen (cold, the first time in a JVM, they take hundreds of ms). Reads no
     * page contents and writes nothing of the process; a failure is only reported to the progress.
     */
    public void rehearseFinal(Path scratch) {
        if (held == null || held.isEmpty() || trackerClosed) {
            return;
        }
        PageSpans.Builder fake = new PageSpans.Builder();
        long n = 0;
        for (int i = 0; i < held.count() && n < REHEARSAL_MAX_PAGES; i++) {
            for (long a = held.start(i); Long.compareUnsigned(a, held.end(i)) < 0 && n < REHEARSAL_MAX_PAGES;
                 a += (long) REHEARSAL_STRIDE * pageSize) {
                fake.add(a, a + pageSize);
                n++;
            }
        }
        ImageWriter w = null;
        try {
            List<Vma> vmas = ProcMaps.read(pid);
            Inventory inv = Dumper.inventory(pid, pageSize, Inventory.Kind.FULL, "../rehearsal", tracker.name());
            w = ImageWriter.create(scratch, inv).durable(false);
            PageStore.Stats st = PageStore.store(pid, w, vmas, fake.build(), held, held, true, true, null,
                    Dumper.hints(tracker), line -> { });
            st.remote().toRanges();
            w.finish(ProcessTree.newBuilder().addProcesses(Process.newBuilder().setPid(pid).setExe(Proc.exe(pid))
                    .addAllVmas(vmas.stream().map(VmaRecords::toImage).toList())).build());
        } catch (IOException | RuntimeException e) {
            progress.accept("rehearsal of the final dump failed (no harm done): " + e.getMessage());
        } finally {
            if (w != null) {
                closeQuietly(w);
            }
            removePartial(new RuntimeException(), null, scratch, false);
        }
    }

    /** {@link #rehearseFinal}: every this many held pages one counts as dirty, up to this many. */
    static final int REHEARSAL_STRIDE = 8;
    static final long REHEARSAL_MAX_PAGES = 30_000;

    /** Stops tracking and lets the process go (running as before) unless the final dump ended it. */
    @Override
    public void close() {
        try {
            if (!trackerClosed) {
                trackerClosed = true;
                tracker.close();
            }
        } finally {
            if (!handedOff) {
                release();
            }
        }
    }

    private void release() {
        try {
            if (process.isAttached()) {
                if (process.isFrozen()) {
                    process.thaw();
                }
                process.detach();
            }
        } finally {
            tracer.close();
        }
    }
}
