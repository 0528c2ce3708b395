package dev.lazypages.migrate;

import dev.lazypages.dump.FrozenProcess;
import dev.lazypages.lazy.LazySource;
import dev.lazypages.lazy.RemoteLazySource;
import dev.lazypages.net.PageClient;
import dev.lazypages.net.PageProvider;
import dev.lazypages.net.PageServer;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.List;

/** {@link PagePlane} over dev.lazypages.net's {@link PageServer}, {@link PageClient} and {@link RemoteLazySource}. */
final class NetPagePlane implements PagePlane {
    @Override
    public Server serve(InetAddress bind, java.util.function.Supplier<FrozenProcess> frozen, String token) throws IOException {
        PageProvider provider = new PageProvider() {
            @Override
            public int pageSize() {
                return (int) dev.lazypages.ffm.Posix.pageSize();
            }

            @Override
            public void readPages(long vaddr, int nrPages, ByteBuffer directDst) throws IOException {
                FrozenProcess f = frozen.get();
                if (f == null) {
                    throw new IOException("no frozen process to read pages from yet");
                }
                try {
                    f.readPages(vaddr, nrPages, directDst);
                } catch (RuntimeException e) {
                    throw new IOException(e.getMessage(), e);
                }
            }
        };
        PageServer s = PageServer.start(new InetSocketAddress(bind, 0), provider, token);
        return Server.of(() -> s.localAddress().getPort(), s::done, s::serveLatency, s::idleNanos, s::close);
    }

    @Override
    public Client connect(InetSocketAddress server, String token, List<LazySource.Run> runs, java.time.Duration recoverTimeout)
            throws IOException {
        return connectEarly(server, token, recoverTimeout).withRuns(runs);
    }

    /** Connects (and authenticates) the page client now; {@link Early#withRuns} only builds the source over it. */
    @Override
    public Early connectEarly(InetSocketAddress server, String token, java.time.Duration recoverTimeout) throws IOException {
        PageClient c = PageClient.connect(server, token, PageClient.Options.defaults().withRecoverTimeout(recoverTimeout));
        return new Early() {
            private boolean taken;

            @Override
            public synchronized Client withRuns(List<LazySource.Run> runs) {
                if (taken) {
                    throw new IllegalStateException("the early page client was taken already");
                }
                taken = true;
                return client(c, runs);
            }

            @Override
            public synchronized void close() {
                if (!taken) {
                    taken = true;
                    c.close();
                }
            }
        };
    }

    private static Client client(PageClient c, List<LazySource.Run> runs) {
        RemoteLazySource src;
        try {
            src = new RemoteLazySource(c, runs);
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
        return new Client() {
            @Override
            public LazySource source() {
                return src;
            }

            @Override
            public void done() throws IOException {
                c.done();
            }

            @Override
            public void close() {
                try {
                    src.close();
                } finally {
                    c.close();
                }
            }
        };
    }
}
