package dev.lazypages.lazy;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.image.ImageFile;
import dev.lazypages.image.ImageFormatException;
import dev.lazypages.image.ImageReader;
import dev.lazypages.image.PageFlags;
import dev.lazypages.image.proto.PageMapEntry;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * A {@link LazySource} over a local image, for one process: the pages of {@code pid} that are
 * PRESENT in the image or, through IN_PARENT, in one of its parents (resolved once, at
 * {@link #open}, with {@link ImageReader#find}). ZERO runs and pages outside the page map are
 * not stored; REMOTE runs are listed apart ({@link #remoteRuns}) and not served here.
 *
 * <p>Pages are read with pread(2) from the pages.img that holds them straight into the
 * caller's page buffer (one copy, from the page cache). CRC-32C: the first read that touches
 * a PRESENT run reads the run whole with {@link ImageReader#readRun} (which checks its CRC)
 * and copies the wanted pages out of it; later reads of that run go straight to the buffer.
 * So no byte is handed out unchecked, and each run costs one extra read. With
 * {@code verifyCrc=false} every read is direct.
 *
 * <p>Safe for concurrent readers (positional reads; the verified-run bitmap is atomic). Close
 * it to close its file descriptors; the {@link ImageReader} stays the caller's.
 */
public final class ImageLazySource implements LazySource, AutoCloseable {
    private final int pageSize;
    private final boolean verifyCrc;
    /** Extents sorted by address: where each stored page's bytes are. */
    private final long[] extVaddr;
    private final int[] extPages;
    private final int[] extFd;
    private final long[] extFileOffset;
    private final int[] extRun;
    /** PRESENT runs by id, with the reader of their image (for the CRC check). */
    private final List<PageMapEntry> runs = new ArrayList<>();
    private final List<ImageReader> runReaders = new ArrayList<>();
    private final AtomicLongArray verified;
    private final int[] fds;
    private final List<Run> storedRuns;
    /** REMOTE runs met while resolving (bytes at the source), sorted, adjacent ones merged. */
    private final List<Run> remoteRuns;
    private final List<long[]> remoteSeen = new ArrayList<>();

    private record Extent(long vaddr, int pages, int fd, long fileOffset, int run) {
    }

    private ImageLazySource(ImageReader reader, int pid, boolean verifyCrc) throws IOException {
        this.pageSize = reader.pageSize();
        this.verifyCrc = verifyCrc;
        Map<ImageReader, Integer> fdOf = new IdentityHashMap<>();
        List<Extent> ext = new ArrayList<>();
        try {
            for (PageMapEntry e : reader.image().pageMap().getEntriesList()) {
                if (e.getPid() == pid) {
                    resolve(reader, pid, e.getVaddr(), e.getNrPages(), e, ext, fdOf);
                }
            }
        } catch (IOException | RuntimeException ex) {
            fdOf.values().forEach(Posix::closeQuietly);
            throw ex;
        }
        this.fds = fdOf.values().stream().mapToInt(Integer::intValue).toArray();
        int n = ext.size();
        extVaddr = new long[n];
        extPages = new int[n];
        extFd = new int[n];
        extFileOffset = new long[n];
        extRun = new int[n];
        List<Run> stored = new ArrayList<>();
        long runStart = 0;
        long runEnd = 0;
        for (int i = 0; i < n; i++) {
            Extent x = ext.get(i);
            extVaddr[i] = x.vaddr;
            extPages[i] = x.pages;
            extFd[i] = x.fd;
            extFileOffset[i] = x.fileOffset;
            extRun[i] = x.run;
            long end = x.vaddr + (long) x.pages * pageSize;
            if (i > 0 && x.vaddr == runEnd) {
                runEnd = end;
            } else {
                if (i > 0) {
                    stored.add(new Run(runStart, (int) ((runEnd - runStart) / pageSize)));
                }
                runStart = x.vaddr;
                runEnd = end;
            }
        }
        if (n > 0) {
            stored.add(new Run(runStart, (int) ((runEnd - runStart) / pageSize)));
        }
        this.storedRuns = List.copyOf(stored);
        List<Run> remote = new ArrayList<>();
        remoteSeen.sort((a, b) -> Long.compareUnsigned(a[0], b[0]));
        for (long[] r : remoteSeen) {
            Run last = remote.isEmpty() ? null : remote.getLast();
            if (last != null && last.end(pageSize) == r[0] && (long) last.nrPages() + r[1] <= Integer.MAX_VALUE) {
                remote.set(remote.size() - 1, new Run(last.vaddr(), last.nrPages() + (int) r[1]));
            } else {
                remote.add(new Run(r[0], (int) r[1]));
            }
        }
        this.remoteRuns = List.copyOf(remote);
        remoteSeen.clear();
        this.verified = new AtomicLongArray(Math.max(1, (runs.size() + 63) >>> 6));
    }

    /** The stored pages of {@code pid} in {@code reader}'s image and its parents, with CRC checks. */
    public static ImageLazySource open(ImageReader reader, int pid) throws IOException {
        return new ImageLazySource(reader, pid, true);
    }

    /** As {@link #open(ImageReader, int)}; {@code verifyCrc=false} skips the per-run CRC check. */
    public static ImageLazySource open(ImageReader reader, int pid, boolean verifyCrc) throws IOException {
        return new ImageLazySource(reader, pid, verifyCrc);
    }

    /** Adds the extents of [{@code vaddr}, +{@code nr} pages) described by {@code e} of {@code r}'s image. */
    private void resolve(ImageReader r, int pid, long vaddr, int nr, PageMapEntry e, List<Extent> out,
                         Map<ImageReader, Integer> fdOf) throws IOException {
        int index = (int) ((vaddr - e.getVaddr()) / pageSize);
        switch (e.getFlags()) {
            case PageFlags.ZERO -> {
            }
            case PageFlags.REMOTE -> remoteSeen.add(new long[] {vaddr, nr});
            case PageFlags.PRESENT -> {
                Integer fd = fdOf.get(r);
                if (fd == null) {
                    fd = Posix.openRead(r.image().file(ImageFile.Kind.PAGES).toString());
                    fdOf.put(r, fd);
                }
                int run = runIdOf(r, e);
                long off = pageSize + (e.getPageOffset() + index) * pageSize; // pages.img: header page, then data
                out.add(new Extent(vaddr, nr, fd, off, run));
            }
            case PageFlags.IN_PARENT -> {
                ImageReader p = r.parent();
                long addr = vaddr;
                int left = nr;
                while (left > 0) {
                    PageMapEntry pe = p == null ? null : p.find(pid, addr);
                    if (pe == null) {
                        throw new ImageFormatException(r.image().file(ImageFile.Kind.PAGEMAP), "page " + hex(addr)
                                + " of pid " + pid + " is IN_PARENT, but " + (p == null ? "there is no parent image"
                                : "parent image " + p.image().dir() + " has no entry for it"));
                    }
                    long peEnd = pe.getVaddr() + Integer.toUnsignedLong(pe.getNrPages()) * pageSize;
                    int n = (int) Math.min(left, (peEnd - addr) / pageSize);
                    resolve(p, pid, addr, n, pe, out, fdOf);
                    addr += (long) n * pageSize;
                    left -= n;
                }
            }
            default -> throw new ImageFormatException(r.image().file(ImageFile.Kind.PAGEMAP), "entry at "
                    + hex(e.getVaddr()) + " has flags " + PageFlags.describe(e.getFlags()));
        }
    }

    private int runIdOf(ImageReader r, PageMapEntry e) {
        for (int i = runs.size() - 1; i >= 0; i--) { // a run split by IN_PARENT boundaries recurs right away
            if (runs.get(i) == e && runReaders.get(i) == r) {
                return i;
            }
            if (runs.size() - i > 8) {
                break;
            }
        }
        runs.add(e);
        runReaders.add(r);
        return runs.size() - 1;
    }

    @Override
    public int pageSize() {
        return pageSize;
    }

    /**
     * The stored pages this image holds locally (PRESENT here or through IN_PARENT); REMOTE
     * runs are not among them (see {@link #remoteRuns}).
     */
    @Override
    public List<Run> storedRuns() {
        return storedRuns;
    }

    /**
     * The REMOTE runs of the process (bytes left at the source: a lazy final dump), sorted,
     * adjacent runs merged; empty for an ordinary image. {@link CompositeLazySource} serves
     * them from a remote source.
     */
    public List<Run> remoteRuns() {
        return remoteRuns;
    }

    @Override
    public void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        if (dstOffset % pageSize != 0 || dstOffset < 0 || dstOffset + (long) nrPages * pageSize > dst.byteSize()) {
            throw new IllegalArgumentException(nrPages + " pages at offset " + dstOffset + " do not fit a buffer of "
                    + dst.byteSize() + " bytes page-aligned");
        }
        int i = extentOf(vaddr);
        long addr = vaddr;
        int left = nrPages;
        long off = dstOffset;
        while (left > 0) {
            if (i < 0 || i >= extVaddr.length || addr < extVaddr[i]
                    || addr >= extVaddr[i] + (long) extPages[i] * pageSize) {
                throw new IllegalArgumentException("page " + hex(addr) + " is not stored in the image");
            }
            int index = (int) ((addr - extVaddr[i]) / pageSize);
            int n = Math.min(left, extPages[i] - index);
            if (verifyCrc && !isVerified(extRun[i])) {
                readVerifying(i, index, n, dst, off);
            } else {
                PageBuffer part = dst.pages(off / pageSize, n);
                long got = part.readFrom(extFd[i], extFileOffset[i] + (long) index * pageSize);
                if (got != part.byteSize()) {
                    throw new IOException("pages.img ends early: " + got + " of " + part.byteSize() + " bytes at page "
                            + hex(addr));
                }
            }
            addr += (long) n * pageSize;
            off += (long) n * pageSize;
            left -= n;
            i++;
        }
    }

    /** Slow path: the first read of a run reads and checks it whole. */
    private void readVerifying(int ext, int index, int n, PageBuffer dst, long off) throws IOException {
        int run = extRun[ext];
        PageMapEntry e = runs.get(run);
        ByteBuffer whole = runReaders.get(run).readRun(e); // throws ImageFormatException on a CRC mismatch
        long inRun = (extFileOffset[ext] - pageSize) / pageSize - e.getPageOffset() + index;
        dst.copyFrom(whole.array(), whole.arrayOffset() + (int) (inRun * pageSize), off, n * pageSize);
        verified.getAndAccumulate(run >>> 6, 1L << (run & 63), (a, b) -> a | b); // idempotent; a racing reader may check it too
    }

    private boolean isVerified(int run) {
        return (verified.get(run >>> 6) & (1L << (run & 63))) != 0;
    }

    /** Index of the last extent starting at or below {@code vaddr}, or -1. */
    private int extentOf(long vaddr) {
        return SortedAddresses.floorIndex(extVaddr, vaddr);
    }

    private static String hex(long v) {
        return "0x" + Long.toHexString(v);
    }

    @Override
    public void close() {
        for (int fd : fds) {
            Posix.closeQuietly(fd);
        }
    }
}
