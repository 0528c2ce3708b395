package dev.lazypages.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Seizing another user's process is refused unless running as root: {@code lazy-dump.jar dump}
 * and {@code migrate}, run as uid 65534 (setpriv) against a root process, exit non-zero with one
 * line naming both uids, and the process runs on untouched. (As root the same commands work:
 * every other dump and migration test.)
 */
class SeizeOtherUserIT {
    private static final String NOBODY = "65534";
    private Stubs.Running root;
    private Path tmp;

    @BeforeEach
    void start() throws IOException {
        Requires.root();
        root = Stubs.spawn("sleeper", "--mode", "pause");
        tmp = Files.createTempDirectory("lp-seize-uid-");
        Files.setPosixFilePermissions(tmp, java.nio.file.attribute.PosixFilePermissions.fromString("rwxrwxrwx"));
    }

    @AfterEach
    void stop() throws IOException {
        if (root != null) {
            root.close();
        }
        if (tmp != null) {
            try (var s = Files.walk(tmp)) {
                s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    private static JarRunner.Result asNobody(String jar, String... args) throws IOException, InterruptedException {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of("setpriv", "--reuid=" + NOBODY, "--regid=" + NOBODY, "--clear-groups",
                java, "-jar", JarRunner.jar(jar).toString()));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).start();
        p.getOutputStream().close();
        byte[] out = p.getInputStream().readAllBytes();
        byte[] err = p.getErrorStream().readAllBytes();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), String.join(" ", cmd) + " did not finish");
        return new JarRunner.Result(p.exitValue(), new String(out, StandardCharsets.UTF_8), new String(err, StandardCharsets.UTF_8));
    }

    private void assertRefusedNamingTheUids(JarRunner.Result r, String command) {
        assertNotEquals(0, r.exitCode(), r.toString());
        String want = "pid " + root.pid() + " runs as uid 0; this runs as uid " + NOBODY
                + ": only root may seize another user's process";
        assertTrue(r.stderr().startsWith(command + ": ") && r.stderr().contains(want), r.toString());
        assertEquals(1, r.stderr().lines().count(), "one line: " + r);
        assertTrue(root.isAlive(), "the process runs on");
        assertNotEquals('t', root.state(), "and is not traced");
    }

    @Test
    void dumpAsAnotherUserIsRefusedNamingTheUid() throws Exception {
        assertRefusedNamingTheUids(asNobody("lazy-dump.jar", "dump", "-t", Integer.toString(root.pid()), "-D",
                tmp.resolve("img").toString()), "dump");
    }

    @Test
    void migrateAsAnotherUserIsRefusedNamingTheUidBeforeConnecting() throws Exception {
        assertRefusedNamingTheUids(asNobody("lazy-dump.jar", "migrate", "-t", Integer.toString(root.pid()), "--to",
                "127.0.0.1:9"), "migrate");
    }
}
