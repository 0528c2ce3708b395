package dev.lazypages.net;

import dev.lazypages.net.proto.Hello;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * Accepts control connections (the destination listens, the source connects). Each accepted
 * connection runs the handshake ({@link ControlConnection}); a connection that passes it is
 * handed to {@link Handler#accepted} on a new platform thread of its own, which may block (run
 * a state machine there); one that fails it goes to {@link Handler#refused}.
 */
public final class ControlServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(ControlServer.class.getName());
    /** A connection that has not finished its handshake within this time is closed. */
    public static final Duration HANDSHAKE_TIMEOUT = Duration.ofSeconds(10);

    /** What to do with connections. */
    @FunctionalInterface
    public interface Handler {
        /** A connection passed the handshake. Runs on its own thread; may block. */
        void accepted(ControlConnection connection) throws Exception;

        /** A connection failed the handshake (already closed). Default: logged (as a warning, by the connection). */
        default void refused(InetSocketAddress peer, IOException why) {
        }
    }

    private final EventLoopGroup group;
    private final Channel server;

    private ControlServer(EventLoopGroup group, Channel server) {
        this.group = group;
        this.server = server;
    }

    /** Binds {@code bind} (port 0: any free port) and starts accepting, with this process's TLS ({@link Tls#forThisProcess}). */
    public static ControlServer listen(InetSocketAddress bind, Hello mine, Handler handler) throws IOException {
        return listen(bind, mine, handler, Tls.forThisProcess());
    }

    /** Binds {@code bind} and starts accepting; {@code tls} null: plain TCP (a TLS peer is refused). */
    public static ControlServer listen(InetSocketAddress bind, Hello mine, Handler handler, Tls tls) throws IOException {
        var secure = Transport.acceptSide(Transport.Plane.CONTROL, tls);
        EventLoopGroup group = Transport.group("control-server", 1);
        try {
            ServerBootstrap b = new ServerBootstrap().group(group).channel(Transport.serverChannel())
                    .childOption(ChannelOption.TCP_NODELAY, true)
                    .childHandler(new ChannelInitializer<SocketChannel>() {
                        @Override
                        protected void initChannel(SocketChannel ch) {
                            secure.accept(ch);
                            ControlConnection c = ControlConnection.install(ch, mine,
                                    ControlFrameDecoder.DEFAULT_MAX_FRAME_BYTES);
                            InetSocketAddress peer = ch.remoteAddress();
                            var timeout = ch.eventLoop().schedule(() -> {
                                if (!c.handshake().isDone()) {
                                    LOG.log(System.Logger.Level.WARNING, "control connection from {0}: no handshake within {1}",
                                            peer, HANDSHAKE_TIMEOUT);
                                    ch.close();
                                }
                            }, HANDSHAKE_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
                            c.handshake().whenComplete((ok, err) -> {
                                timeout.cancel(false);
                                if (err != null) {
                                    handler.refused(peer, err instanceof IOException io ? io : new IOException(err));
                                    return;
                                }
                                Thread.ofPlatform().name("control-" + peer).start(() -> {
                                    try {
                                        handler.accepted(c);
                                    } catch (Throwable t) {
                                        LOG.log(System.Logger.Level.ERROR, "control handler for " + peer + " failed", t);
                                        c.close();
                                    }
                                });
                            });
                        }
                    });
            Channel ch = b.bind(bind).sync().channel();
            return new ControlServer(group, ch);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            Transport.shutdown(group);
            throw new java.io.InterruptedIOException("interrupted while binding " + bind);
        } catch (Exception e) {
            Transport.shutdown(group);
            throw new IOException("cannot listen for control connections on " + bind + ": " + e, e);
        }
    }

    /** The bound address (with the actual port when bound to port 0). */
    public InetSocketAddress localAddress() {
        return (InetSocketAddress) server.localAddress();
    }

    /** Stops accepting and closes every connection. */
    @Override
    public void close() {
        if (group.isShuttingDown()) {
            return;
        }
        server.close().awaitUninterruptibly();
        Transport.shutdown(group);
    }
}
