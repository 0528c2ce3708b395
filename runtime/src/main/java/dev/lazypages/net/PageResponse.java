package dev.lazypages.net;

import io.netty.buffer.ByteBuf;

/**
 * A decoded server → client frame (PAGES, ERROR or ACCEPT) of {@link PageFrameDescriptor}.
 * {@code data} (PAGES only) is a retained slice: whoever handles the response releases it.
 */
record PageResponse(int type, int flags, int nrPages, long vaddr, long requestId, ByteBuf data, String error) {
}
