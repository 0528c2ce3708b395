package dev.lazypages.image;

import static dev.lazypages.image.ImageFixture.ANON;
import static dev.lazypages.image.ImageFixture.PS;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.image.ImageFile.Kind;
import dev.lazypages.image.proto.PageMap;
import dev.lazypages.image.proto.ProcessTree;
import java.io.IOException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The images {@link ImageFuzzTest} found wrongly handled, each kept as it was found. */
class ImageFuzzRegressionTest {
    @TempDir
    Path tmp;

    /**
     * Found by ImageFuzzTest (seed 1885667171979194497, case 32): a ZERO run of 2^31 pages, inside
     * a VMA widened to hold it, passed the validator; its page count is negative as an int, and
     * reading 1024 of its pages silently returned one.
     */
    @Test
    void aRunOfTwoToTheThirtyOnePagesIsRefusedAtOpen() throws IOException {
        Path dir = ImageFixture.writeFull(tmp.resolve("img"));
        long nr = 1L << 31;
        PageMap map = ImageDir.load(dir).pageMap();
        int zero = map.getEntriesCount() - 1; // ANON + 8 pages: ZERO
        ImageFile.writeMessage(dir.resolve(Kind.PAGEMAP.fileName()), Kind.PAGEMAP, map.toBuilder()
                .setEntries(zero, map.getEntries(zero).toBuilder().setNrPages((int) nr)).build());
        ProcessTree tree = ImageFixture.tree();
        var p = tree.getProcesses(0).toBuilder();
        p.setVmas(3, p.getVmas(3).toBuilder().setEnd(ANON + 8L * PS + nr * PS));
        ImageFile.writeMessage(dir.resolve(Kind.PROCESSES.fileName()), Kind.PROCESSES, tree.toBuilder().setProcesses(0, p).build());

        var e = assertThrows(ImageFormatException.class, () -> ImageReader.open(dir).close());
        assertTrue(e.getMessage().startsWith(dir.resolve(Kind.PAGEMAP.fileName()) + ": entry " + zero), e.getMessage());
        assertTrue(e.getMessage().endsWith("run of more than 2147483647 pages"), e.getMessage());
    }
}
