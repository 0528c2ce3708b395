package dev.lazypages.image;

import static dev.lazypages.image.ImageFixture.ANON;
import static dev.lazypages.image.ImageFixture.HEAP;
import static dev.lazypages.image.ImageFixture.PID;
import static dev.lazypages.image.ImageFixture.PS;
import static dev.lazypages.image.ImageFixture.TEXT;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.image.ImageFile.Kind;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.PageMapEntry;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ImageRoundTripTest {
    @TempDir
    Path tmp;

    @Test
    void readsBackEveryMessageAndPageOfASingleImage() throws IOException {
        Path dir = ImageFixture.writeFull(tmp.resolve("img"));
        try (ImageReader r = ImageReader.open(dir)) {
            ImageDir img = r.image();
            assertEquals(ImageFixture.inventory(Inventory.Kind.FULL, "").toBuilder()
                    .setFormatVersion(ImageFileDescriptor.FORMAT_VERSION).build(), img.inventory());
            assertEquals(ImageFixture.tree(), img.processes());
            assertEquals(14, img.pagesInFile());
            assertNull(r.parent());

            assertArrayEquals(ImageFixture.pages(1, TEXT, 2), read(r, TEXT, 2));
            assertArrayEquals(ImageFixture.pages(1, HEAP, 4), read(r, HEAP, 4));
            byte[] anon = read(r, ANON, 16);
            byte[] expected = new byte[16 * PS];
            System.arraycopy(ImageFixture.pages(1, ANON, 8), 0, expected, 0, 8 * PS);
            assertArrayEquals(expected, anon);
            // a sub-range of a run
            assertArrayEquals(java.util.Arrays.copyOfRange(ImageFixture.pages(1, HEAP, 4), PS, 3 * PS),
                    read(r, HEAP + PS, 2));
            r.verifyPages();
        }
    }

    @Test
    void writerSortsRunsAndStoresPagesPageAlignedInOrderOfArrival() throws IOException {
        Path dir = ImageFixture.writeFull(tmp.resolve("img"));
        try (ImageReader r = ImageReader.open(dir)) {
            List<PageMapEntry> e = r.image().pageMap().getEntriesList();
            assertEquals(List.of(TEXT, HEAP, ANON, ANON + 8L * PS), e.stream().map(PageMapEntry::getVaddr).toList());
            assertEquals(4, e.get(0).getPageOffset()); // heap came first: pages 0-3
            assertEquals(0, e.get(1).getPageOffset());
        }
        byte[] file = Files.readAllBytes(dir.resolve("pages.img"));
        assertEquals(PS + 14 * PS, file.length);
        assertArrayEquals(ImageFixture.pages(1, HEAP, 1), java.util.Arrays.copyOfRange(file, PS, 2 * PS));
    }

    @Test
    void resolvesInParentPagesThroughATwoLevelChain() throws IOException {
        Path child = ImageFixture.writeChain(tmp);
        try (ImageReader r = ImageReader.open(child)) {
            assertTrue(r.parent() != null && r.parent().parent() != null && r.parent().parent().parent() == null);
            assertArrayEquals(ImageFixture.expectedChain(), read(r, ANON, 16));
            // one page at a time, to cross every boundary separately
            byte[] expected = ImageFixture.expectedChain();
            for (int i = 0; i < 16; i++) {
                assertArrayEquals(java.util.Arrays.copyOfRange(expected, i * PS, (i + 1) * PS), read(r, ANON + (long) i * PS, 1),
                        "page " + i);
            }
            r.verifyPages();
        }
    }

    @Test
    void cutsLongRunsAtTheRunLimit() throws IOException {
        int nr = ImageWriter.MAX_RUN_BYTES / PS * 2 + 3;
        Path dir = tmp.resolve("big");
        var tree = ImageFixture.tree().toBuilder();
        tree.getProcessesBuilder(0).addVmas(4, ImageFixture.vma(ANON + 16L * PS, ANON + (16L + nr) * PS, 3, 5,
                dev.lazypages.image.proto.Vma.Kind.ANON, ""));
        long base = ANON + 16L * PS;
        byte[] data = ImageFixture.pages(7, base, nr);
        try (ImageWriter w = ImageWriter.create(dir, ImageFixture.inventory(Inventory.Kind.FULL, ""))) {
            w.addPages(PID, base, ByteBuffer.allocateDirect(data.length).put(data).flip());
            w.finish(tree.build());
        }
        try (ImageReader r = ImageReader.open(dir)) {
            assertEquals(3, r.image().pageMap().getEntriesCount());
            assertArrayEquals(data, read(r, base, nr));
        }
    }

    @Test
    void createsEveryFileWithMode0600AndLeavesNoTemporaryFiles() throws IOException {
        Path dir = ImageFixture.writeFull(tmp.resolve("img"));
        try (Stream<Path> files = Files.list(dir)) {
            List<String> names = files.map(p -> p.getFileName().toString()).sorted().toList();
            assertEquals(List.of("inventory.img", "pagemap.img", "pages.img", "processes.img"), names);
        }
        for (Kind k : Kind.values()) {
            assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(dir.resolve(k.fileName()))),
                    k.fileName());
        }
    }

    @Test
    void abandonedWriterLeavesNoInventoryAndNoTemporaryPages() throws IOException {
        Path dir = tmp.resolve("img");
        try (ImageWriter w = ImageWriter.create(dir, ImageFixture.inventory(Inventory.Kind.FULL, ""))) {
            w.addPages(PID, HEAP, ImageFixture.pages(1, HEAP, 1));
        }
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(0, files.count());
        }
        var e = assertThrows(ImageFormatException.class, () -> ImageReader.open(dir));
        assertTrue(e.getMessage().contains("missing"), e.getMessage());
    }

    @Test
    void writerRefusesOverlappingRunsAndRunsOutsideVmas() throws IOException {
        try (ImageWriter w = ImageWriter.create(tmp.resolve("a"), ImageFixture.inventory(Inventory.Kind.FULL, ""))) {
            w.addPages(PID, HEAP, ImageFixture.pages(1, HEAP, 2));
            w.addZero(PID, HEAP + PS, 2);
            var e = assertThrows(ImageFormatException.class, () -> w.finish(ImageFixture.tree()));
            assertTrue(e.getMessage().contains("pagemap.img") && e.getMessage().contains("overlaps entry"), e.getMessage());
        }
        assertFalse(Files.exists(tmp.resolve("a/inventory.img")));
        try (ImageWriter w = ImageWriter.create(tmp.resolve("b"), ImageFixture.inventory(Inventory.Kind.FULL, ""))) {
            assertThrows(IllegalArgumentException.class, () -> w.addZero(PID, HEAP + 1, 1));
            w.addZero(PID, 0x10000000L, 1);
            var e = assertThrows(ImageFormatException.class, () -> w.finish(ImageFixture.tree()));
            assertTrue(e.getMessage().contains("not inside any VMA"), e.getMessage());
        }
    }

    @Test
    void askingForPagesTheImageDoesNotHaveIsAnIllegalArgument() throws IOException {
        Path dir = ImageFixture.writeFull(tmp.resolve("img"));
        try (ImageReader r = ImageReader.open(dir)) {
            var e = assertThrows(IllegalArgumentException.class, () -> read(r, HEAP + 4 * PS, 1));
            assertFalse(e instanceof ImageFormatException);
            assertTrue(e.getMessage().contains("0x604000"), e.getMessage());
        }
    }

    static byte[] read(PageSource r, long vaddr, int nr) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(nr * r.pageSize());
        r.readPages(PID, vaddr, nr, b);
        assertFalse(b.hasRemaining());
        return b.array();
    }
}
