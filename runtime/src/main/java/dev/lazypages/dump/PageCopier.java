package dev.lazypages.dump;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.ProcessMemory;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.image.ImageWriter;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Copies runs of pages of a frozen process into an {@link ImageWriter} through one reusable
 * page-aligned buffer: runs are gathered until the buffer is full, read with one
 * process_vm_readv (IOV_MAX ranges per call), then handed to the writer run by run.
 *
 * <p>process_vm_readv honours protections, so the pages of a VMA without PROT_READ are read
 * with pread on /proc/PID/mem instead, which (like a debugger's peek) does not. Not thread-safe.
 */
final class PageCopier implements AutoCloseable {
    /** Buffer size: 16 MiB of 4 KiB pages. */
    static final int DEFAULT_BUFFER_PAGES = 4096;
    /** With a streaming writer: buffers of 8 MiB, four of them, so reading overlaps sending. */
    static final int STREAM_BUFFER_PAGES = 2048;
    static final int STREAM_BUFFERS = 4;

    private final int pid;
    private final ImageWriter writer;
    /** One buffer, or a ring of them when the writer streams (a buffer is reused once its bytes are sent). */
    private final PageBuffer[] ring;
    private final java.util.concurrent.CompletableFuture<?>[] inFlight;
    private int slot;
    private PageBuffer buffer;
    private final long pageSize;
    private final int capacity;
    private final long[] addresses;
    private final long[] lengths;
    private int batched;
    private long batchedPages;
    private long stored;
    private int memFd = -1;
    private final boolean tolerant;
    private final PageSpans.Builder skipped = new PageSpans.Builder();

    PageCopier(int pid, ImageWriter writer, int bufferPages) {
        this(pid, writer, bufferPages, false);
    }

    /**
     * @param tolerant the process runs (a pre-dump): pages that vanish under the copy are skipped
     *                 and recorded ({@link #skipped}) instead of failing the dump
     */
    PageCopier(int pid, ImageWriter writer, int bufferPages, boolean tolerant) {
        this(pid, writer, bufferPages, tolerant, 1);
    }

    /**
     * @param buffers how many buffers of {@code bufferPages} to rotate through: more than one lets
     *                the next batch be read while a streaming writer still sends the previous ones
     */
    PageCopier(int pid, ImageWriter writer, int bufferPages, boolean tolerant, int buffers) {
        this.tolerant = tolerant;
        this.pid = pid;
        this.writer = writer;
        this.ring = new PageBuffer[buffers];
        this.inFlight = new java.util.concurrent.CompletableFuture<?>[buffers];
        for (int i = 0; i < buffers; i++) {
            ring[i] = PageBuffer.allocate(bufferPages);
        }
        this.buffer = ring[0];
        this.pageSize = buffer.pageSize();
        this.capacity = bufferPages;
        this.addresses = new long[bufferPages];
        this.lengths = new long[bufferPages];
    }

    /** Pages that vanished while being copied (tolerant mode only). */
    PageSpans skipped() {
        return skipped.build();
    }

    /** Pages handed to the writer so far. */
    long pagesStored() {
        return stored;
    }

    /** Stores {@code runs}, which lie in a VMA that is {@code readable} (PROT_READ) or not. */
    void copy(PageRuns runs, boolean readable) throws IOException {
        for (int i = 0; i < runs.count(); i++) {
            long addr = runs.start(i);
            long left = runs.pages(i);
            while (left > 0) {
                if (batchedPages == capacity) {
                    flush();
                }
                long n = Math.min(left, capacity - batchedPages);
                if (readable) {
                    addresses[batched] = addr;
                    lengths[batched] = n * pageSize;
                    batched++;
                    batchedPages += n;
                } else {
                    flush();
                    readProtected(addr, n);
                }
                addr += n * pageSize;
                left -= n;
            }
        }
    }

    /** Reads and stores what is gathered. */
    void flush() throws IOException {
        if (batched == 0) {
            return;
        }
        long want = batchedPages * pageSize;
        long got = tolerant ? readvTolerant() : ProcessMemory.readv(pid, addresses, lengths, batched, buffer, 0);
        if (got < 0) {
            salvage(-got - 1);
            return;
        }
        if (got != want) {
            throw new IllegalStateException("process_vm_readv of pid " + pid + " read " + got + " of " + want + " bytes in "
                    + batched + " ranges from 0x" + Long.toHexString(addresses[0]) + " (memory unmapped under a frozen process?)");
        }
        ByteBuffer all = buffer.asByteBuffer();
        long off = 0;
        for (int i = 0; i < batched; i++) {
            writer.addPages(pid, addresses[i], all.slice((int) off, (int) lengths[i]));
            off += lengths[i];
        }
        stored += batchedPages;
        batched = 0;
        batchedPages = 0;
        rotate();
    }

    /** The current buffer was handed to the writer: move to the next one, once its last bytes are sent. */
    private void rotate() throws IOException {
        if (ring.length == 1) {
            return;
        }
        inFlight[slot] = writer.pagesFlushed();
        slot = (slot + 1) % ring.length;
        buffer = ring[slot];
        awaitSent(inFlight[slot]);
    }

    private static void awaitSent(java.util.concurrent.CompletableFuture<?> f) throws IOException {
        if (f == null) {
            return;
        }
        try {
            f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted while pages were being sent");
        } catch (java.util.concurrent.ExecutionException e) {
            throw e.getCause() instanceof IOException io ? io : new IOException(e.getCause().getMessage(), e.getCause());
        }
    }

    /** readv, or -1 - bytes read when it came up short (the process changed its memory under us). */
    private long readvTolerant() {
        long want = batchedPages * pageSize;
        long got;
        try {
            got = ProcessMemory.readv(pid, addresses, lengths, batched, buffer, 0);
        } catch (SyscallException e) {
            got = 0;
        }
        return got == want ? got : -1 - got;
    }

    /** Stores the first {@code got} bytes read, then the rest of the batch page by page, skipping pages that are gone. */
    private void salvage(long got) throws IOException {
        ByteBuffer all = buffer.asByteBuffer();
        long off = 0;
        for (int i = 0; i < batched; i++) {
            long whole = Math.min(lengths[i], Math.max(0, got - off) / pageSize * pageSize);
            if (whole > 0) {
                writer.addPages(pid, addresses[i], all.slice((int) off, (int) whole));
                stored += whole / pageSize;
            }
            for (long a = addresses[i] + whole; a < addresses[i] + lengths[i]; a += pageSize) {
                long one;
                long at = off + (a - addresses[i]); // the page's own place in the batch: never handed to the writer yet
                try {
                    one = ProcessMemory.read(pid, a, buffer, at, pageSize);
                } catch (SyscallException e) {
                    one = 0;
                }
                if (one == pageSize) {
                    writer.addPages(pid, a, buffer.asByteBuffer().slice((int) at, (int) pageSize));
                    stored++;
                } else {
                    skipped.add(a, a + pageSize);
                }
            }
            off += lengths[i];
        }
        batched = 0;
        batchedPages = 0;
        rotate();
    }

    private void readProtected(long addr, long n) throws IOException {
        if (memFd < 0) {
            memFd = Posix.openRead("/proc/" + pid + "/mem");
        }
        PageBuffer view = buffer.pages(0, n);
        long got;
        try {
            got = view.readFrom(memFd, addr);
        } catch (SyscallException e) {
            if (!tolerant) {
                throw e;
            }
            got = 0;
        }
        if (got != n * pageSize && tolerant) {
            long whole = Math.max(0, got) / pageSize * pageSize;
            if (whole > 0) {
                writer.addPages(pid, addr, view.asByteBuffer().slice(0, (int) whole));
                stored += whole / pageSize;
            }
            skipped.add(addr + whole, addr + n * pageSize);
            rotate();
            return;
        }
        if (got != n * pageSize) {
            throw new IllegalStateException("pread of /proc/" + pid + "/mem at 0x" + Long.toHexString(addr) + " read " + got
                    + " of " + n * pageSize + " bytes");
        }
        writer.addPages(pid, addr, view.asByteBuffer());
        stored += n;
        rotate();
    }

    /**
     * Frees the buffers; with a streaming writer only once its bytes are sent or failed (until
     * then the socket reads them): a buffer is never freed under a pending write.
     */
    @Override
    public void close() {
        Posix.closeQuietly(memFd);
        memFd = -1;
        if (ring.length > 1) {
            try {
                writer.pagesFlushed().handle((v, e) -> null).get();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return; // the buffers leak rather than be freed under a write
            } catch (java.util.concurrent.ExecutionException e) {
                // handled above
            }
        }
        for (PageBuffer b : ring) {
            b.close();
        }
    }
}
