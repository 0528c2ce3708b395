package dev.lazypages.image;

import java.io.IOException;
import java.nio.ByteBuffer;

/** Somewhere the contents of a process's pages can be read from. */
public interface PageSource {
    /** Bytes per page. */
    int pageSize();

    /**
     * Puts {@code nrPages} pages of process {@code pid} starting at {@code vaddr} into
     * {@code dst} (from its position, which advances by {@code nrPages * pageSize()}).
     *
     * @throws IllegalArgumentException when the source has no such pages, or
     *                                  {@link ImageFormatException} when their data is corrupt
     */
    void readPages(int pid, long vaddr, int nrPages, ByteBuffer dst) throws IOException;
}
