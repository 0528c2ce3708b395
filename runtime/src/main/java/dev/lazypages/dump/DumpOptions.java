package dev.lazypages.dump;

import java.nio.file.Path;
import java.util.Objects;
import java.util.function.Consumer;

/**
 * What {@link Dumper#dump} does.
 *
 * @param imagesDir      the image directory: created if missing, refused when not empty
 * @param leaveRunning   thaw and detach after the dump instead of killing the process (CRIU's
 *                       {@code --leave-running})
 * @param unsupportedFds what to do with descriptors other than regular files and /dev/null
 * @param progress       receives one line per step (for a terminal); never null
 */
public record DumpOptions(Path imagesDir, boolean leaveRunning, UnsupportedFds unsupportedFds, Consumer<String> progress) {
    public DumpOptions {
        Objects.requireNonNull(imagesDir, "imagesDir");
        Objects.requireNonNull(unsupportedFds, "unsupportedFds");
        progress = progress != null ? progress : line -> { };
    }

    /** Kill after the dump, refuse unsupported fds, no progress. */
    public static DumpOptions of(Path imagesDir) {
        return new DumpOptions(imagesDir, false, UnsupportedFds.REFUSE, null);
    }

    public DumpOptions withLeaveRunning(boolean leave) {
        return new DumpOptions(imagesDir, leave, unsupportedFds, progress);
    }

    public DumpOptions withUnsupportedFds(UnsupportedFds fds) {
        return new DumpOptions(imagesDir, leaveRunning, fds, progress);
    }

    public DumpOptions withProgress(Consumer<String> p) {
        return new DumpOptions(imagesDir, leaveRunning, unsupportedFds, p);
    }
}
