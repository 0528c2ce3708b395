package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** floor-server's protocol (native-stubs/src/main/c/floor-proto.h), spoken from Java over loopback. */
class FloorServerTest {
    private static final long BASE = 0x600000000000L;
    private static final int REQ_MAGIC = 0x51524c46;
    private static final int RESP_MAGIC = 0x50524c46;
    private static final int PAGES = 64;
    private static final int SEED = 9;

    @TempDir
    Path tmp;

    @Test
    void servesThePatternOfEachRequestedPageAndRefusesPagesOutsideTheImage() throws Exception {
        try (TouchRig.FloorServer fs = TouchRig.FloorServer.start(Stubs.path("floor-server"), PAGES, SEED, tmp.resolve("fs.log"));
             Socket s = new Socket(fs.address().getAddress(), fs.address().getPort())) {
            s.setSoTimeout(10_000);
            OutputStream out = s.getOutputStream();
            DataInputStream in = new DataInputStream(s.getInputStream());
            // one page, then three at once, on the same connection
            for (int[] req : new int[][] {{5, 1}, {60, 3}}) {
                long vaddr = BASE + req[0] * 4096L;
                out.write(request(REQ_MAGIC, req[1], vaddr));
                ByteBuffer h = header(in);
                assertEquals(RESP_MAGIC, h.getInt(0));
                assertEquals(0, h.getInt(4), "status");
                assertEquals(vaddr, h.getLong(8));
                byte[] pages = new byte[req[1] * 4096];
                in.readFully(pages);
                ByteBuffer b = ByteBuffer.wrap(pages).order(ByteOrder.nativeOrder());
                for (int off = 0; off < pages.length; off += 8) {
                    assertEquals(FaultImage.word(SEED, vaddr, off), b.getLong(off), "word at +" + off);
                }
            }
            // past the end, below the base, unaligned: status 1 (ERANGE), no pages, the connection stays usable
            for (long vaddr : new long[] {BASE + 63 * 4096L, BASE - 4096, BASE + 1}) {
                out.write(request(REQ_MAGIC, 2, vaddr));
                ByteBuffer h = header(in);
                assertEquals(1, h.getInt(4), "status for 0x" + Long.toHexString(vaddr));
            }
            // a wrong magic: status 2 (EBADREQ), then the server closes
            out.write(request(0x12345678, 1, BASE));
            assertEquals(2, header(in).getInt(4));
            assertEquals(-1, in.read());
        }
    }

    @Test
    void theTouchersFloorFetchesEveryTouchedPageAndCatchesOnesThatDoNotHoldThePattern() throws Exception {
        Requires.userfaultfd();
        try (TouchRig.FloorServer fs = TouchRig.FloorServer.start(Stubs.path("floor-server"), PAGES, SEED, tmp.resolve("fs.log"))) {
            String at = "127.0.0.1:" + fs.address().getPort();
            ToucherResult good = touch(at, SEED, "--bulk");
            assertTrue(good.verified(), "bad pages: " + good.badPages());
            assertEquals(PAGES, good.faultPages() + good.bulkPages(), "every page copied once, by a fault or by the bulk stream");
            assertTrue(good.allInNanos() > 0);
            ToucherResult wrong = touch(at, SEED + 1); // the toucher expects another pattern than the server's image
            assertEquals(20, wrong.badPages());
            assertEquals(20, wrong.faultPages());
        }
    }

    private ToucherResult touch(String at, int seed, String... more) throws Exception {
        Path out = tmp.resolve("touches-" + seed + ".txt");
        java.util.List<String> cmd = new java.util.ArrayList<>(java.util.List.of(Stubs.path("toucher").toString(), "--pages",
                Integer.toString(PAGES), "--touches", "20", "--seed", Integer.toString(seed), "--out", out.toString(), "--floor", at));
        cmd.addAll(java.util.List.of(more));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String log = new String(p.getInputStream().readAllBytes());
        assertEquals(0, p.waitFor(), log);
        return ToucherResult.parse(java.nio.file.Files.readString(out));
    }

    @Test
    void refusesBadArgumentsWithOneLine() throws Exception {
        Process p = new ProcessBuilder(Stubs.path("floor-server").toString(), "--pages", "0").redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertEquals(2, p.waitFor());
        assertTrue(out.contains("--pages must be positive"), out);
        assertEquals(1, out.strip().lines().count(), out);
    }

    private static byte[] request(int magic, int pages, long vaddr) {
        return ByteBuffer.allocate(16).order(ByteOrder.nativeOrder()).putInt(magic).putInt(pages).putLong(vaddr).array();
    }

    private static ByteBuffer header(DataInputStream in) throws IOException {
        byte[] h = new byte[16];
        in.readFully(h);
        return ByteBuffer.wrap(h).order(ByteOrder.nativeOrder());
    }
}
