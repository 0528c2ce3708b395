package dev.lazypages.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code lazy-pages.jar serve} restarts itself (execve, same pid) with MALLOC_ARENA_MAX=2 in its
 * environment so that a long-running daemon's RSS does not climb with glibc's per-thread
 * arenas (ArenaLimit); a value the environment gives is kept.
 */
@Timeout(120)
class ServeArenaLimitIT {
    @TempDir
    Path tmp;

    /** The environment of the running daemon (the same pid as started), once it serves. */
    private String daemonEnvironment(String arenaMax) throws IOException, InterruptedException {
        String java = ProcessHandle.current().info().command().orElse("java");
        Path out = tmp.resolve("serve.out");
        ProcessBuilder pb = new ProcessBuilder(java, "-jar", JarRunner.jar("lazy-pages.jar").toString(), "serve", "--listen",
                "127.0.0.1:0", "--work-dir", tmp.resolve("work").toString()).redirectErrorStream(true).redirectOutput(out.toFile());
        pb.environment().remove(ArenaLimit.VAR);
        if (arenaMax != null) {
            pb.environment().put(ArenaLimit.VAR, arenaMax);
        }
        Process p = pb.start();
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (!Files.readString(out).contains("serving on ")) {
                assertTrue(p.isAlive() && System.nanoTime() < deadline, "no 'serving on':\n" + Files.readString(out));
                Thread.sleep(20);
            }
            byte[] env = Files.readAllBytes(Path.of("/proc/" + p.pid() + "/environ"));
            return new String(env, StandardCharsets.UTF_8).replace('\0', '\n');
        } finally {
            p.destroy();
            p.waitFor(20, TimeUnit.SECONDS);
            p.destroyForcibly();
        }
    }

    private static List<String> arenaLines(String env) {
        List<String> l = new ArrayList<>();
        env.lines().filter(s -> s.startsWith(ArenaLimit.VAR + "=")).forEach(l::add);
        return l;
    }

    @Test
    void serveRunsWithTwoMallocArenasWhenTheEnvironmentSaysNothing() throws Exception {
        assertEquals(List.of(ArenaLimit.VAR + "=2"), arenaLines(daemonEnvironment(null)));
    }

    @Test
    void aLimitFromTheEnvironmentIsKept() throws Exception {
        assertEquals(List.of(ArenaLimit.VAR + "=4"), arenaLines(daemonEnvironment("4")));
    }
}
