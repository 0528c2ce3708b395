package dev.lazypages.net;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongPredicate;

/**
 * A TCP proxy on loopback for tests of connection loss: forwards every accepted connection to
 * {@code upstream}, and can {@link #cutAll() reset} every connection at once (RST, as a crashed
 * peer or a middlebox would), {@link #cutWhen cut} once a number of bytes went downstream, and
 * {@link #refuse refuse} new connections (accept and reset at once) to play a source that
 * cannot be reached.
 */
public final class CuttingProxy implements AutoCloseable {
    private final InetSocketAddress upstream;
    private final ServerSocket listener;
    private final List<Socket> sockets = new CopyOnWriteArrayList<>();
    private final AtomicBoolean refusing = new AtomicBoolean();
    private final AtomicLong downstreamBytes = new AtomicLong();
    private final AtomicInteger cuts = new AtomicInteger();
    private final AtomicInteger accepted = new AtomicInteger();
    private volatile LongPredicate cutWhen;
    private volatile boolean closed;

    public CuttingProxy(InetSocketAddress upstream) throws IOException {
        this.upstream = upstream;
        this.listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        Thread.ofPlatform().daemon().name("cutting-proxy-accept").start(this::acceptLoop);
    }

    public InetSocketAddress address() {
        return new InetSocketAddress(InetAddress.getLoopbackAddress(), listener.getLocalPort());
    }

    /** Bytes forwarded from upstream to the clients so far. */
    public long downstreamBytes() {
        return downstreamBytes.get();
    }

    /** How many times every connection was reset. */
    public int cuts() {
        return cuts.get();
    }

    /** Connections accepted (and forwarded) so far. */
    public int accepted() {
        return accepted.get();
    }

    /** Resets every connection once {@code test} accepts the downstream byte count (checked as bytes flow). */
    public void cutWhen(LongPredicate test) {
        cutWhen = test;
    }

    /** Whether new connections are reset at once. */
    public void refuse(boolean on) {
        refusing.set(on);
    }

    /** Resets every open connection (both sides). */
    public void cutAll() {
        cuts.incrementAndGet();
        for (Socket s : sockets) {
            reset(s);
        }
    }

    private static void reset(Socket s) {
        try {
            s.setSoLinger(true, 0);
            s.close();
        } catch (IOException ignored) {
            // closed already
        }
    }

    private void acceptLoop() {
        while (!closed) {
            Socket down;
            try {
                down = listener.accept();
            } catch (IOException e) {
                return;
            }
            if (refusing.get()) {
                reset(down);
                continue;
            }
            Socket up;
            try {
                up = new Socket(upstream.getAddress(), upstream.getPort());
                up.setTcpNoDelay(true);
                down.setTcpNoDelay(true);
            } catch (IOException e) {
                reset(down);
                continue;
            }
            accepted.incrementAndGet();
            sockets.add(down);
            sockets.add(up);
            Thread.ofPlatform().daemon().name("cutting-proxy-up").start(() -> pump(down, up, false));
            Thread.ofPlatform().daemon().name("cutting-proxy-down").start(() -> pump(up, down, true));
        }
    }

    private void pump(Socket from, Socket to, boolean downstream) {
        byte[] buf = new byte[64 * 1024];
        try (InputStream in = from.getInputStream(); OutputStream out = to.getOutputStream()) {
            int n;
            while ((n = in.read(buf)) > 0) {
                out.write(buf, 0, n);
                if (downstream) {
                    long total = downstreamBytes.addAndGet(n);
                    LongPredicate p = cutWhen;
                    if (p != null && p.test(total)) {
                        cutWhen = null;
                        cutAll();
                        return;
                    }
                }
            }
        } catch (IOException e) {
            // reset or closed
        } finally {
            reset(from);
            reset(to);
            sockets.remove(from);
            sockets.remove(to);
        }
    }

    @Override
    public void close() {
        closed = true;
        try {
            listener.close();
        } catch (IOException ignored) {
            // closing
        }
        for (Socket s : sockets) {
            reset(s);
        }
    }
}
