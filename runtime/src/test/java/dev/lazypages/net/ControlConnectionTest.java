package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.net.proto.ControlMessage;
import dev.lazypages.net.proto.Freeze;
import dev.lazypages.net.proto.Hello;
import dev.lazypages.net.proto.Role;
import dev.lazypages.net.proto.Running;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.time.Duration;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** Control connections on loopback: the handshake, refusals on both sides, messages both ways. */
class ControlConnectionTest {
    private static final Duration T = Duration.ofSeconds(10);
    private final RecordingHandler handler = new RecordingHandler();
    private final LinkedBlockingQueue<ControlConnection> accepted = handler.accepted;
    private final LinkedBlockingQueue<IOException> refused = handler.refused;
    private ControlServer server;

    static Hello hello(Role role, int version, String token) {
        return Hello.newBuilder().setProtocolVersion(version).setSoftwareVersion("test").addCapabilities("post-copy")
                .setPageSize(4096).setToken(token).setRole(role).setMigrationId("m-1").build();
    }

    private InetSocketAddress listen(Hello mine) throws IOException {
        server = ControlServer.listen(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), mine, handler);
        return server.localAddress();
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.close();
        }
    }

    @Test
    void handshakeExchangesHellosAndThenMessagesFlowBothWays() throws Exception {
        InetSocketAddress addr = listen(hello(Role.DESTINATION, 1, "s3cret"));
        try (ControlConnection client = ControlClient.connect(addr, hello(Role.SOURCE, 1, "s3cret"), T)) {
            ControlConnection srv = accepted.poll(10, TimeUnit.SECONDS);
            assertEquals(Role.DESTINATION, client.peerHello().getRole());
            assertEquals(Role.SOURCE, srv.peerHello().getRole());
            assertEquals("m-1", srv.peerHello().getMigrationId());
            client.send(ControlMessage.newBuilder().setFreeze(Freeze.getDefaultInstance()).build());
            assertTrue(srv.receive(T).hasFreeze());
            srv.send(ControlMessage.newBuilder().setRunning(Running.newBuilder().setPid(77).setRestoreMs(12)).build());
            assertEquals(77, client.receive(T).getRunning().getPid());
            assertThrows(SocketTimeoutException.class, () -> client.receive(Duration.ofMillis(50)));
            srv.close();
            client.closed().get(10, TimeUnit.SECONDS);
            IOException e = assertThrows(IOException.class, () -> client.receive(T));
            assertTrue(e.getMessage().contains("closed"), e.getMessage());
            assertThrows(IOException.class, () -> client.send(ControlMessage.getDefaultInstance()));
        }
        assertTrue(refused.isEmpty());
    }

    @Test
    void aReceiverThatDoesNotReceiveSlowsTheSenderDownInsteadOfBufferingEverything() throws Exception {
        InetSocketAddress addr = listen(hello(Role.DESTINATION, 1, "t"));
        try (ControlConnection client = ControlClient.connect(addr, hello(Role.SOURCE, 1, "t"), T)) {
            ControlConnection srv = accepted.poll(10, TimeUnit.SECONDS);
            ControlMessage chunk = ControlMessage.newBuilder().setFileChunk(dev.lazypages.net.proto.FileChunk.newBuilder()
                    .setName("f").setData(com.google.protobuf.ByteString.copyFrom(new byte[1 << 20]))).build();
            java.util.concurrent.atomic.AtomicInteger sent = new java.util.concurrent.atomic.AtomicInteger();
            Thread sender = Thread.ofPlatform().start(() -> {
                try {
                    for (int i = 0; i < 128; i++) {
                        client.send(chunk);
                        sent.incrementAndGet();
                    }
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            Thread.sleep(1000);
            int early = sent.get();
            assertTrue(early < 128, "the sender is held back while nobody receives (sent " + early + " MiB)");
            for (int i = 0; i < 128; i++) {
                assertTrue(srv.receive(T).hasFileChunk());
            }
            sender.join(10_000);
            assertEquals(128, sent.get());
        }
    }

    @Test
    void protocolVersionMismatchIsRefusedWithTheReasonOnBothSides() throws Exception {
        InetSocketAddress addr = listen(hello(Role.DESTINATION, 1, "s3cret"));
        HandshakeException e = assertThrows(HandshakeException.class,
                () -> ControlClient.connect(addr, hello(Role.SOURCE, 2, "s3cret"), T));
        assertEquals("protocol version 2 not supported (this build speaks 1)", e.reason());
        assertTrue(e.byPeer(), e.getMessage());
        IOException s = refused.poll(10, TimeUnit.SECONDS);
        assertTrue(s instanceof HandshakeException h && !h.byPeer()
                && h.reason().equals("protocol version 2 not supported (this build speaks 1)"), String.valueOf(s));
        assertTrue(accepted.isEmpty());
    }

    @Test
    void protocolVersionMismatchNoticedByTheClientIsRefusedOnBothSides() throws Exception {
        InetSocketAddress addr = listen(hello(Role.DESTINATION, 3, "s3cret"));
        HandshakeException e = assertThrows(HandshakeException.class,
                () -> ControlClient.connect(addr, hello(Role.SOURCE, 1, "s3cret"), T));
        assertEquals("protocol version 3 not supported (this build speaks 1)", e.reason());
        assertFalse(e.byPeer());
        IOException s = refused.poll(10, TimeUnit.SECONDS);
        assertTrue(s instanceof HandshakeException h && h.byPeer() && h.getMessage().contains("protocol version 3"),
                String.valueOf(s));
    }

    @Test
    void aCapabilityThePeerRequiresAndThisSideLacksIsRefusedWithTheReasonOnBothSides() throws Exception {
        String why = "capability 'warm-restore' required by the peer is not supported here (this build has: post-copy)";
        InetSocketAddress addr = listen(hello(Role.DESTINATION, 1, "s3cret"));
        HandshakeException e = assertThrows(HandshakeException.class, () -> ControlClient.connect(addr,
                hello(Role.SOURCE, 1, "s3cret").toBuilder().addRequires("post-copy").addRequires("warm-restore").build(), T));
        assertEquals(why, e.reason());
        assertTrue(e.byPeer());
        IOException s = refused.poll(10, TimeUnit.SECONDS);
        assertTrue(s instanceof HandshakeException h && !h.byPeer() && h.reason().equals(why), String.valueOf(s));
        assertTrue(accepted.isEmpty());
        // the other way round: the server requires it, the client refuses
        server.close();
        InetSocketAddress addr2 = listen(hello(Role.DESTINATION, 1, "s3cret").toBuilder().addRequires("warm-restore").build());
        HandshakeException c = assertThrows(HandshakeException.class,
                () -> ControlClient.connect(addr2, hello(Role.SOURCE, 1, "s3cret"), T));
        assertEquals(why, c.reason());
        assertFalse(c.byPeer());
        IOException s2 = refused.poll(10, TimeUnit.SECONDS);
        assertTrue(s2 instanceof HandshakeException h && h.byPeer() && h.reason().equals(why), String.valueOf(s2));
        // and a capability that is there passes
        try (ControlConnection ok = ControlClient.connect(addr2, hello(Role.SOURCE, 1, "s3cret").toBuilder()
                .addCapabilities("warm-restore").addRequires("post-copy").build(), T)) {
            assertTrue(ok.isOpen());
        }
    }

    @Test
    void tokenMismatchIsRefusedWithTheReasonOnBothSides() throws Exception {
        InetSocketAddress addr = listen(hello(Role.DESTINATION, 1, "s3cret"));
        HandshakeException e = assertThrows(HandshakeException.class,
                () -> ControlClient.connect(addr, hello(Role.SOURCE, 1, "guess"), T));
        assertEquals("token mismatch", e.reason());
        IOException s = refused.poll(10, TimeUnit.SECONDS);
        assertTrue(s instanceof HandshakeException h && h.reason().equals("token mismatch"), String.valueOf(s));
        assertTrue(accepted.isEmpty());
    }

    @Test
    void twoSourcesAreRefused() throws Exception {
        InetSocketAddress addr = listen(hello(Role.SOURCE, 1, "t"));
        HandshakeException e = assertThrows(HandshakeException.class,
                () -> ControlClient.connect(addr, hello(Role.SOURCE, 1, "t"), T));
        assertEquals("both sides claim role SOURCE", e.reason());
    }

    @Test
    void connectingToNothingFailsWithinTheTimeout() throws Exception {
        InetSocketAddress addr = listen(hello(Role.DESTINATION, 1, "t"));
        server.close();
        server = null;
        IOException e = assertThrows(IOException.class, () -> ControlClient.connect(addr, hello(Role.SOURCE, 1, "t"), T));
        assertTrue(e.getMessage().contains("cannot connect"), e.getMessage());
    }
}
