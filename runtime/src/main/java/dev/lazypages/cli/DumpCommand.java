package dev.lazypages.cli;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.DumpResult;
import dev.lazypages.dump.Dumper;
import dev.lazypages.dump.UnsupportedFds;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine.Command;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code dump -t PID -D DIR}: checkpoints a running process into an image directory, like
 * {@code criu dump}. The process is killed afterwards unless {@code --leave-running}; on any
 * failure it is left running as before and no image is left behind.
 */
@Command(name = "dump", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "Checkpoints a running process into an image directory (docs/IMAGE.md).",
            "",
            "Every thread is seized and frozen; registers, memory mappings, pages, open files and signal "
                    + "actions are saved; then the process is killed (as criu dump does) or, with --leave-running, "
                    + "let go to run on exactly as before. On failure the process runs on untouched and the "
                    + "partial image is removed.",
            "",
            "Prints one summary line on stdout; progress on stderr when it is a terminal.",
            "",
            "Exit status: 0 dumped; 1 the dump failed (one line naming the step); 2 usage; "
                    + "4 no such process, or the directory is not empty."
        })
public final class DumpCommand implements Callable<Integer> {
    @Spec
    private CommandSpec spec;

    @Option(names = {"-t", "--tree"}, required = true, paramLabel = "PID", description = "The process to dump.")
    private int pid;

    @Option(names = {"-D", "--images-dir"}, required = true, paramLabel = "DIR",
            description = "Where to write the image: created if missing, must be empty.")
    private Path dir;

    @Option(names = "--leave-running", description = "Let the process run on after the dump instead of killing it.")
    private boolean leaveRunning;

    @Option(names = "--unsupported-fds", paramLabel = "refuse|devnull|close", defaultValue = "refuse",
            converter = FdsConverter.class,
            description = "File descriptors other than regular files and /dev/null (pipes, sockets, terminals): "
                    + "refuse the dump (default), record them as /dev/null, or close them in the image.")
    private UnsupportedFds unsupportedFds;

    @Option(names = "--prev-images-dir", paramLabel = "PREV",
            description = "Make the image incremental to PREV (a pre-dump), recorded as its parent. Run as a separate "
                    + "command, the tracker that took PREV is gone: every page is stored again (correct, not "
                    + "incremental); pre-copy keeps its tracker and stores only what changed.")
    private Path prev;

    @Option(names = "--track-mem", paramLabel = "auto|pagemap-scan|soft-dirty|none", defaultValue = "auto",
            description = "The dirty tracker for --prev-images-dir (default auto).")
    private String trackMem;

    /** Parses {@code refuse|devnull|close}. */
    static final class FdsConverter implements ITypeConverter<UnsupportedFds> {
        @Override
        public UnsupportedFds convert(String value) {
            return UnsupportedFds.parse(value);
        }
    }

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        Consumer<String> progress = System.console() != null ? line -> {
            err.println("dump: " + line);
            err.flush();
        } : null;
        DumpResult r = Dumper.dump(pid, new DumpOptions(dir, leaveRunning, unsupportedFds, progress, prev, trackMem));
        out.println(r.summary());
        out.flush();
        return ExitCodes.OK;
    }
}
