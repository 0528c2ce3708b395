package dev.lazypages.net;

import io.netty.buffer.ByteBuf;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/**
 * The pages of one PAGES response as they came off the socket, handed to a {@link PageSink} on
 * the connection's event loop and valid only during that call. {@link #forEachRun} exposes the
 * received buffer's own native memory, so that a caller can UFFDIO_COPY straight from it: the
 * socket reads may split a response anywhere, so the pages come as runs of whole pages at native
 * addresses; a page split across two reads is assembled in a one-page scratch buffer of the
 * connection (the only copy, at most one page per split).
 */
public final class PageData {
    /** Receives a run of whole pages. */
    @FunctionalInterface
    public interface RunVisitor {
        /**
         * @param firstPage index of the run's first page in the response
         * @param nrPages   pages in the run
         * @param address   native address of the first page's bytes (not necessarily page aligned)
         */
        void run(int firstPage, int nrPages, long address);
    }

    private final int pageSize;
    private final MemorySegment scratch;
    private ByteBuf buf;
    private long vaddr;
    private int nrPages;

    /** One per connection; {@code arena} holds its scratch page. */
    PageData(int pageSize, Arena arena) {
        this.pageSize = pageSize;
        this.scratch = arena.allocate(pageSize, pageSize);
    }

    PageData reset(ByteBuf buf, long vaddr, int nrPages) {
        this.buf = buf;
        this.vaddr = vaddr;
        this.nrPages = nrPages;
        return this;
    }

    /** The address of the first page (as requested). */
    public long vaddr() {
        return vaddr;
    }

    public int nrPages() {
        return nrPages;
    }

    /** Copies every page into {@code dst} (exactly {@code nrPages * pageSize} bytes remaining). */
    public void copyTo(ByteBuffer dst) {
        buf.getBytes(buf.readerIndex(), dst);
    }

    /** Visits the pages as runs at native addresses, in order (see the class comment). */
    public void forEachRun(RunVisitor v) {
        int len = nrPages * pageSize;
        ByteBuffer[] parts = buf.nioBufferCount() == 1
                ? new ByteBuffer[] {buf.nioBuffer(buf.readerIndex(), len)}
                : buf.nioBuffers(buf.readerIndex(), len);
        int page = 0;
        int partial = 0; // bytes of the split page already in scratch
        for (ByteBuffer bb : parts) {
            MemorySegment seg = MemorySegment.ofBuffer(bb);
            boolean direct = bb.isDirect(); // a heap buffer (NIO fallback allocators) goes page by page through scratch
            long pos = 0;
            long rem = seg.byteSize();
            while (rem > 0) {
                if (partial == 0 && direct && rem >= pageSize) {
                    int whole = (int) (rem / pageSize);
                    v.run(page, whole, seg.address() + pos);
                    page += whole;
                    pos += (long) whole * pageSize;
                    rem -= (long) whole * pageSize;
                    continue;
                }
                int n = (int) Math.min(pageSize - partial, rem);
                MemorySegment.copy(seg, pos, scratch, partial, n);
                partial += n;
                pos += n;
                rem -= n;
                if (partial == pageSize) {
                    v.run(page++, 1, scratch.address());
                    partial = 0;
                }
            }
        }
    }
}
