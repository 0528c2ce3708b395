package dev.lazypages.proc;

import dev.lazypages.ffm.Posix;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * Who owns a process, and whether this one may seize it: only root may seize another user's
 * process. Checked before anything is read or seized, so the refusal says so in one line
 * instead of surfacing later as an EPERM from ptrace or an unreadable /proc file.
 */
public final class ProcessOwner {
    private ProcessOwner() {
    }

    /**
     * The real, effective and saved uids of {@code pid} (the "Uid:" line of /proc/PID/status),
     * or null when it cannot be read (no such process: the caller's own checks say so).
     */
    static long[] uids(int pid) {
        String status;
        try {
            status = Files.readString(Path.of("/proc", Integer.toString(pid), "status"));
        } catch (NoSuchFileException gone) {
            return null;
        } catch (IOException e) {
            throw new ProcException("reading /proc/" + pid + "/status failed: " + e.getMessage(), e);
        }
        return status.lines().filter(l -> l.startsWith("Uid:")).findFirst()
                .map(l -> l.substring(4).trim().split("\\s+"))
                .map(f -> new long[] {Long.parseLong(f[0]), Long.parseLong(f[1]), Long.parseLong(f[2])})
                .orElse(null);
    }

    /**
     * Refuses to go on with {@code pid} when it belongs to another user and this process does
     * not run as root.
     *
     * @throws ProcException e.g. "pid 123 runs as uid 0; this runs as uid 65534: only root may seize another user's process"
     */
    public static void requireMaySeize(int pid) {
        int me = Posix.geteuid();
        if (me == 0) {
            return;
        }
        long[] u = uids(pid);
        if (u == null) {
            return;
        }
        for (long uid : u) {
            if (uid != me) {
                throw new ProcException("pid " + pid + " runs as uid " + (u[1] != me ? u[1] : uid) + "; this runs as uid "
                        + me + ": only root may seize another user's process");
            }
        }
    }
}
