package dev.lazypages.lazy;

import dev.lazypages.ffm.PageBuffer;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * A {@link LazySource} for a post-copy or hybrid restore: the runs a local image holds
 * (PRESENT, IN_PARENT) come from {@code local}, the image's REMOTE runs from {@code remote}
 * (the source's page server, or in tests an in-process adapter over the frozen process).
 * {@link #storedRuns} is the union of both, so a {@link LazyPageServer} over this source
 * completes only when every local AND every remote page was delivered.
 *
 * <p>A read is split at the boundaries between local and remote runs and each part goes to
 * its source (faults stay on {@link #readPages}, the sweep on {@link #readPagesInBackground}).
 * The remote part is dispatched only for pages inside {@code remoteRuns}, never for the whole
 * of what {@code remote} may offer. Thread-safe when both sources are.
 */
public final class CompositeLazySource implements LazySource {
    private final LazySource local;
    private final LazySource remote;
    private final int pageSize;
    /** Segments sorted by address: start, end, whether remote. */
    private final long[] segStart;
    private final long[] segEnd;
    private final boolean[] segRemote;
    private final List<Run> storedRuns;
    private final long remotePages;
    private final List<Run> remoteRunsForView;

    /**
     * @param local      the local image's source ({@code storedRuns} = its PRESENT and IN_PARENT pages)
     * @param remote     the source of the REMOTE pages
     * @param remoteRuns the image's REMOTE runs (disjoint from {@code local}'s runs)
     * @throws IllegalArgumentException page sizes differ, or a remote run overlaps a local one
     */
    public CompositeLazySource(LazySource local, LazySource remote, List<Run> remoteRuns) {
        this.local = Objects.requireNonNull(local, "local");
        this.remote = Objects.requireNonNull(remote, "remote");
        this.pageSize = local.pageSize();
        if (remote.pageSize() != pageSize) {
            throw new IllegalArgumentException("remote page size " + remote.pageSize() + " differs from the image's " + pageSize);
        }
        List<Run> l = local.storedRuns();
        List<Run> r = new ArrayList<>(remoteRuns);
        this.remoteRunsForView = List.copyOf(remoteRuns);
        r.sort((a, b) -> Long.compareUnsigned(a.vaddr(), b.vaddr()));
        int n = l.size() + r.size();
        segStart = new long[n];
        segEnd = new long[n];
        segRemote = new boolean[n];
        int i = 0;
        int j = 0;
        int k = 0;
        long rp = 0;
        while (i < l.size() || j < r.size()) {
            boolean takeRemote = i == l.size() || j < r.size() && Long.compareUnsigned(r.get(j).vaddr(), l.get(i).vaddr()) < 0;
            Run x = takeRemote ? r.get(j++) : l.get(i++);
            if (k > 0 && Long.compareUnsigned(x.vaddr(), segEnd[k - 1]) < 0) {
                throw new IllegalArgumentException("run " + describe(x) + " overlaps " + (segRemote[k - 1] ? "remote" : "local")
                        + " run 0x" + Long.toHexString(segStart[k - 1]) + "-0x" + Long.toHexString(segEnd[k - 1]));
            }
            segStart[k] = x.vaddr();
            segEnd[k] = x.end(pageSize);
            segRemote[k] = takeRemote;
            if (takeRemote) {
                rp += x.nrPages();
            }
            k++;
        }
        remotePages = rp;
        List<Run> merged = new ArrayList<>();
        long s = 0;
        long e = 0;
        for (int m = 0; m < n; m++) {
            if (m > 0 && segStart[m] == e && (e - s) / pageSize + (segEnd[m] - segStart[m]) / pageSize <= Integer.MAX_VALUE) {
                e = segEnd[m];
                continue;
            }
            if (m > 0) {
                merged.add(new Run(s, (int) ((e - s) / pageSize)));
            }
            s = segStart[m];
            e = segEnd[m];
        }
        if (n > 0) {
            merged.add(new Run(s, (int) ((e - s) / pageSize)));
        }
        storedRuns = List.copyOf(merged);
    }

    private String describe(Run x) {
        return "0x" + Long.toHexString(x.vaddr()) + "-0x" + Long.toHexString(x.end(pageSize));
    }

    @Override
    public int pageSize() {
        return pageSize;
    }

    @Override
    public List<Run> storedRuns() {
        return storedRuns;
    }

    /** Pages served by the remote source. */
    public long remotePages() {
        return remotePages;
    }

    @Override
    public void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        read(vaddr, nrPages, dst, dstOffset, false);
    }

    @Override
    public void readPagesInBackground(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        read(vaddr, nrPages, dst, dstOffset, true);
    }

    private void read(long vaddr, int nrPages, PageBuffer dst, long dstOffset, boolean background) throws IOException {
        int i = segmentOf(vaddr);
        long addr = vaddr;
        int left = nrPages;
        long off = dstOffset;
        while (left > 0) {
            if (i < 0 || i >= segStart.length || Long.compareUnsigned(addr, segStart[i]) < 0
                    || Long.compareUnsigned(addr, segEnd[i]) >= 0) {
                throw new IllegalArgumentException("page 0x" + Long.toHexString(addr) + " is neither stored locally nor REMOTE");
            }
            int n = (int) Math.min(left, (segEnd[i] - addr) / pageSize);
            LazySource s = segRemote[i] ? remote : local;
            if (background) {
                s.readPagesInBackground(addr, n, dst, off);
            } else {
                s.readPages(addr, n, dst, off);
            }
            addr += (long) n * pageSize;
            off += (long) n * pageSize;
            left -= n;
            i++;
        }
    }

    /** Asynchronous when {@code vaddr} lies in a REMOTE run (clipped to it) and the remote source reads asynchronously. */
    @Override
    public int readAsync(long vaddr, int maxPages, boolean background, Delivery delivery) throws IOException {
        int i = segmentOf(vaddr);
        if (i < 0 || !segRemote[i] || Long.compareUnsigned(vaddr, segEnd[i]) >= 0) {
            return 0;
        }
        int n = (int) Math.min(maxPages, (segEnd[i] - vaddr) / pageSize);
        return remote.readAsync(vaddr, n, background, delivery);
    }

    /**
     * The remote source's fault loop: faults on REMOTE runs are read asynchronously there, and the
     * local runs' blocking reads (the image's files) do not wait for that loop.
     */
    @Override
    public dev.lazypages.net.FaultLoop faultLoop() {
        return remote.faultLoop();
    }

    /** Index of the last segment starting at or below {@code vaddr}, or -1. */
    private int segmentOf(long vaddr) {
        return SortedAddresses.floorIndex(segStart, vaddr);
    }

    /** The same composition over the two sources' {@link LazySource#sharedView() shared views}. */
    @Override
    public LazySource sharedView() {
        LazySource l = local.sharedView();
        LazySource r = remote.sharedView();
        return l == local && r == remote ? this : new CompositeLazySource(l, r, remoteRunsForView);
    }
}
