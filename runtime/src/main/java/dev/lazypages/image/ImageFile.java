package dev.lazypages.image;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.MessageLite;
import com.google.protobuf.Message;
import dev.lazypages.image.ImageFileDescriptor.Header;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.zip.CRC32C;

/**
 * Reading and writing one image file: the {@link ImageFileDescriptor header}, its checks, and
 * crash-safe creation.
 *
 * <p>Image directories are created 0700 ({@link #createDirectory}). Writers create
 * {@code NAME.tmp} with mode 0600, write it, fsync it, rename it to
 * {@code NAME} and fsync the directory, so that a crash leaves either the whole old file, the
 * whole new one, or a stray {@code .tmp} that readers ignore.
 *
 * <p>Readers check, in this order: the file is at least a header long, the magic, the format
 * version, the kind, the reserved bytes, the page size field, that the file is exactly as long
 * as the header says, and (for protobuf files) the CRC-32C, before any parsing; a length field
 * never sizes an allocation before it has been checked against the file's size.
 */
public final class ImageFile {
    /** Largest protobuf payload read into memory (far above any real process tree or page map). */
    static final long MAX_MESSAGE_BYTES = 1L << 30;

    /** What an image file holds; the code is stored in the header. */
    public enum Kind {
        /** {@code inventory.img}: one {@code Inventory} message. */
        INVENTORY(1, "inventory.img"),
        /** {@code processes.img}: one {@code ProcessTree} message. */
        PROCESSES(2, "processes.img"),
        /** {@code pagemap.img}: one {@code PageMap} message. */
        PAGEMAP(3, "pagemap.img"),
        /** {@code pages.img}: raw page data. */
        PAGES(4, "pages.img");

        private final int code;
        private final String fileName;

        Kind(int code, String fileName) {
            this.code = code;
            this.fileName = fileName;
        }

        /** The code in the header's File Kind field. */
        public int code() {
            return code;
        }

        /** The file's name inside an image directory. */
        public String fileName() {
            return fileName;
        }

        /** The kind with {@code code}, or {@code null}. */
        static Kind ofCode(int code) {
            for (Kind k : values()) {
                if (k.code == code) {
                    return k;
                }
            }
            return null;
        }
    }

    private ImageFile() {
    }

    /** Writes {@code message} as the whole of {@code file}, atomically (see the class comment). */
    public static void writeMessage(Path file, Kind kind, MessageLite message) throws IOException {
        writeMessage(file, kind, message, true);
    }

    /**
     * As {@link #writeMessage(Path, Kind, MessageLite)}; {@code durable=false} skips the fsyncs
     * (still atomic by rename, but a crash may lose it: for images that cannot outlive this run).
     */
    public static void writeMessage(Path file, Kind kind, MessageLite message, boolean durable) throws IOException {
        byte[] payload = message.toByteArray();
        CRC32C crc = new CRC32C();
        crc.update(payload);
        Path tmp = tempFor(file);
        try (FileChannel ch = createTemp(tmp)) {
            writeFully(ch, ImageFileDescriptor.encode(kind, payload.length, (int) crc.getValue(), 0), 0);
            writeFully(ch, ByteBuffer.wrap(payload), ImageFileDescriptor.HEADER_LENGTH);
            if (durable) {
                ch.force(true);
            }
        }
        publish(tmp, file, durable);
    }

    /**
     * Reads and checks {@code file}, then parses its payload as a message of {@code prototype}'s type.
     *
     * @throws ImageFormatException when the file is missing, corrupt, of another version or kind,
     *                              or does not parse
     */
    @SuppressWarnings("unchecked")
    public static <T extends Message> T readMessage(Path file, Kind kind, T prototype) throws IOException {
        try (FileChannel ch = openRead(file)) {
            Header h = readHeader(ch, file, kind, 0);
            if (h.payloadLength() > MAX_MESSAGE_BYTES) {
                throw new ImageFormatException(file, "payload of " + h.payloadLength() + " bytes exceeds the limit of "
                        + MAX_MESSAGE_BYTES + " bytes");
            }
            ByteBuffer payload = ByteBuffer.allocate((int) h.payloadLength());
            readFully(ch, payload, h.payloadOffset(), file);
            CRC32C crc = new CRC32C();
            crc.update(payload.array());
            checkCrc(file, h.payloadCrc(), (int) crc.getValue());
            try {
                return (T) prototype.getParserForType().parseFrom(payload.array());
            } catch (InvalidProtocolBufferException e) {
                throw new ImageFormatException(file, "cannot parse " + prototype.getDescriptorForType().getName() + ": " + oneLine(e.getMessage()), e);
            }
        }
    }

    /** Opens {@code file} for reading; a missing file is an {@link ImageFormatException}. */
    static FileChannel openRead(Path file) throws IOException {
        try {
            return FileChannel.open(file, StandardOpenOption.READ);
        } catch (NoSuchFileException e) {
            throw new ImageFormatException(file, "missing");
        }
    }

    /**
     * Reads the header of {@code ch} and checks it against {@code expected} and the file's size.
     *
     * @param pageSize the page size the PAGES header must have, 0 for other kinds
     * @throws ImageFormatException naming the first problem found
     */
    static Header readHeader(FileChannel ch, Path file, Kind expected, int pageSize) throws IOException {
        long size = ch.size();
        if (size < ImageFileDescriptor.HEADER_LENGTH) {
            throw new ImageFormatException(file, "truncated: " + size + " bytes, shorter than the "
                    + ImageFileDescriptor.HEADER_LENGTH + "-byte header");
        }
        ByteBuffer b = ByteBuffer.allocate(ImageFileDescriptor.HEADER_LENGTH);
        readFully(ch, b, 0, file);
        if (!ImageFileDescriptor.hasMagic(b)) {
            throw new ImageFormatException(file, "not a lazy-pages image file (wrong magic "
                    + Hex.prefix(b.array(), ImageFileDescriptor.MAGIC.length) + ")");
        }
        Header h = ImageFileDescriptor.decode(b);
        if (h.version() != ImageFileDescriptor.FORMAT_VERSION) {
            throw new ImageFormatException(file, "unsupported format version " + Integer.toUnsignedString(h.version())
                    + "; this build reads version " + ImageFileDescriptor.FORMAT_VERSION);
        }
        Kind kind = Kind.ofCode(h.kind());
        if (kind != expected) {
            throw new ImageFormatException(file, "wrong file kind " + (kind == null ? "unknown" : kind.name()) + " ("
                    + Integer.toUnsignedString(h.kind()) + "), expected " + expected + " (" + expected.code() + ")");
        }
        if (!ImageFileDescriptor.reservedZero(b)) {
            throw new ImageFormatException(file, "reserved header bytes are not zero (written by a newer build?)");
        }
        if (h.pageSize() != pageSize) {
            throw new ImageFormatException(file, "page size " + Integer.toUnsignedString(h.pageSize())
                    + (pageSize == 0 ? ", must be 0 outside pages.img" : " differs from the inventory's " + pageSize));
        }
        long offset = h.payloadOffset();
        long have = Math.max(0, size - offset);
        if (Long.compareUnsigned(h.payloadLength(), have) > 0) {
            throw new ImageFormatException(file, "truncated: header says " + Long.toUnsignedString(h.payloadLength())
                    + " payload bytes, file has " + have);
        }
        if (h.payloadLength() < have) {
            throw new ImageFormatException(file, (have - h.payloadLength()) + " unexpected bytes after the "
                    + h.payloadLength() + "-byte payload");
        }
        return h;
    }

    /** A page size this format can hold: a power of two from 4 KiB to 1 MiB. */
    static boolean validPageSize(long pageSize) {
        return pageSize >= 4096 && pageSize <= (1 << 20) && Long.bitCount(pageSize) == 1;
    }

    static void checkCrc(Path file, int expected, int actual) {
        if (expected != actual) {
            throw new ImageFormatException(file, "CRC-32C mismatch: header says " + hex32(expected) + ", payload has "
                    + hex32(actual) + " (corrupt file)");
        }
    }

    static String hex32(int v) {
        return String.format("0x%08x", v);
    }

    /** The temporary name {@code file} is written under before {@link #publish}. */
    static Path tempFor(Path file) {
        return file.resolveSibling(file.getFileName() + ".tmp");
    }

    /**
     * Creates {@code dir} (and missing parents) with mode 0700: an image holds a process's whole
     * memory. An existing directory is left as it is.
     */
    public static void createDirectory(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        }
    }

    /** Creates {@code tmp} afresh with mode 0600 (a stale one from a crash is removed first). */
    static FileChannel createTemp(Path tmp) throws IOException {
        Files.deleteIfExists(tmp);
        Files.createFile(tmp, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
        return FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.READ);
    }

    /** Renames the fsynced {@code tmp} over {@code file} and fsyncs the directory. */
    static void publish(Path tmp, Path file) throws IOException {
        publish(tmp, file, true);
    }

    static void publish(Path tmp, Path file, boolean durable) throws IOException {
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        if (!durable) {
            return;
        }
        Path dir = file.toAbsolutePath().getParent();
        try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
            d.force(true);
        }
    }

    static void writeFully(FileChannel ch, ByteBuffer b, long position) throws IOException {
        long pos = position;
        while (b.hasRemaining()) {
            pos += ch.write(b, pos);
        }
    }

    /** Fills {@code b} from {@code position}; end of file first is a truncated file. */
    static void readFully(FileChannel ch, ByteBuffer b, long position, Path file) throws IOException {
        long pos = position;
        while (b.hasRemaining()) {
            int n = ch.read(b, pos);
            if (n < 0) {
                throw new ImageFormatException(file, "truncated: end of file at byte " + pos);
            }
            pos += n;
        }
        b.flip();
    }

    private static String oneLine(String s) {
        return s == null ? "" : s.replaceAll("\\s+", " ").trim();
    }
}
