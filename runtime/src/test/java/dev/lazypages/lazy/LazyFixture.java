package dev.lazypages.lazy;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.image.ImageWriter;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.ProcessTree;
import dev.lazypages.image.proto.Vma;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.BitSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Synthetic images over memory of this JVM, and the way tests touch registered memory.
 *
 * <p>Touching registered memory with a Java load would park the thread in a page fault while
 * the JVM counts it as running Java code, and a safepoint would wait for it forever. So every
 * touch here happens inside a system call: pwrite(2) of the page to a file makes the kernel
 * read it, which raises the same missing-page fault.
 */
final class LazyFixture {
    static final int PID = 4242;
    static final int PS = (int) Posix.pageSize();

    private LazyFixture() {
    }

    /** The 8-byte words of the page at {@code vaddr} in image {@code seed}. */
    static long word(int seed, long vaddr, int offset) {
        return (vaddr + offset) * 31 + seed;
    }

    static byte[] page(int seed, long vaddr) {
        byte[] b = new byte[PS];
        ByteBuffer w = ByteBuffer.wrap(b).order(ByteOrder.nativeOrder());
        for (int i = 0; i < PS; i += 8) {
            w.putLong(i, word(seed, vaddr, i));
        }
        return b;
    }

    static Inventory inventory(String parent) {
        return Inventory.newBuilder().setPageSize(PS).setKernelRelease("test").setRootPid(PID)
                .setKind(parent.isEmpty() ? Inventory.Kind.FULL : Inventory.Kind.PRE_DUMP).setParent(parent).build();
    }

    static ProcessTree tree(long base, int pages) {
        Vma vma = Vma.newBuilder().setStart(base).setEnd(base + (long) pages * PS).setProt(3)
                .setFlags(Vma.Flag.PRIVATE_VALUE | Vma.Flag.ANONYMOUS_VALUE).setKind(Vma.Kind.ANON).build();
        return ProcessTree.newBuilder().addProcesses(Process.newBuilder().setPid(PID).setPpid(1).addVmas(vma)).build();
    }

    /** An image of {@code pages} pages at {@code base} storing the pages in {@code stored} (seed {@code seed}). */
    static Path write(Path dir, long base, int pages, BitSet stored, int seed) throws IOException {
        try (ImageWriter w = ImageWriter.create(dir, inventory(""))) {
            int i = stored.nextSetBit(0);
            while (i >= 0 && i < pages) {
                int end = stored.nextClearBit(i);
                end = Math.min(end, pages);
                ByteBuffer run = ByteBuffer.allocate((end - i) * PS);
                for (int p = i; p < end; p++) {
                    run.put(page(seed, base + (long) p * PS));
                }
                w.addPages(PID, base + (long) i * PS, run.flip());
                i = stored.nextSetBit(end);
            }
            w.finish(tree(base, pages));
        }
        return dir;
    }

    /** Runs {@code pwrite(fd, page, 0)} on a new platform thread; completes with the bytes the kernel read. */
    static CompletableFuture<byte[]> touch(PageBuffer page, Path dir) {
        CompletableFuture<byte[]> f = new CompletableFuture<>();
        Thread.ofPlatform().daemon().name("toucher").start(() -> {
            try {
                Path file = Files.createTempFile(dir, "touch", ".page");
                int fd = Posix.open(file.toString(), Posix.O_RDWR, 0);
                try {
                    page.writeTo(fd, 0);
                } finally {
                    Posix.closeQuietly(fd);
                }
                f.complete(Files.readAllBytes(file));
            } catch (Throwable t) {
                f.completeExceptionally(t);
            }
        });
        return f;
    }

    /** Touches page {@code page} of {@code mem} and returns what was read. */
    static CompletableFuture<byte[]> touch(PageBuffer mem, int page, Path dir) {
        return touch(mem.pages(page, 1), dir);
    }

    /** The contents of page {@code page} of {@code mem}, read with Java loads: only once nothing is registered. */
    static byte[] read(PageBuffer mem, int page) {
        byte[] b = new byte[PS];
        mem.copyTo((long) page * PS, b, 0, PS);
        return b;
    }

    /** A source over another one: the same pages and page size. */
    abstract static class WrappingSource implements LazySource {
        final LazySource inner;

        WrappingSource(LazySource inner) {
            this.inner = inner;
        }

        @Override
        public int pageSize() {
            return inner.pageSize();
        }

        @Override
        public java.util.List<Run> storedRuns() {
            return inner.storedRuns();
        }
    }

    /** Counts what is read from a source. */
    static final class CountingSource extends WrappingSource {
        final AtomicInteger reads = new AtomicInteger();
        final AtomicInteger pages = new AtomicInteger();
        /** Each read takes at least this long: a slow disk or network, so that tests can act mid-fill. */
        volatile long delayNanos;

        CountingSource(LazySource inner) {
            super(inner);
        }

        @Override
        public void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
            reads.incrementAndGet();
            pages.addAndGet(nrPages);
            if (delayNanos > 0) {
                java.util.concurrent.locks.LockSupport.parkNanos(delayNanos);
            }
            inner.readPages(vaddr, nrPages, dst, dstOffset);
        }

        /** The first address of every background read, in order. */
        final java.util.Queue<Long> backgroundReads = new java.util.concurrent.ConcurrentLinkedQueue<>();

        @Override
        public void readPagesInBackground(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
            backgroundReads.add(vaddr);
            readPages(vaddr, nrPages, dst, dstOffset);
        }
    }

    /**
     * A source with latency, as a network is: {@link #readAsync} reads the pages from {@code inner} at once and
     * delivers them from another thread {@code latencyNanos} later, recording how many reads (and pages) were
     * outstanding at most.
     */
    static final class LatentSource extends WrappingSource implements AutoCloseable {
        final long latencyNanos;
        final AtomicInteger outstanding = new AtomicInteger();
        final java.util.concurrent.atomic.AtomicLong outstandingPages = new java.util.concurrent.atomic.AtomicLong();
        final AtomicInteger maxOutstanding = new AtomicInteger();
        final java.util.concurrent.atomic.AtomicLong maxOutstandingPages = new java.util.concurrent.atomic.AtomicLong();
        /** Image addresses of the asynchronous reads for faults (not background), in order. */
        final java.util.Queue<Long> faultReads = new java.util.concurrent.ConcurrentLinkedQueue<>();
        private final java.util.concurrent.ScheduledExecutorService link =
                java.util.concurrent.Executors.newSingleThreadScheduledExecutor();

        LatentSource(LazySource inner, long latencyNanos) {
            super(inner);
            this.latencyNanos = latencyNanos;
        }

        @Override
        public void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
            inner.readPages(vaddr, nrPages, dst, dstOffset);
        }

        @Override
        public int readAsync(long vaddr, int maxPages, boolean background, Delivery delivery) throws IOException {
            if (!background) {
                faultReads.add(vaddr);
            }
            PageBuffer buf = PageBuffer.allocate(maxPages);
            inner.readPages(vaddr, maxPages, buf, 0);
            maxOutstanding.accumulateAndGet(outstanding.incrementAndGet(), Math::max);
            maxOutstandingPages.accumulateAndGet(outstandingPages.addAndGet(maxPages), Math::max);
            link.schedule(() -> {
                outstanding.decrementAndGet();
                outstandingPages.addAndGet(-maxPages);
                try (buf) {
                    delivery.pages(vaddr, maxPages, buf.address());
                }
                delivery.done();
            }, latencyNanos, java.util.concurrent.TimeUnit.NANOSECONDS);
            return maxPages;
        }

        @Override
        public void close() {
            link.shutdownNow();
        }
    }
}
