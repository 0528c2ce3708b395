package dev.lazypages.cli;

import dev.lazypages.dump.ConvergencePolicy;
import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.migrate.MigrationDestination;
import dev.lazypages.migrate.MigrationMode;
import dev.lazypages.migrate.MigrationReport;
import dev.lazypages.migrate.MigrationSource;
import dev.lazypages.migrate.ServeDaemon;
import dev.lazypages.proc.NativeStubs;
import dev.lazypages.proc.ProcException;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code demo}: a live migration of the bundled workload (memtouch) over loopback, in one
 * command: a destination daemon ({@code serve}) starts in this process on 127.0.0.1 (random
 * port, random token), memtouch starts and rewrites its memory, {@link MigrationSource}
 * migrates it (hybrid by default: pre-copy rounds, then post-copy for the last dirty pages),
 * memtouch checks every page itself at the destination and its heartbeat goes on in the same
 * log; the migration report is printed as a table.
 */
@Command(name = "demo", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "Live-migrates the bundled workload over loopback and has it verify itself.",
            "",
            "Starts a destination daemon in this process on 127.0.0.1 (random port and token), starts memtouch "
                    + "(a workload whose every page carries its index, version and checksum, and that rewrites "
                    + "pages while it runs), migrates it (--mode, hybrid by default: copy rounds while it runs, "
                    + "then it runs at the destination at once and the last dirty pages follow on demand), asks "
                    + "it to verify every page (SIGUSR1) and prints the migration report."
        })
public final class DemoCommand implements Callable<Integer> {
    @Spec
    private CommandSpec spec;

    @Option(names = "--size-mib", defaultValue = "256", description = "Workload size in MiB (default ${DEFAULT-VALUE}).")
    private int sizeMib;

    @Option(names = "--threads", defaultValue = "2", description = "Workload threads that dirty memory (default ${DEFAULT-VALUE}).")
    private int threads;

    @Option(names = "--dirty-mib-per-sec", defaultValue = "8", description = "Dirty rate of the workload (default ${DEFAULT-VALUE}).")
    private int dirtyRate;

    @Option(names = "--mode", defaultValue = "hybrid", paramLabel = "pre-copy|post-copy|hybrid",
            description = "How memory moves (default ${DEFAULT-VALUE}).")
    private String mode;

    @Option(names = "--stubs-dir", description = "Where memtouch and lp-stub are (default: native-stubs/target/bin next to the jar, or $LAZYPAGES_STUBS_DIR).")
    private Path stubsDir;

    @Option(names = "--keep", description = "Keep the work directory, the report and the migrated memtouch running.")
    private boolean keep;

    private PrintWriter out;

    @Override
    public Integer call() throws Exception {
        out = spec.commandLine().getOut();
        if (sizeMib < 1 || threads < 1 || dirtyRate < 0) {
            throw new IllegalArgumentException("--size-mib and --threads must be at least 1, --dirty-mib-per-sec at least 0");
        }
        MigrationMode m = MigrationMode.parse(mode);
        Features.ptrace().ensureAvailable();
        if (m.lazy()) {
            Features.userfaultfd().ensureAvailable();
        }
        Path memtouch = stub("memtouch");
        Path lpStub = stub(NativeStubs.LP_STUB);
        Path work = Files.createTempDirectory("lazy-pages-demo");
        Path log = work.resolve("memtouch.log");
        Path report = work.resolve("report.json");
        MigrationDestination.Options dest = new MigrationDestination.Options(work.resolve("serve"), lpStub, null, false, null,
                null, null, null, null, null);
        int pid = -1;
        int migrated = -1;
        try (ServeDaemon daemon = ServeDaemon.start(new ServeDaemon.Options(new InetSocketAddress("127.0.0.1", 0), null, dest))) {
            say("serve     destination daemon on 127.0.0.1:%d (token %s...)", daemon.address().getPort(),
                    daemon.token().substring(0, 8));
            pid = Features.spawnDetachedWithLog(log, memtouch.toString(), "--size-mib", Integer.toString(sizeMib),
                    "--threads", Integer.toString(threads), "--dirty-mib-per-sec", Integer.toString(dirtyRate));
            awaitLine(log, "HEARTBEAT 2", 30_000);
            say("workload  memtouch pid %d: %d MiB, %d threads rewriting %d MiB/s (log %s)", pid, sizeMib, threads, dirtyRate, log);
            long beatAtStart = lastHeartbeat(log);
            MigrationSource.Options o = MigrationSource.Options.defaults().withMode(m).withToken(daemon.token())
                    .withLimits(new ConvergencePolicy.Limits(ConvergencePolicy.Limits.DEFAULT_MAX_ITERATIONS,
                            ConvergencePolicy.Limits.DEFAULT_GOAL_PERCENT, 0))
                    .withReport(report).withProgress(line -> say("migrate   %s", line));
            MigrationReport r = MigrationSource.run(pid, daemon.address(), o);
            migrated = r.destinationPid;
            long beatAtEnd = lastHeartbeat(log);
            Posix.kill(migrated, Posix.SIGUSR1);
            String verify = awaitLine(log, "VERIFY ", 30_000);
            awaitLine(log, "HEARTBEAT " + (beatAtEnd + 2), 10_000);
            say("verify    %s; heartbeat went on from %d to past %d in the same log (pid %d, was %d)", verify, beatAtStart,
                    beatAtEnd + 2, migrated, pid);
            say("report    (%s)", keep ? report : "JSON with --keep");
            out.print(r.table());
            out.flush();
            if (!verify.startsWith("VERIFY OK")) {
                say("demo      FAILED: memtouch found pages that differ from what it wrote");
                return ExitCodes.FAILED;
            }
            say("demo      OK%s", keep ? " (migrated memtouch pid " + migrated + " left running; work dir " + work + ")" : "");
            return ExitCodes.OK;
        } finally {
            if (pid > 0) {
                killQuietly(pid); // gone already unless the migration failed
            }
            if (!keep) {
                if (migrated > 0) {
                    killQuietly(migrated);
                }
                deleteTree(work);
            }
        }
    }

    private Path stub(String name) {
        try {
            return NativeStubs.locate(name, stubsDir);
        } catch (ProcException e) {
            throw new IllegalArgumentException(e.getMessage() + "; build them with ./lp build or pass --stubs-dir", e);
        }
    }

    private void say(String fmt, Object... args) {
        synchronized (this) {
            out.println(String.format(Locale.ROOT, fmt, args));
            out.flush();
        }
    }

    private static void killQuietly(int pid) {
        if (Posix.processExists(pid)) {
            Posix.kill(pid, Posix.SIGKILL);
        }
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // a temporary directory left behind is harmless
        }
    }

    private static String awaitLine(Path log, String prefix, long timeoutMillis) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + timeoutMillis * 1_000_000;
        while (System.nanoTime() - deadline < 0) {
            if (Files.exists(log)) {
                try (Stream<String> lines = Files.lines(log)) {
                    var hit = lines.filter(l -> l.startsWith(prefix)).findFirst();
                    if (hit.isPresent()) {
                        return hit.get();
                    }
                }
            }
            Thread.sleep(20);
        }
        throw new IllegalStateException("memtouch did not print '" + prefix + "' within " + timeoutMillis + " ms (log " + log + ")");
    }

    private static long lastHeartbeat(Path log) throws IOException {
        try (Stream<String> lines = Files.lines(log)) {
            return lines.filter(l -> l.startsWith("HEARTBEAT ")).mapToLong(l -> Long.parseLong(l.substring(10).trim())).max().orElse(0);
        }
    }
}
