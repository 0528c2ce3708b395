package dev.lazypages.criu;

import dev.lazypages.ffm.Posix;
import dev.lazypages.image.ImageReader;
import dev.lazypages.lazy.ImageLazySource;
import dev.lazypages.lazy.LazySource;
import dev.lazypages.lazy.LazyStats;
import dev.lazypages.lazy.RemoteLazySource;
import dev.lazypages.net.HandshakeException;
import dev.lazypages.net.PageClient;
import dev.lazypages.restore.ImageLazyHandoff;
import dev.lazypages.restore.Restorer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletionException;
import java.util.function.Consumer;

/**
 * {@code restore --lazy-pages}, CRIU's lazy restore on the destination: the process is
 * rebuilt from the image in DIR and runs at once; its REMOTE pages come over the network from
 * the page server of {@code dump --lazy-pages} (or from a {@code lazy-pages --page-server}
 * relay, which speaks the same protocol), faults first and the rest in the background. Once
 * every page is in, DONE tells the page server, whose side then ends the frozen original.
 *
 * <p>The page server is connected (and the token checked) before anything is restored: a
 * refused or unreachable page server fails here with nothing started, and the source, which
 * never gets DONE, rolls back after its lazy timeout.
 */
public final class LazyRestore {
    /** What ran. */
    public record Result(int pid, Restorer.Result restore, long remotePages, LazyStats stats) {
    }

    private LazyRestore() {
    }

    /** Connected to the page server, not yet restored. */
    public static final class Session implements AutoCloseable {
        private final Path dir;
        private final PageClient client;
        private final RemoteLazySource remote;
        private final long remotePages;
        private ImageLazyHandoff handoff;
        private Restorer.Result restored;

        private Session(Path dir, PageClient client, RemoteLazySource remote, long remotePages) {
            this.dir = dir;
            this.client = client;
            this.remote = remote;
            this.remotePages = remotePages;
        }

        /** REMOTE pages of the image (to come from the page server). */
        public long remotePages() {
            return remotePages;
        }

        /** Rebuilds the process and lets it run; its REMOTE pages are served lazily. */
        public Restorer.Result restore(Path stub, Consumer<String> progress) {
            handoff = new ImageLazyHandoff();
            Restorer.Options ro = Restorer.Options.eager(dir).withStub(stub).withRemote(remote).withLazy(handoff);
            if (progress != null) {
                ro = ro.withProgress(progress);
            }
            restored = Restorer.restore(ro);
            return restored;
        }

        /** Waits until every page is in place, then sends DONE to the page server. */
        public Result finish() throws IOException {
            if (restored == null) {
                throw new IllegalStateException("not restored");
            }
            LazyStats stats;
            try {
                stats = handoff.completion().join();
            } catch (CompletionException e) {
                // its missing pages will never come (and would read as zeros once the uffd is gone): never let it run on
                try {
                    Posix.kill(restored.pid(), Posix.SIGKILL);
                } catch (RuntimeException gone) {
                    // exited already
                }
                throw new IOException("lazy pages of pid " + restored.pid() + " failed, killed it: "
                        + e.getCause().getMessage(), e.getCause());
            }
            client.done();
            return new Result(restored.pid(), restored, remotePages, stats);
        }

        /** Closes the page connections (without DONE unless {@link #finish} ran). */
        @Override
        public void close() {
            try {
                if (handoff != null && restored == null) {
                    handoff.close();
                }
                remote.close();
            } finally {
                client.close();
            }
        }
    }

    /**
     * Reads the REMOTE runs of the image in {@code dir} and connects to the page server at
     * {@code server} with {@code token}.
     *
     * @throws IOException the page server is unreachable or refused the token (the message says which)
     */
    public static Session connect(Path dir, InetSocketAddress server, String token) throws IOException {
        return connect(dir, server, token, PageClient.Options.DEFAULT_RECOVER_TIMEOUT);
    }

    /**
     * As {@link #connect(Path, InetSocketAddress, String)}; a page connection lost during the lazy
     * restore is retried for {@code recoverTimeout}, then the restored process is killed.
     */
    public static Session connect(Path dir, InetSocketAddress server, String token, java.time.Duration recoverTimeout)
            throws IOException {
        List<LazySource.Run> runs;
        try (ImageReader r = ImageReader.open(dir)) {
            int imagePid = r.image().processes().getProcesses(0).getPid();
            try (ImageLazySource s = ImageLazySource.open(r, imagePid)) {
                runs = s.remoteRuns();
            }
        }
        long pages = runs.stream().mapToLong(LazySource.Run::nrPages).sum();
        PageClient c;
        try {
            c = PageClient.connect(server, token, PageClient.Options.defaults().withRecoverTimeout(recoverTimeout));
        } catch (HandshakeException e) {
            throw new IOException("page server " + server.getHostString() + ":" + server.getPort() + " refused us: "
                    + e.reason(), e);
        }
        try {
            return new Session(dir, c, new RemoteLazySource(c, runs), pages);
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
    }
}
