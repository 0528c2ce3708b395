package dev.lazypages.perf.suite;

import dev.lazypages.perf.Samples;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.HdrHistogram.Histogram;

/**
 * What one {@link SuiteBench} measured, in the shapes the report renders: tables of repeated
 * samples (median, min, max), latency histograms (written as {@code .hgrm}), series for the
 * plots, ratios against a target, and notes (say where a figure is noisy).
 */
public final class SuiteResult {
    /** A ratio with its target: {@code value <= target} passes when {@code atMost}, else {@code value >= target}. */
    public record Ratio(String name, double value, double target, boolean atMost) {
        public boolean passed() {
            return atMost ? value <= target : value >= target;
        }
    }

    /**
     * A latency histogram; values recorded in nanoseconds.
     *
     * @param chart the chart it is drawn on (percentile distribution), e.g. {@code fault-latency}
     * @param label its line's label, e.g. {@code ours idle}, {@code floor idle}
     */
    public record Hist(String chart, String label, Histogram histogram) {
    }

    /** One line of a chart: (x, y) points. */
    public record Series(String chart, String label, List<double[]> points) {
    }

    /** A chart's title and axis labels. */
    public record Chart(String name, String title, String xLabel, String yLabel) {
    }

    private final Map<String, List<Samples>> tables = new LinkedHashMap<>();
    private final List<Hist> histograms = new ArrayList<>();
    private final List<Series> series = new ArrayList<>();
    private final Map<String, Chart> charts = new LinkedHashMap<>();
    private final List<Ratio> ratios = new ArrayList<>();
    private final List<String> notes = new ArrayList<>();
    private final Map<String, Object> extra = new LinkedHashMap<>();
    private final java.util.Set<String> logX = new java.util.LinkedHashSet<>();
    private final java.util.Set<String> logY = new java.util.LinkedHashSet<>();

    /** Adds a row (repeated samples of one metric) to the table named {@code table}. */
    public SuiteResult row(String table, Samples s) {
        tables.computeIfAbsent(table, k -> new ArrayList<>()).add(s);
        return this;
    }

    public SuiteResult histogram(String chart, String label, Histogram h) {
        histograms.add(new Hist(chart, label, h));
        return this;
    }

    public SuiteResult series(String chart, String label, List<double[]> points) {
        series.add(new Series(chart, label, List.copyOf(points)));
        return this;
    }

    public SuiteResult chart(String name, String title, String xLabel, String yLabel) {
        charts.put(name, new Chart(name, title, xLabel, yLabel));
        return this;
    }

    /** Draws chart {@code name}'s x axis on a log scale (memory sizes that quadruple, say). */
    public SuiteResult logX(String name) {
        logX.add(name);
        return this;
    }

    public boolean isLogX(String chart) {
        return logX.contains(chart);
    }

    /** Draws chart {@code name}'s y axis on a log scale (lines that differ by orders of magnitude). */
    public SuiteResult logY(String name) {
        logY.add(name);
        return this;
    }

    public boolean isLogY(String chart) {
        return logY.contains(chart);
    }

    public SuiteResult ratio(String name, double value, double target, boolean atMost) {
        ratios.add(new Ratio(name, value, target, atMost));
        return this;
    }

    public SuiteResult note(String text) {
        notes.add(text);
        return this;
    }

    /** Any other value for the benchmark's JSON file (numbers, strings, lists, maps of those). */
    public SuiteResult put(String key, Object value) {
        extra.put(key, value);
        return this;
    }

    public Map<String, List<Samples>> tables() {
        return tables;
    }

    public List<Hist> histograms() {
        return histograms;
    }

    public List<Series> series() {
        return series;
    }

    public Map<String, Chart> charts() {
        return charts;
    }

    public List<Ratio> ratios() {
        return ratios;
    }

    public List<String> notes() {
        return notes;
    }

    public Map<String, Object> extra() {
        return extra;
    }
}
