package dev.lazypages.cli;

import dev.lazypages.migrate.DestinationFault;
import dev.lazypages.migrate.MigrationDestination;
import dev.lazypages.migrate.ServeDaemon;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code serve --listen ADDR:PORT}: the destination daemon; takes migrations one after another
 * until killed (SIGTERM/SIGINT stop it).
 */
@Command(name = "serve", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "Waits for live migrations (`lazy-dump migrate --to ADDR:PORT`) and runs them one after another.",
            "",
            "Each migration is received into WORK-DIR/<migration-id>: pre-checks answered, pre-copy rounds "
                    + "stored as an image chain, the process restored (eagerly for pre-copy, with lazy pages served "
                    + "from the source for post-copy and hybrid), then the directory is removed.",
            "",
            "Without --token a random token is generated and printed: give it to `migrate --token`.",
            "",
            "Exit status: 0 stopped; 1 failed to start; 2 usage; 3 unsupported here."
        })
public final class ServeCommand implements Callable<Integer> {
    @Spec
    private CommandSpec spec;

    @picocli.CommandLine.Mixin
    private TlsMixin tls;

    @Option(names = "--listen", required = true, paramLabel = "ADDR:PORT", description = "Where to listen (port 0: any).")
    private String listen;

    @Option(names = "--work-dir", paramLabel = "DIR", description = "Where migrations are received (default: a temporary directory).")
    private Path workDir;

    @Option(names = "--token", paramLabel = "T", description = "The shared secret sources must present (default: random, printed).")
    private String token;

    @Option(names = "--report-dir", paramLabel = "DIR",
            description = "Write each migration's report to DIR/migration-<id>.json (and .hgrm).")
    private Path reportDir;

    @Option(names = "--keep", description = "Keep each migration's received images.")
    private boolean keep;

    @Option(names = "--stub", paramLabel = "PATH", description = "The lp-stub binary or its directory (default: as for restore).")
    private Path stub;

    @picocli.CommandLine.Mixin
    private RecoverTimeout recoverTimeout = new RecoverTimeout();

    /** Fault injection for the failure tests (issue 7): hidden from --help. */
    @Option(names = "--inject-fault", hidden = true, paramLabel = "STEP")
    private String injectFault;

    private final CountDownLatch stop = new CountDownLatch(1);

    /** Makes {@link #call} return (the daemon closes); SIGTERM and SIGINT do the same. */
    public void stop() {
        stop.countDown();
    }

    @Override
    public Integer call() throws Exception {
        tls.apply(spec, true);
        PrintWriter out = spec.commandLine().getOut();
        DestinationFault fault;
        try {
            fault = injectFault != null ? DestinationFault.parse(injectFault) : DestinationFault.NONE;
        } catch (IllegalArgumentException e) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--inject-fault: " + e.getMessage());
        }
        Path work = workDir != null ? workDir : Files.createTempDirectory("lazy-pages-serve-");
        MigrationDestination.Options d = new MigrationDestination.Options(work, stub, reportDir, keep, null, null, null, null,
                null, line -> {
                    synchronized (out) {
                        out.println(line);
                        out.flush();
                    }
                }, recoverTimeout.get(spec.commandLine())).withFault(fault);
        try (ServeDaemon s = ServeDaemon.start(new ServeDaemon.Options(MigrateCommand.parse(listen), token, d))) {
            Thread hook = new Thread(stop::countDown, "serve-shutdown");
            Runtime.getRuntime().addShutdownHook(hook);
            out.println("serving on " + s.address().getAddress().getHostAddress() + ":" + s.address().getPort()
                    + " (work dir " + work + ")");
            if (s.tokenGenerated()) {
                out.println("token " + s.token());
            }
            out.flush();
            stop.await();
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException shuttingDown) {
                // the hook is what woke us
            }
        }
        return ExitCodes.OK;
    }
}
