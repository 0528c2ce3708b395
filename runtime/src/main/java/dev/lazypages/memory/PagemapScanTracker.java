package dev.lazypages.memory;

import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Pagemap;
import dev.lazypages.ffm.Pidfd;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.proc.RemoteSyscall;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.Vma;
import java.lang.foreign.Arena;
import java.util.List;

/**
 * Dirty tracking without soft-dirty (Linux 6.7+): a userfaultfd of the target's own mm in
 * write-protect async mode, read and re-armed with PAGEMAP_SCAN.
 *
 * <p><b>arm</b> (process frozen): {@code userfaultfd(O_CLOEXEC | O_NONBLOCK)} is injected into
 * the target's first thread (the uffd must belong to the target's mm), copied out with
 * pidfd_getfd, and the target's copy is closed by a second injected call, so that nothing is
 * left in its fd table. From our side: UFFDIO_API with WP_ASYNC | WP_UNPOPULATED |
 * PAGEFAULT_FLAG_WP, then UFFDIO_REGISTER (MODE_WP) and UFFDIO_WRITEPROTECT of every tracked VMA
 * ({@link TrackedVmas}). WP_ASYNC makes the kernel resolve write faults itself (no thread ever
 * waits on us) by dropping the page's uffd-wp bit; WP_UNPOPULATED puts markers on pages never
 * touched, so a read fault maps the zero page still protected and is not taken for a write.
 * Pagemap reports those markers as swapped pages ({@link #leavesMarkers}): whoever selects
 * pages to store must tell them apart (the dump package selects before it arms, and later
 * leaves out swapped-only pages that neither the parent holds nor a collect reported).
 * With WP_ASYNC the kernel lets any memory type register in WP-only mode, private file mappings
 * included (verified here on 6.18 by {@code PagemapScanTrackerTest}); a VMA that refuses anyway
 * (VM_IO, VM_PFNMAP, MAP_DROPPABLE) is reported entirely dirty in every round.
 *
 * <p><b>collect</b> (process running or frozen): /proc/PID/maps is read again. Tracked memory
 * not seen in the previous round (new, grown, moved by mremap — a move drops the registration,
 * since we do not ask for EVENT_REMAP) is registered, write-protected and reported entirely
 * dirty. Registered memory is scanned VMA by VMA with PAGEMAP_SCAN, flags
 * PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, category and return mask PAGE_IS_WRITTEN: the
 * kernel reports the written pages and write-protects them again under the page-table lock, so a
 * write racing the scan is either in this report or in the next. When the output buffer fills,
 * the scan goes on from walk_end. CHECK_WPASYNC makes a VMA that is not ours (the range was
 * unmapped and mapped again between rounds, looking the same in maps) fail with EPERM instead of
 * being skipped: that range is then handled as new memory.
 *
 * <p><b>close</b> (process running or frozen): UFFDIO_UNREGISTER of every registered range
 * (which also clears the uffd-wp bits and markers; errors of ranges that vanished are ignored),
 * then the uffd is closed. The target is then as before arm.
 *
 * <p>The injected userfaultfd call needs the target to be allowed one: root, or
 * vm.unprivileged_userfaultfd=1.
 */
public final class PagemapScanTracker implements DirtyTracker {
    /** The features asked of UFFDIO_API. */
    public static final long FEATURES = Userfaultfd.FEATURE_WP_ASYNC | Userfaultfd.FEATURE_WP_UNPOPULATED
            | Userfaultfd.FEATURE_PAGEFAULT_FLAG_WP;
    /** userfaultfd(2) on x86-64 (arch/x86/entry/syscalls/syscall_64.tbl). */
    public static final int NR_USERFAULTFD = 323;
    /** page_region slots per PAGEMAP_SCAN call (16 KiB). */
    public static final int DEFAULT_REGIONS = 1024;

    private static final long SCAN_FLAGS = Pagemap.PM_SCAN_WP_MATCHING | Pagemap.PM_SCAN_CHECK_WPASYNC;

    private final int pid;
    private final int regionCapacity;
    private Arena arena;
    private Pagemap.Regions regions;
    private Pagemap pagemap;
    private Userfaultfd uffd;
    /** Registered with our uffd and write-protected (as far as we know). */
    private PageRanges registered = PageRanges.EMPTY;
    /** Tracked memory UFFDIO_REGISTER refused: dirty in every round. */
    private PageRanges unregistrable = PageRanges.EMPTY;
    /** The tracked memory of the previous round. */
    private PageRanges known = PageRanges.EMPTY;
    private boolean closed;

    public PagemapScanTracker(int pid) {
        this(pid, DEFAULT_REGIONS);
    }

    /** With a PAGEMAP_SCAN output buffer of {@code regionCapacity} regions (tests use tiny ones). */
    PagemapScanTracker(int pid, int regionCapacity) {
        if (regionCapacity < 1) {
            throw new IllegalArgumentException("regionCapacity " + regionCapacity);
        }
        this.pid = pid;
        this.regionCapacity = regionCapacity;
    }

    @Override
    public String name() {
        return "pagemap-scan";
    }

    @Override
    public boolean reportsEverything() {
        return false;
    }

    @Override
    public boolean leavesMarkers() {
        return true;
    }

    /** The target's pid. */
    public int pid() {
        return pid;
    }

    /** Our copy of the uffd's fd number, -1 before arm and after close (for diagnostics). */
    public int uffdFd() {
        return uffd == null ? -1 : uffd.fd();
    }

    /** Tracked memory that refused registration so far (reported dirty every round). */
    public PageRanges unregistrable() {
        return unregistrable;
    }

    /** Memory registered with our uffd, as last known. */
    public PageRanges registered() {
        return registered;
    }

    @Override
    public long arm(SeizedProcess process) {
        long t0 = System.nanoTime();
        if (process.pid() != pid) {
            throw new IllegalArgumentException("tracker of pid " + pid + " armed with " + process);
        }
        if (!process.isFrozen()) {
            throw new IllegalStateException("arm of the pagemap-scan tracker of pid " + pid + " needs the process frozen");
        }
        if (uffd != null || closed) {
            throw new IllegalStateException("the pagemap-scan tracker of pid " + pid + " is " + (closed ? "closed" : "armed already"));
        }
        uffd = Userfaultfd.adopt(stealUserfaultfd(process));
        try {
            Userfaultfd.Api api = uffd.api(FEATURES);
            if (!api.has(FEATURES)) {
                throw new UnsupportedOperationException("UFFDIO_API on the uffd of pid " + pid + " granted "
                        + Userfaultfd.decode(api.features(), Userfaultfd.FEATURES) + ", not WP_ASYNC and WP_UNPOPULATED");
            }
            arena = Arena.ofShared();
            regions = new Pagemap.Regions(arena, regionCapacity);
            pagemap = Pagemap.open(pid);
            List<Vma> vmas = TrackedVmas.read(pid);
            known = PageRanges.ofVmas(vmas);
            track(vmas, known, PageRanges.builder());
        } catch (RuntimeException e) {
            close();
            throw e;
        }
        return System.nanoTime() - t0;
    }

    /** userfaultfd() injected into the frozen target, duplicated into this process, the target's fd closed again. */
    private int stealUserfaultfd(SeizedProcess process) {
        RemoteSyscall sys = process.syscalls(process.threads().get(0));
        int targetFd = (int) sys.call("userfaultfd", NR_USERFAULTFD, Posix.O_CLOEXEC | Posix.O_NONBLOCK);
        try {
            return Pidfd.stealFd(pid, targetFd);
        } finally {
            sys.close(targetFd);
        }
    }

    @Override
    public DirtyReport collect() {
        if (uffd == null || closed) {
            throw new IllegalStateException("collect on the pagemap-scan tracker of pid " + pid + ": "
                    + (closed ? "closed" : "not armed"));
        }
        long t0 = System.nanoTime();
        List<Vma> vmas = TrackedVmas.read(pid);
        PageRanges current = PageRanges.ofVmas(vmas);
        registered = registered.intersect(current);
        unregistrable = unregistrable.intersect(current);
        PageRanges.Builder dirty = PageRanges.builder();
        PageRanges.Builder stale = PageRanges.builder();
        for (Vma v : vmas) {
            PageRanges mine = registered.intersect(v.start(), v.end());
            for (int i = 0; i < mine.runCount(); i++) {
                if (!scan(mine.start(i), mine.end(i), dirty)) {
                    stale.add(mine.start(i), mine.end(i));
                }
            }
        }
        registered = registered.subtract(stale.build());
        // new, grown, moved, and registered-in-name-only memory: register, protect, all dirty
        track(vmas, current.subtract(registered).subtract(unregistrable), dirty);
        dirty.addAll(unregistrable);
        known = current;
        return new DirtyReport(dirty.build().intersect(current), vmas, System.nanoTime() - t0);
    }

    /**
     * PAGEMAP_SCAN of registered [start, end): written pages into {@code dirty}, write-protected
     * again. False when the kernel says part of it is not registered in WP_ASYNC mode (EPERM).
     */
    private boolean scan(long start, long end, PageRanges.Builder dirty) {
        long from = start;
        while (Long.compareUnsigned(from, end) < 0) {
            int n;
            try {
                n = pagemap.scan(new Pagemap.ScanRequest(from, end, SCAN_FLAGS, 0, 0,
                        Pagemap.PAGE_IS_WRITTEN, 0, Pagemap.PAGE_IS_WRITTEN), regions);
            } catch (SyscallException e) {
                if (e.errno() == Errno.EPERM) {
                    return false; // the caller reports the whole range: pages reported before the error are in it
                }
                throw e;
            }
            for (int i = 0; i < n; i++) {
                dirty.add(regions.start(i), regions.end(i));
            }
            long walked = regions.walkEnd();
            if (Long.compareUnsigned(walked, from) <= 0) {
                throw new IllegalStateException("PAGEMAP_SCAN of pid " + pid + " at 0x" + Long.toHexString(from) + "-0x"
                        + Long.toHexString(end) + " made no progress (walk_end 0x" + Long.toHexString(walked) + ")");
            }
            from = walked;
        }
        return true;
    }

    /**
     * Registers and write-protects {@code ranges} (cut at VMA bounds: one UFFDIO_REGISTER never
     * spans VMAs, so one refusing VMA does not spoil its neighbours) and adds them to
     * {@code dirty}.
     */
    private void track(List<Vma> vmas, PageRanges ranges, PageRanges.Builder dirty) {
        if (ranges.isEmpty()) {
            return;
        }
        PageRanges.Builder ok = PageRanges.builder();
        PageRanges.Builder refused = PageRanges.builder();
        for (Vma v : vmas) {
            PageRanges piece = ranges.intersect(v.start(), v.end());
            for (int i = 0; i < piece.runCount(); i++) {
                long s = piece.start(i);
                long len = piece.end(i) - s;
                dirty.add(s, s + len);
                try {
                    uffd.register(s, len, Userfaultfd.REGISTER_MODE_WP);
                    uffd.writeProtect(s, len, true, false);
                    ok.add(s, s + len);
                } catch (SyscallException e) {
                    if (e.errno() == Errno.ESRCH) {
                        throw e; // the process is gone
                    }
                    // refused (EINVAL: a VMA type uffd cannot take), or gone meanwhile (ENOMEM):
                    // reported dirty each round while it exists
                    refused.add(s, s + len);
                }
            }
        }
        registered = registered.union(ok.build());
        unregistrable = unregistrable.union(refused.build());
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            if (uffd != null) {
                for (int i = 0; i < registered.runCount(); i++) {
                    try {
                        uffd.unregister(registered.start(i), registered.end(i) - registered.start(i));
                    } catch (SyscallException e) {
                        // ENOMEM / EINVAL: the range vanished or changed; ESRCH: the process is gone
                    }
                }
                uffd.close(); // drops any registration left
            }
        } finally {
            registered = PageRanges.EMPTY;
            uffd = null;
            if (pagemap != null) {
                pagemap.close();
                pagemap = null;
            }
            if (arena != null) {
                arena.close();
                arena = null;
            }
        }
    }

    @Override
    public String toString() {
        return "pagemap-scan tracker of pid " + pid + (closed ? " (closed)" : uffd == null ? " (not armed)" : "");
    }
}
