package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.CompositeByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.buffer.Unpooled;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Pages handed out from the received buffers' own memory, with pages split across socket reads assembled. */
class PageDataTest {
    static final int PS = PageServerClientTest.PS;

    private static byte[] pageBytes(int pages) {
        byte[] b = new byte[pages * PS];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) (i * 31 + i / PS);
        }
        return b;
    }

    private static List<long[]> runs(PageData d, byte[] out) {
        List<long[]> runs = new ArrayList<>();
        d.forEachRun((first, n, addr) -> {
            runs.add(new long[] {first, n, addr});
            MemorySegment src = MemorySegment.ofAddress(addr).reinterpret((long) n * PS);
            MemorySegment.copy(src, ValueLayout.JAVA_BYTE, 0, out, first * PS, n * PS);
        });
        return runs;
    }

    @Test
    void aContiguousDirectBufferIsOneRunAtItsOwnAddress() {
        byte[] want = pageBytes(5);
        ByteBuf buf = PooledByteBufAllocator.DEFAULT.directBuffer(want.length).writeBytes(want);
        try (Arena arena = Arena.ofConfined()) {
            byte[] got = new byte[want.length];
            List<long[]> runs = runs(new PageData(PS, arena).reset(buf, 0x1000, 5), got);
            assertEquals(1, runs.size());
            assertEquals(buf.memoryAddress(), runs.getFirst()[2], "no copy: the buffer's own memory");
            assertArrayEquals(want, got);
        } finally {
            buf.release();
        }
    }

    @Test
    void pagesSplitAcrossReadsAreAssembledAndTheRestStaysInPlace() {
        byte[] want = pageBytes(6);
        int[] cuts = {100, PS * 3 + 7, PS * 3 + 9, PS * 5 - 1, want.length};
        CompositeByteBuf comp = Unpooled.compositeBuffer();
        int from = 0;
        for (int c : cuts) {
            comp.addComponent(true, Unpooled.directBuffer(c - from).writeBytes(want, from, c - from));
            from = c;
        }
        try (Arena arena = Arena.ofConfined()) {
            byte[] got = new byte[want.length];
            List<long[]> runs = runs(new PageData(PS, arena).reset(comp, 0x1000, 6), got);
            assertArrayEquals(want, got);
            int pages = 0;
            for (long[] r : runs) {
                assertEquals(pages, r[0], "in order");
                pages += (int) r[1];
            }
            assertEquals(6, pages);
            assertTrue(runs.stream().anyMatch(r -> r[1] >= 2), "whole pages inside one read come as a run");
        } finally {
            comp.release();
        }
    }

    @Test
    void aHeapBufferIsCopiedPageByPage() {
        byte[] want = pageBytes(3);
        ByteBuf heap = Unpooled.wrappedBuffer(want.clone());
        try (Arena arena = Arena.ofConfined()) {
            byte[] got = new byte[want.length];
            assertEquals(3, runs(new PageData(PS, arena).reset(heap, 0x1000, 3), got).size());
            assertArrayEquals(want, got);
        }
    }
}
