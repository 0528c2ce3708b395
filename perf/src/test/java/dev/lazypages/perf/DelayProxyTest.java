package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.time.Duration;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The delaying proxy with real sockets on loopback: an echo server behind it. */
class DelayProxyTest {
    private ServerSocket echo;
    private final CompletableFuture<Void> echoDone = new CompletableFuture<>();

    /** Echoes every byte until EOF, then closes; one connection. */
    private InetSocketAddress startEcho() throws IOException {
        echo = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
        Thread.ofPlatform().daemon().start(() -> {
            try (Socket s = echo.accept(); InputStream in = s.getInputStream(); OutputStream out = s.getOutputStream()) {
                s.setTcpNoDelay(true);
                byte[] b = new byte[65536];
                for (int n; (n = in.read(b)) > 0; ) {
                    out.write(b, 0, n);
                }
                echoDone.complete(null);
            } catch (IOException e) {
                echoDone.completeExceptionally(e);
            }
        });
        return (InetSocketAddress) echo.getLocalSocketAddress();
    }

    @AfterEach
    void closeEcho() throws IOException {
        if (echo != null) {
            echo.close();
        }
    }

    @Test
    void aRoundTripTakesTwiceTheOneWayDelay() throws Exception {
        try (DelayProxy p = DelayProxy.start(startEcho(), Duration.ofMillis(25)); Socket c = connect(p)) {
            OutputStream out = c.getOutputStream();
            DataInputStream in = new DataInputStream(c.getInputStream());
            for (int i = 0; i < 4; i++) { // the first also waits for the proxy's own connection: not timed
                long t0 = System.nanoTime();
                out.write(new byte[] {(byte) i});
                out.flush();
                assertEquals(i, in.readByte());
                long ms = (System.nanoTime() - t0) / 1_000_000;
                assertTrue(ms >= 50, "round trip " + ms + " ms, expected at least 2 x 25 ms");
                assertTrue(i == 0 || ms < 50 + 1000, "round trip " + ms + " ms: the proxy holds chunks far too long");
            }
            assertEquals(1, p.connections());
            assertEquals(8, p.relayedBytes());
        }
    }

    @Test
    void keepsEveryByteInOrderWhileChunksArriveFasterThanTheDelay() throws Exception {
        byte[] data = new byte[8 << 20];
        new Random(1).nextBytes(data);
        try (DelayProxy p = DelayProxy.start(startEcho(), Duration.ofMillis(2)); Socket c = connect(p)) {
            CompletableFuture<byte[]> back = CompletableFuture.supplyAsync(() -> {
                try {
                    byte[] got = new byte[data.length];
                    new DataInputStream(c.getInputStream()).readFully(got);
                    return got;
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            OutputStream out = c.getOutputStream();
            Random sizes = new Random(2);
            for (int off = 0; off < data.length; ) { // chunks of many sizes, some with pauses between
                int n = Math.min(data.length - off, 1 + sizes.nextInt(100_000));
                out.write(data, off, n);
                off += n;
                if (sizes.nextInt(8) == 0) {
                    Thread.sleep(1);
                }
            }
            out.flush();
            assertArrayEquals(data, back.get(30, TimeUnit.SECONDS));
            c.shutdownOutput(); // the close goes through after the data: the echo server sees EOF
            echoDone.get(10, TimeUnit.SECONDS);
            assertEquals(-1, c.getInputStream().read()); // and its close comes back
        }
    }

    @Test
    void refusesATargetOffLoopback() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DelayProxy.start(new InetSocketAddress("192.0.2.1", 9), Duration.ofMillis(1)));
        assertTrue(e.getMessage().contains("loopback only"), e.getMessage());
    }

    private static Socket connect(DelayProxy p) throws IOException {
        Socket c = new Socket();
        c.connect(p.address(), 5000);
        c.setTcpNoDelay(true);
        c.setSoTimeout(30_000);
        return c;
    }
}
