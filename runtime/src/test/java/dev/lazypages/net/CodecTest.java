package dev.lazypages.net;

import static dev.lazypages.net.PageFrameDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.net.proto.ControlMessage;
import dev.lazypages.net.proto.FileChunk;
import dev.lazypages.net.proto.Hello;
import com.google.protobuf.ByteString;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.handler.codec.CorruptedFrameException;
import io.netty.handler.codec.DecoderException;
import io.netty.handler.codec.TooLongFrameException;
import io.netty.handler.codec.protobuf.ProtobufDecoder;
import io.netty.handler.codec.protobuf.ProtobufEncoder;
import io.netty.handler.codec.protobuf.ProtobufVarint32LengthFieldPrepender;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/** The frame codecs in EmbeddedChannels: every split of the input, and hostile lengths and magics. */
class CodecTest {
    private static final int PS = 4096;

    /** Feeds {@code bytes} to a fresh channel in two parts split at {@code k}, and also byte by byte; returns what came out. */
    private static List<List<Object>> decodeAllSplits(Supplier<EmbeddedChannel> ch, byte[] bytes) {
        List<List<Object>> results = new ArrayList<>();
        for (int k = 0; k <= bytes.length; k++) {
            EmbeddedChannel c = ch.get();
            c.writeInbound(Unpooled.wrappedBuffer(bytes, 0, k));
            c.writeInbound(Unpooled.wrappedBuffer(bytes, k, bytes.length - k));
            results.add(drain(c));
        }
        EmbeddedChannel c = ch.get();
        for (byte b : bytes) {
            c.writeInbound(Unpooled.wrappedBuffer(new byte[] {b}));
        }
        results.add(drain(c));
        return results;
    }

    private static List<Object> drain(EmbeddedChannel c) {
        List<Object> out = new ArrayList<>();
        Object o;
        while ((o = c.readInbound()) != null) {
            out.add(o);
        }
        assertFalse(c.finish(), "nothing left over");
        return out;
    }

    private static byte[] bytes(ByteBuf b) {
        byte[] a = new byte[b.readableBytes()];
        b.readBytes(a);
        b.release();
        return a;
    }

    // ---------------------------------------------------------------- control frames

    private static EmbeddedChannel controlChannel() {
        return new EmbeddedChannel(new ControlFrameDecoder(ControlFrameDecoder.DEFAULT_MAX_FRAME_BYTES),
                new ProtobufDecoder(ControlMessage.getDefaultInstance()));
    }

    private static byte[] encodeControl(ControlMessage... ms) {
        EmbeddedChannel enc = new EmbeddedChannel(new ProtobufVarint32LengthFieldPrepender(), new ProtobufEncoder());
        for (ControlMessage m : ms) {
            enc.writeOutbound(m);
        }
        ByteBuf all = Unpooled.buffer();
        ByteBuf b;
        while ((b = enc.readOutbound()) != null) {
            all.writeBytes(b);
            b.release();
        }
        return bytes(all);
    }

    @Test
    void controlFramesSplitAtEveryByteDecodeTheSame() {
        ControlMessage hello = ControlMessage.newBuilder().setHello(Hello.newBuilder().setProtocolVersion(1)
                .setToken("secret").addCapabilities("post-copy")).build();
        ControlMessage chunk = ControlMessage.newBuilder().setFileChunk(FileChunk.newBuilder().setName("pages.img")
                .setOffset(1 << 20).setData(ByteString.copyFrom(new byte[300]))).build();
        byte[] wire = encodeControl(hello, chunk);
        for (List<Object> got : decodeAllSplits(CodecTest::controlChannel, wire)) {
            assertEquals(List.of(hello, chunk), got);
        }
    }

    @Test
    void rawDataFramesBetweenControlFramesComeOutAsTheirBytesInOrder() {
        ControlMessage hello = ControlMessage.newBuilder().setHello(Hello.newBuilder().setProtocolVersion(1)).build();
        ControlMessage chunk = ControlMessage.newBuilder().setFileChunk(FileChunk.newBuilder().setName("pages.img")
                .setRawLength(10)).build();
        byte[] raw = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; // starts with 0: must not be taken for a marker
        byte[] a = encodeControl(hello, chunk);
        byte[] b = encodeControl(hello);
        byte[] wire = new byte[a.length + 5 + raw.length + b.length];
        System.arraycopy(a, 0, wire, 0, a.length);
        wire[a.length + 4] = (byte) raw.length; // 0 marker, big-endian length 10
        System.arraycopy(raw, 0, wire, a.length + 5, raw.length);
        System.arraycopy(b, 0, wire, a.length + 5 + raw.length, b.length);
        for (List<Object> got : decodeAllSplits(CodecTest::controlChannel, wire)) {
            List<Object> msgs = new ArrayList<>();
            java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
            for (Object o : got) {
                if (o instanceof RawData r) {
                    assertEquals(List.of(hello, chunk), msgs, "raw data after the chunk, before the next frame");
                    bytes.writeBytes(bytes(r.buf()));
                } else {
                    msgs.add(o);
                }
            }
            assertEquals(List.of(hello, chunk, hello), msgs);
            assertArrayEquals(raw, bytes.toByteArray());
        }
    }

    @Test
    void controlFrameLongerThanTheCapIsRefusedBeforeItArrives() {
        EmbeddedChannel c = new EmbeddedChannel(new ControlFrameDecoder(1024));
        ByteBuf len = Unpooled.buffer().writeByte(0x81).writeByte(0x08); // varint32 1025
        DecoderException e = assertThrows(DecoderException.class, () -> c.writeInbound(len));
        assertTrue(e instanceof TooLongFrameException || e.getCause() instanceof TooLongFrameException, e.toString());
        assertNull(c.readInbound());
        c.writeInbound(Unpooled.wrappedBuffer(new byte[2000])); // later bytes are discarded, not decoded
        assertNull(c.readInbound());
    }

    @Test
    void controlFrameLengthOfFiveContinuationBytesIsCorrupt() {
        EmbeddedChannel c = new EmbeddedChannel(new ControlFrameDecoder(1024));
        ByteBuf len = Unpooled.wrappedBuffer(new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, 1});
        DecoderException e = assertThrows(DecoderException.class, () -> c.writeInbound(len));
        assertTrue(e instanceof CorruptedFrameException || e.getCause() instanceof CorruptedFrameException, e.toString());
    }

    // ---------------------------------------------------------------- page frames

    private static byte[] frame(int type, int flags, int nrPages, long vaddr, long id, byte[] body) {
        ByteBuf b = Unpooled.buffer();
        writeHeader(b, type, flags, nrPages, vaddr, id);
        if (body != null) {
            b.writeBytes(body);
        }
        return bytes(b);
    }

    private static byte[] concat(byte[]... parts) {
        ByteBuf b = Unpooled.buffer();
        for (byte[] p : parts) {
            b.writeBytes(p);
        }
        return bytes(b);
    }

    @Test
    void pageRequestsSplitAtEveryByteDecodeTheSame() {
        byte[] token = "tok-en".getBytes(StandardCharsets.UTF_8);
        byte[] wire = concat(frame(TYPE_AUTH, KIND_FAULT, token.length, PS, 0, token),
                frame(TYPE_REQUEST, 0, 3, 0x7f0000001000L, 42, null), frame(TYPE_DONE, 0, 0, 0, 0, null));
        for (List<Object> got : decodeAllSplits(() -> new EmbeddedChannel(new PageRequestDecoder()), wire)) {
            assertEquals(3, got.size());
            PageRequest a = (PageRequest) got.get(0);
            assertEquals(TYPE_AUTH, a.type());
            assertEquals(KIND_FAULT, a.flags());
            assertEquals("tok-en", a.token());
            assertEquals(PS, a.vaddr());
            PageRequest r = (PageRequest) got.get(1);
            assertEquals(TYPE_REQUEST, r.type());
            assertEquals(3, r.nrPages());
            assertEquals(0x7f0000001000L, r.vaddr());
            assertEquals(42, r.requestId());
            assertEquals(TYPE_DONE, ((PageRequest) got.get(2)).type());
        }
    }

    @Test
    void pageRequestWithGarbageMagicIsRefused() {
        EmbeddedChannel c = new EmbeddedChannel(new PageRequestDecoder());
        byte[] f = frame(TYPE_REQUEST, 0, 1, 0x1000, 1, null);
        f[0] = 'G';
        f[1] = 'E';
        DecoderException e = assertThrows(DecoderException.class, () -> c.writeInbound(Unpooled.wrappedBuffer(f)));
        assertTrue(e.getMessage().contains("bad page frame magic 0x4745"), e.getMessage());
        c.writeInbound(Unpooled.wrappedBuffer(frame(TYPE_REQUEST, 0, 1, 0x1000, 2, null)));
        assertNull(c.readInbound(), "nothing decoded after a corrupt frame");
    }

    @Test
    void pageRequestWithOversizedTokenIsRefusedBeforeItArrives() {
        EmbeddedChannel c = new EmbeddedChannel(new PageRequestDecoder());
        DecoderException e = assertThrows(DecoderException.class,
                () -> c.writeInbound(Unpooled.wrappedBuffer(frame(TYPE_AUTH, KIND_BULK, Integer.MAX_VALUE, PS, 0, null))));
        assertTrue(e.getMessage().contains("exceeds"), e.getMessage());
    }

    @Test
    void pageRequestOfServerTypeIsRefused() {
        EmbeddedChannel c = new EmbeddedChannel(new PageRequestDecoder());
        DecoderException e = assertThrows(DecoderException.class,
                () -> c.writeInbound(Unpooled.wrappedBuffer(frame(TYPE_PAGES, 0, 1, 0, 0, new byte[PS]))));
        assertTrue(e.getMessage().contains("unexpected page frame PAGES"), e.getMessage());
    }

    private static EmbeddedChannel responseChannel() {
        return new EmbeddedChannel(new PageResponseDecoder(PS, 4));
    }

    @Test
    void pageResponsesSplitAtEveryByteDecodeTheSame() {
        byte[] pages = new byte[2 * PS];
        for (int i = 0; i < pages.length; i++) {
            pages[i] = (byte) (i * 7);
        }
        ByteBuf err = Unpooled.buffer();
        writeError(err, 1, 0x5000, 9, "cannot read 1 pages at 0x5000: gone");
        byte[] wire = concat(frame(TYPE_ACCEPT, KIND_BULK, 0, PS, 0, null),
                frame(TYPE_PAGES, 0, 2, 0x3000, 8, pages), bytes(err));
        List<List<Object>> all = decodeAllSplits(CodecTest::responseChannel, wire);
        // fewer splits for the multi-page frame are enough, but all of them are cheap
        for (List<Object> got : all) {
            assertEquals(3, got.size());
            assertEquals(TYPE_ACCEPT, ((PageResponse) got.get(0)).type());
            PageResponse p = (PageResponse) got.get(1);
            assertEquals(8, p.requestId());
            assertEquals(0x3000, p.vaddr());
            byte[] body = new byte[2 * PS];
            p.data().getBytes(p.data().readerIndex(), body);
            p.data().release();
            assertEquals(ByteString.copyFrom(pages), ByteString.copyFrom(body));
            PageResponse e = (PageResponse) got.get(2);
            assertEquals(TYPE_ERROR, e.type());
            assertEquals(9, e.requestId());
            assertEquals("cannot read 1 pages at 0x5000: gone", e.error());
        }
    }

    @Test
    void pageResponseOfTooManyPagesIsRefusedBeforeItArrives() {
        EmbeddedChannel c = responseChannel();
        DecoderException e = assertThrows(DecoderException.class,
                () -> c.writeInbound(Unpooled.wrappedBuffer(frame(TYPE_PAGES, 0, 1 << 30, 0, 1, null))));
        assertTrue(e.getMessage().contains("PAGES frame of 1073741824 pages (at most 4)"), e.getMessage());
        DecoderException neg = assertThrows(DecoderException.class,
                () -> responseChannel().writeInbound(Unpooled.wrappedBuffer(frame(TYPE_PAGES, 0, -1, 0, 1, null))));
        assertTrue(neg.getMessage().contains("4294967295 pages"), neg.getMessage());
    }

    @Test
    void pageResponseWithHugeErrorLengthIsRefused() {
        EmbeddedChannel c = responseChannel();
        byte[] f = concat(frame(TYPE_ERROR, 0, 0, 0, 1, null), new byte[] {0x7f, 0, 0, 0});
        DecoderException e = assertThrows(DecoderException.class, () -> c.writeInbound(Unpooled.wrappedBuffer(f)));
        assertTrue(e.getMessage().contains("ERROR message of"), e.getMessage());
    }

    @Test
    void pageResponseWithGarbageMagicIsRefused() {
        EmbeddedChannel c = responseChannel();
        byte[] f = frame(TYPE_ACCEPT, 0, 0, PS, 0, null);
        f[1] ^= 1;
        DecoderException e = assertThrows(DecoderException.class, () -> c.writeInbound(Unpooled.wrappedBuffer(f)));
        assertTrue(e.getMessage().contains("bad page frame magic"), e.getMessage());
    }
}
