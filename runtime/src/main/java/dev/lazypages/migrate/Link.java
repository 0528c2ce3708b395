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
     * Starts sending round {@code round} as the directory {@code dirName} while it is being taken:
     * its pages go through {@link RoundOut#pages()} as they are read, {@link RoundOut#finish} sends
     * the rest of the directory. This default sends nothing until finish (pages.img is written
     * into the directory, which is then sent whole).
     */
    default RoundOut startRound(int round, String dirName) throws IOException {
        return new RoundOut() {
            @Override
            public dev.lazypages.image.ImageWriter.PagesOut pages() {
                return null;
            }

            @Override
            public long finish(Path dir) throws IOException {
                return sendDirectory(round, dir);
            }
        };
    }

    /** A round on its way (see {@link #startRound}). */
    interface RoundOut {
        /** Where the round's pages.img goes as it is written, or null: into the directory. */
        dev.lazypages.image.ImageWriter.PagesOut pages();

        /** Sends the rest of the directory {@code dir}; returns the bytes of the whole round. */
        long finish(Path dir) throws IOException;
    }

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
