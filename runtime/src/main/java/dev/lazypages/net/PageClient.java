package dev.lazypages.net;

import static dev.lazypages.net.PageFrameDescriptor.*;

import dev.lazypages.ffm.PageBuffer;
import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The destination's side of the page plane: two connections to a {@link PageServer}, FAULT and
 * BULK, each on its own event loop thread, so a fault request never waits behind bulk transfer
 * (not in our socket buffers, not in the server's, not on a shared thread).
 *
 * <p>{@link #fetch} and {@link #fetchBulk} block the calling thread until the pages are in the
 * caller's {@link PageBuffer}. Any number of threads may call them at once; requests are
 * matched to responses by request id. The event loop copies each response body from the
 * received buffer into the destination ({@code ByteBuf.getBytes} into a view of the page
 * buffer) and releases it; the caller then UFFDIO_COPYs from the page buffer. This is one memcpy
 * more than UFFDIO_COPY straight from the network buffer (possible: UFFDIO_COPY accepts an
 * unaligned source), chosen because {@link dev.lazypages.lazy.LazySource} hands out page buffers
 * and the copy costs ~0.2 µs per 4 KiB page against a network round trip of tens of µs.
 *
 * <p>Bulk fetches are split into requests of {@link #BULK_REQUEST_PAGES} pages with up to
 * {@link #BULK_WINDOW} in flight (pipelining). No reconnect: a broken connection fails every
 * pending and later fetch.
 */
public final class PageClient implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(PageClient.class.getName());
    /** Pages per bulk request (256 KiB of 4 KiB pages). */
    public static final int BULK_REQUEST_PAGES = 64;
    /** Bulk requests in flight per {@link #fetchBulk} call. */
    public static final int BULK_WINDOW = 8;
    /** How long a fetch waits for its response. */
    public static final Duration DEFAULT_FETCH_TIMEOUT = Duration.ofSeconds(30);

    private final EventLoopGroup group;
    private final InetSocketAddress server;
    private final int pageSize;
    private final long fetchTimeoutNanos;
    private Conn fault;
    private Conn bulk;

    private PageClient(EventLoopGroup group, InetSocketAddress server, int pageSize, Duration fetchTimeout) {
        this.group = group;
        this.server = server;
        this.pageSize = pageSize;
        this.fetchTimeoutNanos = fetchTimeout.toNanos();
    }

    /** {@link #connect(InetSocketAddress, String, Duration)} with a 10 s timeout. */
    public static PageClient connect(InetSocketAddress server, String token) throws IOException {
        return connect(server, token, Duration.ofSeconds(10));
    }

    /**
     * Opens the FAULT and the BULK connection to {@code server} and authenticates both with
     * {@code token}, using this machine's page size.
     *
     * @throws HandshakeException when the server refused (reason included, e.g. "token mismatch")
     */
    public static PageClient connect(InetSocketAddress server, String token, Duration timeout) throws IOException {
        int ps = (int) dev.lazypages.ffm.Posix.pageSize();
        EventLoopGroup group = Transport.group("page-client", 2);
        PageClient c = new PageClient(group, server, ps, DEFAULT_FETCH_TIMEOUT);
        try {
            c.fault = c.open(KIND_FAULT, token, timeout);
            c.bulk = c.open(KIND_BULK, token, timeout);
            return c;
        } catch (IOException | RuntimeException e) {
            c.close();
            throw e;
        }
    }

    private Conn open(int kind, String token, Duration timeout) throws IOException {
        Conn conn = new Conn(kind);
        var secure = Transport.connectSide(Transport.Plane.PAGE, server); // TLS when this process uses it
        Bootstrap b = new Bootstrap().group(group).channel(Transport.socketChannel())
                .option(ChannelOption.TCP_NODELAY, true)
                .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int) Math.max(1, timeout.toMillis()))
                .handler(new ChannelInitializer<SocketChannel>() {
                    @Override
                    protected void initChannel(SocketChannel ch) {
                        secure.accept(ch);
                        ch.pipeline().addLast("decoder", new PageResponseDecoder(pageSize, MAX_PAGES));
                        ch.pipeline().addLast("responses", conn);
                    }
                });
        try {
            ChannelFuture cf = b.connect(server);
            if (!cf.await(timeout.toMillis(), TimeUnit.MILLISECONDS) || !cf.isSuccess()) {
                cf.channel().close();
                throw new IOException("cannot connect to page server " + server + ": "
                        + (cf.cause() == null ? "timed out after " + timeout : cf.cause()), cf.cause());
            }
            conn.channel = cf.channel();
            byte[] t = token.getBytes(StandardCharsets.UTF_8);
            if (t.length > MAX_TOKEN_BYTES) {
                throw new IllegalArgumentException("token longer than " + MAX_TOKEN_BYTES + " bytes");
            }
            ByteBuf auth = conn.channel.alloc().buffer(HEADER_LENGTH + t.length);
            writeHeader(auth, TYPE_AUTH, kind, t.length, pageSize, 0).writeBytes(t);
            conn.channel.writeAndFlush(auth);
            conn.accepted.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
            return conn;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted while connecting to page server " + server);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof IOException io) {
                throw io;
            }
            throw new IOException("page server " + server + ": " + e.getCause(), e.getCause());
        } catch (TimeoutException e) {
            throw new IOException("page server " + server + " did not accept within " + timeout);
        }
    }

    public int pageSize() {
        return pageSize;
    }

    public InetSocketAddress serverAddress() {
        return server;
    }

    /**
     * Fetches {@code nrPages} pages at {@code vaddr} into {@code dst} at byte {@code dstOffset}
     * (a multiple of the page size) over the FAULT connection; returns when they are there. More
     * than {@link PageFrameDescriptor#MAX_PAGES} pages go as several pipelined requests.
     *
     * @throws IOException naming the address when the server cannot serve them, the connection
     *                     breaks, or no answer comes within 30 s
     */
    public void fetch(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        fetchOn(fault, vaddr, nrPages, dst, dstOffset, MAX_PAGES);
    }

    /** As {@link #fetch}, over the BULK connection, as pipelined requests of {@link #BULK_REQUEST_PAGES}. */
    public void fetchBulk(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        fetchOn(bulk, vaddr, nrPages, dst, dstOffset, BULK_REQUEST_PAGES);
    }

    private void fetchOn(Conn c, long vaddr, int nrPages, PageBuffer dst, long dstOffset, int chunk) throws IOException {
        if (nrPages <= 0 || dstOffset < 0 || dstOffset % pageSize != 0
                || dstOffset + (long) nrPages * pageSize > dst.byteSize()) {
            throw new IllegalArgumentException(nrPages + " pages at offset " + dstOffset + " do not fit a buffer of "
                    + dst.byteSize() + " bytes page-aligned");
        }
        if (nrPages <= chunk) { // the fault path: one request, no queue
            c.await(c.request(vaddr, nrPages, dst, dstOffset));
            return;
        }
        ArrayDeque<Pending> inflight = new ArrayDeque<>(BULK_WINDOW);
        IOException first = null;
        int issued = 0;
        while (issued < nrPages || !inflight.isEmpty()) {
            if (first == null && issued < nrPages && inflight.size() < BULK_WINDOW) {
                int n = Math.min(chunk, nrPages - issued);
                try {
                    inflight.add(c.request(vaddr + (long) issued * pageSize, n, dst, dstOffset + (long) issued * pageSize));
                } catch (IOException e) {
                    first = e;
                }
                issued += n;
                continue;
            }
            if (first != null) {
                issued = nrPages; // stop issuing; collect what is in flight so nothing writes into dst later
            }
            Pending p = inflight.poll();
            if (p == null) {
                break;
            }
            try {
                c.await(p);
            } catch (IOException e) {
                if (first == null) {
                    first = e;
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }

    /**
     * Sends one request for {@code nrPages} (at most {@link PageFrameDescriptor#MAX_PAGES}) pages
     * on the BULK connection and returns at once; the pages land in {@code dst} at
     * {@code dstOffset} before {@link Fetch#await} returns. The buffer must not be reused or
     * freed before that. For readahead.
     */
    public Fetch fetchBulkAsync(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        if (nrPages <= 0 || nrPages > MAX_PAGES || dstOffset < 0 || dstOffset % pageSize != 0
                || dstOffset + (long) nrPages * pageSize > dst.byteSize()) {
            throw new IllegalArgumentException(nrPages + " pages at offset " + dstOffset + " do not fit a buffer of "
                    + dst.byteSize() + " bytes (or exceed " + MAX_PAGES + ")");
        }
        return bulk.request(vaddr, nrPages, dst, dstOffset);
    }

    /** Tells the server no more pages are needed (its {@link PageServer#done()} completes). */
    public void done() throws IOException {
        ByteBuf b = fault.channel.alloc().buffer(HEADER_LENGTH);
        writeHeader(b, TYPE_DONE, 0, 0, 0, 0);
        ChannelFuture f = fault.channel.writeAndFlush(b).awaitUninterruptibly();
        if (!f.isSuccess()) {
            throw new IOException("cannot send DONE to page server " + server + ": " + f.cause(), f.cause());
        }
    }

    /** Closes both connections; pending fetches fail. */
    @Override
    public void close() {
        if (group.isShuttingDown()) {
            return;
        }
        for (Conn c : new Conn[] {fault, bulk}) {
            if (c != null && c.channel != null) {
                c.channel.close().awaitUninterruptibly();
            }
        }
        Transport.shutdown(group);
    }

    /** A request in flight (see {@link #fetchBulkAsync}). */
    public interface Fetch {
        /** Waits until the pages are in the buffer, as {@link #fetch} does. Call it once. */
        void await() throws IOException;

        /** True once a response (or failure) arrived; {@link #await} then returns or throws at once. */
        boolean isDone();
    }

    private record Pending(Conn conn, long id, long vaddr, int nrPages, PageBuffer dst, long dstOffset,
                           CompletableFuture<Void> f) implements Fetch {
        @Override
        public void await() throws IOException {
            conn.await(this);
        }

        @Override
        public boolean isDone() {
            return f.isDone();
        }
    }

    /** One connection and its terminal handler. */
    private final class Conn extends ChannelInboundHandlerAdapter {
        final int kind;
        final CompletableFuture<Void> accepted = new CompletableFuture<>();
        final ConcurrentHashMap<Long, Pending> pending = new ConcurrentHashMap<>();
        final AtomicLong ids = new AtomicLong();
        volatile Channel channel;
        volatile IOException closedCause;

        Conn(int kind) {
            this.kind = kind;
        }

        String name() {
            return kind == KIND_FAULT ? "fault" : "bulk";
        }

        Pending request(long vaddr, int n, PageBuffer dst, long off) throws IOException {
            long id = ids.incrementAndGet();
            Pending p = new Pending(this, id, vaddr, n, dst, off, new CompletableFuture<>());
            pending.put(id, p);
            IOException closed = closedCause; // read after put: either we see it or failAll sees p
            if (closed != null) {
                pending.remove(id);
                throw new IOException(closed.getMessage() + " (fetching " + n + " pages at 0x" + Long.toHexString(vaddr)
                        + ")", closed);
            }
            ByteBuf b = channel.alloc().directBuffer(HEADER_LENGTH);
            writeHeader(b, TYPE_REQUEST, 0, n, vaddr, id);
            channel.writeAndFlush(b, channel.voidPromise());
            return p;
        }

        void await(Pending p) throws IOException {
            try {
                p.f.get(fetchTimeoutNanos, TimeUnit.NANOSECONDS);
            } catch (TimeoutException e) {
                if (pending.remove(p.id, p)) {
                    throw new SocketTimeoutException("page server " + server + " did not send " + p.nrPages
                            + " pages at 0x" + Long.toHexString(p.vaddr) + " within "
                            + Duration.ofNanos(fetchTimeoutNanos));
                }
                p.f.join(); // the event loop is copying it right now
            } catch (InterruptedException e) {
                pending.remove(p.id, p);
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted while fetching pages at 0x" + Long.toHexString(p.vaddr));
            } catch (ExecutionException e) {
                Throwable c = e.getCause();
                throw new IOException(c.getMessage(), c);
            }
        }

        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            PageResponse r = (PageResponse) msg;
            try {
                switch (r.type()) {
                    case TYPE_PAGES -> pages(r);
                    case TYPE_ERROR -> {
                        if (!accepted.isDone()) {
                            accepted.completeExceptionally(new HandshakeException(r.error(), true));
                            return;
                        }
                        Pending p = pending.remove(r.requestId());
                        if (p == null) {
                            LOG.log(System.Logger.Level.WARNING, "page server {0}: {1}", server, r.error());
                            return;
                        }
                        p.f.completeExceptionally(new IOException("page server " + server + " failed to serve "
                                + p.nrPages + " pages at 0x" + Long.toHexString(p.vaddr) + ": " + r.error()));
                    }
                    case TYPE_ACCEPT -> {
                        if (r.vaddr() != pageSize) {
                            accepted.completeExceptionally(new HandshakeException("page size mismatch: server "
                                    + r.vaddr() + ", client " + pageSize, false));
                            ctx.close();
                        } else {
                            accepted.complete(null);
                        }
                    }
                    default -> throw new IllegalStateException("decoder passed " + r);
                }
            } finally {
                if (r.data() != null) {
                    r.data().release();
                }
            }
        }

        private void pages(PageResponse r) {
            Pending p = pending.remove(r.requestId());
            if (p == null) {
                LOG.log(System.Logger.Level.WARNING, "page server {0} sent pages for unknown request {1}", server,
                        r.requestId());
                return;
            }
            if (r.nrPages() != p.nrPages || r.vaddr() != p.vaddr) {
                p.f.completeExceptionally(new IOException("page server " + server + " answered request for " + p.nrPages
                        + " pages at 0x" + Long.toHexString(p.vaddr) + " with " + r.nrPages() + " pages at 0x"
                        + Long.toHexString(r.vaddr())));
                return;
            }
            ByteBuf data = r.data();
            int len = p.nrPages * pageSize;
            // a view of just these pages: the buffer itself may be larger than a ByteBuffer can address
            data.getBytes(data.readerIndex(), p.dst.pages(p.dstOffset / pageSize, p.nrPages).asByteBuffer());
            p.f.complete(null);
        }

        @Override
        public void channelInactive(ChannelHandlerContext ctx) throws Exception {
            IOException e = new IOException("page connection (" + name() + ") to " + server + " closed");
            closedCause = e;
            accepted.completeExceptionally(e);
            for (Pending p : pending.values()) {
                if (pending.remove(p.id, p)) {
                    p.f.completeExceptionally(e);
                }
            }
            super.channelInactive(ctx);
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            LOG.log(System.Logger.Level.WARNING, "page connection (" + name() + ") to " + server + " failed: " + cause);
            ctx.close();
        }
    }
}
