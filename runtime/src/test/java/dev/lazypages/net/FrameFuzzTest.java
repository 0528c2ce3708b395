package dev.lazypages.net;

import static dev.lazypages.net.PageFrameDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.lazypages.fuzz.Fuzz;
import dev.lazypages.fuzz.Mutator;
import dev.lazypages.fuzz.Mutator.Field;
import dev.lazypages.net.proto.ControlMessage;
import dev.lazypages.net.proto.DirectoryDone;
import dev.lazypages.net.proto.FileChunk;
import dev.lazypages.net.proto.Hello;
import dev.lazypages.net.proto.Ping;
import dev.lazypages.net.proto.Role;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.FileRegion;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.handler.codec.DecoderException;
import io.netty.handler.codec.CorruptedFrameException;
import io.netty.handler.codec.TooLongFrameException;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Fuzzes the decoders of both planes with inputs made by the real encoders, then mutated
 * ({@link Mutator}), plus random bytes, fed in random pieces. Properties: only the decoders' own
 * exceptions, no hang, no allocation sized by an unchecked length field ({@link Fuzz}), and on
 * the full pipelines: an unauthenticated peer never gets a page or a message through.
 */
class FrameFuzzTest {
    private static final String TOKEN = "fuzz-token";
    /** The header's nr_pages (also the AUTH token length and, after it, ERROR's length) and vaddr. */
    private static final List<Field> PAGE_FIELDS = List.of(Field.be(NR_PAGES_OFFSET, 4), Field.be(VADDR_OFFSET, 8),
            Field.be(HEADER_LENGTH, 4), Field.be(HEADER_LENGTH + NR_PAGES_OFFSET, 4), Field.be(TYPE_OFFSET, 1),
            Field.be(2 * HEADER_LENGTH + NR_PAGES_OFFSET, 4));

    @TempDir
    Path tmp;

    /** Writes {@code input} into {@code ch} in 1 to 4 pieces (partial frames on the way). */
    private static void feed(SplittableRandom r, EmbeddedChannel ch, byte[] input) {
        int at = 0;
        int pieces = 1 + r.nextInt(4);
        for (int i = 0; i < pieces && at < input.length && ch.isOpen(); i++) {
            int n = i == pieces - 1 ? input.length - at : r.nextInt(input.length - at + 1);
            ch.writeInbound(Unpooled.wrappedBuffer(input, at, n));
            at += n;
        }
        // a closed connection reads nothing more
    }

    /** A control connection as accepted by {@link ControlServer}, in an EmbeddedChannel, our Hello sent. */
    private static EmbeddedChannel controlChannel(Hello mine, ControlConnection[] out) {
        EmbeddedChannel ch = new EmbeddedChannel(false, false);
        out[0] = ControlConnection.install(ch, mine, ControlFrameDecoder.DEFAULT_MAX_FRAME_BYTES);
        try {
            ch.register(); // active now: our Hello goes out
        } catch (Exception e) {
            throw new AssertionError(e);
        }
        HandlerTest.sent(ch);
        return ch;
    }

    private static byte[] bytes(ByteBuf... bufs) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (ByteBuf b : bufs) {
            byte[] a = new byte[b.readableBytes()];
            b.readBytes(a);
            b.release();
            out.writeBytes(a);
        }
        return out.toByteArray();
    }

    /** A valid client stream: AUTH, some REQUESTs, maybe DONE. */
    private static byte[] validClientStream(SplittableRandom r) {
        List<ByteBuf> frames = new ArrayList<>();
        frames.add(HandlerTest.auth(TOKEN, KIND_FAULT, HandlerTest.PS));
        for (int i = r.nextInt(4); i > 0; i--) {
            frames.add(HandlerTest.request(TYPE_REQUEST, 1 + r.nextInt(4), 0x10000L * (1 + r.nextInt(16)), i));
        }
        if (r.nextBoolean()) {
            frames.add(HandlerTest.request(TYPE_DONE, 0, 0, 0));
        }
        return bytes(frames.toArray(ByteBuf[]::new));
    }

    private static byte[] clientInput(SplittableRandom r) {
        return switch (r.nextInt(8)) {
            case 0 -> Mutator.randomBytes(r, 200);
            case 1 -> Mutator.concat(bytes(HandlerTest.auth(TOKEN, KIND_FAULT, HandlerTest.PS)), Mutator.randomBytes(r, 100));
            default -> Mutator.mutate(r, validClientStream(r), PAGE_FIELDS);
        };
    }

    private static boolean ownDecoderError(Throwable t) {
        return t instanceof CorruptedFrameException || t instanceof TooLongFrameException;
    }

    @Test
    void pageRequestDecoderThrowsOnlyItsOwnErrorsAndNeverPassesAnOverlongToken() {
        int ran = Fuzz.suite("page-request-decoder").run(Fuzz.cases(3000), FrameFuzzTest::clientInput, input -> {
            EmbeddedChannel ch = new EmbeddedChannel(new PageRequestDecoder());
            try {
                feed(new SplittableRandom(input.length), ch, input);
            } catch (DecoderException e) {
                if (!ownDecoderError(e)) {
                    throw e;
                }
                int before = ch.inboundMessages().size();
                if (ch.isOpen()) {
                    ch.writeInbound(Unpooled.wrappedBuffer(validClientStream(new SplittableRandom(1))));
                }
                assertEquals(before, ch.inboundMessages().size(), "after a failure nothing more is decoded");
            }
            for (Object o : ch.inboundMessages()) {
                PageRequest q = (PageRequest) o;
                assertTrue(q.type() == TYPE_REQUEST || q.type() == TYPE_DONE || q.type() == TYPE_AUTH, q.toString());
                if (q.type() == TYPE_AUTH) {
                    assertTrue(q.token().getBytes(StandardCharsets.UTF_8).length <= MAX_TOKEN_BYTES * 4, q.toString());
                }
            }
            ch.finishAndReleaseAll();
        });
        assertEquals(Fuzz.cases(3000), ran);
    }

    /** Serves BULK requests in place: the bulk thread's hop cannot run inside an EmbeddedChannel. */
    private static final class BulkAsFault extends ChannelInboundHandlerAdapter {
        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            PageRequest q = (PageRequest) msg;
            if (q.type() == TYPE_AUTH && q.flags() == KIND_BULK) {
                q = new PageRequest(q.type(), KIND_FAULT, q.nrPages(), q.vaddr(), q.requestId(), q.decodedNanos(), q.token());
            }
            ctx.fireChannelRead(q);
        }
    }

    @Test
    void pageServerNeverServesAnUnauthenticatedPeerAndAnswersOnlyWellFormedFrames() {
        int cases = Fuzz.cases(3000);
        int ran = Fuzz.suite("page-server").run(cases, FrameFuzzTest::clientInput, input -> {
            GeneratedPages pages = new GeneratedPages(HandlerTest.PS, 5);
            PageServer s = PageServer.unbound(pages, TOKEN);
            try {
                EmbeddedChannel ch = new EmbeddedChannel(new PageRequestDecoder(), new BulkAsFault(), s.newHandler());
                try {
                    feed(new SplittableRandom(input.length), ch, input);
                } catch (DecoderException e) {
                    if (!ownDecoderError(e)) {
                        throw e;
                    }
                }
                ch.runPendingTasks();
                EmbeddedChannel client = new EmbeddedChannel(new PageResponseDecoder(HandlerTest.PS, MAX_PAGES));
                boolean accepted = false;
                ByteBuf out;
                while ((out = ch.readOutbound()) != null) {
                    client.writeInbound(out); // throws if the server wrote a malformed frame
                    PageResponse p;
                    while ((p = client.readInbound()) != null) {
                        if (p.type() == TYPE_ACCEPT) {
                            accepted = true;
                        }
                        if (p.type() == TYPE_PAGES) {
                            assertTrue(accepted, "pages sent before ACCEPT");
                            assertTrue(p.nrPages() >= 1 && p.nrPages() <= MAX_PAGES);
                            p.data().release();
                        }
                    }
                }
                if (!accepted) {
                    assertEquals(0, pages.reads.get(), "the provider was read for an unauthenticated peer");
                }
                client.finishAndReleaseAll();
                ch.finishAndReleaseAll();
            } finally {
                s.close();
            }
        });
        assertEquals(cases, ran);
    }

    /** A valid server stream: ACCEPT, PAGES, ERROR frames as the server writes them. */
    private static byte[] validServerStream(SplittableRandom r) {
        List<ByteBuf> frames = new ArrayList<>();
        frames.add(writeHeader(Unpooled.buffer(), TYPE_ACCEPT, KIND_FAULT, 0, HandlerTest.PS, 0));
        for (int i = 1 + r.nextInt(3); i > 0; i--) {
            if (r.nextInt(3) == 0) {
                frames.add(writeError(Unpooled.buffer(), 1, 0x1000, i, "cannot read pages: EFAULT"));
            } else {
                int n = 1 + r.nextInt(2);
                ByteBuf b = writeHeader(Unpooled.buffer(), TYPE_PAGES, 0, n, 0x10000L * i, i);
                b.writeZero(n * HandlerTest.PS);
                frames.add(b);
            }
        }
        return bytes(frames.toArray(ByteBuf[]::new));
    }

    @Test
    void pageResponseDecoderThrowsOnlyItsOwnErrorsAndHandsOnWholeFrames() {
        int cases = Fuzz.cases(3000);
        int ran = Fuzz.suite("page-response-decoder").run(cases,
                r -> r.nextInt(8) == 0 ? Mutator.randomBytes(r, 300) : Mutator.mutate(r, validServerStream(r), PAGE_FIELDS),
                input -> {
                    EmbeddedChannel ch = new EmbeddedChannel(new PageResponseDecoder(HandlerTest.PS, MAX_PAGES));
                    try {
                        feed(new SplittableRandom(input.length), ch, input);
                    } catch (DecoderException e) {
                        if (!ownDecoderError(e)) {
                            throw e;
                        }
                    }
                    PageResponse p;
                    while ((p = ch.readInbound()) != null) {
                        if (p.type() == TYPE_PAGES) {
                            assertEquals((long) p.nrPages() * HandlerTest.PS, p.data().readableBytes());
                            p.data().release();
                        } else if (p.type() == TYPE_ERROR) {
                            assertTrue(p.error().length() <= MAX_ERROR_BYTES);
                        }
                    }
                    ch.finishAndReleaseAll();
                });
        assertEquals(cases, ran);
    }

    // ---------------------------------------------------------------- control plane

    private static final Hello MINE = ControlConnectionTest.hello(Role.DESTINATION, ControlConnection.PROTOCOL_VERSION,
            TOKEN).toBuilder().addCapabilities(ControlConnection.RAW_FILE_DATA).build();
    private static final Hello PEER = ControlConnectionTest.hello(Role.SOURCE, ControlConnection.PROTOCOL_VERSION, TOKEN);
    private static final byte[] HANDSHAKE = bytes(HandlerTest.wire(ControlMessage.newBuilder().setHello(PEER).build()),
            HandlerTest.wire(ControlMessage.newBuilder().setPing(Ping.newBuilder().setSequence(0)).build()));

    /** The bytes {@link DirectoryTransfer#send} writes for {@code dir} to a peer that reads raw data or not. */
    private static byte[] sentDirectory(Path dir, boolean raw) throws IOException {
        ControlConnection[] c = new ControlConnection[1];
        EmbeddedChannel ch = controlChannel(PEER, c);
        Hello peer = raw ? MINE : MINE.toBuilder().clearCapabilities().build();
        ch.writeInbound(HandlerTest.wire(ControlMessage.newBuilder().setHello(peer).build()));
        ch.writeInbound(HandlerTest.wire(ControlMessage.newBuilder().setPing(Ping.newBuilder().setSequence(0)).build()));
        HandlerTest.sent(ch); // our acknowledgement
        DirectoryTransfer.send(c[0], 1, dir);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        Object o;
        while ((o = ch.readOutbound()) != null) {
            if (o instanceof FileRegion f) {
                long n = 0;
                var sink = Channels.newChannel(out);
                while (n < f.count()) {
                    n += f.transferTo(sink, n);
                }
                f.release();
            } else {
                out.writeBytes(bytes((ByteBuf) o));
            }
        }
        ch.finishAndReleaseAll();
        return out.toByteArray();
    }

    private Path sampleDirectory() throws IOException {
        Path d = tmp.resolve("round-1");
        Files.createDirectories(d);
        Files.write(d.resolve("inventory.img"), "inventory".getBytes(StandardCharsets.UTF_8));
        byte[] big = new byte[(int) DirectoryTransfer.RAW_MIN_BYTES + 100];
        new SplittableRandom(7).nextBytes(big);
        Files.write(d.resolve("pages.img"), big);
        Files.write(d.resolve("empty.img"), new byte[0]);
        return d;
    }

    /** A few valid control messages after the handshake, in wire format, with raw frames mixed in. */
    private static byte[] validMessages(SplittableRandom r) {
        List<ByteBuf> frames = new ArrayList<>();
        for (int i = 1 + r.nextInt(3); i > 0; i--) {
            ControlMessage m = switch (r.nextInt(3)) {
                case 0 -> ControlMessage.newBuilder().setPing(Ping.newBuilder().setSequence(i)).build();
                case 1 -> ControlMessage.newBuilder().setFileChunk(FileChunk.newBuilder().setName("x").setRound(1)
                        .setData(ByteString.copyFromUtf8("abc"))).build();
                default -> ControlMessage.newBuilder().setDirectoryDone(DirectoryDone.newBuilder().setDirName("d")
                        .setFileCount(1)).build();
            };
            frames.add(HandlerTest.wire(m));
            if (r.nextInt(4) == 0) {
                frames.add(Unpooled.buffer().writeByte(0).writeInt(3).writeBytes(new byte[] {1, 2, 3}));
            }
        }
        return bytes(frames.toArray(ByteBuf[]::new));
    }

    private static final List<Field> VARINT_SPOTS = List.of(Field.be(0, 4), Field.be(1, 4), Field.be(HANDSHAKE.length, 4),
            Field.be(HANDSHAKE.length + 1, 4));

    @Test
    void controlConnectionRefusesOrClosesOnAnyBadInputAndOnlyAcceptsTheRightToken() {
        int cases = Fuzz.cases(3000);
        int ran = Fuzz.suite("control-connection").run(cases, r -> switch (r.nextInt(6)) {
            case 0 -> Mutator.randomBytes(r, 300);
            case 1 -> Mutator.mutate(r, HANDSHAKE, VARINT_SPOTS);
            default -> Mutator.mutate(r, Mutator.concat(HANDSHAKE, validMessages(r)), VARINT_SPOTS);
        }, input -> {
            ControlConnection[] c = new ControlConnection[1];
            EmbeddedChannel ch = controlChannel(MINE, c);
            feed(new SplittableRandom(input.length), ch, input); // the connection handles its errors: nothing escapes
            ch.runPendingTasks();
            var h = c[0].handshake();
            if (h.isDone() && !h.isCompletedExceptionally()) {
                assertEquals(TOKEN, c[0].peerHello().getToken(), "handshake passed with another token");
                assertEquals(ControlConnection.PROTOCOL_VERSION, c[0].peerHello().getProtocolVersion());
            }
            ch.close();
            if (h.isDone() && !h.isCompletedExceptionally()) {
                while (true) { // every message queued is receivable, then the close
                    try {
                        Object o = c[0].receiveFrame(Duration.ofSeconds(1));
                        if (o instanceof RawData raw) {
                            raw.buf().release();
                        }
                    } catch (IOException closed) {
                        break;
                    }
                }
            }
            ch.finishAndReleaseAll();
        });
        assertEquals(cases, ran);
    }

    @Test
    void directoryReceiverThrowsOnlyIOExceptionsAndLeavesNothingHalfReceived() throws Exception {
        Path dir = sampleDirectory();
        byte[] raw = sentDirectory(dir, true);
        byte[] chunked = sentDirectory(dir, false);
        List<byte[]> originals = new ArrayList<>();
        try (Stream<Path> files = Files.list(dir)) {
            for (Path f : files.toList()) {
                originals.add(Files.readAllBytes(f));
            }
        }
        Path into = tmp.resolve("into");
        Files.createDirectories(into);
        int cases = Fuzz.cases(1500);
        int[] received = new int[1];
        int ran = Fuzz.suite("directory-receive").run(cases, r -> r.nextInt(10) == 0 ? Mutator.randomBytes(r, 300)
                : Mutator.mutate(r, r.nextBoolean() ? raw : chunked, List.of()), input -> {
            ControlConnection[] c = new ControlConnection[1];
            EmbeddedChannel ch = controlChannel(MINE, c);
            ch.writeInbound(Unpooled.wrappedBuffer(HANDSHAKE));
            feed(new SplittableRandom(input.length), ch, input);
            ch.runPendingTasks();
            ch.close();
            try {
                DirectoryTransfer.Stats s = DirectoryTransfer.receive(c[0], into, Duration.ofSeconds(1));
                received[0]++;
                try (Stream<Path> files = Files.list(s.dir())) {
                    for (Path f : files.toList()) {
                        byte[] got = Files.readAllBytes(f);
                        assertTrue(originals.stream().anyMatch(o -> java.util.Arrays.equals(o, got)),
                                "received " + f.getFileName() + " with contents that were never sent");
                        Files.delete(f);
                    }
                }
                Files.delete(s.dir());
            } catch (IOException refused) {
                assertFalse(refused.getMessage() == null || refused.getMessage().isBlank(), "an error without a message");
            }
            try (Stream<Path> left = Files.list(into)) {
                assertEquals(List.of(), left.toList(), "left behind by a failed or finished receive");
            }
            ch.finishAndReleaseAll();
        });
        assertEquals(cases, ran);
        assertTrue(received[0] > 0, "some mutations (e.g. of unused bytes) still arrive whole");
    }
}
