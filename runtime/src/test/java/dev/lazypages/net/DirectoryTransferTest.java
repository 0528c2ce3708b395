package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.lazypages.net.proto.ControlMessage;
import dev.lazypages.net.proto.DirectoryDone;
import dev.lazypages.net.proto.FileChunk;
import dev.lazypages.net.proto.Role;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Image directories over a loopback control connection. */
class DirectoryTransferTest {
    private static final Duration T = Duration.ofSeconds(30);
    @TempDir
    Path tmp;
    private ControlServer server;
    private ControlConnection src;
    private ControlConnection dst;

    @BeforeEach
    void connect() throws Exception {
        LinkedBlockingQueue<ControlConnection> accepted = new LinkedBlockingQueue<>();
        server = ControlServer.listen(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0),
                ControlConnectionTest.hello(Role.DESTINATION, 1, "t"), accepted::add);
        src = ControlClient.connect(server.localAddress(), ControlConnectionTest.hello(Role.SOURCE, 1, "t"), T);
        dst = accepted.poll(10, TimeUnit.SECONDS);
    }

    @AfterEach
    void close() {
        src.close();
        server.close();
    }

    private static void writeRandom(Path f, long size, long seed) throws IOException {
        Random r = new Random(seed);
        byte[] buf = new byte[1 << 20];
        try (FileChannel out = FileChannel.open(f, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            long left = size;
            while (left > 0) {
                r.nextBytes(buf);
                int n = (int) Math.min(buf.length, left);
                out.write(ByteBuffer.wrap(buf, 0, n));
                left -= n;
            }
        }
    }

    private static CompletableFuture<DirectoryTransfer.Stats> receiveAsync(ControlConnection c, Path into) {
        return CompletableFuture.supplyAsync(() -> {
            try {
                return DirectoryTransfer.receive(c, into, T);
            } catch (Exception e) {
                throw new java.util.concurrent.CompletionException(e);
            }
        });
    }

    @Test
    void sendsADirectoryWithA64MiBFileAndSmallFilesVerified() throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("round-1"));
        writeRandom(dir.resolve("pages.img"), (64L << 20) + 123, 1);
        writeRandom(dir.resolve("pagemap.img"), 4096, 2);
        writeRandom(dir.resolve("inventory.img"), 77, 3);
        Files.createFile(dir.resolve("empty.img"));
        Files.createDirectory(dir.resolve("subdir")); // skipped
        Path into = Files.createDirectory(tmp.resolve("dest"));

        CompletableFuture<DirectoryTransfer.Stats> got = receiveAsync(dst, into);
        DirectoryTransfer.Stats sent = DirectoryTransfer.send(src, 1, dir);
        DirectoryTransfer.Stats recv = got.get(60, TimeUnit.SECONDS);

        assertEquals(4, sent.files());
        assertEquals(sent.bytes(), recv.bytes());
        assertEquals(into.resolve("round-1"), recv.dir());
        try (Stream<Path> s = Files.list(recv.dir())) {
            assertEquals(List.of("empty.img", "inventory.img", "pagemap.img", "pages.img"),
                    s.map(p -> p.getFileName().toString()).sorted().toList());
        }
        for (String name : List.of("empty.img", "inventory.img", "pagemap.img", "pages.img")) {
            Path f = recv.dir().resolve(name);
            assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(f)), name);
            assertEquals(-1L, Files.mismatch(dir.resolve(name), f), name + " differs");
        }
        assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(recv.dir())));
        System.out.printf("directory transfer: %d MiB in %d ms, %.0f MiB/s (send side), %.0f MiB/s (receive side)%n",
                recv.bytes() >> 20, recv.elapsed().toMillis(), sent.mibPerSecond(), recv.mibPerSecond());
    }

    @Test
    void rawFileDataWhenThePeerReadsItSameBytesAndCrcChecked() throws Exception {
        try (RawPair raw = RawPair.open()) {
            ControlConnection rawSrc = raw.src();
            ControlConnection rawDst = raw.dst();
            assertTrue(rawSrc.peerCan(ControlConnection.RAW_FILE_DATA));
            long big = Long.getLong("lp.rawBytes", (64L << 20) + 4096 * 3 + 5);
            Path dir = Files.createDirectory(tmp.resolve("round-3"));
            writeRandom(dir.resolve("pages.img"), big, 4);
            writeRandom(dir.resolve("pagemap.img"), 70_000, 5); // raw too (>= 64 KiB)
            writeRandom(dir.resolve("inventory.img"), 77, 6); // a FileChunk
            Files.createFile(dir.resolve("empty.img"));
            Path into = Files.createDirectory(tmp.resolve("dest-raw"));
            for (int i = 0; i < Integer.getInteger("lp.rawRepeat", 1); i++) {
                Path into2 = Files.createDirectories(into.resolve("r" + i));
                CompletableFuture<DirectoryTransfer.Stats> got = receiveAsync(rawDst, into2);
                DirectoryTransfer.Stats sent = DirectoryTransfer.send(rawSrc, 3, dir);
                DirectoryTransfer.Stats recv = got.get(60, TimeUnit.SECONDS);
                assertEquals(sent.bytes(), recv.bytes());
                for (String name : List.of("empty.img", "inventory.img", "pagemap.img", "pages.img")) {
                    assertEquals(-1L, Files.mismatch(dir.resolve(name), recv.dir().resolve(name)), name + " differs");
                }
                System.out.printf("raw directory transfer: %d MiB in %d ms, %.0f MiB/s (send side), %.0f MiB/s (receive side)%n",
                        recv.bytes() >> 20, recv.elapsed().toMillis(), sent.mibPerSecond(), recv.mibPerSecond());
            }
        }
    }

    /** A connection whose ends both read raw-data frames. */
    private record RawPair(ControlServer server, ControlConnection src, ControlConnection dst) implements AutoCloseable {
        static RawPair open() throws Exception {
            LinkedBlockingQueue<ControlConnection> accepted = new LinkedBlockingQueue<>();
            ControlServer server = ControlServer.listen(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0),
                    rawHello(Role.DESTINATION), accepted::add);
            ControlConnection src = ControlClient.connect(server.localAddress(), rawHello(Role.SOURCE), T);
            return new RawPair(server, src, accepted.poll(10, TimeUnit.SECONDS));
        }

        @Override
        public void close() {
            src.close();
            server.close();
        }
    }

    /** A streamed file that got no body (a round without a page): its head is the whole file. */
    @Test
    void aStreamedFileWithoutABodyIsItsHead() throws Exception {
        try (RawPair raw = RawPair.open()) {
            Path dir = Files.createDirectory(tmp.resolve("8"));
            writeRandom(dir.resolve("pagemap.img"), 100, 12);
            byte[] head = new byte[4096];
            new Random(13).nextBytes(head);
            Path into = Files.createDirectory(tmp.resolve("dest-empty"));
            CompletableFuture<DirectoryTransfer.Stats> got = receiveAsync(raw.dst(), into);
            DirectoryTransfer.Outgoing out = DirectoryTransfer.start(raw.src(), 8, "8", "pages.img");
            out.finishStreamed(ByteBuffer.wrap(head));
            DirectoryTransfer.Stats sent = out.finish(dir);
            DirectoryTransfer.Stats recv = got.get(60, TimeUnit.SECONDS);
            assertEquals(4096 + 100, sent.bytes());
            assertEquals(sent.bytes(), recv.bytes());
            assertArrayEquals(head, Files.readAllBytes(recv.dir().resolve("pages.img")));
        }
    }

    private static dev.lazypages.net.proto.Hello rawHello(Role role) {
        return ControlConnectionTest.hello(role, 1, "t").toBuilder().addCapabilities(ControlConnection.RAW_FILE_DATA).build();
    }

    private void sendRaw(ControlMessage... ms) throws IOException {
        for (ControlMessage m : ms) {
            src.send(m);
        }
    }

    private static ControlMessage chunk(String name, long offset, byte[] data) {
        return ControlMessage.newBuilder().setFileChunk(FileChunk.newBuilder().setRound(2).setName(name)
                .setOffset(offset).setData(ByteString.copyFrom(data))).build();
    }

    private static ControlMessage done(String dir, String file, int crc, long bytes) {
        return ControlMessage.newBuilder().setDirectoryDone(DirectoryDone.newBuilder().setRound(2).setDirName(dir)
                .setFileCount(1).setTotalBytes(bytes).putCrc32C(file, crc)).build();
    }

    private void assertRefused(String want, ControlMessage... ms) throws Exception {
        Path into = Files.createDirectories(tmp.resolve("dest-" + System.nanoTime()));
        CompletableFuture<DirectoryTransfer.Stats> got = receiveAsync(dst, into);
        sendRaw(ms);
        Exception e = assertThrows(Exception.class, () -> got.get(30, TimeUnit.SECONDS));
        assertTrue(e.getCause() instanceof IOException && e.getCause().getMessage().contains(want),
                String.valueOf(e.getCause()));
        try (Stream<Path> s = Files.list(into)) {
            assertEquals(0, s.count(), "nothing left behind");
        }
    }

    @Test
    void fileNamesThatClimbOutAreRefused() throws Exception {
        assertRefused("bad file name \"../evil\"", chunk("../evil", 0, new byte[1]));
        // the receiver stopped at the bad chunk; a fresh receive sees the next message
        assertRefused("bad file name \"a/b\"", chunk("a/b", 0, new byte[1]));
        assertRefused("bad file name \"..\"", chunk("..", 0, new byte[1]));
        assertRefused("bad directory name \"..\"", chunk("ok", 0, new byte[] {1}),
                done("..", "ok", 0, 1));
    }

    @Test
    void crcMismatchIsRefused() throws Exception {
        java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        crc.update(new byte[] {1, 2, 3});
        assertRefused("CRC-32C mismatch in f", chunk("f", 0, new byte[] {1, 2, 4}),
                done("d", "f", (int) crc.getValue(), 3));
    }

    @Test
    void outOfOrderChunkIsRefused() throws Exception {
        assertRefused("chunk of f at offset 5, expected 1", chunk("f", 0, new byte[] {1}), chunk("f", 5, new byte[] {1}));
        // a file may start past its head (a streamed file), but the head must come, whole
        assertRefused("chunk of f at offset 0, expected 6", chunk("f", 5, new byte[] {1}), chunk("f", 0, new byte[] {1, 2}));
        assertRefused("file f: its first 5 bytes never came", chunk("f", 5, new byte[] {1}), done("d", "f", 0, 6));
    }

    /**
     * A streamed file (pages.img of a round sent while it is read): its body from direct buffers
     * as raw data while the sender goes on, its head page last, then the directory's other
     * files; the receiver puts the head in front, and the directory is the same as if it had been
     * written first and sent whole.
     */
    @Test
    void aStreamedFileArrivesWithItsHeadInFrontAndTheOtherFilesAfter() throws Exception {
        try (RawPair raw = RawPair.open()) {
            ControlConnection rawSrc = raw.src();
            ControlConnection rawDst = raw.dst();
            Path dir = Files.createDirectory(tmp.resolve("7"));
            writeRandom(dir.resolve("pagemap.img"), 70_000, 8);
            writeRandom(dir.resolve("inventory.img"), 77, 9);
            byte[] head = new byte[4096];
            new Random(10).nextBytes(head);
            Random r = new Random(11);
            ByteBuffer[] ring = {ByteBuffer.allocateDirect(3 << 20), ByteBuffer.allocateDirect(3 << 20)};
            java.io.ByteArrayOutputStream expected = new java.io.ByteArrayOutputStream();
            expected.write(head);
            Path into = Files.createDirectory(tmp.resolve("dest-streamed"));
            CompletableFuture<DirectoryTransfer.Stats> got = receiveAsync(rawDst, into);
            DirectoryTransfer.Outgoing out = DirectoryTransfer.start(rawSrc, 7, "7", "pages.img");
            CompletableFuture<?>[] inFlight = new CompletableFuture<?>[ring.length];
            long pos = head.length;
            for (int i = 0; i < 9; i++) {
                int slot = i % ring.length;
                if (inFlight[slot] != null) {
                    inFlight[slot].get(30, TimeUnit.SECONDS); // the ring's contract: reuse once sent
                }
                byte[] data = new byte[(1 << 20) + 4096 * i];
                r.nextBytes(data);
                expected.write(data);
                ring[slot].clear().put(data).flip();
                out.write(ring[slot], pos);
                if (i % 2 == 1) {
                    inFlight[slot] = out.flushed(); // two writes gathered into one frame, then sent
                    inFlight[(i - 1) % ring.length] = inFlight[slot];
                }
                pos += data.length;
            }
            out.finishStreamed(ByteBuffer.wrap(head));
            DirectoryTransfer.Stats sent = out.finish(dir);
            DirectoryTransfer.Stats recv = got.get(60, TimeUnit.SECONDS);
            assertEquals(3, sent.files());
            assertEquals(sent.bytes(), recv.bytes());
            assertArrayEquals(expected.toByteArray(), Files.readAllBytes(recv.dir().resolve("pages.img")));
            for (String name : List.of("inventory.img", "pagemap.img")) {
                assertEquals(-1L, Files.mismatch(dir.resolve(name), recv.dir().resolve(name)), name + " differs");
            }
        }
    }

    @Test
    void unexpectedMessageIsRefused() throws Exception {
        assertRefused("unexpected FREEZE during a directory transfer",
                ControlMessage.newBuilder().setFreeze(dev.lazypages.net.proto.Freeze.getDefaultInstance()).build());
        assertFalse(Files.exists(tmp.resolve("d")));
    }

    @Test
    void directoryAlreadyThereIsNotOverwritten() throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("again"));
        Files.write(dir.resolve("x"), new byte[] {9});
        Path into = Files.createDirectory(tmp.resolve("into"));
        Files.createDirectory(into.resolve("again"));
        CompletableFuture<DirectoryTransfer.Stats> got = receiveAsync(dst, into);
        DirectoryTransfer.send(src, 1, dir);
        Exception e = assertThrows(Exception.class, () -> got.get(30, TimeUnit.SECONDS));
        assertTrue(e.getCause() instanceof java.nio.file.FileAlreadyExistsException, String.valueOf(e.getCause()));
        assertArrayEquals(new String[] {"again"}, Files.list(into).map(p -> p.getFileName().toString()).toArray());
    }
}
