package dev.lazypages.image;

import dev.lazypages.image.ImageFile.Kind;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.PageMap;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.image.proto.ProcessTree;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * Writes one image directory: page runs are appended to {@code pages.img} as they come, the
 * page map is built alongside (one CRC-32C per run), and {@link #finish} writes the page map,
 * the process tree and, last, the inventory. An image directory without {@code inventory.img}
 * is incomplete, so a crash at any point leaves nothing a reader would take for an image.
 *
 * <p>Runs of stored pages are cut at {@link #MAX_RUN_BYTES} so that a reader checking a run's
 * CRC never reads much more than the pages it wants.
 */
public final class ImageWriter implements AutoCloseable {
    /** Longest PRESENT run written, in bytes (whole pages; at least one page). */
    public static final int MAX_RUN_BYTES = 1 << 20;

    private final Path dir;
    private final Inventory inventory;
    private final int pageSize;
    private final Path pagesTmp;
    private final FileChannel pages;
    /** Where pages.img goes instead of a local file, or null. */
    private final PagesOut out;
    private final CRC32C pagesCrc = new CRC32C();
    private final List<PageMapEntry> entries = new ArrayList<>();
    private long pagesWritten;
    private boolean finished;
    private boolean durable = true;

    private ImageWriter(Path dir, Inventory inventory, PagesOut out) throws IOException {
        this.dir = dir;
        this.inventory = inventory.toBuilder().setFormatVersion(ImageFileDescriptor.FORMAT_VERSION).build();
        ImageValidator.inventory(dir.resolve(Kind.INVENTORY.fileName()), this.inventory);
        this.pageSize = inventory.getPageSize();
        this.out = out;
        this.pagesTmp = ImageFile.tempFor(dir.resolve(Kind.PAGES.fileName()));
        this.pages = out == null ? ImageFile.createTemp(pagesTmp) : null;
    }

    /**
     * Where the bytes of {@code pages.img} go when they are not written to the image directory
     * (a pre-copy round streamed to the destination while its pages are read): the page data in
     * order from offset {@code pageSize}, then the header page for offset 0. The other files are
     * written to the directory as usual.
     */
    public interface PagesOut {
        /**
         * Takes {@code data} (its remaining bytes) for {@code position} of pages.img. The memory
         * behind {@code data} must stay unchanged until {@link #flushed} completes.
         */
        void write(ByteBuffer data, long position) throws IOException;

        /** pages.img is complete: {@code header} is its first page. */
        void finish(ByteBuffer header) throws IOException;

        /** Completes once every byte written so far no longer needs the caller's memory. */
        java.util.concurrent.CompletableFuture<?> flushed();
    }

    /** As {@link #create(Path, Inventory)}, but pages.img goes to {@code out} instead of {@code dir}. */
    public static ImageWriter create(Path dir, Inventory inventory, PagesOut out) throws IOException {
        ImageFile.createDirectory(dir); // 0700
        return new ImageWriter(dir, inventory, java.util.Objects.requireNonNull(out, "out"));
    }

    /** Whether pages.img goes to a {@link PagesOut}. */
    public boolean streams() {
        return out != null;
    }

    /** {@link PagesOut#flushed} of a streaming writer; completed for one writing pages.img itself. */
    public java.util.concurrent.CompletableFuture<?> pagesFlushed() {
        return out != null ? out.flushed() : java.util.concurrent.CompletableFuture.completedFuture(null);
    }

    /**
     * Starts an image in {@code dir} (created if missing). The inventory's format version is set
     * to this build's; its page size sizes every run.
     */
    public static ImageWriter create(Path dir, Inventory inventory) throws IOException {
        ImageFile.createDirectory(dir); // 0700
        return new ImageWriter(dir, inventory, null);
    }

    /**
     * {@code false}: {@link #finish} skips every fsync (files are still published atomically by
     * rename). For images that are worthless after a crash anyway, e.g. a lazy final dump whose
     * REMOTE pages live only in the frozen process: its fsyncs would lengthen the freeze.
     */
    public ImageWriter durable(boolean d) {
        this.durable = d;
        return this;
    }

    /** The page size of this image. */
    public int pageSize() {
        return pageSize;
    }

    /** Stores the pages in {@code data} (whole pages) at {@code vaddr} of process {@code pid}. */
    public void addPages(int pid, long vaddr, byte[] data) throws IOException {
        addPages(pid, vaddr, ByteBuffer.wrap(data));
    }

    /**
     * Stores the pages in {@code data}'s remaining bytes (whole pages) at {@code vaddr} of
     * process {@code pid}, as one or more PRESENT runs. Consumes {@code data}.
     */
    public void addPages(int pid, long vaddr, ByteBuffer data) throws IOException {
        checkOpen();
        checkRun(vaddr, data.remaining());
        int maxRun = Math.max(pageSize, MAX_RUN_BYTES / pageSize * pageSize);
        long addr = vaddr;
        while (data.hasRemaining()) {
            int n = Math.min(maxRun, data.remaining());
            ByteBuffer run = data.slice(data.position(), n);
            CRC32C crc = new CRC32C();
            crc.update(run.duplicate());
            pagesCrc.update(run.duplicate());
            if (out != null) {
                out.write(run, pageSize + pagesWritten * pageSize);
            } else {
                ImageFile.writeFully(pages, run, pageSize + pagesWritten * pageSize);
            }
            data.position(data.position() + n);
            int nr = n / pageSize;
            entries.add(entry(pid, addr, nr, PageFlags.PRESENT).setPageOffset(pagesWritten)
                    .setCrc32C((int) crc.getValue()).build());
            pagesWritten += nr;
            addr += n;
        }
    }

    /** Records {@code nrPages} pages at {@code vaddr} of {@code pid} as all zeroes (stored nowhere). */
    public void addZero(int pid, long vaddr, int nrPages) {
        addUnstored(pid, vaddr, nrPages, PageFlags.ZERO);
    }

    /** Records {@code nrPages} pages at {@code vaddr} of {@code pid} as unchanged since the parent image. */
    public void addInParent(int pid, long vaddr, int nrPages) {
        addUnstored(pid, vaddr, nrPages, PageFlags.IN_PARENT);
    }

    /**
     * Records {@code nrPages} pages at {@code vaddr} of {@code pid} as REMOTE: their bytes stay
     * at the source, which serves them to the destination (a lazy final dump).
     */
    public void addRemote(int pid, long vaddr, int nrPages) {
        addUnstored(pid, vaddr, nrPages, PageFlags.REMOTE);
    }

    private void addUnstored(int pid, long vaddr, int nrPages, int flag) {
        checkOpen();
        checkRun(vaddr, (long) nrPages * pageSize);
        entries.add(entry(pid, vaddr, nrPages, flag).build());
    }

    private static PageMapEntry.Builder entry(int pid, long vaddr, int nrPages, int flags) {
        return PageMapEntry.newBuilder().setPid(pid).setVaddr(vaddr).setNrPages(nrPages).setFlags(flags);
    }

    private void checkRun(long vaddr, long bytes) {
        if (bytes <= 0 || bytes % pageSize != 0 || !ImageValidator.aligned(vaddr, pageSize)) {
            throw new IllegalArgumentException("page run at " + Hex.of(vaddr) + " of " + bytes
                    + " bytes is not a positive number of whole, aligned " + pageSize + "-byte pages");
        }
    }

    private void checkOpen() {
        if (finished) {
            throw new IllegalStateException("image " + dir + " already finished");
        }
    }

    /**
     * Completes the image: checks the page map against {@code processes} the way a reader
     * would, then publishes pages.img, pagemap.img, processes.img and finally inventory.img.
     *
     * @throws ImageFormatException when the recorded runs are inconsistent (overlapping, outside
     *                              every VMA, of unknown processes)
     */
    public void finish(ProcessTree processes) throws IOException {
        checkOpen();
        finished = true;
        entries.sort(Comparator.comparingInt(PageMapEntry::getPid)
                .thenComparing(PageMapEntry::getVaddr, Long::compareUnsigned));
        PageMap map = PageMap.newBuilder().addAllEntries(entries).build();
        var byPid = ImageValidator.processes(dir.resolve(Kind.PROCESSES.fileName()), processes, pageSize);
        ImageValidator.pageMap(dir.resolve(Kind.PAGEMAP.fileName()), map, pageSize, pagesWritten, byPid,
                !inventory.getParent().isEmpty());

        long payload = pagesWritten * pageSize;
        if (out != null) {
            ByteBuffer header = ByteBuffer.allocate(pageSize);
            header.put(ImageFileDescriptor.encode(Kind.PAGES, payload, (int) pagesCrc.getValue(), pageSize)).clear();
            out.finish(header);
        } else {
            publishPages(payload);
        }
        ImageFile.writeMessage(dir.resolve(Kind.PAGEMAP.fileName()), Kind.PAGEMAP, map, durable);
        ImageFile.writeMessage(dir.resolve(Kind.PROCESSES.fileName()), Kind.PROCESSES, processes, durable);
        ImageFile.writeMessage(dir.resolve(Kind.INVENTORY.fileName()), Kind.INVENTORY, inventory, durable);
    }

    private void publishPages(long payload) throws IOException {
        ImageFile.writeFully(pages, ImageFileDescriptor.encode(Kind.PAGES, payload, (int) pagesCrc.getValue(), pageSize), 0);
        if (pages.size() < pageSize + payload) { // no pages: the file is the padded header alone
            ImageFile.writeFully(pages, ByteBuffer.allocate(1), pageSize + payload - 1);
        }
        if (durable) {
            pages.force(true);
        }
        pages.close();
        ImageFile.publish(pagesTmp, dir.resolve(Kind.PAGES.fileName()), durable);
    }

    /** Abandons an unfinished image: its temporary pages file is removed. */
    @Override
    public void close() throws IOException {
        if (pages == null) {
            return;
        }
        if (pages.isOpen()) {
            pages.close();
        }
        Files.deleteIfExists(pagesTmp);
    }
}
