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
 * Server side: bytes → {@link PageRequest}s (REQUEST, DONE, AUTH). A bad magic, an unknown or
 * server-bound type, or an over-long token fails the channel; afterwards all input is dropped.
 * Not sharable.
 */
final class PageRequestDecoder extends ByteToMessageDecoder {
    private boolean failed;

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
                case TYPE_REQUEST, TYPE_DONE -> {
                    in.skipBytes(HEADER_LENGTH);
                    out.add(new PageRequest(type, flags, nrPages, vaddr, id, System.nanoTime(), null));
                }
                case TYPE_AUTH -> {
                    if (nrPages < 0 || nrPages > MAX_TOKEN_BYTES) {
                        throw fail(in, new TooLongFrameException("AUTH token of " + Integer.toUnsignedString(nrPages)
                                + " bytes exceeds " + MAX_TOKEN_BYTES));
                    }
                    if (in.readableBytes() < HEADER_LENGTH + nrPages) {
                        return;
                    }
                    String token = in.toString(r + HEADER_LENGTH, nrPages, StandardCharsets.UTF_8);
                    in.skipBytes(HEADER_LENGTH + nrPages);
                    out.add(new PageRequest(type, flags, nrPages, vaddr, id, System.nanoTime(), token));
                }
                default -> throw fail(in, new CorruptedFrameException("unexpected page frame "
                        + PageFrameDescriptor.typeName(type) + " from a client"));
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
