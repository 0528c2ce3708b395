package dev.lazypages.proc;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * Small readers of /proc/PID: the thread list, the executable link, and whole files read
 * with an error that names the file and the process instead of a bare {@link IOException}.
 */
public final class Proc {
    private Proc() {
    }

    /** /proc/PID */
    public static Path dir(int pid) {
        return Path.of("/proc", Integer.toString(pid));
    }

    /** The thread ids in /proc/PID/task, ascending (the thread-group leader is {@code pid}). */
    public static List<Integer> threads(int pid) {
        Path task = dir(pid).resolve("task");
        List<Integer> tids = new ArrayList<>();
        try (Stream<Path> s = Files.list(task)) {
            s.forEach(p -> tids.add(Integer.parseInt(p.getFileName().toString())));
        } catch (IOException e) {
            throw failure("listing", task, pid, e);
        }
        tids.sort(null);
        return tids;
    }

    /** The target of /proc/PID/exe, e.g. {@code /usr/bin/cat} (with " (deleted)" if it was removed). */
    public static String exe(int pid) {
        Path exe = dir(pid).resolve("exe");
        try {
            return Files.readSymbolicLink(exe).toString();
        } catch (IOException e) {
            throw failure("reading the link", exe, pid, e);
        }
    }

    /** The whole of /proc/PID/{@code name} as text. */
    public static String readText(int pid, String name) {
        Path p = dir(pid).resolve(name);
        try {
            return Files.readString(p, StandardCharsets.ISO_8859_1);
        } catch (IOException e) {
            throw failure("reading", p, pid, e);
        }
    }

    /** The whole of /proc/PID/{@code name} as bytes. */
    public static byte[] readBytes(int pid, String name) {
        Path p = dir(pid).resolve(name);
        try {
            return Files.readAllBytes(p);
        } catch (IOException e) {
            throw failure("reading", p, pid, e);
        }
    }

    static ProcException failure(String step, Path path, int pid, IOException e) {
        String why = e instanceof NoSuchFileException ? "no such process or file" : e.toString();
        return new ProcException(step + " " + path + " of pid " + pid + " failed: " + why, e);
    }
}
