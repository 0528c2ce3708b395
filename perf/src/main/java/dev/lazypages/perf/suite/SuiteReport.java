package dev.lazypages.perf.suite;

import dev.lazypages.perf.Reports;
import dev.lazypages.perf.Samples;
import dev.lazypages.stats.Json;
import java.io.IOException;
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
 * Renders what the benchmarks of a run measured: {@code report.md} (the machine, then per benchmark
 * its tables, latency percentiles, ratios against their targets with PASS or MISS, notes and
 * plots, or the message it failed with), {@code <name>.json} per benchmark, one {@code .hgrm}
 * per histogram (HdrHistogram's percentile distribution in µs) and one PNG per chart.
 */
public final class SuiteReport {
    private static final double[] PERCENTILES = {50, 90, 99, 99.9, 100};
    /** A row whose max is more than this many times its min is called noisy in the report. */
    static final double NOISY = 1.5;
    /** Noisy rows named at most; the note counts the rest. */
    private static final int NOISY_LISTED = 8;

    private SuiteReport() {
    }

    /**
     * How one benchmark ended: its ratios against their targets and its section of report.md, or
     * the message it failed with (no ratios). What report.md needs of it, so that a benchmark run in
     * a JVM of its own ({@link ForkedBench}) hands back the same as one run in this JVM.
     *
     * @param section its section of report.md: its tables, ratios, notes and plots, or the message it failed with
     * @param files the files written for it (relative to the output directory), JSON first
     */
    public record Outcome(String name, String title, List<SuiteResult.Ratio> ratios, String section, String failure, double seconds,
            List<String> files) {
        public Outcome {
            ratios = List.copyOf(ratios);
            files = List.copyOf(files);
        }

        public boolean failed() {
            return failure != null;
        }
    }

    /** Writes {@code <name>.json}, the .hgrm files and the PNG charts of one benchmark; returns the outcome. */
    public static Outcome write(Path out, String name, String title, SuiteResult r, double seconds) throws IOException {
        Files.createDirectories(out);
        List<String> files = new ArrayList<>();
        files.add(name + ".json");
        Map<String, String> hgrmFiles = new LinkedHashMap<>();
        for (SuiteResult.Hist h : r.histograms()) {
            String f = uniqueName(hgrmFiles.values(), name + "-" + slug(h.chart()) + "-" + slug(h.label()), ".hgrm");
            Files.writeString(out.resolve(f), Reports.hgrm(h.histogram()), StandardCharsets.UTF_8);
            hgrmFiles.put(h.chart() + "\u0000" + h.label(), f);
            files.add(f);
        }
        for (String chart : chartNames(r)) {
            String f = name + "-" + slug(chart) + ".png";
            SuiteResult.Chart c = chartOf(r, chart);
            List<SuiteResult.Hist> hs = r.histograms().stream().filter(h -> h.chart().equals(chart)).toList();
            if (!hs.isEmpty()) {
                Charts.percentiles(out.resolve(f), c.title(), hs.stream().map(SuiteResult.Hist::label).toList(),
                        hs.stream().map(SuiteResult.Hist::histogram).toList());
            } else {
                List<Charts.Line> lines = r.series().stream().filter(s -> s.chart().equals(chart))
                        .map(s -> new Charts.Line(s.label(), s.points())).toList();
                Charts.lines(out.resolve(f), c.title(), c.xLabel(), c.yLabel(), lines, r.isLogX(chart), r.isLogY(chart));
            }
            files.add(f);
        }
        Outcome o = new Outcome(name, title, r.ratios(), section(name, title, r, null, seconds, files), null, seconds, files);
        Files.writeString(out.resolve(name + ".json"), Json.write(json(o, r, hgrmFiles)) + "\n", StandardCharsets.UTF_8);
        return o;
    }

    /** A benchmark that failed: its JSON file says so. */
    public static Outcome failed(Path out, String name, String title, String message, double seconds) throws IOException {
        Files.createDirectories(out);
        List<String> files = List.of(name + ".json");
        Outcome o = new Outcome(name, title, List.of(), section(name, title, null, message, seconds, files), message, seconds, files);
        Files.writeString(out.resolve(name + ".json"), Json.write(json(o, null, Map.of())) + "\n", StandardCharsets.UTF_8);
        return o;
    }

    /** The charts of a result in order: those declared with {@link SuiteResult#chart}, then the histograms', then the series'. */
    static List<String> chartNames(SuiteResult r) {
        List<String> names = new ArrayList<>();
        r.charts().keySet().forEach(c -> { // declared charts first, in their order, if anything is drawn on them
            if (r.histograms().stream().anyMatch(h -> h.chart().equals(c)) || r.series().stream().anyMatch(s -> s.chart().equals(c))) {
                names.add(c);
            }
        });
        r.histograms().forEach(h -> {
            if (!names.contains(h.chart())) {
                names.add(h.chart());
            }
        });
        r.series().forEach(s -> {
            if (!names.contains(s.chart())) {
                names.add(s.chart());
            }
        });
        return names;
    }

    private static SuiteResult.Chart chartOf(SuiteResult r, String chart) {
        SuiteResult.Chart c = r.charts().get(chart);
        if (c != null) {
            return c;
        }
        boolean latency = r.histograms().stream().anyMatch(h -> h.chart().equals(chart));
        return new SuiteResult.Chart(chart, chart, latency ? "percentile" : "x", latency ? "latency (µs)" : "y");
    }

    static Map<String, Object> json(Outcome o, SuiteResult r, Map<String, String> hgrmFiles) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("benchmark", o.name());
        m.put("title", o.title());
        m.put("status", o.failed() ? "failed" : "ok");
        m.put("seconds", Math.round(o.seconds() * 10) / 10.0);
        if (o.failed()) {
            m.put("error", o.failure());
            return m;
        }
        Map<String, Object> tables = new LinkedHashMap<>();
        r.tables().forEach((t, rows) -> tables.put(t, rows.stream().map(Samples::toMap).toList()));
        m.put("tables", tables);
        List<Object> hists = new ArrayList<>();
        for (SuiteResult.Hist h : r.histograms()) {
            Map<String, Object> hm = new LinkedHashMap<>();
            hm.put("chart", h.chart());
            hm.put("label", h.label());
            hm.put("count", h.histogram().getTotalCount());
            Map<String, Object> pct = new LinkedHashMap<>();
            for (double p : PERCENTILES) {
                pct.put(percentileName(p) + "_us", round(Reports.micros(h.histogram(), p)));
            }
            hm.put("percentiles", pct);
            hm.put("hgrm", hgrmFiles.get(h.chart() + "\u0000" + h.label()));
            hists.add(hm);
        }
        m.put("histograms", hists);
        List<Object> series = new ArrayList<>();
        for (SuiteResult.Series s : r.series()) {
            Map<String, Object> sm = new LinkedHashMap<>();
            sm.put("chart", s.chart());
            sm.put("label", s.label());
            sm.put("points", s.points().stream().map(p -> List.of(round(p[0]), round(p[1]))).toList());
            series.add(sm);
        }
        m.put("series", series);
        m.put("ratios", r.ratios().stream().map(x -> {
            Map<String, Object> rm = new LinkedHashMap<>();
            rm.put("name", x.name());
            rm.put("value", round(x.value()));
            rm.put("target", (x.atMost() ? "<= " : ">= ") + Charts.number(x.target()));
            rm.put("passed", x.passed());
            return rm;
        }).toList());
        m.put("notes", r.notes());
        m.put("extra", r.extra());
        return m;
    }

    /** The whole report.md: the header, then one section per benchmark. */
    public static String markdown(Machine machine, boolean quick, List<Outcome> outcomes, double totalSeconds) {
        StringBuilder md = new StringBuilder();
        md.append("# lazy-bench report\n\n");
        md.append(machine.markdown());
        md.append(String.format(Locale.ROOT, "- run: %s, %d benchmarks in %.1f s (%d failed)%n%n", quick ? "quick (--quick)" : "full",
                outcomes.size(), totalSeconds, outcomes.stream().filter(Outcome::failed).count()));
        md.append("Every table row is a median over repeated runs after warm-up runs that were discarded, with min, max and "
                + "the number of runs (n). The machine is shared and noisy: compare medians, and read the tails as noise "
                + "unless they repeat.\n\n");
        List<String> summary = new ArrayList<>();
        for (Outcome o : outcomes) {
            if (o.failed()) {
                summary.add("| `" + o.name() + "` | FAILED | | |");
                continue;
            }
            for (SuiteResult.Ratio x : o.ratios()) {
                summary.add(String.format(Locale.ROOT, "| `%s`: %s | %s | %s %s | %s |", o.name(), x.name(), Charts.number(round(x.value())),
                        x.atMost() ? "≤" : "≥", Charts.number(x.target()), x.passed() ? "PASS" : "MISS"));
            }
        }
        if (!summary.isEmpty()) {
            md.append("## Targets\n\n| ratio | value | target | |\n|---|---:|---:|---|\n");
            summary.forEach(l -> md.append(l).append('\n'));
            md.append('\n');
        }
        for (Outcome o : outcomes) {
            md.append(o.section());
        }
        return md.toString();
    }

    /** One benchmark's section of report.md (also its own .md when run alone): its result's, or the message it failed with. */
    private static String section(String name, String title, SuiteResult r, String failure, double seconds, List<String> files) {
        StringBuilder md = new StringBuilder();
        md.append("## ").append(title).append(" (`").append(name).append("`)\n\n");
        if (failure != null) {
            md.append(String.format(Locale.ROOT, "**FAILED** after %.1f s: %s%n%n", seconds, failure));
            return md.toString();
        }
        md.append(String.format(Locale.ROOT, "%.1f s.%n%n", seconds));
        r.tables().forEach((t, rows) -> {
            if (!t.isBlank()) {
                md.append("**").append(t).append("**\n\n");
            }
            md.append(Reports.markdownTable(rows)).append('\n');
        });
        if (!r.histograms().isEmpty()) {
            md.append(histogramTable(r.histograms())).append('\n');
        }
        for (SuiteResult.Ratio x : r.ratios()) {
            md.append(String.format(Locale.ROOT, "- %s: **%s** (target %s %s): %s%n", x.name(), Charts.number(round(x.value())),
                    x.atMost() ? "≤" : "≥", Charts.number(x.target()), x.passed() ? "PASS" : "MISS"));
        }
        for (String n : r.notes()) {
            md.append("- ").append(n).append('\n');
        }
        String noisy = noisy(r);
        if (noisy != null) {
            md.append("- ").append(noisy).append('\n');
        }
        if (!r.ratios().isEmpty() || !r.notes().isEmpty() || noisy != null) {
            md.append('\n');
        }
        for (String f : files) {
            if (f.endsWith(".png")) {
                md.append("![").append(f).append("](").append(f).append(")\n\n");
            }
        }
        List<String> data = files.stream().filter(f -> !f.endsWith(".png")).toList();
        md.append("Data: ").append(String.join(", ", data.stream().map(f -> "[" + f + "](" + f + ")").toList())).append("\n\n");
        return md.toString();
    }

    /**
     * The rows whose runs disagree: max more than {@value #NOISY} times min (n ≥ 2, positive
     * values), or null when there are none. Their medians are less trustworthy than the others'.
     */
    static String noisy(SuiteResult r) {
        List<String> rows = new ArrayList<>();
        r.tables().values().forEach(t -> t.forEach(s -> {
            if (s.count() >= 2 && s.min() > 0 && s.max() / s.min() > NOISY) {
                rows.add(String.format(Locale.ROOT, "%s (max/min %.1f)", s.name(), s.max() / s.min()));
            }
        }));
        if (rows.isEmpty()) {
            return null;
        }
        String shown = String.join(", ", rows.subList(0, Math.min(rows.size(), NOISY_LISTED)));
        return "noisy (runs differ by more than " + Charts.number(NOISY) + "×, read their medians with care): " + shown
                + (rows.size() > NOISY_LISTED ? " and " + (rows.size() - NOISY_LISTED) + " more rows" : "");
    }

    /** | histogram | count | p50 | p90 | p99 | p99.9 | max | in µs. */
    static String histogramTable(List<SuiteResult.Hist> hs) {
        StringBuilder sb = new StringBuilder("| latency (µs) | count | p50 | p90 | p99 | p99.9 | max |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (SuiteResult.Hist h : hs) {
            Histogram hist = h.histogram();
            sb.append("| ").append(h.chart()).append(": ").append(h.label()).append(" | ").append(hist.getTotalCount());
            for (double p : PERCENTILES) {
                sb.append(String.format(Locale.ROOT, " | %.1f", Reports.micros(hist, p)));
            }
            sb.append(" |\n");
        }
        return sb.toString();
    }

    private static String percentileName(double p) {
        return p >= 100 ? "max" : "p" + Charts.number(p);
    }

    /** Lower case letters, digits and dashes only. */
    static String slug(String s) {
        String t = s.toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9.]+", "-").replaceAll("^-+|-+$", "");
        return t.isEmpty() ? "x" : t;
    }

    private static String uniqueName(java.util.Collection<String> taken, String base, String ext) {
        String f = base + ext;
        for (int i = 2; taken.contains(f); i++) {
            f = base + "-" + i + ext;
        }
        return f;
    }

    private static double round(double v) {
        return Math.round(v * 1000.0) / 1000.0;
    }
}
