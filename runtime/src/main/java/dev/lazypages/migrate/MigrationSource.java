package dev.lazypages.migrate;

import dev.lazypages.dump.ConvergencePolicy;
import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.dump.FrozenProcess;
import dev.lazypages.dump.PreCopySession;
import dev.lazypages.dump.PreDumpResult;
import dev.lazypages.dump.Trackings;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HexFormat;
import java.util.Locale;
import java.util.Objects;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;

/**
 * The source side of a live migration, one process to one destination daemon:
 *
 * <ol>
 *   <li>gather the pre-check facts from /proc (the process is not touched), connect, handshake
 *       (token and protocol), send PrecheckRequest; a refusal ends here, the process untouched;</li>
 *   <li>pre-copy and hybrid: seize the process, copy rounds while it runs (a pre-dump per round
 *       into a local directory, sent as is: the destination keeps the chain with the same names),
 *       until the {@link ConvergencePolicy} says stop;</li>
 *   <li>freeze: a lazy final dump (pages dirty since the last round, or every page in post-copy,
 *       are recorded REMOTE and stay in the frozen process), start the page server on the control
 *       connection's local address, send the final directory and RestoreRequest;</li>
 *   <li>wait for Running; Failed, a timeout or a lost connection before it roll back: the page
 *       server stops and the process is thawed and detached, running on as before;</li>
 *   <li>Running: Commit, serve pages until the destination has every one (PostCopyDone, its
 *       client's DONE, or the connection gone), then kill the frozen original.</li>
 * </ol>
 *
 * Pre-copy mode uses the same lazy final dump (so that the process stays frozen, and can be
 * resumed, until the destination confirms): the destination restores eagerly, fetching every
 * REMOTE page from the page server before the process runs.
 */
public final class MigrationSource {
    /** Name of the final image directory, on both sides. */
    public static final String FINAL = "final";
    /** Round number of the final directory on the wire. */
    static final int FINAL_ROUND = 0;

    /**
     * How to migrate.
     *
     * @param mode            pre-copy, post-copy or hybrid
     * @param limits          when pre-copy rounds stop
     * @param trackMem        dirty tracker (auto, pagemap-scan, soft-dirty, none)
     * @param token           the shared secret the destination daemon expects
     * @param report          where to write the JSON report (and the .hgrm beside it), or null
     * @param fault           fault injection step (tests)
     * @param connectTimeout  connection and handshake
     * @param replyTimeout    each reply: pre-check, Running after the restore request
     * @param postCopyTimeout Running → every page delivered
     * @param progress        one line per step, for a terminal; never null
     * @param workDir         where round images are written (a temporary directory when null); removed at the end
     */
    public record Options(MigrationMode mode, ConvergencePolicy.Limits limits, String trackMem, String token, Path report,
                          FaultStep fault, Duration connectTimeout, Duration replyTimeout, Duration postCopyTimeout,
                          Consumer<String> progress, Path workDir) {
        public Options {
            Objects.requireNonNull(mode, "mode");
            Objects.requireNonNull(limits, "limits");
            trackMem = trackMem != null ? trackMem : Trackings.AUTO;
            token = token != null ? token : "";
            fault = fault != null ? fault : FaultStep.NONE;
            connectTimeout = connectTimeout != null ? connectTimeout : Duration.ofSeconds(10);
            replyTimeout = replyTimeout != null ? replyTimeout : Duration.ofSeconds(120);
            postCopyTimeout = postCopyTimeout != null ? postCopyTimeout : Duration.ofMinutes(30);
            progress = progress != null ? progress : line -> { };
        }

        /** Hybrid, default convergence limits, auto tracker, no token, no report. */
        public static Options defaults() {
            return new Options(MigrationMode.HYBRID, ConvergencePolicy.Limits.defaults(), null, null, null, null, null, null,
                    null, null, null);
        }

        public Options withMode(MigrationMode m) {
            return new Options(m, limits, trackMem, token, report, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir);
        }

        public Options withLimits(ConvergencePolicy.Limits l) {
            return new Options(mode, l, trackMem, token, report, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir);
        }

        public Options withTrackMem(String t) {
            return new Options(mode, limits, t, token, report, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir);
        }

        public Options withToken(String t) {
            return new Options(mode, limits, trackMem, t, report, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir);
        }

        public Options withReport(Path r) {
            return new Options(mode, limits, trackMem, token, r, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir);
        }

        public Options withFault(FaultStep f) {
            return new Options(mode, limits, trackMem, token, report, f, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir);
        }

        public Options withReplyTimeout(Duration d) {
            return new Options(mode, limits, trackMem, token, report, fault, connectTimeout, d, postCopyTimeout, progress, workDir);
        }

        public Options withProgress(Consumer<String> p) {
            return new Options(mode, limits, trackMem, token, report, fault, connectTimeout, replyTimeout, postCopyTimeout, p, workDir);
        }

        public Options withWorkDir(Path w) {
            return new Options(mode, limits, trackMem, token, report, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, w);
        }
    }

    /** Opens the control connection (a seam for tests). */
    interface Connector {
        Link connect(InetSocketAddress target, String token, String migrationId, Duration timeout) throws IOException;
    }

    private final int pid;
    private final Options o;
    private final MigrationReport rep = new MigrationReport();
    private final long t0 = System.nanoTime();
    private String step = "pre-check facts";

    private MigrationSource(int pid, Options o) {
        this.pid = pid;
        this.o = o;
    }

    /**
     * Migrates {@code pid} to the daemon at {@code target}.
     *
     * @return the report (also written to {@link Options#report} when set)
     * @throws MigrationException the migration did not happen ({@link MigrationException#sourceRunning()}: the process runs on)
     * @throws IllegalArgumentException no such process, bad options
     * @throws UnsupportedOperationException this machine lacks what the mode needs
     */
    public static MigrationReport run(int pid, InetSocketAddress target, Options options) {
        return run(pid, target, options, NetLink::connect, new NetPagePlane());
    }

    static MigrationReport run(int pid, InetSocketAddress target, Options options, Connector connector, PagePlane plane) {
        return new MigrationSource(pid, options).go(target, connector, plane);
    }

    private void say(String fmt, Object... args) {
        o.progress().accept(String.format(Locale.ROOT, fmt, args));
    }

    private MigrationReport go(InetSocketAddress target, Connector connector, PagePlane plane) {
        String id = HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextLong()).substring(0, 12);
        rep.side = "source";
        rep.migrationId = id;
        rep.mode = o.mode();
        rep.sourcePid = pid;
        try {
            HostFacts facts = Prechecks.ofSource(pid, o.mode());
            java.util.List<String> local = Prechecks.sourceProblems(facts, o.mode());
            if (!local.isEmpty()) {
                throw new UnsupportedOperationException(String.join("; ", local));
            }
            step = "connect to " + target;
            try (Link link = connector.connect(target, o.token(), id, o.connectTimeout())) {
                say("connected to %s (migration %s, %s)", target, id, o.mode());
                o.fault().check(FaultStep.AFTER_HANDSHAKE);
                step = "pre-check";
                link.send(new Msg.PrecheckRequest(o.mode(), facts, Prechecks.neededAtDestination(o.mode())));
                Msg.PrecheckReply reply = expect(link, Msg.PrecheckReply.class, o.replyTimeout(), step);
                if (!reply.differences().isEmpty()) {
                    rep.outcome = "refused";
                    throw new MigrationException.Refused(reply.differences());
                }
                say("pre-checks passed (%d files checked)", facts.files().size());
                o.fault().check(FaultStep.AFTER_PRECHECK);
                migrate(link, plane);
            }
            rep.outcome = "migrated";
            return rep;
        } catch (MigrationException e) {
            if (rep.outcome.equals("unknown")) {
                rep.outcome = e.sourceRunning() ? "rolled-back" : "failed";
            }
            rep.error = e.getMessage();
            throw e;
        } catch (IOException | TimeoutException | RuntimeException e) {
            boolean running = !rep.outcome.equals("committed");
            rep.outcome = running ? "rolled-back" : "failed";
            rep.error = message(e);
            throw new MigrationException(step, message(e), running, e);
        } finally {
            rep.totalMs = (System.nanoTime() - t0) / 1e6;
            writeReport();
        }
    }

    private void writeReport() {
        if (o.report() == null) {
            return;
        }
        try {
            rep.write(o.report());
        } catch (IOException e) {
            o.progress().accept("could not write the report to " + o.report() + ": " + e.getMessage());
        }
    }

    static String message(Throwable e) {
        String m = e.getMessage();
        return m != null && !m.isBlank() ? m : e.getClass().getSimpleName();
    }

    private void migrate(Link link, PagePlane plane) throws IOException, TimeoutException {
        Path work = o.workDir() != null ? Files.createDirectories(o.workDir().resolve(rep.migrationId))
                : Files.createTempDirectory("lazy-pages-migrate-");
        try {
            if (o.mode().preCopies()) {
                step = "pre-copy";
                try (PreCopySession s = PreCopySession.start(pid, o.trackMem(), line -> { })) {
                    rep.tracker = s.tracker();
                    s.durable(false); // rounds are disposable: sent at once, useless after a crash
                    preCopy(s, link, work);
                    step = "freeze and final dump";
                    link.send(new Msg.Freeze());
                    long freezeAt = System.nanoTime();
                    FrozenProcess f = s.finalDumpLazy(finalOptions(work));
                    handOver(f, freezeAt, link, plane, work);
                }
            } else {
                rep.stopReason = "post-copy";
                step = "freeze and final dump";
                link.send(new Msg.Freeze());
                long freezeAt = System.nanoTime();
                FrozenProcess f = Dumper.dumpLazy(pid, finalOptions(work));
                rep.tracker = "none";
                handOver(f, freezeAt, link, plane, work);
            }
        } finally {
            deleteTree(work);
        }
    }

    private DumpOptions finalOptions(Path work) {
        return DumpOptions.of(work.resolve(FINAL)).withTrackMem(o.trackMem()).withProgress(l -> { if (l.startsWith("frozen window")) say("%s", l); });
    }

    private void preCopy(PreCopySession s, Link link, Path work) throws IOException {
        ConvergencePolicy policy = new ConvergencePolicy(o.limits(), s.pageSize());
        int n = 1;
        while (true) {
            long r0 = System.nanoTime();
            Link.RoundOut out = link.startRound(n, Integer.toString(n));
            PreDumpResult r = s.preDump(work.resolve(Integer.toString(n)), out.pages());
            long r1 = System.nanoTime();
            long sent = out.finish(r.imagesDir());
            long r2 = System.nanoTime();
            double ms = (r2 - r0) / 1e6;
            rep.phase("round " + n + " dump", (r1 - r0) / 1e6);
            rep.phase("round " + n + " copy", r.copyNanos() / 1e6);
            rep.phase("round " + n + " send", (r2 - r1) / 1e6);
            MigrationReport.Round round = new MigrationReport.Round(n, r.pagesStored(), r.bytesStored(), ms, r.dirtyRate(),
                    r.dirtyRate() * s.pageSize() / 1048576.0);
            rep.addRound(round);
            policy.recordRound(r.toRound());
            say("round %d: %d pages, %.1f MiB, %.0f ms, %.1f MiB/s (dirty %.1f MiB/s, %d bytes on the wire; dump %.0f ms of which "
                    + "copy %.0f, send %.0f ms)", n, r.pagesStored(), r.bytesStored() / 1048576.0, ms,
                    ms > 0 ? r.bytesStored() / 1048576.0 / (ms / 1000) : 0, round.dirtyMiBps(), sent, (r1 - r0) / 1e6,
                    r.copyNanos() / 1e6, (r2 - r1) / 1e6);
            if (n == 1) {
                o.fault().check(FaultStep.AFTER_FIRST_ROUND);
            }
            PreCopySession.Collect c = s.collect();
            ConvergencePolicy.Decision d = policy.decide(c.pendingPages());
            if (d.stop()) {
                rep.stopReason = d.reason();
                rep.stopDetail = d.detail();
                say("pre-copy stops after %d round(s): %s (%s)", n, d.reason(), d.detail());
                return;
            }
            n++;
            // the previous round's files are referenced by the next image only as its parent's name: keep them
        }
    }

    /** Freeze done: serve, send, wait for Running (or roll back), commit, serve until done, kill. */
    private void handOver(FrozenProcess f, long freezeAt, Link link, PagePlane plane, Path work)
            throws IOException, TimeoutException {
        PagePlane.Server server = null;
        step = "hand over to the destination";
        try {
            rep.pagesRemote = f.remote().pageCount();
            say("frozen: final image in %.1f ms, %d pages left at the source (%.1f MiB)", f.dump().frozenNanos() / 1e6,
                    rep.pagesRemote, rep.pagesRemote * (double) f.pageSize() / 1048576.0);
            o.fault().check(FaultStep.AFTER_FREEZE);
            long h0 = System.nanoTime();
            rep.phase("freeze: final dump", f.dump().frozenNanos() / 1e6);
            rep.phase("freeze: to hand-over", (h0 - freezeAt) / 1e6);
            server = plane.serve(link.localAddress(), f, o.token());
            long h1 = System.nanoTime();
            rep.phase("freeze: page server", (h1 - h0) / 1e6);
            rep.bytesFinal = link.sendDirectory(FINAL_ROUND, f.imagesDir());
            link.send(new Msg.RestoreRequest(true, server.port(), FINAL));
            long h2 = System.nanoTime();
            rep.phase("freeze: send final", (h2 - h1) / 1e6);
            o.fault().check(FaultStep.AFTER_RESTORE_REQUEST);
            Msg m = awaitRunning(link);
            rep.phase("freeze: wait Running", (System.nanoTime() - h2) / 1e6);
            if (m instanceof Msg.Failed failed) {
                throw new MigrationException("restore at the destination (" + failed.step() + ")", failed.message(), true, null);
            }
            Msg.Running running = (Msg.Running) m;
            rep.downtimeMs = (System.nanoTime() - freezeAt) / 1e6;
            if (!o.mode().lazy()) {
                // pre-copy: the destination fetched every REMOTE page before the process ran
                rep.bytesFinal += rep.pagesRemote * f.pageSize();
            }
            rep.destinationPid = running.pid();
            rep.restoreMs = running.restoreMs();
            running.phasesMs().forEach((k, v) -> rep.phase("dest: " + k, v));
        } catch (IOException | TimeoutException | RuntimeException e) {
            // before Running: roll back
            if (server != null) {
                server.close();
            }
            try {
                link.send(new Msg.Abort(message(e)));
            } catch (IOException | RuntimeException ignored) {
                // the connection may be what failed
            }
            f.resume();
            rep.frozenMs = f.frozenNanos() / 1e6;
            say("rolled back: pid %d runs on at the source (%s)", pid, message(e));
            if (e instanceof MigrationException me) {
                throw me;
            }
            throw new MigrationException("hand over to the destination", message(e), true, e);
        }
        rep.outcome = "committed";
        say("running at the destination as pid %d: downtime %.1f ms (restore %.0f ms there)", rep.destinationPid,
                rep.downtimeMs, rep.restoreMs);
        step = "post-copy";
        try {
            link.send(new Msg.Commit());
            awaitPostCopy(link, server);
        } finally {
            f.commitAndKill();
            rep.frozenMs = f.frozenNanos() / 1e6;
            rep.serveLatency = server.serveLatency();
            server.close();
        }
    }

    private Msg awaitRunning(Link link) throws IOException, TimeoutException {
        long deadline = System.nanoTime() + o.replyTimeout().toNanos();
        while (true) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new TimeoutException("no Running from the destination within " + o.replyTimeout().toSeconds() + " s");
            }
            Msg m = link.receive(Duration.ofNanos(left), null);
            if (m instanceof Msg.Running || m instanceof Msg.Failed) {
                return m;
            }
            if (!(m instanceof Msg.Ping)) {
                throw new IOException("unexpected " + m.getClass().getSimpleName() + " while waiting for Running");
            }
        }
    }

    /** Serves until the destination reports every page in (or goes away); fills the post-copy part of the report. */
    private void awaitPostCopy(Link link, PagePlane.Server server) {
        long deadline = System.nanoTime() + o.postCopyTimeout().toNanos();
        try {
            while (true) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    say("no PostCopyDone within %d s: ending the source copy", o.postCopyTimeout().toSeconds());
                    return;
                }
                Msg m = link.receive(Duration.ofNanos(left), null);
                if (m instanceof Msg.PostCopyDone d) {
                    rep.faults = d.faults();
                    rep.bytesPostcopy = d.bytes();
                    rep.postcopyMs = d.durationMs();
                    rep.backgroundMiBps = d.backgroundMiBps();
                    rep.faultLatency = d.faultLatency();
                    say("destination has every page: %d faults, %.1f MiB after the process ran, in %d ms", d.faults(),
                            d.bytes() / 1048576.0, d.durationMs());
                    return;
                }
                if (m instanceof Msg.Failed failed) {
                    say("destination: %s failed: %s", failed.step(), failed.message());
                    return;
                }
            }
        } catch (IOException | TimeoutException e) {
            // the destination is gone (its process exited, or the daemon): nothing more to serve
            if (!server.done().isDone()) {
                say("destination went away before it had every page (%s)", message(e));
            }
        }
    }

    private <T extends Msg> T expect(Link link, Class<T> type, Duration timeout, String step) throws IOException, TimeoutException {
        while (true) {
            Msg m = link.receive(timeout, null);
            if (type.isInstance(m)) {
                return type.cast(m);
            }
            if (m instanceof Msg.Failed f) {
                throw new MigrationException(step + " (" + f.step() + ")", f.message(), true, null);
            }
            if (!(m instanceof Msg.Ping)) {
                throw new IOException("expected " + type.getSimpleName() + ", got " + m.getClass().getSimpleName());
            }
        }
    }

    static void deleteTree(Path dir) {
        if (dir == null || !Files.exists(dir)) {
            return;
        }
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            });
        } catch (IOException | UncheckedIOException e) {
            // a temporary directory left behind is harmless
        }
    }
}
