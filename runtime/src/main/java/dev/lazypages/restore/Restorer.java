package dev.lazypages.restore;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Pidfd;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Prctl;
import dev.lazypages.ffm.Ptrace;
import dev.lazypages.ffm.Regs;
import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.image.ImageFormatException;
import dev.lazypages.image.ImageReader;
import dev.lazypages.image.PageFlags;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.MmStruct;
import dev.lazypages.image.proto.OpenFile;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.SigAction;
import dev.lazypages.image.proto.ThreadState;
import dev.lazypages.image.proto.Vma;
import dev.lazypages.lazy.LazySource;
import dev.lazypages.memory.PageRanges;
import dev.lazypages.proc.ProcFds;
import dev.lazypages.proc.RemoteSyscall;
import dev.lazypages.proc.SyscallRestart;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * Rebuilds a process from an image directory inside a freshly spawned {@code lp-stub}, by
 * system-call injection only (no code of ours runs in the target):
 *
 * <ol>
 *   <li>open and check the image: page size, CPU state components (XCR0), file VMAs (same
 *       dev/inode), supported VMA and fd kinds;</li>
 *   <li>spawn lp-stub detached, seize and freeze it;</li>
 *   <li>unmap its [stack], map a scratch area at an address free in the image's layout;</li>
 *   <li>move [vdso], [vvar], [vvar_vclock] (mremap) to the image's addresses;</li>
 *   <li>create every VMA at its address (MAP_FIXED_NOREPLACE);</li>
 *   <li>write the stored pages (process_vm_writev), then set the final protections; with
 *       {@link Options#lazy} private anonymous VMAs get a userfaultfd instead;</li>
 *   <li>switch to a syscall gadget of the restored layout, unmap lp-stub's text,
 *       PR_SET_MM_MAP (mm bounds, auxv, exe link);</li>
 *   <li>reopen the files at their fd numbers and positions;</li>
 *   <li>restore the signal handlers;</li>
 *   <li>(lazy) hand the userfaultfd to the page server, which starts serving;</li>
 *   <li>create the other threads (injected clone; each is traced from its first instruction);</li>
 *   <li>per thread: rseq, signal mask, xstate, registers (restart fix-up applied);</li>
 *   <li>unmap the scratch area, detach: the process runs.</li>
 * </ol>
 *
 * Any failure SIGKILLs the half-built process and throws {@link RestoreException} naming the
 * step, e.g. {@code restore failed at 'map vma 0x7f..-0x7f.. /usr/lib/x86_64-linux-gnu/libc.so.6': ...}.
 */
public final class Restorer {
    // x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl)
    private static final int NR_OPEN = 2;
    private static final int NR_LSEEK = 8;
    private static final int NR_RT_SIGACTION = 13;
    private static final int NR_DUP2 = 33;
    private static final int NR_FCNTL = 72;
    private static final int NR_CLONE = 56;
    private static final int NR_DUP3 = 292;
    private static final int NR_USERFAULTFD = 323;
    private static final int NR_RSEQ = 334;

    private static final int O_CREAT = 0100;
    private static final int O_EXCL = 0200;
    private static final int O_NOCTTY = 0400;
    private static final int O_TRUNC = 01000;
    private static final int O_CLOEXEC = 02000000;
    private static final int O_NONBLOCK = 04000;
    private static final int SEEK_SET = 0;
    private static final int F_DUPFD_CLOEXEC = 1030;
    private static final int PR_SET_NAME = 15;
    private static final int TASK_COMM_LEN = 16;
    private static final int SIGKILL = 9;
    private static final int SIGSTOP = 19;
    private static final long CLONE_THREAD_FLAGS = 0x00000100L /* CLONE_VM */ | 0x00000200L /* CLONE_FS */
            | 0x00000400L /* CLONE_FILES */ | 0x00000800L /* CLONE_SIGHAND */ | 0x00010000L /* CLONE_THREAD */
            | 0x00040000L /* CLONE_SYSVSEM */;
    private static final int KERNEL_SIGACTION_BYTES = 32;

    /**
     * What to restore and how.
     *
     * @param imagesDir the image directory
     * @param lazy      leave private anonymous memory to a userfaultfd page server ({@code handoff})
     * @param stub      lp-stub binary or its directory; null to look it up ({@link dev.lazypages.proc.NativeStubs})
     * @param handoff   where the uffd goes with {@code lazy}; null without
     * @param progress  one line per step, for verbose output; null for none
     * @param remote    where the image's REMOTE pages come from (the source's page server); null
     *                  when the image has none. Lazy: REMOTE pages of private anonymous memory are
     *                  served through the handoff, those of private file mappings (which a
     *                  userfaultfd cannot register) are fetched before the process runs. Eager:
     *                  every REMOTE page is fetched before the process runs.
     */
    public record Options(Path imagesDir, boolean lazy, Path stub, LazyHandoff handoff, Consumer<String> progress,
                          LazySource remote, ImageReader reader, WarmRestore warm) {
        public Options {
            if (imagesDir == null) {
                throw new IllegalArgumentException("no images directory");
            }
            if (lazy && handoff == null) {
                throw new IllegalArgumentException("a lazy restore needs a page server to hand the userfaultfd to");
            }
            if (progress == null) {
                progress = s -> { };
            }
        }

        public Options(Path imagesDir, boolean lazy, Path stub, LazyHandoff handoff, Consumer<String> progress) {
            this(imagesDir, lazy, stub, handoff, progress, null, null, null);
        }

        public Options(Path imagesDir, boolean lazy, Path stub, LazyHandoff handoff, Consumer<String> progress,
                       LazySource remote) {
            this(imagesDir, lazy, stub, handoff, progress, remote, null, null);
        }

        /** An eager restore of {@code dir} with lp-stub looked up as usual. */
        public static Options eager(Path dir) {
            return new Options(dir, false, null, null, null, null, null, null);
        }

        public Options withStub(Path stubPath) {
            return new Options(imagesDir, lazy, stubPath, handoff, progress, remote, reader, warm);
        }

        public Options withLazy(LazyHandoff h) {
            return new Options(imagesDir, true, stub, h, progress, remote, reader, warm);
        }

        public Options withProgress(Consumer<String> p) {
            return new Options(imagesDir, lazy, stub, handoff, p, remote, reader, warm);
        }

        /**
         * A warm, eager restore ({@link #withWarm}) may still leave pages to {@code h}: those the
         * rounds had not written when the freeze came, served from the local image chain (never
         * from the source). {@code h} is started only if there are such pages.
         */
        public Options withWarmHandoff(LazyHandoff h) {
            return new Options(imagesDir, lazy, stub, h, progress, remote, reader, warm);
        }

        /** The source of the image's REMOTE pages (see {@link Options}). */
        public Options withRemote(LazySource r) {
            return new Options(imagesDir, lazy, stub, handoff, progress, r, reader, warm);
        }

        /**
         * The image {@code imagesDir} already opened (the restore takes it over and closes it):
         * a caller that had to read it first (its REMOTE runs) need not open it twice.
         */
        public Options withReader(ImageReader r) {
            return new Options(imagesDir, lazy, stub, handoff, progress, remote, r, warm);
        }

        /**
         * Restore into the process {@code w} built during pre-copy: only what the final image
         * changes is applied (see {@link WarmRestore}); {@code imagesDir} is the final image.
         */
        public Options withWarm(WarmRestore w) {
            return new Options(imagesDir, lazy, stub, handoff, progress, remote, reader, w);
        }
    }

    /**
     * A restored, running process.
     *
     * @param pid          its new pid
     * @param threads      threads restored
     * @param bytesWritten page bytes written eagerly by this restore (warm: at the freeze only, not by the rounds)
     * @param lazyBytes    bytes of memory left to the page server (0 when eager)
     * @param millis       wall time of the restore, from opening the image to detach
     * @param remoteBytesFetched bytes of REMOTE pages fetched from {@link Options#remote} before the
     *                     process ran (part of {@code bytesWritten})
     * @param remotePages  REMOTE pages in the image
     */
    public record Result(int pid, int threads, long bytesWritten, long lazyBytes, long millis, long remoteBytesFetched,
                         long remotePages) {
    }

    private final Options opts;
    private final long t0 = System.nanoTime();
    private ImageReader reader;
    private Process proc;
    private int ps;
    private Skeleton sk;
    private int pid = -1;
    private long lazyBytes;
    private long remotePages;
    private long remoteBytesFetched;
    private final List<LazyHandoff.Region> lazyRegions = new ArrayList<>();
    private Userfaultfd uffd;
    /** The target's own reference to its userfaultfd (above every image fd), null without; the handoff closes it once every page is in. */
    private KeptUffd kept;
    private String step = "open image";

    private Restorer(Options opts) {
        this.opts = opts;
    }

    /** Restores {@code opts.imagesDir()}; see the class comment. */
    public static Result restore(Options opts) {
        return new Restorer(opts).run();
    }

    private Result run() {
        try {
            openImage();
            if (opts.warm() != null) {
                sk = opts.warm().takeSkeleton(this::step);
            } else {
                sk = Skeleton.spawn(opts.stub(), proc.getVmasList(), this::step);
            }
            pid = sk.pid;
            // everything from here on the tracer thread: no hand-over per injected call
            sk.onTracer(this::rebuild);
            sk.detach();
            if (kept != null) {
                opts.handoff().targetDetached(); // it may close the process's uffd now (it needs to seize)
            }
            long written = sk.bytesWritten() - (opts.warm() != null ? opts.warm().bytesWritten() : 0);
            return new Result(pid, proc.getThreadsCount(), written, lazyBytes,
                    TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0), remoteBytesFetched, remotePages);
        } catch (RestoreException e) {
            abort();
            throw e;
        } catch (ImageFormatException e) {
            abort();
            throw new RestoreException(step, RestoreException.Reason.BAD_IMAGE, e.getMessage(), e);
        } catch (Exception e) {
            abort();
            String m = e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName();
            throw new RestoreException(step, RestoreException.Reason.FAILED, m, e);
        } finally {
            closeReader();
        }
    }

    /** Memory (the skeleton's layout and pages, or the final image's changes to the warm one), then the process state. */
    private void rebuild() throws Exception {
        if (opts.warm() != null) {
            step("apply the final image");
            remoteBytesFetched = opts.warm().applyFinal(reader, proc, opts.lazy(), opts.handoff() != null, opts.remote());
        } else {
            sk.applyLayout(proc.getVmasList(), v -> !(opts.lazy() && Skeleton.isPrivateAnon(v)) && hasStoredPages(v));
            writePages();
        }
        // warm and eager with a handoff: only if the rounds left pages to serve from the local chain
        boolean serve = opts.lazy() || opts.warm() != null && opts.handoff() != null && !opts.warm().lazyLocal().isEmpty();
        if (serve) {
            registerLazy();
        }
        sk.finalProtections();
        setMm();
        restoreFiles();
        restoreSignals();
        // the server must run before rseq registration: the kernel writes the rseq areas
        // (TLS, in registered memory) on the way back from the injected call
        if (serve) {
            startHandoff();
        }
        restoreThreads(createThreads());
    }

    private void step(String name) {
        step = name;
        opts.progress().accept(name);
    }

    private RestoreException refuse(String problem) {
        return new RestoreException(step, RestoreException.Reason.UNSUPPORTED, problem, null);
    }

    // ---- 1. the image ----

    private void openImage() throws IOException {
        step("open image " + opts.imagesDir());
        reader = opts.reader() != null ? opts.reader() : opts.warm() != null ? opts.warm().openFinal(opts.imagesDir())
                : ImageReader.open(opts.imagesDir());
        Inventory inv = reader.image().inventory();
        if (reader.image().processes().getProcessesCount() != 1) {
            throw refuse("the image holds " + reader.image().processes().getProcessesCount()
                    + " processes; only one is supported");
        }
        proc = reader.image().processes().getProcesses(0);
        ps = reader.pageSize();
        step("check image");
        if (ps != Posix.pageSize()) {
            throw refuse("image page size " + ps + " differs from this machine's " + Posix.pageSize());
        }
        if (inv.getKind() != Inventory.Kind.FULL) {
            throw refuse("image is a " + inv.getKind() + ", not a FULL dump");
        }
        long xcr0 = Features.xcr0();
        long missing = xcr0 == -1 ? 0 : inv.getCpuXcr0() & ~xcr0;
        if (missing != 0) {
            throw refuse("the image's CPU state has XSAVE components 0x" + Long.toHexString(missing)
                    + " this CPU lacks (image XCR0 0x" + Long.toHexString(inv.getCpuXcr0()) + ", here 0x"
                    + Long.toHexString(xcr0) + ")");
        }
        if (proc.getThreadsCount() == 0) {
            throw refuse("the image's process has no threads");
        }
        for (Vma v : proc.getVmasList()) {
            // a mapping the warm skeleton has already (its file found, and checked by the migration's pre-checks,
            // when a round mapped it) is not looked up again in the frozen window
            if (opts.warm() == null || !opts.warm().mapsAlready(v)) {
                checkVma(v);
            }
        }
        for (OpenFile f : proc.getFilesList()) {
            checkFile(f);
        }
        for (PageMapEntry e : reader.image().pageMap().getEntriesList()) {
            if (e.getPid() == proc.getPid() && e.getFlags() == PageFlags.REMOTE) {
                remotePages += Integer.toUnsignedLong(e.getNrPages());
            }
        }
        if (remotePages > 0 && opts.remote() == null) {
            throw refuse("the image has " + remotePages + " REMOTE pages (a lazy final dump: their bytes stay at the source) "
                    + "and no remote source was given to fetch them from");
        }
        if (remotePages > 0 && opts.remote().pageSize() != ps) {
            throw refuse("the remote source's page size " + opts.remote().pageSize() + " differs from the image's " + ps);
        }
        if (!Files.isRegularFile(Path.of(proc.getExe()))) {
            throw refuse("executable " + proc.getExe() + " does not exist here");
        }
    }

    private void checkVma(Vma v) throws IOException {
        String what = describe(v);
        switch (v.getKind()) {
            case ANON, HEAP, STACK, VDSO, VVAR, VVAR_VCLOCK, VSYSCALL -> {
                if ((v.getFlags() & Vma.Flag.SHARED_VALUE) != 0) {
                    throw refuse("shared anonymous mapping " + what + " is not supported");
                }
            }
            case FILE_PRIVATE -> {
                if ((v.getFlags() & Vma.Flag.DELETED_VALUE) != 0) {
                    throw refuse("file of mapping " + what + " was deleted at dump time");
                }
                Path p = Path.of(v.getPath());
                if (!Files.exists(p)) {
                    throw refuse("file " + v.getPath() + " of mapping " + what + " does not exist here");
                }
                long dev = ((Number) Files.getAttribute(p, "unix:dev")).longValue();
                long ino = ((Number) Files.getAttribute(p, "unix:ino")).longValue();
                if (dev != v.getDev() || ino != v.getInode()) {
                    throw refuse("file " + v.getPath() + " of mapping " + what + " is not the one dumped (dev/inode "
                            + dev + "/" + ino + " here, " + v.getDev() + "/" + v.getInode() + " in the image)");
                }
            }
            default -> throw refuse("mapping " + what + " of kind " + v.getKind() + " is not supported");
        }
    }

    private void checkFile(OpenFile f) throws IOException {
        switch (f.getKind()) {
            case DEV_NULL -> { }
            case REGULAR -> {
                Path p = Path.of(f.getPath());
                if (!Files.isRegularFile(p)) {
                    throw refuse("file " + f.getPath() + " of fd " + f.getFd() + " does not exist here");
                }
                if (f.getInode() != 0) {
                    long ino = ((Number) Files.getAttribute(p, "unix:ino")).longValue();
                    long dev = ((Number) Files.getAttribute(p, "unix:dev")).longValue();
                    if (ino != f.getInode() || (f.getDev() != 0 && dev != f.getDev())) {
                        throw refuse("file " + f.getPath() + " of fd " + f.getFd() + " is not the one dumped (dev/inode "
                                + dev + "/" + ino + " here, " + f.getDev() + "/" + f.getInode() + " in the image)");
                    }
                }
            }
            default -> throw refuse("fd " + f.getFd() + " (" + f.getPath() + ") of kind " + f.getKind() + " is not supported");
        }
    }

    private boolean hasStoredPages(Vma v) {
        for (PageMapEntry e : reader.image().pageMap().getEntriesList()) {
            if (e.getPid() != proc.getPid() || e.getFlags() == PageFlags.ZERO) {
                continue;
            }
            long end = e.getVaddr() + Integer.toUnsignedLong(e.getNrPages()) * ps;
            if (Skeleton.overlaps(e.getVaddr(), end, v.getStart(), v.getEnd())) {
                return true;
            }
        }
        return false;
    }

    // ---- lazy: userfaultfd ----

    private void registerLazy() throws IOException {
        step("create userfaultfd in the target");
        int remote = (int) sk.main.call("userfaultfd", NR_USERFAULTFD, O_CLOEXEC | O_NONBLOCK);
        try {
            step("take userfaultfd (pidfd_getfd)");
            uffd = Userfaultfd.adopt(Pidfd.stealFd(pid, remote));
            // The target keeps a reference, above every fd the image restores: if the daemon dies
            // (kill -9) its faults then block instead of the kernel unregistering the ranges and
            // the process reading zeros where pages are missing. The server unregisters at the end.
            int minFd = 0;
            for (OpenFile f : proc.getFilesList()) {
                minFd = Math.max(minFd, f.getFd() + 1);
            }
            step("keep the target's userfaultfd at fd >= " + minFd);
            int keptFd = (int) sk.main.call("fcntl", NR_FCNTL, remote, F_DUPFD_CLOEXEC, minFd);
            kept = new KeptUffd(pid, keptFd, KeptUffd.inodeOf(uffd.fd()));
        } finally {
            sk.main.close(remote);
        }
        step("UFFDIO_API");
        uffd.api(opts.handoff().uffdFeatures());
        for (Vma v : proc.getVmasList()) {
            if (Skeleton.isPrivateAnon(v)) {
                step("register vma " + describe(v) + " with userfaultfd");
                uffd.register(v.getStart(), v.getEnd() - v.getStart(), Userfaultfd.REGISTER_MODE_MISSING);
                lazyRegions.add(new LazyHandoff.Region(v.getStart(), v.getEnd()));
                lazyBytes += v.getEnd() - v.getStart();
            }
        }
    }

    /** Whether {@code addr} lies in memory a lazy restore leaves to the page server (private anonymous VMAs). */
    private boolean inLazyRegion(long addr) {
        if (!opts.lazy()) {
            return false;
        }
        for (Vma v : proc.getVmasList()) {
            if (Skeleton.isPrivateAnon(v) && Long.compareUnsigned(addr, v.getStart()) >= 0
                    && Long.compareUnsigned(addr, v.getEnd()) < 0) {
                return true;
            }
        }
        return false;
    }

    // ---- 6. pages ----

    private void writePages() throws IOException {
        step("write pages");
        PageRanges.Builder local = PageRanges.builder();
        PageRanges.Builder remote = PageRanges.builder();
        for (PageMapEntry e : reader.image().pageMap().getEntriesList()) {
            if (e.getPid() != proc.getPid() || e.getFlags() == PageFlags.ZERO || inLazyRegion(e.getVaddr())) {
                continue; // runs never straddle VMAs: a run starting in a lazy region is lazy whole
            }
            (e.getFlags() == PageFlags.REMOTE ? remote : local).addPages(e.getVaddr(), Integer.toUnsignedLong(e.getNrPages()));
        }
        int imagePid = proc.getPid();
        sk.write(local.build(), (addr, n, buf, off) -> reader.readPages(imagePid, addr, n, Skeleton.view(buf, off, n, ps)));
        PageRanges r = remote.build();
        sk.write(r, (addr, n, buf, off) -> opts.remote().readPages(addr, n, buf, off));
        remoteBytesFetched += r.byteCount();
    }

    // ---- 7. mm ----

    private void setMm() {
        sk.unmapStubText();
        step("open exe " + proc.getExe());
        int exeFd = (int) sk.main.call("open", NR_OPEN, sk.putString(proc.getExe()), Posix.O_RDONLY | O_CLOEXEC, 0);
        try {
            step("prctl(PR_SET_MM_MAP)");
            MmStruct mm = proc.getMm();
            long[] auxv = proc.getAuxvList().stream().mapToLong(Long::longValue).toArray();
            Prctl.MmMap map = new Prctl.MmMap(mm.getStartCode(), mm.getEndCode(), mm.getStartData(), mm.getEndData(),
                    mm.getStartBrk(), mm.getBrk(), mm.getStartStack(), mm.getArgStart(), mm.getArgEnd(),
                    mm.getEnvStart(), mm.getEnvEnd(), auxv, exeFd);
            sk.resetScratch();
            try (PageBuffer b = PageBuffer.allocate((map.encodedSize() + ps - 1) / ps)) {
                map.encode(b, sk.scratch + Prctl.MM_MAP_SIZE);
                byte[] bytes = new byte[(int) map.encodedSize()];
                b.copyTo(0, bytes, 0, bytes.length);
                long at = sk.put(bytes);
                sk.main.prctl(Prctl.PR_SET_MM, Prctl.PR_SET_MM_MAP, at, Prctl.MM_MAP_SIZE, 0);
            }
        } finally {
            sk.main.close(exeFd);
        }
        // the image has no comm: name the process as exec would have, after its executable
        // (before the threads are cloned: they inherit it)
        step("prctl(PR_SET_NAME)");
        byte[] name = Path.of(proc.getExe()).getFileName().toString().getBytes(StandardCharsets.UTF_8);
        byte[] comm = new byte[TASK_COMM_LEN];
        System.arraycopy(name, 0, comm, 0, Math.min(name.length, TASK_COMM_LEN - 1));
        sk.resetScratch();
        sk.main.prctl(PR_SET_NAME, sk.put(comm), 0, 0, 0);
    }

    // ---- 8. files ----

    private void restoreFiles() {
        step("close lp-stub's files");
        Set<Integer> wanted = new HashSet<>();
        for (OpenFile f : proc.getFilesList()) {
            wanted.add(f.getFd());
        }
        if (kept != null) {
            wanted.add(kept.fd()); // see registerLazy
        }
        for (dev.lazypages.proc.OpenFile f : ProcFds.list(pid)) {
            if (!wanted.contains(f.fd())) {
                sk.main.close(f.fd());
            }
        }
        List<OpenFile> files = new ArrayList<>(proc.getFilesList());
        files.sort((a, b) -> Integer.compare(a.getFd(), b.getFd()));
        for (OpenFile f : files) {
            String path = f.getKind() == OpenFile.Kind.DEV_NULL ? "/dev/null" : f.getPath();
            step("restore fd " + f.getFd() + " " + path);
            int flags = f.getFlags() & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY);
            sk.resetScratch();
            int tmp = (int) sk.main.call("open", NR_OPEN, sk.putString(path), flags, 0);
            if (tmp != f.getFd()) {
                try {
                    if ((flags & O_CLOEXEC) != 0) {
                        sk.main.call("dup3", NR_DUP3, tmp, f.getFd(), O_CLOEXEC);
                    } else {
                        sk.main.call("dup2", NR_DUP2, tmp, f.getFd());
                    }
                } finally {
                    sk.main.close(tmp);
                }
            }
            if (f.getKind() == OpenFile.Kind.REGULAR && f.getPos() != 0) {
                sk.main.call("lseek", NR_LSEEK, f.getFd(), f.getPos(), SEEK_SET);
            }
        }
    }

    // ---- 9. signals ----

    private void restoreSignals() {
        for (SigAction sa : proc.getSigactionsList()) {
            if (sa.getSigno() == SIGKILL || sa.getSigno() == SIGSTOP) {
                continue;
            }
            step("rt_sigaction(" + sa.getSigno() + ")");
            ByteBuffer b = ByteBuffer.allocate(KERNEL_SIGACTION_BYTES).order(ByteOrder.LITTLE_ENDIAN);
            b.putLong(sa.getHandler()).putLong(sa.getFlags()).putLong(sa.getRestorer()).putLong(sa.getMask());
            sk.resetScratch();
            long act = sk.put(b.array());
            sk.main.call("rt_sigaction", NR_RT_SIGACTION, sa.getSigno(), act, 0, 8);
        }
    }

    // ---- 10. threads ----

    private List<Integer> createThreads() {
        List<Integer> tids = new ArrayList<>();
        tids.add(pid);
        for (int i = 1; i < proc.getThreadsCount(); i++) {
            step("clone thread " + i + " (image tid " + proc.getThreads(i).getTid() + ")");
            int tid = (int) sk.main.call("clone", NR_CLONE, CLONE_THREAD_FLAGS, 0, 0, 0, 0);
            tids.add(tid);
        }
        return tids;
    }

    // ---- 11. per thread ----

    private void restoreThreads(List<Integer> tids) {
        for (int i = 0; i < tids.size(); i++) {
            ThreadState ts = proc.getThreads(i);
            int tid = tids.get(i);
            String who = "thread " + tid + " (image tid " + ts.getTid() + ")";
            RemoteSyscall sc = tid == pid ? sk.main : sk.seized.syscalls(tid, sk.gadget);
            if (ts.hasRseq() && ts.getRseq().getAddress() != 0) {
                step("rseq of " + who);
                sc.call("rseq", NR_RSEQ, ts.getRseq().getAddress(), ts.getRseq().getLength(), 0, ts.getRseq().getSignature());
            }
            step("sigmask of " + who);
            long mask = ts.getSigmask();
            Ptrace.setSigmask(tid, mask); // on the tracer thread already
            if (!ts.getXstate().isEmpty()) {
                step("xstate of " + who);
                byte[] xs = ts.getXstate().toByteArray();
                Ptrace.setXstate(tid, xs);
            }
            step("registers of " + who);
            Regs regs = Regs.fromWords(ts.getRegsList().stream().mapToLong(Long::longValue).toArray());
            SyscallRestart.fixUp(regs);
            sk.seized.setRegs(tid, regs);
        }
    }

    private void startHandoff() throws Exception {
        if (uffd == null) {
            return;
        }
        step("start the page server");
        Userfaultfd u = uffd;
        uffd = null; // the handoff owns it now
        if (kept != null) {
            opts.handoff().targetKeeps(kept);
        }
        if (opts.warm() != null) {
            // every page the source did not leave REMOTE is in the process already
            WarmRestore.Served served = opts.warm().served(reader, remotePages > 0 && opts.lazy() ? opts.remote() : null);
            if (served.resources() != null) {
                reader = null; // the handoff keeps it open while it serves the pages the rounds did not write
            }
            opts.handoff().startWarm(pid, u, List.copyOf(lazyRegions), served.source(), served.resources());
        } else {
            opts.handoff().start(pid, proc.getPid(), opts.imagesDir(), u, List.copyOf(lazyRegions),
                    remotePages > 0 ? opts.remote() : null);
        }
    }

    // ---- failure ----

    /** SIGKILLs the half-built process (reaped as our tracee), closes what we hold. */
    private void abort() {
        if (uffd != null) {
            uffd.close();
            uffd = null;
        }
        if (sk != null) {
            sk.kill();
        }
    }

    private void closeReader() {
        if (reader != null) {
            try {
                reader.close();
            } catch (IOException e) {
                // read-only: nothing lost
            }
            reader = null;
        }
    }

    private static String describe(Vma v) {
        return Skeleton.describe(v);
    }
}
