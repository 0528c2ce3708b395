package dev.lazypages.cli;

import dev.lazypages.dump.PreCopySession;
import dev.lazypages.dump.PreDumpResult;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code pre-dump -t PID -D DIR [--prev-images-dir PREV] [--track-mem=MODE]}: a memory-only
 * image taken while the process runs, like {@code criu pre-dump}.
 */
@Command(name = "pre-dump", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "Copies the memory of a running process into a memory-only image (kind PRE_DUMP).",
            "",
            "The process is stopped only to arm the dirty tracker (the time is printed) and runs on. "
                    + "A later pre-dump or dump names this image with --prev-images-dir.",
            "",
            "A pagemap-scan tracker lives in this JVM and dies with it: a pre-dump or dump run as a separate "
                    + "command re-arms a fresh tracker and stores every page again (the chain stays correct, not "
                    + "incremental). For incremental rounds use pre-copy, which keeps one tracker across rounds. "
                    + "Soft-dirty state lives in the kernel and could carry over between commands (not on kernels "
                    + "without CONFIG_MEM_SOFT_DIRTY).",
            "",
            "Prints one summary line on stdout; progress on stderr when it is a terminal.",
            "",
            "Exit status: 0 done; 1 failed (one line naming the step); 2 usage; 3 tracker unavailable here; "
                    + "4 no such process, the directory is not empty, or PREV is no image of it."
        })
public final class PreDumpCommand implements Callable<Integer> {
    @Spec
    private CommandSpec spec;

    @Option(names = {"-t", "--tree"}, required = true, paramLabel = "PID", description = "The process to pre-dump.")
    private int pid;

    @Option(names = {"-D", "--images-dir"}, required = true, paramLabel = "DIR",
            description = "Where to write the image: created if missing, must be empty.")
    private Path dir;

    @Option(names = "--prev-images-dir", paramLabel = "PREV",
            description = "The previous image of the chain; recorded as the parent (relative to DIR).")
    private Path prev;

    @Option(names = "--track-mem", paramLabel = "auto|pagemap-scan|soft-dirty|none", defaultValue = "auto",
            description = "The dirty tracker (default auto: pagemap-scan where the kernel has it, else soft-dirty, else none).")
    private String trackMem;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        Consumer<String> progress = System.console() != null ? line -> {
            err.println("pre-dump: " + line);
            err.flush();
        } : null;
        try (PreCopySession s = PreCopySession.start(pid, trackMem, progress)) {
            if (prev != null) {
                s.adoptParent(prev);
            }
            PreDumpResult r = s.preDump(dir);
            out.println(r.summary());
            if (!s.copiesEverything()) {
                PreCopySession.Collect c = s.collect();
                out.printf(Locale.ROOT, "  %d pages dirtied during the copy (%.1f MiB/s); tracker %s is dropped on exit%n",
                        c.newPages(), c.rate() * s.pageSize() / 1048576.0, s.tracker());
            }
        }
        out.flush();
        return ExitCodes.OK;
    }
}
