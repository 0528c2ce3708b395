package dev.lazypages.net;

import io.netty.buffer.ByteBuf;

/**
 * A piece of a raw-data frame as it came off the socket (a retained slice: whoever takes it
 * from the inbox releases it). Raw-data frames carry file bytes unframed by protobuf, see
 * {@link ControlFrameDecoder}.
 */
record RawData(ByteBuf buf) {
}
