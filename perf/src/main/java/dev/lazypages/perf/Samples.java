package dev.lazypages.perf;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Repeated measurements of one quantity. This machine is noisy: reports quote the median with
 * min and max, never a single run, and warm-up runs are recorded apart and left out.
 */
public final class Samples {
    private final String name;
    private final String unit;
    private final List<Double> values = new ArrayList<>();

    public Samples(String name, String unit) {
        this.name = name;
        this.unit = unit;
    }

    public void add(double v) {
        values.add(v);
    }

    public String name() {
        return name;
    }

    public String unit() {
        return unit;
    }

    /** The values in the order they were added. */
    public List<Double> values() {
        return List.copyOf(values);
    }

    public int count() {
        return values.size();
    }

    private double[] sorted() {
        if (values.isEmpty()) {
            throw new IllegalStateException("no samples of " + name);
        }
        double[] a = values.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(a);
        return a;
    }

    /** The median (mean of the middle two for an even count). */
    public double median() {
        double[] a = sorted();
        int n = a.length;
        return n % 2 == 1 ? a[n / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
    }

    public double min() {
        return sorted()[0];
    }

    public double max() {
        double[] a = sorted();
        return a[a.length - 1];
    }

    /** For the JSON report: name, unit, median, min, max, n and every value. */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", name);
        m.put("unit", unit);
        m.put("median", round(median()));
        m.put("min", round(min()));
        m.put("max", round(max()));
        m.put("n", count());
        m.put("values", values.stream().map(Samples::round).toList());
        return m;
    }

    /** One markdown table row: | name | median | min | max | n | */
    public String markdownRow() {
        return String.format("| %s | %.2f %s | %.2f | %.2f | %d |", name, median(), unit, min(), max(), count());
    }

    static double round(double v) {
        return Math.round(v * 1000.0) / 1000.0;
    }
}
