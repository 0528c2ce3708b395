package dev.lazypages.migrate;

import dev.lazypages.dump.ConvergencePolicy;
import dev.lazypages.ffm.testing.Requires;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;

/**
 * What the in-process migration tests share: daemons on loopback writing their reports under a
 * test's temporary directory, memtouch workloads, source options, every progress line of both
 * sides in {@link #log}; {@link #close()} ends them all and kills a migrated copy a failed test
 * left running.
 */
final class MigrationRig implements AutoCloseable {
    /** Every progress line: the daemons' as they are, the source's prefixed "source: ". */
    final List<String> log = Collections.synchronizedList(new ArrayList<>());
    private final Path tmp;
    private final List<AutoCloseable> cleanup = new ArrayList<>();
    private final List<ServeDaemon> daemons = new ArrayList<>();

    /** Root, ptrace and userfaultfd, or the test is skipped (fails in CI). */
    MigrationRig(Path tmp) {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
        this.tmp = tmp;
    }

    /**
     * A daemon on 127.0.0.1 (60 s idle, 120 s post-copy timeouts); {@code stub}, {@code hook},
     * {@code recoverTimeout}, {@code fault} and {@code progress} may each be null (the defaults).
     */
    ServeDaemon daemon(Path stub, UnaryOperator<HostFacts> hook, Duration recoverTimeout, DestinationFault fault,
                       Consumer<String> progress) throws IOException {
        MigrationDestination.Options d = new MigrationDestination.Options(tmp.resolve("dest"), stub, tmp.resolve("reports"),
                false, null, Duration.ofSeconds(60), Duration.ofSeconds(120), hook, null, line -> {
                    log.add(line);
                    if (progress != null) {
                        progress.accept(line);
                    }
                }, recoverTimeout, fault);
        ServeDaemon s = closeLater(ServeDaemon.start(new ServeDaemon.Options(new InetSocketAddress("127.0.0.1", 0), null, d)));
        daemons.add(s);
        return s;
    }

    Memtouch memtouch(int mib, int threads, int rate) {
        return closeLater(Memtouch.start(mib, threads, rate));
    }

    <T extends AutoCloseable> T closeLater(T c) {
        cleanup.add(c);
        return c;
    }

    /** {@code mode} to daemon {@code d} (its token; none without), 5 rounds at most, goal 70 %, progress into {@link #log}. */
    MigrationSource.Options options(ServeDaemon d, MigrationMode mode) {
        return MigrationSource.Options.defaults().withMode(mode).withToken(d != null ? d.token() : null)
                .withLimits(new ConvergencePolicy.Limits(5, 70, 0)).withReport(tmp.resolve("source-report.json"))
                .withProgress(line -> log.add("source: " + line));
    }

    @Override
    public void close() throws Exception {
        for (AutoCloseable c : cleanup.reversed()) {
            c.close();
        }
        for (ServeDaemon d : daemons) {
            for (MigrationReport r : d.reports()) {
                try {
                    if (r.destinationPid > 0 && Memtouch.alive(r.destinationPid)
                            && Files.readSymbolicLink(Path.of("/proc/" + r.destinationPid + "/exe")).toString().endsWith("memtouch")) {
                        MigrationDestination.kill(r.destinationPid); // a migrated copy a failed test left behind
                    }
                } catch (IOException gone) {
                    // exited meanwhile
                }
            }
        }
    }
}
