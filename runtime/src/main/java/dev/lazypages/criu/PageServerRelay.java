package dev.lazypages.criu;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.net.HandshakeException;
import dev.lazypages.net.PageClient;
import dev.lazypages.net.PageProvider;
import dev.lazypages.net.PageServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;

/**
 * {@code lazy-pages --page-server --address A --port P -D DIR}: the destination-side daemon of
 * CRIU's lazy migration ({@code criu lazy-pages --page-server}). It connects to the source's
 * page server at A:P, listens on a local port (by default 127.0.0.1, any free port), writes
 * that address to DIR/{@value PageServerFiles#RELAY} and relays page requests: a
 * {@code restore --lazy-pages -D DIR} started afterwards without {@code --address} finds the
 * relay there, as CRIU's restore finds its lazy-pages daemon through a socket in the working
 * directory. When the restore sends DONE, the relay sends DONE to the source and exits.
 *
 * <p>The relay adds one hop; {@code restore --lazy-pages --address A --port P} goes to the
 * source directly and is the faster path. Requests of the local BULK connection are forwarded
 * on the BULK connection to the source, FAULT requests on FAULT (the page server serves the
 * former on its bulk thread, which is how they are told apart).
 */
public final class PageServerRelay {
    /** How the relay ended. */
    public record Result(boolean done, long relayedPages, String reason) {
    }

    private PageServerRelay() {
    }

    /**
     * @param source      the source's page server
     * @param listen      where to listen for the local restore (port 0: any)
     * @param dir         the image directory (gets {@value PageServerFiles#RELAY})
     * @param token       checked by the source, and asked of the local restore
     * @param statusFd    one byte once listening; -1 for none
     * @param idleTimeout give up after this long without a request and without DONE
     * @param recoverTimeout how long a lost connection to the source is retried
     */
    public static Result run(InetSocketAddress source, InetSocketAddress listen, Path dir, String token, int statusFd,
                             Duration idleTimeout, Duration recoverTimeout, Consumer<String> progress) throws IOException {
        PageClient client;
        try {
            client = PageClient.connect(source, token, PageClient.Options.defaults().withRecoverTimeout(recoverTimeout));
        } catch (HandshakeException e) {
            throw new IOException("page server " + source.getHostString() + ":" + source.getPort() + " refused us: "
                    + e.reason(), e);
        }
        Forward fwd = new Forward(client);
        PageServer server = null;
        try {
            server = PageServer.start(listen, fwd, token);
            InetSocketAddress at = server.localAddress();
            String hostPort = at.getAddress().getHostAddress() + ":" + at.getPort();
            PageServerFiles.writeRelay(dir, hostPort);
            progress.accept("relaying " + source.getHostString() + ":" + source.getPort() + " on " + hostPort
                    + " (written to " + dir.resolve(PageServerFiles.RELAY) + ")");
            StatusFd.signal(statusFd);
            long timeout = idleTimeout.toNanos();
            while (true) {
                try {
                    server.done().get(200, TimeUnit.MILLISECONDS);
                    break;
                } catch (TimeoutException e) {
                    if (System.nanoTime() - fwd.lastActivity >= timeout) {
                        return new Result(false, server.servedPages(), "no page request and no DONE within "
                                + idleTimeout.toSeconds() + " s");
                    }
                } catch (ExecutionException e) {
                    throw new IOException("relay failed: " + e.getCause(), e.getCause());
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return new Result(false, server.servedPages(), "interrupted");
                }
            }
            client.done();
            return new Result(true, server.servedPages(), null);
        } finally {
            if (server != null) {
                server.close();
            }
            client.close();
            PageServerFiles.removeRelay(dir);
        }
    }

    private static final class Forward implements PageProvider {
        private final PageClient client;
        volatile long lastActivity = System.nanoTime();

        Forward(PageClient client) {
            this.client = client;
        }

        @Override
        public int pageSize() {
            return client.pageSize();
        }

        @Override
        public void readPages(long vaddr, int nrPages, ByteBuffer directDst) throws IOException {
            lastActivity = System.nanoTime();
            // the network buffer is not page aligned (a frame header precedes the pages): fetch, then copy
            try (PageBuffer b = PageBuffer.allocate(nrPages)) {
                if (Thread.currentThread().getName().startsWith("page-server-bulk")) {
                    client.fetchBulk(vaddr, nrPages, b, 0);
                } else {
                    client.fetch(vaddr, nrPages, b, 0);
                }
                directDst.put(b.asByteBuffer());
            } finally {
                lastActivity = System.nanoTime();
            }
        }
    }
}
