package dev.lazypages.image;

import java.util.HexFormat;

/** Hex rendering for messages and {@code inspect}. */
final class Hex {
    private static final HexFormat HEX = HexFormat.of();

    private Hex() {
    }

    /** The first {@code max} bytes of {@code b} in hex, with "..." when there are more. */
    static String prefix(byte[] b, int max) {
        int n = Math.min(b.length, max);
        return HEX.formatHex(b, 0, n) + (b.length > n ? "..." : "");
    }

    /** {@code 0x} and the unsigned hex of {@code v}. */
    static String of(long v) {
        return "0x" + Long.toHexString(v);
    }
}
