package dev.lazypages.migrate;

import dev.lazypages.ffm.Errno;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.image.ImageReader;
import dev.lazypages.lazy.ImageLazySource;
import dev.lazypages.lazy.LazySource;
import dev.lazypages.lazy.LazyStats;
import dev.lazypages.restore.ImageLazyHandoff;
import dev.lazypages.restore.Restorer;
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
     */
    public record Options(Path workDir, Path stub, Path reportDir, boolean keepWorkDir, String token, Duration idleTimeout,
                          Duration postCopyTimeout, UnaryOperator<HostFacts> precheckHook,
                          Function<String, HostFacts.FileId> files, Consumer<String> progress, Duration recoverTimeout) {
        /** With the default recover timeout (60 s). */
        public Options(Path workDir, Path stub, Path reportDir, boolean keepWorkDir, String token, Duration idleTimeout,
                       Duration postCopyTimeout, UnaryOperator<HostFacts> precheckHook,
                       Function<String, HostFacts.FileId> files, Consumer<String> progress) {
            this(workDir, stub, reportDir, keepWorkDir, token, idleTimeout, postCopyTimeout, precheckHook, files, progress, null);
        }

        public Options {
            recoverTimeout = recoverTimeout != null ? recoverTimeout : dev.lazypages.net.PageClient.Options.DEFAULT_RECOVER_TIMEOUT;
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

    private MigrationReport go() {
        rep.side = "destination";
        rep.migrationId = id;
        Path dir = o.workDir().resolve(id);
        String step = "pre-check";
        int restored = -1;
        boolean committed = false;
        try {
            Msg.PrecheckRequest req = expect(Msg.PrecheckRequest.class, null);
            rep.mode = req.mode();
            HostFacts mine = o.precheckHook().apply(Prechecks.ofDestination(req.neededFeatures()));
            List<String> diffs = Prechecks.differences(req.facts(), mine, req.mode(), o.files());
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
            while (restore == null) {
                Msg m = link.receive(o.idleTimeout(), dir);
                switch (m) {
                    case Msg.DirectoryArrived d -> {
                        if (d.round() != MigrationSource.FINAL_ROUND) {
                            rep.addRound(new MigrationReport.Round(d.round(), 0, d.bytes(), 0, 0, 0));
                        } else {
                            rep.bytesFinal = d.bytes();
                        }
                        say("received %s (%.1f MiB)", d.dir().getFileName(), d.bytes() / 1048576.0);
                    }
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
            java.util.Map<String, Double> phases = new java.util.LinkedHashMap<>();
            if (freezeSeen != 0) {
                phases.put("freeze to restore request", (d0 - freezeSeen) / 1e6);
            }
            Path image = dir.resolve(safeName(restore.dir()));
            int imagePid;
            List<LazySource.Run> remoteRuns;
            try (ImageReader r = ImageReader.open(image)) {
                imagePid = r.image().processes().getProcesses(0).getPid();
                try (ImageLazySource s = ImageLazySource.open(r, imagePid)) {
                    remoteRuns = s.remoteRuns();
                }
            }
            rep.sourcePid = imagePid;
            rep.pagesRemote = remoteRuns.stream().mapToLong(LazySource.Run::nrPages).sum();
            PagePlane.Client client = null;
            ImageLazyHandoff handoff = null;
            long restoreStart = System.nanoTime();
            phases.put("read remote runs", (restoreStart - d0) / 1e6);
            Restorer.Result res;
            PhaseClock clock = new PhaseClock(phases);
            try {
                Restorer.Options ro = Restorer.Options.eager(image).withStub(o.stub())
                        .withProgress(clock::step);
                if (!remoteRuns.isEmpty()) {
                    client = plane.connect(new InetSocketAddress(link.peerAddress(), restore.pageServerPort()), o.token(),
                            remoteRuns, o.recoverTimeout());
                    ro = ro.withRemote(client.source());
                    phases.put("page client", (System.nanoTime() - restoreStart) / 1e6);
                }
                clock.start();
                boolean lazy = rep.mode.lazy();
                if (lazy) {
                    handoff = new ImageLazyHandoff();
                    ro = ro.withLazy(handoff);
                }
                res = Restorer.restore(ro);
                clock.step(null);
            } catch (RuntimeException | IOException e) {
                if (client != null) {
                    client.close();
                }
                String msg = MigrationSource.message(e);
                say("restore failed: %s", msg);
                link.send(new Msg.Failed("restore", msg));
                rep.outcome = "failed";
                rep.error = msg;
                return rep;
            }
            restored = res.pid();
            rep.destinationPid = restored;
            rep.bytesFinal += res.remoteBytesFetched();
            rep.restoreMs = (System.nanoTime() - restoreStart) / 1e6;
            long runningAt = System.nanoTime();
            link.send(new Msg.Running(restored, rep.restoreMs, phases));
            phases.forEach(rep::phase);
            say("running as pid %d (restore %.0f ms, %.1f MiB fetched before it ran)", restored, rep.restoreMs,
                    res.remoteBytesFetched() / 1048576.0);
            step = "wait for Commit";
            expectCommit();
            committed = true;
            rep.outcome = "committed";
            step = "post-copy";
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
                if (client != null) {
                    client.done();
                }
            } catch (ExecutionException e) {
                kill(restored); // first: with its uffd closed it would read zeros where its memory is missing
                handoff.close();
                throw new IOException("post-copy failed: " + MigrationSource.message(e.getCause()), e.getCause());
            } finally {
                if (client != null) {
                    client.close();
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
            if (restored > 0 && !committed) {
                // the source rolled back (or is gone before committing): never two copies
                kill(restored);
                say("killed restored pid %d (no Commit)", restored);
            } else if (restored > 0 && "post-copy".equals(step)) {
                // its missing pages cannot come any more (the source is unreachable): it must not run on
                kill(restored);
                rep.error += "; killed restored pid " + restored + " (its missing memory cannot come)";
                say("killed restored pid %d: its missing memory cannot come", restored);
            }
            try {
                link.send(new Msg.Failed(step, MigrationSource.message(e)));
            } catch (IOException | RuntimeException ignored) {
                // the connection is what failed
            }
            return rep;
        } finally {
            rep.totalMs = (System.nanoTime() - t0) / 1e6;
            if (!o.keepWorkDir()) {
                MigrationSource.deleteTree(dir);
            }
            writeReport();
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

    private void expectCommit() throws IOException, TimeoutException {
        while (true) {
            Msg m = link.receive(o.idleTimeout(), null);
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
}
