package dev.lazypages.cli;

import dev.lazypages.criu.LazyRestore;
import dev.lazypages.criu.PageServerFiles;
import dev.lazypages.lazy.LazyStats;
import dev.lazypages.restore.ImageLazyHandoff;
import dev.lazypages.restore.RestoreException;
import dev.lazypages.restore.Restorer;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code restore -D DIR [--lazy] [--pidfile F] [--stub PATH]}: rebuilds the process of an image
 * directory and lets it run; prints {@code restored pid <new> from <dir> (<threads> threads,
 * <MiB> MiB, <ms> ms)}. Failures are one line naming the step; the half-built process is gone.
 * With {@code --lazy} the private anonymous memory is served on demand from the image by a
 * userfaultfd page server in this process, which runs until every stored page is in place.
 * A corrupt image exits 4, an image this machine cannot run (CPU features, vdso size, files
 * changed) 3, anything else 1.
 */
@Command(name = "restore", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "Restores a process from a checkpoint image directory and lets it run.",
            "",
            "The process is rebuilt inside lp-stub (native-stubs) by system-call injection: memory layout, "
                    + "pages, files, signal handlers, threads and registers. Prints the new pid.",
            "",
            "With --lazy-pages (CRIU's lazy restore) the image comes from `lazy-dump.jar dump --lazy-pages` "
                    + "(DIR copied from the source): the process runs at once and its memory is fetched from the "
                    + "source's page server at --address:--port, or, without --address, from the "
                    + "`lazy-pages.jar --page-server` relay recorded in DIR/" + PageServerFiles.RELAY + ". The token "
                    + "is --token or DIR/" + PageServerFiles.TOKEN + ". Once every page is in, the source is told "
                    + "(DONE) and ends its frozen original.",
            "",
            "Exit status: 0 ok; 1 failed (the message names the step); 3 the image cannot run here; "
                    + "4 the image is corrupt."
        })
public final class RestoreCommand implements Callable<Integer> {
    private static final double MIB = 1024.0 * 1024.0;

    @Spec
    private CommandSpec spec;

    @picocli.CommandLine.Mixin
    private TlsMixin tls;

    @Option(names = {"-D", "--images-dir"}, required = true, paramLabel = "DIR", description = "The image directory.")
    private Path dir;

    @Option(names = "--lazy", description = "Leave anonymous memory to a userfaultfd page server reading the image.")
    private boolean lazy;

    @Option(names = "--lazy-pages",
            description = "Lazy restore with the memory fetched from a page server (dump --lazy-pages or --page-server).")
    private boolean lazyPages;

    @Option(names = "--address", paramLabel = "A",
            description = "With --lazy-pages: the page server's address (default: the relay in DIR/" + PageServerFiles.RELAY + ").")
    private String address;

    @Option(names = "--port", paramLabel = "P", description = "With --lazy-pages: the page server's port.")
    private Integer port;

    @Option(names = "--token", paramLabel = "T",
            description = "With --lazy-pages: the page server's token (default: DIR/" + PageServerFiles.TOKEN + ").")
    private String token;

    @picocli.CommandLine.Mixin
    private RecoverTimeout recoverTimeout = new RecoverTimeout();

    @Option(names = "--pidfile", paramLabel = "FILE", description = "Write the restored process's pid to FILE.")
    private Path pidfile;

    @Option(names = "--stub", paramLabel = "PATH",
            description = "The lp-stub binary or its directory (default: $LAZYPAGES_STUBS_DIR, -Dlazypages.stubs.dir, "
                    + "or native-stubs/target/bin next to the jar's directory).")
    private Path stub;

    @Override
    public Integer call() throws IOException {
        if (tls.on() && !lazyPages) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--tls goes with --lazy-pages");
        }
        tls.apply(spec, false);
        if (lazyPages) {
            return lazyPages();
        }
        if (address != null || port != null || token != null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--address, --port and --token go with --lazy-pages");
        }
        Restorer.Options opts = Restorer.Options.eager(dir).withStub(stub);
        ImageLazyHandoff handoff = lazy ? new ImageLazyHandoff() : null;
        if (handoff != null) {
            opts = opts.withLazy(handoff);
        }
        Restorer.Result r;
        try {
            r = Restorer.restore(opts);
        } catch (RestoreException e) {
            throw mapped(e);
        }
        restored(r);
        if (handoff != null) {
            // serve the process's faults until every stored page is in place (or it exits)
            LazyStats stats = handoff.completion().join();
            spec.commandLine().getErr().println("restore: lazy pages done: " + stats);
        }
        return ExitCodes.OK;
    }

    private static RuntimeException mapped(RestoreException e) {
        return switch (e.reason()) {
            case BAD_IMAGE -> new IllegalArgumentException(e.getMessage(), e);
            case UNSUPPORTED -> new UnsupportedOperationException(e.getMessage(), e);
            case FAILED -> e;
        };
    }

    private void restored(Restorer.Result r) throws IOException {
        if (pidfile != null) {
            Files.writeString(pidfile, r.pid() + "\n", StandardCharsets.US_ASCII);
        }
        PrintWriter out = spec.commandLine().getOut();
        out.println(String.format(Locale.ROOT, "restored pid %d from %s (%d threads, %.1f MiB, %d ms)", r.pid(), dir,
                r.threads(), r.bytesWritten() / MIB, r.millis()));
        out.flush();
    }

    private int lazyPages() throws IOException {
        if (lazy) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--lazy and --lazy-pages exclude each other");
        }
        InetSocketAddress server;
        if (address != null || port != null) {
            if (address == null || port == null) {
                throw new CommandLine.ParameterException(spec.commandLine(), "--address and --port go together");
            }
            server = new InetSocketAddress(address, port);
        } else {
            String relay = PageServerFiles.relay(dir);
            if (relay == null) {
                throw new CommandLine.ParameterException(spec.commandLine(), "--lazy-pages needs --address and --port "
                        + "(the source's page server) or a running `lazy-pages --page-server -D " + dir + "` relay");
            }
            server = MigrateCommand.parse(relay);
        }
        String t = PageServerFiles.token(token, dir);
        try (LazyRestore.Session s = LazyRestore.connect(dir, server, t, recoverTimeout.get(spec.commandLine()))) {
            Restorer.Result r;
            try {
                r = s.restore(stub, null);
            } catch (RestoreException e) {
                throw mapped(e);
            }
            restored(r);
            LazyRestore.Result done = s.finish();
            spec.commandLine().getErr().println("restore: lazy pages done (" + done.remotePages()
                    + " REMOTE pages from " + server.getHostString() + ":" + server.getPort() + "): " + done.stats());
        }
        return ExitCodes.OK;
    }
}
