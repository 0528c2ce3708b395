package dev.lazypages.net;

import static dev.lazypages.net.PageFrameDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.net.proto.ControlMessage;
import dev.lazypages.net.proto.Freeze;
import dev.lazypages.net.proto.Hello;
import dev.lazypages.net.proto.Ping;
import dev.lazypages.net.proto.Role;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.CompositeByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.handler.codec.protobuf.ProtobufEncoder;
import io.netty.handler.codec.protobuf.ProtobufVarint32FrameDecoder;
import io.netty.handler.codec.protobuf.ProtobufDecoder;
import io.netty.handler.codec.protobuf.ProtobufVarint32LengthFieldPrepender;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The terminal handlers (control handshake, page serving) in EmbeddedChannels. */
class HandlerTest {
    static final int PS = PageServerClientTest.PS;

    // ---------------------------------------------------------------- control connection

    /** Bytes of {@code m} as a peer would send them. */
    static ByteBuf wire(ControlMessage m) {
        EmbeddedChannel enc = new EmbeddedChannel(new ProtobufVarint32LengthFieldPrepender(), new ProtobufEncoder());
        enc.writeOutbound(m);
        ByteBuf all = Unpooled.buffer();
        ByteBuf b;
        while ((b = enc.readOutbound()) != null) {
            all.writeBytes(b);
            b.release();
        }
        return all;
    }

    /** Decodes what the connection wrote. */
    static ControlMessage sent(EmbeddedChannel ch) {
        EmbeddedChannel dec = new EmbeddedChannel(new ProtobufVarint32FrameDecoder(),
                new ProtobufDecoder(ControlMessage.getDefaultInstance()));
        ByteBuf b;
        while ((b = ch.readOutbound()) != null) {
            dec.writeInbound(b);
        }
        return dec.readInbound();
    }

    private static ControlMessage msg(Hello h) {
        return ControlMessage.newBuilder().setHello(h).build();
    }

    private static final ControlMessage ACK = ControlMessage.newBuilder().setPing(Ping.newBuilder().setSequence(0)).build();

    static EmbeddedChannel controlChannel(Hello mine, ControlConnection[] out) {
        EmbeddedChannel ch = new EmbeddedChannel(false, false);
        out[0] = ControlConnection.install(ch, mine, 1024);
        try {
            ch.register(); // active now: the Hello goes out
        } catch (Exception e) {
            throw new AssertionError(e);
        }
        return ch;
    }

    @Test
    void controlHandshakeSendsHelloFirstAndCompletesOnHelloAndAck() throws Exception {
        ControlConnection[] c = new ControlConnection[1];
        EmbeddedChannel ch = controlChannel(ControlConnectionTest.hello(Role.SOURCE, 1, "t"), c);
        assertEquals(Role.SOURCE, sent(ch).getHello().getRole(), "our Hello goes out first");
        ch.writeInbound(wire(msg(ControlConnectionTest.hello(Role.DESTINATION, 1, "t"))));
        assertTrue(sent(ch).hasPing(), "the peer's Hello is acknowledged");
        assertFalse(c[0].handshake().isDone(), "not before the peer's acknowledgement");
        ch.writeInbound(wire(ACK));
        assertTrue(c[0].handshake().isDone() && !c[0].handshake().isCompletedExceptionally());
        ch.writeInbound(wire(ControlMessage.newBuilder().setFreeze(Freeze.getDefaultInstance()).build()));
        assertTrue(c[0].receive(Duration.ofSeconds(1)).hasFreeze());
    }

    @Test
    void controlMessageBeforeTheHandshakeIsRefused() {
        ControlConnection[] c = new ControlConnection[1];
        EmbeddedChannel ch = controlChannel(ControlConnectionTest.hello(Role.SOURCE, 1, "t"), c);
        sent(ch);
        ch.writeInbound(wire(ControlMessage.newBuilder().setFreeze(Freeze.getDefaultInstance()).build()));
        ch.runPendingTasks();
        assertEquals("expected Hello during the handshake, got FREEZE", sent(ch).getRefuse().getReason());
        assertFalse(ch.isOpen());
        ExecutionException e = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class,
                () -> c[0].handshake().get(1, TimeUnit.SECONDS));
        assertTrue(e.getCause() instanceof HandshakeException h && !h.byPeer(), e.toString());
    }

    @Test
    void controlFrameAboveTheCapClosesTheConnection() {
        ControlConnection[] c = new ControlConnection[1];
        EmbeddedChannel ch = controlChannel(ControlConnectionTest.hello(Role.SOURCE, 1, "t"), c);
        sent(ch);
        ch.writeInbound(Unpooled.wrappedBuffer(new byte[] {(byte) 0x80, (byte) 0x80, 0x40})); // 1 MiB > cap 1024
        ch.runPendingTasks();
        assertFalse(ch.isOpen());
        assertTrue(c[0].handshake().isCompletedExceptionally());
        assertTrue(c[0].closed().isDone());
    }

    // ---------------------------------------------------------------- page server handler

    static ByteBuf auth(String token, int kind, int pageSize) {
        byte[] t = token.getBytes(StandardCharsets.UTF_8);
        ByteBuf b = Unpooled.buffer();
        writeHeader(b, TYPE_AUTH, kind, t.length, pageSize, 0).writeBytes(t);
        return b;
    }

    static ByteBuf request(int type, int n, long vaddr, long id) {
        return writeHeader(Unpooled.buffer(), type, 0, n, vaddr, id);
    }

    @Test
    void pageServerAcceptsAuthThenAnswersRequestsWithPagesFromTheProvider() throws Exception {
        GeneratedPages pages = new GeneratedPages(PS, 3);
        PageServer s = PageServer.unbound(pages, "tok");
        try {
            EmbeddedChannel ch = new EmbeddedChannel(new PageRequestDecoder(), s.newHandler());
            ch.writeInbound(auth("tok", KIND_FAULT, PS));
            EmbeddedChannel client = new EmbeddedChannel(new PageResponseDecoder(PS, MAX_PAGES));
            client.writeInbound((ByteBuf) ch.readOutbound());
            PageResponse accept = client.readInbound();
            assertEquals(TYPE_ACCEPT, accept.type());
            assertEquals(PS, accept.vaddr());

            ch.writeInbound(request(TYPE_REQUEST, 2, 0x10000, 77));
            ByteBuf out = ch.readOutbound();
            assertTrue(out.isDirect(), "pages are written into a direct buffer");
            client.writeInbound(out);
            PageResponse p = client.readInbound();
            assertEquals(TYPE_PAGES, p.type());
            assertEquals(77, p.requestId());
            try (PageBuffer buf = PageBuffer.allocate(2)) {
                p.data().getBytes(p.data().readerIndex(), buf.asByteBuffer());
                p.data().release();
                assertNull(pages.check(buf, 0, 0x10000, 2));
            }
            assertEquals(2, s.servedPages());
            assertEquals(1, s.serveLatency().getTotalCount());

            ch.writeInbound(request(TYPE_REQUEST, MAX_PAGES + 1, 0x10000, 78));
            client.writeInbound((ByteBuf) ch.readOutbound());
            PageResponse tooMany = client.readInbound();
            assertEquals(TYPE_ERROR, tooMany.type());
            assertTrue(tooMany.error().contains("bad request for 1025 pages at 0x10000"), tooMany.error());

            assertFalse(s.done().isDone());
            ch.writeInbound(request(TYPE_DONE, 0, 0, 0));
            assertTrue(s.done().isDone());
            assertTrue(ch.isOpen());
        } finally {
            s.close();
        }
    }

    @Test
    void pageServerSendsThePagesInAPooledBufferOfExactlyTheirSizeBehindTheHeader() {
        GeneratedPages pages = new GeneratedPages(PS, 5);
        PageServer s = PageServer.unbound(pages, "tok");
        try {
            EmbeddedChannel ch = new EmbeddedChannel(new PageRequestDecoder(), s.newHandler());
            ch.writeInbound(auth("tok", KIND_FAULT, PS)); // served right here (BULK: the same, on the bulk thread)
            ((ByteBuf) ch.readOutbound()).release(); // ACCEPT
            ch.writeInbound(request(TYPE_REQUEST, 256, 0x40000, 9));
            ByteBuf out = ch.readOutbound();
            // One buffer of header + 1 MiB is a size no pool keeps: it was allocated and faulted in afresh for
            // every bulk request. The body alone (exactly 1 MiB) is pooled; both go out in one gathering write.
            CompositeByteBuf c = assertInstanceOf(CompositeByteBuf.class, out);
            assertEquals(2, c.numComponents());
            assertEquals(HEADER_LENGTH, c.component(0).readableBytes());
            assertEquals(256 * PS, c.component(1).capacity(), "the body is exactly the pages");
            assertTrue(c.component(1).isDirect());
            EmbeddedChannel client = new EmbeddedChannel(new PageResponseDecoder(PS, MAX_PAGES));
            client.writeInbound(out);
            PageResponse p = client.readInbound();
            assertEquals(TYPE_PAGES, p.type());
            assertEquals(9, p.requestId());
            try (PageBuffer buf = PageBuffer.allocate(256)) {
                p.data().getBytes(p.data().readerIndex(), buf.asByteBuffer());
                p.data().release();
                assertNull(pages.check(buf, 0, 0x40000, 256));
            }
        } finally {
            s.close();
        }
    }

    @Test
    void pageServerRefusesAWrongTokenAndAWrongPageSize() {
        GeneratedPages pages = new GeneratedPages(PS, 3);
        PageServer s = PageServer.unbound(pages, "tok");
        try {
            for (ByteBuf bad : new ByteBuf[] {auth("nope", KIND_FAULT, PS), auth("tok", KIND_FAULT, PS * 2),
                    auth("tok", 9, PS), request(TYPE_REQUEST, 1, 0, 1)}) {
                EmbeddedChannel ch = new EmbeddedChannel(new PageRequestDecoder(), s.newHandler());
                ch.writeInbound(bad);
                ch.runPendingTasks();
                EmbeddedChannel client = new EmbeddedChannel(new PageResponseDecoder(PS, MAX_PAGES));
                client.writeInbound((ByteBuf) ch.readOutbound());
                PageResponse e = client.readInbound();
                assertEquals(TYPE_ERROR, e.type());
                assertFalse(ch.isOpen(), "closed after refusing: " + e.error());
            }
            assertEquals(4, s.refusedConnections());
            assertEquals(0, pages.reads.get());
        } finally {
            s.close();
        }
    }
}
