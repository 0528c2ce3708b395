package dev.lazypages.net;

import dev.lazypages.net.proto.Hello;
import io.netty.bootstrap.Bootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/** Opens control connections (the source connects to the destination's {@link ControlServer}). */
public final class ControlClient {
    private ControlClient() {
    }

    /**
     * Connects to {@code server} and runs the handshake, all within {@code timeout}. The
     * connection owns its event loop thread; closing it releases everything.
     *
     * @throws HandshakeException when either side refused the handshake (the reason included)
     * @throws IOException        when the connection cannot be made in time
     */
    public static ControlConnection connect(InetSocketAddress server, Hello mine, Duration timeout) throws IOException {
        return connect(server, mine, timeout, Tls.forThisProcess());
    }

    /** As {@link #connect(InetSocketAddress, Hello, Duration)}; {@code tls} null: plain TCP. */
    public static ControlConnection connect(InetSocketAddress server, Hello mine, Duration timeout, Tls tls)
            throws IOException {
        var secure = Transport.connectSide(Transport.Plane.CONTROL, server, tls);
        EventLoopGroup group = Transport.group("control-client", 1);
        ControlConnection[] made = new ControlConnection[1];
        long deadline = System.nanoTime() + timeout.toNanos();
        try {
            Bootstrap b = new Bootstrap().group(group).channel(Transport.socketChannel())
                    .option(ChannelOption.TCP_NODELAY, true)
                    .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int) Math.max(1, timeout.toMillis()))
                    .handler(new ChannelInitializer<SocketChannel>() {
                        @Override
                        protected void initChannel(SocketChannel ch) {
                            secure.accept(ch);
                            made[0] = ControlConnection.install(ch, mine, ControlFrameDecoder.DEFAULT_MAX_FRAME_BYTES);
                        }
                    });
            ChannelFuture cf = b.connect(server);
            if (!cf.await(timeout.toMillis(), TimeUnit.MILLISECONDS) || !cf.isSuccess()) {
                cf.channel().close();
                Throwable c = cf.cause();
                throw new IOException("cannot connect to " + server + ": " + (c == null ? "timed out after " + timeout : c), c);
            }
            Channel ch = cf.channel();
            ControlConnection c = made[0];
            // the connection owns its loop: stop it with the channel (a short quiet period lets late listeners run)
            ch.closeFuture().addListener(f -> group.shutdownGracefully(100, 2000, TimeUnit.MILLISECONDS));
            try {
                return c.handshake().get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            } catch (ExecutionException e) {
                ch.close();
                if (tls != null) { // the alert that closed it may still be on its way through the pipeline
                    try {
                        ch.eventLoop().submit(() -> { }).await(1, TimeUnit.SECONDS);
                    } catch (java.util.concurrent.RejectedExecutionException loopGone) {
                        // everything ran already
                    }
                }
                String tlsFailed = Transport.tlsFailure(ch);
                if (tlsFailed != null) {
                    throw new HandshakeException("TLS with " + server + " failed: " + tlsFailed
                            + " (does the peer run with --tls, and does its certificate chain to --tls-cacert?)", e.getCause());
                }
                if (tls != null && e.getCause() instanceof HandshakeException h && !h.byPeer()) {
                    throw new HandshakeException(h.getMessage() + " (TLS is on here: does the peer run with --tls?)", h);
                }
                if (e.getCause() instanceof HandshakeException h) {
                    throw h;
                }
                throw new IOException("handshake with " + server + " failed: " + e.getCause(), e.getCause());
            } catch (TimeoutException e) {
                ch.close();
                throw new IOException("no handshake with " + server + " within " + timeout);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            Transport.shutdown(group);
            throw new java.io.InterruptedIOException("interrupted while connecting to " + server);
        } catch (IOException e) {
            group.shutdownGracefully(0, 2, TimeUnit.SECONDS);
            throw e;
        }
    }
}
