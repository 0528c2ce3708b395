package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.dump.FrozenProcess;
import dev.lazypages.lazy.LazySource;
import dev.lazypages.net.CuttingProxy;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.function.LongPredicate;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 7 points 1 and 2 through the whole migration: the page connections between the
 * destination and the source's page server go through a {@link CuttingProxy}, which resets them
 * in the middle of post-copy (the migration recovers and verifies) or resets them and refuses
 * every reconnection (the source cannot be reached: the destination kills its copy after the
 * recover timeout, reports why, and the daemon takes the next migration).
 */
class PostCopyRecoveryTest {
    @TempDir
    Path tmp;
    private MigrationRig rig;
    private List<String> log;
    private volatile Runnable onRunning;

    @BeforeEach
    void needs() {
        rig = new MigrationRig(tmp);
        log = rig.log;
    }

    @AfterEach
    void closeAll() throws Exception {
        rig.close();
    }

    /** The real page plane, with a proxy in front of the source's page server. */
    static final class ProxiedPlane implements PagePlane {
        private final NetPagePlane net = new NetPagePlane();
        final CompletableFuture<CuttingProxy> proxy = new CompletableFuture<>();
        private final LongPredicate cutWhen;

        ProxiedPlane(LongPredicate cutWhen) {
            this.cutWhen = cutWhen;
        }

        @Override
        public Server serve(InetAddress bind, java.util.function.Supplier<FrozenProcess> frozen, String token) throws IOException {
            Server s = net.serve(bind, frozen, token);
            CuttingProxy p = new CuttingProxy(new InetSocketAddress(bind, s.port()));
            p.cutWhen(cutWhen);
            proxy.complete(p);
            return s.fronted(p.address().getPort(), p::close);
        }

        @Override
        public Client connect(InetSocketAddress server, String token, List<LazySource.Run> runs, Duration recoverTimeout)
                throws IOException {
            return net.connect(server, token, runs, recoverTimeout);
        }
    }

    private ServeDaemon daemon(Duration recoverTimeout) throws IOException {
        return rig.daemon(null, null, recoverTimeout, null, line -> {
            Runnable r = onRunning;
            if (r != null && line.contains("running as pid")) {
                onRunning = null;
                r.run();
            }
        });
    }

    private Memtouch memtouch(int mib) {
        return rig.memtouch(mib, 2, 8);
    }

    private MigrationSource.Options options(ServeDaemon d) {
        return rig.options(d, MigrationMode.POST_COPY);
    }

    @Test
    void pageConnectionsCutInTheMiddleOfPostCopyReconnectAndTheProcessVerifies() throws Exception {
        ServeDaemon d = daemon(Duration.ofSeconds(30));
        Memtouch m = memtouch(256);
        long beats = m.beats();
        int before = m.pid;
        ProxiedPlane plane = new ProxiedPlane(bytes -> bytes > 64L << 20); // a quarter of the way through
        MigrationReport r = MigrationSource.run(before, d.address(), options(d), NetLink::connect, plane);
        CuttingProxy proxy = plane.proxy.getNow(null);
        System.out.println("cut mid post-copy: " + r.toJson() + "\n" + String.join("\n", log));
        assertEquals("migrated", r.outcome, r.toJson());
        assertEquals(1, proxy.cuts(), "the page connections were cut once");
        assertTrue(proxy.accepted() >= 4, "the destination came back: " + proxy.accepted() + " connections");
        m.pid = r.destinationPid;
        Memtouch.awaitGone(before);
        m.assertVerifies();
        m.awaitCount(l -> l.startsWith("HEARTBEAT "), beats + 2);
        MigrationReport dest = d.awaitReports(1, Duration.ofSeconds(60)).getFirst();
        assertEquals("migrated", dest.outcome, dest.toJson());
    }

    @Test
    void aSourceUnreachableForLongerThanTheRecoverTimeoutKillsTheRestoredCopyAndTheDaemonGoesOn() throws Exception {
        ServeDaemon d = daemon(Duration.ofSeconds(2));
        Memtouch m = memtouch(256);
        int before = m.pid;
        ProxiedPlane plane = new ProxiedPlane(bytes -> false);
        onRunning = () -> { // the process runs at the destination: from now on the source cannot be reached
            CuttingProxy p = plane.proxy.join();
            p.refuse(true);
            p.cutAll();
        };
        long t0 = System.nanoTime();
        // the destination kills its copy and reports Failed over the control connection, which still works: the
        // source resumes its frozen original, which is complete (exactly one copy runs)
        MigrationException e = assertThrows(MigrationException.class,
                () -> MigrationSource.run(before, d.address(), options(d), NetLink::connect, plane));
        assertTrue(e.sourceRunning(), e.getMessage());
        MigrationReport dest = d.awaitReports(1, Duration.ofSeconds(60)).getFirst();
        double s = (System.nanoTime() - t0) / 1e9;
        System.out.println("source unreachable: " + dest.toJson() + "\n" + String.join("\n", log));
        assertEquals("failed-after-commit", dest.outcome, dest.toJson());
        assertTrue(dest.error.contains("not recovered within the recover timeout of 2000 ms"), dest.error);
        assertTrue(dest.error.contains("killed restored pid " + dest.destinationPid), dest.error);
        assertTrue(log.stream().anyMatch(l -> l.contains("killed restored pid " + dest.destinationPid)), String.join("\n", log));
        Memtouch.awaitGone(dest.destinationPid);
        assertTrue(s < 60, "nothing hangs: " + s + " s");
        assertEquals(before, m.pid, "the original runs on");
        m.assertVerifies();

        // the daemon takes the next migration
        Memtouch next = memtouch(32);
        int nextPid = next.pid;
        MigrationReport r = MigrationSource.run(nextPid, d.address(), options(d));
        assertEquals("migrated", r.outcome, r.toJson());
        next.pid = r.destinationPid;
        next.assertVerifies();
    }
}
