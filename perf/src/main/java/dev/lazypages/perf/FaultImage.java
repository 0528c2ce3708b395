package dev.lazypages.perf;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.image.ImageWriter;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.ProcessTree;
import dev.lazypages.image.proto.Vma;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * The synthetic image of {@code lazy-bench fault}: one private anonymous VMA of {@code pages}
 * pages at {@code base}, every page stored, each 8-byte word {@code (vaddr + offset) * 31 + seed}
 * (as the runtime's test fixture {@code LazyFixture} writes them), so that the memory can be
 * checked word by word once every page is in.
 */
final class FaultImage {
    /** The pid the image is recorded under (any will do: nothing is restored). */
    static final int PID = 4242;

    private FaultImage() {
    }

    /** The word at {@code offset} of the page at {@code vaddr}. */
    static long word(int seed, long vaddr, int offset) {
        return (vaddr + offset) * 31 + seed;
    }

    /** Writes the image of [{@code base}, +{@code pages} pages) into {@code dir} (created, must be empty). */
    static void write(Path dir, long base, int pages, int pageSize, int seed) throws IOException {
        Inventory inv = Inventory.newBuilder().setPageSize(pageSize).setKernelRelease("lazy-bench").setRootPid(PID)
                .setKind(Inventory.Kind.FULL).setParent("").build();
        int perRun = Math.max(1, ImageWriter.MAX_RUN_BYTES / pageSize);
        try (ImageWriter w = ImageWriter.create(dir, inv)) {
            ByteBuffer run = ByteBuffer.allocate(perRun * pageSize).order(ByteOrder.nativeOrder());
            for (int first = 0; first < pages; first += perRun) {
                int n = Math.min(perRun, pages - first);
                run.clear();
                for (int p = first; p < first + n; p++) {
                    long vaddr = base + (long) p * pageSize;
                    for (int off = 0; off < pageSize; off += 8) {
                        run.putLong(word(seed, vaddr, off));
                    }
                }
                run.flip();
                w.addPages(PID, base + (long) first * pageSize, run);
            }
            Vma vma = Vma.newBuilder().setStart(base).setEnd(base + (long) pages * pageSize).setProt(3)
                    .setFlags(Vma.Flag.PRIVATE_VALUE | Vma.Flag.ANONYMOUS_VALUE).setKind(Vma.Kind.ANON).build();
            w.finish(ProcessTree.newBuilder().addProcesses(Process.newBuilder().setPid(PID).setPpid(1).addVmas(vma)).build());
        }
    }

    /**
     * The first page of {@code mem} (which is at its own address) that does not hold what
     * {@link #write} stored, or -1. Reads with Java loads: only once no fault can happen.
     */
    static long firstBadPage(PageBuffer mem, int seed) {
        long ps = mem.pageSize();
        long base = mem.address();
        for (long p = 0; p < mem.pages(); p++) {
            long vaddr = base + p * ps;
            for (int off = 0; off < ps; off += 8) {
                if (mem.getLong(p * ps + off) != word(seed, vaddr, off)) {
                    return p;
                }
            }
        }
        return -1;
    }
}
