package dev.lazypages.image;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.cli.InspectCommand;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.PageMap;
import dev.lazypages.image.proto.PageMapEntry;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** REMOTE runs: written, validated, refused by readPages, counted by inspect. */
class RemotePagesTest {
    @TempDir
    Path tmp;

    /** 4 heap and 2 text pages PRESENT, anonymous pages 0-5 REMOTE, 6-7 ZERO. */
    private Path write() throws Exception {
        Path dir = tmp.resolve("img");
        try (ImageWriter w = ImageWriter.create(dir, ImageFixture.inventory(Inventory.Kind.FULL, ""))) {
            w.addPages(ImageFixture.PID, ImageFixture.HEAP, ImageFixture.pages(1, ImageFixture.HEAP, 4));
            w.addPages(ImageFixture.PID, ImageFixture.TEXT, ImageFixture.pages(1, ImageFixture.TEXT, 2));
            w.addRemote(ImageFixture.PID, ImageFixture.ANON, 6);
            w.addZero(ImageFixture.PID, ImageFixture.ANON + 6L * ImageFixture.PS, 2);
            w.finish(ImageFixture.tree());
        }
        return dir;
    }

    @Test
    void remoteRunsAreWrittenValidatedAndRefusedByReadPages() throws Exception {
        Path dir = write();
        try (ImageReader r = ImageReader.open(dir)) {
            r.verifyPages();
            assertEquals(6, r.image().pagesInFile());
            PageMapEntry e = r.find(ImageFixture.PID, ImageFixture.ANON + ImageFixture.PS);
            assertEquals(PageFlags.REMOTE, e.getFlags());
            assertEquals("REMOTE", PageFlags.describe(e.getFlags()));
            ByteBuffer dst = ByteBuffer.allocateDirect(2 * ImageFixture.PS);
            IllegalArgumentException x = assertThrows(IllegalArgumentException.class,
                    () -> r.readPages(ImageFixture.PID, ImageFixture.ANON + ImageFixture.PS, 2, dst));
            assertTrue(x.getMessage().contains("is REMOTE"), x.getMessage());
            ByteBuffer heap = ByteBuffer.allocate(4 * ImageFixture.PS);
            r.readPages(ImageFixture.PID, ImageFixture.HEAP, 4, heap); // local runs still read
            assertThrows(IllegalArgumentException.class, () -> r.readRun(e));
        }
    }

    @Test
    void remoteCombinedWithAnotherKindIsRefused() {
        PageMap map = PageMap.newBuilder().addEntries(PageMapEntry.newBuilder().setPid(ImageFixture.PID)
                .setVaddr(ImageFixture.ANON).setNrPages(1).setFlags(PageFlags.REMOTE | PageFlags.ZERO)).build();
        var procs = ImageValidator.processes(tmp.resolve("processes.img"), ImageFixture.tree(), ImageFixture.PS);
        ImageFormatException x = assertThrows(ImageFormatException.class,
                () -> ImageValidator.pageMap(tmp.resolve("pagemap.img"), map, ImageFixture.PS, 0, procs, false));
        assertTrue(x.getMessage().contains("expected exactly one of PRESENT, IN_PARENT, ZERO, REMOTE"), x.getMessage());
        PageMap unknown = PageMap.newBuilder().addEntries(PageMapEntry.newBuilder().setPid(ImageFixture.PID)
                .setVaddr(ImageFixture.ANON).setNrPages(1).setFlags(16)).build();
        assertThrows(ImageFormatException.class,
                () -> ImageValidator.pageMap(tmp.resolve("pagemap.img"), unknown, ImageFixture.PS, 0, procs, false));
    }

    @Test
    void inspectSummaryCountsRemotePages() throws Exception {
        Path dir = write();
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new InspectCommand());
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        assertEquals(0, cl.execute("--summary", "--verify-pages", dir.toString()), err.toString());
        assertTrue(out.toString().contains("pages: present 6 (0.02 MiB), in parent 0 (0.00 MiB), zero 2 (0.01 MiB), "
                + "remote 6 (0.02 MiB)"), out.toString());
        StringWriter json = new StringWriter();
        cl = new CommandLine(new InspectCommand());
        cl.setOut(new PrintWriter(json, true));
        assertEquals(0, cl.execute(dir.toString()));
    }
}
