package dev.lazypages.restore;

import dev.lazypages.ffm.Posix;
import dev.lazypages.image.ImageFormatException;
import dev.lazypages.image.ImageReader;
import dev.lazypages.image.PageFlags;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.Vma;
import dev.lazypages.lazy.LazySource;
import dev.lazypages.lazy.LazySource.Run;
import dev.lazypages.memory.PageRanges;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.function.Consumer;

/**
 * The warm destination: the process is built while the source still runs, one pre-copy round
 * at a time, so that the freeze only applies what the final image changes.
 *
 * <ol>
 *   <li>{@link #start} (round 1): spawn and seize lp-stub, move vdso/vvar, map round 1's VMAs
 *       (writable for now) and write its pages;</li>
 *   <li>{@link #applyRound} (rounds 2, 3, ...): the layout diff (new, removed, resized or moved
 *       VMAs, the heap), then only the pages the round stores; pages that left the image are
 *       dropped (MADV_DONTNEED), pages IN_PARENT that a layout change lost are read again from
 *       the chain;</li>
 *   <li>{@link Restorer} with {@link Restorer.Options#withWarm}: the final image the same way
 *       ({@link #applyFinal}); lazily, pages the final image leaves REMOTE are dropped if an
 *       earlier round had written them (stale) so that they fault and come from the source, and
 *       userfaultfd MISSING is registered over populated memory (only absent pages fault); then
 *       the process state, and it runs.</li>
 * </ol>
 *
 * <p>The image chain stays open across rounds (each round's reader is opened with the previous
 * one as its parent), so the final image is the only file read at the freeze. Until
 * {@link Restorer} takes it, {@link #close} kills the skeleton: nothing is left behind.
 *
 * <p>Not thread-safe: one caller at a time (a builder thread, then the restore).
 */
public final class WarmRestore implements AutoCloseable {
    private final Consumer<String> progress;
    private final Path stub;
    private Skeleton sk;
    private ImageReader chain;
    private Path chainDir;
    private ImageReader finalReader;
    private int imagePid;
    private int rounds;
    private long roundNanos;
    private long bytesWritten;
    private boolean taken;
    private volatile boolean hurried;
    private PageRanges lazyLocal = PageRanges.EMPTY;
    private volatile boolean closed;

    private WarmRestore(Path stub, Consumer<String> progress) {
        this.stub = stub;
        this.progress = progress != null ? progress : s -> { };
    }

    /**
     * Builds the skeleton from pre-copy round 1 in {@code roundDir}.
     *
     * @param stub lp-stub or its directory, null to look it up
     * @throws RestoreException naming the step that failed (nothing is left running)
     */
    public static WarmRestore start(Path roundDir, Path stub, Consumer<String> progress) {
        WarmRestore w = create(stub, progress);
        try {
            w.round(roundDir);
            return w;
        } catch (RuntimeException e) {
            w.close();
            throw e;
        }
    }

    /** A warm restore with nothing built yet: the first {@link #applyRound} builds the process. */
    public static WarmRestore create(Path stub, Consumer<String> progress) {
        return new WarmRestore(stub, progress);
    }

    /**
     * Applies the next pre-copy round in {@code roundDir} (its parent is the previous round; the
     * first one builds the process). On failure the process is killed.
     */
    public void applyRound(Path roundDir) {
        try {
            round(roundDir);
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    private String step = "open round";

    /** Where the restore that took the skeleton wants the steps of the final image (null before). */
    private Consumer<String> restoreSteps;

    private void step(String s) {
        step = s;
        (restoreSteps != null ? restoreSteps : progress).accept(s);
    }

    private void round(Path dir) {
        if (closed || taken) {
            throw new IllegalStateException("the warm process is " + (closed ? "gone" : "taken over by the restore"));
        }
        long t0 = System.nanoTime();
        try {
            step("open round " + dir.getFileName());
            ImageReader r = chain == null ? ImageReader.open(dir) : ImageReader.open(dir, chain);
            chain = r;
            chainDir = dir;
            Process p = process(r);
            if (sk == null) {
                imagePid = p.getPid();
                if (r.pageSize() != Posix.pageSize()) {
                    throw new RestoreException(step, RestoreException.Reason.UNSUPPORTED, "image page size " + r.pageSize()
                            + " differs from this machine's " + Posix.pageSize(), null);
                }
                Skeleton built = Skeleton.spawn(stub, p.getVmasList(), this::step);
                synchronized (this) {
                    if (closed) { // closed while lp-stub was being spawned: it must not outlive us
                        built.kill();
                        throw new IllegalStateException("the warm restore was closed while its process was built");
                    }
                    sk = built;
                }
                preload();
            }
            sk.onTracer(() -> {
                apply(r, p, false, false, false, null); // no hand-over per injected call
                sk.preparePidfd(); // for the final image's drop, in the frozen window
                // the round's 2 x 16 MiB of written buffers go now: unmapping them at the freeze (after the final
                // image's few pages) took milliseconds of the downtime
                sk.releaseBuffer();
            });
            rounds++;
        } catch (RestoreException e) {
            throw e;
        } catch (ImageFormatException e) {
            throw new RestoreException(step, RestoreException.Reason.BAD_IMAGE, e.getMessage(), e);
        } catch (IOException | RuntimeException e) {
            String m = e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName();
            throw new RestoreException(step, RestoreException.Reason.FAILED, m, e);
        } finally {
            roundNanos += System.nanoTime() - t0;
        }
    }

    /**
     * What the freeze will use and the rounds do not (the userfaultfd and pidfd bindings, the
     * page server): loaded and initialized now, while the source runs, not in the downtime.
     */
    private static final List<String> USED_AT_THE_FREEZE = List.of("dev.lazypages.ffm.Userfaultfd", "dev.lazypages.ffm.Pidfd",
            "dev.lazypages.ffm.Prctl", "dev.lazypages.lazy.LazyPageServer", "dev.lazypages.lazy.CompositeLazySource",
            "dev.lazypages.restore.ImageLazyHandoff", "dev.lazypages.proc.ProcFds", "dev.lazypages.proc.SyscallRestart");

    private static void preload() {
        for (String c : USED_AT_THE_FREEZE) {
            try {
                Class.forName(c, true, WarmRestore.class.getClassLoader());
            } catch (ClassNotFoundException | LinkageError e) {
                // only a head start: the freeze loads it if need be
            }
        }
    }

    private Process process(ImageReader r) {
        if (r.image().processes().getProcessesCount() != 1) {
            throw new RestoreException(step, RestoreException.Reason.UNSUPPORTED, "the image holds "
                    + r.image().processes().getProcessesCount() + " processes; only one is supported", null);
        }
        Process p = r.image().processes().getProcesses(0);
        if (sk != null && p.getPid() != imagePid) {
            throw new RestoreException(step, RestoreException.Reason.BAD_IMAGE, "round of pid " + p.getPid()
                    + ", the rounds before were of pid " + imagePid, null);
        }
        for (Vma v : p.getVmasList()) {
            if (v.getKind() != Vma.Kind.FILE_PRIVATE && !Skeleton.isPrivateAnon(v) && v.getKind() != Vma.Kind.VDSO
                    && v.getKind() != Vma.Kind.VVAR && v.getKind() != Vma.Kind.VVAR_VCLOCK && v.getKind() != Vma.Kind.VSYSCALL
                    || (v.getFlags() & Vma.Flag.SHARED_VALUE) != 0) {
                throw new RestoreException(step, RestoreException.Reason.UNSUPPORTED, "mapping " + Skeleton.describe(v)
                        + " of kind " + v.getKind() + " is not supported", null);
            }
        }
        return p;
    }

    /**
     * Brings layout and pages to image {@code r}. Per page, by what the image says of it:
     * PRESENT: written (from this image); IN_PARENT: kept where the process has the chain's
     * content already, else written from the chain (final and lazy, in private anonymous
     * memory: left absent and served from the chain by the page server instead, see
     * {@link #lazyLocal}); REMOTE (final only): lazily, in private anonymous memory, left absent,
     * else fetched from {@code remote}; anything else (ZERO, not listed): must read zero (or the
     * file), so dropped where it may be populated. A {@link #hurry hurried} round maps, drops and
     * stops writing: what it did not write is written by the next image, or served lazily.
     *
     * @return bytes fetched from {@code remote}
     */
    private long apply(ImageReader r, Process p, boolean fin, boolean lazy, boolean localLazy, LazySource remote)
            throws IOException {
        // mapped with the image's protection (pages of read-only VMAs are written through /proc/PID/mem), so that
        // the freeze re-protects nothing
        sk.applyLayout(p.getVmasList(), v -> false);
        PageRanges.Builder present = PageRanges.builder();
        PageRanges.Builder inParent = PageRanges.builder();
        PageRanges.Builder remoteB = PageRanges.builder();
        for (PageMapEntry e : r.image().pageMap().getEntriesList()) {
            if (e.getPid() != imagePid) {
                continue;
            }
            long n = Integer.toUnsignedLong(e.getNrPages());
            switch (e.getFlags()) {
                case PageFlags.PRESENT -> present.addPages(e.getVaddr(), n);
                case PageFlags.IN_PARENT -> inParent.addPages(e.getVaddr(), n);
                case PageFlags.REMOTE -> remoteB.addPages(e.getVaddr(), n);
                default -> { } // ZERO: must read zero, like a page the image does not list
            }
        }
        PageRanges stored = present.build();
        PageRanges kept = inParent.build();
        PageRanges rem = remoteB.build();
        if (!fin && !rem.isEmpty()) {
            throw new ImageFormatException(r.image().dir(), "a pre-copy round has REMOTE pages");
        }
        PageRanges anonRemote = lazy ? anonymous(p) : PageRanges.EMPTY;
        PageRanges anon = localLazy ? anonymous(p) : PageRanges.EMPTY;
        sk.forget(stored); // rewritten below
        PageRanges missingLocal = kept.subtract(sk.have());
        PageRanges absent = sk.populated().subtract(stored).subtract(kept).subtract(rem) // must read zero
                .union(missingLocal.intersect(anon)).union(rem.intersect(anonRemote)).intersect(sk.populated());
        if (!fin || lazy) {
            sk.drop(absent);
        } else {
            sk.drop(absent.subtract(rem)); // eager: REMOTE pages are written over below
        }
        step(fin ? "write final pages" : "write pages");
        int ps = sk.ps;
        long before = sk.bytesWritten();
        Skeleton.PageFill fromImage = (addr, n, buf, off) -> r.readPages(imagePid, addr, n, Skeleton.view(buf, off, n, ps));
        java.util.function.BooleanSupplier stop = fin ? () -> false : () -> hurried;
        if (sk.write(stored, fromImage, stop)) {
            // IN_PARENT pages the process lacks (a layout change, a hurried round): from the chain
            sk.write(missingLocal.subtract(anon), fromImage, stop);
        }
        lazyLocal = fin ? missingLocal.intersect(anon) : PageRanges.EMPTY;
        long fetched = 0;
        PageRanges fetch = rem.subtract(anonRemote);
        if (fin && !fetch.isEmpty()) {
            Objects.requireNonNull(remote, "REMOTE pages and no remote source");
            step("fetch remote pages");
            sk.write(fetch, (addr, n, buf, off) -> remote.readPages(addr, n, buf, off));
            fetched = fetch.byteCount();
        }
        if (!fin) {
            bytesWritten += sk.bytesWritten() - before;
        }
        return fetched;
    }

    /**
     * What the page server serves after a lazy warm restore: the REMOTE runs from {@code remote}
     * (null when there are none) and the {@link #lazyLocal} pages from the final image's chain
     * (which then stays open until {@code resources} is closed); a null source when neither.
     */
    record Served(LazySource source, AutoCloseable resources) {
    }

    Served served(ImageReader finalReader, LazySource remote) throws IOException {
        if (lazyLocal.isEmpty()) {
            return new Served(remote, null);
        }
        dev.lazypages.lazy.ImageLazySource image = dev.lazypages.lazy.ImageLazySource.open(finalReader, imagePid);
        List<LazySource.Run> runs = new java.util.ArrayList<>();
        for (PageRanges.Run run : lazyLocal) {
            runs.add(new LazySource.Run(run.start(), Math.toIntExact(run.pages())));
        }
        LazySource local = new Only(image, List.copyOf(runs));
        LazySource source = remote == null ? local : new dev.lazypages.lazy.CompositeLazySource(local, remote, remote.storedRuns());
        return new Served(source, () -> {
            image.close();
            finalReader.close();
        });
    }

    /** {@code of}'s pages, but only {@code runs} of them (the page server serves and sweeps those only). */
    private record Only(LazySource of, List<Run> runs) implements LazySource {
        @Override
        public int pageSize() {
            return of.pageSize();
        }

        @Override
        public List<Run> storedRuns() {
            return runs;
        }

        @Override
        public void readPages(long vaddr, int nrPages, dev.lazypages.ffm.PageBuffer dst, long dstOffset) throws IOException {
            of.readPages(vaddr, nrPages, dst, dstOffset);
        }
    }

    /** Every page of the private anonymous VMAs of {@code p} (what userfaultfd can serve). */
    private static PageRanges anonymous(Process p) {
        PageRanges.Builder b = PageRanges.builder();
        for (Vma v : p.getVmasList()) {
            if (Skeleton.isPrivateAnon(v)) {
                b.add(v.getStart(), v.getEnd());
            }
        }
        return b.build();
    }

    /**
     * From now on rounds stop writing pages (between two batches): the freeze has come, and
     * what they did not write is left to the final image (lazily served from the local chain in
     * a lazy restore). Safe from any thread.
     */
    public void hurry() {
        hurried = true;
    }

    /** Whether {@link #hurry} was called: rounds applied since may have left pages unwritten. */
    public boolean hurried() {
        return hurried;
    }

    /**
     * After {@link #applyFinal} of a lazy restore: the IN_PARENT pages of private anonymous
     * memory the rounds did not write (hurried), left absent for the page server; empty
     * normally.
     */
    PageRanges lazyLocal() {
        return lazyLocal;
    }

    /**
     * Opens the final image in {@code dir} on top of the chain applied so far (once: later calls
     * return the same reader, which the restore then owns).
     */
    ImageReader openFinal(Path dir) throws IOException {
        if (finalReader == null) {
            if (chain == null) {
                throw new IllegalStateException("no pre-copy round was applied");
            }
            finalReader = ImageReader.open(dir, chain);
            chain = null; // owned by the final reader now
        }
        return finalReader;
    }

    /** The final image opened on the chain (for its REMOTE runs) before the restore; the restore closes it. */
    public ImageReader finalImage(Path dir) throws IOException {
        return openFinal(dir);
    }

    /**
     * Whether the final image's {@code v} is mapped already, exactly so, by an earlier round (its
     * file was opened then: the restore need not look it up again in the frozen window).
     */
    boolean mapsAlready(Vma v) {
        return sk != null && !closed && sk.hasMapped(v);
    }

    /** Hands the skeleton to the restore (which kills it on failure); its steps go to {@code step} from now on. */
    Skeleton takeSkeleton(Consumer<String> restoreStep) {
        if (sk == null || closed) {
            throw new IllegalStateException("no warm process to restore into");
        }
        taken = true;
        restoreSteps = restoreStep;
        sk.onStep(restoreStep);
        return sk;
    }

    /** {@link #apply} of the final image, from the restore. */
    /**
     * @param lazy      REMOTE pages of private anonymous memory are left to the page server (post-copy, hybrid)
     * @param localLazy IN_PARENT pages of private anonymous memory the rounds did not write are left
     *                  to the page server (served from the local chain), else written now
     */
    long applyFinal(ImageReader r, Process p, boolean lazy, boolean localLazy, LazySource remote) throws IOException {
        if (p.getPid() != imagePid) {
            throw new ImageFormatException(r.image().dir(), "final image of pid " + p.getPid() + ", the rounds were of pid "
                    + imagePid);
        }
        long fetched = apply(r, p, true, lazy, localLazy, remote);
        sk.closePidfd();
        sk.releaseBuffer();
        return fetched;
    }

    /** Time the rounds spent reading pages (image files) and writing them into the process, in ns: {read, write}. */
    public long[] pageNanos() {
        return sk == null ? new long[2] : new long[] {sk.fillNanos(), sk.writeNanos()};
    }

    /** Rounds applied so far. */
    public int rounds() {
        return rounds;
    }

    /** Time spent building and updating the process (while the source ran). */
    public long roundNanos() {
        return roundNanos;
    }

    /** Page bytes written into the process by the rounds. */
    public long bytesWritten() {
        return bytesWritten;
    }

    /** The pid of the process being built, or -1. */
    public int pid() {
        return sk != null ? sk.pid : -1;
    }

    /** The last round's directory applied. */
    public Path lastRound() {
        return chainDir;
    }

    /**
     * Kills the skeleton unless the restore took it, and closes the image chain (unless the
     * restore owns it through the final reader). Idempotent.
     */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        if (sk != null && !taken) {
            sk.kill();
        }
        if (chain != null) {
            try {
                chain.close();
            } catch (IOException ignored) {
                // read-only
            }
            chain = null;
        }
        if (finalReader != null && !taken) {
            try {
                finalReader.close();
            } catch (IOException ignored) {
                // read-only
            }
        }
    }
}
