package dev.lazypages.migrate;

import dev.lazypages.dump.ConvergencePolicy;
import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.FreezePrep;
import dev.lazypages.dump.FrozenProcess;
import dev.lazypages.dump.PreCopySession;
import dev.lazypages.dump.PreDumpResult;
import dev.lazypages.dump.Trackings;
import dev.lazypages.image.ImageWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
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
 *   <li>seize the process (it runs on); the page server listens and the destination is told
 *       (PageServerReady: its page client connects while the rounds run); pre-copy and hybrid:
 *       copy rounds while it runs, each streamed while it is read (its pages go from the copier's
 *       buffers to the socket, the destination receives the image directory with the same name),
 *       until the {@link ConvergencePolicy} says stop, then in hybrid mode catch-up rounds while
 *       the dirty set is large ({@link #catchUpRound}); the freeze waits for the destination to
 *       have written the last round into its warm process (RoundApplied, bounded);</li>
 *   <li>before the freeze, everything else that does not need it: a rehearsal of the final dump
 *       (JIT), smaps and the syscall instruction read ({@link FreezePrep});</li>
 *   <li>freeze: a lazy final dump (pages dirty since the last round, or every page in post-copy,
 *       are recorded REMOTE and stay in the frozen process; the dirty tracker stays registered
 *       until the end), send the final directory and RestoreRequest;</li>
 *   <li>wait for Running; Failed, a timeout or a lost connection before Commit roll back: Abort,
 *       and the process is thawed and detached, running on as before;</li>
 *   <li>Running: Commit, serve pages until the destination has every one (PostCopyDone, or its
 *       page client's DONE when the control connection is gone), then end the frozen original
 *       (retried if that fails). A Failed after Commit (the destination's copy could not go on
 *       and was killed) resumes the original instead; with neither within the post-copy
 *       timeout the original is left stopped (SIGSTOP), neither resumed nor killed.</li>
 * </ol>
 *
 * <p>Every step can be made to fail on purpose ({@link FaultStep}, {@code migrate --inject-fault}).
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
     * @param maxPostcopyBandwidth the post-copy background transfer's cap in bytes/s, 0: none; the destination then
     *                        gives its faults way first (LazyPageServer.Options#latencyFirst)
     */
    public record Options(MigrationMode mode, ConvergencePolicy.Limits limits, String trackMem, String token, Path report,
                          FaultStep.At fault, Duration connectTimeout, Duration replyTimeout, Duration postCopyTimeout,
                          Consumer<String> progress, Path workDir, long maxPostcopyBandwidth) {
        public Options {
            if (maxPostcopyBandwidth < 0) {
                throw new IllegalArgumentException("the post-copy bandwidth cap must be >= 0 bytes/s (0: none), not " + maxPostcopyBandwidth);
            }
            Objects.requireNonNull(mode, "mode");
            Objects.requireNonNull(limits, "limits");
            trackMem = trackMem != null ? trackMem : Trackings.AUTO;
            token = token != null ? token : "";
            fault = fault != null ? fault : FaultStep.At.NONE;
            connectTimeout = connectTimeout != null ? connectTimeout : Duration.ofSeconds(10);
            replyTimeout = replyTimeout != null ? replyTimeout : Duration.ofSeconds(120);
            postCopyTimeout = postCopyTimeout != null ? postCopyTimeout : Duration.ofMinutes(30);
            progress = progress != null ? progress : line -> { };
        }

        /** Hybrid, default convergence limits, auto tracker, no token, no report. */
        public static Options defaults() {
            return new Options(MigrationMode.HYBRID, ConvergencePolicy.Limits.defaults(), null, null, null, null, null, null,
                    null, null, null, 0);
        }

        public Options withMode(MigrationMode m) {
            return new Options(m, limits, trackMem, token, report, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir, maxPostcopyBandwidth);
        }

        public Options withLimits(ConvergencePolicy.Limits l) {
            return new Options(mode, l, trackMem, token, report, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir, maxPostcopyBandwidth);
        }

        public Options withTrackMem(String t) {
            return new Options(mode, limits, t, token, report, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir, maxPostcopyBandwidth);
        }

        public Options withToken(String t) {
            return new Options(mode, limits, trackMem, t, report, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir, maxPostcopyBandwidth);
        }

        public Options withReport(Path r) {
            return new Options(mode, limits, trackMem, token, r, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir, maxPostcopyBandwidth);
        }

        public Options withFault(FaultStep f) {
            return withFault(new FaultStep.At(f, 1));
        }

        public Options withPostCopyTimeout(Duration d) {
            return new Options(mode, limits, trackMem, token, report, fault, connectTimeout, replyTimeout, d, progress, workDir, maxPostcopyBandwidth);
        }

        public Options withFault(FaultStep.At f) {
            return new Options(mode, limits, trackMem, token, report, f, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir, maxPostcopyBandwidth);
        }

        public Options withReplyTimeout(Duration d) {
            return new Options(mode, limits, trackMem, token, report, fault, connectTimeout, d, postCopyTimeout, progress, workDir, maxPostcopyBandwidth);
        }

        public Options withProgress(Consumer<String> p) {
            return new Options(mode, limits, trackMem, token, report, fault, connectTimeout, replyTimeout, postCopyTimeout, p, workDir, maxPostcopyBandwidth);
        }

        public Options withMaxPostcopyBandwidth(long bytesPerSecond) {
            return new Options(mode, limits, trackMem, token, report, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, workDir,
                    bytesPerSecond);
        }

        public Options withWorkDir(Path w) {
            return new Options(mode, limits, trackMem, token, report, fault, connectTimeout, replyTimeout, postCopyTimeout, progress, w, maxPostcopyBandwidth);
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
                o.fault().check(FaultStep.HANDSHAKE);
                step = "pre-check";
                link.send(new Msg.PrecheckRequest(o.mode(), facts, Prechecks.neededAtDestination(o.mode())));
                Msg.PrecheckReply reply = expect(link, Msg.PrecheckReply.class, o.replyTimeout(), step);
                if (!reply.differences().isEmpty()) {
                    rep.outcome = "refused";
                    throw new MigrationException.Refused(reply.differences());
                }
                say("pre-checks passed (%d files checked)", facts.files().size());
                o.fault().check(FaultStep.PRECHECK);
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
        Path work = workDir();
        java.util.concurrent.atomic.AtomicReference<FrozenProcess> frozen = new java.util.concurrent.atomic.AtomicReference<>();
        PagePlane.Server server = null;
        // post-copy seizes here too (no tracker armed): the seize is not part of the freeze
        try (PreCopySession s = PreCopySession.start(pid, o.mode().preCopies() ? o.trackMem() : Trackings.NONE, line -> { })) {
            s.durable(false).rehearse(true); // rounds are disposable: sent at once, useless after a crash
            // the page server listens from the start (it serves once the process is frozen) and the destination
            // is told at once, so that its page client connects while the rounds run, not in the downtime
            step = "start the page server";
            long p0 = System.nanoTime();
            server = plane.serve(link.localAddress(), frozen::get, o.token());
            link.send(new Msg.PageServerReady(server.port()));
            rep.phase("before freeze: page server", (System.nanoTime() - p0) / 1e6);
            if (o.mode().preCopies()) {
                step = "pre-copy";
                rep.tracker = s.tracker();
                preCopy(s, link, work);
            } else {
                rep.tracker = Trackings.NONE;
                rep.stopReason = "post-copy";
            }
            // everything else that can be done while the process runs: the final dump is rehearsed, smaps is
            // read (FreezePrep)
            step = "rehearse the final dump";
            long q0 = System.nanoTime();
            s.rehearseFinal(work.resolve("rehearsal"));
            rep.phase("before freeze: rehearsal", (System.nanoTime() - q0) / 1e6);
            long m0 = System.nanoTime();
            FreezePrep prep = FreezePrep.read(pid);
            rep.phase("before freeze: maps", (System.nanoTime() - m0) / 1e6);
            rep.phase("before freeze: heap collected", emptyTheHeap());
            step = "freeze and final dump";
            link.send(new Msg.Freeze());
            long freezeAt = System.nanoTime();
            FrozenProcess f = s.finalDumpLazy(finalOptions(work), prep);
            frozen.set(f);
            handOver(f, freezeAt, link, server);
        } finally {
            if (server != null) {
                rep.serveLatency = server.serveLatency();
                server.close();
            }
            deleteTree(work);
        }
    }

    /**
     * Collects the heap just before a freeze (off the downtime): the rounds allocate a lot, and a
     * young collection that falls into the frozen window pauses every thread of the JVM for 10-100
     * ms on a loaded machine (measured with -Xlog:gc during lazy-bench downtime); with the heap
     * empty, the few MB the freeze allocates start none. The same for the destination, after each
     * round it applied ({@link MigrationDestination}). Returns the milliseconds it took.
     */
    static double emptyTheHeap() {
        long g0 = System.nanoTime();
        System.gc();
        return (System.nanoTime() - g0) / 1e6;
    }

    /**
     * Where round images and the final image go: only their small files (pages stream to the
     * destination, the final image's pages are REMOTE), so tmpfs (/dev/shm) when there is one,
     * which keeps file creation and renames off a busy disk while frozen.
     */
    private Path workDir() throws IOException {
        if (o.workDir() != null) {
            return Files.createDirectories(o.workDir().resolve(rep.migrationId));
        }
        Path shm = Path.of("/dev/shm");
        if (Files.isDirectory(shm) && Files.isWritable(shm)) {
            try {
                return Files.createTempDirectory(shm, "lazy-pages-migrate-");
            } catch (IOException e) {
                // fall back to the default temporary directory
            }
        }
        return Files.createTempDirectory("lazy-pages-migrate-");
    }

    private DumpOptions finalOptions(Path work) {
        return DumpOptions.of(work.resolve(FINAL)).withTrackMem(o.trackMem()).withProgress(line -> {
            if (line.startsWith("frozen window")) {
                frozenSteps(line);
            } else if (line.startsWith("frozen ")) {
                o.fault().check(FaultStep.FREEZE); // inside the dump, every thread frozen
            }
        });
    }

    private static final java.util.regex.Pattern STEP_MS = java.util.regex.Pattern.compile("([^,:]+?) ([0-9.]+) ms");

    /** The dump's "frozen window T ms: step t ms, ..." line as phases "frozen: step". */
    private void frozenSteps(String line) {
        int colon = line.indexOf(": ");
        if (colon < 0) {
            return;
        }
        java.util.regex.Matcher m = STEP_MS.matcher(line.substring(colon + 2));
        while (m.find()) {
            rep.phase("frozen: " + m.group(1).strip(), Double.parseDouble(m.group(2)));
        }
    }

    private void preCopy(PreCopySession s, Link link, Path work) throws IOException {
        ConvergencePolicy policy = new ConvergencePolicy(o.limits(), s.pageSize());
        int n = 1;
        ConvergencePolicy.Decision stopped = null; // set once the policy said stop: catch-up rounds follow
        long catchUpFrom = -1; // the dirty pages the last catch-up round started with
        List<Double> roundMillis = new ArrayList<>(); // each round's time to dump and send, round k at k - 1
        while (true) {
            long r0 = System.nanoTime();
            Link.RoundOut out = link.startRound(n, Integer.toString(n));
            RoundProgress progress = new RoundProgress(n, out.pages(), s.pageSize(), r0);
            PreDumpResult r = s.preDump(work.resolve(Integer.toString(n)), progress.pages());
            long r1 = System.nanoTime();
            long sent = out.finish(r.imagesDir());
            long r2 = System.nanoTime();
            double ms = (r2 - r0) / 1e6;
            roundMillis.add(ms);
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
            o.fault().check(FaultStep.AFTER_ROUND, n);
            PreCopySession.Collect c = s.collect();
            if (stopped == null) {
                ConvergencePolicy.Decision d = policy.decide(c.pendingPages());
                if (!d.stop()) {
                    n++;
                    continue;
                }
                stopped = d;
                rep.stopReason = d.reason();
                rep.stopDetail = d.detail();
            }
            // the freeze comes after this round unless a catch-up round follows: first let the
            // destination write it into the warm process, so that the freeze leaves it nothing of the rounds
            long w0 = System.nanoTime();
            long pending = awaitApplied(link, n, applyWaitMillis(roundMillis, appliedThrough))
                    ? s.collect().pendingPages() : c.pendingPages();
            // it waited longer than the round took, and the destination has caught up: what was dirtied meanwhile
            boolean grewWhileWaiting = appliedThrough >= n && (System.nanoTime() - w0) / 1e6 > ms;
            if (catchUpRound(stopped, n, pending, catchUpFrom, grewWhileWaiting)) {
                rep.stopDetail += String.format(Locale.ROOT, "; catch-up round %d of the %d pages dirtied", n + 1, pending);
                say("pre-copy: %s; catch-up round %d of the %d dirty pages, so that the freeze leaves only what it dirties",
                        catchUpFrom < 0 ? stopped.reason() + " (" + stopped.detail() + ")" : "still too many dirty pages",
                        n + 1, pending);
                catchUpFrom = pending;
                n++;
                continue;
            }
            say("pre-copy stops after %d round(s): %s (%d pages dirtied since the last one started)", n, stopped.reason(),
                    pending);
            return;
            // the previous round's files are referenced by the next image only as its parent's name: keep them
        }
    }

    /** The highest round the destination reported written into its warm process (RoundApplied). */
    private int appliedThrough;

    /**
     * How long {@link #awaitApplied} waits: twice the time the rounds not yet reported written
     * took to dump and send ({@code roundMillis}, round k at index k - 1), plus
     * {@link #APPLY_WAIT_SLACK}. All of them, not the last one only: a destination that writes a
     * long first round slower than the network brought it is still at it when a short second
     * round ends (4 GiB on 2 cores: 2 s to send, 9 s to write), and a wait bounded by the short
     * round froze the process while it was, with seconds of dirtying since the last round.
     */
    static long applyWaitMillis(List<Double> roundMillis, int appliedThrough) {
        double sum = 0;
        for (int k = Math.max(0, appliedThrough); k < roundMillis.size(); k++) {
            sum += roundMillis.get(k);
        }
        return (long) (2 * sum) + APPLY_WAIT_SLACK.toMillis();
    }

    /**
     * Waits until the destination reports round {@code round} written into its warm process
     * (RoundApplied), for at most {@code waitMillis} ({@link #applyWaitMillis}): a destination
     * that writes slower than the network brings is waited for (what it has not written when the
     * freeze comes it must serve lazily from its copy of the rounds, in the downtime and after),
     * one that never answers is not.
     *
     * @return whether it waited (time passed: the dirty set has grown)
     */
    private boolean awaitApplied(Link link, int round, long waitMillis) throws IOException {
        long w0 = System.nanoTime();
        long deadline = w0 + Duration.ofMillis(waitMillis).toNanos();
        try {
            while (true) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new TimeoutException();
                }
                Msg m = link.receive(Duration.ofNanos(left), null);
                if (m instanceof Msg.RoundApplied a) {
                    appliedThrough = Math.max(appliedThrough, a.round());
                }
                if (m instanceof Msg.RoundApplied a && a.round() >= round) {
                    rep.phase("round " + round + " wait applied", (System.nanoTime() - w0) / 1e6);
                    return true;
                }
                if (m instanceof Msg.Failed f) {
                    throw new MigrationException("pre-copy (" + f.step() + ")", f.message(), true, null);
                }
                if (!(m instanceof Msg.Ping || m instanceof Msg.RoundApplied)) {
                    throw new IOException("unexpected " + m.getClass().getSimpleName() + " during pre-copy");
                }
            }
        } catch (TimeoutException e) {
            say("the destination has not written round %d into its process after %.0f ms: freezing anyway (it serves what it "
                    + "has not written from its copy of the rounds)", round, (System.nanoTime() - w0) / 1e6);
            return System.nanoTime() - w0 > 1_000_000;
        }
    }

    /** See {@link #awaitApplied}. */
    static final Duration APPLY_WAIT_SLACK = Duration.ofSeconds(1);

    /**
     * Hybrid only: a dirty set of more than this many pages when the policy stops gets catch-up
     * rounds before the freeze (see {@link #catchUpRound}).
     */
    static final long CATCH_UP_PAGES = 1024;

    /**
     * Whether to run a catch-up round before the freeze: in hybrid mode the final dump leaves the
     * dirty set REMOTE, and every dirty run costs in the frozen window (page map entries at both
     * ends, stale pages dropped at the destination, the page server's state), so a dirty set
     * that grew during a long round 1 (it grows with the memory size: the round takes longer)
     * makes the downtime grow with it. Short rounds of those pages leave the freeze only what is
     * dirtied during the last one. Only when the policy stopped because pre-copy converged (not on
     * the user's round limit, not when the process dirties as fast as rounds copy), within the
     * round limit, while the dirty set is above {@link #CATCH_UP_PAGES} and the previous catch-up
     * round ({@code from} pages, -1: none yet) shrank it. Also, whatever the policy's reason and
     * however large the set was before, when it grew while the source waited for the destination
     * to write the rounds and the destination has now caught up (the wait took longer than the
     * round: at 4 GiB on this 2-core VM the destination wrote round 1 in 9-12 s, and 4-5 s of
     * waiting left 48-53 MiB to the freeze where a catch-up round leaves 3-5): that growth is the
     * wait's, not the workload's, and the next wait is short. The round limit still bounds it.
     */
    private boolean catchUpRound(ConvergencePolicy.Decision d, int rounds, long pending, long from, boolean grewWhileWaiting) {
        return catchUp(o.mode(), d.reason(), grewWhileWaiting, rounds, o.limits().maxIterations(), pending, from);
    }

    /** {@link #catchUpRound}, on plain values. */
    static boolean catchUp(MigrationMode mode, String reason, boolean grewWhileWaiting, int rounds, int maxIterations,
                           long pending, long from) {
        boolean converged = ConvergencePolicy.GOAL_REACHED.equals(reason) || ConvergencePolicy.DOWNTIME_LIMIT.equals(reason);
        return mode == MigrationMode.HYBRID && (converged || grewWhileWaiting) && rounds < maxIterations
                && pending > CATCH_UP_PAGES && (from < 0 || pending < from / 2 || grewWhileWaiting);
    }

    /**
     * Progress within a round, as its pages go out: a line every {@link #EVERY_NANOS} (round,
     * pages so far, rate), and the {@link FaultStep#ROUND} injection (after the round's first
     * pages were sent, so that the destination holds half a directory).
     */
    private final class RoundProgress {
        static final long EVERY_NANOS = 500_000_000L;
        private final int round;
        private final ImageWriter.PagesOut pages;
        private final int pageSize;
        private final long t0;
        private long bytes;
        private int writes;
        private long lastSay;

        RoundProgress(int round, ImageWriter.PagesOut pages, int pageSize, long t0) {
            this.round = round;
            this.pages = pages;
            this.pageSize = pageSize;
            this.t0 = t0;
            this.lastSay = t0;
        }

        /** {@code pages} with counting (null stays null: the link writes the round whole, no progress inside it). */
        ImageWriter.PagesOut pages() {
            if (pages == null) {
                return null;
            }
            return new ImageWriter.PagesOut() {
                @Override
                public void write(java.nio.ByteBuffer data, long position) throws IOException {
                    int n = data.remaining();
                    pages.write(data, position);
                    bytes += n;
                    if (++writes == 2) {
                        o.fault().check(FaultStep.ROUND, round);
                    }
                    long now = System.nanoTime();
                    if (now - lastSay >= EVERY_NANOS) {
                        lastSay = now;
                        say("round %d: %d pages sent so far, %.0f MiB/s", round, bytes / pageSize,
                                bytes / 1048576.0 / ((now - t0) / 1e9));
                    }
                }

                @Override
                public void finish(java.nio.ByteBuffer header) throws IOException {
                    pages.finish(header);
                }

                @Override
                public java.util.concurrent.CompletableFuture<?> flushed() {
                    return pages.flushed();
                }
            };
        }
    }

    /**
     * Freeze done: announce the page server, send the state, wait for Running (or roll back),
     * commit, serve until the destination has every page, end the original (or resume it when
     * the destination reports that its copy failed after Commit).
     */
    private void handOver(FrozenProcess f, long freezeAt, Link link, PagePlane.Server server)
            throws IOException, TimeoutException {
        step = "hand over to the destination";
        try {
            rep.pagesRemote = f.remote().pageCount();
            say("frozen: final image in %.1f ms, %d pages left at the source (%.1f MiB)", f.dump().frozenNanos() / 1e6,
                    rep.pagesRemote, rep.pagesRemote * (double) f.pageSize() / 1048576.0);
            o.fault().check(FaultStep.FINAL_DUMP);
            long h0 = System.nanoTime();
            rep.phase("freeze: final dump", f.dump().frozenNanos() / 1e6);
            rep.phase("freeze: to hand-over", (h0 - freezeAt) / 1e6);
            step = "send the final image";
            rep.bytesFinal = link.sendDirectory(FINAL_ROUND, f.imagesDir());
            o.fault().check(FaultStep.STATE_TRANSFER);
            step = "restore request";
            rep.postcopyBandwidthCap = o.maxPostcopyBandwidth();
            link.send(new Msg.RestoreRequest(true, server.port(), FINAL, o.maxPostcopyBandwidth()));
            long h2 = System.nanoTime();
            rep.phase("freeze: send final", (h2 - h0) / 1e6);
            o.fault().check(FaultStep.RESTORE_REQUEST);
            step = "wait for Running";
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
            o.fault().check(FaultStep.RUNNING);
        } catch (IOException | TimeoutException | RuntimeException e) {
            // before Commit: roll back (the destination kills its copy on Abort or on the lost connection)
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
            throw new MigrationException(step, message(e), true, e);
        }
        step = "commit";
        rep.outcome = "committed";
        say("running at the destination as pid %d: downtime %.1f ms (restore %.0f ms there)", rep.destinationPid,
                rep.downtimeMs, rep.restoreMs);
        f.stopIfTracerDies(); // from here on, this JVM dying must not let the original run beside the copy
        link.send(new Msg.Commit());
        if (o.fault().is(FaultStep.COMMIT)) {
            say("fault injected at step commit: control connection cut after Commit");
            link.close();
        }
        step = "post-copy";
        PostCopyEnd end = awaitPostCopy(link, server);
        rep.frozenMs = f.frozenNanos() / 1e6;
        switch (end) {
            case DONE -> endOriginal(f);
            case FAILED -> {
                // the destination's copy could not go on and was killed: the original is complete
                f.resume();
                rep.frozenMs = f.frozenNanos() / 1e6;
                rep.outcome = "resumed";
                say("resumed: pid %d runs on at the source (the destination's copy failed after Commit)", pid);
                throw new MigrationException("post-copy at the destination", rep.error, true, null);
            }
            case UNREACHABLE -> {
                f.leaveStopped();
                rep.outcome = "unknown-after-commit";
                String why = "destination unreachable since Commit and no page request for " + o.postCopyTimeout().toSeconds()
                        + " s: pid " + pid + " is left stopped (SIGSTOP), neither resumed nor killed; kill -CONT " + pid
                        + " if the destination's copy is gone, kill -9 " + pid + " if it runs";
                say("%s", why);
                throw new MigrationException("post-copy", why, false, null);
            }
        }
    }

    /** Ends the frozen original; a failure is retried (the destination's copy is the live one: the original must go). */
    private void endOriginal(FrozenProcess f) {
        step = "end the original";
        for (int attempt = 1; ; attempt++) {
            try {
                if (attempt == 1) {
                    o.fault().check(FaultStep.END_ORIGINAL);
                }
                f.commitAndKill();
                rep.frozenMs = f.frozenNanos() / 1e6;
                return;
            } catch (RuntimeException e) {
                if (attempt >= 5) {
                    throw e;
                }
                say("ending pid %d failed (%s): again", pid, message(e));
            }
        }
    }

    /** How post-copy ended, as the source saw it. */
    private enum PostCopyEnd {
        /** The destination has every page (PostCopyDone, or its page client's DONE). */
        DONE,
        /** The destination reported that its copy failed after Commit (and killed it). */
        FAILED,
        /** Neither within the post-copy timeout, the control connection gone. */
        UNREACHABLE
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
            if (!(m instanceof Msg.Ping || m instanceof Msg.RoundApplied)) {
                throw new IOException("unexpected " + m.getClass().getSimpleName() + " while waiting for Running");
            }
        }
    }

    /**
     * Serves until the destination reports every page in (PostCopyDone), or that its copy failed
     * (Failed). Without the control connection (lost, or cut by a fault), the page server keeps
     * listening for the destination's page client (which reconnects) and its DONE ends it.
     */
    private PostCopyEnd awaitPostCopy(Link link, PagePlane.Server server) {
        long deadline = System.nanoTime() + o.postCopyTimeout().toNanos();
        boolean cut = false;
        if (o.fault().is(FaultStep.POST_COPY)) {
            // once the page server has served (post-copy under way), whatever the control connection still holds
            long until = System.nanoTime() + POST_COPY_FAULT_WAIT.toNanos();
            while (!server.done().isDone() && System.nanoTime() - until < 0
                    && (server.serveLatency() == null || server.serveLatency().getTotalCount() == 0)) {
                java.util.concurrent.locks.LockSupport.parkNanos(1_000_000);
            }
            say("fault injected at step post-copy: control connection cut while serving");
            cut = true;
            link.close();
        }
        try {
            while (!link.closed()) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
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
                    return PostCopyEnd.DONE;
                }
                if (m instanceof Msg.Failed failed) {
                    rep.error = failed.step() + ": " + failed.message();
                    say("destination: %s failed after Commit: %s", failed.step(), failed.message());
                    return PostCopyEnd.FAILED;
                }
            }
        } catch (IOException | TimeoutException e) {
            if (!cut) {
                say("control connection lost after Commit (%s): the page server goes on serving", message(e));
            }
        }
        // no control connection: the page server's DONE says the destination has every page; the destination may be
        // reconnecting after a network cut, so wait until DONE, until no page client has asked for the recover timeout
        // (the destination has given up and killed its copy), or until the post-copy timeout ends
        long idleLimit = dev.lazypages.net.PageClient.Options.DEFAULT_RECOVER_TIMEOUT.toNanos();
        try {
            while (deadline - System.nanoTime() > 0 && server.idleNanos() < idleLimit) {
                try {
                    server.done().get(100, java.util.concurrent.TimeUnit.MILLISECONDS);
                    say("the destination's page client has every page (DONE)");
                    return PostCopyEnd.DONE;
                } catch (java.util.concurrent.TimeoutException e) {
                    // poll again
                }
            }
            say("the destination went away before it had every page: no page request for %d s",
                    server.idleNanos() / 1_000_000_000L);
            return PostCopyEnd.UNREACHABLE;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return PostCopyEnd.UNREACHABLE;
        } catch (java.util.concurrent.ExecutionException e) {
            say("page server: %s", message(e.getCause()));
            return PostCopyEnd.UNREACHABLE;
        }
    }

    /** How long {@link FaultStep#POST_COPY} waits for the page server's first request before it cuts the connection anyway. */
    static final Duration POST_COPY_FAULT_WAIT = Duration.ofSeconds(10);

    private <T extends Msg> T expect(Link link, Class<T> type, Duration timeout, String step) throws IOException, TimeoutException {
        while (true) {
            Msg m = link.receive(timeout, null);
            if (type.isInstance(m)) {
                return type.cast(m);
            }
            if (m instanceof Msg.Failed f) {
                throw new MigrationException(step + " (" + f.step() + ")", f.message(), true, null);
            }
            if (!(m instanceof Msg.Ping || m instanceof Msg.RoundApplied)) {
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
