package dev.lazypages.perf;

import dev.lazypages.perf.suite.ForkedBench;
import dev.lazypages.perf.suite.Machine;
import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteReport;
import dev.lazypages.perf.suite.SuiteRunner;
import dev.lazypages.proc.NativeStubs;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code all}: every benchmark of the suite ({@link SuiteCommands#benches()}) into one directory:
 * report.md, a JSON file per benchmark, .hgrm files and PNG plots. A benchmark that fails is
 * reported as failed with its message and the others still run; the exit status is then 1.
 */
@Command(name = "all", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Runs every benchmark and writes DIR/report.md, DIR/<benchmark>.json, .hgrm files and PNG plots.",
            "",
            "--quick runs the short version (under two minutes on the development machine).",
            "Each benchmark runs in a JVM of its own (this one's java, options and class path), so that none runs on",
            "code the JIT compiled for another; --one-jvm runs them all in this JVM."
        })
final class AllCommand implements Callable<Integer> {
    @Spec
    private CommandSpec spec;

    @Option(names = "--out", paramLabel = "DIR", description = "Output directory (created if missing); needed unless --list.")
    private Path out;

    @Option(names = "--quick", description = "Short versions of every benchmark.")
    private boolean quick;

    @Option(names = "--only", paramLabel = "NAME,NAME...", split = ",", description = "Run only these benchmarks (see --list).")
    private List<String> only;

    @Option(names = "--skip", paramLabel = "NAME,NAME...", split = ",", description = "Leave these benchmarks out.")
    private List<String> skip;

    @Option(names = "--list", description = "List the benchmarks and exit.")
    private boolean list;

    @Option(names = "--one-jvm", description = "Run every benchmark in this JVM instead of a JVM of its own for each.")
    private boolean oneJvm;

    @Option(names = "--child-outcome", paramLabel = "FILE", hidden = true,
            description = "(internal) Run the one benchmark --only names here and write its outcome to FILE.")
    private Path childOutcome;

    @Option(names = "--stubs-dir", paramLabel = "DIR",
            description = "memtouch and lp-stub (default: $LAZYPAGES_STUBS_DIR, or native-stubs/target/bin next to the jar).")
    private Path stubsDir;

    @Override
    public Integer call() throws Exception {
        PrintWriter o = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        List<SuiteBench> benches = select(SuiteCommands.benches(), only, skip);
        if (list) {
            benches.forEach(b -> o.println(String.format(Locale.ROOT, "%-16s %s", b.name(), b.title())));
            o.flush();
            return 0;
        }
        if (out == null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "Missing required option: '--out=DIR'");
        }
        if (stubsDir != null) {
            System.setProperty(NativeStubs.PROPERTY, stubsDir.toString());
        }
        java.util.function.Consumer<String> progress = line -> {
            err.println(line);
            err.flush();
        };
        if (childOutcome != null) {
            if (benches.size() != 1) {
                throw new CommandLine.ParameterException(spec.commandLine(), "--child-outcome needs --only with one benchmark");
            }
            ForkedBench.writeOutcome(childOutcome, SuiteRunner.IN_THIS_JVM.run(benches.get(0), out, quick, progress));
            return 0;
        }
        long t0 = System.nanoTime();
        SuiteRunner runner = new SuiteRunner(out, quick, progress, Machine.here(), oneJvm ? SuiteRunner.IN_THIS_JVM
                : new ForkedBench(Bench.class.getName(), this::childArgs));
        List<SuiteReport.Outcome> outcomes = runner.run(benches);
        long failed = outcomes.stream().filter(SuiteReport.Outcome::failed).count();
        o.println(String.format(Locale.ROOT, "%d benchmark(s) in %.1f s, %d failed; report: %s", outcomes.size(),
                (System.nanoTime() - t0) / 1e9, failed, out.resolve("report.md")));
        outcomes.stream().filter(SuiteReport.Outcome::failed).forEach(x -> o.println("FAILED " + x.name() + ": " + x.failure()));
        o.flush();
        return failed > 0 ? Bench.FAILED : 0;
    }

    /** The arguments of a child JVM that runs {@code b} alone ({@link ForkedBench}). */
    private List<String> childArgs(SuiteBench b, Path outcome) {
        List<String> a = new ArrayList<>(List.of("all", "--only", b.name(), "--out", out.toAbsolutePath().toString(),
                "--child-outcome", outcome.toAbsolutePath().toString()));
        if (quick) {
            a.add("--quick");
        }
        if (stubsDir != null) {
            a.addAll(List.of("--stubs-dir", stubsDir.toAbsolutePath().toString()));
        }
        return a;
    }

    /** The benchmarks named by {@code only} (all when null), less those in {@code skip}; an unknown name is an error. */
    static List<SuiteBench> select(List<SuiteBench> all, List<String> only, List<String> skip) {
        Set<String> names = new LinkedHashSet<>();
        all.forEach(b -> names.add(b.name()));
        for (List<String> l : new ArrayList<>(java.util.Arrays.asList(only, skip))) {
            if (l != null) {
                for (String n : l) {
                    if (!names.contains(n.strip())) {
                        throw new IllegalArgumentException("no benchmark named '" + n + "' (there are: " + String.join(", ", names) + ")");
                    }
                }
            }
        }
        return all.stream().filter(b -> only == null || only.stream().anyMatch(n -> n.strip().equals(b.name())))
                .filter(b -> skip == null || skip.stream().noneMatch(n -> n.strip().equals(b.name()))).toList();
    }
}
