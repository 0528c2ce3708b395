package dev.lazypages.criu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.lazy.LazyPageServer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The JVM holding the userfaultfd of a lazily restored process is killed (kill -9) while pages
 * are still missing (background copy off): the process must not run on reading zeros there.
 * It keeps its own reference to the userfaultfd, so its faults on missing pages block: asked to
 * verify (SIGUSR1) it prints no VERIFY line, its heartbeat (same thread) stops, and a thread
 * waits in the userfault handler (the main thread may wait behind it, e.g. on stdout's lock).
 */
@Timeout(90)
class DaemonKilledDuringPostCopyTest {
    private static final Pattern RESTORED = Pattern.compile("restored pid (\\d+) from .*");
    private static final Duration T = Duration.ofSeconds(60);

    @TempDir
    Path tmp;
    private Stubs.Running memtouch;
    private int restoredPid = -1;

    @AfterEach
    void tearDown() {
        if (restoredPid > 0 && Stubs.isAlive(restoredPid)) {
            Posix.kill(restoredPid, Posix.SIGKILL);
            Stubs.awaitDead(restoredPid, Duration.ofSeconds(10));
        }
        if (memtouch != null) {
            memtouch.close();
        }
    }

    @Test
    void aKilledDaemonLeavesTheProcessBlockedInItsFaultsNotReadingZeros() throws Exception {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
        memtouch = Stubs.spawn("memtouch", "--size-mib", "64", "--threads", "1", "--dirty-mib-per-sec", "4");
        memtouch.awaitLine(l -> l.startsWith("HEARTBEAT 2"), Duration.ofSeconds(30));
        Path img = tmp.resolve("img");
        Dumper.dump(memtouch.pid(), DumpOptions.of(img));
        Stubs.awaitDead(memtouch.pid(), Duration.ofSeconds(10));
        long beatsBefore = count("HEARTBEAT ");
        Map<String, String> env = Map.of("JAVA_TOOL_OPTIONS", "-D" + LazyPageServer.Options.BACKGROUND_PROPERTY + "=false");
        try (ChildJvm restore = ChildJvm.start(env, null, "dev.lazypages.cli.LazyPages", "restore", "-D", img.toString(),
                "--lazy", "--stub", Stubs.dir().toString())) {
            Matcher m = RESTORED.matcher(restore.awaitLine(l -> RESTORED.matcher(l).matches(), T));
            assertTrue(m.matches());
            restoredPid = Integer.parseInt(m.group(1));
            awaitCount("HEARTBEAT ", beatsBefore + 1); // runs, its faults served
            assertTrue(restore.process.isAlive(), "the restore finished: nothing left missing\n" + restore);
            restore.process.destroyForcibly(); // SIGKILL
            assertTrue(restore.process.waitFor(10, TimeUnit.SECONDS), "the restore JVM survived SIGKILL");
        }
        assertTrue(Stubs.isAlive(restoredPid), "the restored process died with the daemon");
        long verifies = count("VERIFY");
        Posix.kill(restoredPid, Posix.SIGUSR1);
        Thread.sleep(1500);
        long beats = count("HEARTBEAT ");
        Thread.sleep(2500);
        List<String> verifyLines = memtouch.lines().stream().filter(l -> l.startsWith("VERIFY")).toList();
        assertEquals(verifies, verifyLines.size(), "verified with pages missing: " + verifyLines + "\n" + memtouch.tail());
        assertEquals(beats, count("HEARTBEAT "), "runs on after the daemon died\n" + memtouch.tail());
        assertTrue(Stubs.isAlive(restoredPid), "the restored process died");
        List<String> wchans = wchans(restoredPid);
        assertTrue(wchans.stream().anyMatch(w -> w.contains("userfault")), "no thread waits in a userfault: " + wchans);
    }

    /** "tid wchan" of every thread of {@code pid}. */
    private static List<String> wchans(int pid) throws IOException {
        List<String> out = new java.util.ArrayList<>();
        try (var tasks = Files.list(Path.of("/proc/" + pid + "/task"))) {
            for (Path t : tasks.toList()) {
                out.add(t.getFileName() + " " + Files.readString(t.resolve("wchan")).strip());
            }
        }
        return out;
    }

    private long count(String prefix) {
        return memtouch.lines().stream().filter(l -> l.startsWith(prefix)).count();
    }

    private void awaitCount(String prefix, long n) throws InterruptedException {
        long deadline = System.nanoTime() + T.toNanos();
        while (count(prefix) < n) {
            if (System.nanoTime() - deadline > 0) {
                fail("no " + n + "th '" + prefix + "' line within " + T + "; log:\n" + memtouch.tail());
            }
            Thread.sleep(20);
        }
    }
}
