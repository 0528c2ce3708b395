package dev.lazypages.perf;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

/**
 * {@code lazy-bench.jar}: benchmark runs against real processes (memtouch from native-stubs).
 * Each subcommand repeats its measurement, discards a warm-up run, and reports median, min and
 * max ({@link Samples}); a run whose workload fails its own verification fails the benchmark.
 */
@Command(name = "lazy-bench", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Benchmarks of lazy-pages against real processes (memtouch, native-stubs/target/bin).",
            "",
            "Needs root (ptrace, userfaultfd, process_vm_readv of another process)."
        },
        subcommands = {AllCommand.class, RestoreBench.class, ReadvBench.class, TrackerBench.class, PreCopyBench.class,
            FaultBench.class, FaultLatencyBench.class, ThroughputBench.class, DelayedLinkBench.class, DowntimeBench.class,
            NetBench.class, FreezeBench.class, JmhBench.class},
        footer = {"", "Exit status: 0 ok, 1 a run failed (a failed verify included), 2 usage."})
public final class Bench implements Runnable {
    /** Exit status of a benchmark that ran and failed. */
    public static final int FAILED = 1;

    @Spec
    private CommandSpec spec;

    @Override
    public void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "a subcommand is needed (try --help)");
    }

    public static void main(String[] args) {
        dev.lazypages.net.NettyDefaults.apply(); // as the tools measured run
        System.exit(run(args));
    }

    /** Runs the command line; failures print one line (a stack trace with LAZYPAGES_DEBUG=1). */
    static int run(String... args) {
        CommandLine cl = new CommandLine(new Bench());
        cl.setExecutionExceptionHandler((ex, line, parse) -> {
            if (System.getenv("LAZYPAGES_DEBUG") != null) {
                ex.printStackTrace(line.getErr());
            }
            String m = ex.getMessage() != null && !ex.getMessage().isBlank() ? ex.getMessage() : ex.getClass().getSimpleName();
            line.getErr().println(line.getCommandName() + ": " + m);
            return FAILED;
        });
        return cl.execute(args);
    }

    /** The version from the jar's manifest. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Bench.class.getPackage().getImplementationVersion();
            return new String[] {"lazy-bench " + (v != null ? v : "(development build)")};
        }
    }
}
