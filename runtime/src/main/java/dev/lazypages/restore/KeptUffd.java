package dev.lazypages.restore;

import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.TracerThread;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The restored process's own reference to its userfaultfd (see {@link Restorer}): while it
 * exists, a page server that dies (kill -9) leaves the registered ranges in place, so threads
 * touching a missing page block in the kernel instead of reading zeros. Once every page is in,
 * {@link #release()} closes it inside the process (seize, freeze a few ms, an injected close,
 * detach), so nothing of the restore is left in the process: a later dump finds no userfaultfd.
 *
 * @param pid   the restored process
 * @param fd    the fd number in the process
 * @param inode the inode of the userfaultfd (each has its own anonymous inode), checked before
 *              closing: the process may have closed the fd and opened something else under the
 *              same number since
 */
public record KeptUffd(int pid, int fd, long inode) {
    static final String LINK = "anon_inode:[userfaultfd]";

    /** The inode of the userfaultfd behind {@code ourFd} in this process. */
    static long inodeOf(int ourFd) throws IOException {
        return (Long) Files.getAttribute(Path.of("/proc/self/fd/" + ourFd), "unix:ino");
    }

    /** Whether the process still has this userfaultfd at {@link #fd}. */
    public boolean present() {
        Path link = Path.of("/proc", Integer.toString(pid), "fd", Integer.toString(fd));
        try {
            return Files.readSymbolicLink(link).toString().equals(LINK)
                    && (Long) Files.getAttribute(link, "unix:ino") == inode;
        } catch (IOException | RuntimeException e) {
            return false; // closed, or the process is gone
        }
    }

    /**
     * Closes the fd inside the process if it is still this userfaultfd; nothing if the process
     * has exited or closed it. The ranges must be unregistered first (else its faults would then
     * be zero filled).
     *
     * @return whether it was closed here
     * @throws RuntimeException seizing failed (e.g. another tracer is attached): the fd stays
     */
    public boolean release() {
        if (!present()) {
            return false;
        }
        try (TracerThread tracer = new TracerThread("lp-release-" + pid);
             SeizedProcess sp = SeizedProcess.seize(pid, tracer)) {
            sp.freeze();
            if (!present()) { // checked again with every thread stopped
                return false;
            }
            sp.syscalls(sp.threads().getFirst()).close(fd);
            return true;
        }
    }
}
