package dev.lazypages.migrate;

import dev.lazypages.net.ControlConnection;
import dev.lazypages.net.ControlServer;
import dev.lazypages.net.proto.Role;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantLock;

/**
 * {@code lazy-pages serve}: listens for migrations and runs them one after another (a second
 * source waits until the first migration ends), each with a {@link MigrationDestination} in
 * {@code workDir/<migration-id>}. Runs until {@link #close}.
 */
public final class ServeDaemon implements AutoCloseable {
    /**
     * @param listen      address and port to listen on (port 0: any)
     * @param token       shared secret; null or empty: a random one is generated ({@link #token()})
     * @param destination how each migration is received (its token is replaced by this daemon's)
     */
    public record Options(InetSocketAddress listen, String token, MigrationDestination.Options destination) {
        public Options {
            Objects.requireNonNull(listen, "listen");
            Objects.requireNonNull(destination, "destination");
        }
    }

    /**
     * How many reports {@link #reports()} keeps: a daemon may run for months, and each report
     * holds its latency histograms (tens of KiB), so older ones are dropped (they are in
     * {@code --report-dir} when it is set).
     */
    public static final int REPORTS_KEPT = 16;

    private final ControlServer server;
    private final String token;
    private final boolean generated;
    private final MigrationDestination.Options dest;
    private final ReentrantLock oneAtATime = new ReentrantLock(true);
    private final ArrayDeque<MigrationReport> reports = new ArrayDeque<>();
    private long ended;
    private final java.util.Set<NetLink> active = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private volatile boolean closed;

    private ServeDaemon(Options o, String token, boolean generated) throws IOException {
        this.token = token;
        this.generated = generated;
        MigrationDestination.Options d = o.destination();
        this.dest = new MigrationDestination.Options(d.workDir(), d.stub(), d.reportDir(), d.keepWorkDir(), token,
                d.idleTimeout(), d.postCopyTimeout(), d.precheckHook(), d.files(), d.progress(), d.recoverTimeout(), d.fault());
        Files.createDirectories(dest.workDir());
        this.server = ControlServer.listen(o.listen(), NetLink.hello(Role.DESTINATION, token, ""), this::accepted);
    }

    /** Binds and starts accepting. */
    public static ServeDaemon start(Options o) throws IOException {
        boolean gen = o.token() == null || o.token().isEmpty();
        String t = gen ? randomToken() : o.token();
        return new ServeDaemon(o, t, gen);
    }

    /** 128 random bits in hex. */
    public static String randomToken() {
        byte[] b = new byte[16];
        new SecureRandom().nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    public InetSocketAddress address() {
        return server.localAddress();
    }

    public String token() {
        return token;
    }

    /** Whether {@link #token()} was generated (and should be shown to whoever starts the source). */
    public boolean tokenGenerated() {
        return generated;
    }

    private void accepted(ControlConnection c) {
        NetLink link = new NetLink(c);
        active.add(link);
        if (closed) {
            link.close();
            active.remove(link);
            return;
        }
        oneAtATime.lock();
        try (link) {
            String id = c.peerHello().getMigrationId();
            dest.progress().accept("migration " + id + " from " + c.remoteAddress());
            MigrationReport r = MigrationDestination.handle(link, id, dest);
            dest.progress().accept("migration " + r.migrationId + ": " + r.outcome + (r.error != null ? " (" + r.error + ")" : ""));
            synchronized (reports) {
                reports.addLast(r);
                if (reports.size() > REPORTS_KEPT) {
                    reports.removeFirst();
                }
                ended++;
                reports.notifyAll();
            }
        } finally {
            active.remove(link);
            oneAtATime.unlock();
        }
    }

    /** The reports of the last {@link #REPORTS_KEPT} migrations handled, oldest first. */
    public List<MigrationReport> reports() {
        synchronized (reports) {
            return List.copyOf(reports);
        }
    }

    /** Waits until {@code n} migrations have ended; returns the reports kept ({@link #reports()}). */
    public List<MigrationReport> awaitReports(int n, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        synchronized (reports) {
            while (ended < n) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new IllegalStateException(ended + " of " + n + " migrations ended within " + timeout);
                }
                reports.wait(Math.max(1, left / 1_000_000));
            }
            return List.copyOf(reports);
        }
    }

    /** Stops listening; a migration in progress loses its connection. */
    @Override
    public void close() {
        closed = true;
        // close the connections while their event loop still runs (its shutdown leaves them open)
        for (NetLink l : active) {
            l.close();
        }
        server.close();
    }
}
