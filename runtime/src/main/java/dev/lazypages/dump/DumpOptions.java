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
 * @param prevImagesDir  the parent image (a pre-dump) this dump is incremental to, or {@code null}
 *                       (CRIU's {@code --prev-images-dir})
 * @param trackMem       the dirty tracker asked for ({@code auto}, {@code pagemap-scan},
 *                       {@code soft-dirty}, {@code none}; CRIU's {@code --track-mem})
 */
public record DumpOptions(Path imagesDir, boolean leaveRunning, UnsupportedFds unsupportedFds, Consumer<String> progress,
                          Path prevImagesDir, String trackMem) {
    public DumpOptions {
        Objects.requireNonNull(imagesDir, "imagesDir");
        Objects.requireNonNull(unsupportedFds, "unsupportedFds");
        progress = progress != null ? progress : line -> { };
        trackMem = trackMem != null ? trackMem : Trackings.AUTO;
    }

    public DumpOptions(Path imagesDir, boolean leaveRunning, UnsupportedFds unsupportedFds, Consumer<String> progress) {
        this(imagesDir, leaveRunning, unsupportedFds, progress, null, null);
    }

    /** Kill after the dump, refuse unsupported fds, no progress. */
    public static DumpOptions of(Path imagesDir) {
        return new DumpOptions(imagesDir, false, UnsupportedFds.REFUSE, null);
    }

    public DumpOptions withImagesDir(Path dir) {
        return new DumpOptions(dir, leaveRunning, unsupportedFds, progress, prevImagesDir, trackMem);
    }

    public DumpOptions withLeaveRunning(boolean leave) {
        return new DumpOptions(imagesDir, leave, unsupportedFds, progress, prevImagesDir, trackMem);
    }

    public DumpOptions withUnsupportedFds(UnsupportedFds fds) {
        return new DumpOptions(imagesDir, leaveRunning, fds, progress, prevImagesDir, trackMem);
    }

    public DumpOptions withProgress(Consumer<String> p) {
        return new DumpOptions(imagesDir, leaveRunning, unsupportedFds, p, prevImagesDir, trackMem);
    }

    public DumpOptions withPrevImagesDir(Path prev) {
        return new DumpOptions(imagesDir, leaveRunning, unsupportedFds, progress, prev, trackMem);
    }

    public DumpOptions withTrackMem(String mode) {
        return new DumpOptions(imagesDir, leaveRunning, unsupportedFds, progress, prevImagesDir, mode);
    }
}
