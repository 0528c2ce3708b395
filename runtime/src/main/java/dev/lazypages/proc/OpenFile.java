package dev.lazypages.proc;

/**
 * One open file descriptor of a process, from /proc/PID/fd and /proc/PID/fdinfo.
 *
 * @param fd     the descriptor number
 * @param target what the fd link points to: a path, {@code pipe:[ino]}, {@code socket:[ino]},
 *               {@code anon_inode:[eventfd]} and so on
 * @param flags  the open flags (fdinfo "flags", octal there), O_CLOEXEC included
 * @param pos    the file position (fdinfo "pos")
 * @param type   the kind of file, from the target
 */
public record OpenFile(int fd, String target, int flags, long pos, Type type) {
    /** What the descriptor refers to. */
    public enum Type { REGULAR, DEVNULL, PIPE, SOCKET, ANON_INODE, OTHER }

    /** O_ACCMODE bits of {@link #flags}: 0 read-only, 1 write-only, 2 read-write. */
    public int accessMode() {
        return flags & 3;
    }
}
