package dev.lazypages.restore;

import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Pidfd;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Prctl;
import dev.lazypages.ffm.ProcessMemory;
import dev.lazypages.ffm.Ptrace;
import dev.lazypages.ffm.Regs;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.ffm.WaitStatus;
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
import dev.lazypages.proc.NativeStubs;
import dev.lazypages.proc.ProcFds;
import dev.lazypages.proc.ProcMaps;
import dev.lazypages.proc.RemoteMemory;
import dev.lazypages.proc.RemoteSyscall;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.SyscallGadget;
import dev.lazypages.proc.SyscallRestart;
import dev.lazypages.proc.TracerThread;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
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
    private static final int NR_MREMAP = 25;
    private static final int NR_MADVISE = 28;
    private static final int NR_DUP2 = 33;
    private static final int NR_CLONE = 56;
    private static final int NR_DUP3 = 292;
    private static final int NR_USERFAULTFD = 323;
    private static final int NR_RSEQ = 334;

    private static final int MAP_GROWSDOWN = 0x100;
    private static final int MAP_FIXED_NOREPLACE = 0x100000;
    private static final int MREMAP_MAYMOVE = 1;
    private static final int MREMAP_FIXED = 2;
    private static final int O_ACCMODE = 3;
    private static final int O_CREAT = 0100;
    private static final int O_EXCL = 0200;
    private static final int O_NOCTTY = 0400;
    private static final int O_TRUNC = 01000;
    private static final int O_CLOEXEC = 02000000;
    private static final int O_NONBLOCK = 04000;
    private static final int SEEK_SET = 0;
    private static final int PR_SET_NAME = 15;
    private static final int TASK_COMM_LEN = 16;
    private static final int SIGKILL = 9;
    private static final int SIGSTOP = 19;
    private static final long CLONE_THREAD_FLAGS = 0x00000100L /* CLONE_VM */ | 0x00000200L /* CLONE_FS */
            | 0x00000400L /* CLONE_FILES */ | 0x00000800L /* CLONE_SIGHAND */ | 0x00010000L /* CLONE_THREAD */
            | 0x00040000L /* CLONE_SYSVSEM */;
    private static final int KERNEL_SIGACTION_BYTES = 32;
    /** Scratch area: two paths of PATH_MAX, or the prctl_mm_map struct and auxv. */
    private static final long SCRATCH_BYTES = 3 * 4096;
    /** Pages written per process_vm_writev batch. */
    private static final int WRITE_BATCH_BYTES = 32 << 20;
    private static final long SPAWN_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(5);

    /**
     * What to restore and how.
     *
     * @param imagesDir the image directory
     * @param lazy      leave private anonymous memory to a userfaultfd page server ({@code handoff})
     * @param stub      lp-stub binary or its directory; null to look it up ({@link NativeStubs})
     * @param handoff   where the uffd goes with {@code lazy}; null without
     * @param progress  one line per step, for verbose output; null for none
     * @param remote    where the image's REMOTE pages come from (the source's page server); null
     *                  when the image has none. Lazy: REMOTE pages of private anonymous memory are
     *                  served through the handoff, those of private file mappings (which a
     *                  userfaultfd cannot register) are fetched before the process runs. Eager:
     *                  every REMOTE page is fetched before the process runs.
     */
    public record Options(Path imagesDir, boolean lazy, Path stub, LazyHandoff handoff, Consumer<String> progress,
                          LazySource remote) {
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
            this(imagesDir, lazy, stub, handoff, progress, null);
        }

        /** An eager restore of {@code dir} with lp-stub looked up as usual. */
        public static Options eager(Path dir) {
            return new Options(dir, false, null, null, null, null);
        }

        public Options withStub(Path stubPath) {
            return new Options(imagesDir, lazy, stubPath, handoff, progress, remote);
        }

        public Options withLazy(LazyHandoff h) {
            return new Options(imagesDir, true, stub, h, progress, remote);
        }

        public Options withProgress(Consumer<String> p) {
            return new Options(imagesDir, lazy, stub, handoff, p, remote);
        }

        /** The source of the image's REMOTE pages (see {@link Options}). */
        public Options withRemote(LazySource r) {
            return new Options(imagesDir, lazy, stub, handoff, progress, r);
        }
    }

    /**
     * A restored, running process.
     *
     * @param pid          its new pid
     * @param threads      threads restored
     * @param bytesWritten page bytes written eagerly
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
    private NativeStubs.StubInfo stub;
    private int pid = -1;
    private TracerThread tracer;
    private SeizedProcess seized;
    private RemoteSyscall main;
    private long gadget;
    private long scratch;
    private long scratchUsed;
    private long bytesWritten;
    private long lazyBytes;
    private long remotePages;
    private long remoteBytesFetched;
    private final List<LazyHandoff.Region> lazyRegions = new ArrayList<>();
    private Userfaultfd uffd;
    /** VMAs mapped writable only so that their pages could be written: their final prot. */
    private final List<Vma> toProtect = new ArrayList<>();
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
            spawnStub();
            prepareStub();
            moveSpecialMappings();
            createVmas();
            if (opts.lazy()) {
                registerLazy();
            }
            writePages();
            setMm();
            restoreFiles();
            restoreSignals();
            // the server must run before rseq registration: the kernel writes the rseq areas
            // (TLS, in registered memory) on the way back from the injected call
            startHandoff();
            List<Integer> tids = createThreads();
            restoreThreads(tids);
            finish();
            return new Result(pid, proc.getThreadsCount(), bytesWritten, lazyBytes,
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
        reader = ImageReader.open(opts.imagesDir());
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
            checkVma(v);
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

    // ---- 2. the stub ----

    private void spawnStub() throws IOException {
        step("spawn lp-stub");
        stub = NativeStubs.lpStub(opts.stub());
        pid = Features.spawnDetached(stub.binary().toString());
        Path want = stub.binary().toRealPath();
        long deadline = System.nanoTime() + SPAWN_TIMEOUT_NANOS;
        while (true) {
            Path exe = null;
            try {
                exe = Files.readSymbolicLink(Path.of("/proc/" + pid + "/exe"));
            } catch (IOException gone) {
                throw new IllegalStateException("lp-stub (pid " + pid + ") exited at start");
            }
            if (exe.equals(want) && inPause()) {
                break;
            }
            if (System.nanoTime() - deadline > 0) {
                throw new IllegalStateException("pid " + pid + " runs " + exe + ", not " + want + " in pause()");
            }
            LockSupport.parkNanos(50_000);
        }
        step("seize lp-stub (pid " + pid + ")");
        tracer = new TracerThread("lp-restore-" + pid);
        seized = SeizedProcess.seizeKillOnTracerExit(pid, tracer); // a restorer that dies takes its half-built process along
        seized.freeze();
        gadget = stub.gadget();
        main = seized.syscalls(pid, gadget);
    }

    private boolean inPause() {
        try {
            return Files.readString(Path.of("/proc/" + pid + "/syscall")).startsWith("34 ");
        } catch (IOException e) {
            return false;
        }
    }

    // ---- 3. stub layout, scratch ----

    private void prepareStub() {
        step("unmap lp-stub stack");
        List<dev.lazypages.proc.Vma> stubMaps = ProcMaps.read(pid);
        for (dev.lazypages.proc.Vma v : stubMaps) {
            if (v.kind() == dev.lazypages.proc.Vma.Kind.STACK) {
                main.munmap(v.start(), v.size());
            }
        }
        step("map scratch");
        for (Vma v : proc.getVmasList()) {
            if (v.getKind() != Vma.Kind.VSYSCALL && overlaps(v.getStart(), v.getEnd(), stub.textStart(), stub.textEnd())) {
                throw refuse("mapping " + describe(v) + " overlaps lp-stub's text at " + hex(stub.textStart())
                        + "; this layout cannot be rebuilt in lp-stub");
            }
        }
        scratch = freeRange(stub.textEnd(), SCRATCH_BYTES, stubMaps);
        long at = main.mmap(scratch, SCRATCH_BYTES, RemoteSyscall.PROT_READ | RemoteSyscall.PROT_WRITE,
                RemoteSyscall.MAP_PRIVATE | RemoteSyscall.MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (at != scratch) {
            throw new IllegalStateException("scratch mapped at " + hex(at) + ", not " + hex(scratch));
        }
    }

    /** The first page-aligned range of {@code size} bytes from {@code from} free in the image and in {@code current}. */
    private long freeRange(long from, long size, List<dev.lazypages.proc.Vma> current) {
        long a = from;
        outer:
        while (true) {
            for (Vma v : proc.getVmasList()) {
                if (overlaps(a, a + size, v.getStart(), v.getEnd())) {
                    a = v.getEnd();
                    continue outer;
                }
            }
            for (dev.lazypages.proc.Vma v : current) {
                if (overlaps(a, a + size, v.start(), v.end())) {
                    a = v.end();
                    continue outer;
                }
            }
            if (scratch != 0 && overlaps(a, a + size, scratch, scratch + SCRATCH_BYTES)) {
                a = scratch + SCRATCH_BYTES;
                continue;
            }
            return a;
        }
    }

    private static boolean overlaps(long s1, long e1, long s2, long e2) {
        return Long.compareUnsigned(s1, e2) < 0 && Long.compareUnsigned(s2, e1) < 0;
    }

    private long put(byte[] data) {
        long at = (scratchUsed + 15) & -16L;
        if (at + data.length > SCRATCH_BYTES) {
            scratchUsed = 0;
            at = 0;
        }
        RemoteMemory.write(pid, scratch + at, data);
        scratchUsed = at + data.length;
        return scratch + at;
    }

    private long putString(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        byte[] z = new byte[b.length + 1];
        System.arraycopy(b, 0, z, 0, b.length);
        return put(z);
    }

    // ---- 4. vdso, vvar ----

    private void moveSpecialMappings() {
        step("move vdso/vvar");
        List<dev.lazypages.proc.Vma> stubMaps = ProcMaps.read(pid);
        Map<Vma.Kind, dev.lazypages.proc.Vma> have = new LinkedHashMap<>();
        for (dev.lazypages.proc.Vma v : stubMaps) {
            switch (v.kind()) {
                case VDSO -> have.put(Vma.Kind.VDSO, v);
                case VVAR -> have.put(Vma.Kind.VVAR, v);
                case VVAR_VCLOCK -> have.put(Vma.Kind.VVAR_VCLOCK, v);
                default -> { }
            }
        }
        Map<Vma.Kind, Vma> want = new LinkedHashMap<>();
        for (Vma v : proc.getVmasList()) {
            if (v.getKind() == Vma.Kind.VDSO || v.getKind() == Vma.Kind.VVAR || v.getKind() == Vma.Kind.VVAR_VCLOCK) {
                want.put(v.getKind(), v);
            }
        }
        for (Map.Entry<Vma.Kind, Vma> w : want.entrySet()) {
            dev.lazypages.proc.Vma h = have.get(w.getKey());
            Vma v = w.getValue();
            if (h == null) {
                throw refuse("the image has " + v.getPath() + " at " + hex(v.getStart()) + ", this kernel gives lp-stub none");
            }
            if (h.size() != v.getEnd() - v.getStart()) {
                throw refuse(v.getPath() + " is " + (v.getEnd() - v.getStart()) + " bytes in the image but " + h.size()
                        + " bytes here (another kernel build): the restored code could not use it");
            }
        }
        // first out of the way (a temporary place free in both layouts), then to the image's addresses
        Map<Vma.Kind, Long> at = new LinkedHashMap<>();
        long from = scratch + SCRATCH_BYTES;
        for (Map.Entry<Vma.Kind, dev.lazypages.proc.Vma> h : have.entrySet()) {
            dev.lazypages.proc.Vma v = h.getValue();
            Vma target = want.get(h.getKey());
            if (target == null) {
                step("unmap " + v.path() + " (not in the image)");
                main.munmap(v.start(), v.size());
                continue;
            }
            if (target.getStart() == v.start()) {
                continue;
            }
            long tmp = freeRange(from, v.size(), stubMaps);
            main.call("mremap", NR_MREMAP, v.start(), v.size(), v.size(), MREMAP_MAYMOVE | MREMAP_FIXED, tmp);
            at.put(h.getKey(), tmp);
            from = tmp + v.size();
        }
        for (Map.Entry<Vma.Kind, Long> m : at.entrySet()) {
            Vma target = want.get(m.getKey());
            step("move " + target.getPath() + " to " + hex(target.getStart()));
            long size = target.getEnd() - target.getStart();
            long r = main.call("mremap", NR_MREMAP, m.getValue(), size, size, MREMAP_MAYMOVE | MREMAP_FIXED, target.getStart());
            if (r != target.getStart()) {
                throw new IllegalStateException("mremap moved it to " + hex(r));
            }
        }
        if (want.containsKey(Vma.Kind.VDSO)) {
            step("find a syscall gadget in the moved vdso");
            long g = SyscallGadget.find(pid);
            if (!inStubText(g)) {
                gadget = g;
                main = seized.syscalls(pid, gadget);
            }
        }
    }

    private boolean inStubText(long a) {
        return Long.compareUnsigned(a, stub.textStart()) >= 0 && Long.compareUnsigned(a, stub.textEnd()) < 0;
    }

    // ---- 5. VMAs ----

    private void createVmas() {
        Map<String, Integer> fds = new LinkedHashMap<>();
        try {
            for (Vma v : proc.getVmasList()) {
                Vma.Kind k = v.getKind();
                if (k == Vma.Kind.VDSO || k == Vma.Kind.VVAR || k == Vma.Kind.VVAR_VCLOCK || k == Vma.Kind.VSYSCALL) {
                    continue;
                }
                step("map vma " + describe(v));
                long len = v.getEnd() - v.getStart();
                int prot = v.getProt();
                boolean lazyVma = opts.lazy() && isPrivateAnon(v);
                if ((prot & RemoteSyscall.PROT_WRITE) == 0 && !lazyVma && hasStoredPages(v)) {
                    prot |= RemoteSyscall.PROT_WRITE;
                    toProtect.add(v);
                }
                long r;
                if (k == Vma.Kind.FILE_PRIVATE) {
                    Integer fd = fds.get(v.getPath());
                    if (fd == null) {
                        fd = (int) main.call("open", NR_OPEN, putString(v.getPath()), Posix.O_RDONLY | O_CLOEXEC, 0);
                        fds.put(v.getPath(), fd);
                    }
                    r = main.mmap(v.getStart(), len, prot, RemoteSyscall.MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, v.getPgoff());
                } else {
                    int flags = RemoteSyscall.MAP_PRIVATE | RemoteSyscall.MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
                    if ((v.getFlags() & Vma.Flag.GROWSDOWN_VALUE) != 0) {
                        flags |= MAP_GROWSDOWN;
                    }
                    r = main.mmap(v.getStart(), len, prot, flags, -1, 0);
                }
                if (r != v.getStart()) {
                    throw new IllegalStateException("mmap placed it at " + hex(r));
                }
                adviseAgain(v, len);
            }
        } finally {
            if (pid > 0) {
                for (int fd : fds.values()) {
                    try {
                        main.close(fd);
                    } catch (RuntimeException e) {
                        // the failure that got us here is the one to report
                    }
                }
            }
        }
    }

    /** The smaps VmFlags the dumper records, and the madvise(2) advice that sets each again. */
    private static final Map<String, Integer> ADVICE = Map.of(
            "rr", 1 /* MADV_RANDOM */, "sr", 2 /* MADV_SEQUENTIAL */, "dc", 10 /* MADV_DONTFORK */,
            "mg", 12 /* MADV_MERGEABLE */, "hg", 14 /* MADV_HUGEPAGE */, "nh", 15 /* MADV_NOHUGEPAGE */,
            "dd", 16 /* MADV_DONTDUMP */, "wf", 18 /* MADV_WIPEONFORK */);

    private void adviseAgain(Vma v, long len) {
        for (String flag : v.getVmFlagsList()) {
            Integer advice = ADVICE.get(flag);
            if (advice == null) {
                continue;
            }
            try {
                main.call("madvise", NR_MADVISE, v.getStart(), len, advice);
            } catch (SyscallException e) {
                // KSM or THP may be compiled out here: the memory works the same without the advice
                if (!(e.errno() == Errno.EINVAL && (flag.equals("mg") || flag.equals("hg") || flag.equals("nh")))) {
                    throw e;
                }
            }
        }
    }

    private static boolean isPrivateAnon(Vma v) {
        return v.getKind() == Vma.Kind.ANON || v.getKind() == Vma.Kind.HEAP || v.getKind() == Vma.Kind.STACK;
    }

    private boolean hasStoredPages(Vma v) {
        for (PageMapEntry e : reader.image().pageMap().getEntriesList()) {
            if (e.getPid() != proc.getPid() || e.getFlags() == PageFlags.ZERO) {
                continue;
            }
            long end = e.getVaddr() + (long) e.getNrPages() * ps;
            if (overlaps(e.getVaddr(), end, v.getStart(), v.getEnd())) {
                return true;
            }
        }
        return false;
    }

    // ---- lazy: userfaultfd ----

    private void registerLazy() {
        step("create userfaultfd in the target");
        int remote = (int) main.call("userfaultfd", NR_USERFAULTFD, O_CLOEXEC | O_NONBLOCK);
        int local;
        try {
            step("take userfaultfd (pidfd_getfd)");
            local = Pidfd.stealFd(pid, remote);
        } finally {
            main.close(remote);
        }
        uffd = Userfaultfd.adopt(local);
        step("UFFDIO_API");
        uffd.api(opts.handoff().uffdFeatures());
        for (Vma v : proc.getVmasList()) {
            if (isPrivateAnon(v)) {
                step("register vma " + describe(v) + " with userfaultfd");
                uffd.register(v.getStart(), v.getEnd() - v.getStart(), Userfaultfd.REGISTER_MODE_MISSING);
                lazyRegions.add(new LazyHandoff.Region(v.getStart(), v.getEnd()));
                lazyBytes += v.getEnd() - v.getStart();
            }
        }
    }

    private boolean inLazyRegion(long addr) {
        for (LazyHandoff.Region r : lazyRegions) {
            if (Long.compareUnsigned(addr, r.start()) >= 0 && Long.compareUnsigned(addr, r.end()) < 0) {
                return true;
            }
        }
        return false;
    }

    // ---- 6. pages ----

    private void writePages() throws IOException {
        step("write pages");
        int maxPages = WRITE_BATCH_BYTES / ps;
        try (PageBuffer buf = PageBuffer.allocate(maxPages)) {
            ByteBuffer view = buf.asByteBuffer();
            List<long[]> ranges = new ArrayList<>();
            int used = 0;
            for (PageMapEntry e : reader.image().pageMap().getEntriesList()) {
                if (e.getPid() != proc.getPid() || e.getFlags() == PageFlags.ZERO) {
                    continue;
                }
                long addr = e.getVaddr();
                int left = e.getNrPages();
                while (left > 0) {
                    if (inLazyRegion(addr)) {
                        // runs never straddle VMAs: the whole rest of this run is lazy
                        break;
                    }
                    int n = Math.min(left, maxPages - used);
                    if (n == 0) {
                        flush(buf, ranges, used);
                        used = 0;
                        continue;
                    }
                    if (e.getFlags() == PageFlags.REMOTE) {
                        opts.remote().readPages(addr, n, buf, (long) used * ps);
                        remoteBytesFetched += (long) n * ps;
                    } else {
                        view.clear().position(used * ps);
                        reader.readPages(proc.getPid(), addr, n, view);
                    }
                    ranges.add(new long[] {addr, (long) n * ps});
                    used += n;
                    addr += (long) n * ps;
                    left -= n;
                }
            }
            flush(buf, ranges, used);
        }
        for (Vma v : toProtect) {
            step("mprotect vma " + describe(v));
            main.mprotect(v.getStart(), v.getEnd() - v.getStart(), v.getProt());
        }
    }

    private void flush(PageBuffer buf, List<long[]> ranges, int pages) {
        if (ranges.isEmpty()) {
            return;
        }
        long[] addrs = new long[ranges.size()];
        long[] lens = new long[ranges.size()];
        long total = 0;
        for (int i = 0; i < addrs.length; i++) {
            addrs[i] = ranges.get(i)[0];
            lens[i] = ranges.get(i)[1];
            total += lens[i];
        }
        long n = ProcessMemory.writev(pid, addrs, lens, addrs.length, buf, 0);
        if (n != total) {
            throw new IllegalStateException("process_vm_writev wrote " + n + " of " + total + " bytes (from "
                    + hex(addrs[0]) + "): a page run lies outside the restored mappings");
        }
        bytesWritten += total;
        ranges.clear();
    }

    // ---- 7. mm ----

    private void setMm() {
        if (inStubText(gadget)) {
            step("find a syscall gadget in the restored layout");
            long g = SyscallGadget.find(pid);
            if (inStubText(g)) {
                throw refuse("the restored layout has no syscall instruction outside lp-stub's text");
            }
            gadget = g;
            main = seized.syscalls(pid, gadget);
        }
        step("unmap lp-stub text");
        main.munmap(stub.textStart(), stub.textEnd() - stub.textStart());
        step("open exe " + proc.getExe());
        int exeFd = (int) main.call("open", NR_OPEN, putString(proc.getExe()), Posix.O_RDONLY | O_CLOEXEC, 0);
        try {
            step("prctl(PR_SET_MM_MAP)");
            MmStruct mm = proc.getMm();
            long[] auxv = proc.getAuxvList().stream().mapToLong(Long::longValue).toArray();
            Prctl.MmMap map = new Prctl.MmMap(mm.getStartCode(), mm.getEndCode(), mm.getStartData(), mm.getEndData(),
                    mm.getStartBrk(), mm.getBrk(), mm.getStartStack(), mm.getArgStart(), mm.getArgEnd(),
                    mm.getEnvStart(), mm.getEnvEnd(), auxv, exeFd);
            scratchUsed = 0;
            try (PageBuffer b = PageBuffer.allocate((map.encodedSize() + ps - 1) / ps)) {
                map.encode(b, scratch + Prctl.MM_MAP_SIZE);
                byte[] bytes = new byte[(int) map.encodedSize()];
                b.copyTo(0, bytes, 0, bytes.length);
                long at = put(bytes);
                main.prctl(Prctl.PR_SET_MM, Prctl.PR_SET_MM_MAP, at, Prctl.MM_MAP_SIZE, 0);
            }
        } finally {
            main.close(exeFd);
        }
        // the image has no comm: name the process as exec would have, after its executable
        // (before the threads are cloned: they inherit it)
        step("prctl(PR_SET_NAME)");
        byte[] name = Path.of(proc.getExe()).getFileName().toString().getBytes(StandardCharsets.UTF_8);
        byte[] comm = new byte[TASK_COMM_LEN];
        System.arraycopy(name, 0, comm, 0, Math.min(name.length, TASK_COMM_LEN - 1));
        scratchUsed = 0;
        main.prctl(PR_SET_NAME, put(comm), 0, 0, 0);
    }

    // ---- 8. files ----

    private void restoreFiles() {
        step("close lp-stub's files");
        Set<Integer> wanted = new HashSet<>();
        for (OpenFile f : proc.getFilesList()) {
            wanted.add(f.getFd());
        }
        for (dev.lazypages.proc.OpenFile f : ProcFds.list(pid)) {
            if (!wanted.contains(f.fd())) {
                main.close(f.fd());
            }
        }
        List<OpenFile> files = new ArrayList<>(proc.getFilesList());
        files.sort((a, b) -> Integer.compare(a.getFd(), b.getFd()));
        for (OpenFile f : files) {
            String path = f.getKind() == OpenFile.Kind.DEV_NULL ? "/dev/null" : f.getPath();
            step("restore fd " + f.getFd() + " " + path);
            int flags = f.getFlags() & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY);
            scratchUsed = 0;
            int tmp = (int) main.call("open", NR_OPEN, putString(path), flags, 0);
            if (tmp != f.getFd()) {
                try {
                    if ((flags & O_CLOEXEC) != 0) {
                        main.call("dup3", NR_DUP3, tmp, f.getFd(), O_CLOEXEC);
                    } else {
                        main.call("dup2", NR_DUP2, tmp, f.getFd());
                    }
                } finally {
                    main.close(tmp);
                }
            }
            if (f.getKind() == OpenFile.Kind.REGULAR && f.getPos() != 0) {
                main.call("lseek", NR_LSEEK, f.getFd(), f.getPos(), SEEK_SET);
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
            scratchUsed = 0;
            long act = put(b.array());
            main.call("rt_sigaction", NR_RT_SIGACTION, sa.getSigno(), act, 0, 8);
        }
    }

    // ---- 10. threads ----

    private List<Integer> createThreads() {
        List<Integer> tids = new ArrayList<>();
        tids.add(pid);
        for (int i = 1; i < proc.getThreadsCount(); i++) {
            step("clone thread " + i + " (image tid " + proc.getThreads(i).getTid() + ")");
            int tid = (int) main.call("clone", NR_CLONE, CLONE_THREAD_FLAGS, 0, 0, 0, 0);
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
            RemoteSyscall sc = tid == pid ? main : seized.syscalls(tid, gadget);
            if (ts.hasRseq() && ts.getRseq().getAddress() != 0) {
                step("rseq of " + who);
                sc.call("rseq", NR_RSEQ, ts.getRseq().getAddress(), ts.getRseq().getLength(), 0, ts.getRseq().getSignature());
            }
            step("sigmask of " + who);
            long mask = ts.getSigmask();
            tracer.run(() -> Ptrace.setSigmask(tid, mask));
            if (!ts.getXstate().isEmpty()) {
                step("xstate of " + who);
                byte[] xs = ts.getXstate().toByteArray();
                tracer.run(() -> Ptrace.setXstate(tid, xs));
            }
            step("registers of " + who);
            Regs regs = Regs.fromWords(ts.getRegsList().stream().mapToLong(Long::longValue).toArray());
            SyscallRestart.fixUp(regs);
            seized.setRegs(tid, regs);
        }
    }

    private void startHandoff() throws Exception {
        if (uffd == null) {
            return;
        }
        step("start the page server");
        Userfaultfd u = uffd;
        uffd = null; // the handoff owns it now
        opts.handoff().start(pid, proc.getPid(), opts.imagesDir(), u, List.copyOf(lazyRegions),
                remotePages > 0 ? opts.remote() : null);
    }

    // ---- 12. go ----

    private void finish() {
        step("unmap scratch");
        main.munmap(scratch, SCRATCH_BYTES);
        step("detach");
        seized.detach();
        tracer.close();
    }

    // ---- failure ----

    /** SIGKILLs the half-built process and releases it (reaped as our tracee), closes what we hold. */
    private void abort() {
        if (uffd != null) {
            uffd.close();
            uffd = null;
        }
        if (pid <= 0) {
            return;
        }
        try {
            Posix.kill(pid, SIGKILL);
        } catch (SyscallException e) {
            // gone already
        }
        if (tracer != null) {
            try {
                tracer.run(this::reapTracees);
            } catch (RuntimeException e) {
                // best effort
            }
            tracer.close();
        }
    }

    /** On the tracer thread: wait for each traced thread's death so that nothing stays a ptrace zombie of ours. */
    private void reapTracees() {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        List<Integer> tids = new ArrayList<>();
        try {
            tids.addAll(seized.threads());
        } catch (RuntimeException e) {
            tids.add(pid);
        }
        for (int tid : tids) {
            while (System.nanoTime() - deadline < 0) {
                WaitStatus ws;
                try {
                    ws = Ptrace.waitpid(tid, Ptrace.WALL | Ptrace.WNOHANG);
                } catch (SyscallException e) {
                    if (e.errno() == Errno.ECHILD) {
                        break;
                    }
                    throw e;
                }
                if (ws.pid() != 0 && ws.terminated()) {
                    break;
                }
                Thread.onSpinWait();
            }
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

    private static String hex(long a) {
        return "0x" + Long.toHexString(a);
    }

    private static String describe(Vma v) {
        return hex(v.getStart()) + "-" + hex(v.getEnd()) + (v.getPath().isEmpty() ? "" : " " + v.getPath());
    }
}
