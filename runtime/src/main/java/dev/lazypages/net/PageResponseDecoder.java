package dev.lazypages.net;

import static dev.lazypages.net.PageFrameDescriptor.*;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.ByteToMessageDecoder;
import io.netty.handler.codec.CorruptedFrameException;
import io.netty.handler.codec.TooLongFrameException;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * Client side: bytes → {@link PageResponse}s (PAGES, ERROR, ACCEPT). PAGES bodies are handed
 * on as retained slices of the cumulation (no copy here; the composite cumulator avoids
 * copying the socket reads into one buffer). A PAGES frame of more than {@code maxPages}
 * pages, an ERROR longer than {@link PageFrameDescriptor#MAX_ERROR_BYTES}, a bad magic or an
 * unexpected type fails the channel before anything is allocated for it. Not sharable.
 */
final class PageResponseDecoder extends ByteToMessageDecoder {
    private final int pageSize;
    private final int maxPages;
    private boolean failed;

    PageResponseDecoder(int pageSize, int maxPages) {
        this.pageSize = pageSize;
        this.maxPages = maxPages;
        setCumulator(COMPOSITE_CUMULATOR);
    }

    @Override
    protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
        while (!failed && in.readableBytes() >= HEADER_LENGTH) {
            int r = in.readerIndex();
            int magic = in.getUnsignedShort(r + MAGIC_OFFSET);
            if (magic != MAGIC) {
                throw fail(in, new CorruptedFrameException(String.format("bad page frame magic 0x%04x", magic)));
            }
            int type = in.getUnsignedByte(r + TYPE_OFFSET);
            int flags = in.getUnsignedByte(r + FLAGS_OFFSET);
            int nrPages = in.getInt(r + NR_PAGES_OFFSET);
            long vaddr = in.getLong(r + VADDR_OFFSET);
            long id = in.getLong(r + REQUEST_ID_OFFSET);
            switch (type) {
                case TYPE_PAGES -> {
                    if (nrPages <= 0 || nrPages > maxPages) {
                        throw fail(in, new TooLongFrameException("PAGES frame of " + Integer.toUnsignedString(nrPages)
                                + " pages (at most " + maxPages + ")"));
                    }
                    int len = nrPages * pageSize;
                    if (in.readableBytes() < HEADER_LENGTH + len) {
                        return;
                    }
                    in.skipBytes(HEADER_LENGTH);
                    out.add(new PageResponse(type, flags, nrPages, vaddr, id, in.readRetainedSlice(len), null));
                }
                case TYPE_ERROR -> {
                    if (in.readableBytes() < HEADER_LENGTH + 4) {
                        return;
                    }
                    int len = in.getInt(r + HEADER_LENGTH);
                    if (len < 0 || len > MAX_ERROR_BYTES) {
                        throw fail(in, new TooLongFrameException("ERROR message of " + Integer.toUnsignedString(len)
                                + " bytes (at most " + MAX_ERROR_BYTES + ")"));
                    }
                    if (in.readableBytes() < HEADER_LENGTH + 4 + len) {
                        return;
                    }
                    String msg = in.toString(r + HEADER_LENGTH + 4, len, StandardCharsets.UTF_8);
                    in.skipBytes(HEADER_LENGTH + 4 + len);
                    out.add(new PageResponse(type, flags, nrPages, vaddr, id, null, msg));
                }
                case TYPE_ACCEPT -> {
                    in.skipBytes(HEADER_LENGTH);
                    out.add(new PageResponse(type, flags, nrPages, vaddr, id, null, null));
                }
                default -> throw fail(in, new CorruptedFrameException("unexpected page frame "
                        + PageFrameDescriptor.typeName(type) + " from a server"));
            }
        }
        if (failed) {
            in.skipBytes(in.readableBytes());
        }
    }

    private RuntimeException fail(ByteBuf in, RuntimeException e) {
        failed = true;
        in.skipBytes(in.readableBytes());
        return e;
    }
}
