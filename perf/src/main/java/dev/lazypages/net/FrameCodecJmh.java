package dev.lazypages.net;

import dev.lazypages.net.proto.ControlMessage;
import dev.lazypages.net.proto.Hello;
import dev.lazypages.net.proto.Role;
import com.google.protobuf.CodedOutputStream;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.util.ReferenceCountUtil;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

/**
 * JMH: the frame codecs of the page plane and the control plane, per frame. Lives in
 * {@code dev.lazypages.net} (in the perf jar) because the decoders are package-private; it calls
 * their {@code decode} directly on a prepared buffer (no channel, no context: they use neither).
 * Each operation handles {@link #FRAMES} frames; the score is per operation.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class FrameCodecJmh {
    /** Frames per operation. */
    public static final int FRAMES = 64;

    private ByteBuf requests;
    private ByteBuf onePagePages;
    private ByteBuf control;
    private ByteBuf scratch;
    private PageRequestDecoder requestDecoder;
    private PageResponseDecoder responseDecoder;
    private ControlFrameDecoder controlDecoder;
    private ControlMessage message;
    private final List<Object> out = new ArrayList<>(FRAMES);

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        PooledByteBufAllocator a = PooledByteBufAllocator.DEFAULT;
        requests = a.directBuffer(FRAMES * PageFrameDescriptor.HEADER_LENGTH);
        onePagePages = a.directBuffer(FRAMES * (PageFrameDescriptor.HEADER_LENGTH + 4096));
        for (int i = 0; i < FRAMES; i++) {
            PageFrameDescriptor.writeHeader(requests, PageFrameDescriptor.TYPE_REQUEST, 0, 1, 0x7f0000000000L + i * 4096L, i);
            PageFrameDescriptor.writeHeader(onePagePages, PageFrameDescriptor.TYPE_PAGES, 0, 1, 0x7f0000000000L + i * 4096L, i);
            onePagePages.writeZero(4096);
        }
        message = ControlMessage.newBuilder().setHello(Hello.newBuilder().setProtocolVersion(1).setSoftwareVersion("jmh")
                .addCapabilities("post-copy").addCapabilities("pre-copy").setPageSize(4096).setToken("0123456789abcdef")
                .setRole(Role.SOURCE).setMigrationId("m-1")).build();
        control = a.directBuffer();
        for (int i = 0; i < FRAMES; i++) {
            encode(message, control);
        }
        scratch = a.directBuffer(FRAMES * 128);
        requestDecoder = new PageRequestDecoder();
        responseDecoder = new PageResponseDecoder(4096, PageFrameDescriptor.MAX_PAGES);
        controlDecoder = new ControlFrameDecoder(ControlFrameDecoder.DEFAULT_MAX_FRAME_BYTES);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        requests.release();
        onePagePages.release();
        control.release();
        scratch.release();
    }

    private static void encode(ControlMessage m, ByteBuf into) throws IOException {
        int size = m.getSerializedSize();
        byte[] b = new byte[CodedOutputStream.computeUInt32SizeNoTag(size) + size];
        CodedOutputStream o = CodedOutputStream.newInstance(b);
        o.writeUInt32NoTag(size);
        m.writeTo(o);
        into.writeBytes(b);
    }

    /** 64 REQUEST frames decoded into PageRequests (the page server's side of a fault). */
    @Benchmark
    public int decodePageRequests() {
        requests.readerIndex(0);
        out.clear();
        requestDecoder.decode(null, requests, out);
        return out.size();
    }

    /** 64 one-page PAGES frames decoded into PageResponses (retained slices, released here). */
    @Benchmark
    public int decodeOnePagePages() {
        onePagePages.readerIndex(0);
        out.clear();
        responseDecoder.decode(null, onePagePages, out);
        int n = out.size();
        for (Object o : out) {
            ReferenceCountUtil.release(((PageResponse) o).data());
        }
        return n;
    }

    /** 64 REQUEST headers written (the client's side of a fault). */
    @Benchmark
    public int encodePageRequests() {
        scratch.clear();
        for (int i = 0; i < FRAMES; i++) {
            PageFrameDescriptor.writeHeader(scratch, PageFrameDescriptor.TYPE_REQUEST, 0, 1, 0x7f0000000000L + i * 4096L, i);
        }
        return scratch.writerIndex();
    }

    /** 64 varint-framed Hello ControlMessages: frames split by ControlFrameDecoder, then parsed. */
    @Benchmark
    public int decodeControlMessages() throws Exception {
        control.readerIndex(0);
        out.clear();
        controlDecoder.decode(null, control, out);
        int n = 0;
        for (Object o : out) {
            ByteBuf f = (ByteBuf) o;
            try {
                n += ControlMessage.parseFrom(f.nioBuffer()).getHello().getPageSize();
            } finally {
                f.release();
            }
        }
        return n;
    }

    /** 64 Hello ControlMessages serialised with their varint length prefix. */
    @Benchmark
    public int encodeControlMessages() throws IOException {
        scratch.clear();
        for (int i = 0; i < FRAMES; i++) {
            encode(message, scratch);
        }
        return scratch.writerIndex();
    }
}
