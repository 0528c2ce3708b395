package dev.lazypages.net;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.concurrent.LinkedBlockingQueue;

/** A {@link ControlServer.Handler} that keeps what it is given, for tests to poll. */
final class RecordingHandler implements ControlServer.Handler {
    final LinkedBlockingQueue<ControlConnection> accepted = new LinkedBlockingQueue<>();
    final LinkedBlockingQueue<IOException> refused = new LinkedBlockingQueue<>();

    @Override
    public void accepted(ControlConnection c) {
        accepted.add(c);
    }

    @Override
    public void refused(InetSocketAddress peer, IOException why) {
        refused.add(why);
    }
}
