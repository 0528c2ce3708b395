package dev.lazypages.cli;

import dev.lazypages.ffm.Posix;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * {@code serve} runs for months and starts threads for every migration (tracer, warm builder,
 * page-client event loops); glibc gives each new thread a malloc arena of its own, up to eight
 * per core, and the memory freed in them stays: without a limit the daemon's RSS climbs by
 * 100-250 MiB over its first few dozen migrations before it levels off. Two arenas keep it
 * flat (perf/soak.sh measures it). The limit must be in the environment when the process
 * starts: mallopt(M_ARENA_MAX) from inside comes too late, as glibc fixes the limit once a
 * process has more than eight arenas and a JVM has more before main runs. So {@code serve}
 * re-executes itself (execve: same pid, same command line, nothing started yet) with
 * {@value #VAR}=2 added, unless the environment sets {@value #VAR} already (then it is left as
 * it is) or {@code -Dlazypages.reexec=false}.
 */
final class ArenaLimit {
    static final String VAR = "MALLOC_ARENA_MAX";

    private ArenaLimit() {
    }

    /** For {@code args} naming the serve command: re-executes with the limit; returns only when it does not. */
    static void forServe(String[] args) {
        if (!Arrays.asList(args).contains("serve") || System.getenv(VAR) != null
                || "false".equals(System.getProperty("lazypages.reexec"))) {
            return;
        }
        try {
            List<String> argv = cmdline();
            List<String> env = new ArrayList<>();
            System.getenv().forEach((k, v) -> env.add(k + "=" + v));
            env.add(VAR + "=2");
            System.out.flush();
            System.err.flush();
            Posix.execve("/proc/self/exe", argv, env);
        } catch (IOException | RuntimeException e) {
            System.err.println("lazy-pages: could not restart with " + VAR + "=2 (" + e.getMessage() + "); a long-running "
                    + "daemon should have it in its environment (see README)");
        }
    }

    /** This process's command line, as the kernel has it (the JVM's options included). */
    private static List<String> cmdline() throws IOException {
        byte[] b = Files.readAllBytes(Path.of("/proc/self/cmdline"));
        List<String> out = new ArrayList<>();
        int start = 0;
        for (int i = 0; i < b.length; i++) {
            if (b[i] == 0) {
                out.add(new String(b, start, i - start, StandardCharsets.UTF_8));
                start = i + 1;
            }
        }
        if (out.isEmpty()) {
            throw new IOException("/proc/self/cmdline is empty");
        }
        return out;
    }
}
