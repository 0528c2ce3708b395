package dev.lazypages.migrate;

import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.image.ImageReader;
import dev.lazypages.lazy.LazySource;
import dev.lazypages.lazy.LazyStats;
import dev.lazypages.image.PageFlags;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.lazy.LazyPageServer;
import dev.lazypages.restore.ImageLazyHandoff;
import dev.lazypages.restore.Restorer;
import dev.lazypages.restore.WarmRestore;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.UnaryOperator;

/**
 * The destination side of one migration, on one control connection ({@link ServeDaemon} runs
 * one after another): answers the pre-checks, receives the rounds into
 * {@code workDir/<migration-id>/<round>} (the chain the source wrote, same names), receives
 * the final image, restores it (eagerly in pre-copy mode, fetching the REMOTE pages first;
 * lazily in post-copy and hybrid, REMOTE pages served from the source's page server), replies
 * Running or Failed (a failed restore leaves nothing: the restorer kills what it built), waits
 * for Commit (anything else kills the restored process: the source resumed its own), waits
 * until every page is in, tells the source (PostCopyDone), writes its report and removes the
 * work directory.
 */
public final class MigrationDestination {
    /**
     * How the destination behaves.
     *
     * @param workDir      where migrations are received (each in a directory named by its id)
     * @param stub         lp-stub or its directory, null to look it up
     * @param reportDir    where to write {@code <migration-id>.json} and {@code .hgrm}, or null
     * @param keepWorkDir  keep the received images
     * @param token        the page server's token (the control connection's)
     * @param idleTimeout  longest wait for the next message during the migration
     * @param postCopyTimeout longest wait for every page after Running
     * @param precheckHook test hook: rewrites the destination's own facts before the comparison
     * @param files        how a source file is found here (test hook; default stat)
     * @param progress     one line per step
     * @param recoverTimeout how long a lost page connection to the source is retried during post-copy; after
     *                       that the restored process is killed (its missing memory cannot come)
     * @param fault        fault injection (tests, hidden {@code serve --inject-fault}); NONE by default
     */
    public record Options(Path workDir, Path stub, Path reportDir, boolean keepWorkDir, String token, Duration idleTimeout,
                          Duration postCopyTimeout, UnaryOperator<HostFacts> precheckHook,
                          Function<String, HostFacts.FileId> files, Consumer<String> progress, Duration recoverTimeout,
                          DestinationFault fault) {
        /** With the default recover timeout (60 s) and no fault injection. */
        public Options(Path workDir, Path stub, Path reportDir, boolean keepWorkDir, String token, Duration idleTimeout,
                       Duration postCopyTimeout, UnaryOperator<HostFacts> precheckHook,
                       Function<String, HostFacts.FileId> files, Consumer<String> progress, Duration recoverTimeout) {
            this(workDir, stub, reportDir, keepWorkDir, token, idleTimeout, postCopyTimeout, precheckHook, files, progress,
                    recoverTimeout, null);
        }

        public Options(Path workDir, Path stub, Path reportDir, boolean keepWorkDir, String token, Duration idleTimeout,
                       Duration postCopyTimeout, UnaryOperator<HostFacts> precheckHook,
                       Function<String, HostFacts.FileId> files, Consumer<String> progress) {
            this(workDir, stub, reportDir, keepWorkDir, token, idleTimeout, postCopyTimeout, precheckHook, files, progress, null);
        }

        public Options withFault(DestinationFault f) {
            return new Options(workDir, stub, reportDir, keepWorkDir, token, idleTimeout, postCopyTimeout, precheckHook, files,
                    progress, recoverTimeout, f);
        }

        public Options {
            recoverTimeout = recoverTimeout != null ? recoverTimeout : dev.lazypages.net.PageClient.Options.DEFAULT_RECOVER_TIMEOUT;
            fault = fault != null ? fault : DestinationFault.NONE;
            token = token != null ? token : "";
            idleTimeout = idleTimeout != null ? idleTimeout : Duration.ofSeconds(120);
            postCopyTimeout = postCopyTimeout != null ? postCopyTimeout : Duration.ofMinutes(30);
            precheckHook = precheckHook != null ? precheckHook : f -> f;
            files = files != null ? files : Prechecks.localFiles();
            progress = progress != null ? progress : line -> { };
        }
    }

    private final Link link;
    private final Options o;
    private final String id;
    private final MigrationReport rep = new MigrationReport();
    private final long t0 = System.nanoTime();

    private MigrationDestination(Link link, String id, Options o) {
        this.link = link;
        this.o = o;
        this.id = id;
    }

    /** Runs one migration on {@code link}; returns its report (outcome migrated, refused, aborted, failed). */
    public static MigrationReport handle(Link link, String migrationId, Options options) {
        return new MigrationDestination(link, safeId(migrationId), options).go();
    }

    static String safeId(String id) {
        String s = id == null ? "" : id.replaceAll("[^A-Za-z0-9_-]", "");
        return s.isEmpty() ? Long.toHexString(System.nanoTime()) : s;
    }

    private void say(String fmt, Object... args) {
        o.progress().accept("[" + id + "] " + String.format(Locale.ROOT, fmt, args));
    }

    /** How often the receive loop looks at the warm build while waiting for the next message. */
    private static final Duration POLL = Duration.ofMillis(200);

    /** The warm process being built (pre-copy, hybrid), on its builder thread; null before round 1. */
    private WarmRestore warm;
    /** Null until round 1 arrives (pre-copy, hybrid); then every round is applied on it in order. */
    private ExecutorService builder;
    private CompletableFuture<Void> building = CompletableFuture.completedFuture(null);
    private final Map<String, Double> phases = java.util.Collections.synchronizedMap(new LinkedHashMap<>());

    private MigrationReport go() {
        rep.side = "destination";
        rep.migrationId = id;
        Path dir = o.workDir().resolve(id);
        String step = "pre-check";
        int restored = -1;
        boolean committed = false;
        boolean pagesDone = false;
        ImageLazyHandoff handoff = null;
        PagePlane.Client client = null;
        try {
            Msg.PrecheckRequest req = expect(Msg.PrecheckRequest.class, null);
            rep.mode = req.mode();
            HostFacts mine = o.precheckHook().apply(Prechecks.ofDestination(req.neededFeatures()));
            List<String> diffs = Prechecks.differences(req.facts(), mine, req.mode(), o.files());
            if (diffs.isEmpty()) {
                o.fault().check(DestinationFault.PRECHECK);
            }
            link.send(new Msg.PrecheckReply(diffs));
            if (!diffs.isEmpty()) {
                rep.outcome = "refused";
                rep.error = String.join("; ", diffs);
                say("refused: %s", rep.error);
                return rep;
            }
            say("pre-checks passed (%s, %d files)", req.mode(), req.facts().files().size());
            Files.createDirectories(dir);
            step = "receive rounds";
            Msg.RestoreRequest restore = null;
            long freezeSeen = 0;
            long idleSince = System.nanoTime();
            while (restore == null) {
                checkBuilder();
                Msg m;
                try {
                    m = link.receive(POLL, dir);
                } catch (TimeoutException poll) {
                    if (System.nanoTime() - idleSince > o.idleTimeout().toNanos()) {
                        throw poll;
                    }
                    continue;
                }
                idleSince = System.nanoTime();
                switch (m) {
                    case Msg.DirectoryArrived d -> {
                        if (d.round() != MigrationSource.FINAL_ROUND) {
                            rep.addRound(new MigrationReport.Round(d.round(), 0, d.bytes(), 0, 0, 0));
                            say("received %s (%.1f MiB)", d.dir().getFileName(), d.bytes() / 1048576.0);
                            o.fault().check(DestinationFault.ROUND_RECEIVED);
                            if (rep.mode.preCopies()) {
                                buildWarm(d.round(), d.dir());
                            }
                        } else {
                            rep.bytesFinal = d.bytes();
                            say("received %s (%.1f MiB)", d.dir().getFileName(), d.bytes() / 1048576.0);
                            o.fault().check(DestinationFault.FINAL_RECEIVED);
                        }
                    }
                    case Msg.PageServerReady r -> connectEarly(r.port());
                    case Msg.Freeze f -> {
                        freezeSeen = System.nanoTime();
                        step = "receive the final image";
                        say("source frozen");
                    }
                    case Msg.RestoreRequest r -> restore = r;
                    case Msg.Abort a -> {
                        rep.outcome = "aborted";
                        rep.error = a.reason();
                        say("aborted by the source: %s", a.reason());
                        return rep;
                    }
                    case Msg.Ping p -> {
                    }
                    default -> throw new IOException("unexpected " + m.getClass().getSimpleName() + " while receiving rounds");
                }
            }
            step = "restore";
            long d0 = System.nanoTime();
            if (freezeSeen != 0) {
                phases.put("freeze to restore request", (d0 - freezeSeen) / 1e6);
            }
            if (builder != null) {
                step = "warm: wait for the rounds";
                warm.hurry(); // what the rounds have not written yet is left to the final image
                try {
                    building.join();
                } catch (CompletionException e) {
                    throw e.getCause() instanceof RuntimeException r ? r : e;
                }
                phases.put("warm: wait for the rounds", (System.nanoTime() - d0) / 1e6);
                step = "restore";
            }
            Path image = dir.resolve(safeName(restore.dir()));
            long r0 = System.nanoTime();
            Restorer.Result res;
            PhaseClock clock = new PhaseClock(phases);
            ImageReader reader = null;
            try {
                reader = warm != null ? warm.finalImage(image) : ImageReader.open(image);
                int imagePid = reader.image().processes().getProcesses(0).getPid();
                List<LazySource.Run> remoteRuns = remoteRuns(reader, imagePid);
                rep.sourcePid = imagePid;
                rep.pagesRemote = remoteRuns.stream().mapToLong(LazySource.Run::nrPages).sum();
                phases.put("open the final image", (System.nanoTime() - r0) / 1e6);
                Restorer.Options ro = Restorer.Options.eager(image).withStub(o.stub()).withProgress(clock::step)
                        .withReader(reader);
                if (warm != null) {
                    ro = ro.withWarm(warm);
                }
                if (!remoteRuns.isEmpty()) {
                    long c0 = System.nanoTime();
                    client = pageClient(restore.pageServerPort(), remoteRuns);
                    ro = ro.withRemote(client.source());
                    phases.put("page client", (System.nanoTime() - c0) / 1e6);
                } else {
                    closeEarly();
                }
                clock.start();
                if (rep.mode.lazy()) {
                    handoff = new ImageLazyHandoff(lazyOptions(restore.maxPostcopyBandwidth()));
                    rep.postcopyBandwidthCap = restore.maxPostcopyBandwidth();
                    if (restore.maxPostcopyBandwidth() > 0) {
                        say("post-copy background capped at %.1f MiB/s (faults first)", restore.maxPostcopyBandwidth() / 1048576.0);
                    }
                    ro = ro.withLazy(handoff);
                } else if (warm != null) {
                    handoff = new ImageLazyHandoff(); // pages the rounds did not write yet, from the local chain
                    ro = ro.withWarmHandoff(handoff);
                }
                reader = null; // the restore owns it now
                RestoreWatch watch = client != null ? new RestoreWatch(client) : null;
                try {
                    res = Restorer.restore(ro);
                } finally {
                    if (watch != null) {
                        held = watch.stop();
                    }
                }
                clock.step(null);
            } catch (RuntimeException | IOException e) {
                closeQuietly(reader);
                if (client != null) {
                    client.close();
                    client = null;
                }
                String msg = MigrationSource.message(e);
                say("restore failed: %s", msg);
                link.send(new Msg.Failed("restore", msg));
                rep.outcome = "failed";
                rep.error = "restore: " + msg;
                return rep;
            }
            if (handoff != null && !handoff.started()) {
                handoff = null; // nothing was left to serve
            }
            restored = res.pid();
            rep.destinationPid = restored;
            rep.bytesFinal += res.remoteBytesFetched();
            rep.restoreMs = (System.nanoTime() - r0) / 1e6;
            o.fault().check(DestinationFault.RESTORE);
            long runningAt = System.nanoTime();
            link.send(new Msg.Running(restored, rep.restoreMs, phases));
            phases.forEach(rep::phase);
            say("running as pid %d (restore %.0f ms, %.1f MiB fetched before it ran)", restored, rep.restoreMs,
                    res.remoteBytesFetched() / 1048576.0);
            step = "wait for Commit";
            o.fault().check(DestinationFault.RUNNING_SENT);
            expectCommit();
            o.fault().check(DestinationFault.WAIT_COMMIT);
            committed = true;
            rep.outcome = "committed";
            say("committed: pid %d is the process now; the source keeps its original until every page is here", restored);
            step = "post-copy";
            o.fault().check(DestinationFault.POST_COPY);
            try {
                if (handoff != null) {
                    LazyStats s = handoff.completion().get(o.postCopyTimeout().toMillis(), TimeUnit.MILLISECONDS);
                    rep.faults = s.faults();
                    rep.faultLatency = s.copyLatency();
                    rep.backgroundMiBps = s.backgroundMiBps();
                    rep.bytesPostcopy = handoff.remotePages() * (long) Posix.pageSize();
                    say("every page in: %s", s);
                }
                rep.postcopyMs = (System.nanoTime() - runningAt) / 1e6;
                pagesDone = true; // every page is here: from now on the source may end its original
                if (client != null) {
                    client.done();
                }
            } catch (ExecutionException e) {
                kill(restored); // first: with its uffd closed it would read zeros where its memory is missing
                if (client != null) {
                    client.close(); // its pending requests fail at once: the handoff's close waits for no reconnection
                    client = null;
                }
                handoff.close();
                throw new IOException("post-copy failed: " + MigrationSource.message(e.getCause()), e.getCause());
            } finally {
                if (client != null) {
                    client.close();
                    client = null;
                }
            }
            step = "report PostCopyDone"; // every page is in: a lost control connection no longer matters to the process
            link.send(new Msg.PostCopyDone(rep.faults, rep.pagesRemote, rep.bytesPostcopy, Math.round(rep.postcopyMs),
                    rep.backgroundMiBps, rep.faultLatency));
            rep.outcome = "migrated";
            return rep;
        } catch (IOException | TimeoutException | RuntimeException | InterruptedException e) {
            if (e instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
            rep.outcome = !committed ? "failed" : "report PostCopyDone".equals(step) ? "migrated" : "failed-after-commit";
            rep.error = step + ": " + MigrationSource.message(e);
            say("%s", rep.error);
            if (restored > 0 && !pagesDone) {
                // Before Commit the source resumes its own copy; after it, until every page is
                // here, the source still holds its frozen original and resumes it on Failed (a
                // copy whose post-copy failed cannot go on): never two copies, never none.
                kill(restored);
                String why = !committed ? "no Commit" : "post-copy".equals(step)
                        ? "its missing memory cannot come" : "post-copy failed";
                say("killed restored pid %d (%s)", restored, why);
                rep.error += "; killed restored pid " + restored + " (" + why + ")";
            }
            if (client != null) {
                // first: its pending requests fail at once, so nothing in the lazy page server waits for a
                // reconnection (up to the recover timeout) while the handoff closes
                client.close();
            }
            if (handoff != null) {
                handoff.close();
            }
            try {
                link.send(new Msg.Failed(step, MigrationSource.message(e)));
            } catch (IOException | RuntimeException ignored) {
                // the connection is what failed
            }
            return rep;
        } finally {
            closeEarly();
            stopBuilder();
            rep.totalMs = (System.nanoTime() - t0) / 1e6;
            if (!o.keepWorkDir()) {
                MigrationSource.deleteTree(dir);
            }
            writeReport();
        }
    }

    /** The page client being connected since the source's PageServerReady (before the freeze), or null. */
    private CompletableFuture<PagePlane.Early> early;
    private int earlyPort;

    /**
     * Starts connecting the page client to the source's page server on {@code port} (on a
     * thread of its own: the receive loop goes on), so that the restore finds it connected.
     */
    private void connectEarly(int port) {
        closeEarly();
        InetSocketAddress at = new InetSocketAddress(link.peerAddress(), port);
        CompletableFuture<PagePlane.Early> f = new CompletableFuture<>();
        early = f;
        earlyPort = port;
        Thread.ofVirtual().name("lp-page-client-" + id).start(() -> {
            try {
                long c0 = System.nanoTime();
                f.complete(plane.connectEarly(at, o.token(), o.recoverTimeout()));
                say("page client connected to %s in %.1f ms, before the freeze", at, (System.nanoTime() - c0) / 1e6);
            } catch (IOException | RuntimeException e) {
                f.completeExceptionally(e);
            }
        });
    }

    /**
     * The page client for the final image's REMOTE {@code runs}: the one connected before the
     * freeze when it is to the same port and connected, else a new connection (saying why).
     */
    private PagePlane.Client pageClient(int port, List<LazySource.Run> runs) throws IOException {
        CompletableFuture<PagePlane.Early> f = early;
        early = null;
        if (f != null && earlyPort == port) {
            try {
                PagePlane.Early e = f.get(o.recoverTimeout().toMillis(), TimeUnit.MILLISECONDS);
                return e.withRuns(runs);
            } catch (ExecutionException | TimeoutException e) {
                say("the page client connected before the freeze failed (%s): connecting again",
                        MigrationSource.message(e instanceof ExecutionException ? e.getCause() : e));
                f.thenAccept(PagePlane.Early::close);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                f.thenAccept(PagePlane.Early::close);
                throw new java.io.InterruptedIOException("interrupted while connecting the page client");
            }
        } else if (f != null) {
            f.thenAccept(PagePlane.Early::close);
        }
        return plane.connect(new InetSocketAddress(link.peerAddress(), port), o.token(), runs, o.recoverTimeout());
    }

    /** Closes the early page client unless the restore took it (when it connects, if it is still connecting). */
    private void closeEarly() {
        CompletableFuture<PagePlane.Early> f = early;
        early = null;
        if (f != null) {
            f.thenAccept(PagePlane.Early::close);
        }
    }

    /** Queues round {@code round} (in {@code roundDir}) for the warm process: built from round 1, updated by the others. */
    private void buildWarm(int round, Path roundDir) {
        if (builder == null) {
            builder = Executors.newSingleThreadExecutor(r -> {
                Thread t = new Thread(r, "lp-warm-" + id);
                t.setDaemon(true);
                return t;
            });
        }
        if (warm == null) {
            warm = WarmRestore.create(o.stub(), line -> { });
        }
        WarmRestore w = warm;
        building = building.thenRunAsync(() -> {
            long t = System.nanoTime();
            boolean first = w.pid() < 0;
            w.applyRound(roundDir);
            o.fault().check(first ? DestinationFault.SKELETON_BUILT : DestinationFault.ROUND_APPLIED);
            double ms = (System.nanoTime() - t) / 1e6;
            long[] io = w.pageNanos();
            phases.put("warm: round " + round, ms);
            phases.put("warm: rounds read pages", io[0] / 1e6);
            phases.put("warm: rounds write pages", io[1] / 1e6);
            say("warm: round %d applied in %.0f ms (pid %d)", round, ms, w.pid());
            if (!w.hurried()) {
                phases.merge("warm: heap collected", MigrationSource.emptyTheHeap(), Double::sum); // the freeze may come next
                try {
                    link.send(new Msg.RoundApplied(round)); // the source freezes once the last round is written
                } catch (IOException e) {
                    // the receive loop notices a lost connection
                }
            }
        }, builder);
    }

    /** Throws the warm build's failure, if it failed. */
    private void checkBuilder() {
        if (building.isCompletedExceptionally()) {
            try {
                building.join();
            } catch (CompletionException e) {
                Throwable c = e.getCause();
                throw c instanceof RuntimeException r ? r : new IllegalStateException(MigrationSource.message(c), c);
            }
        }
    }

    /** Stops the builder and kills the warm process unless the restore took it over. */
    private void stopBuilder() {
        if (warm != null) {
            warm.hurry(); // a round being written stops at its next batch
        }
        if (builder != null) {
            builder.shutdown(); // rounds still queued run hurried: layout only, no pages
            boolean interrupted = false;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            // wait even when interrupted: the warm process must not be closed under the builder's feet
            while (!builder.isTerminated() && System.nanoTime() - deadline < 0) {
                try {
                    builder.awaitTermination(100, TimeUnit.MILLISECONDS);
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (!builder.isTerminated()) {
                say("the warm builder did not stop within 30 s");
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
        if (warm != null) {
            warm.close();
        }
    }

    /** The REMOTE runs of {@code pid} in the final image, sorted and merged (its own page map only: no chain walk). */
    static List<LazySource.Run> remoteRuns(ImageReader r, int pid) {
        List<LazySource.Run> out = new ArrayList<>();
        int ps = r.pageSize();
        List<PageMapEntry> entries = new ArrayList<>(r.image().pageMap().getEntriesList());
        entries.sort((a, b) -> Long.compareUnsigned(a.getVaddr(), b.getVaddr()));
        for (PageMapEntry e : entries) {
            if (e.getPid() != pid || e.getFlags() != PageFlags.REMOTE) {
                continue;
            }
            LazySource.Run last = out.isEmpty() ? null : out.getLast();
            if (last != null && last.end(ps) == e.getVaddr() && (long) last.nrPages() + e.getNrPages() <= Integer.MAX_VALUE) {
                out.set(out.size() - 1, new LazySource.Run(last.vaddr(), last.nrPages() + e.getNrPages()));
            } else {
                out.add(new LazySource.Run(e.getVaddr(), e.getNrPages()));
            }
        }
        return out;
    }

    private static void closeQuietly(ImageReader r) {
        if (r != null) {
            try {
                r.close();
            } catch (IOException ignored) {
                // read-only
            }
        }
    }

    private PagePlane plane = new NetPagePlane();

    /** Restorer progress lines to time per phase: "restore: " + the step's first two words, summed. */
    private static final class PhaseClock {
        private final java.util.Map<String, Double> phases;
        private String current;
        private long since = System.nanoTime();

        PhaseClock(java.util.Map<String, Double> phases) {
            this.phases = phases;
        }

        void start() {
            since = System.nanoTime();
        }

        void step(String line) {
            long now = System.nanoTime();
            if (current != null) {
                phases.merge("restore: " + current, (now - since) / 1e6, Double::sum);
            }
            current = line == null ? null : key(line);
            since = now;
        }

        static String key(String line) {
            String[] w = line.split("[ (]", 3);
            return w.length >= 2 && w[1].matches("[a-z-]+") ? w[0] + " " + w[1] : w[0];
        }
    }

    MigrationDestination withPlane(PagePlane p) {
        plane = p;
        return this;
    }

    /** A message the {@link RestoreWatch} received (for the state machine after the restore), or null. */
    private Msg held;

    /**
     * While the restore runs with a page client: reads the control connection, so that an Abort
     * (the source rolled back and closed its page server) or a lost connection closes the page
     * client at once. Otherwise a request of the restore (a fault while the process state is set,
     * a page fetched before it runs) would wait for the page client to reconnect, up to the
     * recover timeout, to a page server that is gone for good. Pings are dropped; anything else
     * is kept for the state machine ({@link #stop}).
     */
    private final class RestoreWatch {
        private volatile boolean stopped;
        private volatile Msg kept;
        private final Thread thread;

        RestoreWatch(PagePlane.Client client) {
            thread = Thread.ofVirtual().name("lp-restore-watch-" + id).start(() -> {
                while (!stopped) {
                    try {
                        Msg m = link.receive(Duration.ofMillis(200), null);
                        if (m instanceof Msg.Ping) {
                            continue;
                        }
                        kept = m;
                        if (m instanceof Msg.Abort a) {
                            say("aborted by the source during the restore (%s): page client closed", a.reason());
                            client.close();
                        }
                        return;
                    } catch (TimeoutException e) {
                        // look at stopped again
                    } catch (IOException e) {
                        if (stopped) {
                            return; // interrupted by stop(): the restore is over
                        }
                        say("control connection lost during the restore (%s): page client closed", MigrationSource.message(e));
                        client.close();
                        return;
                    }
                }
            });
        }

        /** Stops reading; returns what was received meanwhile (null: nothing). */
        Msg stop() throws InterruptedException {
            stopped = true;
            thread.interrupt(); // out of its receive at once (a message is either taken whole or left queued)
            thread.join();
            return kept;
        }
    }

    private void expectCommit() throws IOException, TimeoutException {
        while (true) {
            Msg m = held != null ? held : link.receive(o.idleTimeout(), null);
            held = null;
            if (m instanceof Msg.Commit) {
                return;
            }
            if (m instanceof Msg.Abort a) {
                throw new IOException("aborted by the source after Running: " + a.reason());
            }
            if (!(m instanceof Msg.Ping)) {
                throw new IOException("expected Commit, got " + m.getClass().getSimpleName());
            }
        }
    }

    private <T extends Msg> T expect(Class<T> type, Path dir) throws IOException, TimeoutException {
        while (true) {
            Msg m = link.receive(o.idleTimeout(), dir);
            if (type.isInstance(m)) {
                return type.cast(m);
            }
            if (!(m instanceof Msg.Ping)) {
                throw new IOException("expected " + type.getSimpleName() + ", got " + m.getClass().getSimpleName());
            }
        }
    }

    private static String safeName(String name) throws IOException {
        if (name.isEmpty() || name.contains("/") || name.equals(".") || name.equals("..")) {
            throw new IOException("bad image directory name '" + name + "'");
        }
        return name;
    }

    static void kill(int pid) {
        try {
            Posix.kill(pid, Posix.SIGKILL);
        } catch (SyscallException e) {
            if (e.errno() != Errno.ESRCH) {
                throw e;
            }
        }
    }

    private void writeReport() {
        if (o.reportDir() == null) {
            return;
        }
        try {
            rep.write(o.reportDir().resolve("migration-" + id + ".json"));
        } catch (IOException e) {
            say("could not write the report into %s: %s", o.reportDir(), e.getMessage());
        }
    }

    /**
     * The lazy page server's options for a post-copy restore with the source's bandwidth cap (0: none; NetLink
     * refuses a negative one on the wire).
     */
    static LazyPageServer.Options lazyOptions(long maxPostcopyBandwidth) {
        return LazyPageServer.Options.defaults().withBackgroundBandwidth(maxPostcopyBandwidth);
    }
}
