package dev.lazypages.ffm;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;

/**
 * A page-aligned native buffer of whole pages: the one way page data leaves the facade.
 * It is read into by {@link ProcessMemory}, copied from by {@link Userfaultfd#copy}, and
 * viewed as a {@link ByteBuffer} by network and file code. Closing it frees the memory;
 * a buffer made on a caller's arena lives as long as that arena.
 */
public final class PageBuffer implements AutoCloseable {
    private final Arena owned;
    private final MemorySegment segment;
    private final long pageSize;

    private PageBuffer(Arena owned, MemorySegment segment, long pageSize) {
        this.owned = owned;
        this.segment = segment;
        this.pageSize = pageSize;
    }

    /** A buffer of {@code pages} pages with its own confined arena (free it with close). */
    public static PageBuffer allocate(long pages) {
        Arena arena = Arena.ofShared();
        long ps = Posix.pageSize();
        return new PageBuffer(arena, arena.allocate(pages * ps, ps), ps);
    }

    /** A buffer of {@code pages} pages on the caller's arena. */
    public static PageBuffer allocate(Arena arena, long pages) {
        long ps = Posix.pageSize();
        return new PageBuffer(null, arena.allocate(pages * ps, ps), ps);
    }

    /** Wraps memory that is already page aligned, e.g. a direct network buffer. */
    public static PageBuffer wrap(ByteBuffer direct) {
        MemorySegment s = MemorySegment.ofBuffer(direct);
        long ps = Posix.pageSize();
        if (!s.isNative() || s.address() % ps != 0 || s.byteSize() % ps != 0) {
            throw new IllegalArgumentException("not a page-aligned direct buffer of whole pages");
        }
        return new PageBuffer(null, s, ps);
    }

    /** A buffer over a mapping the caller owns (see {@link Posix#mmapAnonymous}); close() leaves it mapped. */
    static PageBuffer ofMapping(MemorySegment mapping, long pageSize) {
        return new PageBuffer(null, mapping, pageSize);
    }

    MemorySegment segment() {
        return segment;
    }

    /** The buffer's native address, e.g. for the source of UFFDIO_COPY. */
    public long address() {
        return segment.address();
    }

    public long byteSize() {
        return segment.byteSize();
    }

    public long pages() {
        return segment.byteSize() / pageSize;
    }

    public long pageSize() {
        return pageSize;
    }

    /** A view of pages [{@code first}, {@code first + count}). */
    public PageBuffer pages(long first, long count) {
        return new PageBuffer(null, segment.asSlice(first * pageSize, count * pageSize), pageSize);
    }

    /** A view as a ByteBuffer (no copy). */
    public ByteBuffer asByteBuffer() {
        return segment.asByteBuffer();
    }

    public long getLong(long offset) {
        return segment.get(ValueLayout.JAVA_LONG_UNALIGNED, offset);
    }

    public void putLong(long offset, long value) {
        segment.set(ValueLayout.JAVA_LONG_UNALIGNED, offset, value);
    }

    public byte getByte(long offset) {
        return segment.get(ValueLayout.JAVA_BYTE, offset);
    }

    public void putByte(long offset, byte value) {
        segment.set(ValueLayout.JAVA_BYTE, offset, value);
    }

    /** Copies bytes out into a heap array. */
    public void copyTo(long offset, byte[] dst, int dstOffset, int length) {
        MemorySegment.copy(segment, ValueLayout.JAVA_BYTE, offset, dst, dstOffset, length);
    }

    /** Copies bytes in from a heap array. */
    public void copyFrom(byte[] src, int srcOffset, long offset, int length) {
        MemorySegment.copy(src, srcOffset, segment, ValueLayout.JAVA_BYTE, offset, length);
    }

    /** Copies from another buffer. */
    public void copyFrom(PageBuffer src, long srcOffset, long offset, long length) {
        MemorySegment.copy(src.segment, srcOffset, segment, offset, length);
    }

    /** Zeroes the buffer. */
    public void clear() {
        segment.fill((byte) 0);
    }

    /** True when every byte of page {@code page} is zero. */
    public boolean isZeroPage(long page) {
        long base = page * pageSize;
        for (long o = 0; o < pageSize; o += 8) {
            if (segment.get(ValueLayout.JAVA_LONG, base + o) != 0) {
                return false;
            }
        }
        return true;
    }

    /** Reads {@code byteSize()} bytes of a file at {@code offset}; returns bytes read. */
    public long readFrom(int fd, long offset) {
        return Posix.preadFully(fd, segment, offset);
    }

    /** Writes the whole buffer to a file at {@code offset}. */
    public void writeTo(int fd, long offset) {
        Posix.pwriteFully(fd, segment, offset);
    }

    @Override
    public void close() {
        if (owned != null) {
            owned.close();
        }
    }
}
