package dev.lazypages.lazy;

import static dev.lazypages.lazy.LazyFixture.PID;
import static dev.lazypages.lazy.LazyFixture.PS;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.image.ImageReader;
import dev.lazypages.image.ImageWriter;
import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Local image runs and REMOTE runs served by one source, each read going to the right one. */
class CompositeLazySourceTest {
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

    /** A remote source answering any page with seed 99, recording each call as "fault|background vaddr n". */
    static final class FakeRemote implements LazySource {
        final List<String> calls = new CopyOnWriteArrayList<>();
        final List<Run> runs;

        FakeRemote(List<Run> runs) {
            this.runs = runs;
        }

        @Override
        public int pageSize() {
            return PS;
        }

        @Override
        public List<Run> storedRuns() {
            return runs;
        }

        @Override
        public void readPages(long vaddr, int nrPages, PageBuffer dst, long dstOffset) {
            calls.add("fault " + Long.toHexString(vaddr) + " " + nrPages);
            byte[] b = pages(99, vaddr, nrPages);
            dst.copyFrom(b, 0, dstOffset, b.length);
        }

        @Override
        public void readPagesInBackground(long vaddr, int nrPages, PageBuffer dst, long dstOffset) {
            calls.add("background " + Long.toHexString(vaddr) + " " + nrPages);
            byte[] b = pages(99, vaddr, nrPages);
            dst.copyFrom(b, 0, dstOffset, b.length);
        }
    }

    /** Parent stores 16 pages (seed 10); child: 0-3 in parent, 4-7 stored (seed 20), 8-11 REMOTE, 12-15 in parent. */
    private Path chain() throws Exception {
        try (ImageWriter w = ImageWriter.create(tmp.resolve("p"), LazyFixture.inventory(""))) {
            w.addPages(PID, BASE, pages(10, BASE, 16));
            w.finish(LazyFixture.tree(BASE, 16));
        }
        Path c = tmp.resolve("c");
        try (ImageWriter w = ImageWriter.create(c, LazyFixture.inventory("../p"))) {
            w.addInParent(PID, BASE, 4);
            w.addPages(PID, BASE + 4L * PS, pages(20, BASE + 4L * PS, 4));
            w.addRemote(PID, BASE + 8L * PS, 4);
            w.addInParent(PID, BASE + 12L * PS, 4);
            w.finish(LazyFixture.tree(BASE, 16));
        }
        return c;
    }

    @Test
    void readsSplitBetweenTheImageAndTheRemoteSource() throws Exception {
        try (ImageReader r = ImageReader.open(chain()); ImageLazySource local = ImageLazySource.open(r, PID);
             Arena arena = Arena.ofConfined()) {
            assertEquals(List.of(new LazySource.Run(BASE, 8), new LazySource.Run(BASE + 12L * PS, 4)), local.storedRuns());
            assertEquals(List.of(new LazySource.Run(BASE + 8L * PS, 4)), local.remoteRuns());
            FakeRemote remote = new FakeRemote(local.remoteRuns());
            CompositeLazySource s = new CompositeLazySource(local, remote, local.remoteRuns());
            assertEquals(List.of(new LazySource.Run(BASE, 16)), s.storedRuns(), "the union: completion waits for both");
            assertEquals(4, s.remotePages());

            PageBuffer buf = PageBuffer.allocate(arena, 12);
            s.readPages(BASE + 2L * PS, 12, buf, 0);
            byte[] got = new byte[12 * PS];
            buf.copyTo(0, got, 0, got.length);
            ByteBuffer want = ByteBuffer.allocate(12 * PS).put(pages(10, BASE + 2L * PS, 2)).put(pages(20, BASE + 4L * PS, 4))
                    .put(pages(99, BASE + 8L * PS, 4)).put(pages(10, BASE + 12L * PS, 2));
            assertArrayEquals(want.array(), got);
            assertEquals(List.of("fault " + Long.toHexString(BASE + 8L * PS) + " 4"), remote.calls);

            s.readPagesInBackground(BASE + 9L * PS, 2, buf, PS);
            assertEquals("background " + Long.toHexString(BASE + 9L * PS) + " 2", remote.calls.getLast());
            s.readPagesInBackground(BASE, 2, buf, 0); // local: the remote sees nothing
            assertEquals(2, remote.calls.size());
        }
    }

    @Test
    void refusesOverlapsAndPagesOutsideBoth() throws Exception {
        try (ImageReader r = ImageReader.open(chain()); ImageLazySource local = ImageLazySource.open(r, PID);
             Arena arena = Arena.ofConfined()) {
            FakeRemote remote = new FakeRemote(List.of());
            IllegalArgumentException x = assertThrows(IllegalArgumentException.class,
                    () -> new CompositeLazySource(local, remote, List.of(new LazySource.Run(BASE + 6L * PS, 4))));
            assertTrue(x.getMessage().contains("overlaps"), x.getMessage());
            CompositeLazySource s = new CompositeLazySource(local, remote, local.remoteRuns());
            PageBuffer buf = PageBuffer.allocate(arena, 2);
            assertThrows(IllegalArgumentException.class, () -> s.readPages(BASE + 16L * PS, 1, buf, 0));
        }
    }

    @Test
    void anImageWithoutRemoteRunsHasNone() throws Exception {
        java.util.BitSet all = new java.util.BitSet();
        all.set(0, 4);
        Path d = LazyFixture.write(tmp.resolve("plain"), BASE, 4, all, 1);
        try (ImageReader r = ImageReader.open(d); ImageLazySource s = ImageLazySource.open(r, PID)) {
            assertTrue(s.remoteRuns().isEmpty());
        }
    }
}
