package dev.lazypages.restore;

import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.ProcessMemory;
import dev.lazypages.ffm.Ptrace;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.WaitStatus;
import dev.lazypages.image.proto.Vma;
import dev.lazypages.memory.PageRanges;
import dev.lazypages.proc.NativeStubs;
import dev.lazypages.proc.ProcMaps;
import dev.lazypages.proc.RemoteMemory;
import dev.lazypages.proc.RemoteSyscall;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.SyscallGadget;
import dev.lazypages.proc.TracerThread;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;
import java.util.function.Predicate;

/**
 * A process under construction inside a seized {@code lp-stub}: its memory layout and its
 * pages, before {@link Restorer} gives it the rest of its state (mm, files, signal handlers,
 * threads, registers) and lets it run.
 *
 * <p>A cold restore builds it once from the final image. A warm destination ({@link WarmRestore})
 * builds it from the first pre-copy round while the source still runs, then brings it up to
 * date with every later round and the final image: {@link #applyLayout} maps what is new,
 * unmaps what went away and keeps every page of a mapping that stayed (same kind, same file and
 * offset); {@link #have()} is the set of pages whose content is the image chain's latest, so
 * that a round only writes what changed, and {@link #drop} discards (MADV_DONTNEED) pages whose
 * content is stale.
 *
 * <p>Not thread-safe: one caller at a time (the ptrace work itself runs on the skeleton's
 * tracer thread).
 */
final class Skeleton {
    private static final int NR_OPEN = 2;
    private static final int NR_MREMAP = 25;
    private static final int NR_MADVISE = 28;
    private static final int NR_PIDFD_OPEN = 434;
    private static final int NR_PROCESS_MADVISE = 440;
    private static final int MADV_DONTNEED = 4;
    private static final int MAP_GROWSDOWN = 0x100;
    private static final int MAP_FIXED_NOREPLACE = 0x100000;
    private static final int MREMAP_MAYMOVE = 1;
    private static final int MREMAP_FIXED = 2;
    private static final int O_CLOEXEC = 02000000;
    private static final int SIGKILL = 9;
    /** Scratch area: {@link #PUT_BYTES} for {@link #put} (two paths of PATH_MAX, or the prctl_mm_map struct and auxv), then iovecs. */
    static final long SCRATCH_BYTES = 8 * 4096;
    private static final long PUT_BYTES = 3 * 4096;
    /** Where in the scratch area {@link #drop} puts the iovecs of one process_madvise (1024 = UIO_MAXIOV of them). */
    private static final long IOV_OFFSET = 4 * 4096;
    private static final int IOV_MAX = 1024;
    /** Pages written per process_vm_writev batch (two buffers: one filled while the other is written). */
    private static final int WRITE_BATCH_BYTES = 16 << 20;
    private static final int NR_ALARM = 37;
    private static final long SPAWN_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(5);

    /** The smaps VmFlags the dumper records, and the madvise(2) advice that sets each again. */
    private static final Map<String, Integer> ADVICE = Map.of(
            "rr", 1 /* MADV_RANDOM */, "sr", 2 /* MADV_SEQUENTIAL */, "dc", 10 /* MADV_DONTFORK */,
            "mg", 12 /* MADV_MERGEABLE */, "hg", 14 /* MADV_HUGEPAGE */, "nh", 15 /* MADV_NOHUGEPAGE */,
            "dd", 16 /* MADV_DONTDUMP */, "wf", 18 /* MADV_WIPEONFORK */);

    /** An image VMA as mapped now, with the protection it has now (write added while pages are written). */
    private record Mapped(Vma vma, int prot) {
    }

    /** Fills {@code pages} pages at byte {@code offset} of {@code buf} with the content of image address {@code addr}. */
    interface PageFill {
        void fill(long addr, int pages, PageBuffer buf, long offset) throws IOException;
    }

    final int ps = (int) Posix.pageSize();
    private Consumer<String> step;
    private String lastStep = "spawn lp-stub";
    NativeStubs.StubInfo stub;
    int pid = -1;
    TracerThread tracer;
    SeizedProcess seized;
    RemoteSyscall main;
    long gadget;
    long scratch;
    private long scratchUsed;
    private boolean stubTextMapped = true;
    private List<Mapped> layout = new ArrayList<>();
    private PageRanges have = PageRanges.EMPTY;
    /** A superset of the pages populated in the process (written, not dropped or unmapped since). */
    private PageRanges populated = PageRanges.EMPTY;
    private long bytesWritten;
    /** Time spent filling buffers (reading the image or the source) and writing them into the process. */
    private volatile long fillNanos;
    private long writeNanos;
    private final PageBuffer[] buffers = new PageBuffer[2];
    private java.util.concurrent.ExecutorService filler;
    /** Whether process_madvise(MADV_DONTNEED) works here on a process's own memory (Linux 6.13+); else one madvise per run. */
    private boolean processMadvise = true;

    private Skeleton(Consumer<String> step) {
        this.step = step;
    }

    /**
     * Spawns lp-stub, seizes it, makes room (its stack goes, a scratch area comes) and moves its
     * vdso and vvar to where {@code vmas} has them. No VMA of the image is mapped yet.
     *
     * @throws RestoreException the layout cannot be rebuilt here (vdso size, lp-stub text in the way)
     */
    static Skeleton spawn(Path stubPath, List<Vma> vmas, Consumer<String> step) throws IOException {
        Skeleton s = new Skeleton(step);
        try {
            s.spawnStub(stubPath);
            s.prepareStub(vmas);
            s.moveSpecialMappings(vmas);
            return s;
        } catch (IOException | RuntimeException e) {
            s.kill();
            throw e;
        }
    }

    /** Where the step names go from now on (the restore taking over a warm skeleton). */
    void onStep(Consumer<String> s) {
        step = s;
    }

    private void step(String name) {
        lastStep = name;
        step.accept(name);
    }

    RestoreException refuse(String problem) {
        return new RestoreException(lastStep, RestoreException.Reason.UNSUPPORTED, problem, null);
    }

    /** Bytes written into the process so far. */
    long bytesWritten() {
        return bytesWritten;
    }

    /** Time spent reading page contents for {@link #write} so far. */
    long fillNanos() {
        return fillNanos;
    }

    /** Time spent in process_vm_writev so far. */
    long writeNanos() {
        return writeNanos;
    }

    /** The pages whose content is the latest of the image chain applied so far. */
    PageRanges have() {
        return have;
    }

    /** Pages that may be populated (with the right content or not): everything written, less what was dropped or unmapped. */
    PageRanges populated() {
        return populated;
    }

    /** Whether {@code v}, exactly as the image has it, is mapped already (a warm skeleton's earlier round). */
    boolean hasMapped(Vma v) {
        for (Mapped m : layout) {
            if (m.vma().equals(v)) {
                return true;
            }
        }
        return false;
    }

    /** The content of {@code ranges} is about to change: until rewritten, those pages are no longer right. */
    void forget(PageRanges ranges) {
        have = have.subtract(ranges);
    }

    // ---- the stub ----

    private void spawnStub(Path stubPath) throws IOException {
        step("spawn lp-stub");
        stub = NativeStubs.lpStub(stubPath);
        pid = Features.spawnDetached(stub.binary().toString());
        Path want = stub.binary().toRealPath();
        long deadline = System.nanoTime() + SPAWN_TIMEOUT_NANOS;
        while (true) {
            Path exe;
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
        main.call("alarm", NR_ALARM, 0); // lp-stub's own alarm(10), for when nobody seizes it (see lp-stub.S)
    }

    private boolean inPause() {
        try {
            return Files.readString(Path.of("/proc/" + pid + "/syscall")).startsWith("34 ");
        } catch (IOException e) {
            return false;
        }
    }

    private void prepareStub(List<Vma> vmas) {
        step("unmap lp-stub stack");
        List<dev.lazypages.proc.Vma> stubMaps = ProcMaps.read(pid);
        for (dev.lazypages.proc.Vma v : stubMaps) {
            if (v.kind() == dev.lazypages.proc.Vma.Kind.STACK) {
                main.munmap(v.start(), v.size());
            }
        }
        step("map scratch");
        checkStubText(vmas);
        scratch = freeRange(stub.textEnd(), SCRATCH_BYTES, vmas, stubMaps);
        mapScratch(scratch);
    }

    private void checkStubText(List<Vma> vmas) {
        if (!stubTextMapped) {
            return;
        }
        for (Vma v : vmas) {
            if (v.getKind() != Vma.Kind.VSYSCALL && overlaps(v.getStart(), v.getEnd(), stub.textStart(), stub.textEnd())) {
                throw refuse("mapping " + describe(v) + " overlaps lp-stub's text at " + hex(stub.textStart())
                        + "; this layout cannot be rebuilt in lp-stub");
            }
        }
    }

    private void mapScratch(long at) {
        long r = main.mmap(at, SCRATCH_BYTES, RemoteSyscall.PROT_READ | RemoteSyscall.PROT_WRITE,
                RemoteSyscall.MAP_PRIVATE | RemoteSyscall.MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (r != at) {
            throw new IllegalStateException("scratch mapped at " + hex(r) + ", not " + hex(at));
        }
    }

    /** The first page-aligned range of {@code size} bytes from {@code from} free in the image and in {@code current}. */
    private long freeRange(long from, long size, List<Vma> vmas, List<dev.lazypages.proc.Vma> current) {
        long a = from;
        outer:
        while (true) {
            for (Vma v : vmas) {
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

    static boolean overlaps(long s1, long e1, long s2, long e2) {
        return Long.compareUnsigned(s1, e2) < 0 && Long.compareUnsigned(s2, e1) < 0;
    }

    /** Writes {@code data} into the scratch area (16-byte aligned) and returns its address there. */
    long put(byte[] data) {
        long at = (scratchUsed + 15) & -16L;
        if (at + data.length > PUT_BYTES) {
            at = 0;
        }
        RemoteMemory.write(pid, scratch + at, data);
        scratchUsed = at + data.length;
        return scratch + at;
    }

    /** {@link #put} of a NUL-terminated string. */
    long putString(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        byte[] z = new byte[b.length + 1];
        System.arraycopy(b, 0, z, 0, b.length);
        return put(z);
    }

    /** Starts the scratch area over (what was put there is no longer needed). */
    void resetScratch() {
        scratchUsed = 0;
    }

    // ---- vdso, vvar ----

    private void moveSpecialMappings(List<Vma> vmas) {
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
        Map<Vma.Kind, Vma> want = specialMappings(vmas);
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
            long tmp = freeRange(from, v.size(), vmas, stubMaps);
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

    private static Map<Vma.Kind, Vma> specialMappings(List<Vma> vmas) {
        Map<Vma.Kind, Vma> want = new LinkedHashMap<>();
        for (Vma v : vmas) {
            if (v.getKind() == Vma.Kind.VDSO || v.getKind() == Vma.Kind.VVAR || v.getKind() == Vma.Kind.VVAR_VCLOCK) {
                want.put(v.getKind(), v);
            }
        }
        return want;
    }

    boolean inStubText(long a) {
        return Long.compareUnsigned(a, stub.textStart()) >= 0 && Long.compareUnsigned(a, stub.textEnd()) < 0;
    }

    /** Unmaps lp-stub's text (once the gadget is elsewhere). */
    void unmapStubText() {
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
        stubTextMapped = false;
    }

    // ---- the layout ----

    private static boolean special(Vma v) {
        Vma.Kind k = v.getKind();
        return k == Vma.Kind.VDSO || k == Vma.Kind.VVAR || k == Vma.Kind.VVAR_VCLOCK || k == Vma.Kind.VSYSCALL;
    }

    static boolean isPrivateAnon(Vma v) {
        return v.getKind() == Vma.Kind.ANON || v.getKind() == Vma.Kind.HEAP || v.getKind() == Vma.Kind.STACK;
    }

    /** Whether memory mapped as {@code a} can stand for {@code b} where they overlap (same backing, same offsets). */
    private static boolean sameBacking(Vma a, Vma b) {
        boolean growsA = (a.getFlags() & Vma.Flag.GROWSDOWN_VALUE) != 0;
        boolean growsB = (b.getFlags() & Vma.Flag.GROWSDOWN_VALUE) != 0;
        if (isPrivateAnon(a) && isPrivateAnon(b)) {
            return growsA == growsB;
        }
        return a.getKind() == Vma.Kind.FILE_PRIVATE && b.getKind() == Vma.Kind.FILE_PRIVATE && a.getPath().equals(b.getPath())
                && a.getDev() == b.getDev() && a.getInode() == b.getInode()
                && a.getPgoff() - a.getStart() == b.getPgoff() - b.getStart();
    }

    /**
     * Brings the mappings to {@code vmas} (vdso and vvar excepted, they stay where
     * {@link #spawn} put them): what no longer exists (or exists with another backing) is
     * unmapped and its pages leave {@link #have()}; what is new is mapped; what stayed keeps its
     * pages and gets its new protection. A VMA gets PROT_WRITE added when {@code writable} says
     * so (pages will be written into it); {@link #finalProtections} takes it away.
     */
    void applyLayout(List<Vma> vmas, Predicate<Vma> writable) {
        List<Vma> want = vmas.stream().filter(v -> !special(v)).toList();
        checkStubText(want);
        for (Vma v : want) {
            if (overlaps(v.getStart(), v.getEnd(), scratch, scratch + SCRATCH_BYTES)) {
                moveScratch(vmas);
                break;
            }
        }
        // 1. away with what is gone
        for (Mapped m : layout) {
            Vma o = m.vma();
            PageRanges.Builder keep = PageRanges.builder();
            for (Vma n : want) {
                if (sameBacking(o, n) && overlaps(o.getStart(), o.getEnd(), n.getStart(), n.getEnd())) {
                    keep.add(max(o.getStart(), n.getStart()), min(o.getEnd(), n.getEnd()));
                }
            }
            PageRanges gone = PageRanges.of(o.getStart(), o.getEnd()).subtract(keep.build());
            for (PageRanges.Run r : gone) {
                step("unmap " + hex(r.start()) + "-" + hex(r.end()) + " (gone from the image)");
                main.munmap(r.start(), r.bytes());
            }
            have = have.subtract(gone);
            populated = populated.subtract(gone);
        }
        // 2. map what is new, re-protect what stayed
        List<Mapped> next = new ArrayList<>(want.size());
        Map<String, Integer> fds = new LinkedHashMap<>();
        try {
            for (Vma n : want) {
                int prot = n.getProt() | (writable.test(n) ? RemoteSyscall.PROT_WRITE : 0);
                PageRanges.Builder kept = PageRanges.builder();
                boolean reprotect = false;
                for (Mapped m : layout) {
                    Vma o = m.vma();
                    if (sameBacking(o, n) && overlaps(o.getStart(), o.getEnd(), n.getStart(), n.getEnd())) {
                        kept.add(max(o.getStart(), n.getStart()), min(o.getEnd(), n.getEnd()));
                        reprotect |= m.prot() != prot;
                    }
                }
                PageRanges keptRanges = kept.build();
                if (reprotect) {
                    for (PageRanges.Run r : keptRanges) {
                        step("mprotect " + hex(r.start()) + "-" + hex(r.end()));
                        main.mprotect(r.start(), r.bytes(), prot);
                    }
                }
                PageRanges fresh = PageRanges.of(n.getStart(), n.getEnd()).subtract(keptRanges);
                for (PageRanges.Run r : fresh) {
                    mapRun(n, r.start(), r.end(), prot, fds);
                }
                if (!fresh.isEmpty()) {
                    adviseAgain(n);
                }
                next.add(new Mapped(n, prot));
            }
        } finally {
            for (int fd : fds.values()) {
                try {
                    main.close(fd);
                } catch (RuntimeException e) {
                    // the failure that got us here is the one to report
                }
            }
        }
        layout = next;
    }

    private void mapRun(Vma v, long start, long end, int prot, Map<String, Integer> fds) {
        step("map vma " + describe(v) + (start != v.getStart() || end != v.getEnd() ? " part " + hex(start) + "-" + hex(end) : ""));
        long len = end - start;
        long r;
        if (v.getKind() == Vma.Kind.FILE_PRIVATE) {
            Integer fd = fds.get(v.getPath());
            if (fd == null) {
                resetScratch();
                fd = (int) main.call("open", NR_OPEN, putString(v.getPath()), Posix.O_RDONLY | O_CLOEXEC, 0);
                fds.put(v.getPath(), fd);
            }
            r = main.mmap(start, len, prot, RemoteSyscall.MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd,
                    v.getPgoff() + (start - v.getStart()));
        } else {
            int flags = RemoteSyscall.MAP_PRIVATE | RemoteSyscall.MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
            if ((v.getFlags() & Vma.Flag.GROWSDOWN_VALUE) != 0) {
                flags |= MAP_GROWSDOWN;
            }
            r = main.mmap(start, len, prot, flags, -1, 0);
        }
        if (r != start) {
            throw new IllegalStateException("mmap placed it at " + hex(r));
        }
    }

    private void moveScratch(List<Vma> vmas) {
        step("move scratch");
        long old = scratch;
        long at = freeRange(stub.textEnd(), SCRATCH_BYTES, vmas, ProcMaps.read(pid));
        mapScratch(at);
        scratch = at;
        main.munmap(old, SCRATCH_BYTES);
    }

    private void adviseAgain(Vma v) {
        for (String flag : v.getVmFlagsList()) {
            Integer advice = ADVICE.get(flag);
            if (advice == null) {
                continue;
            }
            try {
                main.call("madvise", NR_MADVISE, v.getStart(), v.getEnd() - v.getStart(), advice);
            } catch (SyscallException e) {
                // KSM or THP may be compiled out here: the memory works the same without the advice
                if (!(e.errno() == Errno.EINVAL && (flag.equals("mg") || flag.equals("hg") || flag.equals("nh")))) {
                    throw e;
                }
            }
        }
    }

    /** The part of {@code ranges} in mapped VMAs without write access. */
    private PageRanges readOnlyPart(PageRanges ranges) {
        PageRanges.Builder b = PageRanges.builder();
        for (Mapped m : layout) {
            if ((m.prot() & RemoteSyscall.PROT_WRITE) == 0) {
                b.addAll(ranges.intersect(m.vma().getStart(), m.vma().getEnd()));
            }
        }
        return b.build();
    }

    /**
     * Writes {@code ranges}, which lie in mappings without write access (process_vm_writev honours
     * protections), through /proc/PID/mem: as a debugger's write, it forces the copy-on-write of
     * the private mapping, and spares the two injected mprotect calls per mapping that making it
     * writable for the write would cost. A few pages (e.g. RELRO pages), so one pwrite per run.
     */
    private void writeForced(PageRanges ranges, PageFill fill) throws IOException {
        int maxPages = WRITE_BATCH_BYTES / ps;
        if (buffers[0] == null) {
            buffers[0] = PageBuffer.allocate(maxPages);
        }
        long t0 = System.nanoTime();
        int fd = Posix.open("/proc/" + pid + "/mem", Posix.O_RDWR, 0);
        try {
            for (PageRanges.Run r : ranges) {
                long addr = r.start();
                long left = r.pages();
                while (left > 0) {
                    int n = (int) Math.min(left, maxPages);
                    fill.fill(addr, n, buffers[0], 0);
                    buffers[0].pages(0, n).writeTo(fd, addr);
                    addr += (long) n * ps;
                    left -= n;
                }
            }
        } finally {
            Posix.close(fd);
        }
        writeNanos += System.nanoTime() - t0;
        bytesWritten += ranges.byteCount();
        have = have.union(ranges);
        populated = populated.union(ranges);
    }

    /** Gives every VMA the protection of the image (takes away the write access pages needed). */
    void finalProtections() {
        List<Mapped> next = new ArrayList<>(layout.size());
        for (Mapped m : layout) {
            Vma v = m.vma();
            if (m.prot() != v.getProt()) {
                step("mprotect vma " + describe(v));
                main.mprotect(v.getStart(), v.getEnd() - v.getStart(), v.getProt());
            }
            next.add(new Mapped(v, v.getProt()));
        }
        layout = next;
    }

    // ---- pages ----

    /**
     * Discards the pages of {@code ranges} (MADV_DONTNEED): anonymous memory reads zero again (or,
     * registered with userfaultfd, faults), file mappings the file. In batches of 1024 runs: one
     * process_madvise(2) injected into the process on its own pidfd (allowed for any advice on
     * one's own memory since Linux 6.13), else one injected madvise(2) per run.
     */
    void drop(PageRanges ranges) {
        if (ranges.isEmpty()) {
            return;
        }
        step("drop stale pages (" + ranges.runCount() + " runs, " + ranges.pageCount() + " pages)");
        int from = 0;
        if (processMadvise && ranges.runCount() > 2) {
            long pfd = pidfdInTarget >= 0 ? pidfdInTarget : main.call("pidfd_open", NR_PIDFD_OPEN, pid, 0);
            pidfdInTarget = -1;
            try {
                while (from < ranges.runCount()) {
                    int n = Math.min(IOV_MAX, ranges.runCount() - from);
                    ByteBuffer iov = ByteBuffer.allocate(n * 16).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                    long want = 0;
                    for (int i = 0; i < n; i++) {
                        PageRanges.Run r = ranges.run(from + i);
                        iov.putLong(r.start()).putLong(r.bytes());
                        want += r.bytes();
                    }
                    RemoteMemory.write(pid, scratch + IOV_OFFSET, iov.array());
                    long done;
                    try {
                        done = main.call("process_madvise", NR_PROCESS_MADVISE, pfd, scratch + IOV_OFFSET, n, MADV_DONTNEED, 0);
                    } catch (SyscallException e) {
                        if (from == 0 && (e.errno() == Errno.EINVAL || e.errno() == Errno.ENOSYS)) {
                            processMadvise = false; // an older kernel: one madvise per run below
                            break;
                        }
                        throw e;
                    }
                    if (done != want) {
                        throw new IllegalStateException("process_madvise(MADV_DONTNEED) advised " + done + " of " + want
                                + " bytes from " + hex(ranges.start(from)));
                    }
                    from += n;
                }
            } finally {
                main.close((int) pfd);
            }
        }
        for (int i = from; i < ranges.runCount(); i++) {
            main.call("madvise", NR_MADVISE, ranges.start(i), ranges.end(i) - ranges.start(i), MADV_DONTNEED);
        }
        have = have.subtract(ranges);
        populated = populated.subtract(ranges);
    }

    /** A pidfd of the process on itself, in its fd table, opened ahead for the next {@link #drop}; -1 when none. */
    private long pidfdInTarget = -1;

    /**
     * Opens, in the process, the pidfd the next {@link #drop} needs (which closes it), so that a
     * drop in the frozen window injects one call fewer. Best effort: without it the drop opens one.
     */
    void preparePidfd() {
        if (pidfdInTarget < 0 && processMadvise) {
            try {
                pidfdInTarget = main.call("pidfd_open", NR_PIDFD_OPEN, pid, 0);
            } catch (RuntimeException e) {
                pidfdInTarget = -1;
            }
        }
    }

    /** Closes the pidfd {@link #preparePidfd} opened if no drop used it (it must not stay in the restored process). */
    void closePidfd() {
        if (pidfdInTarget >= 0) {
            int fd = (int) pidfdInTarget;
            pidfdInTarget = -1;
            main.close(fd);
        }
    }

    /** One process_vm_writev's worth: ranges of the process, their bytes one after another in a buffer. */
    private record Batch(long[] addrs, long[] lens) {
    }

    /**
     * Writes the pages of {@code ranges}, their content from {@code fill}, and adds them to
     * {@link #have()}. In batches of {@link #WRITE_BATCH_BYTES}: while one is written
     * (process_vm_writev) the next is filled on another thread.
     */
    void write(PageRanges ranges, PageFill fill) throws IOException {
        write(ranges, fill, () -> false);
    }

    /**
     * {@link #write}, stopping between two batches once {@code stop} says so (what was written
     * by then is in {@link #have()}, the rest not).
     *
     * @return whether every page was written
     */
    boolean write(PageRanges ranges, PageFill fill, java.util.function.BooleanSupplier stop) throws IOException {
        if (ranges.isEmpty()) {
            return true;
        }
        PageRanges forced = readOnlyPart(ranges);
        if (!forced.isEmpty()) {
            if (stop.getAsBoolean()) {
                return false;
            }
            writeForced(forced, fill);
            ranges = ranges.subtract(forced);
            if (ranges.isEmpty()) {
                return true;
            }
        }
        int maxPages = WRITE_BATCH_BYTES / ps;
        List<Batch> batches = new ArrayList<>();
        List<long[]> cur = new ArrayList<>();
        int used = 0;
        for (PageRanges.Run r : ranges) {
            long addr = r.start();
            long left = r.pages();
            while (left > 0) {
                int n = (int) Math.min(left, maxPages - used);
                if (n == 0) {
                    batches.add(batch(cur));
                    used = 0;
                    continue;
                }
                cur.add(new long[] {addr, (long) n * ps});
                used += n;
                addr += (long) n * ps;
                left -= n;
            }
        }
        batches.add(batch(cur));
        for (int i = 0; i < Math.min(2, batches.size()); i++) {
            if (buffers[i] == null) {
                buffers[i] = PageBuffer.allocate(maxPages);
            }
        }
        if (batches.size() == 1) {
            if (stop.getAsBoolean()) {
                return false;
            }
            fillBatch(batches.getFirst(), fill, buffers[0]);
            flush(batches.getFirst(), buffers[0]);
        } else {
            if (filler == null) {
                filler = java.util.concurrent.Executors.newSingleThreadExecutor(r -> {
                    Thread t = new Thread(r, "lp-skeleton-fill-" + pid);
                    t.setDaemon(true);
                    return t;
                });
            }
            java.util.concurrent.Future<?> next = fillAsync(batches.getFirst(), fill, buffers[0]);
            for (int k = 0; k < batches.size(); k++) {
                await(next);
                if (stop.getAsBoolean()) {
                    return false; // the filler is idle: the batch it filled is not written
                }
                if (k + 1 < batches.size()) {
                    next = fillAsync(batches.get(k + 1), fill, buffers[(k + 1) & 1]);
                }
                try {
                    flush(batches.get(k), buffers[k & 1]);
                } catch (RuntimeException e) {
                    next.cancel(false);
                    throw e;
                }
            }
        }
        return true;
    }

    private static Batch batch(List<long[]> ranges) {
        long[] addrs = new long[ranges.size()];
        long[] lens = new long[ranges.size()];
        for (int i = 0; i < addrs.length; i++) {
            addrs[i] = ranges.get(i)[0];
            lens[i] = ranges.get(i)[1];
        }
        ranges.clear();
        return new Batch(addrs, lens);
    }

    private void fillBatch(Batch b, PageFill fill, PageBuffer buf) throws IOException {
        long t0 = System.nanoTime();
        long off = 0;
        for (int i = 0; i < b.addrs().length; i++) {
            fill.fill(b.addrs()[i], (int) (b.lens()[i] / ps), buf, off);
            off += b.lens()[i];
        }
        fillNanos += System.nanoTime() - t0; // one filler at a time: the caller waits for it before the next
    }

    private java.util.concurrent.Future<?> fillAsync(Batch b, PageFill fill, PageBuffer buf) {
        return filler.submit(() -> {
            fillBatch(b, fill, buf);
            return null;
        });
    }

    private static void await(java.util.concurrent.Future<?> f) throws IOException {
        try {
            f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted while reading pages");
        } catch (java.util.concurrent.ExecutionException e) {
            throw rethrow(e.getCause());
        }
    }

    /** {@code c} as it is when unchecked or an IOException (returned to be thrown), else wrapped. */
    private static IOException rethrow(Throwable c) {
        if (c instanceof IOException io) {
            return io;
        }
        if (c instanceof RuntimeException r) {
            throw r;
        }
        if (c instanceof Error err) {
            throw err;
        }
        throw new IllegalStateException(c.getMessage(), c);
    }

    private void flush(Batch b, PageBuffer buf) {
        long total = 0;
        for (long len : b.lens()) {
            total += len;
        }
        long t0 = System.nanoTime();
        long n = ProcessMemory.writev(pid, b.addrs(), b.lens(), b.addrs().length, buf, 0);
        writeNanos += System.nanoTime() - t0;
        if (n != total) {
            throw new IllegalStateException("process_vm_writev wrote " + n + " of " + total + " bytes (from "
                    + hex(b.addrs()[0]) + "): a page run lies outside the restored mappings");
        }
        bytesWritten += total;
        PageRanges.Builder done = PageRanges.builder();
        for (int i = 0; i < b.addrs().length; i++) {
            done.add(b.addrs()[i], b.addrs()[i] + b.lens()[i]);
        }
        PageRanges d = done.build();
        have = have.union(d);
        populated = populated.union(d);
    }

    /** Frees the page buffers and the filling thread (the skeleton stays). */
    void releaseBuffer() {
        for (int i = 0; i < buffers.length; i++) {
            if (buffers[i] != null) {
                buffers[i].close();
                buffers[i] = null;
            }
        }
        if (filler != null) {
            filler.shutdownNow();
            filler = null;
        }
    }

    /** Work for {@link #onTracer}. */
    interface TracerWork {
        void run() throws Exception;
    }

    /**
     * Runs {@code w} on the tracer thread: every injected system call and ptrace request in it
     * goes without a hand-over between threads. Its exceptions come out as they are.
     */
    void onTracer(TracerWork w) throws IOException {
        try {
            tracer.call(() -> {
                w.run();
                return null;
            });
        } catch (java.util.concurrent.CompletionException e) {
            throw rethrow(e.getCause());
        }
    }

    /** A view of {@code buf} for {@link dev.lazypages.image.ImageReader#readPages}: {@code pages} pages at {@code offset}. */
    static ByteBuffer view(PageBuffer buf, long offset, int pages, int ps) {
        return buf.asByteBuffer().clear().position((int) offset).limit((int) offset + pages * ps);
    }

    // ---- the end ----

    /** Unmaps the scratch area and lets the process run. */
    void detach() {
        step("unmap scratch");
        main.munmap(scratch, SCRATCH_BYTES);
        step("detach");
        seized.detach();
        tracer.close();
        releaseBuffer();
    }

    /** SIGKILLs the half-built process and reaps it as our tracee; idempotent. */
    void kill() {
        releaseBuffer();
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
        pid = -1;
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

    private static long max(long a, long b) {
        return Long.compareUnsigned(a, b) >= 0 ? a : b;
    }

    private static long min(long a, long b) {
        return Long.compareUnsigned(a, b) <= 0 ? a : b;
    }

    static String hex(long a) {
        return "0x" + Long.toHexString(a);
    }

    static String describe(Vma v) {
        return hex(v.getStart()) + "-" + hex(v.getEnd()) + (v.getPath().isEmpty() ? "" : " " + v.getPath());
    }
}
