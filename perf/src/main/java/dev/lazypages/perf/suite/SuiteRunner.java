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
    private final Path out;
    private final boolean quick;
    private final Consumer<String> progress;
    private final Machine machine;

    public SuiteRunner(Path out, boolean quick, Consumer<String> progress, Machine machine) {
        this.out = out;
        this.quick = quick;
        this.progress = progress;
        this.machine = machine;
    }

    /** Runs every benchmark; returns their outcomes in order. */
    public List<SuiteReport.Outcome> run(List<SuiteBench> benches) throws IOException {
        Files.createDirectories(out);
        List<SuiteReport.Outcome> outcomes = new ArrayList<>();
        long start = System.nanoTime();
        for (SuiteBench b : benches) {
            String name = b.name();
            progress.accept(String.format(Locale.ROOT, "== %s (%s)%s", name, b.title(), quick ? ", quick" : ""));
            SuiteContext ctx = new SuiteContext(out, quick, line -> progress.accept(name + ": " + line));
            long t0 = System.nanoTime();
            SuiteReport.Outcome o;
            try {
                SuiteResult r = b.run(ctx);
                if (r == null) {
                    throw new IllegalStateException("returned no result");
                }
                o = SuiteReport.write(out, name, b.title(), r, seconds(t0));
                progress.accept(String.format(Locale.ROOT, "== %s done in %.1f s", name, o.seconds()));
            } catch (Exception | LinkageError | AssertionError | OutOfMemoryError e) {
                String msg = message(e);
                progress.accept(String.format(Locale.ROOT, "== %s FAILED after %.1f s: %s", name, seconds(t0), msg));
                o = SuiteReport.failed(out, name, b.title(), msg, seconds(t0));
            }
            outcomes.add(o);
            Files.writeString(out.resolve("report.md"), SuiteReport.markdown(machine, quick, outcomes, seconds(start)),
                    StandardCharsets.UTF_8);
        }
        return outcomes;
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
