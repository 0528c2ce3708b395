package dev.lazypages.perf;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.HdrHistogram.Histogram;

/** Pure helpers of the benchmarks: parsing workload output, units, report tables. */
public final class Reports {
    private static final Pattern REGION = Pattern.compile("REGION addr=0x([0-9a-fA-F]+) size=(\\d+)( .*)?");
    private static final double GIB = 1024.0 * 1024.0 * 1024.0;
    private static final double MIB = 1024.0 * 1024.0;

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
        return ints(csv, 1, "must be positive");
    }

    /** Parses a comma-separated list of integers that may be 0, e.g. dirty rates {@code 0,16,64}. */
    public static List<Integer> nonNegativeInts(String csv) {
        return ints(csv, 0, "must not be negative");
    }

    private static List<Integer> ints(String csv, int min, String what) {
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
            if (v < min) {
                throw new IllegalArgumentException(v + " " + what + " (in '" + csv + "')");
            }
            out.add(v);
        }
        if (out.isEmpty()) {
            throw new IllegalArgumentException("empty list '" + csv + "'");
        }
        return out;
    }

    /** Milliseconds per GiB: {@code ms} spent over {@code bytes} of memory. */
    public static double msPerGib(double ms, long bytes) {
        if (bytes <= 0) {
            throw new IllegalArgumentException("no memory to divide by");
        }
        return ms / (bytes / GIB);
    }

    /** MiB per second for {@code pages} pages of {@code pageSize} bytes in {@code nanos}; 0 when no time elapsed. */
    public static double mibPerSecond(long pages, long pageSize, long nanos) {
        return nanos <= 0 ? 0 : pages * (double) pageSize / MIB / (nanos / 1e9);
    }

    /**
     * One {@link Samples} per position over runs of different lengths (pre-copy rounds): row
     * {@code i} is named {@code String.format(nameFormat, i + 1)} and holds the {@code i}th value
     * of every run that has one, so its n says how many runs got that far.
     */
    public static List<Samples> byPosition(String nameFormat, String unit, List<List<Double>> runs) {
        int longest = runs.stream().mapToInt(List::size).max().orElse(0);
        List<Samples> out = new ArrayList<>();
        for (int i = 0; i < longest; i++) {
            Samples s = new Samples(String.format(Locale.ROOT, nameFormat, i + 1), unit);
            for (List<Double> r : runs) {
                if (i < r.size()) {
                    s.add(r.get(i));
                }
            }
            out.add(s);
        }
        return out;
    }

    /** How often each value occurs, in order of first appearance: {@code goal-reached 2/3, max-iterations 1/3}. */
    public static String tally(List<String> values) {
        Map<String, Integer> counts = new LinkedHashMap<>();
        for (String v : values) {
            counts.merge(v, 1, Integer::sum);
        }
        StringBuilder b = new StringBuilder();
        counts.forEach((k, n) -> b.append(b.isEmpty() ? "" : ", ").append(k).append(' ').append(n).append('/').append(values.size()));
        return b.toString();
    }

    /** A percentile (0-100; 100 is the maximum) of a histogram of nanoseconds, in µs; 0 when it is empty. */
    public static double micros(Histogram h, double percentile) {
        if (h.getTotalCount() == 0) {
            return 0;
        }
        return (percentile >= 100 ? h.getMaxValue() : h.getValueAtPercentile(percentile)) / 1000.0;
    }

    /** HdrHistogram's percentile distribution (the .hgrm format) of a histogram of nanoseconds, in µs. */
    public static String hgrm(Histogram h) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (PrintStream ps = new PrintStream(bytes, true, StandardCharsets.UTF_8)) {
            h.outputPercentileDistribution(ps, 1000.0);
        }
        return bytes.toString(StandardCharsets.UTF_8);
    }

    /** 0 .. n-1 in a random order (Fisher-Yates). */
    public static int[] permutation(int n, Random random) {
        int[] a = new int[n];
        for (int i = 0; i < n; i++) {
            a[i] = i;
        }
        for (int i = n - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            int t = a[i];
            a[i] = a[j];
            a[j] = t;
        }
        return a;
    }

    /** "256 KiB", "1 MiB", "16 MiB". */
    public static String kib(long kib) {
        return kib % 1024 == 0 ? String.format(Locale.ROOT, "%d MiB", kib / 1024) : String.format(Locale.ROOT, "%d KiB", kib);
    }
}
