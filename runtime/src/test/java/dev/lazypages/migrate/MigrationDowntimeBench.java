package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.lazypages.dump.ConvergencePolicy;
import dev.lazypages.ffm.testing.Requires;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;

/**
 * Downtime per mode over loopback for memtouch of 256 MiB and 1 GiB (2 threads, 8 MiB/s),
 * after one warm-up migration: {@code -Dtest=MigrationDowntimeBench -Dlp.bench=true}.
 */
@EnabledIfSystemProperty(named = "lp.bench", matches = "true")
class MigrationDowntimeBench {
    @TempDir
    Path tmp;

    @Test
    void downtimePerMode() throws Exception {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
        MigrationDestination.Options d = new MigrationDestination.Options(tmp.resolve("dest"), null, null, false, null, null,
                null, null, null, null);
        StringBuilder out = new StringBuilder(String.format(Locale.ROOT, "%-10s %6s %12s %7s %10s %10s %9s %9s %9s%n", "mode", "MiB",
                "downtime ms", "rounds", "pre MiB", "post MiB", "faults", "p99 us", "total ms"));
        try (ServeDaemon s = ServeDaemon.start(new ServeDaemon.Options(new InetSocketAddress("127.0.0.1", 0), null, d))) {
            boolean warm = false;
            for (int mib : new int[] {256, 1024}) {
                for (MigrationMode mode : MigrationMode.values()) {
                    try (Memtouch m = Memtouch.start(mib, 2, 8)) {
                        m.awaitBeats(1);
                        MigrationSource.Options o = MigrationSource.Options.defaults().withMode(mode).withToken(s.token())
                                .withLimits(ConvergencePolicy.Limits.defaults());
                        if (!warm) {
                            MigrationReport w = MigrationSource.run(m.pid, s.address(), o);
                            m.pid = w.destinationPid;
                            warm = true;
                        }
                        MigrationReport r = MigrationSource.run(m.pid, s.address(), o);
                        assertEquals("migrated", r.outcome);
                        m.pid = r.destinationPid;
                        m.assertVerifies();
                        out.append(String.format(Locale.ROOT, "%-10s %6d %12.1f %7d %10.1f %10.1f %9d %9s %9.0f%n", mode, mib,
                                r.downtimeMs, r.rounds.size(), r.bytesPrecopy / 1048576.0, r.bytesPostcopy / 1048576.0, r.faults,
                                MigrationReport.percentiles(r.faultLatency).get("p99"), r.totalMs));
                    }
                }
            }
        }
        System.out.print(out);
    }
}
