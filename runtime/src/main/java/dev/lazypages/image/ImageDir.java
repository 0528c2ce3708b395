package dev.lazypages.image;

import dev.lazypages.image.ImageFile.Kind;
import dev.lazypages.image.ImageFileDescriptor.Header;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.PageMap;
import dev.lazypages.image.proto.ProcessTree;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The messages of one image directory, read and checked: {@code inventory.img},
 * {@code processes.img}, {@code pagemap.img}, and the header of {@code pages.img}. Loading
 * checks every file's header and CRC and the consistency rules of {@link ImageValidator}; the
 * page data itself is checked run by run when read ({@link ImageReader}).
 *
 * @param dir         the directory
 * @param inventory   what the image is
 * @param processes   the process tree
 * @param pageMap     where every page is
 * @param pagesInFile pages stored in {@code pages.img}
 * @param pagesCrc    the CRC-32C of all of {@code pages.img}'s page data, from its header
 */
public record ImageDir(Path dir, Inventory inventory, ProcessTree processes, PageMap pageMap, long pagesInFile,
                       int pagesCrc) {

    /** {@code dir}'s file of {@code kind}. */
    public static Path file(Path dir, Kind kind) {
        return dir.resolve(kind.fileName());
    }

    /** This image's file of {@code kind}. */
    public Path file(Kind kind) {
        return file(dir, kind);
    }

    /** The page size of the image. */
    public int pageSize() {
        return inventory.getPageSize();
    }

    /** Whether the image names a parent. */
    public boolean hasParent() {
        return !inventory.getParent().isEmpty();
    }

    /** The parent directory, resolved against this one, or {@code null}. */
    public Path parentDir() {
        return hasParent() ? dir.resolve(inventory.getParent()).normalize() : null;
    }

    /**
     * Reads and checks the image in {@code dir}.
     *
     * @throws ImageFormatException naming the first file found wrong and what is wrong with it
     */
    public static ImageDir load(Path dir) throws IOException {
        try (FileChannel pages = ImageFile.openRead(file(dir, Kind.PAGES))) {
            return load(dir, pages);
        }
    }

    /** Same, with {@code pages.img} already open as {@code pages}. */
    static ImageDir load(Path dir, FileChannel pages) throws IOException {
        if (!Files.isDirectory(dir)) {
            throw new ImageFormatException(dir, "not an image directory");
        }
        Path invFile = file(dir, Kind.INVENTORY);
        Inventory inv = ImageFile.readMessage(invFile, Kind.INVENTORY, Inventory.getDefaultInstance());
        ImageValidator.inventory(invFile, inv);
        int pageSize = inv.getPageSize();

        Path pagesFile = file(dir, Kind.PAGES);
        Header h = ImageFile.readHeader(pages, pagesFile, Kind.PAGES, pageSize);
        if (h.payloadLength() % pageSize != 0) {
            throw new ImageFormatException(pagesFile, "page data of " + h.payloadLength()
                    + " bytes is not a whole number of " + pageSize + "-byte pages");
        }

        Path procFile = file(dir, Kind.PROCESSES);
        ProcessTree tree = ImageFile.readMessage(procFile, Kind.PROCESSES, ProcessTree.getDefaultInstance());
        var byPid = ImageValidator.processes(procFile, tree, pageSize);

        Path mapFile = file(dir, Kind.PAGEMAP);
        PageMap map = ImageFile.readMessage(mapFile, Kind.PAGEMAP, PageMap.getDefaultInstance());
        long pagesInFile = h.payloadLength() / pageSize;
        ImageValidator.pageMap(mapFile, map, pageSize, pagesInFile, byPid, !inv.getParent().isEmpty());
        return new ImageDir(dir, inv, tree, map, pagesInFile, h.payloadCrc());
    }
}
