package dev.lazypages.net;

import static dev.lazypages.net.PageFrameDescriptor.*;

import dev.lazypages.proc.CpuYield;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.CompositeByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.WriteBufferWaterMark;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

/**
 * The source's page server for post-copy: answers page requests from a {@link PageClient}
 * (frames in {@link PageFrameDescriptor}) with pages read by a {@link PageProvider}.
 *
 * <p>A connection must first send AUTH with the migration's token and its kind (FAULT or BULK);
 * a wrong or missing token is logged, answered with ERROR and closed. Each REQUEST is served on
 * the connection's event loop: a pooled direct buffer of exactly the pages' size is allocated, the
 * provider writes the pages straight into it (no further copy), and it goes out behind its header
 * in one gathering write, flushed at once. Serve latency (request decoded → response handed to the socket) is recorded in
 * nanoseconds.
 *
 * <p>Threads: two I/O event loops decode and write; FAULT requests are served right on their
 * connection's loop (no hop), BULK requests on a separate bulk thread ({@link BulkReader}: a
 * lock-free JCTools queue hands them over), so a fault is never served behind a bulk read,
 * whichever loops the connections landed on.
 */
public final class PageServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(PageServer.class.getName());
    /** A connection that has not authenticated within this time is refused. */
    static final int AUTH_TIMEOUT_SECONDS = 10;

    private final EventLoopGroup group;
    private final BulkReader bulkReader = new BulkReader("page-server-bulk");
    private final PageProvider provider;
    private final byte[] token;
    private final int pageSize;
    private Channel server;
    private final CompletableFuture<Void> done = new CompletableFuture<>();
    private final ChannelGroup children = new DefaultChannelGroup("page-server", GlobalEventExecutor.INSTANCE);
    private final AtomicLong servedPages = new AtomicLong();
    private final AtomicLong servedRequests = new AtomicLong();
    private final AtomicLong refused = new AtomicLong();
    private final Recorder latency = new Recorder(3);
    private final Histogram latencyTotal = new Histogram(3);
    /** System.nanoTime() of the last connection or request (a lost destination stays quiet). */
    private volatile long lastActivity = System.nanoTime();

    private PageServer(EventLoopGroup group, PageProvider provider, String token) {
        this.group = group;
        this.provider = provider;
        this.token = token.getBytes(StandardCharsets.UTF_8);
        this.pageSize = provider.pageSize();
        CpuYield.compilers(); // faults wait on this server: no JIT compile may hold a CPU they need
    }

    /** Binds {@code bind} (port 0: any free port) and serves {@code provider}'s pages to clients with {@code token}. */
    public static PageServer start(InetSocketAddress bind, PageProvider provider, String token) throws IOException {
        var secure = Transport.acceptSide(Transport.Plane.PAGE); // TLS when this process uses it
        EventLoopGroup group = Transport.group("page-server", 2);
        PageServer s = new PageServer(group, provider, token);
        try {
            s.server = new ServerBootstrap().group(group).channel(Transport.serverChannel())
                    .childOption(ChannelOption.TCP_NODELAY, true)
                    .childOption(ChannelOption.WRITE_BUFFER_WATER_MARK, new WriteBufferWaterMark(4 << 20, 16 << 20))
                    .childHandler(new ChannelInitializer<SocketChannel>() {
                        @Override
                        protected void initChannel(SocketChannel ch) {
                            s.children.add(ch);
                            secure.accept(ch);
                            ch.pipeline().addLast("decoder", new PageRequestDecoder());
                            ch.pipeline().addLast("serve", s.new Serve());
                        }
                    }).bind(bind).sync().channel();
            return s;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            Transport.shutdown(group);
            s.bulkReader.shutdown(true);
            throw new java.io.InterruptedIOException("interrupted while binding " + bind);
        } catch (Exception e) {
            Transport.shutdown(group);
            s.bulkReader.shutdown(true);
            throw new IOException("cannot start the page server on " + bind + ": " + e, e);
        }
    }

    /** A server that is not listening, for driving {@link #newHandler()} in an EmbeddedChannel. */
    static PageServer unbound(PageProvider provider, String token) {
        return new PageServer(null, provider, token);
    }

    /** The per-connection handler (terminal; goes after a {@link PageRequestDecoder}). */
    io.netty.channel.ChannelHandler newHandler() {
        return new Serve();
    }

    public InetSocketAddress localAddress() {
        return (InetSocketAddress) server.localAddress();
    }

    /** Completes when a client sends DONE (it needs no more pages). */
    public CompletableFuture<Void> done() {
        return done;
    }

    /** Pages sent so far. */
    public long servedPages() {
        return servedPages.get();
    }

    /** Requests answered with PAGES so far. */
    public long servedRequests() {
        return servedRequests.get();
    }

    /** Nanoseconds since the last connection was accepted or request answered. */
    public long idleNanos() {
        return System.nanoTime() - lastActivity;
    }

    /** Connections refused (wrong or missing token, page size mismatch). */
    public long refusedConnections() {
        return refused.get();
    }

    /** Serve latency of every request so far, in nanoseconds (a copy). */
    public Histogram serveLatency() {
        synchronized (latencyTotal) {
            latencyTotal.add(latency.getIntervalHistogram());
            return latencyTotal.copy();
        }
    }

    /** Forgets the latencies recorded so far (after a warm-up). */
    public void resetServeLatency() {
        synchronized (latencyTotal) {
            latency.reset();
            latencyTotal.reset();
        }
    }

    @Override
    public void close() {
        if (group == null || group.isShuttingDown()) {
            bulkReader.shutdown(true);
            return;
        }
        if (server != null) {
            server.close().awaitUninterruptibly();
        }
        // Connections first, then the bulk thread (whose last writes go to the I/O loops), then the loops.
        children.close().awaitUninterruptibly();
        bulkReader.shutdown(false);
        try {
            if (!bulkReader.awaitTermination(5000)) {
                LOG.log(System.Logger.Level.WARNING, "page server: a bulk read is still running after 5 s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        Transport.shutdown(group);
    }

    /** Per connection; terminal handler. */
    private final class Serve extends ChannelInboundHandlerAdapter {
        private int kind; // 0 until AUTH accepted, -1 once refused
        private ScheduledFuture<?> authTimeout;

        @Override
        public void channelActive(ChannelHandlerContext ctx) throws Exception {
            authTimeout = ctx.executor().schedule(() -> {
                if (kind == 0) {
                    refuse(ctx, "no AUTH within " + AUTH_TIMEOUT_SECONDS + " s");
                }
            }, AUTH_TIMEOUT_SECONDS, TimeUnit.SECONDS);
            super.channelActive(ctx);
        }

        @Override
        public void channelInactive(ChannelHandlerContext ctx) throws Exception {
            if (authTimeout != null) {
                authTimeout.cancel(false);
            }
            super.channelInactive(ctx);
        }

        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            PageRequest r = (PageRequest) msg; // holds no buffer: nothing to release
            if (kind < 0) {
                return; // refused, closing: ignore what was already on its way
            }
            switch (r.type()) {
                case TYPE_AUTH -> auth(ctx, r);
                case TYPE_REQUEST -> {
                    if (kind == 0) {
                        refuse(ctx, "missing token (REQUEST before AUTH)");
                    } else {
                        serve(ctx, r);
                    }
                }
                case TYPE_DONE -> {
                    if (kind == 0) {
                        refuse(ctx, "missing token (DONE before AUTH)");
                    } else {
                        LOG.log(System.Logger.Level.DEBUG, "page client {0} is done", ctx.channel().remoteAddress());
                        done.complete(null);
                    }
                }
                default -> throw new IllegalStateException("decoder passed " + r);
            }
        }

        private void auth(ChannelHandlerContext ctx, PageRequest r) {
            if (kind != 0) {
                refuse(ctx, "second AUTH");
                return;
            }
            if (!MessageDigest.isEqual(r.token().getBytes(StandardCharsets.UTF_8), token)) {
                refuse(ctx, "token mismatch");
                return;
            }
            if (r.vaddr() != pageSize) {
                refuse(ctx, "page size mismatch: client " + r.vaddr() + ", server " + pageSize);
                return;
            }
            if (r.flags() != KIND_FAULT && r.flags() != KIND_BULK) {
                refuse(ctx, "unknown connection kind " + r.flags());
                return;
            }
            kind = r.flags();
            if (kind == KIND_FAULT) {
                SpinThenBlock.enableHere(SpinThenBlock.spinNanos(SpinThenBlock.SERVER_PROPERTY, 0));
                // A fault's request wakes this loop ahead of the bulk reads. The slice is the loop
                // thread's: a BULK connection that landed on the same loop gets it too (its reads run
                // on the bulk thread, only its writes here).
                CpuYield.faultPath();
            }
            lastActivity = System.nanoTime();
            authTimeout.cancel(false);
            LOG.log(System.Logger.Level.DEBUG, "page client {0} connected ({1})", ctx.channel().remoteAddress(),
                    kind == KIND_FAULT ? "fault" : "bulk");
            ctx.writeAndFlush(writeHeader(ctx.alloc().buffer(HEADER_LENGTH), TYPE_ACCEPT, kind, 0, pageSize, 0));
        }

        private void refuse(ChannelHandlerContext ctx, String reason) {
            kind = -1;
            refused.incrementAndGet();
            LOG.log(System.Logger.Level.WARNING, "page server refused connection from {0}: {1}",
                    ctx.channel().remoteAddress(), reason);
            ctx.writeAndFlush(writeError(ctx.alloc().buffer(), 0, 0, 0, reason)).addListener(ChannelFutureListener.CLOSE);
        }

        private void serve(ChannelHandlerContext ctx, PageRequest r) {
            if (kind != KIND_BULK) {
                serveNow(ctx, r); // FAULT: right here on the I/O loop, no hop
                return;
            }
            // BULK: on the bulk thread, so that a long provider read never delays a fault request
            // whose connection shares this I/O loop. Its write hops back to the loop.
            try {
                bulkReader.execute(() -> serveNow(ctx, r));
            } catch (RejectedExecutionException closing) {
                ctx.close();
            }
        }

        private void serveNow(ChannelHandlerContext ctx, PageRequest r) {
            int n = r.nrPages();
            if (n <= 0 || n > MAX_PAGES) {
                ctx.writeAndFlush(writeError(ctx.alloc().buffer(), n, r.vaddr(), r.requestId(), "bad request for "
                        + Integer.toUnsignedString(n) + " pages at 0x" + Long.toHexString(r.vaddr()) + " (1.."
                        + MAX_PAGES + ")"));
                return;
            }
            int len = n * pageSize;
            // The header and the pages in buffers of their own, sent as one gathering write: a body of
            // exactly n pages (1 MiB for a bulk request) is a size the pooled allocator keeps, where
            // header + body (1 MiB + 24 bytes) was allocated afresh and faulted in page by page on
            // every request.
            ByteBuf body = ctx.alloc().directBuffer(len, len);
            CompositeByteBuf out = ctx.alloc().compositeDirectBuffer(2);
            boolean handed = false;
            try {
                out.addComponent(true, writeHeader(ctx.alloc().directBuffer(HEADER_LENGTH, HEADER_LENGTH), TYPE_PAGES, 0, n,
                        r.vaddr(), r.requestId()));
                ByteBuffer dst = body.nioBuffer(0, len); // a view of the body's memory: the provider fills it
                provider.readPages(r.vaddr(), n, dst);
                body.writerIndex(len);
                out.addComponent(true, body);
                body = null; // out owns it now
                handed = true;
                servedPages.addAndGet(n); // before the write: a client that has its pages sees them counted
                servedRequests.incrementAndGet();
                lastActivity = r.decodedNanos();
                ctx.writeAndFlush(out, ctx.voidPromise());
                latency.recordValue(Math.max(0, System.nanoTime() - r.decodedNanos()));
                if (!ctx.channel().isWritable()) { // the client does not read: stop taking its requests
                    ctx.channel().config().setAutoRead(false);
                }
            } catch (Exception e) {
                String m = "cannot read " + n + " pages at 0x" + Long.toHexString(r.vaddr()) + ": " + e.getMessage();
                LOG.log(System.Logger.Level.WARNING, "page server: " + m);
                ctx.writeAndFlush(writeError(ctx.alloc().buffer(), n, r.vaddr(), r.requestId(), m));
            } finally {
                if (!handed) {
                    out.release();
                    if (body != null) {
                        body.release();
                    }
                }
            }
        }

        @Override
        public void channelWritabilityChanged(ChannelHandlerContext ctx) throws Exception {
            if (ctx.channel().isWritable()) {
                ctx.channel().config().setAutoRead(true);
            }
            super.channelWritabilityChanged(ctx);
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            LOG.log(System.Logger.Level.WARNING, "page server connection from " + ctx.channel().remoteAddress()
                    + " failed: " + cause);
            ctx.close();
        }
    }
}
