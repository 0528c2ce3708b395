package dev.lazypages.perf;

import io.netty.bootstrap.Bootstrap;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.IoHandlerFactory;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.ServerChannel;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.epoll.EpollServerSocketChannel;
import io.netty.channel.epoll.EpollSocketChannel;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.util.concurrent.DefaultThreadFactory;
import io.netty.util.concurrent.ScheduledFuture;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A TCP proxy on loopback that delays every chunk it relays by a fixed one-way time, in each
 * direction, and keeps their order: a link with that latency and no bandwidth limit of its own
 * (this machine's kernel has no netem qdisc). Each accepted connection gets its own connection
 * to the target, on the same event loop thread, so a chunk is only ever touched by one thread.
 *
 * <p>A chunk read at time t is written at t + delay (scheduled on the loop; with the epoll
 * transport its timer has microsecond resolution, with NIO a millisecond). Held chunks wait in a
 * FIFO per direction; since the deadlines grow with the arrival times, writing the head first
 * keeps the byte order. When more than {@link #HIGH_WATER_BYTES} are held in one direction, or
 * the other side stops taking writes, the proxy stops reading that direction until it drains
 * (TCP back-pressure to the sender). A close is passed on after the data before it.
 *
 * <p>Only loopback: it binds 127.0.0.1 and refuses a target that is not a loopback address.
 */
public final class DelayProxy implements AutoCloseable {
    /** Held bytes in one direction above which reading from its sender pauses. */
    static final int HIGH_WATER_BYTES = 32 << 20;
    /** Held bytes below which it resumes. */
    static final int LOW_WATER_BYTES = 8 << 20;

    private final EventLoopGroup group;
    private final long delayNanos;
    private final AtomicLong relayedBytes = new AtomicLong();
    private final AtomicLong connections = new AtomicLong();
    private Channel server;

    private DelayProxy(EventLoopGroup group, long delayNanos) {
        this.group = group;
        this.delayNanos = delayNanos;
    }

    /**
     * Listens on 127.0.0.1 (any free port) and relays every connection to {@code target}, each
     * chunk {@code oneWay} late in each direction.
     *
     * @throws IllegalArgumentException {@code target} is not a loopback address, or {@code oneWay} is negative
     */
    public static DelayProxy start(InetSocketAddress target, Duration oneWay) throws IOException {
        if (target.getAddress() == null || !target.getAddress().isLoopbackAddress()) {
            throw new IllegalArgumentException("the delay proxy relays to loopback only, not " + target);
        }
        if (oneWay.isNegative()) {
            throw new IllegalArgumentException("negative delay " + oneWay);
        }
        boolean epoll = Epoll.isAvailable();
        IoHandlerFactory io = epoll ? EpollIoHandler.newFactory() : NioIoHandler.newFactory();
        Class<? extends ServerChannel> serverChannel = epoll ? EpollServerSocketChannel.class : NioServerSocketChannel.class;
        Class<? extends Channel> socketChannel = epoll ? EpollSocketChannel.class : NioSocketChannel.class;
        DelayProxy p = new DelayProxy(new MultiThreadIoEventLoopGroup(1, new DefaultThreadFactory("delay-proxy", true), io),
                oneWay.toNanos());
        try {
            p.server = new ServerBootstrap().group(p.group).channel(serverChannel)
                    .childOption(ChannelOption.TCP_NODELAY, true)
                    .childOption(ChannelOption.AUTO_READ, false) // until the target is connected
                    .childHandler(new ChannelInitializer<SocketChannel>() {
                        @Override
                        protected void initChannel(SocketChannel in) {
                            p.connections.incrementAndGet();
                            Relay toTarget = new Relay(p.delayNanos, p.relayedBytes);
                            Relay toClient = new Relay(p.delayNanos, p.relayedBytes);
                            in.pipeline().addLast(toTarget);
                            new Bootstrap().group(in.eventLoop()).channel(socketChannel)
                                    .option(ChannelOption.TCP_NODELAY, true)
                                    .handler(toClient)
                                    .connect(target).addListener((ChannelFutureListener) f -> {
                                        if (!f.isSuccess()) {
                                            in.close();
                                            return;
                                        }
                                        toTarget.peer = f.channel();
                                        toClient.peer = in;
                                        in.config().setAutoRead(true);
                                    });
                        }
                    }).bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0)).sync().channel();
            return p;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            p.group.shutdownGracefully(0, 1, TimeUnit.SECONDS);
            throw new java.io.InterruptedIOException("interrupted while starting the delay proxy");
        } catch (RuntimeException e) {
            p.group.shutdownGracefully(0, 1, TimeUnit.SECONDS);
            throw new IOException("cannot start the delay proxy: " + e, e);
        }
    }

    /** Where clients connect. */
    public InetSocketAddress address() {
        return (InetSocketAddress) server.localAddress();
    }

    /** The one-way delay. */
    public Duration delay() {
        return Duration.ofNanos(delayNanos);
    }

    /** Bytes relayed so far, both directions. */
    public long relayedBytes() {
        return relayedBytes.get();
    }

    /** Connections accepted so far. */
    public long connections() {
        return connections.get();
    }

    @Override
    public void close() {
        server.close().awaitUninterruptibly();
        group.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
    }

    /** One direction: reads from its channel, writes to {@link #peer} after the delay. */
    private static final class Relay extends ChannelInboundHandlerAdapter {
        private static final Object CLOSE = new Object();

        private record Held(long due, Object msg) {
        }

        private final long delay;
        private final AtomicLong relayed;
        private final ArrayDeque<Held> held = new ArrayDeque<>();
        private long heldBytes;
        private ScheduledFuture<?> timer;
        private ChannelHandlerContext ctx;
        Channel peer; // set on the loop before the first read

        Relay(long delay, AtomicLong relayed) {
            this.delay = delay;
            this.relayed = relayed;
        }

        @Override
        public void handlerAdded(ChannelHandlerContext c) {
            ctx = c;
        }

        @Override
        public void channelRead(ChannelHandlerContext c, Object msg) {
            ByteBuf b = (ByteBuf) msg; // ownership moves to the queue, then to the peer's write
            heldBytes += b.readableBytes();
            hold(msg);
            throttle();
        }

        @Override
        public void channelInactive(ChannelHandlerContext c) {
            hold(CLOSE); // after the data before it
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext c, Throwable cause) {
            c.close();
        }

        @Override
        public void channelWritabilityChanged(ChannelHandlerContext c) {
            // This channel is the peer of the other direction: let that one's sender go on.
            Channel other = peer;
            if (other != null && c.channel().isWritable()) {
                other.config().setAutoRead(true);
            }
            c.fireChannelWritabilityChanged();
        }

        private void hold(Object msg) {
            held.addLast(new Held(System.nanoTime() + delay, msg));
            if (timer == null) {
                arm();
            }
        }

        private void arm() {
            long wait = held.peekFirst().due() - System.nanoTime();
            timer = ctx.executor().schedule(this::release, Math.max(0, wait), TimeUnit.NANOSECONDS);
        }

        /** Writes every chunk that is due, in order; re-arms for the next one. */
        private void release() {
            timer = null;
            Channel out = peer;
            long now = System.nanoTime();
            boolean wrote = false;
            while (!held.isEmpty() && held.peekFirst().due() - now <= 0) {
                Object m = held.pollFirst().msg();
                if (m == CLOSE) {
                    drop();
                    if (out != null) {
                        out.writeAndFlush(Unpooled.EMPTY_BUFFER).addListener(ChannelFutureListener.CLOSE);
                    }
                    return;
                }
                ByteBuf b = (ByteBuf) m;
                heldBytes -= b.readableBytes();
                relayed.addAndGet(b.readableBytes());
                if (out == null || !out.isActive()) {
                    b.release();
                    continue;
                }
                out.write(b, out.voidPromise());
                wrote = true;
            }
            if (wrote) {
                out.flush();
            }
            throttle();
            if (!held.isEmpty()) {
                arm();
            }
        }

        /** Reads from this direction's sender only while little is held and the receiver takes writes. */
        private void throttle() {
            Channel out = peer;
            boolean full = heldBytes > HIGH_WATER_BYTES || (out != null && !out.isWritable());
            if (full) {
                ctx.channel().config().setAutoRead(false);
            } else if (heldBytes < LOW_WATER_BYTES && !ctx.channel().config().isAutoRead()) {
                ctx.channel().config().setAutoRead(true);
            }
        }

        private void drop() {
            for (Held h : held) {
                if (h.msg() instanceof ByteBuf b) {
                    b.release();
                }
            }
            held.clear();
            heldBytes = 0;
        }
    }
}
