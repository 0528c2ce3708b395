package dev.lazypages.net;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Where a {@link PageServer} gets page contents (the source side): the frozen process's memory
 * through process_vm_readv, or an image. Called on a Netty event loop thread, possibly from
 * several at once (one per connection): implementations must be thread safe and should not
 * block for long.
 */
public interface PageProvider {
    /** Bytes per page. */
    int pageSize();

    /**
     * Fills {@code directDst} (position 0, remaining exactly {@code nrPages * pageSize()} bytes)
     * with the pages at {@code vaddr}. It is a view of the outgoing network buffer: write
     * straight into it, no copy. The position and limit on return do not matter.
     *
     * @throws IOException when the pages cannot be read; the message reaches the client
     */
    void readPages(long vaddr, int nrPages, ByteBuffer directDst) throws IOException;
}
