package dev.lazypages.restore;

import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.image.ImageReader;
import dev.lazypages.lazy.AddressRange;
import dev.lazypages.lazy.CompositeLazySource;
import dev.lazypages.lazy.ImageLazySource;
import dev.lazypages.lazy.LazyPageServer;
import dev.lazypages.lazy.LazySource;
import dev.lazypages.lazy.LazyStats;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * A lazy restore from a local image: the restored process's faults (and a background sweep)
 * are served by a {@link LazyPageServer} reading the image with an {@link ImageLazySource}.
 * After {@link Restorer#restore} returns, {@link #completion()} completes when every stored
 * page is in place (or the process exited); {@link #close()} stops serving early.
 */
public final class ImageLazyHandoff implements LazyHandoff, AutoCloseable {
    private static final System.Logger LOG = System.getLogger(ImageLazyHandoff.class.getName());
    private final LazyPageServer.Options serverOptions;
    private ImageReader reader;
    private ImageLazySource source;
    private LazyPageServer server;
    private long remotePages;
    private AutoCloseable warmResources;
    private final CompletableFuture<LazyStats> completion = new CompletableFuture<>();
    private KeptUffd kept;
    private boolean detached;
    private LazyStats serverStats;

    public ImageLazyHandoff() {
        this(LazyPageServer.Options.defaults());
    }

    public ImageLazyHandoff(LazyPageServer.Options serverOptions) {
        this.serverOptions = serverOptions;
    }

    /**
     * REMOVE and UNMAP (a stale copy must never undo a DONTNEED or munmap), REMAP (mremap'd memory),
     * FORK (a child forked during the lazy restore is served too, see {@link LazyPageServer}).
     */
    @Override
    public long uffdFeatures() {
        return Userfaultfd.FEATURE_EVENT_REMOVE | Userfaultfd.FEATURE_EVENT_UNMAP | Userfaultfd.FEATURE_EVENT_REMAP
                | Userfaultfd.FEATURE_EVENT_FORK;
    }

    @Override
    public synchronized void start(int pid, int imagePid, Path imagesDir, Userfaultfd uffd, List<Region> regions)
            throws IOException {
        start(pid, imagePid, imagesDir, uffd, regions, null);
    }

    /**
     * Serves the image's PRESENT and IN_PARENT pages from the image and its REMOTE pages from
     * {@code remote} through one {@link CompositeLazySource}; {@link #completion()} completes
     * once every local and remote page is delivered (then the caller tells the source, e.g. the
     * migration layer sends DONE).
     *
     * @throws IllegalArgumentException the image has REMOTE runs and {@code remote} is {@code null}
     */
    @Override
    public synchronized void start(int pid, int imagePid, Path imagesDir, Userfaultfd uffd, List<Region> regions,
                                   LazySource remote) throws IOException {
        try {
            reader = ImageReader.open(imagesDir);
            source = ImageLazySource.open(reader, imagePid);
            LazySource served = source;
            if (!source.remoteRuns().isEmpty()) {
                if (remote == null) {
                    throw new IllegalArgumentException("image " + imagesDir + " has REMOTE pages and no remote source serves them");
                }
                CompositeLazySource c = new CompositeLazySource(source, remote, source.remoteRuns());
                remotePages = c.remotePages();
                served = c;
            }
            List<AddressRange> ranges = regions.stream().map(r -> new AddressRange(r.start(), r.end())).toList();
            server = new LazyPageServer(uffd, ranges, served, serverOptions.withTargetPid(pid)).start();
        } catch (IOException | RuntimeException e) {
            if (server == null) {
                uffd.close();
            }
            closeSources();
            throw e;
        }
        finishWithServer();
    }

    /** See {@link LazyHandoff#startWarm}: the server reads only {@code missing} (no image is opened here). */
    @Override
    public synchronized void startWarm(int pid, Userfaultfd uffd, List<Region> regions, LazySource missing,
                                       AutoCloseable resources) {
        LazySource served = missing != null ? missing : new NothingStored(Math.toIntExact(dev.lazypages.ffm.Posix.pageSize()));
        warmResources = resources;
        try {
            // served: REMOTE runs, local pages (with resources to close), or both (composite)
            remotePages = missing instanceof CompositeLazySource c ? c.remotePages() : resources != null ? 0
                    : served.storedRuns().stream().mapToLong(LazySource.Run::nrPages).sum();
            List<AddressRange> ranges = regions.stream().map(r -> new AddressRange(r.start(), r.end())).toList();
            server = new LazyPageServer(uffd, ranges, served, serverOptions.withTargetPid(pid)).start();
        } catch (RuntimeException e) {
            if (server == null) {
                uffd.close();
            }
            closeSources();
            throw e;
        }
        finishWithServer();
    }

    /**
     * When the server completes: the sources closed; then, once every page is in and the restorer
     * has let the process go, the target's own reference to the uffd (if any) closed inside it;
     * then {@link #completion()}.
     */
    private void finishWithServer() {
        server.completion().whenComplete((stats, err) -> {
            closeSources();
            if (err != null) {
                completion.completeExceptionally(err);
                return;
            }
            synchronized (this) {
                serverStats = stats;
            }
            finishIfReady();
        });
    }

    private void finishIfReady() {
        KeptUffd k;
        LazyStats stats;
        synchronized (this) {
            if (serverStats == null || kept != null && !detached || completion.isDone()) {
                return;
            }
            k = kept;
            kept = null;
            stats = serverStats;
        }
        if (k != null && !stats.targetExited()) {
            try {
                k.release();
            } catch (RuntimeException e) { // e.g. another tracer attached: one idle fd stays in the process
                LOG.log(System.Logger.Level.WARNING, "pid " + k.pid() + " keeps its idle userfaultfd at fd " + k.fd()
                        + " (a dump of it will refuse that fd): " + e.getMessage());
            }
        }
        completion.complete(stats);
    }

    @Override
    public synchronized void targetKeeps(KeptUffd k) {
        kept = k;
    }

    /** The restorer has detached: the kept uffd can be closed (it cannot be seized before), see {@link #finishIfReady}. */
    @Override
    public void targetDetached() {
        synchronized (this) {
            detached = true;
        }
        finishIfReady();
    }

    /** A source with no stored page: every fault is a page never populated. */
    private record NothingStored(int pageSize) implements LazySource {
        @Override
        public List<Run> storedRuns() {
            return List.of();
        }

        @Override
        public void readPages(long vaddr, int nrPages, dev.lazypages.ffm.PageBuffer dst, long dstOffset) {
            throw new IllegalArgumentException("no page is stored here (0x" + Long.toHexString(vaddr) + ")");
        }
    }

    /** Whether serving started (a warm, eager restore starts it only when pages were left to it). */
    public synchronized boolean started() {
        return server != null;
    }

    /** Stored pages the lazy page server has not delivered (or dropped) yet; -1 before it started. */
    public synchronized long pendingPages() {
        return server == null ? -1 : server.pendingPages();
    }

    /** Pages served from the remote source (REMOTE runs of the image); 0 without. */
    public synchronized long remotePages() {
        return remotePages;
    }

    /** Completes with the server's statistics once every stored page is delivered (or the target exited). */
    public CompletableFuture<LazyStats> completion() {
        return completion;
    }

    private synchronized void closeSources() {
        if (warmResources != null) {
            try {
                warmResources.close();
            } catch (Exception ignored) {
                // read-only files
            }
            warmResources = null;
        }
        if (source != null) {
            source.close();
            source = null;
        }
        if (reader != null) {
            try {
                reader.close();
            } catch (IOException ignored) {
                // read-only
            }
            reader = null;
        }
    }

    /** Stops serving (the process should be dead or done: its faults on unserved pages block, see LazyPageServer#close). */
    @Override
    public void close() {
        LazyPageServer s;
        synchronized (this) {
            s = server;
        }
        try {
            if (s != null) {
                s.close();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            closeSources();
            // every page in, but the restorer never let the process go (it failed): nothing waits for that any more
            completion.completeExceptionally(new dev.lazypages.lazy.LazyPagesException("closed before completion"));
        }
    }
}
