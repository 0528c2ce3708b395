package dev.lazypages.proc;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * The open file descriptors of a process: /proc/PID/fd links plus the position and flags
 * of /proc/PID/fdinfo/FD. A descriptor closed while it is being listed is left out.
 */
public final class ProcFds {
    private ProcFds() {
    }

    /** The open fds of {@code pid}, ascending. */
    public static List<OpenFile> list(int pid) {
        Path fdDir = Proc.dir(pid).resolve("fd");
        List<Integer> fds = new ArrayList<>();
        try (Stream<Path> s = Files.list(fdDir)) {
            s.forEach(p -> fds.add(Integer.parseInt(p.getFileName().toString())));
        } catch (IOException e) {
            throw Proc.failure("listing", fdDir, pid, e);
        }
        fds.sort(null);
        List<OpenFile> out = new ArrayList<>(fds.size());
        for (int fd : fds) {
            Path link = fdDir.resolve(Integer.toString(fd));
            Path info = Proc.dir(pid).resolve("fdinfo").resolve(Integer.toString(fd));
            String target;
            String fdinfo;
            try {
                target = Files.readSymbolicLink(link).toString();
                fdinfo = Files.readString(info);
            } catch (NoSuchFileException gone) {
                continue;
            } catch (IOException e) {
                throw Proc.failure("reading", link, pid, e);
            }
            out.add(new OpenFile(fd, target, (int) field(fdinfo, "flags", 8, info, pid), field(fdinfo, "pos", 10, info, pid),
                    classify(target, link)));
        }
        return out;
    }

    /** The type of an fd from its link target; {@code link} is stat'ed to tell regular files from others. */
    static OpenFile.Type classify(String target, Path link) {
        if (target.equals("/dev/null")) {
            return OpenFile.Type.DEVNULL;
        }
        if (target.startsWith("pipe:[")) {
            return OpenFile.Type.PIPE;
        }
        if (target.startsWith("socket:[")) {
            return OpenFile.Type.SOCKET;
        }
        if (target.startsWith("anon_inode:")) {
            return OpenFile.Type.ANON_INODE;
        }
        if (target.startsWith("/") && link != null && Files.isRegularFile(link)) {
            return OpenFile.Type.REGULAR;
        }
        return OpenFile.Type.OTHER;
    }

    private static long field(String fdinfo, String name, int radix, Path info, int pid) {
        for (String line : fdinfo.split("\n")) {
            if (line.startsWith(name + ":")) {
                return Long.parseLong(line.substring(name.length() + 1).strip(), radix);
            }
        }
        throw new ProcException(info + " of pid " + pid + " has no \"" + name + ":\" line");
    }
}
