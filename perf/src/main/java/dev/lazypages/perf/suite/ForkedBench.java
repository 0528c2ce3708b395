package dev.lazypages.perf.suite;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Locale;
import java.util.function.BiFunction;
import java.util.function.Consumer;

/**
 * Runs a benchmark of the suite in a JVM of its own, as JMH forks: this JVM's java binary, JVM
 * options (-D, -X, -XX..., as {@code RuntimeMXBean} lists them) and class path, started with
 * arguments that make it run just that benchmark, write its files and then its {@link #writeOutcome
 * outcome} to a file this JVM reads back. So no benchmark runs on code compiled for another's
 * workload, with type profiles, a heap or threads another left behind: each warms up on its own.
 * The child's output (stdout and stderr) goes to the progress lines as it comes.
 */
public final class ForkedBench implements SuiteRunner.Executor {
    /** First line of an outcome file. */
    static final String MAGIC = "lazy-bench-outcome 1";
    /** Lines of the child's output quoted when it ends without an outcome. */
    private static final int TAIL = 5;

    private final List<String> command;
    private final BiFunction<SuiteBench, Path, List<String>> args;

    /**
     * @param mainClass the class whose main runs one benchmark given {@code args}
     * @param args the arguments for a benchmark and the outcome file it is to write
     */
    public ForkedBench(String mainClass, BiFunction<SuiteBench, Path, List<String>> args) {
        this(javaCommand(mainClass), args);
    }

    ForkedBench(List<String> command, BiFunction<SuiteBench, Path, List<String>> args) {
        this.command = List.copyOf(command);
        this.args = args;
    }

    /** This JVM's java binary, options and class path, then {@code mainClass}. */
    static List<String> javaCommand(String mainClass) {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), mainClass));
        return cmd;
    }

    @Override
    public SuiteReport.Outcome run(SuiteBench b, Path out, boolean quick, Consumer<String> progress) throws Exception {
        Files.createDirectories(out);
        Path outcome = Files.createTempFile(out, "." + b.name() + "-", ".outcome");
        long t0 = System.nanoTime();
        List<String> cmd = new ArrayList<>(command);
        cmd.addAll(args.apply(b, outcome));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        Thread killer = new Thread(p::destroyForcibly, "lazy-bench-fork-killer");
        Runtime.getRuntime().addShutdownHook(killer); // this JVM stopped by a signal: no orphan keeps measuring
        Deque<String> tail = new ArrayDeque<>();
        try {
            p.getOutputStream().close(); // the child reads nothing
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null;) {
                    progress.accept(line);
                    tail.addLast(line);
                    if (tail.size() > TAIL) {
                        tail.removeFirst();
                    }
                }
            }
            int status = p.waitFor();
            double seconds = (System.nanoTime() - t0) / 1e9;
            SuiteReport.Outcome o = Files.size(outcome) > 0 ? readOutcome(outcome) : null;
            if (o == null) {
                return SuiteReport.failed(out, b.name(), b.title(), String.format(Locale.ROOT,
                        "its JVM exited with status %d without a result%s", status,
                        tail.isEmpty() ? "" : "; its last lines: " + String.join(" | ", tail)), seconds);
            }
            return o;
        } finally {
            p.destroyForcibly();
            try {
                Runtime.getRuntime().removeShutdownHook(killer);
            } catch (IllegalStateException e) {
                // shutting down already: the hook runs
            }
            Files.deleteIfExists(outcome);
        }
    }

    /** Writes what report.md needs of an outcome to {@code f} (the child's side). */
    public static void writeOutcome(Path f, SuiteReport.Outcome o) throws IOException {
        StringBuilder sb = new StringBuilder(MAGIC).append('\n');
        sb.append("name ").append(oneLine(o.name())).append('\n');
        sb.append("title ").append(oneLine(o.title())).append('\n');
        sb.append("seconds ").append(o.seconds()).append('\n');
        if (o.failed()) {
            sb.append("failure ").append(oneLine(o.failure())).append('\n');
        }
        for (SuiteResult.Ratio x : o.ratios()) {
            sb.append("ratio ").append(x.value()).append('\t').append(x.target()).append('\t').append(x.atMost()).append('\t')
                    .append(oneLine(x.name())).append('\n');
        }
        for (String file : o.files()) {
            sb.append("file ").append(oneLine(file)).append('\n');
        }
        sb.append("section\n").append(o.section());
        Files.writeString(f, sb.toString(), StandardCharsets.UTF_8);
    }

    /** Reads an outcome {@link #writeOutcome} wrote. */
    static SuiteReport.Outcome readOutcome(Path f) throws IOException {
        String text = Files.readString(f, StandardCharsets.UTF_8);
        int sec = text.indexOf("\nsection\n");
        if (!text.startsWith(MAGIC + "\n") || sec < 0) {
            throw new IOException("not a benchmark outcome: " + f);
        }
        String name = null;
        String title = null;
        String failure = null;
        double seconds = 0;
        List<SuiteResult.Ratio> ratios = new ArrayList<>();
        List<String> files = new ArrayList<>();
        for (String line : text.substring(MAGIC.length() + 1, sec).split("\n")) {
            int sp = line.indexOf(' ');
            String key = sp < 0 ? line : line.substring(0, sp);
            String v = sp < 0 ? "" : line.substring(sp + 1);
            switch (key) {
                case "name" -> name = v;
                case "title" -> title = v;
                case "seconds" -> seconds = Double.parseDouble(v);
                case "failure" -> failure = v;
                case "file" -> files.add(v);
                case "ratio" -> {
                    String[] t = v.split("\t", 4);
                    ratios.add(new SuiteResult.Ratio(t[3], Double.parseDouble(t[0]), Double.parseDouble(t[1]), Boolean.parseBoolean(t[2])));
                }
                default -> throw new IOException("unknown line in " + f + ": " + line);
            }
        }
        if (name == null || title == null) {
            throw new IOException("benchmark outcome without its name or title: " + f);
        }
        return new SuiteReport.Outcome(name, title, ratios, text.substring(sec + "\nsection\n".length()), failure, seconds, files);
    }

    private static String oneLine(String s) {
        return s.replace('\n', ' ').replace('\t', ' ');
    }
}
