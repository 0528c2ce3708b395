package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.net.proto.ControlMessage;
import dev.lazypages.net.proto.Freeze;
import dev.lazypages.net.proto.Hello;
import dev.lazypages.net.proto.Role;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * TLS on both planes, on loopback, with self-signed certificates openssl makes at test time:
 * messages and files over TLS, a plain peer of a TLS side and a TLS peer of a plain side refused
 * on both sides with a message saying why, a certificate that does not chain to --tls-cacert
 * refused.
 */
class TlsTest {
    private static final Duration T = Duration.ofSeconds(20);
    private static final InetSocketAddress LO = new InetSocketAddress(InetAddress.getLoopbackAddress(), 0);

    @TempDir
    Path tmp;
    private TlsFixture.Pem a;
    private TlsFixture.Pem b;
    private ControlServer server;
    private final RecordingHandler handler = new RecordingHandler();
    private final LinkedBlockingQueue<ControlConnection> accepted = handler.accepted;
    private final LinkedBlockingQueue<IOException> refused = handler.refused;
    private final List<String> logged = new CopyOnWriteArrayList<>();
    private final Handler capture = new Handler() {
        @Override
        public void publish(LogRecord r) {
            logged.add(java.text.MessageFormat.format(r.getMessage(), r.getParameters()));
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }
    };

    @BeforeEach
    void certificates() throws Exception {
        a = TlsFixture.selfSigned(tmp, "a");
        b = TlsFixture.selfSigned(tmp, "b");
        Logger.getLogger(Transport.class.getName()).addHandler(capture);
    }

    @AfterEach
    void stop() {
        Logger.getLogger(Transport.class.getName()).removeHandler(capture);
        Tls.useForThisProcess(null);
        if (server != null) {
            server.close();
        }
    }

    private static Hello hello(Role role) {
        return ControlConnectionTest.hello(role, ControlConnection.PROTOCOL_VERSION, "tok").toBuilder()
                .addCapabilities(ControlConnection.RAW_FILE_DATA).build();
    }

    private InetSocketAddress listen(Tls tls) throws IOException {
        server = ControlServer.listen(LO, hello(Role.DESTINATION), handler, tls);
        return server.localAddress();
    }

    private boolean loggedLine(String part) throws InterruptedException {
        for (int i = 0; i < 200; i++) {
            if (logged.stream().anyMatch(l -> l.contains(part))) {
                return true;
            }
            Thread.sleep(10);
        }
        return false;
    }

    @Test
    void controlConnectionOverTlsCarriesMessagesAndWholeFilesBothWays() throws Exception {
        Tls tls = Tls.of(a.verifying(a));
        InetSocketAddress at = listen(tls);
        try (ControlConnection c = ControlClient.connect(at, hello(Role.SOURCE), T, tls);
             ControlConnection s = accepted.poll(20, TimeUnit.SECONDS)) {
            c.send(ControlMessage.newBuilder().setFreeze(Freeze.getDefaultInstance()).build());
            assertTrue(s.receive(T).hasFreeze());
            // a file large enough to go as raw-data frames (FileRegion), which SslHandler must get in chunks
            Path dir = Files.createDirectories(tmp.resolve("round"));
            byte[] big = new byte[3 << 20];
            new Random(3).nextBytes(big);
            Files.write(dir.resolve("pages.img"), big);
            Files.write(dir.resolve("inventory.img"), new byte[] {1, 2, 3});
            CompletableFuture<DirectoryTransfer.Stats> sent = CompletableFuture.supplyAsync(() -> {
                try {
                    return DirectoryTransfer.send(c, 1, dir);
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            Path into = Files.createDirectories(tmp.resolve("into"));
            Path got = DirectoryTransfer.receive(s, into);
            sent.get(20, TimeUnit.SECONDS);
            assertArrayEquals(big, Files.readAllBytes(got.resolve("pages.img")));
            assertArrayEquals(new byte[] {1, 2, 3}, Files.readAllBytes(got.resolve("inventory.img")));
        }
    }

    @Test
    void aPlainClientIsRefusedByATlsServerWithAMessageSayingSoOnBothSides() throws Exception {
        InetSocketAddress at = listen(Tls.of(a.unverified()));
        HandshakeException e = assertThrows(HandshakeException.class, () -> ControlClient.connect(at, hello(Role.SOURCE), T, null));
        assertTrue(e.byPeer(), e.toString());
        assertEquals("this side requires TLS: run the peer with --tls", e.reason());
        assertTrue(loggedLine("control connection from") && loggedLine("refused: plain text"), logged.toString());
        assertTrue(refused.poll(10, TimeUnit.SECONDS) != null, "the server counts it refused");
        assertNull(accepted.poll());
    }

    @Test
    void aTlsClientIsRefusedByAPlainServerWithAMessageSayingSoOnBothSides() throws Exception {
        InetSocketAddress at = listen(null);
        HandshakeException e = assertThrows(HandshakeException.class,
                () -> ControlClient.connect(at, hello(Role.SOURCE), T, Tls.of(a.unverified())));
        assertTrue(e.getMessage().startsWith("TLS with " + at + " failed: ")
                && e.getMessage().contains("does the peer run with --tls"), e.getMessage());
        assertTrue(loggedLine("refused: the peer speaks TLS, this side runs without --tls"), logged.toString());
        assertNull(accepted.poll());
    }

    @Test
    void aPeerWhoseCertificateDoesNotChainToTheCaIsRefusedEitherWay() throws Exception {
        InetSocketAddress at = listen(Tls.of(a.verifying(a)));
        // the client's certificate is b's: the server (trusting a only) refuses it
        HandshakeException e = assertThrows(HandshakeException.class,
                () -> ControlClient.connect(at, hello(Role.SOURCE), T, Tls.of(b.verifying(a))));
        assertTrue(e.getMessage().startsWith("TLS with " + at + " failed: ") && e.getMessage().contains("certificate_required"),
                e.getMessage());
        // the server's certificate is a's: a client trusting b only refuses it
        HandshakeException f = assertThrows(HandshakeException.class,
                () -> ControlClient.connect(at, hello(Role.SOURCE), T, Tls.of(a.verifying(b))));
        assertTrue(f.getMessage().startsWith("TLS with " + at + " failed: "), f.getMessage());
        assertNull(accepted.poll());
        // and with the right ones it works
        try (ControlConnection c = ControlClient.connect(at, hello(Role.SOURCE), T, Tls.of(a.verifying(a)))) {
            assertTrue(c.isOpen());
        }
    }

    /** A certificate from the trusted CA, but for another address than the one dialled, is refused by the client. */
    @Test
    void aServerWhoseCertificateNamesAnotherAddressIsRefusedByAVerifyingClient() throws Exception {
        TlsFixture.Pem elsewhere = TlsFixture.selfSigned(tmp, "elsewhere", "IP:127.0.0.2,DNS:elsewhere.invalid");
        InetSocketAddress at = listen(Tls.of(elsewhere.verifying(a)));
        HandshakeException e = assertThrows(HandshakeException.class,
                () -> ControlClient.connect(at, hello(Role.SOURCE), T, Tls.of(a.verifying(elsewhere))));
        assertTrue(e.getMessage().startsWith("TLS with " + at + " failed: ") && e.getMessage().contains("subject alternative names matching IP address 127.0.0.1"),
                e.getMessage());
        assertNull(accepted.poll());
        // without --tls-cacert nothing is verified (encryption only; the token authenticates): it connects
        try (ControlConnection c = ControlClient.connect(at, hello(Role.SOURCE), T, Tls.of(a.unverified()))) {
            assertTrue(c.isOpen());
        }
    }

    @Test
    void pagesOverTlsAndAPlainPageClientRefusedWithAMessageSayingSo() throws Exception {
        GeneratedPages pages = new GeneratedPages(PageServerClientTest.PS, 9);
        Tls.useForThisProcess(Tls.of(a.verifying(a)));
        try (PageServer s = PageServer.start(LO, pages, "tok")) {
            long base = PageServerClientTest.BASE;
            try (PageClient c = PageClient.connect(s.localAddress(), "tok"); PageBuffer buf = PageBuffer.allocate(64)) {
                c.fetch(base, 4, buf, 0);
                assertNull(pages.check(buf, 0, base, 4));
                c.fetchBulk(base + (1L << 20), 64, buf, 0);
                assertNull(pages.check(buf, 0, base + (1L << 20), 64));
            }
            Tls.useForThisProcess(null); // a client of this process without TLS now
            HandshakeException e = assertThrows(HandshakeException.class, () -> PageClient.connect(s.localAddress(), "tok"));
            assertTrue(e.byPeer());
            assertEquals("this side requires TLS: run the peer with --tls", e.reason());
            assertTrue(loggedLine("page connection from") && loggedLine("refused: plain text"), logged.toString());
        }
        // the reverse: a plain page server, a TLS client
        try (PageServer s = PageServer.start(LO, pages, "tok")) {
            Tls.useForThisProcess(Tls.of(a.unverified()));
            IOException e = assertThrows(IOException.class, () -> PageClient.connect(s.localAddress(), "tok", Duration.ofSeconds(5)));
            assertTrue(e.getMessage().contains("page connection (fault)"), e.getMessage());
            assertTrue(loggedLine("page connection from") && loggedLine("the peer speaks TLS"), logged.toString());
            assertEquals(0, s.refusedConnections() + s.servedPages());
        }
    }
}
