package dev.lazypages.fuzz;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Mutations of valid inputs, byte-level and structure-aware: bit flips, interesting values,
 * truncation, extension, duplicated, removed and swapped slices, and (given where the length
 * and count fields of a format are) those fields set to huge, negative, zero or off-by-one
 * values.
 */
public final class Mutator {
    /** A fixed-width integer field of a format, at {@code offset}. */
    public record Field(int offset, int width, ByteOrder order) {
        public static Field be(int offset, int width) {
            return new Field(offset, width, ByteOrder.BIG_ENDIAN);
        }

        public static Field le(int offset, int width) {
            return new Field(offset, width, ByteOrder.LITTLE_ENDIAN);
        }
    }

    /** Values that break length and count checks. */
    static final long[] INTERESTING = {0, 1, -1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0xfff, 0x1000, 0x1001, 0x7fff,
        0x8000, 0xffff, 0x10000, 0x7fffffffL, 0x80000000L, 0xffffffffL, 0x100000000L, Long.MAX_VALUE, Long.MIN_VALUE,
        1L << 31, (1L << 31) - 1, 1L << 40, 1L << 62, -4096, 1024, 1025, 256, 257, 64 << 20, (64 << 20) + 1};

    private Mutator() {
    }

    /** An interesting value, sometimes off by one, sometimes random. */
    public static long interesting(SplittableRandom r) {
        long v = INTERESTING[r.nextInt(INTERESTING.length)];
        return switch (r.nextInt(6)) {
            case 0 -> v - 1;
            case 1 -> v + 1;
            case 2 -> r.nextLong();
            default -> v;
        };
    }

    /** Random bytes, 0 to {@code max} of them. */
    public static byte[] randomBytes(SplittableRandom r, int max) {
        byte[] b = new byte[r.nextInt(max + 1)];
        r.nextBytes(b);
        return b;
    }

    /** Applies 1 to 4 mutations to a copy of {@code valid}; {@code fields} may be empty. */
    public static byte[] mutate(SplittableRandom r, byte[] valid, List<Field> fields) {
        byte[] b = valid.clone();
        int n = 1 + r.nextInt(4);
        for (int i = 0; i < n; i++) {
            b = once(r, b, fields);
        }
        return b;
    }

    private static byte[] once(SplittableRandom r, byte[] b, List<Field> fields) {
        int op = r.nextInt(fields.isEmpty() ? 10 : 13);
        if (b.length == 0 && op < 8) {
            op = 8;
        }
        switch (op) {
            case 0, 1 -> { // bit flip
                int i = r.nextInt(b.length);
                b[i] ^= (byte) (1 << r.nextInt(8));
            }
            case 2 -> b[r.nextInt(b.length)] = (byte) interesting(r);
            case 3 -> { // an interesting 4- or 8-byte value anywhere
                int w = r.nextBoolean() ? 4 : 8;
                if (b.length >= w) {
                    put(b, new Field(r.nextInt(b.length - w + 1), w, r.nextBoolean() ? ByteOrder.BIG_ENDIAN
                            : ByteOrder.LITTLE_ENDIAN), interesting(r));
                }
            }
            case 4, 5 -> b = Arrays.copyOf(b, r.nextInt(b.length)); // truncate
            case 6 -> { // duplicate a slice in place after itself
                int from = r.nextInt(b.length);
                int len = 1 + r.nextInt(Math.min(b.length - from, 256));
                byte[] out = new byte[b.length + len];
                System.arraycopy(b, 0, out, 0, from + len);
                System.arraycopy(b, from, out, from + len, len);
                System.arraycopy(b, from + len, out, from + 2 * len, b.length - from - len);
                b = out;
            }
            case 7 -> { // swap two slices of one length (reorders records)
                int len = 1 + r.nextInt(Math.max(1, b.length / 2));
                if (2 * len <= b.length) {
                    int a = r.nextInt(b.length - 2 * len + 1);
                    int c = a + len + r.nextInt(b.length - a - 2 * len + 1);
                    byte[] tmp = Arrays.copyOfRange(b, a, a + len);
                    System.arraycopy(b, c, b, a, len);
                    System.arraycopy(tmp, 0, b, c, len);
                }
            }
            case 8 -> { // append random bytes
                byte[] extra = randomBytes(r, 64);
                byte[] out = Arrays.copyOf(b, b.length + extra.length);
                System.arraycopy(extra, 0, out, b.length, extra.length);
                b = out;
            }
            case 9 -> { // remove a slice
                if (b.length > 0) {
                    int from = r.nextInt(b.length);
                    int len = 1 + r.nextInt(Math.min(b.length - from, 64));
                    byte[] out = new byte[b.length - len];
                    System.arraycopy(b, 0, out, 0, from);
                    System.arraycopy(b, from + len, out, from, b.length - from - len);
                    b = out;
                }
            }
            default -> { // a known length/count field set to something nasty
                Field f = fields.get(r.nextInt(fields.size()));
                if (f.offset() + f.width() <= b.length) {
                    put(b, f, interesting(r));
                }
            }
        }
        return b;
    }

    /** Writes {@code v} into {@code f} of {@code b}. */
    public static void put(byte[] b, Field f, long v) {
        ByteBuffer w = ByteBuffer.wrap(b).order(f.order());
        switch (f.width()) {
            case 1 -> w.put(f.offset(), (byte) v);
            case 2 -> w.putShort(f.offset(), (short) v);
            case 4 -> w.putInt(f.offset(), (int) v);
            default -> w.putLong(f.offset(), v);
        }
    }

    /** Concatenation. */
    public static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        byte[] out = new byte[n];
        int at = 0;
        for (byte[] p : parts) {
            System.arraycopy(p, 0, out, at, p.length);
            at += p.length;
        }
        return out;
    }
}
