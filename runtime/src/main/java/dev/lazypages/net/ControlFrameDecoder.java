package dev.lazypages.net;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.CorruptedFrameException;
import io.netty.handler.codec.TooLongFrameException;
import io.netty.handler.codec.protobuf.ProtobufVarint32FrameDecoder;
import java.util.List;

/**
 * {@link ProtobufVarint32FrameDecoder} with a cap: a length prefix above {@code maxFrameBytes}
 * fails the channel before anything is allocated for it, so a peer cannot make us buffer
 * gigabytes. Not sharable (it keeps a cumulation); once it fails it discards all input.
 */
final class ControlFrameDecoder extends ProtobufVarint32FrameDecoder {
    /** Default cap: a 1 MiB FileChunk and its envelope fit with room to spare. */
    static final int DEFAULT_MAX_FRAME_BYTES = 2 * 1024 * 1024;

    private final int maxFrameBytes;
    private boolean failed;

    ControlFrameDecoder(int maxFrameBytes) {
        this.maxFrameBytes = maxFrameBytes;
    }

    @Override
    protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) throws Exception {
        if (failed) {
            in.skipBytes(in.readableBytes());
            return;
        }
        long length = peekVarint32(in);
        if (length == -2) {
            failed = true;
            in.skipBytes(in.readableBytes());
            throw new CorruptedFrameException("control frame length prefix is not a valid varint32");
        }
        if (length > maxFrameBytes) {
            failed = true;
            in.skipBytes(in.readableBytes());
            throw new TooLongFrameException("control frame of " + length + " bytes exceeds the limit of "
                    + maxFrameBytes);
        }
        super.decode(ctx, in, out);
    }

    /** The varint32 at the reader index without consuming it; -1 if incomplete, -2 if malformed. */
    private static long peekVarint32(ByteBuf in) {
        int i = in.readerIndex();
        int end = in.writerIndex();
        long result = 0;
        for (int shift = 0; shift < 35; shift += 7) {
            if (i >= end) {
                return -1;
            }
            byte b = in.getByte(i++);
            result |= (long) (b & 0x7f) << shift;
            if (b >= 0) {
                return result > Integer.MAX_VALUE ? -2 : result;
            }
        }
        return -2;
    }
}
