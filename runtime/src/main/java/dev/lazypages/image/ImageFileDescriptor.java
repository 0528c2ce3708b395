package dev.lazypages.image;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * The fixed header every image file starts with, little-endian:
 *
 * <pre>
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Magic "LZPGIMG\0"                          |  0
 *  |                                                               |
 *  +---------------------------------------------------------------+
 *  |                     Format Version (u32)                      |  8
 *  +---------------------------------------------------------------+
 *  |                        File Kind (u32)                        | 12
 *  +---------------------------------------------------------------+
 *  |                      Payload Length (u64)                     | 16
 *  |                                                               |
 *  +---------------------------------------------------------------+
 *  |                    Payload CRC-32C (u32)                      | 24
 *  +---------------------------------------------------------------+
 *  |          Page Size (u32): PAGES only, 0 in other kinds        | 28
 *  +---------------------------------------------------------------+
 *  |                  Reserved, zero (32 bytes)                    | 32
 *  |                              ...                              |
 *  +---------------------------------------------------------------+
 *  |  Payload                                                      | 64
 *  |  protobuf files: the message, right after the header          |
 *  |  PAGES: zero padding up to Page Size, then the pages, so that |
 *  |  page k of pages.img starts at Page Size + k * Page Size      |
 *  +---------------------------------------------------------------+
 * </pre>
 *
 * <p>The payload length counts the bytes after the header: the message, or for PAGES the page
 * data only (not the padding). The CRC-32C (Castagnoli, as {@link java.util.zip.CRC32C}) covers
 * the same bytes. A file is exactly header + (PAGES: padding +) payload long; anything else is
 * corrupt. Kinds are {@link ImageFile.Kind#code()}.
 */
public final class ImageFileDescriptor {
    /** The 8 magic bytes, "LZPGIMG" and a NUL. */
    public static final byte[] MAGIC = "LZPGIMG\0".getBytes(StandardCharsets.US_ASCII);
    /** The format version this build writes and the only one it reads. */
    public static final int FORMAT_VERSION = 1;

    /** Offset of the magic. */
    public static final int MAGIC_OFFSET = 0;
    /** Offset of the u32 format version. */
    public static final int VERSION_OFFSET = 8;
    /** Offset of the u32 file kind. */
    public static final int KIND_OFFSET = 12;
    /** Offset of the u64 payload length. */
    public static final int PAYLOAD_LENGTH_OFFSET = 16;
    /** Offset of the u32 payload CRC-32C. */
    public static final int PAYLOAD_CRC_OFFSET = 24;
    /** Offset of the u32 page size (PAGES files). */
    public static final int PAGE_SIZE_OFFSET = 28;
    /** Offset of the reserved bytes, which must be zero. */
    public static final int RESERVED_OFFSET = 32;
    /** Length of the header; protobuf payloads start here. */
    public static final int HEADER_LENGTH = 64;

    private ImageFileDescriptor() {
    }

    /**
     * A decoded header.
     *
     * @param version       format version
     * @param kind          raw file kind code
     * @param payloadLength payload bytes after the header (and the PAGES padding)
     * @param payloadCrc    CRC-32C of the payload
     * @param pageSize      page size for PAGES, 0 otherwise
     */
    public record Header(int version, int kind, long payloadLength, int payloadCrc, int pageSize) {
        /** Where the payload starts in the file: after the header, or for PAGES after the padding. */
        public long payloadOffset() {
            return pageSize == 0 ? HEADER_LENGTH : pageSize;
        }
    }

    /** Encodes a header of the current format version, {@link #HEADER_LENGTH} bytes, position 0. */
    public static ByteBuffer encode(ImageFile.Kind kind, long payloadLength, int payloadCrc, int pageSize) {
        ByteBuffer b = ByteBuffer.allocate(HEADER_LENGTH).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MAGIC_OFFSET, MAGIC);
        b.putInt(VERSION_OFFSET, FORMAT_VERSION);
        b.putInt(KIND_OFFSET, kind.code());
        b.putLong(PAYLOAD_LENGTH_OFFSET, payloadLength);
        b.putInt(PAYLOAD_CRC_OFFSET, payloadCrc);
        b.putInt(PAGE_SIZE_OFFSET, pageSize);
        return b;
    }

    /** True when {@code b} (at least {@link #HEADER_LENGTH} bytes from 0) starts with the magic. */
    static boolean hasMagic(ByteBuffer b) {
        return b.slice(MAGIC_OFFSET, MAGIC.length).equals(ByteBuffer.wrap(MAGIC));
    }

    /** True when the reserved bytes of {@code b} are all zero. */
    static boolean reservedZero(ByteBuffer b) {
        for (int i = RESERVED_OFFSET; i < HEADER_LENGTH; i++) {
            if (b.get(i) != 0) {
                return false;
            }
        }
        return true;
    }

    /** Decodes the fields of {@code b} without judging them ({@link ImageFile} does). */
    static Header decode(ByteBuffer b) {
        ByteBuffer le = b.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        return new Header(le.getInt(VERSION_OFFSET), le.getInt(KIND_OFFSET), le.getLong(PAYLOAD_LENGTH_OFFSET),
                le.getInt(PAYLOAD_CRC_OFFSET), le.getInt(PAGE_SIZE_OFFSET));
    }
}
