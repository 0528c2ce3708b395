package dev.lazypages.net;

import java.nio.file.Path;

/**
 * TLS for this process's control and page connections, as CRIU's {@code --tls --tls-cert F
 * --tls-key F [--tls-cacert F]}: PEM files, the key unencrypted PKCS#8 ({@code BEGIN PRIVATE
 * KEY}, what {@code openssl req -newkey ... -nodes} writes).
 *
 * @param cert   this side's certificate chain (PEM); required to accept connections, optional to connect
 * @param key    its private key (PEM, PKCS#8)
 * @param caCert when set, the peer must present a certificate that chains to it: the server
 *               verifies clients (mutual TLS), the client verifies the server. When null, the
 *               connection is encrypted but the peer's certificate is not checked (the token
 *               alone authenticates it).
 */
public record TlsOptions(Path cert, Path key, Path caCert) {
    public TlsOptions {
        if ((cert == null) != (key == null)) {
            throw new IllegalArgumentException("--tls-cert and --tls-key go together");
        }
    }

    /** Whether this side can accept TLS connections (it has a certificate and key). */
    public boolean canAccept() {
        return cert != null;
    }
}
