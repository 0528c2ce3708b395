package dev.lazypages.dump;

import dev.lazypages.ffm.Posix;
import dev.lazypages.image.proto.OpenFile;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The open files of a process as image {@link OpenFile}s (docs/IMAGE.md, Files): regular files
 * (path, flags, position and what the file was: dev, inode, size, mode, from stat of the
 * /proc/PID/fd link) and /dev/null. Anything else, a regular file that was deleted included,
 * is refused with a message naming the fd and its type, or recorded as /dev/null or left out
 * as {@link UnsupportedFds} says. A userfaultfd is refused too: the one a lazy restore leaves its
 * process is closed once every page is in (restore.KeptUffd), so one still there means its
 * post-copy has not finished, and the message says so.
 */
final class FileRecords {
    /** Flags that meant something only to the original open(2). */
    static final int OPEN_ONLY_FLAGS = Posix.O_CREAT | Posix.O_TRUNC | Posix.O_EXCL;
    private static final int S_IFMT = 0170000;
    private static final int S_IFIFO = 0010000;
    private static final int S_IFCHR = 0020000;
    private static final int S_IFDIR = 0040000;
    private static final int S_IFSOCK = 0140000;

    private static final String USERFAULTFD = "anon_inode:[userfaultfd]";

    private FileRecords() {
    }

    static List<OpenFile> toImage(int pid, List<dev.lazypages.proc.OpenFile> fds, UnsupportedFds policy) {
        List<OpenFile> out = new ArrayList<>(fds.size());
        for (dev.lazypages.proc.OpenFile f : fds) {
            Path link = Path.of("/proc", Integer.toString(pid), "fd", Integer.toString(f.fd()));
            int flags = f.flags() & ~OPEN_ONLY_FLAGS;
            OpenFile.Builder b = OpenFile.newBuilder().setFd(f.fd()).setFlags(flags);
            if (f.type() == dev.lazypages.proc.OpenFile.Type.DEVNULL) {
                out.add(b.setKind(OpenFile.Kind.DEV_NULL).setPath("/dev/null").build());
                continue;
            }
            Map<String, Object> st = stat(link);
            if (f.type() == dev.lazypages.proc.OpenFile.Type.REGULAR && st != null && !f.target().endsWith(" (deleted)")) {
                out.add(b.setKind(OpenFile.Kind.REGULAR).setPath(f.target()).setPos(f.pos())
                        .setDev((Long) st.get("dev")).setInode((Long) st.get("ino")).setSize((Long) st.get("size"))
                        .setMode((Integer) st.get("mode")).build());
                continue;
            }
            String what = describe(f, st);
            switch (policy) {
                case REFUSE -> throw new IllegalArgumentException("fd " + f.fd() + " is " + what
                        + ", which cannot be dumped (--unsupported-fds=devnull or =close to dump it anyway)"
                        + (f.target().equals(USERFAULTFD) ? "; if this process was restored lazily, its pages are still"
                        + " arriving: migrate it again once its post-copy has finished" : ""));
                case DEVNULL -> out.add(b.setKind(OpenFile.Kind.DEV_NULL).setPath("/dev/null").setFlags(f.accessMode()).build());
                case CLOSE -> {
                    // left out: the restored process does not have it
                }
            }
        }
        return out;
    }

    /** "a pipe (pipe:[123])", "a socket (socket:[9])", "a deleted file (/tmp/x (deleted))" and so on. */
    static String describe(dev.lazypages.proc.OpenFile f, Map<String, Object> st) {
        String t = f.target();
        int fmt = st != null ? (Integer) st.get("mode") & S_IFMT : 0;
        String kind = switch (f.type()) {
            case PIPE -> "a pipe";
            case SOCKET -> "a socket";
            case ANON_INODE -> "an anonymous inode";
            case REGULAR -> "a deleted file";
            default -> fmt == S_IFIFO ? "a pipe"
                    : fmt == S_IFSOCK ? "a socket"
                    : fmt == S_IFDIR ? "a directory"
                    : fmt == S_IFCHR ? (t.startsWith("/dev/pts/") || t.startsWith("/dev/tty") ? "a terminal" : "a character device")
                    : t.endsWith(" (deleted)") ? "a deleted file" : "an unsupported file";
        };
        return kind + " (" + t + ")";
    }

    /** stat(2) of the fd link (following it to the open file), or null when it is gone or not stat-able. */
    private static Map<String, Object> stat(Path link) {
        try {
            return Files.readAttributes(link, "unix:dev,ino,size,mode");
        } catch (IOException | UnsupportedOperationException e) {
            return null;
        }
    }
}
