package dev.lazypages.net;

import static dev.lazypages.net.PageFrameDescriptor.*;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.proc.CpuYield;
import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.AdaptiveRecvByteBufAllocator;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoop;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.RecvByteBufAllocator;
import io.netty.channel.socket.SocketChannel;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.lang.foreign.Arena;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The destination's side of the page plane: two connections to a {@link PageServer}, FAULT and
 * BULK, each pinned to its own event loop thread, so a fault request never waits behind bulk
 * transfer (not in our socket buffers, not in the server's, not on a shared thread).
 *
 * <h2>Requests</h2>
 * {@link #fetchAsync} sends one request and hands the answer to a {@link PageSink} on the
 * connection's event loop, as {@link PageData} over the received buffer's own memory (the
 * lazy page server UFFDIO_COPYs straight from it). {@link #fetch} and {@link #fetchBulk} block
 * the calling thread until the pages are copied into the caller's {@link PageBuffer}. Any number
 * of threads may call them at once; requests are matched to responses by request id. Bulk
 * fetches are split into requests of {@link #BULK_REQUEST_PAGES} pages with up to
 * {@link #BULK_WINDOW} in flight.
 *
 * <h2>Losing the connection</h2>
 * When a connection closes (or a request has had no answer for {@link Options#responseDeadline}),
 * the client reconnects on its own, with exponential backoff (10 ms doubling to 1 s), for up to
 * {@link Options#recoverTimeout}: requests in flight stay pending (their callers stay blocked,
 * which for a lazily restored process means its faulting threads stay blocked in the kernel), new
 * requests wait with them, and once the server accepts the new connection (same token) every
 * pending request is sent again. When the timeout passes without a connection, or the server
 * refuses the token, every pending and later request fails with an {@link IOException} saying so.
 *
 * <p>Threads: each connection's state (its channel, whether it is up, the backoff) is confined
 * to its event loop; callers only add to the pending map (a concurrent map) and hand the send to
 * the loop.
 */
public final class PageClient implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(PageClient.class.getName());
    /** Pages per bulk request (256 KiB of 4 KiB pages). */
    public static final int BULK_REQUEST_PAGES = 64;
    /** Bulk requests in flight per {@link #fetchBulk} call. */
    public static final int BULK_WINDOW = 8;
    /**
     * Largest socket read on the BULK connection: a 1 MiB bulk answer in a few reads instead of
     * sixteen or more of Netty's default 64 KiB (each a system call, a pipeline pass and a page
     * split across two buffers).
     */
    static final int BULK_MAX_READ = 1 << 20;
    private static final long FIRST_BACKOFF_MS = 10;
    private static final long MAX_BACKOFF_MS = 1000;

    /**
     * @param connectTimeout   longest wait for a connection and the server's ACCEPT
     * @param recoverTimeout   how long a lost connection is retried before its requests fail
     * @param responseDeadline a request without an answer for this long counts as a lost connection
     */
    public record Options(Duration connectTimeout, Duration recoverTimeout, Duration responseDeadline) {
        /** The default of {@code --recover-timeout}. */
        public static final Duration DEFAULT_RECOVER_TIMEOUT = Duration.ofSeconds(60);

        public Options {
            if (connectTimeout.isNegative() || connectTimeout.isZero() || recoverTimeout.isNegative()
                    || responseDeadline.isNegative() || responseDeadline.isZero()) {
                throw new IllegalArgumentException("invalid page client options " + this);
            }
        }

        /** Connect within 10 s, recover for 60 s, answers within 10 s. */
        public static Options defaults() {
            return new Options(Duration.ofSeconds(10), DEFAULT_RECOVER_TIMEOUT, Duration.ofSeconds(10));
        }

        public Options withConnectTimeout(Duration d) {
            return new Options(d, recoverTimeout, responseDeadline);
        }

        public Options withRecoverTimeout(Duration d) {
            return new Options(connectTimeout, d, responseDeadline);
        }

        public Options withResponseDeadline(Duration d) {
            return new Options(connectTimeout, recoverTimeout, d);
        }
    }

    private final EventLoopGroup group;
    private final InetSocketAddress server;
    private final int pageSize;
    private final byte[] token;
    private final Options options;
    private final Arena arena = Arena.ofShared();
    private volatile boolean closing;
    private Conn fault;
    private Conn bulk;

    private PageClient(EventLoopGroup group, InetSocketAddress server, int pageSize, byte[] token, Options options) {
        this.group = group;
        this.server = server;
        this.pageSize = pageSize;
        this.token = token;
        this.options = options;
    }

    /** {@link #connect(InetSocketAddress, String, Options)} with the default options. */
    public static PageClient connect(InetSocketAddress server, String token) throws IOException {
        return connect(server, token, Options.defaults());
    }

    /** {@link #connect(InetSocketAddress, String, Options)} with a connect timeout and default recovery. */
    public static PageClient connect(InetSocketAddress server, String token, Duration timeout) throws IOException {
        return connect(server, token, Options.defaults().withConnectTimeout(timeout));
    }

    /**
     * Opens the FAULT and the BULK connection to {@code server} and authenticates both with
     * {@code token}, using this machine's page size. The first connection is not retried.
     *
     * @throws HandshakeException when the server refused (reason included, e.g. "token mismatch")
     */
    public static PageClient connect(InetSocketAddress server, String token, Options options) throws IOException {
        int ps = (int) dev.lazypages.ffm.Posix.pageSize();
        byte[] t = token.getBytes(StandardCharsets.UTF_8);
        if (t.length > MAX_TOKEN_BYTES) {
            throw new IllegalArgumentException("token longer than " + MAX_TOKEN_BYTES + " bytes");
        }
        EventLoopGroup group = Transport.group("page-client", 2);
        PageClient c = new PageClient(group, server, ps, t, options);
        try {
            c.fault = c.new Conn(KIND_FAULT, group.next());
            c.bulk = c.new Conn(KIND_BULK, group.next());
            c.bulk.loop.execute(CpuYield::thisThread); // its loop receives and copies bulk pages: faults go first
            long spin = SpinThenBlock.spinNanos(SpinThenBlock.CLIENT_PROPERTY, SpinThenBlock.CLIENT_DEFAULT_MICROS);
            c.fault.loop.execute(() -> {
                SpinThenBlock.enableHere(spin); // the next fault, read without a wake-up
                CpuYield.faultPath(); // and when it sleeps, a fault wakes it ahead of the bulk transfer
            });
            c.fault.first();
            c.bulk.first();
            return c;
        } catch (IOException | RuntimeException e) {
            c.close();
            throw e;
        }
    }

    public int pageSize() {
        return pageSize;
    }

    public InetSocketAddress serverAddress() {
        return server;
    }

    public Options options() {
        return options;
    }

    /**
     * The FAULT connection's event loop, for serving a userfaultfd on the thread that reads the
     * fault answers ({@link FaultLoop}); null without the native epoll transport, or when the system
     * property {@value #FAULT_LOOP_PROPERTY} is false.
     */
    public FaultLoop faultLoop() {
        if (!Transport.epoll() || "false".equalsIgnoreCase(System.getProperty(FAULT_LOOP_PROPERTY, "true").trim())
                || !(fault.loop instanceof io.netty.channel.IoEventLoop l)
                || !l.isCompatible(io.netty.channel.epoll.EpollIoHandle.class)) {
            return null;
        }
        return new FaultLoop(l);
    }

    /** {@code -Dlazypages.faultLoop=false}: serve faults on a fault thread of their own (for comparison). */
    public static final String FAULT_LOOP_PROPERTY = "lazypages.faultLoop";

    /** Times a connection was lost and came back. */
    public long reconnects() {
        return fault.reconnects + bulk.reconnects;
    }

    /**
     * Sends one request for {@code nrPages} (1..{@link PageFrameDescriptor#MAX_PAGES}) pages at
     * {@code vaddr}, on the BULK connection if {@code bulk}, else on FAULT, and returns at once;
     * {@code sink} gets the answer on the connection's event loop (see {@link PageClient} for a
     * lost connection).
     *
     * @throws IOException the connection is lost for good, or the client closed
     */
    public void fetchAsync(long vaddr, int nrPages, boolean bulk, PageSink sink) throws IOException {
        if (nrPages <= 0 || nrPages > MAX_PAGES) {
            throw new IllegalArgumentException(nrPages + " pages in one request (1.." + MAX_PAGES + ")");
        }
        (bulk ? this.bulk : this.fault).request(vaddr, nrPages, sink);
    }

    /**
     * Fetches {@code nrPages} pages at {@code vaddr} into {@code dst} at byte {@code dstOffset}
     * (a multiple of the page size) over the FAULT connection; returns when they are there. More
     * than {@link PageFrameDescriptor#MAX_PAGES} pages go as several pipelined requests.
     *
     * @throws IOException naming the address when the server cannot serve them, or the
     *                     connection is lost and does not come back within the recover timeout
     */
    public void fetch(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        fetchOn(fault, vaddr, nrPages, dst, dstOffset, MAX_PAGES);
    }

    /** As {@link #fetch}, over the BULK connection, as pipelined requests of {@link #BULK_REQUEST_PAGES}. */
    public void fetchBulk(long vaddr, int nrPages, PageBuffer dst, long dstOffset) throws IOException {
        fetchOn(bulk, vaddr, nrPages, dst, dstOffset, BULK_REQUEST_PAGES);
    }

    private void checkFits(int nrPages, PageBuffer dst, long dstOffset) {
        if (nrPages <= 0 || dstOffset < 0 || dstOffset % pageSize != 0
                || dstOffset + (long) nrPages * pageSize > dst.byteSize()) {
            throw new IllegalArgumentException(nrPages + " pages at offset " + dstOffset + " do not fit a buffer of "
                    + dst.byteSize() + " bytes page-aligned");
        }
    }

    private void fetchOn(Conn c, long vaddr, int nrPages, PageBuffer dst, long dstOffset, int chunk) throws IOException {
        checkFits(nrPages, dst, dstOffset);
        if (nrPages <= chunk) { // the fault path: one request, no queue
            c.request(vaddr, nrPages, dst, dstOffset).await();
            return;
        }
        ArrayDeque<Copy> inflight = new ArrayDeque<>(BULK_WINDOW);
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
            Copy p = inflight.poll();
            if (p == null) {
                break;
            }
            try {
                p.await();
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
     * Tells the server no more pages are needed (its {@link PageServer#done()} completes). While
     * the FAULT connection is being recovered, waits for it (up to the recover timeout).
     */
    public void done() throws IOException {
        long deadline = System.nanoTime() + options.recoverTimeout().toNanos() + options.connectTimeout().toNanos();
        while (true) {
            CompletableFuture<Boolean> sent = new CompletableFuture<>();
            fault.loop.execute(() -> {
                Channel ch = fault.up ? fault.channel : null;
                if (ch == null) {
                    sent.complete(false);
                    return;
                }
                ByteBuf b = ch.alloc().buffer(HEADER_LENGTH);
                writeHeader(b, TYPE_DONE, 0, 0, 0, 0);
                ch.writeAndFlush(b).addListener(f -> sent.complete(f.isSuccess()));
            });
            boolean ok = sent.join();
            if (ok) {
                return;
            }
            IOException dead = fault.deadCause;
            if (dead != null || closing || System.nanoTime() - deadline > 0) {
                throw new IOException("cannot send DONE to page server " + server + ": "
                        + (dead != null ? dead.getMessage() : "the connection is down"), dead);
            }
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted while sending DONE to page server " + server);
            }
        }
    }

    /** Closes both connections; pending fetches fail. */
    @Override
    public void close() {
        if (closing) {
            return;
        }
        closing = true;
        for (Conn c : new Conn[] {fault, bulk}) {
            if (c != null) {
                try {
                    c.loop.submit(c::shut).awaitUninterruptibly(5000);
                } catch (RuntimeException e) { // the loop is gone already
                    LOG.log(System.Logger.Level.DEBUG, "closing page connection", e);
                }
            }
        }
        Transport.shutdown(group);
        arena.close();
    }

    /** Receive buffers of the BULK connection: they grow up to {@link #BULK_MAX_READ} while the socket keeps them full. */
    static RecvByteBufAllocator bulkReceiveBuffers() {
        return new AdaptiveRecvByteBufAllocator(64 << 10, 256 << 10, BULK_MAX_READ);
    }

    /** One request: what was asked and where the answer goes. */
    private static final class Req {
        final long id;
        final long vaddr;
        final int nrPages;
        final PageSink sink;
        long sentAt; // event loop only; 0 while not on the current channel

        Req(long id, long vaddr, int nrPages, PageSink sink) {
            this.id = id;
            this.vaddr = vaddr;
            this.nrPages = nrPages;
            this.sink = sink;
        }
    }

    /** A blocking fetch into a page buffer: copies on the event loop, completes a future. */
    private final class Copy implements PageSink {
        final Conn conn;
        final PageBuffer dst;
        final long dstOffset;
        final CompletableFuture<Void> f = new CompletableFuture<>();
        Req req;

        Copy(Conn conn, PageBuffer dst, long dstOffset) {
            this.conn = conn;
            this.dst = dst;
            this.dstOffset = dstOffset;
        }

        @Override
        public void received(PageData data) {
            data.copyTo(dst.pages(dstOffset / pageSize, data.nrPages()).asByteBuffer());
            f.complete(null);
        }

        @Override
        public void failed(IOException cause) {
            f.completeExceptionally(cause);
        }

        /** Waits until the pages are in the buffer (the recovery has bounds of its own; this is a safety net). */
        void await() throws IOException {
            long limit = options.recoverTimeout().toNanos() + options.responseDeadline().toNanos()
                    + options.connectTimeout().toNanos() + TimeUnit.SECONDS.toNanos(5);
            try {
                f.get(limit, TimeUnit.NANOSECONDS);
            } catch (TimeoutException e) { // the recovery has bounds of its own: this is a safety net
                if (conn.pending.remove(req.id, req)) {
                    throw new SocketTimeoutException("page server " + server + " did not send " + req.nrPages
                            + " pages at 0x" + Long.toHexString(req.vaddr) + " within " + Duration.ofNanos(limit));
                }
                f.join(); // the event loop is copying it right now
            } catch (InterruptedException e) {
                conn.pending.remove(req.id, req);
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted while fetching pages at 0x" + Long.toHexString(req.vaddr));
            } catch (ExecutionException e) {
                Throwable c = e.getCause();
                throw new IOException(c.getMessage(), c);
            }
        }

    }

    /** One logical connection (FAULT or BULK) across reconnections, pinned to one event loop. */
    private final class Conn {
        final int kind;
        final EventLoop loop;
        final ConcurrentHashMap<Long, Req> pending = new ConcurrentHashMap<>();
        final AtomicLong ids = new AtomicLong();
        final PageData data;
        // Event loop only:
        Channel channel; // the accepted channel, null while down
        Channel trying; // a reconnection attempt not yet accepted
        boolean up;
        long lostAt;
        long backoffMs = FIRST_BACKOFF_MS;
        String lostWhy;
        // Read by other threads:
        volatile long reconnects;
        volatile IOException deadCause;

        Conn(int kind, EventLoop loop) {
            this.kind = kind;
            this.loop = loop;
            this.data = new PageData(pageSize, arena);
            long period = Math.max(50, Math.min(1000, options.responseDeadline().toMillis() / 4));
            loop.scheduleAtFixedRate(this::checkDeadline, period, period, TimeUnit.MILLISECONDS);
        }

        String name() {
            return kind == KIND_FAULT ? "fault" : "bulk";
        }

        /** The first connection: synchronous, not retried. */
        void first() throws IOException {
            Duration timeout = options.connectTimeout();
            CompletableFuture<Void> accepted = new CompletableFuture<>();
            ChannelFuture cf = bootstrap(accepted).connect(server);
            try {
                if (!cf.await(timeout.toMillis(), TimeUnit.MILLISECONDS) || !cf.isSuccess()) {
                    cf.channel().close();
                    throw new IOException("cannot connect to page server " + server + ": "
                            + (cf.cause() == null ? "timed out after " + timeout : cf.cause()), cf.cause());
                }
                loop.submit(() -> {
                    trying = cf.channel();
                    sendAuth(cf.channel());
                }).sync();
                accepted.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
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

        Bootstrap bootstrap(CompletableFuture<Void> accepted) {
            var secure = Transport.connectSide(Transport.Plane.PAGE, server); // TLS when this process uses it
            Bootstrap b = new Bootstrap();
            if (kind == KIND_BULK) {
                b.option(ChannelOption.RCVBUF_ALLOCATOR, bulkReceiveBuffers());
            }
            return b.group(loop).channel(Transport.socketChannel())
                    .option(ChannelOption.TCP_NODELAY, true)
                    .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int) Math.max(1, options.connectTimeout().toMillis()))
                    .handler(new ChannelInitializer<SocketChannel>() {
                        @Override
                        protected void initChannel(SocketChannel ch) {
                            secure.accept(ch);
                            ch.pipeline().addLast("decoder", new PageResponseDecoder(pageSize, MAX_PAGES));
                            ch.pipeline().addLast("responses", new Responses(Conn.this, accepted));
                        }
                    });
        }

        void sendAuth(Channel ch) {
            ByteBuf auth = ch.alloc().buffer(HEADER_LENGTH + token.length);
            writeHeader(auth, TYPE_AUTH, kind, token.length, pageSize, 0).writeBytes(token);
            ch.writeAndFlush(auth);
        }

        Copy request(long vaddr, int n, PageBuffer dst, long off) throws IOException {
            Copy c = new Copy(this, dst, off);
            c.req = request(vaddr, n, c);
            return c;
        }

        Req request(long vaddr, int n, PageSink sink) throws IOException {
            Req p = new Req(ids.incrementAndGet(), vaddr, n, sink);
            pending.put(p.id, p);
            IOException dead = deadCause; // read after put: either we see it or giveUp sees p
            if (dead == null && closing) {
                dead = new IOException("page client closed");
            }
            if (dead != null) {
                pending.remove(p.id);
                throw new IOException(dead.getMessage() + " (fetching " + n + " pages at 0x" + Long.toHexString(vaddr)
                        + ")", dead);
            }
            if (loop.inEventLoop()) { // a fault read on this loop (FaultLoop): write it now, no task, no wake-up
                send(p);
            } else {
                loop.execute(() -> send(p));
            }
            return p;
        }

        /** On the loop: writes the request if the connection is up (else the reconnection sends it). */
        void send(Req p) {
            if (!up || p.sentAt != 0 || !pending.containsKey(p.id)) {
                return;
            }
            p.sentAt = System.nanoTime();
            ByteBuf b = channel.alloc().directBuffer(HEADER_LENGTH);
            writeHeader(b, TYPE_REQUEST, 0, p.nrPages, p.vaddr, p.id);
            channel.writeAndFlush(b, channel.voidPromise());
        }

        /** On the loop: the server accepted {@code ch}; (re)send everything pending. */
        void accepted(Channel ch) {
            boolean again = lostAt != 0;
            channel = ch;
            trying = null;
            up = true;
            backoffMs = FIRST_BACKOFF_MS;
            String why = lostWhy;
            lostWhy = null;
            List<Req> all = new ArrayList<>(pending.values());
            all.sort(Comparator.comparingLong(r -> r.id));
            for (Req r : all) {
                r.sentAt = 0;
                send(r);
            }
            if (again) {
                reconnects++;
                LOG.log(System.Logger.Level.WARNING, "page connection ({0}) to {1} is back after {2} ms ({3}); {4} request(s) "
                        + "sent again", name(), server, (System.nanoTime() - lostAt) / 1_000_000, why, all.size());
                lostAt = 0;
            }
        }

        /** On the loop: {@code ch} closed. */
        void inactive(Channel ch) {
            if (ch == trying) {
                trying = null;
                if (!closing && channel == null && deadCause == null) {
                    retryLater();
                }
                return;
            }
            if (ch != channel) {
                return;
            }
            channel = null;
            up = false;
            if (closing) {
                failAll(new IOException("page connection (" + name() + ") to " + server + " closed"));
                return;
            }
            if (lostWhy == null) {
                lostWhy = "closed";
            }
            lost(lostWhy);
        }

        /** On the loop: the current connection is gone; start recovering. */
        void lost(String why) {
            if (lostAt == 0) {
                lostAt = System.nanoTime();
            }
            LOG.log(System.Logger.Level.WARNING, "page connection ({0}) to {1} lost ({2}), {3} request(s) pending; "
                    + "reconnecting for up to {4} s", name(), server, why, pending.size(), options.recoverTimeout().toSeconds());
            for (Req r : pending.values()) {
                r.sentAt = 0;
            }
            retryLater();
        }

        void retryLater() {
            long delay = backoffMs;
            backoffMs = Math.min(MAX_BACKOFF_MS, backoffMs * 2);
            loop.schedule(this::attempt, delay, TimeUnit.MILLISECONDS);
        }

        /** On the loop: one reconnection attempt, or giving up. */
        void attempt() {
            if (closing || up || trying != null || deadCause != null) {
                return;
            }
            long since = System.nanoTime() - lostAt;
            if (since >= options.recoverTimeout().toNanos()) {
                giveUp(new IOException("page connection (" + name() + ") to " + server + " closed and not recovered within "
                        + "the recover timeout of " + options.recoverTimeout().toMillis() + " ms (" + lostWhy + ")"));
                return;
            }
            CompletableFuture<Void> accepted = new CompletableFuture<>();
            accepted.whenComplete((v, err) -> {
                if (err instanceof HandshakeException h && h.byPeer()) {
                    loop.execute(() -> giveUp(new IOException("page server " + server + " refused the reconnection: "
                            + h.reason(), h)));
                }
            });
            ChannelFuture cf = bootstrap(accepted).connect(server);
            trying = cf.channel();
            cf.addListener(f -> {
                if (f.isSuccess()) {
                    sendAuth(cf.channel());
                    loop.schedule(() -> {
                        if (!accepted.isDone()) {
                            cf.channel().close(); // no ACCEPT in time: inactive() retries
                        }
                    }, options.connectTimeout().toMillis(), TimeUnit.MILLISECONDS);
                } else if (trying == cf.channel()) { // never active, so no channelInactive: retry from here
                    trying = null;
                    lostWhy = String.valueOf(f.cause());
                    retryLater();
                }
            });
        }

        /** On the loop: the connection will not come back; fail what waits, refuse what comes. */
        void giveUp(IOException cause) {
            if (deadCause != null) {
                return;
            }
            deadCause = cause;
            LOG.log(System.Logger.Level.ERROR, cause.getMessage());
            if (trying != null) {
                trying.close();
            }
            failAll(cause);
        }

        void failAll(IOException cause) {
            if (deadCause == null) {
                deadCause = cause;
            }
            for (Req p : pending.values()) {
                if (pending.remove(p.id, p)) {
                    p.sink.failed(cause);
                }
            }
        }

        /** On the loop: a request without an answer for too long means the connection is dead. */
        void checkDeadline() {
            if (!up || pending.isEmpty()) {
                return;
            }
            long now = System.nanoTime();
            long limit = options.responseDeadline().toNanos();
            for (Req r : pending.values()) {
                if (r.sentAt != 0 && now - r.sentAt > limit) {
                    lostWhy = "no answer to a request for " + r.nrPages + " pages at 0x" + Long.toHexString(r.vaddr)
                            + " within " + options.responseDeadline().toMillis() + " ms";
                    channel.close();
                    return;
                }
            }
        }

        /** On the loop, at close. */
        void shut() {
            if (trying != null) {
                trying.close();
            }
            if (channel != null) {
                channel.close();
            }
            failAll(new IOException("page connection (" + name() + ") to " + server + " closed"));
        }
    }

    /** The terminal handler of one channel. */
    private final class Responses extends ChannelInboundHandlerAdapter {
        private final Conn conn;
        private final CompletableFuture<Void> accepted;

        Responses(Conn conn, CompletableFuture<Void> accepted) {
            this.conn = conn;
            this.accepted = accepted;
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
                        Req p = conn.pending.remove(r.requestId());
                        if (p == null) {
                            LOG.log(System.Logger.Level.WARNING, "page server {0}: {1}", server, r.error());
                            return;
                        }
                        p.sink.failed(new IOException("page server " + server + " failed to serve "
                                + p.nrPages + " pages at 0x" + Long.toHexString(p.vaddr) + ": " + r.error()));
                    }
                    case TYPE_ACCEPT -> {
                        if (r.vaddr() != pageSize) {
                            accepted.completeExceptionally(new HandshakeException("page size mismatch: server "
                                    + r.vaddr() + ", client " + pageSize, false));
                            ctx.close();
                        } else if (ctx.channel() == conn.trying) {
                            conn.accepted(ctx.channel());
                            accepted.complete(null);
                        } else {
                            ctx.close();
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
            Req p = conn.pending.remove(r.requestId());
            if (p == null) { // answered already (a request sent again after a reconnection), or given up
                LOG.log(System.Logger.Level.DEBUG, "page server {0} sent pages for unknown request {1}", server,
                        r.requestId());
                return;
            }
            if (r.nrPages() != p.nrPages || r.vaddr() != p.vaddr) {
                p.sink.failed(new IOException("page server " + server + " answered request for " + p.nrPages
                        + " pages at 0x" + Long.toHexString(p.vaddr) + " with " + r.nrPages() + " pages at 0x"
                        + Long.toHexString(r.vaddr())));
                return;
            }
            try {
                p.sink.received(conn.data.reset(r.data(), p.vaddr, p.nrPages));
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.ERROR, "page sink failed for " + p.nrPages + " pages at 0x"
                        + Long.toHexString(p.vaddr), e);
                p.sink.failed(new IOException("handling " + p.nrPages + " pages at 0x" + Long.toHexString(p.vaddr)
                        + ": " + e, e));
            } finally {
                conn.data.reset(null, 0, 0);
            }
        }

        @Override
        public void channelInactive(ChannelHandlerContext ctx) throws Exception {
            accepted.completeExceptionally(new IOException("page connection (" + conn.name() + ") to " + server + " closed"));
            conn.inactive(ctx.channel());
            super.channelInactive(ctx);
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            boolean current = ctx.channel() == conn.channel;
            LOG.log(current ? System.Logger.Level.WARNING : System.Logger.Level.DEBUG, "page connection (" + conn.name()
                    + ") to " + server + " failed: " + cause);
            if (current) {
                conn.lostWhy = String.valueOf(cause);
            }
            ctx.close();
        }
    }
}
