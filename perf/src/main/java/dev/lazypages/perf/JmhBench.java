package dev.lazypages.perf;

import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteResult;
import java.nio.file.Path;
import java.util.Collection;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import org.openjdk.jmh.results.BenchmarkResult;
import org.openjdk.jmh.results.IterationResult;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;
import org.openjdk.jmh.runner.options.VerboseMode;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code jmh}: the JMH micro-benchmarks built into this jar (the frame codecs:
 * {@code dev.lazypages.net.FrameCodecJmh}; the page-set structures:
 * {@code dev.lazypages.lazy.PageSetJmh}), each in a forked JVM, warm-up iterations discarded.
 * Every measured iteration is one sample of the table (median, min, max over iterations). JMH's
 * own command line is in the jar too: {@code java -cp lazy-bench.jar org.openjdk.jmh.Main -h}.
 */
@Command(name = "jmh", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "JMH micro-benchmarks of the frame codecs and the page-set structures (ns per operation).",
            "",
            "Writes DIR/jmh.json and DIR/jmh.md and prints the table. JMH's own CLI: java -cp lazy-bench.jar org.openjdk.jmh.Main"
        })
final class JmhBench implements Callable<Integer> {
    static final String NAME = "jmh";
    static final String TITLE = "JMH micro-benchmarks: frame codecs and page sets";
    /** Every benchmark of ours (JMH's regex over class.method names). */
    static final String ALL = "dev\\.lazypages\\.(net\\.FrameCodecJmh|lazy\\.PageSetJmh)\\..*";

    @Spec
    private CommandSpec spec;

    @Option(names = "--include", defaultValue = ALL, paramLabel = "REGEX", description = "Benchmarks to run (default: all of ours).")
    String include;

    @Option(names = "--quick", description = "Short settings: 1 warm-up and 3 measured iterations of 100 ms.")
    boolean quick;

    @Option(names = "--forks", defaultValue = "1", description = "Forked JVMs per benchmark (default ${DEFAULT-VALUE}).")
    int forks;

    @Option(names = "--out", defaultValue = "bench-results", paramLabel = "DIR",
            description = "Where jmh.json and jmh.md go (default ${DEFAULT-VALUE}).")
    private Path out;

    @Override
    public Integer call() throws Exception {
        return SuiteCommands.runAlone(spec, out, NAME, TITLE, this::measure);
    }

    /** The suite's jmh: 3 × 1 s warm-up, 5 × 1 s measured, one fork each (quick: 1 × 100 ms, 3 × 100 ms, in this JVM). */
    static SuiteBench suite() {
        return SuiteBench.of(NAME, TITLE, ctx -> {
            JmhBench b = new JmhBench();
            b.include = ALL;
            b.quick = ctx.quick();
            b.forks = ctx.quick() ? 0 : 1; // quick: no JVM start per benchmark
            return b.measure(ctx.progress());
        });
    }

    SuiteResult measure(Consumer<String> progress) throws Exception {
        if (forks < 0) {
            throw new IllegalArgumentException("--forks must not be negative");
        }
        ChainedOptionsBuilder o = new OptionsBuilder().include(include).forks(forks).shouldFailOnError(true)
                .jvmArgsAppend("--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow").verbosity(VerboseMode.SILENT);
        if (quick) {
            o.warmupIterations(1).warmupTime(TimeValue.milliseconds(100)).measurementIterations(3)
                    .measurementTime(TimeValue.milliseconds(100));
        } else {
            o.warmupIterations(3).warmupTime(TimeValue.seconds(1)).measurementIterations(5).measurementTime(TimeValue.seconds(1));
        }
        progress.accept("running JMH (" + (quick ? "quick" : "full") + " settings, " + forks + " fork(s)) on " + include);
        Collection<RunResult> results = new Runner(o.build()).run();
        if (results.isEmpty()) {
            throw new BenchFailure("JMH ran no benchmark matching " + include);
        }
        SuiteResult r = new SuiteResult();
        for (RunResult rr : results) {
            String bench = rr.getParams().getBenchmark();
            String shortName = bench.substring(bench.lastIndexOf('.', bench.lastIndexOf('.') - 1) + 1);
            String unit = rr.getPrimaryResult().getScoreUnit();
            Samples s = new Samples(shortName, unit);
            for (BenchmarkResult br : rr.getBenchmarkResults()) {
                for (IterationResult ir : br.getIterationResults()) {
                    s.add(ir.getPrimaryResult().getScore());
                }
            }
            progress.accept(String.format(Locale.ROOT, "%s: median %.1f %s", shortName, s.median(), unit));
            r.row(shortName.startsWith("FrameCodecJmh") ? "frame codecs (per operation of 64 frames)" : "page sets (4096 runs)", s);
        }
        r.note(String.format(Locale.ROOT, "JMH %s settings, %d fork(s), average time per operation; each row's samples are the "
                + "measured iterations (warm-up iterations discarded)", quick ? "quick (1 × 100 ms warm-up, 3 × 100 ms)"
                : "full (3 × 1 s warm-up, 5 × 1 s)", forks));
        if (quick || forks == 0) {
            r.note("quick settings" + (forks == 0 ? ", run inside this JVM (no fork: its profile is shared with the other benchmarks)" : "")
                    + ": short iterations on a shared machine, a smoke test of the numbers; compare full runs only");
        }
        r.put("include", include);
        r.put("forks", forks);
        return r;
    }
}
