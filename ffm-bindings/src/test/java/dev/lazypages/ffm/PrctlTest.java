package dev.lazypages.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class PrctlTest {
    /** AT_NULL, AT_PAGESZ and AT_ENTRY from elf.h. */
    private static final long AT_NULL = 0;
    private static final long AT_PAGESZ = 6;
    private static final long AT_ENTRY = 9;

    @Test
    void theKernelExpectsThePrctlMmMapSizeTheBindingsGenerated() {
        assertEquals(Prctl.MM_MAP_SIZE, Prctl.mmMapSize());
        assertEquals(104, Prctl.MM_MAP_SIZE, "struct prctl_mm_map on x86-64");
    }

    @Test
    void selfAuxvIsTypeValuePairsEndingInAtNull() {
        long[] auxv = Prctl.selfAuxv();
        assertEquals(0, auxv.length % 2, "pairs of words");
        assertTrue(auxv.length >= 4, "some entries and the terminator");
        assertEquals(AT_NULL, auxv[auxv.length - 2], "the last pair is AT_NULL");
        boolean pageSize = false;
        boolean entry = false;
        for (int i = 0; i < auxv.length; i += 2) {
            if (auxv[i] == AT_PAGESZ) {
                assertEquals(Posix.pageSize(), auxv[i + 1], "AT_PAGESZ");
                pageSize = true;
            }
            entry |= auxv[i] == AT_ENTRY && auxv[i + 1] != 0;
        }
        assertTrue(pageSize && entry, "AT_PAGESZ and AT_ENTRY are there");
    }

    @Test
    void mmMapEncodesTheStructThenTheAuxvWords() {
        long[] auxv = {AT_PAGESZ, 4096, AT_NULL, 0};
        Prctl.MmMap map = new Prctl.MmMap(0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000, 0x8000, 0x9000,
                0xa000, 0xb000, auxv, 7);
        assertEquals(Prctl.MM_MAP_SIZE + 32, map.encodedSize());
        try (PageBuffer buf = PageBuffer.allocate(1)) {
            buf.clear();
            map.encode(buf, 0x7fff_0000_0000L);
            assertEquals(0x1000, buf.getLong(0), "start_code first");
            assertEquals(0xb000, buf.getLong(80), "env_end is the eleventh word");
            assertEquals(0x7fff_0000_0000L, buf.getLong(88), "auxv points where the copy will be");
            assertEquals(32, buf.getLong(96) & 0xffff_ffffL, "auxv_size in bytes");
            assertEquals(7, buf.getLong(96) >>> 32, "exe_fd");
            assertEquals(AT_PAGESZ, buf.getLong(Prctl.MM_MAP_SIZE));
            assertEquals(4096, buf.getLong(Prctl.MM_MAP_SIZE + 8));
        }
    }
}
