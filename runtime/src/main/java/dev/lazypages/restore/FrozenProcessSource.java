package dev.lazypages.restore;

import dev.lazypages.dump.FrozenProcess;
import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.lazy.LazySource;
import dev.lazypages.memory.PageRanges;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * A {@link LazySource} reading a {@link FrozenProcess} in this JVM: the REMOTE pages of a lazy
 * final dump served straight from the frozen original with process_vm_readv, no network. For
 * tests, same-host migration and benchmarks of the post-copy path without the transport; pass
 * it as {@link Restorer.Options#withRemote}. The network layer's remote source plays the same
 * role across hosts (its page server reads the same {@link FrozenProcess#readPages}).
 *
 * <p>{@link #storedRuns} is {@link FrozenProcess#remote}. Thread-safe. It never commits or
 * resumes the frozen process: that stays the caller's decision once the restore's handoff
 * completed.
 */
public final class FrozenProcessSource implements LazySource {
    private final FrozenProcess frozen;
    private final List<Run> runs;

    public FrozenProcessSource(FrozenProcess frozen) {
        this.frozen = Objects.requireNonNull(frozen, "frozen");
        List<Run> r = new ArrayList<>();
        int ps = frozen.pageSize();
        PageRanges remote = frozen.remote();
        for (int i = 0; i < remote.runCount(); i++) {
            long a = remote.start(i);
            long end = remote.end(i);
            while (a != end) {
                int n = (int) Math.min(Integer.MAX_VALUE / 2, (end - a) / ps);
                r.add(new Run(a, n));
                a += (long) n * ps;
            }
        }
        this.runs = List.copyOf(r);
    }

    @Override
    public int pageSize() {
        return frozen.pageSize();
    }

    @Override
    public List<Run> storedRuns() {
        return runs;
    }

    @Override
    public void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) {
        int ps = frozen.pageSize();
        if (dstOffset % ps != 0 || dstOffset < 0 || dstOffset + (long) nrPages * ps > dst.byteSize()) {
            throw new IllegalArgumentException(nrPages + " pages at offset " + dstOffset + " do not fit a buffer of "
                    + dst.byteSize() + " bytes page-aligned");
        }
        frozen.readPages(vaddr, nrPages, dst.pages(dstOffset / ps, nrPages).asByteBuffer());
    }
}
