package dev.lazypages.migrate;

import dev.lazypages.stats.Json;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.HdrHistogram.Histogram;

/**
 * What one migration did, as either side saw it; filled in as the migration goes, then
 * {@link #toMap()} for the JSON report ({@link #write}) and {@link #table()} for people.
 * Latencies: fault latencies come from the destination's page server ({@code LazyStats}),
 * the serve latency from the source's page server. Times in ms, latencies in µs.
 *
 * <p>Bytes: {@code bytes_precopy} the pre-copy rounds' images as sent; {@code bytes_final} the
 * final image plus the REMOTE pages fetched before the process ran (every one in pre-copy
 * mode: they are part of the downtime); {@code bytes_postcopy} the pages fetched after it ran.
 * {@code downtime_ms} is measured on the source, from the freeze to Running received.
 */
public final class MigrationReport {
    /** One pre-copy round: pages and bytes sent, time it took, dirty rate before it (pages/s). */
    public record Round(int number, long pages, long bytes, double ms, double dirtyRate, double dirtyMiBps) {
        Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("round", number);
            m.put("pages", pages);
            m.put("bytes", bytes);
            m.put("ms", round1(ms));
            m.put("mib_per_sec", round1(ms > 0 ? bytes / 1048576.0 / (ms / 1000) : 0));
            m.put("dirty_rate", Math.round(dirtyRate));
            m.put("dirty_mib_per_sec", round1(dirtyMiBps));
            return m;
        }
    }

    public String side = "source";
    public String migrationId = "";
    public MigrationMode mode = MigrationMode.HYBRID;
    public String outcome = "unknown";
    public String error;
    public int sourcePid = -1;
    public int destinationPid = -1;
    public String tracker = "";
    public final List<Round> rounds = new ArrayList<>();
    public String stopReason = "";
    public String stopDetail = "";
    public double downtimeMs = -1;
    public double frozenMs = -1;
    public long bytesPrecopy;
    public long bytesFinal;
    public long bytesPostcopy;
    public long pagesRemote;
    public long faults;
    public Histogram faultLatency;
    public Histogram serveLatency;
    public double backgroundMiBps;
    /** The post-copy background transfer's cap in bytes/s ({@code migrate --max-postcopy-bandwidth}); 0: none. */
    public long postcopyBandwidthCap;
    public double postcopyMs = -1;
    public double restoreMs = -1;
    public double totalMs;
    /**
     * Where the time went, in ms, in the order measured: per pre-copy round its dump and send, then
     * the frozen window (final dump, page server start, final directory, restore at the
     * destination and its phases). Informational: names may change.
     */
    public final Map<String, Double> phasesMs = new LinkedHashMap<>();

    /** Adds {@code ms} to phase {@code name}. */
    public void phase(String name, double ms) {
        phasesMs.merge(name, ms, Double::sum);
    }

    /** Sum of pre-copy bytes as rounds were added. */
    public void addRound(Round r) {
        rounds.add(r);
        bytesPrecopy += r.bytes();
    }

    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("side", side);
        m.put("migration_id", migrationId);
        m.put("mode", mode.label());
        m.put("outcome", outcome);
        if (error != null) {
            m.put("error", error);
        }
        m.put("source_pid", sourcePid);
        m.put("destination_pid", destinationPid);
        m.put("tracker", tracker);
        List<Object> rs = new ArrayList<>();
        for (Round r : rounds) {
            rs.add(r.toMap());
        }
        m.put("rounds", rs);
        m.put("stop_reason", stopReason);
        m.put("stop_detail", stopDetail);
        m.put("downtime_ms", round1(downtimeMs));
        m.put("frozen_ms", round1(frozenMs));
        m.put("restore_ms", round1(restoreMs));
        m.put("bytes_precopy", bytesPrecopy);
        m.put("bytes_final", bytesFinal);
        m.put("bytes_postcopy", bytesPostcopy);
        m.put("pages_remote", pagesRemote);
        m.put("faults", faults);
        m.put("fault_latency_us", percentiles(faultLatency));
        m.put("background_mib_per_sec", round1(backgroundMiBps));
        m.put("postcopy_bandwidth_cap_bytes_per_sec", postcopyBandwidthCap);
        m.put("postcopy_ms", round1(postcopyMs));
        m.put("total_ms", round1(totalMs));
        if (!phasesMs.isEmpty()) {
            Map<String, Object> ph = new LinkedHashMap<>();
            phasesMs.forEach((k, v) -> ph.put(k, round1(v)));
            m.put("phases_ms", ph);
        }
        if (serveLatency != null || "source".equals(side)) { // the source's page server, zeros when it served nothing
            m.put("serve_latency_us", percentiles(serveLatency));
        }
        return m;
    }

    /** {p50, p90, p99, p999, max, count} in µs of a histogram in ns (zeros when empty or absent). */
    public static Map<String, Object> percentiles(Histogram h) {
        Map<String, Object> m = new LinkedHashMap<>();
        boolean any = h != null && h.getTotalCount() > 0;
        m.put("p50", any ? round1(h.getValueAtPercentile(50) / 1000.0) : 0.0);
        m.put("p90", any ? round1(h.getValueAtPercentile(90) / 1000.0) : 0.0);
        m.put("p99", any ? round1(h.getValueAtPercentile(99) / 1000.0) : 0.0);
        m.put("p999", any ? round1(h.getValueAtPercentile(99.9) / 1000.0) : 0.0);
        m.put("max", any ? round1(h.getMaxValue() / 1000.0) : 0.0);
        m.put("count", any ? h.getTotalCount() : 0L);
        return m;
    }

    /** The JSON report. */
    public String toJson() {
        return Json.write(toMap());
    }

    /**
     * Writes the JSON report to {@code file} and, when there are fault latencies, their
     * percentile distribution (µs) beside it as {@code <file without .json>.hgrm}; returns that path or null.
     */
    public Path write(Path file) throws IOException {
        Path parent = file.toAbsolutePath().getParent();
        if (parent != null) {
            Files.createDirectories(parent);
        }
        Files.writeString(file, toJson() + "\n", StandardCharsets.UTF_8);
        if (faultLatency == null) {
            return null;
        }
        String name = file.getFileName().toString();
        Path hgrm = file.resolveSibling((name.endsWith(".json") ? name.substring(0, name.length() - 5) : name) + ".hgrm");
        Files.writeString(hgrm, hgrm(faultLatency), StandardCharsets.UTF_8);
        return hgrm;
    }

    /** HdrHistogram's percentile distribution of {@code h} (ns) in µs. */
    public static String hgrm(Histogram h) {
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        try (PrintStream ps = new PrintStream(bo, true, StandardCharsets.UTF_8)) {
            h.outputPercentileDistribution(ps, 1000.0);
        }
        return bo.toString(StandardCharsets.UTF_8);
    }

    /** The report as a two-column table for a terminal. */
    public String table() {
        StringBuilder b = new StringBuilder();
        row(b, "mode", mode.label());
        row(b, "outcome", outcome + (error != null ? " (" + error + ")" : ""));
        row(b, "pid", sourcePid + " -> " + destinationPid);
        StringBuilder rs = new StringBuilder();
        for (Round r : rounds) {
            rs.append(String.format(Locale.ROOT, "%s#%d %d pages %.1f MiB %.0f ms", rs.isEmpty() ? "" : "; ", r.number(),
                    r.pages(), r.bytes() / 1048576.0, r.ms()));
        }
        row(b, "rounds", rounds.size() + (rounds.isEmpty() ? "" : " (" + rs + ")"));
        row(b, "stop reason", stopReason.isEmpty() ? "-" : stopReason);
        row(b, "downtime ms", fmt(downtimeMs));
        row(b, "bytes pre-copy", mib(bytesPrecopy));
        row(b, "bytes final", mib(bytesFinal));
        row(b, "bytes post-copy", mib(bytesPostcopy));
        row(b, "faults", Long.toString(faults));
        Map<String, Object> p = percentiles(faultLatency);
        row(b, "fault latency us", String.format(Locale.ROOT, "p50 %s p90 %s p99 %s p99.9 %s max %s", p.get("p50"), p.get("p90"),
                p.get("p99"), p.get("p999"), p.get("max")));
        row(b, "background MiB/s", fmt(backgroundMiBps) + (postcopyBandwidthCap > 0
                ? String.format(Locale.ROOT, " (capped at %.1f)", postcopyBandwidthCap / 1048576.0) : ""));
        if (serveLatency != null) {
            Map<String, Object> s = percentiles(serveLatency);
            row(b, "serve latency us", String.format(Locale.ROOT, "p50 %s p99 %s max %s (n=%s)", s.get("p50"), s.get("p99"),
                    s.get("max"), s.get("count")));
        }
        row(b, "total ms", fmt(totalMs));
        if (!phasesMs.isEmpty()) {
            StringBuilder ph = new StringBuilder();
            phasesMs.forEach((k, v) -> ph.append(ph.isEmpty() ? "" : ", ").append(k).append(' ').append(fmt(v)));
            row(b, "phases ms", ph.toString());
        }
        return b.toString();
    }

    private static void row(StringBuilder b, String k, String v) {
        b.append(String.format(Locale.ROOT, "  %-18s %s%n", k, v));
    }

    private static String fmt(double v) {
        return v < 0 ? "-" : String.format(Locale.ROOT, "%.1f", v);
    }

    private static String mib(long bytes) {
        return String.format(Locale.ROOT, "%d (%.1f MiB)", bytes, bytes / 1048576.0);
    }

    static double round1(double v) {
        return Math.round(v * 10) / 10.0;
    }
}
