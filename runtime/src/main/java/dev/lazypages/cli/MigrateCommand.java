package dev.lazypages.cli;

import dev.lazypages.dump.ConvergencePolicy;
import dev.lazypages.migrate.FaultStep;
import dev.lazypages.migrate.MigrationException;
import dev.lazypages.migrate.MigrationMode;
import dev.lazypages.migrate.MigrationReport;
import dev.lazypages.migrate.MigrationSource;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code migrate -t PID --to HOST:PORT}: live-migrates a process to a {@code lazy-pages serve}
 * daemon; prints the report as a table. A refused pre-check or a rollback leaves the process
 * running here and exits 1 (3 when this machine or the destination lacks what the mode needs).
 */
@Command(name = "migrate", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "Live-migrates a running process to a `lazy-pages serve` daemon.",
            "",
            "pre-copy: copies memory in rounds while the process runs, freezes it, sends the last dirty pages, "
                    + "and it runs at the destination once every page is there. post-copy: freezes at once and the "
                    + "process runs at the destination straight away, pulling its pages from here on fault. hybrid "
                    + "(default): pre-copy rounds, then post-copy for what is still dirty.",
            "",
            "Pre-checks (page size, CPU state components, kernel facilities, vdso/vvar, every open or mapped file) "
                    + "run before the process is touched; any failure before the destination confirms the process "
                    + "runs rolls back: the process runs on here as before.",
            "",
            "Exit status: 0 migrated; 1 failed or refused (the process runs on here unless the message says "
                    + "otherwise); 2 usage; 3 unsupported here; 4 no such process."
        })
public final class MigrateCommand implements Callable<Integer> {
    @Spec
    private CommandSpec spec;

    @picocli.CommandLine.Mixin
    private TlsMixin tls;

    @Option(names = {"-t", "--tree"}, required = true, paramLabel = "PID", description = "The process.")
    private int pid;

    @Option(names = "--to", required = true, paramLabel = "HOST:PORT", description = "The destination daemon.")
    private String to;

    @Option(names = "--mode", paramLabel = "pre-copy|post-copy|hybrid", defaultValue = "hybrid",
            description = "How memory moves (default hybrid).")
    private String mode;

    @Option(names = "--max-iterations", paramLabel = "N", defaultValue = "10", description = "Pre-copy rounds at most (default 10).")
    private int maxIterations;

    @Option(names = "--goal", paramLabel = "P", defaultValue = "70",
            description = "Stop pre-copy once P percent of the pages sent in the last round stayed unchanged (default 70).")
    private double goal;

    @Option(names = "--downtime-limit-ms", paramLabel = "M", defaultValue = "0",
            description = "Stop pre-copy once the final round is predicted to take at most M ms (default 0: off).")
    private long downtimeLimit;

    @Option(names = "--track-mem", paramLabel = "auto|pagemap-scan|soft-dirty|none", defaultValue = "auto",
            description = "The dirty tracker (default auto).")
    private String trackMem;

    @Option(names = "--max-postcopy-bandwidth", paramLabel = "RATE", defaultValue = "0", converter = RateConverter.class,
            description = {"Cap the post-copy background transfer at RATE bytes/s (suffix K, M or G: KiB, MiB, GiB; "
                    + "default 0: no cap, as fast as it goes). With a cap the destination also serves the process's faults "
                    + "before any background work, for a lower fault latency while the pages move; the post-copy lasts "
                    + "longer, and the process depends on the source until it ends. Post-copy and hybrid only."})
    private long maxPostcopyBandwidth;

    @Option(names = "--token", paramLabel = "T", description = "The token the daemon printed (or was given).")
    private String token;

    @Option(names = "--report", paramLabel = "FILE",
            description = "Write the report as JSON to FILE (and the fault latency distribution beside it, .hgrm).")
    private Path report;

    @Option(names = "--inject-fault", hidden = true, paramLabel = "STEP[:ROUND]", converter = FaultConverter.class,
            description = "Tests: fail the migration at STEP (handshake, precheck, round:N, after-round:N, freeze, final-dump, "
                    + "state-transfer, restore-request, running, commit, post-copy, end-original).")
    private FaultStep.At injectFault;

    /** {@link FaultStep#parse}, its message as picocli's usage error. */
    static final class FaultConverter implements picocli.CommandLine.ITypeConverter<FaultStep.At> {
        @Override
        public FaultStep.At convert(String value) {
            try {
                return FaultStep.parse(value);
            } catch (IllegalArgumentException e) {
                throw new picocli.CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }

    /** {@link ByteRate#parse}, its message as picocli's usage error. */
    static final class RateConverter implements picocli.CommandLine.ITypeConverter<Long> {
        @Override
        public Long convert(String value) {
            try {
                return ByteRate.parse(value);
            } catch (IllegalArgumentException e) {
                throw new picocli.CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }

    @Override
    public Integer call() {
        tls.apply(spec, true); // the source's page server accepts the destination's page connections
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        FaultStep.At fault = injectFault != null ? injectFault : FaultStep.At.NONE;
        java.io.Console console = System.console();
        Consumer<String> progress = console != null && console.isTerminal() ? terminalProgress(err) : null;
        MigrationMode m = MigrationMode.parse(mode);
        if (maxPostcopyBandwidth > 0 && !m.lazy()) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--max-postcopy-bandwidth applies to post-copy and "
                    + "hybrid migrations (a pre-copy migration moves no pages once the process runs on the destination)");
        }
        MigrationSource.Options o = MigrationSource.Options.defaults().withMode(m)
                .withLimits(new ConvergencePolicy.Limits(maxIterations, goal, downtimeLimit)).withTrackMem(trackMem)
                .withToken(token).withReport(report).withProgress(progress).withFault(fault)
                .withMaxPostcopyBandwidth(maxPostcopyBandwidth);
        MigrationReport r;
        try {
            r = MigrationSource.run(pid, parse(to), o);
        } catch (MigrationException e) {
            err.println("migrate: " + e.getMessage());
            err.flush();
            return ExitCodes.FAILED;
        }
        out.println("migrated pid " + pid + " to " + to + " (pid " + r.destinationPid + " there)");
        out.print(r.table());
        out.flush();
        return ExitCodes.OK;
    }

    /**
     * Progress for a terminal: one line per step; the running count within a round ("round 1:
     * N pages sent so far, R MiB/s") rewrites itself in place instead of scrolling.
     */
    static Consumer<String> terminalProgress(PrintWriter err) {
        boolean[] inPlace = {false};
        return line -> {
            boolean running = line.contains(" sent so far, ");
            err.print((inPlace[0] ? "\r\033[K" : "") + "migrate: " + line + (running ? "" : "\n"));
            inPlace[0] = running;
            err.flush();
        };
    }

    /** HOST:PORT, [V6]:PORT. */
    static InetSocketAddress parse(String hostPort) {
        int c = hostPort.lastIndexOf(':');
        if (c <= 0 || c == hostPort.length() - 1) {
            throw new IllegalArgumentException("--to must be HOST:PORT, not '" + hostPort + "'");
        }
        String host = hostPort.substring(0, c);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port;
        try {
            port = Integer.parseInt(hostPort.substring(c + 1));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("bad port in '" + hostPort + "'");
        }
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port " + port + " out of range in '" + hostPort + "'");
        }
        return new InetSocketAddress(host, port);
    }
}
