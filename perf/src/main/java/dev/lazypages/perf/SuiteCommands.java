package dev.lazypages.perf;

import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteReport;
import dev.lazypages.perf.suite.SuiteResult;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Consumer;
import picocli.CommandLine.Model.CommandSpec;

/**
 * The list of benchmarks {@code lazy-bench all} runs, and how a subcommand run alone writes the
 * same files as {@code all} does for it ({@code DIR/<name>.md} in place of report.md).
 */
public final class SuiteCommands {
    private SuiteCommands() {
    }

    /** Every benchmark of {@code lazy-bench all}, in the order they run. Add a list of others with one addAll. */
    public static List<SuiteBench> benches() {
        List<SuiteBench> all = new ArrayList<>();
        all.add(RestoreBench.suite());
        all.add(ReadvBench.suite());
        all.addAll(TouchBenches.suite());
        all.add(TrackerBench.suite());
        all.add(PreCopyBench.suite());
        all.add(DowntimeBench.suite());
        all.add(NetBench.suite());
        all.add(FreezeBench.suite());
        all.add(JmhBench.suite());
        return all;
    }

    /** A benchmark's measurement given where its progress lines go. */
    @FunctionalInterface
    interface Measure {
        SuiteResult run(Consumer<String> progress) throws Exception;
    }

    /** A subcommand run alone: progress to its stderr, then its files into {@code out} and its section to stdout. */
    static int runAlone(CommandSpec spec, Path out, String name, String title, Measure m) throws Exception {
        PrintWriter err = spec.commandLine().getErr();
        long t0 = System.nanoTime();
        SuiteResult r = m.run(line -> {
            err.println(line);
            err.flush();
        });
        writeAlone(out, name, title, r, t0, spec.commandLine().getOut());
        return 0;
    }

    /** Writes one benchmark's files into {@code out} (and {@code <name>.md}), prints its section to {@code o}. */
    static void writeAlone(Path out, String name, String title, SuiteResult r, long startNanos, PrintWriter o) throws IOException {
        SuiteReport.Outcome oc = SuiteReport.write(out, name, title, r, (System.nanoTime() - startNanos) / 1e9);
        String md = oc.section();
        Files.writeString(out.resolve(name + ".md"), md, StandardCharsets.UTF_8);
        o.print(md);
        o.println(String.format(Locale.ROOT, "wrote %s and %s", out.resolve(name + ".json"), out.resolve(name + ".md")));
        o.flush();
    }
}
