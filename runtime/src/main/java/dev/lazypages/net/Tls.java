package dev.lazypages.net;

import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import io.netty.handler.ssl.util.InsecureTrustManagerFactory;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The TLS contexts built from {@link TlsOptions} (Netty's SslHandler on the JDK provider, no
 * native TLS library), and the one this process uses for every connection it opens or accepts.
 *
 * <p>A command line sets it once ({@link #useForThisProcess}) before it connects or listens;
 * {@link ControlServer}, {@link ControlClient}, {@link PageServer} and {@link PageClient} take
 * it from there through {@link Transport} when they start, so the layers between the command
 * line and the sockets (migration, lazy restore, the relay) need not know about TLS. Without
 * it (the default) no TLS handler is added anywhere: the fault path is as it was.
 */
public final class Tls {
    private static final System.Logger LOG = System.getLogger(Tls.class.getName());
    private static volatile Tls processDefault;

    private final TlsOptions options;
    private final SslContext server;
    private final SslContext client;

    private Tls(TlsOptions options, SslContext server, SslContext client) {
        this.options = options;
        this.server = server;
        this.client = client;
    }

    /**
     * Reads the PEM files of {@code o} and builds the contexts.
     *
     * @throws IOException naming the file and what is wrong with it (missing, unreadable, not PEM, not PKCS#8)
     */
    public static Tls of(TlsOptions o) throws IOException {
        for (Path p : new Path[] {o.cert(), o.key(), o.caCert()}) {
            if (p != null && !Files.isReadable(p)) {
                throw new IOException("TLS: cannot read " + p + (Files.exists(p) ? " (permission denied)" : " (no such file)"));
            }
        }
        SslContext server = null;
        if (o.canAccept()) {
            try {
                SslContextBuilder b = SslContextBuilder.forServer(o.cert().toFile(), o.key().toFile()).sslProvider(SslProvider.JDK);
                if (o.caCert() != null) {
                    b.trustManager(o.caCert().toFile()).clientAuth(ClientAuth.REQUIRE);
                }
                server = b.build();
            } catch (Exception e) {
                throw new IOException("TLS: cannot use certificate " + o.cert() + " with key " + o.key() + " (PEM, key in "
                        + "PKCS#8 'BEGIN PRIVATE KEY', unencrypted): " + oneLine(e), e);
            }
        }
        SslContext client;
        try {
            SslContextBuilder b = SslContextBuilder.forClient().sslProvider(SslProvider.JDK);
            if (o.canAccept()) {
                b.keyManager(o.cert().toFile(), o.key().toFile());
            }
            if (o.caCert() != null) {
                b.trustManager(o.caCert().toFile());
            } else {
                b.trustManager(InsecureTrustManagerFactory.INSTANCE);
            }
            client = b.build();
        } catch (Exception e) {
            throw new IOException("TLS: cannot use " + (o.caCert() != null ? "CA certificate " + o.caCert() : "certificate "
                    + o.cert()) + ": " + oneLine(e), e);
        }
        return new Tls(o, server, client);
    }

    /** Every connection of this process uses {@code tls} from now on (null: none). */
    public static void useForThisProcess(Tls tls) {
        processDefault = tls;
        if (tls != null && tls.options.caCert() == null) {
            LOG.log(System.Logger.Level.WARNING, "TLS without --tls-cacert: connections are encrypted, but the peer's "
                    + "certificate is not verified (the token alone authenticates it)");
        }
    }

    /** What this process uses (null: plain TCP). */
    public static Tls forThisProcess() {
        return processDefault;
    }

    public TlsOptions options() {
        return options;
    }

    /** The context to accept with. */
    SslContext server() throws IOException {
        if (server == null) {
            throw new IOException("TLS: accepting connections needs --tls-cert and --tls-key");
        }
        return server;
    }

    /** The context to connect with. */
    SslContext client() {
        return client;
    }

    static String oneLine(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null && t.getCause() != t) {
            t = t.getCause();
        }
        String m = t == e ? String.valueOf(e) : e.getMessage() + ": " + t;
        return m.replaceAll("\\s+", " ");
    }
}
