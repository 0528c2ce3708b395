package dev.lazypages.image;

import dev.lazypages.image.ImageFile.Kind;
import dev.lazypages.image.proto.PageMapEntry;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32C;

/**
 * Reads pages from an image directory and, for pages marked IN_PARENT, from its chain of
 * parents (opened and checked together with it: a missing parent or a chain that loops is an
 * {@link ImageFormatException} at {@link #open}). Every PRESENT run is read whole and its
 * CRC-32C checked before any of its bytes are handed out.
 *
 * <p>Not thread-safe (reads use positional I/O, but the caller owns the buffers).
 */
public final class ImageReader implements PageSource, AutoCloseable {
    private final ImageDir image;
    private final FileChannel pages;
    private final ImageReader parent;
    /** Per pid, the page map entries sorted by address. */
    private final Map<Integer, List<PageMapEntry>> byPid = new HashMap<>();

    private ImageReader(ImageDir image, FileChannel pages, ImageReader parent) {
        this.image = image;
        this.pages = pages;
        this.parent = parent;
        for (PageMapEntry e : image.pageMap().getEntriesList()) {
            byPid.computeIfAbsent(e.getPid(), k -> new ArrayList<>()).add(e);
        }
    }

    /**
     * Opens and checks the image in {@code dir} and its parents.
     *
     * @throws ImageFormatException naming the first file found wrong
     */
    public static ImageReader open(Path dir) throws IOException {
        return open(dir, new LinkedHashSet<>());
    }

    private static ImageReader open(Path dir, LinkedHashSet<Path> seen) throws IOException {
        FileChannel ch = ImageFile.openRead(ImageDir.file(dir, Kind.PAGES));
        try {
            ImageDir image = ImageDir.load(dir, ch);
            seen.add(dir.toRealPath());
            ImageReader parent = image.hasParent() ? openParent(image, seen) : null;
            return new ImageReader(image, ch, parent);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    /**
     * Opens the image in {@code dir} whose parent is the image {@code parent} already opened
     * (a chain growing round by round is read once, not again from its first image). On
     * success the new reader owns {@code parent} ({@link #close} closes it); on failure the
     * caller still does.
     *
     * @throws ImageFormatException the image names no parent, or another one than {@code parent}'s directory
     */
    public static ImageReader open(Path dir, ImageReader parent) throws IOException {
        FileChannel ch = ImageFile.openRead(ImageDir.file(dir, Kind.PAGES));
        try {
            ImageDir image = ImageDir.load(dir, ch);
            Path invFile = image.file(Kind.INVENTORY);
            if (!image.hasParent() || !Files.isDirectory(image.parentDir())
                    || !image.parentDir().toRealPath().equals(parent.image().dir().toRealPath())) {
                throw new ImageFormatException(invFile, "parent image '" + image.inventory().getParent() + "' is not "
                        + parent.image().dir());
            }
            if (parent.pageSize() != image.pageSize()) {
                throw new ImageFormatException(invFile, "page size " + image.pageSize() + " differs from parent "
                        + parent.image().dir() + "'s " + parent.pageSize());
            }
            return new ImageReader(image, ch, parent);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    private static ImageReader openParent(ImageDir image, LinkedHashSet<Path> seen) throws IOException {
        Path invFile = image.file(Kind.INVENTORY);
        Path p = image.parentDir();
        if (!Files.isDirectory(p)) {
            throw new ImageFormatException(invFile, "parent image " + image.inventory().getParent() + " (" + p
                    + ") does not exist");
        }
        if (seen.contains(p.toRealPath())) {
            List<String> chain = new ArrayList<>(seen.stream().map(Path::toString).toList());
            chain.add(p.toRealPath().toString());
            throw new ImageFormatException(invFile, "parent chain loops: " + String.join(" -> ", chain));
        }
        ImageReader parent = open(p, seen);
        if (parent.pageSize() != image.pageSize()) {
            parent.close();
            throw new ImageFormatException(invFile, "page size " + image.pageSize() + " differs from parent " + p
                    + "'s " + parent.pageSize());
        }
        return parent;
    }

    /** The image read by this reader. */
    public ImageDir image() {
        return image;
    }

    /** The parent image's reader, or {@code null}. */
    public ImageReader parent() {
        return parent;
    }

    @Override
    public int pageSize() {
        return image.pageSize();
    }

    /** The page map entry of {@code pid} covering {@code vaddr}, or {@code null}. */
    public PageMapEntry find(int pid, long vaddr) {
        List<PageMapEntry> list = byPid.get(pid);
        if (list == null) {
            return null;
        }
        int lo = 0;
        int hi = list.size() - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            PageMapEntry e = list.get(mid);
            long end = e.getVaddr() + Integer.toUnsignedLong(e.getNrPages()) * pageSize();
            if (Long.compareUnsigned(vaddr, e.getVaddr()) < 0) {
                hi = mid - 1;
            } else if (Long.compareUnsigned(vaddr, end) >= 0) {
                lo = mid + 1;
            } else {
                return e;
            }
        }
        return null;
    }

    @Override
    public void readPages(int pid, long vaddr, int nrPages, ByteBuffer dst) throws IOException {
        if (dst.remaining() < (long) nrPages * pageSize()) {
            throw new IllegalArgumentException(nrPages + " pages do not fit in " + dst.remaining() + " bytes");
        }
        read(pid, vaddr, nrPages, dst, null);
    }

    /**
     * @param child the child's pagemap file when resolving its IN_PARENT pages, else {@code null}
     */
    private void read(int pid, long vaddr, int nrPages, ByteBuffer dst, Path child) throws IOException {
        int ps = pageSize();
        long addr = vaddr;
        int left = nrPages;
        while (left > 0) {
            PageMapEntry e = find(pid, addr);
            if (e == null) {
                String what = "page " + Hex.of(addr) + " of pid " + pid;
                if (child != null) {
                    throw new ImageFormatException(child, what + " is IN_PARENT, but parent image " + image.dir()
                            + " has no entry for it");
                }
                throw new IllegalArgumentException(what + " is not in image " + image.dir());
            }
            int index = (int) ((addr - e.getVaddr()) / ps);
            int n = Math.min(left, e.getNrPages() - index);
            switch (e.getFlags()) {
                case PageFlags.ZERO -> dst.put(dst.position(), new byte[n * ps]).position(dst.position() + n * ps);
                case PageFlags.IN_PARENT -> parent.read(pid, addr, n, dst, image.file(Kind.PAGEMAP));
                case PageFlags.REMOTE -> throw new IllegalArgumentException("page " + Hex.of(addr) + " of pid " + pid
                        + " is REMOTE in image " + image.dir() + ": its bytes stay at the source, fetch them through "
                        + "the page server");
                default -> {
                    if (index == 0 && n == e.getNrPages() && dst.isDirect()) {
                        // The whole run into the caller's (native) buffer: no heap copy, CRC on the spot.
                        ByteBuffer slot = dst.slice(dst.position(), n * ps);
                        ImageFile.readFully(pages, slot, ps + e.getPageOffset() * ps, image.file(Kind.PAGES));
                        checkCrc(e, slot.rewind());
                        dst.position(dst.position() + n * ps);
                    } else {
                        ByteBuffer run = readRun(e);
                        dst.put(run.slice(index * ps, n * ps));
                    }
                }
            }
            addr += (long) n * ps;
            left -= n;
        }
    }

    /**
     * Reads the PRESENT run {@code e} of this image whole and checks its CRC-32C.
     *
     * @throws ImageFormatException naming pages.img when the bytes do not match
     */
    public ByteBuffer readRun(PageMapEntry e) throws IOException {
        if (e.getFlags() != PageFlags.PRESENT) {
            throw new IllegalArgumentException("entry at " + Hex.of(e.getVaddr()) + " is "
                    + PageFlags.describe(e.getFlags()) + ", not PRESENT");
        }
        int ps = pageSize();
        ByteBuffer b = ByteBuffer.allocate(e.getNrPages() * ps); // bounded by ImageValidator.MAX_RUN_BYTES
        Path file = image.file(Kind.PAGES);
        ImageFile.readFully(pages, b, ps + e.getPageOffset() * ps, file);
        checkCrc(e, b.duplicate().rewind());
        return b;
    }

    /** Checks {@code data} (the whole run, position to limit) against the run's CRC-32C. */
    private void checkCrc(PageMapEntry e, ByteBuffer data) {
        CRC32C crc = new CRC32C();
        crc.update(data);
        if ((int) crc.getValue() != e.getCrc32C()) {
            throw new ImageFormatException(image.file(Kind.PAGES), "CRC-32C mismatch in pages " + e.getPageOffset() + ".."
                    + (e.getPageOffset() + e.getNrPages() - 1) + " (pid " + e.getPid() + " at " + Hex.of(e.getVaddr())
                    + "): pagemap says " + ImageFile.hex32(e.getCrc32C()) + ", data has " + ImageFile.hex32((int) crc.getValue()));
        }
    }

    /**
     * Reads all of pages.img, of this image and its parents, checking the whole-file CRC from
     * the header and every run's CRC.
     *
     * @throws ImageFormatException at the first mismatch
     */
    public void verifyPages() throws IOException {
        int ps = pageSize();
        Path file = image.file(Kind.PAGES);
        CRC32C crc = new CRC32C();
        ByteBuffer b = ByteBuffer.allocate(Math.max(ps, ImageWriter.MAX_RUN_BYTES / ps * ps));
        long pos = ps;
        long end = ps + image.pagesInFile() * ps;
        while (pos < end) {
            b.clear().limit((int) Math.min(b.capacity(), end - pos));
            ImageFile.readFully(pages, b, pos, file);
            pos += b.remaining();
            crc.update(b);
        }
        ImageFile.checkCrc(file, image.pagesCrc(), (int) crc.getValue());
        for (PageMapEntry e : image.pageMap().getEntriesList()) {
            if (e.getFlags() == PageFlags.PRESENT) {
                readRun(e);
            }
        }
        if (parent != null) {
            parent.verifyPages();
        }
    }

    /** Closes this image's pages file and its parents'. */
    @Override
    public void close() throws IOException {
        try {
            pages.close();
        } finally {
            if (parent != null) {
                parent.close();
            }
        }
    }
}
