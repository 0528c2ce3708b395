package dev.lazypages.restore;

import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.lazy.LazySource;
import java.nio.file.Path;
import java.util.List;

/**
 * Where a lazy restore hands its userfaultfd: the page server that answers the restored
 * process's faults (dev.lazypages.lazy). The restorer creates the uffd inside the target (so
 * that it belongs to the target's mm), takes it out with pidfd_getfd, closes the target's
 * copy, does UFFDIO_API with {@link #uffdFeatures()} and registers MISSING mode over every
 * private anonymous VMA, writing none of their pages. Then, with the process still frozen, it
 * calls {@link #start}; the process runs once that returns.
 */
public interface LazyHandoff {
    /** A registered range, {@code [start, end)}, page aligned. */
    record Region(long start, long end) {
        public long length() {
            return end - start;
        }
    }

    /**
     * Called before {@link #start} or {@link #startWarm} when the restored process keeps its own
     * reference to the uffd: a handoff closes it ({@link KeptUffd#release()}) once every page is
     * in, the ranges are unregistered and {@link #targetDetached()} was called. The default leaves
     * it in the process (idle, one fd).
     */
    default void targetKeeps(KeptUffd kept) {
    }

    /** Called once the restorer has detached from the running process (after {@link #targetKeeps}). */
    default void targetDetached() {
    }

    /** The UFFDIO_API features to ask for (each must be supported, or the restore fails). */
    long uffdFeatures();

    /**
     * Takes ownership of {@code uffd} (registered over {@code regions}) and starts serving the
     * faults of process {@code pid} from the image in {@code imagesDir}, whose pages are those
     * of {@code imagePid}. Must not block until the process has run: it is still frozen.
     */
    void start(int pid, int imagePid, Path imagesDir, Userfaultfd uffd, List<Region> regions) throws Exception;

    /**
     * {@link #start(int, int, Path, Userfaultfd, List)} for an image with REMOTE runs: those are
     * served from {@code remote} (the source's page server), the rest from the image, and the
     * handoff completes only once both are delivered. {@code remote} is {@code null} when the
     * image has no REMOTE runs or the restore has no remote source. A handoff that cannot serve
     * REMOTE runs keeps this default, which refuses a non-null {@code remote}.
     */
    default void start(int pid, int imagePid, Path imagesDir, Userfaultfd uffd, List<Region> regions, LazySource remote)
            throws Exception {
        if (remote != null) {
            uffd.close();
            throw new UnsupportedOperationException(getClass().getSimpleName() + " cannot serve REMOTE pages");
        }
        start(pid, imagePid, imagesDir, uffd, regions);
    }

    /**
     * Starts serving a process built warm ({@link WarmRestore}): every page but those of
     * {@code missing} is in its memory already, so only {@code missing}'s stored runs (the
     * source's REMOTE pages) are served, from {@code missing}; any other fault in {@code regions}
     * is a page never populated (zero). {@code missing} is {@code null} when nothing is left at
     * the source. {@code resources} (or null) are closed once serving ends. A handoff that cannot
     * do this keeps this default, which refuses.
     */
    default void startWarm(int pid, Userfaultfd uffd, List<Region> regions, LazySource missing, AutoCloseable resources)
            throws Exception {
        uffd.close();
        if (resources != null) {
            resources.close();
        }
        throw new UnsupportedOperationException(getClass().getSimpleName() + " cannot serve a warm restore");
    }
}
