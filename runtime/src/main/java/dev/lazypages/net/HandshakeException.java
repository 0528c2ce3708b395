package dev.lazypages.net;

import java.io.IOException;

/**
 * A control or page connection was refused during its handshake, by this side or by the peer.
 * {@link #reason()} is the reason as sent in the Refuse message (e.g. "token mismatch").
 */
public final class HandshakeException extends IOException {
    private final String reason;
    private final boolean byPeer;

    public HandshakeException(String reason, boolean byPeer) {
        super((byPeer ? "refused by peer: " : "refused peer: ") + reason);
        this.reason = reason;
        this.byPeer = byPeer;
    }

    public HandshakeException(String message, Throwable cause) {
        super(message, cause);
        this.reason = message;
        this.byPeer = false;
    }

    /** The reason alone, as sent on the wire. */
    public String reason() {
        return reason;
    }

    /** True when the peer refused us; false when this side refused the peer (or the handshake broke). */
    public boolean byPeer() {
        return byPeer;
    }
}
