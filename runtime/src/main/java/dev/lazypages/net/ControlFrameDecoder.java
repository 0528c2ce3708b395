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
 *
 * <p>Raw-data frames: a zero length prefix (never sent for a ControlMessage: an empty one is
 * refused by {@link ControlConnection#send}) is followed by a 4-byte big-endian length N and N
 * bytes that are not protobuf. They are passed on as they arrive, as {@link RawData} slices of
 * the socket's buffers (no copy, no cap: they are never accumulated), so a large file goes
 * from the socket to the receiver's file without being assembled into messages.
 */
final class ControlFrameDecoder extends ProtobufVarint32FrameDecoder {
    /** Default cap: a 1 MiB FileChunk and its envelope fit with room to spare. */
    static final int DEFAULT_MAX_FRAME_BYTES = 2 * 1024 * 1024;
    /** Bytes of a raw-data frame's header: the 0 marker and the 4-byte length. */
    static final int RAW_HEADER_BYTES = 5;

    private final int maxFrameBytes;
    private boolean failed;
    /** Bytes of the current raw-data frame still to come. */
    private long rawLeft;

    ControlFrameDecoder(int maxFrameBytes) {
        this.maxFrameBytes = maxFrameBytes;
    }

    @Override
    protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) throws Exception {
        if (failed) {
            in.skipBytes(in.readableBytes());
            return;
        }
        while (in.isReadable()) {
            if (rawLeft > 0) {
                int n = (int) Math.min(rawLeft, in.readableBytes());
                out.add(new RawData(in.readRetainedSlice(n)));
                rawLeft -= n;
                continue;
            }
            if (in.getByte(in.readerIndex()) != 0) {
                break;
            }
            if (in.readableBytes() < RAW_HEADER_BYTES) {
                return;
            }
            in.skipBytes(1);
            int n = in.readInt();
            if (n < 0) {
                failed = true;
                in.skipBytes(in.readableBytes());
                throw new CorruptedFrameException("raw-data frame of negative length " + n);
            }
            rawLeft = n;
        }
        if (!in.isReadable()) {
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
