package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.image.ImageReader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FaultImageTest {
    @Test
    void theImageHoldsTheWordsTheCheckExpects(@TempDir Path tmp) throws Exception {
        try (PageBuffer mem = PageBuffer.allocate(300)) { // more than one 1 MiB run
            int ps = (int) mem.pageSize();
            FaultImage.write(tmp.resolve("img"), mem.address(), 300, ps, 7);
            try (ImageReader r = ImageReader.open(tmp.resolve("img"))) {
                ByteBuffer all = ByteBuffer.allocateDirect(300 * ps).order(ByteOrder.nativeOrder());
                r.readPages(FaultImage.PID, mem.address(), 300, all);
                for (int i = 0; i < 300 * ps; i += 8) {
                    mem.putLong(i, all.getLong(i));
                }
            }
            assertEquals(-1, FaultImage.firstBadPage(mem, 7));
            assertEquals(0, FaultImage.firstBadPage(mem, 8)); // another seed: wrong from the first word
            mem.putLong(123L * ps + 4000, 0);
            assertEquals(123, FaultImage.firstBadPage(mem, 7));
        }
        assertEquals(1 * 31 + 5, FaultImage.word(5, 1, 0));
        assertEquals((4096 + 8) * 31L + 5, FaultImage.word(5, 4096, 8));
    }
}
