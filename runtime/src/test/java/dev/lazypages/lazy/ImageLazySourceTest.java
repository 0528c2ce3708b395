package dev.lazypages.lazy;

import static dev.lazypages.lazy.LazyFixture.PID;
import static dev.lazypages.lazy.LazyFixture.PS;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.image.ImageFormatException;
import dev.lazypages.image.ImageReader;
import dev.lazypages.image.ImageWriter;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ImageLazySourceTest {
    private static final long BASE = 0x7f0000000000L;

    @TempDir
    Path tmp;

    private static byte[] pages(int seed, long vaddr, int n) {
        ByteBuffer b = ByteBuffer.allocate(n * PS);
        for (int i = 0; i < n; i++) {
            b.put(LazyFixture.page(seed, vaddr + (long) i * PS));
        }
        return b.array();
    }

    /** Parent stores 16 pages (seed 10); child: 0-3 in parent, 4-7 stored (seed 20), 8-11 zero, 12-15 in parent. */
    private Path chain() throws Exception {
        try (ImageWriter w = ImageWriter.create(tmp.resolve("p"), LazyFixture.inventory(""))) {
            w.addPages(PID, BASE, pages(10, BASE, 16));
            w.finish(LazyFixture.tree(BASE, 16));
        }
        Path c = tmp.resolve("c");
        try (ImageWriter w = ImageWriter.create(c, LazyFixture.inventory("../p"))) {
            w.addInParent(PID, BASE, 4);
            w.addPages(PID, BASE + 4L * PS, pages(20, BASE + 4L * PS, 4));
            w.addZero(PID, BASE + 8L * PS, 4);
            w.addInParent(PID, BASE + 12L * PS, 4);
            w.finish(LazyFixture.tree(BASE, 16));
        }
        return c;
    }

    @Test
    void resolvesInParentThroughTheChainAndLeavesZeroRunsOut() throws Exception {
        try (ImageReader r = ImageReader.open(chain()); ImageLazySource s = ImageLazySource.open(r, PID);
             Arena arena = Arena.ofConfined()) {
            assertEquals(List.of(new LazySource.Run(BASE, 8), new LazySource.Run(BASE + 12L * PS, 4)), s.storedRuns());
            PageBuffer buf = PageBuffer.allocate(arena, 8);
            s.readPages(BASE + 2L * PS, 4, buf, PS); // two pages from the parent, two from the child
            byte[] got = new byte[4 * PS];
            buf.copyTo(PS, got, 0, got.length);
            ByteBuffer want = ByteBuffer.allocate(4 * PS).put(pages(10, BASE + 2L * PS, 2)).put(pages(20, BASE + 4L * PS, 2));
            assertArrayEquals(want.array(), got);
            s.readPages(BASE + 14L * PS, 2, buf, 0); // again, now that the runs are verified: direct reads
            byte[] tail = new byte[2 * PS];
            buf.copyTo(0, tail, 0, tail.length);
            assertArrayEquals(pages(10, BASE + 14L * PS, 2), tail);
            assertThrows(IllegalArgumentException.class, () -> s.readPages(BASE + 8L * PS, 1, buf, 0), "zero pages are not stored");
        }
    }

    @Test
    void aCorruptRunIsRefusedBeforeAnyOfItsBytesAreHandedOut() throws Exception {
        Path c = chain();
        try (RandomAccessFile f = new RandomAccessFile(tmp.resolve("p").resolve("pages.img").toFile(), "rw")) {
            f.seek(PS + 13L * PS + 17); // parent's page 13, read through the child
            f.write(0xff);
        }
        try (ImageReader r = ImageReader.open(c); ImageLazySource s = ImageLazySource.open(r, PID);
             Arena arena = Arena.ofConfined()) {
            PageBuffer buf = PageBuffer.allocate(arena, 1);
            ImageFormatException e = assertThrows(ImageFormatException.class, () -> s.readPages(BASE + 12L * PS, 1, buf, 0));
            assertTrue(e.getMessage().contains("CRC-32C"), e.getMessage());
        }
    }
}
