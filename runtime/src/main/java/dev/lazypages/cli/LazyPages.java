package dev.lazypages.cli;

import dev.lazypages.criu.PageServerFiles;
import dev.lazypages.criu.PageServerRelay;
import dev.lazypages.proc.CpuYield;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code lazy-pages.jar}: the destination side. */
@Command(name = "lazy-pages", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "The destination side of lazy-pages, live migration of running Linux processes.",
            "",
            "It rebuilds a migrated process, registers userfaultfd over its memory and answers every page "
                    + "fault by fetching the page from the source or a local image.",
            "",
            "Commands: serve (the migration daemon), restore (eager, --lazy from an image, or --lazy-pages from a "
                    + "page server), demo (a hybrid migration of a bundled workload on loopback), inspect, check.",
            "",
            "CRIU style (instead of a command): --page-server --address A --port P -D DIR is the destination "
                    + "daemon of CRIU's lazy migration (criu lazy-pages --page-server): it connects to the page "
                    + "server of `lazy-dump.jar dump --lazy-pages` at A:P, listens on --listen (default 127.0.0.1:0), "
                    + "records that address in DIR/" + PageServerFiles.RELAY + " and relays page requests until "
                    + "`restore -D DIR --lazy-pages` (no --address) is done. Where CRIU's restore talks to its "
                    + "lazy-pages daemon over a unix socket in DIR, ours finds the relay's TCP address there; "
                    + "`restore --lazy-pages --address A --port P` skips the relay and fetches from the source directly.",
        },
        subcommands = {CheckCommand.class, ServeCommand.class, RestoreCommand.class, InspectCommand.class, DemoCommand.class},
        footer = {"", "Exit status: 0 ok, 1 failed, 2 usage, 3 unsupported here, 4 bad input."})
public final class LazyPages extends TopLevelCommand {
    @Spec
    private CommandSpec spec;

    @picocli.CommandLine.Mixin
    private TlsMixin tls;

    @Option(names = "--page-server", description = "Run the CRIU-style page server relay (see above); excludes a command.")
    private boolean pageServer;

    @Option(names = "--address", paramLabel = "A", description = "With --page-server: the source's page server address.")
    private String address;

    @Option(names = "--port", paramLabel = "P", description = "With --page-server: the source's page server port.")
    private Integer port;

    @Option(names = {"-D", "--images-dir"}, paramLabel = "DIR",
            description = "With --page-server: the image directory (copied from the source) the restore will use.")
    private Path dir;

    @Option(names = "--listen", paramLabel = "HOST:PORT", defaultValue = "127.0.0.1:0",
            description = "With --page-server: where the relay listens for the local restore (default 127.0.0.1:0).")
    private String listen;

    @Option(names = "--status-fd", paramLabel = "FD", defaultValue = "-1",
            description = "With --page-server: write one byte to FD (then close it) once the relay listens.")
    private int statusFd;

    @Option(names = "--token", paramLabel = "T",
            description = "With --page-server: the source's token (default: DIR/" + PageServerFiles.TOKEN + ").")
    private String token;

    @Option(names = "--lazy-timeout", paramLabel = "SECONDS", defaultValue = "600",
            description = "With --page-server: give up after this many seconds without a page request and without DONE.")
    private double lazyTimeout;

    @picocli.CommandLine.Mixin
    private RecoverTimeout recoverTimeout = new RecoverTimeout();

    public static void main(String[] args) {
        ArenaLimit.forServe(args);
        dev.lazypages.net.NettyDefaults.apply();
        CpuYield.compilers();
        System.exit(Cli.run(new LazyPages(), args));
    }

    @Override
    protected String ownMode() {
        return pageServer ? "--page-server" : null;
    }

    @Override
    protected Integer runOwnMode() throws Exception {
        tls.apply(spec, true); // the relay accepts the local restore's connections
        if (address == null || port == null || dir == null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--page-server needs --address, --port and -D");
        }
        if (!Files.isDirectory(dir)) {
            throw new IllegalArgumentException(dir + " is not a directory (copy the image directory from the source first)");
        }
        if (!(lazyTimeout > 0)) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--lazy-timeout must be positive");
        }
        PrintWriter out = spec.commandLine().getOut();
        String t = PageServerFiles.token(token, dir);
        PageServerRelay.Result r = PageServerRelay.run(new InetSocketAddress(address, port), MigrateCommand.parse(listen), dir, t,
                statusFd, Duration.ofMillis(Math.round(lazyTimeout * 1000)), recoverTimeout.get(spec.commandLine()), line -> {
                    out.println("page-server: " + line);
                    out.flush();
                });
        if (!r.done()) {
            spec.commandLine().getErr().println("page-server: gave up: " + r.reason());
            return ExitCodes.FAILED;
        }
        out.println("page-server: done, " + r.relayedPages() + " pages relayed");
        out.flush();
        return ExitCodes.OK;
    }
}
