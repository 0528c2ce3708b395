package dev.lazypages.net;

import dev.lazypages.net.proto.ControlMessage;
import dev.lazypages.net.proto.Refuse;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelOutboundHandlerAdapter;
import io.netty.channel.ChannelPromise;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.FileRegion;
import io.netty.channel.IoHandlerFactory;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.ServerChannel;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.handler.codec.ByteToMessageDecoder;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslHandler;
import io.netty.handler.ssl.SslHandler;
import io.netty.handler.ssl.SslHandshakeCompletionEvent;
import io.netty.handler.stream.ChunkedInput;
import io.netty.handler.stream.ChunkedWriteHandler;
import io.netty.util.AttributeKey;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.WritableByteChannel;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import javax.net.ssl.SSLParameters;

/**
 * The Netty transport of this package: epoll ({@code new MultiThreadIoEventLoopGroup(
 * EpollIoHandler.newFactory())}) when the native transport loads, else NIO, with the reason
 * logged once.
 *
 * <p>netty-transport-native-epoll is a runtime-scope dependency (see the parent pom), so its
 * classes are looked up by name here, once, instead of being compiled against.
 *
 * <p>Also the security of every pipeline ({@link #acceptSide}, {@link #connectSide}): with
 * {@link Tls#forThisProcess()} set, an SslHandler first (a server refuses a plain-text peer
 * with a message its protocol understands); without it, a server only looks at a connection's
 * first bytes to refuse a TLS peer clearly, then steps out of the pipeline. No TLS handler is
 * ever added when TLS is off.
 */
final class Transport {
    private static final System.Logger LOG = System.getLogger(Transport.class.getName());
    private static final Epoll EPOLL = probe();

    private record Epoll(IoHandlerFactory factory, Class<? extends io.netty.channel.Channel> socket,
                         Class<? extends ServerChannel> server) {
    }

    private Transport() {
    }

    @SuppressWarnings("unchecked")
    private static Epoll probe() {
        Throwable why;
        try {
            Class<?> epoll = Class.forName("io.netty.channel.epoll.Epoll");
            if ((Boolean) epoll.getMethod("isAvailable").invoke(null)) {
                IoHandlerFactory f = (IoHandlerFactory) Class.forName("io.netty.channel.epoll.EpollIoHandler")
                        .getMethod("newFactory", int.class, io.netty.channel.SelectStrategyFactory.class)
                        .invoke(null, 0, SpinThenBlock.FACTORY);
                return new Epoll(f,
                        (Class<? extends io.netty.channel.Channel>) Class.forName("io.netty.channel.epoll.EpollSocketChannel"),
                        (Class<? extends ServerChannel>) Class.forName("io.netty.channel.epoll.EpollServerSocketChannel"));
            }
            why = (Throwable) epoll.getMethod("unavailabilityCause").invoke(null);
        } catch (ReflectiveOperationException | LinkageError e) {
            why = e;
        }
        LOG.log(System.Logger.Level.WARNING, "native epoll transport unavailable, falling back to NIO: {0}",
                String.valueOf(why));
        return null;
    }

    /** True when the epoll transport is in use. */
    static boolean epoll() {
        return EPOLL != null;
    }

    /** An event loop group of {@code threads} daemon threads named {@code name-N}. */
    static EventLoopGroup group(String name, int threads) {
        DefaultThreadFactory tf = new DefaultThreadFactory(name, true);
        return new MultiThreadIoEventLoopGroup(threads, tf, EPOLL != null ? EPOLL.factory : NioIoHandler.newFactory());
    }

    static Class<? extends io.netty.channel.Channel> socketChannel() {
        return EPOLL != null ? EPOLL.socket : NioSocketChannel.class;
    }

    static Class<? extends ServerChannel> serverChannel() {
        return EPOLL != null ? EPOLL.server : NioServerSocketChannel.class;
    }

    /** What a connection carries: how a refusal is worded on it, and whether files are sent on it. */
    enum Plane {
        /** {@link ControlConnection}: protobuf, varint-framed; sends files (FileRegion). */
        CONTROL,
        /** {@link PageServer}/{@link PageClient}: {@link PageFrameDescriptor} frames. */
        PAGE;

        /** A refusal in this plane's own framing, sent in plain text to a peer that does not speak TLS. */
        ByteBuf refusal(ByteBufAllocator alloc, String reason) {
            if (this == PAGE) {
                return PageFrameDescriptor.writeError(alloc.buffer(), 0, 0, 0, reason);
            }
            byte[] m = ControlMessage.newBuilder().setRefuse(Refuse.newBuilder().setReason(reason)).build().toByteArray();
            ByteBuf b = alloc.buffer(5 + m.length);
            int n = m.length;
            while ((n & ~0x7f) != 0) { // varint32 length prefix, as ProtobufVarint32LengthFieldPrepender writes it
                b.writeByte((n & 0x7f) | 0x80);
                n >>>= 7;
            }
            return b.writeByte(n).writeBytes(m);
        }

        String describe() {
            return this == PAGE ? "page" : "control";
        }
    }

    /**
     * What to do to each channel a server starting now accepts (call it first in initChannel):
     * TLS when this process uses it, else a guard that refuses TLS peers with a clear message.
     *
     * @throws IOException when TLS is on but this side has no certificate to accept with
     */
    static Consumer<Channel> acceptSide(Plane plane) throws IOException {
        return acceptSide(plane, Tls.forThisProcess());
    }

    static Consumer<Channel> acceptSide(Plane plane, Tls tls) throws IOException {
        if (tls == null) {
            return ch -> ch.pipeline().addFirst("tlsGuard", new TlsGuard(plane, false));
        }
        SslContext ctx = tls.server();
        return ch -> {
            addFileRegionSupport(ch, plane);
            ch.pipeline().addFirst("tlsReport", new HandshakeReport(plane, "from"));
            ch.pipeline().addFirst("tls", ctx.newHandler(ch.alloc()));
            ch.pipeline().addFirst("tlsGuard", new TlsGuard(plane, true));
        };
    }

    /** What to do to each channel connecting now to {@code peer} (call it first in initChannel): TLS when this process uses it. */
    static Consumer<Channel> connectSide(Plane plane, InetSocketAddress peer) {
        return connectSide(plane, peer, Tls.forThisProcess());
    }

    static Consumer<Channel> connectSide(Plane plane, InetSocketAddress peer, Tls tls) {
        if (tls == null) {
            return ch -> {
            };
        }
        SslContext ctx = tls.client();
        return ch -> {
            addFileRegionSupport(ch, plane);
            ch.pipeline().addFirst("tlsReport", new HandshakeReport(plane, "with"));
            SslHandler h = ctx.newHandler(ch.alloc(), peer.getHostString(), peer.getPort());
            if (tls.options().caCert() != null) {
                // the chain to the CA is not enough: the certificate must name the address dialled
                // (subjectAltName IP or DNS), or any holder of a certificate from that CA could pose as the peer
                SSLParameters p = h.engine().getSSLParameters();
                p.setEndpointIdentificationAlgorithm("HTTPS");
                h.engine().setSSLParameters(p);
            }
            ch.pipeline().addFirst("tls", h);
        };
    }

    /** Why TLS failed on a channel (handshake, or an alert right after it), kept past its close. */
    private static final AttributeKey<String> TLS_FAILURE = AttributeKey.valueOf("lazypages.tlsFailure");

    /** Why TLS failed on {@code ch}, in one line; null when it did not (or the channel has no TLS). */
    static String tlsFailure(Channel ch) {
        return ch.attr(TLS_FAILURE).get();
    }

    /** SslHandler takes ByteBufs only: the control plane's files go through it in chunks. */
    private static void addFileRegionSupport(Channel ch, Plane plane) {
        if (plane == Plane.CONTROL) {
            ch.pipeline().addFirst("tlsRegions", new RegionsAsChunks());
            ch.pipeline().addFirst("tlsChunks", new ChunkedWriteHandler());
        }
    }

    /**
     * Looks at a server connection's first bytes only, then steps out of the pipeline: without
     * TLS here, a peer that speaks TLS is refused (logged, closed); with TLS here, a peer that
     * speaks plain text is sent a refusal in its own protocol, in plain text, so it can say why.
     */
    private static final class TlsGuard extends ByteToMessageDecoder {
        private final Plane plane;
        private final boolean tlsHere;

        TlsGuard(Plane plane, boolean tlsHere) {
            this.plane = plane;
            this.tlsHere = tlsHere;
        }

        @Override
        protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
            if (in.readableBytes() < 5) {
                return;
            }
            if (SslHandler.isEncrypted(in, false) == tlsHere) {
                ctx.pipeline().remove(this); // hands what it holds on
                return;
            }
            in.skipBytes(in.readableBytes());
            if (!tlsHere) {
                LOG.log(System.Logger.Level.WARNING, "{0} connection from {1} refused: the peer speaks TLS, this side "
                        + "runs without --tls", plane.describe(), ctx.channel().remoteAddress());
                ctx.close();
                return;
            }
            String reason = "this side requires TLS: run the peer with --tls";
            LOG.log(System.Logger.Level.WARNING, "{0} connection from {1} refused: plain text, {2}", plane.describe(),
                    ctx.channel().remoteAddress(), reason);
            ctx.writeAndFlush(plane.refusal(ctx.alloc(), reason)).addListener(ChannelFutureListener.CLOSE);
        }
    }

    /**
     * Logs a failed TLS handshake in one line, with the likely cause, and keeps it for
     * {@link #tlsFailure}. Stays in the pipeline: with TLS 1.3 a client learns that its
     * certificate was refused only after its own handshake completed.
     */
    private static final class HandshakeReport extends ChannelInboundHandlerAdapter {
        private final Plane plane;
        private final String preposition;

        HandshakeReport(Plane plane, String preposition) {
            this.plane = plane;
            this.preposition = preposition;
        }

        @Override
        public void userEventTriggered(ChannelHandlerContext ctx, Object evt) throws Exception {
            if (evt instanceof SslHandshakeCompletionEvent e && !e.isSuccess()) {
                failed(ctx, e.cause());
            }
            super.userEventTriggered(ctx, evt);
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) throws Exception {
            for (Throwable t = cause; t != null; t = t.getCause() == t ? null : t.getCause()) {
                if (t instanceof javax.net.ssl.SSLException) {
                    failed(ctx, t);
                    break;
                }
            }
            super.exceptionCaught(ctx, cause);
        }

        private void failed(ChannelHandlerContext ctx, Throwable cause) {
            String why = Tls.oneLine(cause);
            if (ctx.channel().attr(TLS_FAILURE).setIfAbsent(why) == null) {
                LOG.log(System.Logger.Level.WARNING, "{0} connection {1} {2}: TLS failed: {3} (do both sides run with --tls, "
                        + "and does the peer''s certificate chain to --tls-cacert?)", plane.describe(), preposition,
                        ctx.channel().remoteAddress(), why);
            }
        }
    }

    /** Turns a FileRegion into a ChunkedInput for the ChunkedWriteHandler in front of it. */
    private static final class RegionsAsChunks extends ChannelOutboundHandlerAdapter {
        @Override
        public void write(ChannelHandlerContext ctx, Object msg, ChannelPromise promise) {
            ctx.write(msg instanceof FileRegion r ? new RegionChunks(r) : msg, promise);
        }
    }

    /** A FileRegion read in 64 KiB chunks (through its own transferTo, so any region works). */
    private static final class RegionChunks implements ChunkedInput<ByteBuf> {
        private static final int CHUNK = 64 << 10;
        private final FileRegion region;
        private long done;

        RegionChunks(FileRegion region) {
            this.region = region;
        }

        @Override
        public boolean isEndOfInput() {
            return done >= region.count();
        }

        @Override
        public void close() {
            region.release();
        }

        @Override
        @Deprecated
        public ByteBuf readChunk(ChannelHandlerContext ctx) throws Exception {
            return readChunk(ctx.alloc());
        }

        @Override
        public ByteBuf readChunk(ByteBufAllocator alloc) throws Exception {
            if (isEndOfInput()) {
                return null;
            }
            int n = (int) Math.min(CHUNK, region.count() - done);
            ByteBuf b = alloc.buffer(n);
            boolean ok = false;
            try {
                WritableByteChannel into = new WritableByteChannel() {
                    @Override
                    public int write(ByteBuffer src) {
                        int k = Math.min(src.remaining(), b.writableBytes());
                        ByteBuffer part = src.slice(src.position(), k);
                        b.writeBytes(part);
                        src.position(src.position() + k);
                        return k;
                    }

                    @Override
                    public boolean isOpen() {
                        return true;
                    }

                    @Override
                    public void close() {
                    }
                };
                while (b.readableBytes() < n) {
                    long t = region.transferTo(into, done + b.readableBytes());
                    if (t <= 0) {
                        throw new IOException("file region ended at " + (done + b.readableBytes()) + " of " + region.count());
                    }
                }
                done += n;
                ok = true;
                return b;
            } finally {
                if (!ok) {
                    b.release();
                }
            }
        }

        @Override
        public long length() {
            return region.count();
        }

        @Override
        public long progress() {
            return done;
        }
    }

    static void shutdown(EventLoopGroup group) {
        group.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
    }
}
