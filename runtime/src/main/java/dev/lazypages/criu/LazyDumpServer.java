package dev.lazypages.criu;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.dump.FrozenProcess;
import dev.lazypages.net.PageProvider;
import dev.lazypages.net.PageServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;

/**
 * {@code dump --lazy-pages --address A --port P}, CRIU's lazy migration on the source: the
 * process is dumped without its memory ({@link Dumper#dumpLazy}: every page REMOTE, the
 * process frozen and seized), a {@link PageServer} on A:P serves those pages straight from the
 * frozen process, and once the destination sends DONE (it has every page) the original is
 * killed. If no page request comes for {@link Options#lazyTimeout} (the destination never
 * connected, was refused, or went away without DONE), the process is resumed instead and runs
 * on as before. If this JVM is killed, the original stops (a SIGSTOP queued once the image is
 * complete) instead of running beside a restored copy, as CRIU leaves its frozen tasks.
 */
public final class LazyDumpServer {
    /** How the lazy dump ended. */
    public enum Outcome {
        /** DONE received; the original is gone. */
        MIGRATED,
        /** Timed out; the original runs on. */
        ROLLED_BACK
    }

    /**
     * @param bind        where the page server listens (port 0: any)
     * @param token       the token page clients must present
     * @param statusFd    descriptor to write one byte to once the page server listens; -1 for none
     * @param lazyTimeout give up (resume) after this long without a page request and without DONE
     * @param progress    one line per step
     * @param onListening called with the bound address once the page server listens (before the status byte)
     */
    public record Options(InetSocketAddress bind, String token, int statusFd, Duration lazyTimeout,
                          Consumer<String> progress, Consumer<InetSocketAddress> onListening) {
        public Options {
            Objects.requireNonNull(bind, "bind");
            Objects.requireNonNull(token, "token");
            if (lazyTimeout == null || lazyTimeout.isNegative() || lazyTimeout.isZero()) {
                throw new IllegalArgumentException("--lazy-timeout must be positive");
            }
            if (progress == null) {
                progress = s -> { };
            }
            if (onListening == null) {
                onListening = a -> { };
            }
        }
    }

    /**
     * @param remotePages pages the image left REMOTE (what the page server had to offer)
     * @param servedPages pages sent by the page server
     * @param frozenMs    freeze to kill (or resume)
     * @param reason      why it rolled back; null when migrated
     */
    public record Result(Outcome outcome, int pid, InetSocketAddress address, long remotePages, long servedPages,
                         long refusedConnections, double frozenMs, String reason) {
    }

    private LazyDumpServer() {
    }

    /**
     * Dumps {@code pid} lazily into {@code dump.imagesDir()}, serves its pages and waits for the
     * destination.
     *
     * @throws IllegalArgumentException no such process, or the directory is not empty (nothing touched)
     * @throws dev.lazypages.dump.DumpException the dump failed (the process runs on)
     * @throws IOException the page server cannot listen (the process was resumed)
     */
    public static Result run(int pid, DumpOptions dump, Options o) throws IOException {
        FrozenProcess f = Dumper.dumpLazy(pid, dump);
        PageServer server;
        ActivityProvider provider = new ActivityProvider(f);
        try {
            server = PageServer.start(o.bind(), provider, o.token());
        } catch (IOException | RuntimeException e) {
            f.resume();
            throw e;
        }
        try {
            InetSocketAddress at = server.localAddress();
            o.progress().accept(String.format("pid %d frozen, %d pages (%.1f MiB) left REMOTE in %s; page server on %s:%d",
                    pid, f.remote().pageCount(), f.remote().pageCount() * (double) f.pageSize() / 1048576.0, f.imagesDir(),
                    at.getAddress().getHostAddress(), at.getPort()));
            o.onListening().accept(at);
            // the image is complete: a restore may start from here on, so this JVM dying must not
            // let the original run beside it (a rollback's resume withdraws the stop)
            f.stopIfTracerDies();
            StatusFd.signal(o.statusFd());
            long timeout = o.lazyTimeout().toNanos();
            provider.touch();
            while (true) {
                try {
                    server.done().get(200, TimeUnit.MILLISECONDS);
                    break;
                } catch (TimeoutException e) {
                    long idle = System.nanoTime() - provider.lastActivity;
                    if (idle >= timeout) {
                        String reason = rollbackReason(server, o.lazyTimeout());
                        server.close();
                        f.resume();
                        return new Result(Outcome.ROLLED_BACK, pid, at, f.remote().pageCount(), server.servedPages(),
                                server.refusedConnections(), f.frozenNanos() / 1e6, reason);
                    }
                } catch (ExecutionException e) {
                    throw new IllegalStateException("page server failed: " + e.getCause(), e.getCause());
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    server.close();
                    f.resume();
                    return new Result(Outcome.ROLLED_BACK, pid, at, f.remote().pageCount(), server.servedPages(),
                            server.refusedConnections(), f.frozenNanos() / 1e6, "interrupted");
                }
            }
            f.commitAndKill();
            server.close();
            return new Result(Outcome.MIGRATED, pid, at, f.remote().pageCount(), server.servedPages(),
                    server.refusedConnections(), f.frozenNanos() / 1e6, null);
        } finally {
            server.close();
            f.close(); // resumes a process neither committed nor resumed (an unexpected failure)
        }
    }

    private static String rollbackReason(PageServer s, Duration timeout) {
        String what;
        if (s.servedRequests() > 0) {
            what = "the destination stopped asking for pages without sending DONE";
        } else if (s.refusedConnections() > 0) {
            what = "the page server refused " + s.refusedConnections() + " connection(s) (wrong token?) and no page was asked for";
        } else {
            what = "the destination never asked for a page";
        }
        String t = timeout.toMillis() % 1000 == 0 ? timeout.toSeconds() + " s" : timeout.toMillis() + " ms";
        return what + " within the lazy timeout of " + t;
    }

    /** Reads the frozen process's pages and notes when it last did (the idle clock of the lazy timeout). */
    private static final class ActivityProvider implements PageProvider {
        private final FrozenProcess frozen;
        volatile long lastActivity = System.nanoTime();

        ActivityProvider(FrozenProcess frozen) {
            this.frozen = frozen;
        }

        void touch() {
            lastActivity = System.nanoTime();
        }

        @Override
        public int pageSize() {
            return frozen.pageSize();
        }

        @Override
        public void readPages(long vaddr, int nrPages, ByteBuffer directDst) throws IOException {
            touch();
            try {
                frozen.readPages(vaddr, nrPages, directDst);
            } catch (RuntimeException e) {
                throw new IOException(e.getMessage(), e);
            } finally {
                touch();
            }
        }
    }
}
