package dev.lazypages.proc;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.OptionalLong;

/**
 * The auxiliary vector of a process (/proc/PID/auxv): pairs of native words {@code (type, value)}
 * ending with {@code AT_NULL}, as the kernel passed them at exec.
 *
 * @param words the raw words, pairs included up to and with the terminating AT_NULL pair
 */
public record Auxv(long[] words) {
    public static final long AT_NULL = 0;
    public static final long AT_PHDR = 3;
    public static final long AT_PAGESZ = 6;
    public static final long AT_ENTRY = 9;
    public static final long AT_SYSINFO_EHDR = 33;

    public Auxv {
        words = words.clone();
    }

    /** Reads /proc/PID/auxv. */
    public static Auxv read(int pid) {
        return parse(Proc.readBytes(pid, "auxv"));
    }

    /** Parses raw auxv bytes (little-endian 64-bit words). */
    public static Auxv parse(byte[] bytes) {
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        long[] w = new long[bytes.length / 8];
        for (int i = 0; i < w.length; i++) {
            w[i] = b.getLong();
        }
        int n = w.length & ~1;
        for (int i = 0; i + 1 < w.length; i += 2) {
            if (w[i] == AT_NULL) {
                n = i + 2;
                break;
            }
        }
        return new Auxv(Arrays.copyOf(w, n));
    }

    @Override
    public long[] words() {
        return words.clone();
    }

    /** The value of the first entry of {@code type}, if any. */
    public OptionalLong get(long type) {
        for (int i = 0; i + 1 < words.length; i += 2) {
            if (words[i] == type) {
                return OptionalLong.of(words[i + 1]);
            }
            if (words[i] == AT_NULL) {
                break;
            }
        }
        return OptionalLong.empty();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Auxv a && Arrays.equals(words, a.words);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(words);
    }

    @Override
    public String toString() {
        return "Auxv" + Arrays.toString(words);
    }
}
