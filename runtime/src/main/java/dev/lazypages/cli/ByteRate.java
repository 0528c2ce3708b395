package dev.lazypages.cli;

import java.util.Locale;

/** A byte rate on the command line: {@code 0}, {@code 1048576}, {@code 512K}, {@code 256M}, {@code 1G} (binary units, per second). */
final class ByteRate {
    private ByteRate() {
    }

    /** Bytes per second; IllegalArgumentException with a message for a user when {@code text} is not one. */
    static long parse(String text) {
        String t = text.strip().toUpperCase(Locale.ROOT);
        if (t.endsWith("/S")) {
            t = t.substring(0, t.length() - 2);
        }
        if (t.endsWith("IB")) {
            t = t.substring(0, t.length() - 2);
        } else if (t.endsWith("B")) {
            t = t.substring(0, t.length() - 1);
        }
        int shift = 0;
        if (!t.isEmpty()) {
            switch (t.charAt(t.length() - 1)) {
                case 'K' -> shift = 10;
                case 'M' -> shift = 20;
                case 'G' -> shift = 30;
                default -> shift = 0;
            }
        }
        String digits = shift > 0 ? t.substring(0, t.length() - 1).strip() : t;
        long n;
        try {
            n = Long.parseLong(digits);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("'" + text + "' is not a rate: give bytes per second, e.g. 0 (no cap), "
                    + "268435456, 256M or 1G (K, M, G: KiB, MiB, GiB)");
        }
        if (n < 0) {
            throw new IllegalArgumentException("'" + text + "': a rate cannot be negative (0: no cap)");
        }
        if (n > (Long.MAX_VALUE >> shift)) {
            throw new IllegalArgumentException("'" + text + "' is too large");
        }
        return n << shift;
    }
}
