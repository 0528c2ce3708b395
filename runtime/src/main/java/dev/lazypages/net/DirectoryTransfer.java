package dev.lazypages.net;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import io.netty.buffer.ByteBuf;
import dev.lazypages.net.proto.ControlMessage;
import dev.lazypages.net.proto.DirectoryDone;
import dev.lazypages.net.proto.FileChunk;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.stream.Stream;
import java.util.zip.CRC32C;

/**
 * Moves an image directory (flat: regular files only) over a {@link ControlConnection}, as
 * {@link FileChunk}s of at most {@link #CHUNK_BYTES} followed by one {@link DirectoryDone} with
 * the CRC-32C of every file.
 *
 * <p>The receiver writes into a hidden temporary directory next to the target ({@code
 * .incoming-<name>-<nanos>}), each file mode 0600 under a temporary name ({@code .<name>.part})
 * renamed when complete, checks names, sizes and CRCs when DirectoryDone arrives, then renames
 * the directory into place (mode 0700). On any failure it deletes the temporary directory and
 * throws; nothing half-received is ever visible under the final name.
 */
public final class DirectoryTransfer {
    /** Largest FileChunk payload. */
    public static final int CHUNK_BYTES = 1 << 20;
    /** How long {@link #receive(ControlConnection, Path)} waits for each message. */
    public static final Duration DEFAULT_IDLE_TIMEOUT = Duration.ofSeconds(60);
    private static final Set<PosixFilePermission> FILE_0600 = PosixFilePermissions.fromString("rw-------");
    private static final Set<PosixFilePermission> DIR_0700 = PosixFilePermissions.fromString("rwx------");

    private DirectoryTransfer() {
    }

    /** What was sent or received. */
    public record Stats(Path dir, int files, long bytes, Duration elapsed) {
        public double mibPerSecond() {
            double s = elapsed.toNanos() / 1e9;
            return s > 0 ? bytes / (1024.0 * 1024.0) / s : 0;
        }
    }

    /**
     * Sends every regular file of {@code dir} (sorted by name; subdirectories and other entries
     * are skipped), then DirectoryDone. Blocks on the connection's back-pressure.
     */
    public static Stats send(ControlConnection c, int round, Path dir) throws IOException {
        return start(c, round, dir.getFileName() == null ? "" : dir.getFileName().toString(), null).finish(dir);
    }

    /**
     * Starts sending a directory named {@code dirName} whose file {@code streamed} (or none, when
     * null) is sent while it is being made, by {@link Outgoing#write} and {@link Outgoing#finishStreamed};
     * {@link Outgoing#finish} then sends the directory's other files and DirectoryDone.
     */
    public static Outgoing start(ControlConnection c, int round, String dirName, String streamed) throws IOException {
        return new Outgoing(c, round, checkName(dirName, "directory"), streamed == null ? null : checkName(streamed, "file"));
    }

    /**
     * A directory on its way. The streamed file goes first: its body in order, from any offset
     * S, then its first S bytes (a header known only at the end, as pages.img's); DirectoryDone's
     * CRC of a file is over its bytes in the order they were sent (for a file sent in order: its CRC).
     * Not thread-safe.
     */
    public static final class Outgoing {
        private final ControlConnection c;
        private final int round;
        private final String dirName;
        private final String streamed;
        private final long t0 = System.nanoTime();
        private final DirectoryDone.Builder done;
        private final CRC32C streamCrc = new CRC32C();
        private final boolean raw;
        private long total;
        private int files;
        private long streamStart = -1;
        private long streamEnd;
        private boolean streamFinished;
        private volatile CompletableFuture<?> last = CompletableFuture.completedFuture(null);
        /** Written but not yet sent: sent as one chunk and one gathered raw frame by {@link #flushed} (or when large). */
        private final List<ByteBuffer> pending = new ArrayList<>();
        private long pendingBytes;
        private long pendingAt;

        private Outgoing(ControlConnection c, int round, String dirName, String streamed) {
            this.c = c;
            this.round = round;
            this.dirName = dirName;
            this.streamed = streamed;
            this.raw = c.peerCan(ControlConnection.RAW_FILE_DATA);
            this.done = DirectoryDone.newBuilder().setRound(round).setDirName(dirName);
        }

        /**
         * Takes {@code data}'s remaining bytes (a direct buffer) as the streamed file's bytes at
         * {@code position}: the first write may start anywhere, every later one where the last
         * ended. Returns at once: writes are gathered and sent by {@link #flushed} (or once
         * {@link #MAX_PENDING_BYTES} are gathered); the memory must stay unchanged until the
         * future {@link #flushed} returns completes.
         */
        public void write(ByteBuffer data, long position) throws IOException {
            if (streamed == null || streamFinished) {
                throw new IllegalStateException("no streamed file open in " + dirName);
            }
            if (streamStart < 0) {
                streamStart = position;
                streamEnd = position;
            }
            if (position != streamEnd) {
                throw new IllegalArgumentException(streamed + ": write at " + position + ", expected " + streamEnd);
            }
            int n = data.remaining();
            streamCrc.update(data.duplicate());
            if (raw && data.isDirect()) {
                if (pending.isEmpty()) {
                    pendingAt = position;
                }
                pending.add(data.slice());
                pendingBytes += n;
                streamEnd += n;
                if (pendingBytes >= MAX_PENDING_BYTES) {
                    sendPending();
                }
                return;
            } else {
                for (int off = 0; off < n; off += CHUNK_BYTES) {
                    int k = Math.min(CHUNK_BYTES, n - off);
                    c.send(ControlMessage.newBuilder().setFileChunk(FileChunk.newBuilder().setRound(round).setName(streamed)
                            .setOffset(position + off).setData(ByteString.copyFrom(data.slice(data.position() + off, k)))
                            .setMode(0600)).build());
                }
            }
            streamEnd += n;
        }

        /** The future of the last send (no side effect, any thread): progress for a stall guard. */
        public CompletableFuture<?> lastSent() {
            return last;
        }

        /**
         * Sends what was written and not sent yet, and returns a future that completes once every
         * byte written so far was taken by the socket (fails with the connection).
         */
        public CompletableFuture<?> flushed() throws IOException {
            sendPending();
            return last;
        }

        /** Writes gathered since the last send go as one FileChunk and one raw frame: fewer messages, fewer wake-ups. */
        private void sendPending() throws IOException {
            if (pending.isEmpty()) {
                return;
            }
            c.send(ControlMessage.newBuilder().setFileChunk(FileChunk.newBuilder().setRound(round).setName(streamed)
                    .setOffset(pendingAt).setRawLength(pendingBytes).setMode(0600)).build());
            last = c.sendBuffers(List.copyOf(pending));
            pending.clear();
            pendingBytes = 0;
        }

        /** Ends the streamed file with {@code head}: its bytes before the first write's position. */
        public void finishStreamed(ByteBuffer head) throws IOException {
            if (streamed == null || streamFinished) {
                throw new IllegalStateException("no streamed file open in " + dirName);
            }
            sendPending();
            boolean body = streamStart >= 0;
            long start = body ? streamStart : head.remaining(); // no body written: the head is the whole file
            if (head.remaining() != start || start > CHUNK_BYTES) {
                throw new IllegalArgumentException(streamed + ": head of " + head.remaining() + " bytes, expected " + start);
            }
            streamCrc.update(head.duplicate());
            if (start > 0 || !body) {
                c.send(ControlMessage.newBuilder().setFileChunk(FileChunk.newBuilder().setRound(round).setName(streamed)
                        .setOffset(0).setData(ByteString.copyFrom(head)).setMode(0600)).build());
            }
            streamFinished = true;
            done.putCrc32C(streamed, (int) streamCrc.getValue());
            total += body ? streamEnd : start;
            files++;
        }

        /**
         * Sends every regular file of {@code dir} but the streamed one (sorted by name), then
         * DirectoryDone, and waits until the socket took everything.
         */
        public Stats finish(Path dir) throws IOException {
            if (streamed != null && !streamFinished) {
                throw new IllegalStateException(streamed + " was not finished");
            }
            List<Path> list = new ArrayList<>();
            try (Stream<Path> s = Files.list(dir)) {
                s.filter(p -> Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS))
                        .filter(p -> !p.getFileName().toString().equals(streamed)).sorted().forEach(list::add);
            }
            for (Path f : list) {
                total += sendFile(c, round, f, raw, done);
                files++;
            }
            done.setFileCount(files).setTotalBytes(total);
            c.send(ControlMessage.newBuilder().setDirectoryDone(done).build());
            await(last, dirName);
            return new Stats(dir, files, total, Duration.ofNanos(System.nanoTime() - t0));
        }
    }

    private static void await(CompletableFuture<?> f, String what) throws IOException {
        try {
            f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted while sending " + what);
        } catch (java.util.concurrent.ExecutionException e) {
            throw e.getCause() instanceof IOException io ? io : new IOException(e.getCause());
        }
    }

    /** Sends one whole file as FileChunks (or raw-data frames); puts its CRC into {@code done}. */
    private static long sendFile(ControlConnection c, int round, Path f, boolean raw, DirectoryDone.Builder done)
            throws IOException {
        String name = checkName(f.getFileName().toString(), "file");
        int mode = 0600;
        try {
            mode = toMode(Files.getPosixFilePermissions(f, LinkOption.NOFOLLOW_LINKS));
        } catch (UnsupportedOperationException ignored) {
            // not a POSIX file system: the default will do, the receiver writes 0600 anyway
        }
        CRC32C crc = new CRC32C();
        long size = Files.size(f);
        if (raw && size >= RAW_MIN_BYTES) {
            long n = sendRaw(c, round, f, name, mode, size, crc);
            done.putCrc32C(name, (int) crc.getValue());
            return n;
        }
        try (FileChannel in = FileChannel.open(f, StandardOpenOption.READ)) {
            long offset = 0;
            boolean sentAny = false;
            while (true) {
                byte[] buf = new byte[CHUNK_BYTES]; // handed to protobuf without a copy: never reused
                int n = readFully(in, ByteBuffer.wrap(buf));
                if (n == 0 && sentAny) {
                    break;
                }
                crc.update(buf, 0, n);
                ByteString data = n == 0 ? ByteString.EMPTY : UnsafeByteOperations.unsafeWrap(buf, 0, n);
                c.send(ControlMessage.newBuilder().setFileChunk(FileChunk.newBuilder().setRound(round).setName(name)
                        .setOffset(offset).setData(data).setMode(mode)).build());
                sentAny = true;
                offset += n;
                if (n < CHUNK_BYTES) {
                    break;
                }
            }
            done.putCrc32C(name, (int) crc.getValue());
            return offset;
        }
    }

    /**
     * Sends {@code f} as raw-data frames (zero-copy where the transport can), computing its CRC
     * into {@code crc} while the bytes are on their way.
     */
    private static long sendRaw(ControlConnection c, int round, Path f, String name, int mode, long size, CRC32C crc)
            throws IOException {
        List<CompletableFuture<Void>> sent = new ArrayList<>();
        for (long off = 0; off < size; off += RAW_FRAME_BYTES) {
            long n = Math.min(RAW_FRAME_BYTES, size - off);
            c.send(ControlMessage.newBuilder().setFileChunk(FileChunk.newBuilder().setRound(round).setName(name)
                    .setOffset(off).setRawLength(n).setMode(mode)).build());
            sent.add(c.sendFileRegion(f, off, n));
        }
        try (FileChannel in = FileChannel.open(f, StandardOpenOption.READ)) {
            for (long off = 0; off < size; off += CRC_MAP_BYTES) {
                crc.update(in.map(FileChannel.MapMode.READ_ONLY, off, Math.min(CRC_MAP_BYTES, size - off)));
            }
        }
        for (var fut : sent) {
            await(fut, name);
        }
        return size;
    }

    /** A streamed file's writes are gathered into raw frames of at most this many bytes. */
    static final long MAX_PENDING_BYTES = 32L << 20;

    /** Files at least this large go as raw-data frames to a peer that reads them. */
    static final long RAW_MIN_BYTES = 64 << 10;
    /** Largest raw-data frame. */
    static final long RAW_FRAME_BYTES = 1L << 30;
    private static final long CRC_MAP_BYTES = 64L << 20;

    /** {@link #receive(ControlConnection, Path, Duration)} waiting up to a minute per message. */
    public static Path receive(ControlConnection c, Path intoParent) throws IOException, InterruptedException {
        return receive(c, intoParent, DEFAULT_IDLE_TIMEOUT).dir();
    }

    /**
     * Receives one directory into {@code intoParent}; returns where it is. Every message until
     * DirectoryDone must be a FileChunk of the same round.
     *
     * @throws IOException on a bad name, out-of-order chunk, size or CRC mismatch, an existing target,
     *                     an unexpected message, or a closed connection
     */
    public static Stats receive(ControlConnection c, Path intoParent, Duration idleTimeout)
            throws IOException, InterruptedException {
        long t0 = System.nanoTime();
        Path tmp = intoParent.resolve(".incoming-" + System.nanoTime());
        Files.createDirectory(tmp, PosixFilePermissions.asFileAttribute(DIR_0700));
        boolean ok = false;
        Map<String, Incoming> files = new HashMap<>();
        Incoming cur = null;
        int round = -1;
        try {
            while (true) {
                Object frame = c.receiveFrame(idleTimeout);
                if (frame instanceof RawData r) {
                    r.buf().release();
                    throw new IOException("raw data without a FileChunk announcing it");
                }
                ControlMessage m = (ControlMessage) frame;
                if (m.hasFileChunk()) {
                    FileChunk ch = m.getFileChunk();
                    if (round < 0) {
                        round = ch.getRound();
                    } else if (ch.getRound() != round) {
                        throw new IOException("chunk of round " + ch.getRound() + " while receiving round " + round);
                    }
                    String name = checkName(ch.getName(), "file");
                    if (ch.getData().size() > CHUNK_BYTES) {
                        throw new IOException("chunk of " + name + " holds " + ch.getData().size() + " bytes, more than "
                                + CHUNK_BYTES);
                    }
                    if (cur == null || !cur.name.equals(name)) {
                        if (cur != null) {
                            cur.finish();
                        }
                        if (files.containsKey(name)) {
                            throw new IOException("file " + name + " sent twice");
                        }
                        cur = new Incoming(tmp, name);
                        files.put(name, cur);
                    }
                    if (ch.getRawLength() > 0) {
                        if (!ch.getData().isEmpty()) {
                            throw new IOException("chunk of " + name + " has both data and raw_length");
                        }
                        cur.receiveRaw(c, ch.getOffset(), ch.getRawLength(), idleTimeout);
                    } else {
                        cur.write(ch.getOffset(), ch.getData());
                    }
                } else if (m.hasDirectoryDone()) {
                    if (cur != null) {
                        cur.finish();
                        cur = null;
                    }
                    DirectoryDone d = m.getDirectoryDone();
                    String dirName = checkName(d.getDirName(), "directory");
                    verify(d, files, round);
                    Path target = intoParent.resolve(dirName);
                    if (Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
                        throw new FileAlreadyExistsException(target.toString(), null, "directory already received");
                    }
                    Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
                    ok = true;
                    long bytes = files.values().stream().mapToLong(i -> i.size).sum();
                    return new Stats(target, files.size(), bytes, Duration.ofNanos(System.nanoTime() - t0));
                } else {
                    throw new IOException("unexpected " + m.getBodyCase() + " during a directory transfer");
                }
            }
        } finally {
            if (cur != null) {
                cur.closeQuietly();
            }
            if (!ok) {
                for (Incoming i : files.values()) {
                    i.closeQuietly();
                }
                deleteQuietly(tmp);
            }
        }
    }

    private static void verify(DirectoryDone d, Map<String, Incoming> files, int round) throws IOException {
        if (round >= 0 && d.getRound() != round) {
            throw new IOException("DirectoryDone of round " + d.getRound() + " ends round " + round);
        }
        if (d.getFileCount() != files.size() || d.getCrc32CCount() != files.size()) {
            throw new IOException("directory " + d.getDirName() + ": " + files.size() + " files received, sender says "
                    + d.getFileCount() + " (" + d.getCrc32CCount() + " CRCs)");
        }
        long total = 0;
        for (Incoming i : files.values()) {
            Integer want = d.getCrc32CMap().get(i.name);
            if (want == null) {
                throw new IOException("file " + i.name + " received but not listed in DirectoryDone");
            }
            int got = (int) i.crc.getValue();
            if (got != want) {
                throw new IOException(String.format("CRC-32C mismatch in %s: received %08x, sender says %08x", i.name, got,
                        want));
            }
            total += i.size;
        }
        if (total != d.getTotalBytes()) {
            throw new IOException("directory " + d.getDirName() + ": " + total + " bytes received, sender says "
                    + d.getTotalBytes());
        }
    }

    /** A file being received: written in order under a temporary name, renamed by finish(). */
    private static final class Incoming {
        final String name;
        final Path part;
        final Path done;
        final FileChannel out;
        final CRC32C crc = new CRC32C();
        /** End of the bytes written (the file's size once complete). */
        long size;
        /** A file that began at an offset S > 0 ends with its first S bytes (its head): S, until they came. */
        long headMissing;
        boolean started;
        boolean finished;

        Incoming(Path dir, String name) throws IOException {
            this.name = name;
            this.part = dir.resolve("." + name + ".part");
            this.done = dir.resolve(name);
            this.out = FileChannel.open(part, Set.of(StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE),
                    PosixFilePermissions.asFileAttribute(FILE_0600));
        }

        /**
         * Where {@code length} bytes announced at {@code offset} go: at the end of what came so
         * far, or (a streamed file) the first chunk anywhere and then, once, its missing head.
         */
        private long place(long offset, long length) throws IOException {
            if (finished) {
                throw new IOException("file " + name + " continued after another file started");
            }
            if (!started && offset > 0 && offset <= CHUNK_BYTES) {
                started = true;
                headMissing = offset;
                size = offset + length;
                return offset;
            }
            started = true;
            if (offset == 0 && headMissing > 0 && length == headMissing) {
                headMissing = 0;
                return 0;
            }
            if (offset != size) {
                throw new IOException("chunk of " + name + " at offset " + offset + ", expected " + size);
            }
            size += length;
            return offset;
        }

        void write(long offset, ByteString data) throws IOException {
            long pos = place(offset, data.size());
            for (ByteBuffer b : data.asReadOnlyByteBufferList()) {
                crc.update(b.duplicate());
                while (b.hasRemaining()) {
                    pos += out.write(b, pos);
                }
            }
        }

        /** Takes {@code length} bytes of raw data from {@code c} at {@code offset}. */
        void receiveRaw(ControlConnection c, long offset, long length, Duration idleTimeout)
                throws IOException, InterruptedException {
            long pos = place(offset, length);
            long left = length;
            while (left > 0) {
                Object frame = c.receiveFrame(idleTimeout);
                if (!(frame instanceof RawData r)) {
                    throw new IOException("file " + name + ": " + left + " bytes of raw data missing, got "
                            + ((ControlMessage) frame).getBodyCase());
                }
                ByteBuf b = r.buf();
                try {
                    int n = b.readableBytes();
                    if (n > left) {
                        throw new IOException("file " + name + ": raw data longer than announced");
                    }
                    for (ByteBuffer bb : b.nioBuffers()) {
                        crc.update(bb.duplicate());
                        while (bb.hasRemaining()) {
                            pos += out.write(bb, pos);
                        }
                    }
                    left -= n;
                } finally {
                    b.release();
                }
            }
        }

        void finish() throws IOException {
            if (!finished && headMissing > 0) {
                throw new IOException("file " + name + ": its first " + headMissing + " bytes never came");
            }
            if (!finished) {
                finished = true;
                out.close();
                Files.move(part, done, StandardCopyOption.ATOMIC_MOVE);
            }
        }

        void closeQuietly() {
            try {
                out.close();
            } catch (IOException ignored) {
                // cleanup
            }
        }
    }

    /** A file or directory name as received: one path component, nothing that climbs out. */
    static String checkName(String name, String what) throws IOException {
        if (name.isEmpty() || name.equals(".") || name.equals("..") || name.indexOf('/') >= 0 || name.indexOf('\0') >= 0
                || name.startsWith(".incoming-") || name.endsWith(".part") || name.length() > 255) {
            throw new IOException("bad " + what + " name " + quote(name));
        }
        return name;
    }

    private static String quote(String s) {
        return "\"" + s.replace("\0", "\\0") + "\"";
    }

    private static int readFully(FileChannel in, ByteBuffer b) throws IOException {
        int n = 0;
        while (b.hasRemaining()) {
            int r = in.read(b);
            if (r < 0) {
                break;
            }
            n += r;
        }
        return n;
    }

    private static int toMode(Set<PosixFilePermission> perms) {
        int mode = 0;
        for (PosixFilePermission p : perms) {
            mode |= 1 << (8 - p.ordinal()); // OWNER_READ is 0400 ... OTHERS_EXECUTE is 0001
        }
        return mode;
    }

    private static void deleteQuietly(Path dir) {
        try (Stream<Path> s = Files.list(dir)) {
            s.forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // best effort
                }
            });
            Files.deleteIfExists(dir);
        } catch (IOException ignored) {
            // best effort
        }
    }
}
