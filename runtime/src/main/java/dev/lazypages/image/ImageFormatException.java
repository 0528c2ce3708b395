package dev.lazypages.image;

import java.nio.file.Path;

/**
 * An image file that cannot be used: corrupt, truncated, of another format version, or
 * inconsistent with the rest of its image directory. The message is one line naming the file
 * and what is wrong with it, e.g. {@code /img/pagemap.img: entry 3 overlaps entry 2}.
 *
 * <p>It is an {@link IllegalArgumentException} so that the command lines map it to
 * {@code ExitCodes.BAD_INPUT} (4) without knowing this package.
 */
public final class ImageFormatException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    private final transient Path file;

    /**
     * @param file    the image file at fault
     * @param problem what is wrong with it, one line, no trailing period
     */
    public ImageFormatException(Path file, String problem) {
        super(file + ": " + problem);
        this.file = file;
    }

    /** Same, keeping the exception that revealed the problem (a protobuf parse error, say). */
    public ImageFormatException(Path file, String problem, Throwable cause) {
        super(file + ": " + problem, cause);
        this.file = file;
    }

    /** The image file at fault. */
    public Path file() {
        return file;
    }
}
