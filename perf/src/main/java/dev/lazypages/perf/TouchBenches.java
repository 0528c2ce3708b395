package dev.lazypages.perf;

import dev.lazypages.lazy.LazyPageServer;
import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteResult;
import dev.lazypages.stats.Json;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The benchmarks built on native-stubs' toucher and the C floor ({@link TouchRig}): fault
 * latency, post-copy throughput and the delayed link, and what they share (percentile rows,
 * the standalone output of their subcommands).
 */
public final class TouchBenches {
    static final double[] PERCENTILES = {50, 90, 99, 99.9, 100};
    static final String[] PERCENTILE_NAMES = {"p50", "p90", "p99", "p99.9", "max"};

    private TouchBenches() {
    }

    /** What a benchmark measures, given a sink for its progress lines. */
    interface Measure {
        SuiteResult measure(Consumer<String> say) throws Exception;
    }

    /** The options every touch benchmark's subcommand has (a picocli mixin), and how it runs on its own. */
    static final class CommonOptions {
        @Spec(Spec.Target.MIXEE)
        private CommandSpec spec;

        @Option(names = "--quick", description = "The short version, as `all --quick` runs it (its sizes; the others are ignored).")
        boolean quick;

        @Option(names = "--out", defaultValue = "bench-results", paramLabel = "DIR", description = "Output directory (default ${DEFAULT-VALUE}).")
        Path out;

        @Option(names = "--work-dir", paramLabel = "DIR", description = "Images and logs (default: a temporary directory).")
        Path workDir;

        @Option(names = "--stubs-dir", paramLabel = "DIR",
                description = "toucher, floor-server and lp-stub (default: $LAZYPAGES_STUBS_DIR, or native-stubs/target/bin next to the jar).")
        Path stubsDir;

        /** Measures with progress on stderr, prints the tables and writes the files of {@link #writeStandalone}. */
        int run(SuiteBench bench, Measure m) throws Exception {
            PrintWriter err = spec.commandLine().getErr();
            SuiteResult r = m.measure(line -> {
                err.println(line);
                err.flush();
            });
            writeStandalone(bench, r, out, spec.commandLine().getOut());
            return 0;
        }
    }

    /**
     * The benchmarks of {@code lazy-bench all} built here, in the order they should run:
     * {@code fault-latency}, {@code postcopy-throughput}, {@code delayed-link}.
     */
    public static List<SuiteBench> suite() {
        return List.of(new FaultLatencyBench(), new ThroughputBench(), new DelayedLinkBench());
    }

    /** One row per percentile, named {@code "<label> p50"} ..., in µs. */
    static Samples[] percentileRows(String label) {
        Samples[] s = new Samples[PERCENTILES.length];
        for (int i = 0; i < s.length; i++) {
            s[i] = new Samples(label + " " + PERCENTILE_NAMES[i], "µs");
        }
        return s;
    }

    static void addPercentiles(Samples[] rows, Histogram h) {
        for (int i = 0; i < rows.length; i++) {
            rows[i].add(Reports.micros(h, PERCENTILES[i]));
        }
    }

    /** The median of a percentile row, by name: {@code p50}, {@code p99}... */
    static Samples row(Samples[] rows, String percentile) {
        for (int i = 0; i < PERCENTILE_NAMES.length; i++) {
            if (PERCENTILE_NAMES[i].equals(percentile)) {
                return rows[i];
            }
        }
        throw new IllegalArgumentException(percentile);
    }

    /** The run must have verified every touched page and measured something. */
    static void check(TouchRun r) {
        ToucherResult t = r.toucher();
        if (!t.verified()) {
            throw new BenchFailure(r.pipeline() + ": " + t.badPages() + " touched pages did not hold the pattern (first: page "
                    + t.firstBad() + ")");
        }
        if (t.touches() != r.spec().touches() || t.latencies().length != r.spec().touches()) {
            throw new BenchFailure(r.pipeline() + ": the toucher reports " + t.touches() + " touches, " + r.spec().touches()
                    + " were asked for");
        }
        if (r.spec().background() && !(r.allInNanos() > 0 && r.bytesIn() >= r.spec().bytes())) {
            throw new BenchFailure(r.pipeline() + ": no complete transfer measured (" + r.bytesIn() + " bytes in "
                    + r.allInNanos() + " ns)");
        }
    }

    /** The machine, for the notes. */
    static String machine() {
        String load = "?";
        try {
            load = Files.readString(Path.of("/proc/loadavg")).trim().split(" ")[0];
        } catch (IOException | RuntimeException e) {
            // not Linux: leave it out
        }
        return String.format(Locale.ROOT, "%d CPUs, load average %s at the start, JDK %s, kernel %s",
                Runtime.getRuntime().availableProcessors(), load, Runtime.version(), System.getProperty("os.version"));
    }

    /**
     * Whether any class of the engine (the jar or directory LazyPageServer comes from) names the
     * system property {@code lazypages.prefetch}: if none does, setting it cannot have had an effect.
     */
    static boolean engineReadsPrefetchProperty() {
        byte[] needle = TouchRig.PREFETCH_PROPERTY.getBytes(StandardCharsets.UTF_8);
        try {
            Path where = Path.of(LazyPageServer.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            if (Files.isDirectory(where)) {
                try (Stream<Path> s = Files.walk(where)) {
                    return s.filter(p -> p.toString().endsWith(".class")).anyMatch(p -> {
                        try {
                            return contains(Files.readAllBytes(p), needle);
                        } catch (IOException e) {
                            return false;
                        }
                    });
                }
            }
            try (InputStream in = Files.newInputStream(where); ZipInputStream z = new ZipInputStream(in)) {
                for (ZipEntry e; (e = z.getNextEntry()) != null; ) {
                    if (e.getName().startsWith("dev/lazypages/") && e.getName().endsWith(".class")
                            && !e.getName().startsWith("dev/lazypages/perf/") && contains(z.readAllBytes(), needle)) {
                        return true;
                    }
                }
            }
            return false;
        } catch (IOException | URISyntaxException | RuntimeException e) {
            return false;
        }
    }

    static boolean contains(byte[] hay, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= hay.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (hay[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return true;
        }
        return false;
    }

    /**
     * What a subcommand run on its own prints and writes: the tables, ratios and notes on
     * {@code o}; {@code out/<name>.json} (tables, ratios, notes, series, extra) and one
     * {@code out/<name>-<label>.hgrm} per histogram.
     */
    static void writeStandalone(SuiteBench bench, SuiteResult r, Path out, PrintWriter o) throws IOException {
        StringBuilder md = new StringBuilder("# ").append(bench.title()).append("\n\n");
        r.tables().forEach((name, rows) -> md.append("## ").append(name).append("\n\n").append(Reports.markdownTable(rows)).append('\n'));
        if (!r.ratios().isEmpty()) {
            md.append("## Targets\n\n| ratio | value | target | |\n|---|---:|---:|---|\n");
            for (SuiteResult.Ratio x : r.ratios()) {
                md.append(String.format(Locale.ROOT, "| %s | %.3f | %s %.2f | %s |%n", x.name(), x.value(), x.atMost() ? "≤" : "≥",
                        x.target(), x.passed() ? "met" : "MISSED"));
            }
            md.append('\n');
        }
        for (String n : r.notes()) {
            md.append("- ").append(n).append('\n');
        }
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("benchmark", bench.name());
        json.put("title", bench.title());
        Map<String, Object> tables = new LinkedHashMap<>();
        r.tables().forEach((name, rows) -> tables.put(name, rows.stream().map(Samples::toMap).toList()));
        json.put("tables", tables);
        List<Object> ratios = new ArrayList<>();
        for (SuiteResult.Ratio x : r.ratios()) {
            ratios.add(Map.of("name", x.name(), "value", Samples.round(x.value()), "target", x.target(), "at_most", x.atMost(),
                    "passed", x.passed()));
        }
        json.put("ratios", ratios);
        json.put("notes", r.notes());
        List<Object> series = new ArrayList<>();
        for (SuiteResult.Series s : r.series()) {
            series.add(Map.of("chart", s.chart(), "label", s.label(),
                    "points", s.points().stream().map(p -> List.of(Samples.round(p[0]), Samples.round(p[1]))).toList()));
        }
        json.put("series", series);
        json.putAll(r.extra());
        Files.createDirectories(out);
        Files.writeString(out.resolve(bench.name() + ".json"), Json.write(json) + "\n", StandardCharsets.UTF_8);
        Files.writeString(out.resolve(bench.name() + ".md"), md, StandardCharsets.UTF_8);
        List<String> files = new ArrayList<>(List.of(bench.name() + ".json", bench.name() + ".md"));
        for (SuiteResult.Hist h : r.histograms()) {
            String f = bench.name() + "-" + h.label().replaceAll("[^A-Za-z0-9]+", "-") + ".hgrm";
            Files.writeString(out.resolve(f), Reports.hgrm(h.histogram()), StandardCharsets.UTF_8);
            files.add(f);
        }
        o.print(md);
        o.println();
        o.println("wrote " + String.join(", ", files) + " in " + out);
        o.flush();
    }
}
