package dev.lazypages.net;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** Self-signed certificates made with openssl at test time (EC P-256, PKCS#8 key, valid a day, for 127.0.0.1). */
public final class TlsFixture {
    /** A certificate, its key, and whether to trust it as a CA (a self-signed one is its own). */
    public record Pem(Path cert, Path key) {
        public TlsOptions verifying(Pem ca) {
            return new TlsOptions(cert, key, ca.cert());
        }

        public TlsOptions unverified() {
            return new TlsOptions(cert, key, null);
        }
    }

    private TlsFixture() {
    }

    /** Writes {@code name}-cert.pem and {@code name}-key.pem into {@code dir}, for 127.0.0.1 and localhost. */
    public static Pem selfSigned(Path dir, String name) throws IOException, InterruptedException {
        return selfSigned(dir, name, "IP:127.0.0.1,DNS:localhost");
    }

    /** The same, for the names of {@code subjectAltName} (openssl's syntax: "IP:10.0.0.1,DNS:host"). */
    public static Pem selfSigned(Path dir, String name, String subjectAltName) throws IOException, InterruptedException {
        Path cert = dir.resolve(name + "-cert.pem");
        Path key = dir.resolve(name + "-key.pem");
        Process p = new ProcessBuilder("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", key.toString(), "-out", cert.toString(), "-days", "1", "-subj", "/CN=" + name,
                "-addext", "subjectAltName=" + subjectAltName).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new IOException("openssl req failed: " + out);
        }
        return new Pem(cert, key);
    }
}
