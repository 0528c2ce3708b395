package dev.lazypages.migrate;

import dev.lazypages.dump.FrozenProcess;
import dev.lazypages.lazy.LazySource;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.HdrHistogram.Histogram;

/** The page plane as the migration uses it: a page server over the frozen source, a page client at the destination. */
public interface PagePlane {
    /** The source's page server. */
    interface Server extends AutoCloseable {
        int port();

        /** Completes when the destination's client said DONE. */
        CompletableFuture<?> done();

        /** Request service latency (ns), or null. */
        Histogram serveLatency();

        /** Nanoseconds since the destination last connected or asked for a page. */
        long idleNanos();

        @Override
        void close();

        /** This server as reached through {@code front} (e.g. a proxy) on {@code port}; closing it closes {@code front} first. */
        default Server fronted(int port, Runnable closeFront) {
            Server s = this;
            return of(() -> port, s::done, s::serveLatency, s::idleNanos, () -> {
                closeFront.run();
                s.close();
            });
        }

        /** A server made of its parts. */
        static Server of(java.util.function.IntSupplier port, java.util.function.Supplier<CompletableFuture<?>> done,
                         java.util.function.Supplier<Histogram> serveLatency, java.util.function.LongSupplier idleNanos,
                         Runnable close) {
            return new Server() {
                @Override
                public int port() {
                    return port.getAsInt();
                }

                @Override
                public CompletableFuture<?> done() {
                    return done.get();
                }

                @Override
                public Histogram serveLatency() {
                    return serveLatency.get();
                }

                @Override
                public long idleNanos() {
                    return idleNanos.getAsLong();
                }

                @Override
                public void close() {
                    close.run();
                }
            };
        }
    }

    /** The destination's page client. */
    interface Client extends AutoCloseable {
        /** The REMOTE pages, as the restorer reads them. */
        LazySource source();

        /** Tells the server every page is in. */
        void done() throws IOException;

        @Override
        void close();
    }

    /** Serves {@code frozen}'s REMOTE pages on {@code bind}, an ephemeral port. */
    default Server serve(InetAddress bind, FrozenProcess frozen, String token) throws IOException {
        return serve(bind, () -> frozen, token);
    }

    /**
     * As {@link #serve(InetAddress, FrozenProcess, String)}, listening before the process is
     * frozen (so that the freeze does not wait for it): requests fail until {@code frozen} gives
     * the process.
     */
    Server serve(InetAddress bind, java.util.function.Supplier<FrozenProcess> frozen, String token) throws IOException;

    /**
     * A page client connected before the REMOTE runs are known (before the freeze, so that the
     * downtime does not pay for the connection and its authentication); {@link #withRuns} makes
     * the client for them, once. Closing it before then closes the connection.
     */
    interface Early extends AutoCloseable {
        Client withRuns(List<LazySource.Run> runs) throws IOException;

        @Override
        void close();
    }

    /**
     * Connects to the source's page server now, the runs to come ({@link Early#withRuns}). The
     * default connects only then (a plane that cannot do better).
     */
    default Early connectEarly(InetSocketAddress server, String token, java.time.Duration recoverTimeout) throws IOException {
        return new Early() {
            @Override
            public Client withRuns(List<LazySource.Run> runs) throws IOException {
                return connect(server, token, runs, recoverTimeout);
            }

            @Override
            public void close() {
            }
        };
    }

    /** Connects to the source's page server for the REMOTE {@code runs}, with the default recover timeout. */
    default Client connect(InetSocketAddress server, String token, List<LazySource.Run> runs) throws IOException {
        return connect(server, token, runs, dev.lazypages.net.PageClient.Options.DEFAULT_RECOVER_TIMEOUT);
    }

    /**
     * Connects to the source's page server for the REMOTE {@code runs}; a lost connection is
     * retried for {@code recoverTimeout} before the pages count as lost.
     */
    Client connect(InetSocketAddress server, String token, List<LazySource.Run> runs, java.time.Duration recoverTimeout)
            throws IOException;
}
