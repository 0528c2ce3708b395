package dev.lazypages.dump;

import dev.lazypages.image.ImageDir;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.PageMapEntry;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;

/**
 * The image a pre-dump or dump names as its parent ({@code --prev-images-dir}): which pages of
 * the process it holds (PRESENT, IN_PARENT or ZERO: every entry resolves through its chain),
 * and the path the child's inventory records (relative to the child's directory).
 *
 * @param dir     the parent directory
 * @param held    the pages of the process the parent holds
 * @param tracker the tracker the parent was taken with
 */
record ParentImage(Path dir, PageSpans held, String tracker) {

    /**
     * Reads {@code dir}'s inventory and page map for {@code pid}.
     *
     * @throws IllegalArgumentException when it is no image, or one of another process
     */
    static ParentImage load(Path dir, int pid) {
        ImageDir img;
        try {
            img = ImageDir.load(dir);
        } catch (IOException e) {
            throw new IllegalArgumentException("--prev-images-dir " + dir + ": " + e.getMessage(), e);
        } catch (UncheckedIOException e) {
            throw new IllegalArgumentException("--prev-images-dir " + dir + ": " + e.getMessage(), e);
        }
        Inventory inv = img.inventory();
        if (inv.getRootPid() != pid) {
            throw new IllegalArgumentException("--prev-images-dir " + dir + " is an image of pid " + inv.getRootPid()
                    + ", not " + pid);
        }
        long ps = img.pageSize();
        PageSpans.Builder b = new PageSpans.Builder();
        for (PageMapEntry e : img.pageMap().getEntriesList()) {
            if (e.getPid() == pid) {
                b.add(e.getVaddr(), e.getVaddr() + Integer.toUnsignedLong(e.getNrPages()) * ps);
            }
        }
        return new ParentImage(dir, b.build(), inv.getTracker());
    }

    /** The parent's path as the child at {@code childDir} records it: relative when both are. */
    String relativeTo(Path childDir) {
        return relative(childDir, dir);
    }

    static String relative(Path childDir, Path parentDir) {
        Path c = childDir.toAbsolutePath().normalize();
        Path p = parentDir.toAbsolutePath().normalize();
        return c.relativize(p).toString();
    }
}
