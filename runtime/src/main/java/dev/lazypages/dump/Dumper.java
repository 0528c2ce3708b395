package dev.lazypages.dump;

import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Ptrace;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.WaitStatus;
import dev.lazypages.image.ImageFile;
import dev.lazypages.image.ImageWriter;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.MmStruct;
import dev.lazypages.image.proto.OpenFile;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.ProcessTree;
import dev.lazypages.image.proto.SigAction;
import dev.lazypages.image.proto.ThreadState;
import dev.lazypages.proc.Auxv;
import dev.lazypages.proc.Proc;
import dev.lazypages.proc.ProcException;
import dev.lazypages.proc.ProcFds;
import dev.lazypages.proc.ProcMaps;
import dev.lazypages.proc.ProcStat;
import dev.lazypages.proc.RemoteScratch;
import dev.lazypages.proc.RemoteSyscall;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.TracerThread;
import dev.lazypages.proc.Vma;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * Checkpoints one running process into an image directory (docs/IMAGE.md), like
 * {@code criu dump -t PID -D DIR}: every thread is seized and frozen on a {@link TracerThread};
 * while frozen, the VMAs (smaps), mm fields, auxv, exe, open files, each thread's registers and
 * extended state are read, brk and the signal actions are read by injected system calls (the
 * scratch page they need is mapped after the VMAs were read and unmapped again before the
 * thaw, so it is in neither the VMAs nor the pages), and the pages to keep are found
 * ({@link PageSelection}) and copied ({@link PageCopier}). The process is then killed once the
 * image is published, or with {@link DumpOptions#leaveRunning} thawed and detached before the
 * image is published (everything has been read by then; the process runs on either way).
 *
 * <p>When any step fails, the scratch page is unmapped, the process is detached (running
 * exactly as before), the partial image is removed, and a {@link DumpException} names the step.
 * Once the image is complete, only the kill can still fail; the image is kept then.
 */
public final class Dumper {
    /** The dirty tracker of a plain full dump. */
    public static final String TRACKER = "none";
    /** How long the kill waits for the threads to die. */
    static final long DEATH_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(5);

    private final int pid;
    private final DumpOptions options;
    private final int pageSize = (int) Posix.pageSize();
    private String step = "start";
    /** A lazy final dump: selected pages are recorded REMOTE and the process stays frozen. */
    private boolean lazy;
    /** The outcome of a lazy dump. */
    private FrozenProcess frozen;

    private Dumper(int pid, DumpOptions options) {
        this.pid = pid;
        this.options = options;
    }

    /**
     * The lazy (post-copy) form of {@link #dump}, for {@code dump --lazy-pages}: seizes and
     * freezes {@code pid}, captures everything but the page contents, and records every page
     * it would store as REMOTE (pages.img stays empty; with {@link DumpOptions#prevImagesDir}
     * the image names its parent, but with no live tracker every page is REMOTE). The process
     * stays frozen and seized: the returned {@link FrozenProcess} serves its pages and is then
     * committed ({@link FrozenProcess#commitAndKill}) or rolled back ({@link FrozenProcess#resume}).
     * {@link DumpOptions#leaveRunning} is ignored.
     *
     * @throws IllegalArgumentException as {@link #dump}
     * @throws DumpException            naming the step (the process was left running, the image removed)
     */
    public static FrozenProcess dumpLazy(int pid, DumpOptions options) {
        checkTarget(pid, options.imagesDir());
        Plan plan = Plan.FULL;
        if (options.prevImagesDir() != null) {
            ParentImage parent = ParentImage.load(options.prevImagesDir(), pid);
            plan = new Plan(parent.relativeTo(options.imagesDir()), parent.held(), null, null, TRACKER);
        }
        Dumper d = new Dumper(pid, options);
        d.lazy = true;
        d.run(null, plan);
        return d.frozen;
    }

    /** The lazy final dump of a pre-copy session (see {@link PreCopySession#finalDumpLazy}). */
    static FrozenProcess finalDumpLazy(SeizedProcess process, DumpOptions options, Plan plan) {
        checkTarget(process.pid(), options.imagesDir());
        Dumper d = new Dumper(process.pid(), options);
        d.lazy = true;
        d.run(process, plan);
        return d.frozen;
    }

    /**
     * Dumps process {@code pid} into {@code options.imagesDir()}.
     *
     * @throws IllegalArgumentException when there is no such process or the directory is not empty
     *                                  (nothing was touched)
     * @throws DumpException            naming the step that failed (the process was left running)
     */
    public static DumpResult dump(int pid, DumpOptions options) {
        checkTarget(pid, options.imagesDir());
        Trackings.checkMode(options.trackMem());
        Plan plan = Plan.FULL;
        if (options.prevImagesDir() != null) {
            ParentImage parent = ParentImage.load(options.prevImagesDir(), pid);
            // A standalone dump has no live tracker (it died with the process that took the parent):
            // every page counts as dirty, so the image names its parent but copies every page.
            options.progress().accept("parent " + parent.dir() + " was tracked by " + parent.tracker()
                    + ", which is not alive in this process: storing every page");
            plan = new Plan(parent.relativeTo(options.imagesDir()), parent.held(), null, null, TRACKER);
        }
        return new Dumper(pid, options).run(null, plan);
    }

    /**
     * The final, frozen dump of a pre-copy: {@code process} is seized (running) by the caller, who
     * keeps it; {@code plan} names the parent and the live tracker. On success the tracker is
     * closed and the process killed, or with {@link DumpOptions#leaveRunning} thawed and detached;
     * on failure it is thawed and stays seized.
     */
    static DumpResult finalDump(SeizedProcess process, DumpOptions options, Plan plan) {
        checkTarget(process.pid(), options.imagesDir());
        return new Dumper(process.pid(), options).run(process, plan);
    }

    /**
     * What an image holds relative to its parent.
     *
     * @param parent      the parent as the inventory names it ("" for none)
     * @param parentHeld  the pages the parent holds ({@code null} for none)
     * @param tracker     the live tracker, collected once frozen ({@code null}: every page is dirty)
     * @param pending     pages already known dirty and not stored since the parent ({@code null}: none)
     * @param trackerName what the inventory records
     */
    record Plan(String parent, PageSpans parentHeld, Tracking tracker, PageSpans pending, String trackerName, FreezePrep prep) {
        static final Plan FULL = new Plan("", null, null, null, TRACKER, null);

        Plan(String parent, PageSpans parentHeld, Tracking tracker, PageSpans pending, String trackerName) {
            this(parent, parentHeld, tracker, pending, trackerName, null);
        }

        Plan withPrep(FreezePrep p) {
            return new Plan(parent, parentHeld, tracker, pending, trackerName, p);
        }
    }

    /**
     * Checks, before touching anything, that {@code pid} is a live process (not a thread of one,
     * not a zombie) and that {@code dir} is missing or an empty directory.
     *
     * @throws IllegalArgumentException with a one-line reason
     */
    public static void checkTarget(int pid, Path dir) {
        if (pid <= 0) {
            throw new IllegalArgumentException("invalid pid " + pid);
        }
        String status;
        try {
            status = Proc.readText(pid, "status");
        } catch (ProcException e) {
            throw new IllegalArgumentException("no process with pid " + pid);
        }
        String tgid = field(status, "Tgid:");
        if (tgid != null && !tgid.equals(Integer.toString(pid))) {
            throw new IllegalArgumentException("pid " + pid + " is a thread of process " + tgid + ": dump the process");
        }
        String state = field(status, "State:");
        if (state != null && (state.startsWith("Z") || state.startsWith("X"))) {
            throw new IllegalArgumentException("process " + pid + " has exited (state " + state + ")");
        }
        if (Files.exists(dir)) {
            if (!Files.isDirectory(dir)) {
                throw new IllegalArgumentException("images directory " + dir + " exists and is not a directory");
            }
            try (DirectoryStream<Path> s = Files.newDirectoryStream(dir)) {
                if (s.iterator().hasNext()) {
                    throw new IllegalArgumentException("images directory " + dir + " is not empty: refusing to overwrite it");
                }
            } catch (IOException e) {
                throw new IllegalArgumentException("cannot read images directory " + dir + ": " + e.getMessage());
            }
        }
    }

    private static String field(String status, String key) {
        for (String line : status.split("\n")) {
            if (line.startsWith(key)) {
                return line.substring(key.length()).strip();
            }
        }
        return null;
    }

    /** One step of the dump: the name is what a failure reports. */
    @FunctionalInterface
    private interface Step<T> {
        T run() throws Exception;
    }

    private <T> T step(String name, Step<T> work) {
        step = name;
        long s0 = System.nanoTime();
        try {
            return work.run();
        } catch (DumpException e) {
            throw e;
        } catch (Exception e) {
            throw new DumpException(pid, name, e);
        } finally {
            stepNanos.merge(name.replaceAll("[0-9]+", "N"), System.nanoTime() - s0, Long::sum);
        }
    }

    /** Time per step (numbers in step names folded to N), for the frozen-window breakdown. */
    private final java.util.Map<String, Long> stepNanos = new java.util.LinkedHashMap<>();

    /** E.g. {@code freeze 1.2 ms, read memory mappings 3.4 ms, ...}: steps of 0.1 ms and more. */
    private String breakdown() {
        StringBuilder b = new StringBuilder();
        stepNanos.forEach((k, v) -> {
            if (v >= 100_000 || k.endsWith(" beside")) { // the work beside the injections is always shown
                b.append(b.isEmpty() ? "" : ", ").append(k).append(' ')
                        .append(String.format(java.util.Locale.ROOT, "%.1f ms", v / 1e6));
            }
        });
        return b.toString();
    }

    private void stepVoid(String name, Runnable work) {
        step(name, () -> {
            work.run();
            return null;
        });
    }

    private void progress(String line) {
        options.progress().accept(line);
    }

    private DumpResult run(SeizedProcess external, Plan plan) {
        long t0 = System.nanoTime();
        Path dir = options.imagesDir();
        boolean dirExisted = Files.isDirectory(dir);
        Inventory inventory = step("probe the CPU and kernel", () -> inventory(pid, pageSize, Inventory.Kind.FULL, plan.parent(), plan.trackerName()));
        TracerThread tracer = external != null ? external.tracer() : new TracerThread("lp-dump-" + pid);
        ImageWriter writer = null;
        SeizedProcess process = null;
        RemoteScratch scratch = null;
        boolean imageComplete = false;
        long frozenAt = 0;
        try {
            // a lazy image is worthless without its frozen process: no fsync in the frozen window
            ImageWriter w = step("create the image in " + dir, () -> ImageWriter.create(dir, inventory).durable(!lazy));
            writer = w;
            SeizedProcess p;
            if (external != null) {
                p = external;
            } else {
                progress("seizing pid " + pid);
                p = step("seize", () -> SeizedProcess.seize(pid, tracer));
                process = p;
            }
            stepVoid("freeze", p::freeze);
            frozenAt = System.nanoTime();
            progress("frozen " + p.threads().size() + " threads");

            // read before the scratch page exists, so that it is never dumped
            List<Vma> vmas = step("read memory mappings",
                    () -> plan.prep() != null && plan.prep().pid() == pid ? plan.prep().vmasNow() : ProcMaps.readSmaps(pid));
            stepVoid("check memory mappings", () -> VmaRecords.checkSupported(vmas));
            // a lazy dump selects its pages (a pagemap walk of all memory, no page read) beside the
            // injected calls below, which wait for the frozen threads rather than use a CPU: the
            // dirty set is collected first (the injections write no tracked memory: their scratch
            // page is a VMA of its own, mapped after the VMAs were read)
            List<ThreadState> threads = new ArrayList<>();
            for (int tid : threadOrder(p.threads())) {
                threads.add(step("read registers of thread " + tid, () -> ThreadRecords.thread(p, tid)));
            }
            // after pre-copy rounds (a warm destination) the pages the restore needs before the process runs are
            // copied, not left REMOTE (see copiedAnyway); a post-copy image (no parent) keeps every page at the source
            java.util.concurrent.CompletableFuture<PageStore.Stats> selecting = lazy
                    ? selectBeside(plan, writer, vmas, plan.parentHeld() != null ? copiedAnyway(threads, vmas) : null) : null;
            selection = selecting;
            ProcStat stat = step("read /proc/" + pid + "/stat", () -> ProcStat.read(pid));
            Auxv auxv = step("read /proc/" + pid + "/auxv", () -> Auxv.read(pid));
            String exe = step("read /proc/" + pid + "/exe", () -> Proc.exe(pid));
            List<OpenFile> files = step("list open files",
                    () -> FileRecords.toImage(pid, ProcFds.list(pid), options.unsupportedFds()));

            long gadget = plan.prep() != null && plan.prep().pid() == pid ? plan.prep().gadget(vmas) : 0;
            RemoteSyscall sys = gadget != 0 ? p.syscalls(pid, gadget) : step("find a syscall instruction", () -> p.syscalls(pid));
            long brk = step("inject brk(0)", () -> ThreadRecords.brk(sys));
            // only signals caught or ignored can have a disposition other than SIG_DFL (the rest
            // are left out of the image anyway): one injected rt_sigaction each instead of 62
            long notDefault = step("read /proc/" + pid + "/status",
                    () -> ThreadRecords.notDefaultSignals(Proc.readText(pid, "status")));
            List<Integer> signals = ThreadRecords.signals(notDefault);
            List<SigAction> sigactions = new ArrayList<>();
            if (!signals.isEmpty()) {
                RemoteScratch s = step("map a scratch page", () -> RemoteScratch.map(p, sys, pageSize));
                scratch = s;
                for (int sig : signals) {
                    SigAction a = step("read the action of signal " + sig, () -> ThreadRecords.sigaction(pid, sys, s, sig));
                    if (a != null) {
                        sigactions.add(a);
                    }
                }
                stepVoid("unmap the scratch page", s::close);
                scratch = null;
            }

            PageSpans dirty = null;
            PageSpans tracked = null;
            if (selecting != null) {
                // nothing more to collect: the selection beside the injections did it
            } else if (plan.tracker() != null && !plan.tracker().reportsEverything()) {
                Tracking.Collected c = step("collect dirty pages (" + plan.tracker().name() + ")", plan.tracker()::collect);
                dirty = plan.pending() != null ? plan.pending().union(c.dirty()) : c.dirty();
                tracked = c.tracked();
            }
            PageSpans d = dirty;
            PageSpans t = tracked;
            PageStore.Stats stored = selecting != null ? step("store pages (wait for the selection)", () -> joinSelection(selecting))
                    : step("store pages", () -> PageStore.store(pid, w, vmas, d, t, plan.parentHeld(), false, lazy, null,
                    hints(plan.tracker()), options.progress()));
            selection = null;
            if (selecting != null) {
                stepNanos.putAll(besideNanos);
            }
            long pages = stored.copied();
            Process proc = Process.newBuilder()
                    .setPid(pid).setPpid(stat.ppid()).setExe(exe).setMm(mm(stat, brk))
                    .addAllAuxv(words(auxv))
                    .addAllVmas(vmas.stream().map(VmaRecords::toImage).toList())
                    .addAllSigactions(sigactions).addAllFiles(files).addAllThreads(threads)
                    .build();
            long thawedAt = 0;
            if (lazy) {
                progress("writing the image (" + stored.remote().pages(pageSize) + " pages REMOTE, process stays frozen)");
                step("write the image", () -> {
                    w.finish(ProcessTree.newBuilder().addProcesses(proc).build());
                    return null;
                });
                imageComplete = true;
                long ready = System.nanoTime();
                progress(String.format(java.util.Locale.ROOT, "frozen window %.1f ms: %s", (ready - frozenAt) / 1e6, breakdown()));
                closeQuietly(w);
                DumpResult r = new DumpResult(pid, dir, threads.size(), vmas.size(), 0, pageSize, ready - frozenAt,
                        ready - t0, stored.inParent(), plan.parent(), plan.trackerName(), stored.scanned());
                frozen = new FrozenProcess(p, true, dir, stored.remote().toRanges(), pageSize, frozenAt, r, plan.tracker());
                return r;
            }
            if (options.leaveRunning()) {
                // everything is read: let it run while the image is published (on failure it runs on anyway)
                stepVoid("thaw and detach", p::detach);
                process = null;
                thawedAt = System.nanoTime();
            }
            progress("writing the image");
            step("write the image", () -> {
                w.finish(ProcessTree.newBuilder().addProcesses(proc).build());
                return null;
            });
            imageComplete = true;
            if (!options.leaveRunning()) {
                stepVoid("kill", () -> kill(p));
                thawedAt = System.nanoTime();
            }
            if (plan.tracker() != null) {
                // unregistering walks every tracked page: once the process runs again (or is gone),
                // never in the frozen window (a lazy dump leaves it to the FrozenProcess)
                stepVoid("stop the dirty tracker", plan.tracker()::close);
            }
            long end = System.nanoTime();
            closeQuietly(w);
            if (external == null) {
                tracer.close();
            }
            return new DumpResult(pid, dir, threads.size(), vmas.size(), pages, pageSize, thawedAt - frozenAt, end - t0,
                    stored.inParent(), plan.parent(), plan.trackerName(), stored.scanned());
        } catch (RuntimeException | Error e) {
            if (selection != null) {
                try {
                    selection.join(); // it writes into the image being removed
                } catch (RuntimeException ignored) {
                    // the failure reported is e
                }
                selection = null;
            }
            rollback(e, scratch, process, writer, imageComplete, dir, dirExisted);
            if (external != null && external.isFrozen() && !imageComplete) {
                try {
                    external.thaw();
                } catch (RuntimeException t) {
                    e.addSuppressed(t);
                }
            }
            if (external == null) {
                tracer.close();
            }
            if (e instanceof DumpException) {
                throw e;
            }
            throw new DumpException(pid, step, e);
        }
    }

    /**
     * What the final dump's page selection may assume of {@code tracker} (null: none): it is
     * collected with the process frozen, so with a tracker that leaves markers the clean pages
     * the parent holds need no scan ({@link PageStore.Hints}).
     */
    static PageStore.Hints hints(Tracking tracker) {
        boolean m = tracker != null && !tracker.reportsEverything() && tracker.leavesMarkers();
        return m ? new PageStore.Hints(true, true, null) : PageStore.Hints.NONE;
    }

    /** The page selection running beside the injections of a lazy dump, until joined. */
    private java.util.concurrent.CompletableFuture<PageStore.Stats> selection;
    /** Its steps' times (merged into {@link #stepNanos} once joined). */
    private final java.util.Map<String, Long> besideNanos = new java.util.concurrent.ConcurrentHashMap<>();

    private static PageStore.Stats joinSelection(java.util.concurrent.CompletableFuture<PageStore.Stats> f) throws Exception {
        try {
            return f.join();
        } catch (java.util.concurrent.CompletionException e) {
            throw e.getCause() instanceof Exception x ? x : e;
        }
    }

    /**
     * Collects the dirty set and selects the pages of a lazy dump (REMOTE and IN_PARENT runs into
     * {@code writer}) on a thread of its own; a failure names its step (a {@link DumpException}).
     */
    /**
     * What a lazy dump after pre-copy rounds copies even where it would be REMOTE, because the
     * restore needs it before the process runs and would fetch it from the source in the
     * downtime: the pages of private file mappings (userfaultfd cannot serve them: written
     * before the process runs) and the pages holding the threads' rseq areas (registering rseq
     * again makes the kernel write there). A few pages: only those dirtied since the last round
     * are selected at all.
     */
    private PageSpans copiedAnyway(List<ThreadState> threads, List<Vma> vmas) {
        PageSpans.Builder b = new PageSpans.Builder();
        for (Vma v : vmas) {
            if (VmaRecords.privateFile(v)) {
                b.add(v.start(), v.end());
            }
        }
        for (ThreadState t : threads) {
            if (t.hasRseq() && t.getRseq().getAddress() != 0) {
                long a = t.getRseq().getAddress();
                b.add(a & -(long) pageSize, (a + Math.max(1, t.getRseq().getLength()) + pageSize - 1) & -(long) pageSize);
            }
        }
        return b.build();
    }

    private java.util.concurrent.CompletableFuture<PageStore.Stats> selectBeside(Plan plan, ImageWriter writer, List<Vma> vmas,
                                                                                PageSpans eager) {
        java.util.concurrent.CompletableFuture<PageStore.Stats> f = new java.util.concurrent.CompletableFuture<>();
        Thread.ofPlatform().name("lp-dump-select-" + pid).daemon().start(() -> {
            String at = "store pages";
            try {
                PageSpans dirty = null;
                PageSpans tracked = null;
                if (plan.tracker() != null && !plan.tracker().reportsEverything()) {
                    at = "collect dirty pages (" + plan.tracker().name() + ")";
                    long c0 = System.nanoTime();
                    Tracking.Collected c = plan.tracker().collect();
                    besideNanos.put(at + " beside", System.nanoTime() - c0);
                    dirty = plan.pending() != null ? plan.pending().union(c.dirty()) : c.dirty();
                    tracked = c.tracked();
                }
                at = "store pages";
                long s0 = System.nanoTime();
                PageStore.Stats st = PageStore.store(pid, writer, vmas, dirty, tracked, plan.parentHeld(), false, true, eager,
                        hints(plan.tracker()), options.progress());
                besideNanos.put("store pages beside", System.nanoTime() - s0);
                f.complete(st);
            } catch (Throwable t) {
                f.completeExceptionally(t instanceof DumpException ? t : new DumpException(pid, at, t));
            }
        });
        return f;
    }

    /**
     * Runs, on the frozen {@code p}, the reads of the final dump's frozen window once and throws
     * the results away (thread state, /proc files, the process record), so that the final
     * dump, which runs once per JVM, does not pay for loading and linking their classes and
     * native call handles (milliseconds each, the first time) while the process is frozen for
     * good. Nothing is written; a failure is only reported ({@code progress}): the final dump
     * reads everything again anyway.
     */
    static void rehearse(SeizedProcess p, java.util.function.Consumer<String> progress) {
        int pid = p.pid();
        try {
            List<ThreadState> threads = new ArrayList<>();
            for (int tid : p.threads()) {
                threads.add(ThreadRecords.thread(p, tid));
            }
            ProcStat stat = ProcStat.read(pid);
            Process.newBuilder().setPid(pid).setPpid(stat.ppid()).setMm(mm(stat, stat.startBrk()))
                    .addAllAuxv(words(Auxv.read(pid))).addAllThreads(threads)
                    .addAllFiles(FileRecords.toImage(pid, ProcFds.list(pid), UnsupportedFds.CLOSE))
                    .addAllSigactions(List.of(SigAction.newBuilder().setSigno(ThreadRecords.SIGSTOP).build()))
                    .build().toByteArray();
            ThreadRecords.notDefaultSignals(Proc.readText(pid, "status"));
        } catch (RuntimeException e) {
            progress.accept("rehearsal of the final dump's reads failed (the final dump reads again): " + e.getMessage());
        }
    }

    /** Leaves the process as it was and removes the partial image; failures here are added to {@code cause}. */
    private void rollback(Throwable cause, RemoteScratch scratch, SeizedProcess process, ImageWriter writer,
                          boolean imageComplete, Path dir, boolean dirExisted) {
        if (scratch != null) {
            try {
                scratch.close();
            } catch (RuntimeException e) {
                cause.addSuppressed(e);
            }
        }
        if (process != null) {
            try {
                process.detach();
            } catch (RuntimeException e) {
                cause.addSuppressed(e);
            }
        }
        if (writer != null) {
            closeQuietly(writer);
        }
        if (!imageComplete) {
            try {
                for (ImageFile.Kind k : ImageFile.Kind.values()) {
                    Files.deleteIfExists(dir.resolve(k.fileName()));
                }
                if (!dirExisted) {
                    Files.deleteIfExists(dir); // only when empty: fails otherwise
                }
            } catch (IOException e) {
                cause.addSuppressed(e);
            }
        }
    }

    private static void closeQuietly(ImageWriter w) {
        try {
            w.close();
        } catch (IOException e) {
            // the temporary pages file stays behind: harmless
        }
    }

    /** Leader first, then the other threads in /proc/PID/task order (ascending tids). */
    private List<Integer> threadOrder(List<Integer> seized) {
        List<Integer> out = new ArrayList<>(seized.size());
        if (seized.contains(pid)) {
            out.add(pid);
        }
        seized.stream().filter(t -> t != pid).sorted().forEach(out::add);
        return out;
    }

    /** SIGKILL while frozen (as CRIU does), then reap every thread as its tracer so that it is gone on return. */
    static void kill(SeizedProcess p) {
        int pid = p.pid();
        List<Integer> tids = p.threads();
        p.tracer().run(() -> {
            Posix.kill(pid, Posix.SIGKILL);
            long deadline = System.nanoTime() + DEATH_TIMEOUT_NANOS;
            List<Integer> alive = new ArrayList<>(tids);
            alive.remove(Integer.valueOf(pid));
            alive.add(pid); // the leader reports its death last
            while (!alive.isEmpty()) {
                int tid = alive.getFirst();
                WaitStatus ws;
                try {
                    ws = Ptrace.waitpid(tid, Ptrace.WALL | Ptrace.WNOHANG);
                } catch (SyscallException e) {
                    if (e.errno() != Errno.ECHILD) {
                        throw e;
                    }
                    alive.removeFirst();
                    continue;
                }
                if (ws.pid() != 0 && ws.terminated()) {
                    alive.removeFirst();
                } else if (ws.pid() == 0) {
                    if (System.nanoTime() - deadline > 0) {
                        throw new ProcException("pid " + pid + " (tid " + tid + ") did not die within "
                                + TimeUnit.NANOSECONDS.toMillis(DEATH_TIMEOUT_NANOS) + " ms of SIGKILL");
                    }
                    LockSupport.parkNanos(100_000);
                }
            }
        });
        p.detach(); // every thread is gone: this only forgets them
    }

    /** The inventory of an image of {@code pid} taken now on this machine. */
    static Inventory inventory(int pid, int pageSize, Inventory.Kind kind, String parent, String tracker) {
        long xcr0 = Features.xcr0();
        String v = Dumper.class.getPackage().getImplementationVersion();
        return Inventory.newBuilder()
                .setPageSize(pageSize)
                .setKernelRelease(Posix.uname().release())
                .setCpuXcr0(Math.max(0, xcr0))
                .addAllXsaveComponents(Features.xsaveComponents())
                .setCreatedUnixMs(System.currentTimeMillis())
                .setToolVersion("lazy-dump " + (v != null ? v : "development build"))
                .setRootPid(pid)
                .setKind(kind)
                .setParent(parent)
                .setTracker(tracker)
                .build();
    }

    private static MmStruct mm(ProcStat s, long brk) {
        return MmStruct.newBuilder()
                .setStartCode(s.startCode()).setEndCode(s.endCode())
                .setStartData(s.startData()).setEndData(s.endData())
                .setStartBrk(s.startBrk()).setBrk(brk)
                .setStartStack(s.startStack())
                .setArgStart(s.argStart()).setArgEnd(s.argEnd())
                .setEnvStart(s.envStart()).setEnvEnd(s.envEnd())
                .build();
    }

    private static List<Long> words(Auxv auxv) {
        List<Long> out = new ArrayList<>();
        for (long w : auxv.words()) {
            out.add(w);
        }
        return out;
    }
}
