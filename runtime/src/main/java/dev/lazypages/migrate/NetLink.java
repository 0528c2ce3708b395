package dev.lazypages.migrate;

import com.google.protobuf.ByteString;
import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.image.ImageFile;
import dev.lazypages.image.ImageWriter;
import dev.lazypages.net.ControlClient;
import dev.lazypages.net.ControlConnection;
import dev.lazypages.net.DirectoryTransfer;
import dev.lazypages.net.proto.Abort;
import dev.lazypages.net.proto.Commit;
import dev.lazypages.net.proto.ControlMessage;
import dev.lazypages.net.proto.Failed;
import dev.lazypages.net.proto.FileRef;
import dev.lazypages.net.proto.Freeze;
import dev.lazypages.net.proto.Hello;
import dev.lazypages.net.proto.PostCopyDone;
import dev.lazypages.net.proto.PrecheckReply;
import dev.lazypages.net.proto.PrecheckRequest;
import dev.lazypages.net.proto.Report;
import dev.lazypages.net.proto.RestoreRequest;
import dev.lazypages.net.proto.Role;
import dev.lazypages.net.proto.Running;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.DataFormatException;
import org.HdrHistogram.Histogram;

/**
 * {@link Link} over a dev.lazypages.net {@link ControlConnection}: {@link Msg}s to and from
 * the protobuf {@link ControlMessage}s of migration.proto.
 *
 * <p>Two conventions on top of migration.proto (until it has messages of its own for them):
 * <ul>
 *   <li>a directory is announced by {@code Report{json: {"directory_follows": ROUND}}} so that the
 *       receiver hands the connection to {@link DirectoryTransfer#receive} before its first
 *       FileChunk is read;</li>
 *   <li>PostCopyDone is followed by {@code Report{json: {"background_mib_per_sec": x,
 *       "fault_latency": base64 of the HdrHistogram compressed encoding}}} (the histogram, for
 *       the source's report and .hgrm).</li>
 * </ul>
 * A file whose size must not be compared (the process writes it) travels with size 2^64-1; a
 * file that no longer exists at the source, with its path and " (deleted)".
 */
final class NetLink implements Link {
    static final String ANY_SIZE_NOTE = "size not compared";
    private static final Pattern DIRECTORY_FOLLOWS = Pattern.compile("\"directory_follows\"\\s*:\\s*(\\d+)");
    private static final Pattern BACKGROUND = Pattern.compile("\"background_mib_per_sec\"\\s*:\\s*([0-9.eE+-]+)");
    private static final Pattern LATENCY = Pattern.compile("\"fault_latency\"\\s*:\\s*\"([A-Za-z0-9+/=]*)\"");

    private final ControlConnection conn;

    NetLink(ControlConnection conn) {
        this.conn = conn;
    }

    ControlConnection connection() {
        return conn;
    }

    /** The Hello of this build for {@code role}. */
    static Hello hello(Role role, String token, String migrationId) {
        return Hello.newBuilder().setProtocolVersion(ControlConnection.PROTOCOL_VERSION)
                .setSoftwareVersion(NetLink.class.getPackage().getImplementationVersion() != null
                        ? NetLink.class.getPackage().getImplementationVersion() : "dev")
                .addCapabilities("pre-copy").addCapabilities("post-copy").addCapabilities("hybrid").addCapabilities("page-server")
                .addCapabilities(ControlConnection.RAW_FILE_DATA)
                .setPageSize((int) Posix.pageSize()).setKernelRelease(System.getProperty("os.version", ""))
                .setCpuXcr0(Math.max(0, Features.xcr0())).setToken(token).setRole(role)
                .setMigrationId(migrationId != null ? migrationId : "").build();
    }

    /** The source's connector. */
    static Link connect(InetSocketAddress target, String token, String migrationId, Duration timeout) throws IOException {
        return new NetLink(ControlClient.connect(target, hello(Role.SOURCE, token, migrationId), timeout));
    }

    @Override
    public void send(Msg m) throws IOException {
        conn.send(encode(m));
        if (m instanceof Msg.PostCopyDone d) {
            StringBuilder json = new StringBuilder("{\"background_mib_per_sec\": ").append(d.backgroundMiBps());
            if (d.faultLatency() != null) {
                ByteBuffer b = ByteBuffer.allocate(d.faultLatency().getNeededByteBufferCapacity());
                int n = d.faultLatency().encodeIntoCompressedByteBuffer(b);
                json.append(", \"fault_latency\": \"").append(Base64.getEncoder().encodeToString(
                        java.util.Arrays.copyOf(b.array(), n))).append('"');
            }
            conn.send(ControlMessage.newBuilder().setReport(Report.newBuilder().setJson(json.append('}').toString())).build());
        }
    }

    /**
     * {@inheritDoc}
     *
     * <p>A peer that keeps the connection open but stops reading would block the send forever
     * (back-pressure has no timeout): the connection is closed when the directory is not out
     * within {@link #STALL_SECONDS} plus its size at {@link #MIN_MIB_PER_SECOND}.
     */
    @Override
    public long sendDirectory(int round, Path dir) throws IOException {
        long bytes;
        try (var s = java.nio.file.Files.list(dir)) {
            bytes = s.mapToLong(p -> p.toFile().length()).sum();
        }
        long limitNanos = (STALL_SECONDS + bytes / (MIN_MIB_PER_SECOND << 20)) * 1_000_000_000L;
        Thread guard = Thread.ofVirtual().start(() -> {
            try {
                Thread.sleep(Duration.ofNanos(limitNanos));
                conn.close();
            } catch (InterruptedException done) {
                // sent in time
            } catch (RuntimeException ignored) {
                // closed already
            }
        });
        try {
            conn.send(ControlMessage.newBuilder().setReport(Report.newBuilder().setJson("{\"directory_follows\": " + round + "}")).build());
            return DirectoryTransfer.send(conn, round, dir).bytes();
        } finally {
            guard.interrupt();
        }
    }

    /**
     * {@inheritDoc}
     *
     * <p>pages.img goes as raw-data frames straight from the copier's buffers while the next ones
     * are read; a peer that stops reading for {@link #STALL_SECONDS} gets the connection closed
     * (the pending writes then fail, and the round with them).
     */
    @Override
    public RoundOut startRound(int round, String dirName) throws IOException {
        conn.send(ControlMessage.newBuilder().setReport(Report.newBuilder().setJson("{\"directory_follows\": " + round + "}")).build());
        DirectoryTransfer.Outgoing out = DirectoryTransfer.start(conn, round, dirName, ImageFile.Kind.PAGES.fileName());
        Thread guard = Thread.ofVirtual().start(() -> {
            try {
                java.util.concurrent.CompletableFuture<?> seen = null;
                long since = System.nanoTime();
                while (conn.isOpen()) { // a round that failed half-way ends with the connection
                    Thread.sleep(1000);
                    java.util.concurrent.CompletableFuture<?> f = out.lastSent();
                    if (f != seen || f.isDone()) {
                        seen = f;
                        since = System.nanoTime();
                    } else if (System.nanoTime() - since > STALL_SECONDS * 1_000_000_000L) {
                        conn.close();
                        return;
                    }
                }
            } catch (InterruptedException done) {
                // finished
            } catch (RuntimeException ignored) {
                // closed already
            }
        });
        ImageWriter.PagesOut pages = new ImageWriter.PagesOut() {
            @Override
            public void write(ByteBuffer data, long position) throws IOException {
                out.write(data, position);
            }

            @Override
            public void finish(ByteBuffer header) throws IOException {
                out.finishStreamed(header);
            }

            @Override
            public java.util.concurrent.CompletableFuture<?> flushed() {
                try {
                    return out.flushed();
                } catch (IOException e) {
                    return java.util.concurrent.CompletableFuture.failedFuture(e);
                }
            }
        };
        return new RoundOut() {
            @Override
            public ImageWriter.PagesOut pages() {
                return pages;
            }

            @Override
            public long finish(Path dir) throws IOException {
                try {
                    return out.finish(dir).bytes();
                } finally {
                    guard.interrupt();
                }
            }
        };
    }

    /** See {@link #sendDirectory}. */
    static final long STALL_SECONDS = 60;
    static final long MIN_MIB_PER_SECOND = 4;

    @Override
    public Msg receive(Duration timeout, Path dirParent) throws IOException, TimeoutException {
        ControlMessage m = next(timeout);
        if (m.hasReport()) {
            Matcher dm = DIRECTORY_FOLLOWS.matcher(m.getReport().getJson());
            if (dm.find()) {
                if (dirParent == null) {
                    throw new IOException("a directory arrived where none was expected");
                }
                try {
                    DirectoryTransfer.Stats s = DirectoryTransfer.receive(conn, dirParent, DirectoryTransfer.DEFAULT_IDLE_TIMEOUT);
                    return new Msg.DirectoryArrived(Integer.parseInt(dm.group(1)), s.dir(), s.bytes());
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new java.io.InterruptedIOException("interrupted while receiving a directory");
                }
            }
            return new Msg.Ping(); // other reports: informational
        }
        if (m.hasPostCopyDone()) {
            PostCopyDone d = m.getPostCopyDone();
            double bg = 0;
            Histogram h = null;
            ControlMessage r = next(Duration.ofSeconds(10));
            if (r.hasReport()) {
                Matcher b = BACKGROUND.matcher(r.getReport().getJson());
                if (b.find()) {
                    bg = Double.parseDouble(b.group(1));
                }
                h = faultLatency(r.getReport().getJson());
            }
            return new Msg.PostCopyDone(d.getFaults(), d.getPages(), d.getBytes(), d.getDurationMs(), bg, h);
        }
        return decode(m);
    }

    /** Largest encoded fault latency histogram accepted from a peer (a real one is a few KiB). */
    static final int MAX_LATENCY_BYTES = 1 << 20;

    /** The fault latency histogram a PostCopyDone's report carries, or null when it has none or it does not decode. */
    static Histogram faultLatency(String reportJson) {
        Matcher l = LATENCY.matcher(reportJson);
        if (!l.find()) {
            return null;
        }
        try {
            byte[] b = Base64.getDecoder().decode(l.group(1));
            // HdrHistogram trusts its header's lengths (found by ControlMessageFuzzTest: an
            // ArrayIndexOutOfBoundsException escaped from here and ended the migration): a peer's
            // histogram that does not decode is dropped from the report, whatever the reason
            return b.length <= MAX_LATENCY_BYTES ? Histogram.decodeFromCompressedByteBuffer(ByteBuffer.wrap(b), 0) : null;
        } catch (DataFormatException | RuntimeException e) {
            return null;
        }
    }

    private ControlMessage next(Duration timeout) throws IOException, TimeoutException {
        try {
            return conn.receive(timeout);
        } catch (SocketTimeoutException e) {
            throw new TimeoutException(e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted while waiting for a control message");
        }
    }

    static ControlMessage encode(Msg m) {
        ControlMessage.Builder b = ControlMessage.newBuilder();
        switch (m) {
            case Msg.PrecheckRequest r -> {
                HostFacts f = r.facts();
                PrecheckRequest.Builder p = PrecheckRequest.newBuilder().setPageSize(f.pageSize()).setCpuXcr0(f.xcr0())
                        .addAllNeededFeatures(r.neededFeatures())
                        .setVdsoSize(f.specialSizes().getOrDefault("[vdso]", 0L))
                        .setVvarSize(f.specialSizes().getOrDefault("[vvar]", 0L))
                        .setMode(switch (r.mode()) {
                            case PRE_COPY -> dev.lazypages.net.proto.MigrationMode.PRE_COPY;
                            case POST_COPY -> dev.lazypages.net.proto.MigrationMode.POST_COPY;
                            case HYBRID -> dev.lazypages.net.proto.MigrationMode.HYBRID;
                        });
                for (HostFacts.FileId id : f.files()) {
                    p.addFiles(FileRef.newBuilder().setPath(id.size() < 0 ? id.path() + " (deleted)" : id.path())
                            .setDev(id.dev()).setInode(id.inode()).setSize(id.checkSize() ? Math.max(0, id.size()) : -1L));
                }
                b.setPrecheck(p);
            }
            case Msg.PrecheckReply r -> b.setPrecheckReply(PrecheckReply.newBuilder().setOk(r.differences().isEmpty())
                    .addAllProblems(r.differences()));
            case Msg.Freeze f -> b.setFreeze(Freeze.getDefaultInstance());
            case Msg.PageServerReady r -> b.setPageServerReady(dev.lazypages.net.proto.PageServerReady.newBuilder().setPort(r.port()));
            case Msg.RoundApplied r -> b.setRoundApplied(dev.lazypages.net.proto.RoundApplied.newBuilder().setRound(r.round()));
            case Msg.RestoreRequest r -> b.setRestore(RestoreRequest.newBuilder().setFinalDir(r.dir()).setLazy(r.lazy())
                    .setPageServerPort(r.pageServerPort()).setMaxPostcopyBandwidth(r.maxPostcopyBandwidth()));
            case Msg.Running r -> b.setRunning(Running.newBuilder().setPid(r.pid()).setRestoreMs(Math.round(r.restoreMs()))
                    .putAllPhasesMs(r.phasesMs()));
            case Msg.Failed f -> b.setFailed(Failed.newBuilder().setStep(f.step()).setMessage(f.message()));
            case Msg.Commit c -> b.setCommit(Commit.getDefaultInstance());
            case Msg.Abort a -> b.setAbort(Abort.newBuilder().setReason(a.reason()));
            case Msg.PostCopyDone d -> {
                Map<String, Object> p = MigrationReport.percentiles(d.faultLatency());
                b.setPostCopyDone(PostCopyDone.newBuilder().setFaults(d.faults()).setPages(d.pages()).setBytes(d.bytes())
                        .setDurationMs(d.durationMs()).setP50Us(us(p.get("p50"))).setP90Us(us(p.get("p90")))
                        .setP99Us(us(p.get("p99"))).setP999Us(us(p.get("p999"))).setMaxUs(us(p.get("max"))));
            }
            case Msg.Ping p -> b.setPing(dev.lazypages.net.proto.Ping.newBuilder().setSequence(1)
                    .setSentUnixNanos(System.currentTimeMillis() * 1_000_000));
            case Msg.DirectoryArrived d -> throw new IllegalArgumentException("DirectoryArrived is not sent: use sendDirectory");
        }
        return b.build();
    }

    private static long us(Object v) {
        return Math.round(((Number) v).doubleValue());
    }

    static Msg decode(ControlMessage m) throws IOException {
        return switch (m.getBodyCase()) {
            case PRECHECK -> {
                PrecheckRequest p = m.getPrecheck();
                Map<String, Long> special = new LinkedHashMap<>();
                if (p.getVdsoSize() != 0) {
                    special.put("[vdso]", p.getVdsoSize());
                }
                if (p.getVvarSize() != 0) {
                    special.put("[vvar]", p.getVvarSize());
                }
                List<HostFacts.FileId> files = new ArrayList<>();
                for (FileRef f : p.getFilesList()) {
                    boolean deleted = f.getPath().endsWith(" (deleted)");
                    files.add(new HostFacts.FileId(deleted ? f.getPath().substring(0, f.getPath().length() - 10) : f.getPath(),
                            f.getDev(), f.getInode(), deleted ? -1 : f.getSize() == -1L ? 0 : f.getSize(), f.getSize() != -1L,
                            deleted ? "deleted at the source" : "open or mapped by the process"));
                }
                MigrationMode mode = switch (p.getMode()) {
                    case PRE_COPY -> MigrationMode.PRE_COPY;
                    case POST_COPY -> MigrationMode.POST_COPY;
                    case HYBRID -> MigrationMode.HYBRID;
                    default -> throw new IOException("pre-check request without a known migration mode: " + p.getMode());
                };
                HostFacts facts = new HostFacts(p.getPageSize(), p.getCpuXcr0(), Map.of(), special, files);
                yield new Msg.PrecheckRequest(mode, facts, p.getNeededFeaturesList());
            }
            case PRECHECK_REPLY -> new Msg.PrecheckReply(m.getPrecheckReply().getOk() && m.getPrecheckReply().getProblemsCount() == 0
                    ? List.of()
                    : m.getPrecheckReply().getProblemsCount() > 0 ? m.getPrecheckReply().getProblemsList() : List.of("refused"));
            case FREEZE -> new Msg.Freeze();
            case PAGE_SERVER_READY -> new Msg.PageServerReady(m.getPageServerReady().getPort());
            case ROUND_APPLIED -> new Msg.RoundApplied(m.getRoundApplied().getRound());
            case RESTORE -> {
                long cap = m.getRestore().getMaxPostcopyBandwidth();
                if (cap < 0) { // a uint64 past Long.MAX_VALUE
                    throw new IOException("restore request with a post-copy bandwidth cap out of range: " + Long.toUnsignedString(cap));
                }
                yield new Msg.RestoreRequest(m.getRestore().getLazy(), m.getRestore().getPageServerPort(),
                        m.getRestore().getFinalDir(), cap);
            }
            case RUNNING -> new Msg.Running(m.getRunning().getPid(), m.getRunning().getRestoreMs(), m.getRunning().getPhasesMsMap());
            case FAILED -> new Msg.Failed(m.getFailed().getStep(), m.getFailed().getMessage());
            case COMMIT -> new Msg.Commit();
            case ABORT -> new Msg.Abort(m.getAbort().getReason());
            case PING, REPORT -> new Msg.Ping();
            default -> throw new IOException("unexpected control message " + m.getBodyCase());
        };
    }

    @Override
    public boolean closed() {
        return !conn.isOpen();
    }

    @Override
    public InetAddress localAddress() {
        return conn.localAddress().getAddress();
    }

    @Override
    public InetAddress peerAddress() {
        return conn.remoteAddress().getAddress();
    }

    @Override
    public void close() {
        try {
            conn.close();
        } catch (RuntimeException e) {
            // closed by the peer already: its event loop may be shut down (RejectedExecutionException)
        }
    }
}
