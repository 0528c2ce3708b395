package dev.lazypages.net;

import dev.lazypages.net.proto.ControlMessage;
import dev.lazypages.net.proto.Hello;
import dev.lazypages.net.proto.Ping;
import dev.lazypages.net.proto.Refuse;
import io.netty.channel.AdaptiveRecvByteBufAllocator;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.DefaultFileRegion;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.WriteBufferWaterMark;
import io.netty.handler.codec.protobuf.ProtobufDecoder;
import io.netty.handler.codec.protobuf.ProtobufEncoder;
import io.netty.handler.codec.protobuf.ProtobufVarint32LengthFieldPrepender;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One control connection between source and destination: protobuf {@link ControlMessage}s in
 * both directions, made by {@link ControlClient#connect} or accepted by {@link ControlServer}.
 *
 * <h2>Handshake</h2>
 * Both sides send their {@link Hello} as soon as the connection is up. Each checks the peer's:
 * protocol version equal to {@link #PROTOCOL_VERSION}, same token, roles not equal, and every
 * capability the peer {@code requires} among its own capabilities. A side
 * that accepts sends {@code Ping{sequence=0}} (the acknowledgement); a side that does not sends
 * {@code Refuse{reason}} and closes. A side is connected once it has accepted the peer's Hello
 * and received the peer's acknowledgement, so a refusal always surfaces on both sides as a
 * {@link HandshakeException} carrying the reason (e.g. "token mismatch",
 * "protocol version 2 not supported (this build speaks 1)").
 *
 * <h2>Threads</h2>
 * The Netty handler runs on the event loop and only enqueues; the state machines call
 * {@link #receive} (blocking with a timeout) and {@link #send} from their own threads. Send
 * blocks while more than 4 MiB are queued for the socket (back-pressure), except when called
 * on the event loop. In the other direction, the connection stops reading from the socket while
 * more than 8 MiB of received messages wait for {@link #receive}, so a slow consumer slows the
 * peer down (TCP flow control) instead of filling the heap.
 */
public final class ControlConnection implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(ControlConnection.class.getName());
    /** The control protocol this build speaks. */
    public static final int PROTOCOL_VERSION = 1;
    private static final Object CLOSED = new Object();
    private static final long INBOX_HIGH_BYTES = 8 << 20;
    private static final long INBOX_LOW_BYTES = 2 << 20;
    private static final WriteBufferWaterMark WATER_MARK = new WriteBufferWaterMark(1 << 20, 4 << 20);
    /** send() blocks while more than HIGH bytes are not yet handed to the socket, until LOW. */
    private static final long UNSENT_HIGH_BYTES = 4 << 20;
    private static final long UNSENT_LOW_BYTES = 1 << 20;

    private final Channel channel;
    private final Hello mine;
    private final CompletableFuture<ControlConnection> handshake = new CompletableFuture<>();
    private final CompletableFuture<Void> closed = new CompletableFuture<>();
    private final LinkedBlockingQueue<Object> inbox = new LinkedBlockingQueue<>();
    /** Serialized bytes of the messages in the inbox: reading pauses above HIGH, resumes below LOW. */
    private final AtomicLong queuedBytes = new AtomicLong();
    private final AtomicLong unsentBytes = new AtomicLong();
    private final Object writable = new Object();
    private volatile Hello peer;
    private volatile Throwable failure;
    private boolean peerAcked; // event loop only

    private ControlConnection(Channel channel, Hello mine) {
        this.channel = channel;
        this.mine = mine;
    }

    /** Installs the codec and a new connection's handler on {@code ch}; the handshake starts when it is active. */
    static ControlConnection install(Channel ch, Hello mine, int maxFrameBytes) {
        ControlConnection c = new ControlConnection(ch, mine);
        ch.config().setWriteBufferWaterMark(WATER_MARK);
        // reads up to 1 MiB at once: a directory's raw data comes in fewer, larger pieces
        ch.config().setRecvByteBufAllocator(new AdaptiveRecvByteBufAllocator(64, 16 << 10, 1 << 20));
        ChannelPipeline p = ch.pipeline();
        p.addLast("frameDecoder", new ControlFrameDecoder(maxFrameBytes));
        p.addLast("protobufDecoder", new ProtobufDecoder(ControlMessage.getDefaultInstance()));
        p.addLast("frameEncoder", new ProtobufVarint32LengthFieldPrepender());
        p.addLast("protobufEncoder", new ProtobufEncoder());
        p.addLast("control", c.new Handler());
        ch.closeFuture().addListener(f -> c.onClosed());
        return c;
    }

    /** Completes with this connection when the handshake succeeds, or with a {@link HandshakeException}. */
    CompletableFuture<ControlConnection> handshake() {
        return handshake;
    }

    /** The peer's Hello (null before the handshake). */
    public Hello peerHello() {
        return peer;
    }

    /** This side's Hello. */
    public Hello myHello() {
        return mine;
    }

    public InetSocketAddress remoteAddress() {
        return (InetSocketAddress) channel.remoteAddress();
    }

    public InetSocketAddress localAddress() {
        return (InetSocketAddress) channel.localAddress();
    }

    /** Completes when the connection is closed, by either side. */
    public CompletableFuture<Void> closed() {
        return closed;
    }

    public boolean isOpen() {
        return channel.isActive();
    }

    /**
     * Sends {@code m}. Returns once it is queued; blocks while more than 4 MiB of earlier
     * messages are not yet written to the socket (until 1 MiB), so that a large transfer cannot
     * fill the heap. Never blocks on the event loop.
     *
     * @throws IOException when the connection is closed or failed
     */
    public void send(ControlMessage m) throws IOException {
        ensureUsable();
        if (m.getSerializedSize() == 0) {
            // its zero length prefix would read as a raw-data frame's marker
            throw new IllegalArgumentException("an empty control message cannot be sent");
        }
        // Counted from here until the socket took it: a message waiting in the event loop's task
        // queue, not yet encoded, does not count against the channel's writability.
        final long size = m.getSerializedSize();
        unsentBytes.addAndGet(size);
        channel.writeAndFlush(m).addListener((ChannelFutureListener) f -> {
            if (unsentBytes.addAndGet(-size) <= UNSENT_LOW_BYTES) {
                synchronized (writable) {
                    writable.notifyAll();
                }
            }
            if (!f.isSuccess()) {
                fail(f.cause());
            }
        });
        if (unsentBytes.get() > UNSENT_HIGH_BYTES && !channel.eventLoop().inEventLoop()) {
            synchronized (writable) {
                while (unsentBytes.get() > UNSENT_LOW_BYTES && channel.isActive()) {
                    try {
                        writable.wait(100);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new java.io.InterruptedIOException("interrupted while sending to " + remoteAddress());
                    }
                }
            }
            ensureUsable();
        }
    }

    /** Whether the peer's Hello lists {@code capability}. */
    public boolean peerCan(String capability) {
        Hello p = peer;
        return p != null && p.getCapabilitiesList().contains(capability);
    }

    /**
     * Sends {@code count} bytes of {@code file} from {@code position} as one raw-data frame (see
     * {@link ControlFrameDecoder}): zero-copy (sendfile) where the transport can. Only for a peer
     * that announced {@link #RAW_FILE_DATA}, and only after a message that tells it the bytes come.
     * Returns at once; the future completes when the socket took every byte (it is counted
     * against the back-pressure of {@link #send} meanwhile).
     */
    public CompletableFuture<Void> sendFileRegion(java.nio.file.Path file, long position, long count) throws IOException {
        ensureUsable();
        if (count <= 0 || count > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("raw-data frame of " + count + " bytes");
        }
        CompletableFuture<Void> done = new CompletableFuture<>();
        ChannelHandlerContext head = channel.pipeline().context(ControlFrameDecoder.class); // first: writes go to the socket as they are
        unsentBytes.addAndGet(count);
        head.write(channel.alloc().buffer(ControlFrameDecoder.RAW_HEADER_BYTES).writeByte(0).writeInt((int) count));
        head.writeAndFlush(new DefaultFileRegion(file.toFile(), position, count)).addListener((ChannelFutureListener) f -> {
            if (unsentBytes.addAndGet(-count) <= UNSENT_LOW_BYTES) {
                synchronized (writable) {
                    writable.notifyAll();
                }
            }
            if (f.isSuccess()) {
                done.complete(null);
            } else {
                fail(f.cause());
                done.completeExceptionally(new IOException("sending " + file.getFileName() + " to " + remoteAddress()
                        + " failed: " + f.cause(), f.cause()));
            }
        });
        return done;
    }

    /**
     * Sends the remaining bytes of {@code data} (a direct buffer) as one raw-data frame, straight
     * from its memory (no copy into Netty's buffers). Same contract as {@link #sendFileRegion};
     * the bytes are not counted against {@link #send}'s back-pressure: the caller bounds them
     * (its buffers are reused only once the returned future completes, when the socket took them).
     */
    public CompletableFuture<Void> sendBuffer(java.nio.ByteBuffer data) throws IOException {
        return sendBuffers(java.util.List.of(data));
    }

    /** As {@link #sendBuffer}, the buffers' bytes one after the other as one raw-data frame (a gathering write). */
    public CompletableFuture<Void> sendBuffers(java.util.List<java.nio.ByteBuffer> buffers) throws IOException {
        ensureUsable();
        long total = 0;
        java.nio.ByteBuffer[] slices = new java.nio.ByteBuffer[buffers.size()];
        for (int i = 0; i < slices.length; i++) {
            java.nio.ByteBuffer data = buffers.get(i);
            if (!data.isDirect() || !data.hasRemaining()) {
                throw new IllegalArgumentException("raw-data frame from a " + (data.isDirect() ? "empty" : "heap") + " buffer");
            }
            slices[i] = data.slice();
            total += data.remaining();
        }
        if (total <= 0 || total > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("raw-data frame of " + total + " bytes");
        }
        int count = (int) total;
        CompletableFuture<Void> done = new CompletableFuture<>();
        ChannelHandlerContext head = channel.pipeline().context(ControlFrameDecoder.class); // first: writes go to the socket as they are
        head.write(channel.alloc().buffer(ControlFrameDecoder.RAW_HEADER_BYTES).writeByte(0).writeInt(count));
        head.writeAndFlush(io.netty.buffer.Unpooled.wrappedBuffer(slices)).addListener((ChannelFutureListener) f -> {
            if (f.isSuccess()) {
                done.complete(null);
            } else {
                fail(f.cause());
                done.completeExceptionally(new IOException("sending " + count + " bytes to " + remoteAddress() + " failed: "
                        + f.cause(), f.cause()));
            }
        });
        return done;
    }

    /** Hello capability: this side reads raw-data frames (FileChunk.raw_length). */
    public static final String RAW_FILE_DATA = "raw-file-data";

    /**
     * The next message from the peer, waiting at most {@code timeout}.
     *
     * @throws SocketTimeoutException when nothing arrived in time
     * @throws IOException            when the connection is closed (after every earlier message was received),
     *                                or raw data arrived instead
     */
    public ControlMessage receive(Duration timeout) throws IOException, InterruptedException {
        Object o = receiveFrame(timeout);
        if (o instanceof RawData r) {
            r.buf().release();
            throw new IOException("raw data from " + channel.remoteAddress() + " where a control message was expected");
        }
        return (ControlMessage) o;
    }

    /** As {@link #receive}, but also returns {@link RawData} (the caller releases it). */
    Object receiveFrame(Duration timeout) throws IOException, InterruptedException {
        if (!handshake.isDone() || handshake.isCompletedExceptionally()) {
            throw new IOException("control connection to " + channel.remoteAddress() + " is not connected");
        }
        Object o = inbox.poll(timeout.toNanos(), TimeUnit.NANOSECONDS);
        if (o == null) {
            throw new SocketTimeoutException("no control message from " + channel.remoteAddress() + " within "
                    + timeout);
        }
        if (o == CLOSED) {
            inbox.offer(CLOSED); // every later receive sees it too
            Throwable f = failure;
            throw new IOException("control connection to " + channel.remoteAddress() + " closed"
                    + (f == null ? "" : ": " + f), f);
        }
        long size = o instanceof RawData r ? r.buf().readableBytes() : ((ControlMessage) o).getSerializedSize();
        if (queuedBytes.addAndGet(-size) < INBOX_LOW_BYTES && !channel.config().isAutoRead()) {
            channel.config().setAutoRead(true); // checked after the decrement: pairs with the handler's re-check
        }
        return o;
    }

    /** Closes the connection (idempotent); pending messages already received stay receivable. */
    @Override
    public void close() {
        try {
            if (channel.isOpen() && !channel.eventLoop().isShuttingDown()) {
                channel.close().awaitUninterruptibly();
            }
        } catch (java.util.concurrent.RejectedExecutionException alreadyGone) {
            // the client's event loop shut down with the channel: closed already
        }
    }

    private void ensureUsable() throws IOException {
        if (!handshake.isDone() || handshake.isCompletedExceptionally()) {
            throw new IOException("control connection to " + channel.remoteAddress() + " is not connected");
        }
        if (!channel.isActive()) {
            Throwable f = failure;
            throw new IOException("control connection to " + channel.remoteAddress() + " is closed"
                    + (f == null ? "" : ": " + f), f);
        }
    }

    private void fail(Throwable t) {
        if (failure == null) {
            failure = t;
        }
        channel.close();
    }

    private void onClosed() {
        handshake.completeExceptionally(failure instanceof HandshakeException h ? h
                : new HandshakeException("connection closed during the handshake" + (failure == null ? "" : ": " + failure),
                failure));
        inbox.offer(CLOSED);
        synchronized (writable) {
            writable.notifyAll();
        }
        closed.complete(null);
    }

    /** Why the peer's Hello is refused, or null when it is accepted. */
    private String check(Hello h) {
        if (h.getProtocolVersion() != PROTOCOL_VERSION) {
            return "protocol version " + h.getProtocolVersion() + " not supported (this build speaks "
                    + PROTOCOL_VERSION + ")";
        }
        if (!MessageDigest.isEqual(h.getToken().getBytes(StandardCharsets.UTF_8),
                mine.getToken().getBytes(StandardCharsets.UTF_8))) {
            return "token mismatch";
        }
        if (h.getRole() == mine.getRole() && h.getRole() != dev.lazypages.net.proto.Role.ROLE_UNSPECIFIED) {
            return "both sides claim role " + h.getRole();
        }
        for (String needed : h.getRequiresList()) {
            if (!mine.getCapabilitiesList().contains(needed)) {
                return "capability '" + needed + "' required by the peer is not supported here (this build has: "
                        + String.join(", ", mine.getCapabilitiesList()) + ")";
            }
        }
        return null;
    }

    private final class Handler extends SimpleChannelInboundHandler<ControlMessage> {
        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) throws Exception {
            if (!(msg instanceof RawData r)) {
                super.channelRead(ctx, msg);
                return;
            }
            if (!handshake.isDone()) {
                r.buf().release();
                refuse(ctx, "raw data during the handshake");
                return;
            }
            enqueue(ctx, r, r.buf().readableBytes());
        }

        private void enqueue(ChannelHandlerContext ctx, Object m, long size) {
            inbox.offer(m);
            if (queuedBytes.addAndGet(size) > INBOX_HIGH_BYTES) {
                // The state machine is behind (a directory arriving faster than the disk takes it):
                // stop reading, so TCP flow control slows the peer instead of our heap filling up.
                ctx.channel().config().setAutoRead(false);
                if (queuedBytes.get() < INBOX_LOW_BYTES) { // receive() drained it meanwhile (it saw autoRead on)
                    ctx.channel().config().setAutoRead(true);
                }
            }
        }

        @Override
        public void channelActive(ChannelHandlerContext ctx) throws Exception {
            ctx.writeAndFlush(ControlMessage.newBuilder().setHello(mine).build());
            super.channelActive(ctx);
        }

        @Override
        protected void channelRead0(ChannelHandlerContext ctx, ControlMessage m) {
            if (handshake.isDone()) {
                enqueue(ctx, m, m.getSerializedSize());
                return;
            }
            switch (m.getBodyCase()) {
                case HELLO -> {
                    if (peer != null) {
                        refuse(ctx, "second Hello during the handshake");
                        return;
                    }
                    String why = check(m.getHello());
                    if (why != null) {
                        refuse(ctx, why);
                        return;
                    }
                    peer = m.getHello();
                    ctx.writeAndFlush(ControlMessage.newBuilder().setPing(Ping.newBuilder().setSequence(0)).build());
                    completeIfReady();
                }
                case PING -> {
                    if (peer == null) {
                        refuse(ctx, "handshake acknowledgement before Hello");
                        return;
                    }
                    peerAcked = true;
                    completeIfReady();
                }
                case REFUSE -> {
                    HandshakeException e = new HandshakeException(m.getRefuse().getReason(), true);
                    failure = e;
                    LOG.log(System.Logger.Level.WARNING, "control connection with {0} {1}", ctx.channel().remoteAddress(),
                            e.getMessage());
                    handshake.completeExceptionally(e);
                    ctx.close();
                }
                default -> refuse(ctx, "expected Hello during the handshake, got " + m.getBodyCase());
            }
        }

        private void completeIfReady() {
            if (peer != null && peerAcked) {
                handshake.complete(ControlConnection.this);
            }
        }

        private void refuse(ChannelHandlerContext ctx, String reason) {
            HandshakeException e = new HandshakeException(reason, false);
            failure = e;
            LOG.log(System.Logger.Level.WARNING, "control connection with {0} {1}", ctx.channel().remoteAddress(),
                    e.getMessage());
            handshake.completeExceptionally(e);
            ctx.writeAndFlush(ControlMessage.newBuilder().setRefuse(Refuse.newBuilder().setReason(reason)).build())
                    .addListener(ChannelFutureListener.CLOSE);
        }

        @Override
        public void channelWritabilityChanged(ChannelHandlerContext ctx) throws Exception {
            synchronized (writable) {
                writable.notifyAll();
            }
            super.channelWritabilityChanged(ctx);
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            // one line: a malformed frame from the peer is its fault, not a bug here worth a stack trace
            LOG.log(System.Logger.Level.WARNING, "control connection with {0} failed: {1}", ctx.channel().remoteAddress(),
                    String.valueOf(cause).replaceAll("\\s+", " "));
            fail(cause);
        }
    }
}
