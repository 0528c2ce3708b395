package dev.lazypages.perf;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Pure helpers of the benchmarks: parsing workload output, units, report tables. */
public final class Reports {
    private static final Pattern REGION = Pattern.compile("REGION addr=0x([0-9a-fA-F]+) size=(\\d+)( .*)?");
    private static final double GIB = 1024.0 * 1024.0 * 1024.0;

    private Reports() {
    }

    /** memtouch's data region, from its {@code REGION addr=0x... size=...} line. */
    public record Region(long address, long size) {
    }

    /** Parses memtouch's REGION line. */
    public static Region parseRegion(String line) {
        Matcher m = REGION.matcher(line.strip());
        if (!m.matches()) {
            throw new IllegalArgumentException("not a memtouch REGION line: '" + line + "'");
        }
        return new Region(Long.parseUnsignedLong(m.group(1), 16), Long.parseLong(m.group(2)));
    }

    /** GiB per second for {@code bytes} moved in {@code nanos}. */
    public static double gibPerSecond(long bytes, long nanos) {
        if (nanos <= 0) {
            throw new IllegalArgumentException("no time elapsed");
        }
        return bytes / GIB / (nanos / 1e9);
    }

    /** Nanoseconds as milliseconds. */
    public static double millis(long nanos) {
        return nanos / 1e6;
    }

    /** {@code a}'s median over {@code b}'s. */
    public static double medianRatio(Samples a, Samples b) {
        return a.median() / b.median();
    }

    /** A markdown table of samples: | metric | median | min | max | n |. */
    public static String markdownTable(List<Samples> rows) {
        StringBuilder sb = new StringBuilder();
        sb.append("| metric | median | min | max | n |\n");
        sb.append("|---|---:|---:|---:|---:|\n");
        for (Samples s : rows) {
            sb.append(s.markdownRow()).append('\n');
        }
        return sb.toString();
    }

    /** Parses a comma-separated list of positive integers, e.g. {@code 256,1024}. */
    public static List<Integer> positiveInts(String csv) {
        List<Integer> out = new ArrayList<>();
        for (String part : csv.split(",")) {
            String p = part.strip();
            if (p.isEmpty()) {
                continue;
            }
            int v;
            try {
                v = Integer.parseInt(p);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("'" + p + "' is not a number (in '" + csv + "')");
            }
            if (v <= 0) {
                throw new IllegalArgumentException(v + " must be positive (in '" + csv + "')");
            }
            out.add(v);
        }
        if (out.isEmpty()) {
            throw new IllegalArgumentException("empty list '" + csv + "'");
        }
        return out;
    }

    /** "256 KiB", "1 MiB", "16 MiB". */
    public static String kib(long kib) {
        return kib % 1024 == 0 ? String.format(Locale.ROOT, "%d MiB", kib / 1024) : String.format(Locale.ROOT, "%d KiB", kib);
    }
}
