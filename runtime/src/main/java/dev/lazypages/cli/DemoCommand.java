package dev.lazypages.cli;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.DumpResult;
import dev.lazypages.dump.Dumper;
import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.lazy.LazyStats;
import dev.lazypages.proc.NativeStubs;
import dev.lazypages.proc.ProcException;
import dev.lazypages.restore.ImageLazyHandoff;
import dev.lazypages.restore.Restorer;
import java.io.IOException;
import java.io.PrintWriter;
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
 * {@code demo}: the bundled workload (memtouch) checkpointed while it runs and brought back
 * lazily, in one command: dump (the process is frozen only for the dump and then ends), restore
 * with {@code --lazy} (the process runs at once; userfaultfd serves its pages from the image,
 * a background thread fills the rest), then memtouch checks every page itself and its
 * heartbeat goes on in the same log. The network version replaces this once the page server
 * and the migration daemon land (see README).
 */
@Command(name = "demo", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "Checkpoints the bundled workload while it runs and restores it lazily, then has it verify itself.",
            "",
            "Starts memtouch (a workload whose every page carries its index, version and checksum, and that "
                    + "rewrites pages while it runs), dumps it to an image directory (it is frozen only for the "
                    + "dump), restores it with --lazy (it runs at once; each page comes from the image on first "
                    + "touch, a background thread fills the rest), and asks it to verify every page (SIGUSR1). "
                    + "Network migration (pre-copy, post-copy, hybrid) will replace this when it lands."
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

    @Option(names = "--eager", description = "Restore eagerly (every page written before the process runs) instead of lazily.")
    private boolean eager;

    @Option(names = "--stubs-dir", description = "Where memtouch and lp-stub are (default: native-stubs/target/bin next to the jar, or $LAZYPAGES_STUBS_DIR).")
    private Path stubsDir;

    @Option(names = "--keep", description = "Keep the image directory and leave the restored memtouch running.")
    private boolean keep;

    private PrintWriter out;

    @Override
    public Integer call() throws Exception {
        out = spec.commandLine().getOut();
        if (sizeMib < 1 || threads < 1 || dirtyRate < 0) {
            throw new IllegalArgumentException("--size-mib and --threads must be at least 1, --dirty-mib-per-sec at least 0");
        }
        Features.ptrace().ensureAvailable();
        Features.userfaultfd().ensureAvailable();
        Path memtouch = stub("memtouch");
        Path lpStub = stub(NativeStubs.LP_STUB);
        Path work = Files.createTempDirectory("lazy-pages-demo");
        Path log = work.resolve("memtouch.log");
        Path images = work.resolve("images");
        int pid = Features.spawnDetachedWithLog(log, memtouch.toString(), "--size-mib", Integer.toString(sizeMib),
                "--threads", Integer.toString(threads), "--dirty-mib-per-sec", Integer.toString(dirtyRate));
        int restored = -1;
        try {
            awaitLine(log, "HEARTBEAT 2", 30_000);
            say("workload  memtouch pid %d: %d MiB, %d threads rewriting %d MiB/s (log %s)", pid, sizeMib, threads, dirtyRate, log);

            DumpResult d = Dumper.dump(pid, DumpOptions.of(images));
            say("dump      %d threads, %d VMAs, %.1f MiB stored; frozen %d ms, %d ms in all -> %s", d.threads(), d.vmas(),
                    d.bytesStored() / 1048576.0, d.frozenMillis(), d.totalMillis(), images);
            long beatAtDump = lastHeartbeat(log);

            ImageLazyHandoff lazy = eager ? null : new ImageLazyHandoff();
            Restorer.Options opts = Restorer.Options.eager(images).withStub(lpStub);
            if (lazy != null) {
                opts = opts.withLazy(lazy);
            }
            Restorer.Result r = Restorer.restore(opts);
            restored = r.pid();
            say("restore   pid %d running after %d ms (%s, %.1f MiB written before it ran)", r.pid(), r.millis(),
                    eager ? "eager" : "lazy", r.bytesWritten() / 1048576.0);
            if (lazy != null) {
                LazyStats s = lazy.completion().join();
                say("lazy      every page in after %d ms: %d faults served (%d from the image, %d zero pages), fault "
                                + "service p50 %.1f µs, p99 %.1f µs; background %d pages at %.0f MiB/s",
                        s.timeToCompletion().toMillis(), s.faults(), s.faultsCopied(), s.zeroPages(), s.copyMicros(50),
                        s.copyMicros(99), s.pagesByBackground(), s.backgroundMiBps());
            }

            Posix.kill(restored, Posix.SIGUSR1);
            String verify = awaitLine(log, "VERIFY ", 30_000);
            awaitLine(log, "HEARTBEAT " + (beatAtDump + 2), 5_000);
            say("verify    %s; heartbeat went on from %d in the same log", verify, beatAtDump);
            if (!verify.startsWith("VERIFY OK")) {
                say("demo      FAILED: memtouch found pages that differ from what it wrote");
                return ExitCodes.FAILED;
            }
            say("demo      OK%s", keep ? " (restored memtouch pid " + restored + " left running; image in " + images + ")" : "");
            return ExitCodes.OK;
        } finally {
            killQuietly(pid); // the dump ended it already unless it failed first
            if (!keep) {
                if (restored > 0) {
                    killQuietly(restored);
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
        out.println(String.format(Locale.ROOT, fmt, args));
        out.flush();
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
