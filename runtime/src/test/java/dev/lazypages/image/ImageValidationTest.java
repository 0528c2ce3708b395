package dev.lazypages.image;

import static dev.lazypages.image.ImageFixture.ANON;
import static dev.lazypages.image.ImageFixture.HEAP;
import static dev.lazypages.image.ImageFixture.PID;
import static dev.lazypages.image.ImageFixture.PS;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.image.ImageFile.Kind;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.PageMap;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.image.proto.ProcessTree;
import dev.lazypages.image.proto.Vma;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.UnaryOperator;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every kind of bad image gives an {@link ImageFormatException} of one line naming the file and the problem. */
class ImageValidationTest {
    @TempDir
    Path tmp;
    Path dir;

    @BeforeEach
    void writeGoodImage() throws IOException {
        dir = ImageFixture.writeFull(tmp.resolve("img"));
    }

    private Path file(Kind k) {
        return dir.resolve(k.fileName());
    }

    /** Opens the image, expects failure, checks the message names {@code kind}'s file and contains {@code problem}. */
    private String fails(Kind kind, String problem) {
        return fails(dir, file(kind).toString(), problem);
    }

    private static String fails(Path image, String fileName, String problem) {
        var e = assertThrows(ImageFormatException.class, () -> ImageReader.open(image).close());
        String m = e.getMessage();
        assertTrue(m.startsWith(fileName + ": "), "message should start with the file: " + m);
        assertTrue(m.contains(problem), "message should say '" + problem + "': " + m);
        assertFalse(m.contains("\n"), "one line: " + m);
        return m;
    }

    private void rewritePageMap(UnaryOperator<PageMap.Builder> edit) throws IOException {
        PageMap map = ImageDir.load(dir).pageMap();
        ImageFile.writeMessage(file(Kind.PAGEMAP), Kind.PAGEMAP, edit.apply(map.toBuilder()).build());
    }

    private void rewriteVmas(UnaryOperator<ProcessTree.Builder> edit) throws IOException {
        ImageFile.writeMessage(file(Kind.PROCESSES), Kind.PROCESSES, edit.apply(ImageFixture.tree().toBuilder()).build());
    }

    private void rewriteVma(int index, java.util.function.Consumer<Vma.Builder> edit) throws IOException {
        rewriteVmas(t -> {
            edit.accept(t.getProcessesBuilder(0).getVmasBuilder(index));
            return t;
        });
    }

    private void rewriteInventory(UnaryOperator<Inventory.Builder> edit) throws IOException {
        Inventory inv = ImageDir.load(dir).inventory();
        ImageFile.writeMessage(file(Kind.INVENTORY), Kind.INVENTORY, edit.apply(inv.toBuilder()).build());
    }

    /** A file with a correct header and CRC around an arbitrary payload. */
    private static void writeRaw(Path file, Kind kind, byte[] payload) throws IOException {
        CRC32C crc = new CRC32C();
        crc.update(payload);
        ByteBuffer h = ImageFileDescriptor.encode(kind, payload.length, (int) crc.getValue(), 0);
        byte[] all = new byte[ImageFileDescriptor.HEADER_LENGTH + payload.length];
        h.get(0, all, 0, ImageFileDescriptor.HEADER_LENGTH);
        System.arraycopy(payload, 0, all, ImageFileDescriptor.HEADER_LENGTH, payload.length);
        Files.write(file, all);
    }

    @Test
    void payloadShorterThanTheHeaderSaysIsTruncated() throws IOException {
        long size = Files.size(file(Kind.PROCESSES));
        ImageFixture.truncate(file(Kind.PROCESSES), size - 10);
        fails(Kind.PROCESSES, "truncated: header says " + (size - 64) + " payload bytes, file has " + (size - 74));
    }

    @Test
    void fileShorterThanAHeaderIsTruncated() throws IOException {
        ImageFixture.truncate(file(Kind.INVENTORY), 20);
        fails(Kind.INVENTORY, "truncated: 20 bytes, shorter than the 64-byte header");
    }

    @Test
    void pagesFileMissingPagesIsTruncated() throws IOException {
        ImageFixture.truncate(file(Kind.PAGES), Files.size(file(Kind.PAGES)) - PS);
        fails(Kind.PAGES, "truncated");
    }

    @Test
    void hugeLengthFieldIsTruncatedNotAnAllocation() throws IOException {
        ImageFixture.patch(file(Kind.PAGEMAP), ImageFileDescriptor.PAYLOAD_LENGTH_OFFSET,
                ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(-2L).array());
        fails(Kind.PAGEMAP, "truncated: header says 18446744073709551614 payload bytes");
    }

    @Test
    void trailingBytesAreRejected() throws IOException {
        Files.write(file(Kind.INVENTORY), new byte[3], java.nio.file.StandardOpenOption.APPEND);
        fails(Kind.INVENTORY, "3 unexpected bytes after the");
    }

    @Test
    void flippedPayloadByteIsACrcMismatch() throws IOException {
        ImageFixture.flip(file(Kind.PAGEMAP), ImageFileDescriptor.HEADER_LENGTH + 5);
        fails(Kind.PAGEMAP, "CRC-32C mismatch");
    }

    @Test
    void flippedPageByteIsACrcMismatchNamingPagesImgWhenRead() throws IOException {
        ImageFixture.flip(file(Kind.PAGES), PS + 4 * PS + 100); // inside the text run (pages 4-5)
        try (ImageReader r = ImageReader.open(dir)) {
            ByteBuffer b = ByteBuffer.allocate(PS);
            var e = assertThrows(ImageFormatException.class, () -> r.readPages(PID, ImageFixture.TEXT, 1, b));
            assertTrue(e.getMessage().startsWith(file(Kind.PAGES) + ": CRC-32C mismatch in pages 4..5"), e.getMessage());
            ByteBuffer heap = ByteBuffer.allocate(PS); // other runs are still readable
            r.readPages(PID, HEAP, 1, heap);
            var whole = assertThrows(ImageFormatException.class, r::verifyPages);
            assertTrue(whole.getMessage().contains("CRC-32C mismatch"), whole.getMessage());
        }
    }

    @Test
    void wrongMagicIsNotAnImageFile() throws IOException {
        ImageFixture.patch(file(Kind.INVENTORY), 0, "GIF89a".getBytes());
        fails(Kind.INVENTORY, "not a lazy-pages image file (wrong magic 474946383961");
    }

    @Test
    void otherVersionSaysWhichItIsAndWhichThisBuildReads() throws IOException {
        ImageFixture.patchInt(file(Kind.PAGEMAP), ImageFileDescriptor.VERSION_OFFSET, 7);
        fails(Kind.PAGEMAP, "unsupported format version 7; this build reads version 1");
    }

    @Test
    void otherVersionInTheInventoryMessageIsUnsupportedToo() throws IOException {
        rewriteInventory(b -> b.setFormatVersion(2));
        fails(Kind.INVENTORY, "unsupported format version 2; this build reads version 1");
    }

    @Test
    void fileOfAnotherKindIsWrongKind() throws IOException {
        Files.copy(file(Kind.PROCESSES), file(Kind.PAGEMAP), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        fails(Kind.PAGEMAP, "wrong file kind PROCESSES (2), expected PAGEMAP (3)");
    }

    @Test
    void unparsablePayloadIsAParseFailure() throws IOException {
        writeRaw(file(Kind.PROCESSES), Kind.PROCESSES, new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff});
        fails(Kind.PROCESSES, "cannot parse ProcessTree");
    }

    @Test
    void pageRunPastTheEndOfPagesImg() throws IOException {
        rewritePageMap(m -> m.setEntries(1, m.getEntries(1).toBuilder().setPageOffset(12)));
        fails(Kind.PAGEMAP, "entry 1 (pid 100, 0x600000-0x604000, 4 pages): pages 12..15 lie past the end of pages.img (14 pages)");
    }

    @Test
    void overlappingPageRuns() throws IOException {
        rewritePageMap(m -> m.setEntries(2, m.getEntries(2).toBuilder().setVaddr(HEAP + 3 * PS)));
        fails(Kind.PAGEMAP, "overlaps entry 1 0x600000-0x604000");
    }

    @Test
    void unsortedPageRuns() throws IOException {
        rewritePageMap(m -> {
            PageMapEntry first = m.getEntries(0);
            return m.setEntries(0, m.getEntries(1)).setEntries(1, first);
        });
        fails(Kind.PAGEMAP, "entry 1 (pid 100, 0x400000-0x402000, 2 pages): entries not sorted");
    }

    @Test
    void unalignedPageRun() throws IOException {
        rewritePageMap(m -> m.setEntries(1, m.getEntries(1).toBuilder().setVaddr(HEAP + 8)));
        fails(Kind.PAGEMAP, "address not aligned to the page size 4096");
    }

    @Test
    void pageRunWithTwoKinds() throws IOException {
        rewritePageMap(m -> m.setEntries(1, m.getEntries(1).toBuilder().setFlags(PageFlags.PRESENT | PageFlags.ZERO)));
        fails(Kind.PAGEMAP, "flags PRESENT|ZERO, expected exactly one of PRESENT, IN_PARENT, ZERO");
    }

    @Test
    void pageRunOutsideEveryVma() throws IOException {
        rewritePageMap(m -> m.addEntries(PageMapEntry.newBuilder().setPid(PID).setVaddr(ANON + 15L * PS).setNrPages(2)
                .setFlags(PageFlags.ZERO)).removeEntries(3));
        fails(Kind.PAGEMAP, "0x7f000000f000-0x7f0000011000, 2 pages): not inside any VMA of pid 100");
    }

    @Test
    void pageRunOfAnUnknownProcess() throws IOException {
        rewritePageMap(m -> m.setEntries(3, m.getEntries(3).toBuilder().setPid(999)));
        fails(Kind.PAGEMAP, "no process 999 in processes.img");
    }

    @Test
    void inParentRunInAnImageWithoutParent() throws IOException {
        rewritePageMap(m -> m.setEntries(3, m.getEntries(3).toBuilder().setFlags(PageFlags.IN_PARENT)));
        fails(Kind.PAGEMAP, "IN_PARENT but the image has no parent");
    }

    @Test
    void overlappingVmas() throws IOException {
        rewriteVma(1, v -> v.setEnd(ImageFixture.ANON + PS));
        fails(Kind.PROCESSES, "pid 100 VMA 2 0x7f0000000000-0x7f0000008000: overlaps VMA 1 0x600000-0x7f0000001000");
    }

    @Test
    void unsortedVmas() throws IOException {
        rewriteVmas(t -> {
            var p = t.getProcessesBuilder(0);
            Vma first = p.getVmas(0);
            p.setVmas(0, p.getVmas(1)).setVmas(1, first);
            return t;
        });
        fails(Kind.PROCESSES, "pid 100 VMA 1 0x400000-0x402000: VMA list not sorted (VMA 0 starts at 0x600000)");
    }

    @Test
    void vmaStartingAtItsEnd() throws IOException {
        rewriteVma(1, v -> v.setEnd(HEAP));
        fails(Kind.PROCESSES, "pid 100 VMA 1 0x600000-0x600000: start is not below end");
    }

    @Test
    void unalignedVma() throws IOException {
        rewriteVma(1, v -> v.setEnd(HEAP + 4 * PS + 12));
        fails(Kind.PROCESSES, "not aligned to the page size 4096");
    }

    @Test
    void threadWithTooFewRegisters() throws IOException {
        rewriteVmas(t -> {
            var th = t.getProcessesBuilder(0).getThreadsBuilder(1);
            var regs = th.getRegsList().subList(1, th.getRegsCount());
            th.clearRegs().addAllRegs(regs);
            return t;
        });
        fails(Kind.PROCESSES, "pid 100 thread 101: 26 register words, expected 27");
    }

    @Test
    void pagesHeaderWithAnotherPageSizeThanTheInventory() throws IOException {
        ImageFixture.patchInt(file(Kind.PAGES), ImageFileDescriptor.PAGE_SIZE_OFFSET, 8192);
        fails(Kind.PAGES, "page size 8192 differs from the inventory's 4096");
    }

    @Test
    void inventoryWithAnotherPageSizeThanPagesImg() throws IOException {
        rewriteInventory(b -> b.setPageSize(16384));
        fails(Kind.PAGES, "page size 4096 differs from the inventory's 16384");
    }

    @Test
    void inventoryWithAnImpossiblePageSize() throws IOException {
        rewriteInventory(b -> b.setPageSize(5000));
        fails(Kind.INVENTORY, "invalid page size 5000");
    }

    @Test
    void missingFileIsNamed() throws IOException {
        Files.delete(file(Kind.PROCESSES));
        fails(Kind.PROCESSES, "missing");
    }

    @Test
    void missingParentIsNamed() throws IOException {
        Path child = ImageFixture.writeChain(tmp.resolve("chain"));
        ImageFixture.truncate(child.resolveSibling("gp").resolve("pages.img"), 0);
        fails(child, child.resolveSibling("gp").resolve("pages.img").toString(), "truncated");
        deleteTree(child.resolveSibling("gp"));
        String m = fails(child, child.resolveSibling("p").resolve("inventory.img").toString(), "parent image ../gp (");
        assertTrue(m.endsWith(") does not exist"), m);
    }

    @Test
    void parentChainThatLoopsIsRejected() throws IOException {
        Path child = ImageFixture.writeChain(tmp.resolve("chain"));
        Path gp = child.resolveSibling("gp");
        Inventory inv = ImageDir.load(gp).inventory().toBuilder().setParent("../c").build();
        ImageFile.writeMessage(gp.resolve("inventory.img"), Kind.INVENTORY, inv);
        String m = fails(child, gp.resolve("inventory.img").toString(), "parent chain loops: ");
        assertTrue(m.endsWith("/c -> " + child.toRealPath().resolveSibling("p") + " -> " + gp.toRealPath() + " -> "
                + child.toRealPath()), m);
    }

    @Test
    void parentEntryMissingInTheParentNamesTheChildsPagemap() throws IOException {
        Path child = ImageFixture.writeChain(tmp.resolve("chain"));
        Path p = child.resolveSibling("p");
        PageMap map = ImageDir.load(p).pageMap();
        ImageFile.writeMessage(p.resolve("pagemap.img"), Kind.PAGEMAP, map.toBuilder().removeEntries(0).build());
        try (ImageReader r = ImageReader.open(child)) {
            var e = assertThrows(ImageFormatException.class,
                    () -> r.readPages(PID, ANON, 1, ByteBuffer.allocate(PS)));
            assertEquals(child.resolve("pagemap.img") + ": page 0x7f0000000000 of pid 100 is IN_PARENT, but parent image "
                    + p + " has no entry for it", e.getMessage());
        }
    }

    private static void deleteTree(Path d) throws IOException {
        try (var s = Files.walk(d)) {
            for (Path x : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.delete(x);
            }
        }
    }
}
