package dev.lazypages.cli;

import dev.lazypages.dump.ConvergencePolicy;
import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.PreCopy;
import dev.lazypages.dump.PreDumpResult;
import dev.lazypages.dump.UnsupportedFds;
import dev.lazypages.stats.Json;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code pre-copy -t PID -D DIR}: pre-dumps into DIR/1, DIR/2, ... with one tracker alive
 * across rounds until the convergence policy says stop, then the frozen final dump into DIR/final.
 */
@Command(name = "pre-copy", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "Iterative pre-copy: copies memory while the process runs, round after round, each round only "
                    + "the pages written during the previous one, then freezes it for a small final dump.",
            "",
            "Rounds go to DIR/1, DIR/2, ... (each naming the previous as parent), the final dump to DIR/final, "
                    + "which `lazy-pages restore -D DIR/final` restores (eagerly or --lazy).",
            "",
            "Stops after --max-iterations rounds, or when --goal percent of the pages sent in a round stayed "
                    + "unchanged during it, or when the final round is predicted to fit --downtime-limit-ms at the "
                    + "measured bandwidth, or when the dirty set stops shrinking.",
            "",
            "Exit status: 0 done; 1 failed (one line naming the step); 2 usage; 3 tracker unavailable here; "
                    + "4 no such process or the directory is not empty."
        })
public final class PreCopyCommand implements Callable<Integer> {
    @Spec
    private CommandSpec spec;

    @Option(names = {"-t", "--tree"}, required = true, paramLabel = "PID", description = "The process.")
    private int pid;

    @Option(names = {"-D", "--images-dir"}, required = true, paramLabel = "DIR",
            description = "Where the rounds and the final image go: created if missing, must be empty.")
    private Path dir;

    @Option(names = "--max-iterations", paramLabel = "N", defaultValue = "10", description = "Pre-dump rounds at most (default 10).")
    private int maxIterations;

    @Option(names = "--goal", paramLabel = "P", defaultValue = "70",
            description = "Stop once P percent of the pages sent in the last round stayed unchanged (default 70).")
    private double goal;

    @Option(names = "--downtime-limit-ms", paramLabel = "M", defaultValue = "0",
            description = "Stop once the final round is predicted to take at most M ms (default 0: off).")
    private long downtimeLimit;

    @Option(names = "--track-mem", paramLabel = "auto|pagemap-scan|soft-dirty|none", defaultValue = "auto",
            description = "The dirty tracker (default auto).")
    private String trackMem;

    @Option(names = "--leave-running", description = "Let the process run on after the final dump instead of killing it.")
    private boolean leaveRunning;

    @Option(names = "--unsupported-fds", paramLabel = "refuse|devnull|close", defaultValue = "refuse",
            converter = DumpCommand.FdsConverter.class, description = "As for dump.")
    private UnsupportedFds unsupportedFds;

    @Option(names = "--report", paramLabel = "FILE", description = "Also write the report as JSON to FILE.")
    private Path report;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        boolean tty = System.console() != null;
        Consumer<String> progress = tty ? line -> {
            err.println("pre-copy: " + line);
            err.flush();
        } : null;
        Consumer<PreDumpResult> perRound = tty ? r -> {
            err.printf(Locale.ROOT, "pre-copy: round %d: %d pages, %.1f MiB, %d ms, dirty %.1f MiB/s%n", r.round(),
                    r.pagesStored(), r.bytesStored() / 1048576.0, r.copyNanos() / 1_000_000,
                    r.dirtyRate() * r.pageSize() / 1048576.0);
            err.flush();
        } : null;
        ConvergencePolicy.Limits limits = new ConvergencePolicy.Limits(maxIterations, goal, downtimeLimit);
        DumpOptions opts = new DumpOptions(dir, leaveRunning, unsupportedFds, progress).withTrackMem(trackMem);
        PreCopy.Report r = PreCopy.run(pid, dir, limits, opts, perRound);
        if (r.tracker().equals("none")) {
            out.println("note: no dirty tracking (" + r.trackerReason() + "): every round was a full copy");
        }
        out.println(r.text());
        if (report != null) {
            try {
                Files.writeString(report, Json.write(r.toMap()) + "\n");
            } catch (IOException e) {
                throw new UncheckedIOException("cannot write the report to " + report + ": " + e.getMessage(), e);
            }
        }
        out.flush();
        return ExitCodes.OK;
    }
}
