package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import org.junit.jupiter.api.Test;

/**
 * The control server and the page server listen only on the address they are given: bound to
 * 127.0.0.1, the kernel lists one listening socket on 127.0.0.1 and nothing on the wildcard,
 * and a connection to another local address (127.0.0.2) on the same port is refused.
 */
public class BindTest {
    private static final InetSocketAddress LOCALHOST = new InetSocketAddress("127.0.0.1", 0);

    /** The local addresses of the IPv4 and IPv6 sockets listening on {@code port} (from /proc/net/tcp*). */
    public static List<String> listeners(int port) throws IOException {
        String hexPort = String.format(Locale.ROOT, ":%04X", port);
        List<String> out = new java.util.ArrayList<>();
        for (String table : List.of("/proc/net/tcp", "/proc/net/tcp6")) {
            List<String> lines = Files.readAllLines(Path.of(table));
            for (String line : lines.subList(1, lines.size())) {
                String[] f = line.trim().split("\\s+");
                if (f[1].endsWith(hexPort) && f[3].equals("0A")) { // 0A: TCP_LISTEN
                    out.add(f[1]);
                }
            }
        }
        return out;
    }

    /** Fails unless exactly one socket listens on {@code port}, on 127.0.0.1, and 127.0.0.2 is refused. */
    public static void assertListensOnLoopbackOnly(int port) throws IOException {
        List<String> l = listeners(port);
        String p = String.format(Locale.ROOT, ":%04X", port);
        assertEquals(1, l.size(), l.toString());
        // 127.0.0.1 in /proc/net/tcp's little-endian hex, or as ::ffff:127.0.0.1 on an IPv6 socket (epoll)
        assertTrue(l.getFirst().equals("0100007F" + p) || l.getFirst().equals("0000000000000000FFFF00000100007F" + p),
                "listens on 127.0.0.1 only: " + l);
        assertThrows(ConnectException.class, () -> new Socket("127.0.0.2", port).close());
        new Socket("127.0.0.1", port).close();
    }

    @Test
    void controlServerBindsOnlyTheGivenAddress() throws IOException {
        try (ControlServer s = ControlServer.listen(LOCALHOST, ControlConnectionTest.hello(
                dev.lazypages.net.proto.Role.DESTINATION, ControlConnection.PROTOCOL_VERSION, "t"), new RecordingHandler())) {
            assertListensOnLoopbackOnly(s.localAddress().getPort());
        }
    }

    @Test
    void pageServerBindsOnlyTheGivenAddress() throws IOException {
        try (PageServer s = PageServer.start(LOCALHOST, new GeneratedPages(PageServerClientTest.PS, 1), "t")) {
            assertListensOnLoopbackOnly(s.localAddress().getPort());
        }
    }
}
