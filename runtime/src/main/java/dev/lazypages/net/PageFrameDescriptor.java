package dev.lazypages.net;

import io.netty.buffer.ByteBuf;
import java.nio.charset.StandardCharsets;

/**
 * The page plane's frames: a fixed 24-byte header, then (for some types) a body. All fields
 * big-endian (network order). One TCP connection carries frames of one kind: FAULT or BULK,
 * named in its first frame (AUTH).
 *
 * <pre>
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-------------------------------+---------------+---------------+
 *  |         magic (0x4C50)        |     type      |     flags     |  0
 *  +-------------------------------+---------------+---------------+
 *  |                           nr_pages                            |  4
 *  +---------------------------------------------------------------+
 *  |                            vaddr                              |  8
 *  |                                                               |
 *  +---------------------------------------------------------------+
 *  |                          request_id                           | 16
 *  |                                                               |
 *  +---------------------------------------------------------------+
 *  |                      body (see per type)                    ...  24
 * </pre>
 *
 * <table>
 *   <caption>Frame types</caption>
 *   <tr><th>type</th><th>direction</th><th>fields</th><th>body</th></tr>
 *   <tr><td>REQUEST (1)</td><td>client → server</td><td>nr_pages, vaddr, request_id</td><td>none</td></tr>
 *   <tr><td>DONE (2)</td><td>client → server</td><td>all zero: the client needs no more pages</td><td>none</td></tr>
 *   <tr><td>PAGES (3)</td><td>server → client</td><td>as the request</td><td>nr_pages × page_size raw bytes</td></tr>
 *   <tr><td>ERROR (4)</td><td>server → client</td><td>as the request (zero for a refused AUTH)</td>
 *       <td>u32 length, then that many bytes of UTF-8 message</td></tr>
 *   <tr><td>AUTH (5)</td><td>client → server, first frame</td><td>flags = connection kind (FAULT 1, BULK 2),
 *       nr_pages = token length in bytes (≤ 256), vaddr = client page size</td><td>the token, UTF-8</td></tr>
 *   <tr><td>ACCEPT (6)</td><td>server → client, answers AUTH</td><td>flags = kind, vaddr = server page size</td>
 *       <td>none</td></tr>
 * </table>
 *
 * A server answers every REQUEST with exactly one PAGES or ERROR of the same request_id, in
 * any order. A REQUEST asks for at most {@link #MAX_PAGES} pages. A wrong or missing token gets
 * ERROR("token mismatch") and the connection is closed.
 */
public final class PageFrameDescriptor {
    public static final int MAGIC = 0x4C50; // "LP"
    public static final int HEADER_LENGTH = 24;

    public static final int MAGIC_OFFSET = 0;
    public static final int TYPE_OFFSET = 2;
    public static final int FLAGS_OFFSET = 3;
    public static final int NR_PAGES_OFFSET = 4;
    public static final int VADDR_OFFSET = 8;
    public static final int REQUEST_ID_OFFSET = 16;

    public static final int TYPE_REQUEST = 1;
    public static final int TYPE_DONE = 2;
    public static final int TYPE_PAGES = 3;
    public static final int TYPE_ERROR = 4;
    public static final int TYPE_AUTH = 5;
    public static final int TYPE_ACCEPT = 6;

    /** AUTH/ACCEPT flags: the connection carries fault requests (latency first). */
    public static final int KIND_FAULT = 1;
    /** AUTH/ACCEPT flags: the connection carries bulk requests (throughput first). */
    public static final int KIND_BULK = 2;

    /** Most pages one REQUEST may ask for (4 MiB of 4 KiB pages). */
    public static final int MAX_PAGES = 1024;
    /** Longest token in an AUTH frame. */
    public static final int MAX_TOKEN_BYTES = 256;
    /** Longest ERROR message. */
    public static final int MAX_ERROR_BYTES = 64 * 1024;

    private PageFrameDescriptor() {
    }

    /** Writes a header at the writer index. */
    public static ByteBuf writeHeader(ByteBuf b, int type, int flags, int nrPages, long vaddr, long requestId) {
        return b.writeShort(MAGIC).writeByte(type).writeByte(flags).writeInt(nrPages).writeLong(vaddr)
                .writeLong(requestId);
    }

    /** Writes an ERROR frame (header and message, truncated to {@link #MAX_ERROR_BYTES}). */
    public static ByteBuf writeError(ByteBuf b, int nrPages, long vaddr, long requestId, String message) {
        byte[] m = message.getBytes(StandardCharsets.UTF_8);
        int n = Math.min(m.length, MAX_ERROR_BYTES);
        writeHeader(b, TYPE_ERROR, 0, nrPages, vaddr, requestId);
        return b.writeInt(n).writeBytes(m, 0, n);
    }

    static String typeName(int type) {
        return switch (type) {
            case TYPE_REQUEST -> "REQUEST";
            case TYPE_DONE -> "DONE";
            case TYPE_PAGES -> "PAGES";
            case TYPE_ERROR -> "ERROR";
            case TYPE_AUTH -> "AUTH";
            case TYPE_ACCEPT -> "ACCEPT";
            default -> "type " + type;
        };
    }
}
