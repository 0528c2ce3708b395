package dev.lazypages.migrate;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeoutException;

/**
 * One end of a migration's control connection, as {@link MigrationSource} and
 * {@link MigrationDestination} use it: messages, and image directories sent as file chunks.
 */
public interface Link extends AutoCloseable {
    void send(Msg m) throws IOException;

    /** Sends the image directory {@code dir} (its files, then a done marker) as round {@code round}; returns the bytes sent. */
    long sendDirectory(int round, Path dir) throws IOException;

    /**
     * The next message; a directory arriving is written under {@code dirParent} (by its name)
     * and returned as {@link Msg.DirectoryArrived}.
     *
     * @throws TimeoutException nothing arrived in time
     * @throws IOException      the connection was lost or closed (message names why)
     */
    Msg receive(Duration timeout, Path dirParent) throws IOException, TimeoutException;

    /** Whether the connection is gone. */
    boolean closed();

    /** This end's address (the page server binds there). */
    InetAddress localAddress();

    /** The peer's address (the page client connects there). */
    InetAddress peerAddress();

    @Override
    void close();
}
