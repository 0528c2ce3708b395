package dev.lazypages.cli;

import dev.lazypages.net.Tls;
import dev.lazypages.net.TlsOptions;
import java.io.IOException;
import java.nio.file.Path;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;

/**
 * CRIU's TLS flags, for every command that opens or accepts a connection: {@code --tls
 * --tls-cert F --tls-key F [--tls-cacert F]}. Both sides must agree: a plain peer of a TLS
 * side (or the reverse) is refused with a message saying so.
 */
public final class TlsMixin {
    @Option(names = "--tls", description = "Encrypt the control and page connections with TLS (both sides need it).")
    private boolean tls;

    @Option(names = "--tls-cert", paramLabel = "FILE",
            description = "With --tls: this side's certificate (PEM); needed where connections are accepted.")
    private Path cert;

    @Option(names = "--tls-key", paramLabel = "FILE",
            description = "With --tls: the certificate's private key (PEM, unencrypted PKCS#8 'BEGIN PRIVATE KEY').")
    private Path key;

    @Option(names = "--tls-cacert", paramLabel = "FILE",
            description = "With --tls: only peers whose certificate chains to this CA (PEM) are accepted, on both sides. "
                    + "Without it the peer's certificate is not checked (the token alone authenticates it).")
    private Path caCert;

    /**
     * Checks the flags and, with {@code --tls}, makes every connection of this process use TLS.
     *
     * @param accepts whether the command accepts connections (it then needs a certificate and key)
     */
    void apply(CommandSpec spec, boolean accepts) {
        if (!tls) {
            if (cert != null || key != null || caCert != null) {
                throw new CommandLine.ParameterException(spec.commandLine(), "--tls-cert, --tls-key and --tls-cacert go with --tls");
            }
            return;
        }
        if ((cert == null) != (key == null)) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--tls-cert and --tls-key go together");
        }
        if (accepts && cert == null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--tls here accepts connections: it needs "
                    + "--tls-cert and --tls-key");
        }
        try {
            Tls.useForThisProcess(Tls.of(new TlsOptions(cert, key, caCert)));
        } catch (IOException e) {
            throw new IllegalArgumentException(e.getMessage(), e);
        }
    }

    /** Whether {@code --tls} was given. */
    boolean on() {
        return tls;
    }
}
