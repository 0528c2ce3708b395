package dev.lazypages.perf.suite;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Consumer;

/**
 * Runs benchmarks one after another into one output directory: each one's files as it ends, and
 * {@code report.md} rewritten after each (so an interrupted run still leaves a report). A
 * benchmark that throws is reported as failed with its message; the others still run.
 */
public final class SuiteRunner {
    /**
     * How one benchmark is run: {@link #IN_THIS_JVM}, or in a JVM of its own ({@link ForkedBench}).
     * Returns its outcome, failed or not, with its files written.
     */
    @FunctionalInterface
    public interface Executor {
        SuiteReport.Outcome run(SuiteBench b, Path out, boolean quick, Consumer<String> progress) throws Exception;
    }

    /** Runs the benchmark here and writes its files; one that throws or returns nothing is a failed outcome. */
    public static final Executor IN_THIS_JVM = SuiteRunner::runHere;

    private final Path out;
    private final boolean quick;
    private final Consumer<String> progress;
    private final Machine machine;
    private final Executor executor;

    public SuiteRunner(Path out, boolean quick, Consumer<String> progress, Machine machine) {
        this(out, quick, progress, machine, IN_THIS_JVM);
    }

    public SuiteRunner(Path out, boolean quick, Consumer<String> progress, Machine machine, Executor executor) {
        this.out = out;
        this.quick = quick;
        this.progress = progress;
        this.machine = machine;
        this.executor = executor;
    }

    /** Runs every benchmark; returns their outcomes in order. */
    public List<SuiteReport.Outcome> run(List<SuiteBench> benches) throws IOException {
        Files.createDirectories(out);
        List<SuiteReport.Outcome> outcomes = new ArrayList<>();
        long start = System.nanoTime();
        for (SuiteBench b : benches) {
            String name = b.name();
            progress.accept(String.format(Locale.ROOT, "== %s (%s)%s", name, b.title(), quick ? ", quick" : ""));
            long t0 = System.nanoTime();
            SuiteReport.Outcome o;
            try {
                o = executor.run(b, out, quick, progress);
            } catch (Exception | LinkageError | AssertionError | OutOfMemoryError e) {
                o = SuiteReport.failed(out, name, b.title(), message(e), seconds(t0));
            }
            if (o.failed()) {
                progress.accept(String.format(Locale.ROOT, "== %s FAILED after %.1f s: %s", name, o.seconds(), o.failure()));
            } else {
                progress.accept(String.format(Locale.ROOT, "== %s done in %.1f s", name, o.seconds()));
            }
            outcomes.add(o);
            Files.writeString(out.resolve("report.md"), SuiteReport.markdown(machine, quick, outcomes, seconds(start)),
                    StandardCharsets.UTF_8);
        }
        return outcomes;
    }

    /** {@link #IN_THIS_JVM}: progress lines prefixed with the benchmark's name. */
    static SuiteReport.Outcome runHere(SuiteBench b, Path out, boolean quick, Consumer<String> progress) throws IOException {
        SuiteContext ctx = new SuiteContext(out, quick, line -> progress.accept(b.name() + ": " + line));
        long t0 = System.nanoTime();
        try {
            SuiteResult r = b.run(ctx);
            if (r == null) {
                throw new IllegalStateException("returned no result");
            }
            return SuiteReport.write(out, b.name(), b.title(), r, seconds(t0));
        } catch (Exception | LinkageError | AssertionError | OutOfMemoryError e) {
            return SuiteReport.failed(out, b.name(), b.title(), message(e), seconds(t0));
        }
    }

    /** The exception's message, with its type when it has none, and its cause's when that says more. */
    static String message(Throwable e) {
        String m = e.getMessage() != null && !e.getMessage().isBlank() ? e.getMessage() : e.getClass().getSimpleName();
        Throwable c = e.getCause();
        if (c != null && c.getMessage() != null && !m.contains(c.getMessage())) {
            m += " (" + c.getMessage() + ")";
        }
        return m.replace('\n', ' ');
    }

    private static double seconds(long t0) {
        return (System.nanoTime() - t0) / 1e9;
    }
}
