package dev.lazypages.cli;

import dev.lazypages.criu.LazyDumpServer;
import dev.lazypages.criu.PageServerFiles;
import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.DumpResult;
import dev.lazypages.dump.Dumper;
import dev.lazypages.dump.UnsupportedFds;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine;
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
            "With --lazy-pages (CRIU's lazy migration, source side) memory is not written: every page stays "
                    + "in the frozen process and a page server on --address:--port serves it to "
                    + "`lazy-pages.jar restore -D DIR --lazy-pages` at the destination (DIR copied there first, "
                    + "e.g. with rsync, as with CRIU). One byte goes to --status-fd once the page server listens. "
                    + "When the destination sends DONE (it has every page) the process is killed and dump exits 0; "
                    + "after --lazy-timeout seconds without a page request and without DONE it is resumed "
                    + "(rolled back) and dump exits 1. The token is written to DIR/" + PageServerFiles.TOKEN
                    + " (mode 0600) unless --token is given.",
            "",
            "Exit status: 0 dumped (with --lazy-pages: migrated); 1 the dump failed (one line naming the step) or, "
                    + "with --lazy-pages, rolled back; 2 usage; 4 no such process, or the directory is not empty."
        })
public final class DumpCommand implements Callable<Integer> {
    @Spec
    private CommandSpec spec;

    @picocli.CommandLine.Mixin
    private TlsMixin tls;

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

    @Option(names = "--lazy-pages",
            description = "Leave the memory in the frozen process and serve it from a page server (CRIU style lazy "
                    + "migration; see above).")
    private boolean lazyPages;

    @Option(names = "--address", paramLabel = "A", defaultValue = "0.0.0.0",
            description = "With --lazy-pages: the address the page server binds (default 0.0.0.0).")
    private String address;

    @Option(names = "--port", paramLabel = "P", defaultValue = "0",
            description = "With --lazy-pages: the page server's port (default 0: any free port, printed).")
    private int port;

    @Option(names = "--status-fd", paramLabel = "FD", defaultValue = "-1",
            description = "With --lazy-pages: write one byte to the inherited descriptor FD (then close it) once the "
                    + "page server listens, as criu --status-fd.")
    private int statusFd;

    @Option(names = "--token", paramLabel = "T",
            description = "With --lazy-pages: the token page clients must present (default: random, written to DIR/"
                    + PageServerFiles.TOKEN + ").")
    private String token;

    @Option(names = "--lazy-timeout", paramLabel = "SECONDS", defaultValue = "600",
            description = "With --lazy-pages: resume the process (roll back) after this many seconds without a page "
                    + "request and without DONE (default 600).")
    private double lazyTimeout;

    /** Parses {@code refuse|devnull|close}. */
    static final class FdsConverter implements ITypeConverter<UnsupportedFds> {
        @Override
        public UnsupportedFds convert(String value) {
            return UnsupportedFds.parse(value);
        }
    }

    @Override
    public Integer call() throws IOException {
        if (tls.on() && !lazyPages) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--tls goes with --lazy-pages");
        }
        tls.apply(spec, true);
        if (lazyPages) {
            return lazy();
        }
        if (statusFd >= 0 || token != null || port != 0) {
            throw new CommandLine.ParameterException(spec.commandLine(),
                    "--port, --status-fd and --token go with --lazy-pages");
        }
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

    private int lazy() throws IOException {
        if (leaveRunning) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--lazy-pages and --leave-running exclude each other");
        }
        if (port < 0 || port > 65535) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--port " + port + " out of range");
        }
        if (!(lazyTimeout > 0)) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--lazy-timeout must be positive");
        }
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        boolean tty = System.console() != null;
        String t = token != null ? token : PageServerFiles.randomToken();
        DumpOptions d = DumpOptions.of(dir).withUnsupportedFds(unsupportedFds).withTrackMem(trackMem).withPrevImagesDir(prev);
        LazyDumpServer.Options o = new LazyDumpServer.Options(new InetSocketAddress(address, port), t, statusFd,
                Duration.ofMillis(Math.round(lazyTimeout * 1000)), line -> {
                    if (tty) {
                        err.println("dump: " + line);
                        err.flush();
                    }
                }, at -> {
                    if (token == null) {
                        try {
                            PageServerFiles.writeToken(dir, t);
                        } catch (IOException e) {
                            throw new java.io.UncheckedIOException("cannot write " + dir.resolve(PageServerFiles.TOKEN), e);
                        }
                    }
                    out.println("page server on " + at.getAddress().getHostAddress() + ":" + at.getPort() + " for pid " + pid
                            + " (image " + dir + (token == null ? ", token in " + dir.resolve(PageServerFiles.TOKEN) : "") + ")");
                    out.flush();
                });
        LazyDumpServer.Result r = LazyDumpServer.run(pid, d, o);
        if (r.outcome() == LazyDumpServer.Outcome.ROLLED_BACK) {
            err.println("dump: rolled back: pid " + pid + " runs on here (" + r.reason() + ")");
            err.flush();
            return ExitCodes.FAILED;
        }
        out.println(String.format(Locale.ROOT, "migrated pid %d lazily: %d pages served of %d REMOTE, frozen %.0f ms; "
                + "the original is gone", pid, r.servedPages(), r.remotePages(), r.frozenMs()));
        out.flush();
        return ExitCodes.OK;
    }
}
