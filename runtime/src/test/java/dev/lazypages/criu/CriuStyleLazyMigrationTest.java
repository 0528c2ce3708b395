package dev.lazypages.criu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.net.BindTest;
import dev.lazypages.net.TlsFixture;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The CRIU-style pieces end to end on loopback, each side a JVM of its own as a user runs them:
 * {@code lazy-dump dump --lazy-pages --address --port --status-fd}, then {@code lazy-pages
 * restore --lazy-pages} (directly, or through {@code lazy-pages --page-server}); a wrong token;
 * a destination that never comes (rollback after --lazy-timeout); and over TLS (these and
 * {@code serve}/{@code migrate}), a plain restore refused by a TLS page server.
 */
class CriuStyleLazyMigrationTest {
    private static final Duration T = Duration.ofSeconds(120);
    private static final String DUMP = "dev.lazypages.cli.LazyDump";
    private static final String PAGES = "dev.lazypages.cli.LazyPages";
    private static final Pattern LISTENING = Pattern.compile("page server on ([0-9.]+):(\\d+) for pid \\d+.*");
    private static final Pattern RESTORED = Pattern.compile("restored pid (\\d+) from .*");

    private Path tmp;
    private Stubs.Running memtouch;
    private int restoredPid = -1;

    @BeforeEach
    void setUp() throws IOException {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
        tmp = Files.createTempDirectory("lp-criu-test-");
    }

    @AfterEach
    void tearDown() throws IOException {
        if (restoredPid > 0 && alive(restoredPid)) {
            Posix.kill(restoredPid, Posix.SIGKILL);
        }
        if (memtouch != null) {
            memtouch.close();
        }
        if (tmp != null) {
            try (Stream<Path> s = Files.walk(tmp)) {
                s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    @Test
    void lazyDumpServesRestoreLazyPagesAndTheOriginalIsGone() throws Exception {
        startMemtouch(256, 2);
        Path dir = tmp.resolve("img");
        Path fifo = fifo();
        CompletableFuture<Integer> status = readOneByte(fifo);
        long t0 = System.nanoTime();
        try (ChildJvm dump = ChildJvm.start(fifo, DUMP, "dump", "-t", Integer.toString(memtouch.pid()), "-D", dir.toString(),
                "--lazy-pages", "--address", "127.0.0.1", "--port", "0", "--status-fd", "3", "--lazy-timeout", "120")) {
            assertEquals(0, status.get(60, TimeUnit.SECONDS), "status byte\n" + dump);
            int port = port(dump);
            assertTrue(Files.isRegularFile(dir.resolve(PageServerFiles.TOKEN)), "token file");
            long frozen = System.nanoTime();
            try (ChildJvm restore = ChildJvm.start(null, PAGES, "restore", "-D", dir.toString(), "--lazy-pages",
                    "--address", "127.0.0.1", "--port", Integer.toString(port), "--stub", Stubs.dir().toString())) {
                restoredPid = restoredPid(restore);
                assertEquals(0, restore.await(T), restore.toString());
                assertTrue(restore.stderr().contains("lazy pages done"), restore.toString());
            }
            assertEquals(0, dump.await(T), dump.toString());
            assertTrue(dump.stdout().contains("migrated pid " + memtouch.pid() + " lazily"), dump.toString());
            System.out.printf("criu-style: dump to listening %.0f ms, listening to source done %.0f ms%n",
                    (frozen - t0) / 1e6, (System.nanoTime() - frozen) / 1e6);
        }
        assertMigrated();
    }

    @Test
    void throughThePageServerRelayAsCriuLazyPagesDoes() throws Exception {
        startMemtouch(64, 2);
        Path dir = tmp.resolve("img");
        try (ChildJvm dump = ChildJvm.start(null, DUMP, "dump", "-t", Integer.toString(memtouch.pid()), "-D", dir.toString(),
                "--lazy-pages", "--address", "127.0.0.1", "--token", "s3cret", "--lazy-timeout", "120")) {
            int port = port(dump);
            Path fifo = fifo();
            CompletableFuture<Integer> status = readOneByte(fifo);
            try (ChildJvm relay = ChildJvm.start(fifo, PAGES, "--page-server", "--address", "127.0.0.1", "--port",
                    Integer.toString(port), "-D", dir.toString(), "--token", "s3cret", "--status-fd", "3")) {
                assertEquals(0, status.get(60, TimeUnit.SECONDS), "relay status byte\n" + relay);
                assertTrue(Files.isRegularFile(dir.resolve(PageServerFiles.RELAY)), relay.toString());
                try (ChildJvm restore = ChildJvm.start(null, PAGES, "restore", "-D", dir.toString(), "--lazy-pages",
                        "--token", "s3cret", "--stub", Stubs.dir().toString())) {
                    restoredPid = restoredPid(restore);
                    assertEquals(0, restore.await(T), restore.toString());
                }
                assertEquals(0, relay.await(T), relay.toString());
                assertTrue(relay.stdout().contains("page-server: done"), relay.toString());
            }
            assertEquals(0, dump.await(T), dump.toString());
        }
        assertMigrated();
    }

    @Test
    void aWrongTokenIsRefusedAndTheSourceRollsBack() throws Exception {
        startMemtouch(64, 2);
        Path dir = tmp.resolve("img");
        try (ChildJvm dump = ChildJvm.start(null, DUMP, "dump", "-t", Integer.toString(memtouch.pid()), "-D", dir.toString(),
                "--lazy-pages", "--address", "127.0.0.1", "--token", "right", "--lazy-timeout", "3")) {
            int port = port(dump);
            try (ChildJvm restore = ChildJvm.start(null, PAGES, "restore", "-D", dir.toString(), "--lazy-pages",
                    "--address", "127.0.0.1", "--port", Integer.toString(port), "--token", "wrong",
                    "--stub", Stubs.dir().toString())) {
                assertNotEquals(0, restore.await(T), restore.toString());
                assertTrue(restore.stderr().contains("token mismatch"), restore.toString());
                assertFalse(restore.stdout().contains("restored pid"), restore.toString());
            }
            assertEquals(1, dump.await(T), dump.toString());
            assertTrue(dump.stderr().contains("rolled back: pid " + memtouch.pid() + " runs on here"), dump.toString());
            assertTrue(dump.stderr().contains("refused"), dump.toString());
        }
        assertRunsOn();
    }

    @Test
    void aRelayWithAWrongTokenIsRefusedAndLoggedOnBothSides() throws Exception {
        startMemtouch(64, 1);
        Path dir = tmp.resolve("img");
        try (ChildJvm dump = ChildJvm.start(null, DUMP, "dump", "-t", Integer.toString(memtouch.pid()), "-D", dir.toString(),
                "--lazy-pages", "--address", "127.0.0.1", "--token", "right", "--lazy-timeout", "15")) { // > a JVM's start
            int port = port(dump);
            try (ChildJvm relay = ChildJvm.start(null, PAGES, "--page-server", "--address", "127.0.0.1", "--port",
                    Integer.toString(port), "-D", dir.toString(), "--token", "wrong")) {
                assertNotEquals(0, relay.await(T), relay.toString());
                assertTrue(relay.stderr().contains("token mismatch"), relay.toString());
                assertFalse(Files.exists(dir.resolve(PageServerFiles.RELAY)), "the relay never listened\n" + relay);
            }
            assertEquals(1, dump.await(T), dump.toString());
            assertTrue(dump.stderr().contains("refused connection from") && dump.stderr().contains("token mismatch"),
                    "logged at the source\n" + dump);
        }
        assertRunsOn();
    }

    @Test
    void aDestinationThatNeverComesRollsBackAfterTheLazyTimeout() throws Exception {
        startMemtouch(64, 1);
        Path dir = tmp.resolve("img");
        long t0 = System.nanoTime();
        try (ChildJvm dump = ChildJvm.start(null, DUMP, "dump", "-t", Integer.toString(memtouch.pid()), "-D", dir.toString(),
                "--lazy-pages", "--address", "127.0.0.1", "--lazy-timeout", "2")) {
            port(dump);
            assertEquals(1, dump.await(T), dump.toString());
            assertTrue(dump.stderr().contains("never asked for a page within the lazy timeout of 2 s"), dump.toString());
            assertEquals(1, dump.stderr().lines().count(), "one line: " + dump);
        }
        assertTrue(System.nanoTime() - t0 >= TimeUnit.SECONDS.toNanos(2));
        assertRunsOn();
    }

    /**
     * Issue 7 point 2: the source (the dump's JVM) is killed with SIGKILL while the restored
     * process still misses pages (no background sweep, so post-copy lasts). The restore gives the
     * source its --recover-timeout, then kills the restored process, says why and exits non-zero.
     * The original, let go by the kernel when the dump's JVM died, stays stopped meanwhile.
     */
    @Test
    void theSourceKilledMidPostCopyMakesTheRestoreKillItsCopyAndFailAfterTheRecoverTimeout() throws Exception {
        startMemtouch(128, 2);
        Path dir = tmp.resolve("img");
        try (ChildJvm dump = ChildJvm.start(null, DUMP, "dump", "-t", Integer.toString(memtouch.pid()), "-D", dir.toString(),
                "--lazy-pages", "--address", "127.0.0.1", "--port", "0", "--lazy-timeout", "120")) {
            int port = port(dump);
            try (ChildJvm restore = ChildJvm.start(java.util.Map.of("JAVA_TOOL_OPTIONS", "-Dlazypages.background=false"), null,
                    PAGES, "restore", "-D", dir.toString(), "--lazy-pages", "--address", "127.0.0.1", "--port",
                    Integer.toString(port), "--stub", Stubs.dir().toString(), "--recover-timeout", "2")) {
                restoredPid = restoredPid(restore);
                Thread.sleep(300); // it runs, faulting pages in one by one
                assertTrue(restore.process.isAlive(), "still in post-copy\n" + restore);
                dump.process.destroyForcibly(); // SIGKILL
                assertTrue(dump.process.waitFor(10, TimeUnit.SECONDS));
                long t0 = System.nanoTime();
                assertNotEquals(0, restore.await(Duration.ofSeconds(60)), restore.toString());
                double s = (System.nanoTime() - t0) / 1e9;
                assertTrue(restore.stderr().contains("not recovered within the recover timeout of 2000 ms"), restore.toString());
                assertTrue(restore.stderr().contains("killed it"), restore.toString());
                assertTrue(s >= 1.5 && s < 30, "gave up after the recover timeout, not before and not much later: " + s + " s");
                awaitGone(restoredPid);
            }
        }
        // the original never ran beside the copy: stopped since the dump's JVM died; continued, it is whole
        assertEquals('T', memtouch.state(), "the original must stay stopped: " + memtouch.tail());
        Posix.kill(memtouch.pid(), Posix.SIGCONT);
        assertRunsOn();
    }

    // ---- TLS (--tls --tls-cert --tls-key --tls-cacert): the same migrations, encrypted and verified

    private List<String> tls(String name) throws Exception {
        TlsFixture.Pem pem = TlsFixture.selfSigned(tmp, name);
        return List.of("--tls", "--tls-cert", pem.cert().toString(), "--tls-key", pem.key().toString(), "--tls-cacert",
                pem.cert().toString());
    }

    private static String[] args(List<String> tls, String... args) {
        return java.util.stream.Stream.concat(java.util.Arrays.stream(args), tls.stream()).toArray(String[]::new);
    }

    @Test
    void lazyDumpAndRestoreOverTlsWithTheCertificateVerifiedOnBothSides() throws Exception {
        startMemtouch(64, 2);
        List<String> tls = tls("criu");
        Path dir = tmp.resolve("img");
        try (ChildJvm dump = ChildJvm.start(null, DUMP, args(tls, "dump", "-t", Integer.toString(memtouch.pid()), "-D",
                dir.toString(), "--lazy-pages", "--address", "127.0.0.1", "--lazy-timeout", "120"))) {
            int port = port(dump);
            BindTest.assertListensOnLoopbackOnly(port); // dump --address binds only there
            try (ChildJvm restore = ChildJvm.start(null, PAGES, args(tls, "restore", "-D", dir.toString(), "--lazy-pages",
                    "--address", "127.0.0.1", "--port", Integer.toString(port), "--stub", Stubs.dir().toString()))) {
                restoredPid = restoredPid(restore);
                assertEquals(0, restore.await(T), restore.toString());
            }
            assertEquals(0, dump.await(T), dump.toString());
        }
        assertMigrated();
    }

    @Test
    void aPlainRestoreIsRefusedByATlsPageServerWithAMessageSayingSoAndTheSourceRollsBack() throws Exception {
        startMemtouch(64, 1);
        Path dir = tmp.resolve("img");
        try (ChildJvm dump = ChildJvm.start(null, DUMP, args(tls("criu"), "dump", "-t", Integer.toString(memtouch.pid()),
                "-D", dir.toString(), "--lazy-pages", "--address", "127.0.0.1", "--lazy-timeout", "15"))) { // > a JVM's start
            int port = port(dump);
            try (ChildJvm restore = ChildJvm.start(null, PAGES, "restore", "-D", dir.toString(), "--lazy-pages",
                    "--address", "127.0.0.1", "--port", Integer.toString(port), "--stub", Stubs.dir().toString())) {
                assertNotEquals(0, restore.await(T), restore.toString());
                assertTrue(restore.stderr().contains("this side requires TLS: run the peer with --tls"), restore.toString());
                assertFalse(restore.stdout().contains("restored pid"), restore.toString());
            }
            assertEquals(1, dump.await(T), dump.toString());
            assertTrue(dump.stderr().contains("refused: plain text"), "logged at the source\n" + dump);
        }
        assertRunsOn();
    }

    @Test
    void migrateToAServeDaemonOverTls() throws Exception {
        startMemtouch(32, 2);
        List<String> tls = tls("serve");
        Pattern serving = Pattern.compile("serving on ([0-9.]+):(\\d+) .*");
        try (ChildJvm serve = ChildJvm.start(null, PAGES, args(tls, "serve", "--listen", "127.0.0.1:0", "--token", "t0k",
                "--work-dir", Files.createDirectories(tmp.resolve("work")).toString(), "--stub", Stubs.dir().toString()))) {
            Matcher m = serving.matcher(serve.awaitLine(l -> serving.matcher(l).matches(), Duration.ofSeconds(60)));
            assertTrue(m.matches());
            BindTest.assertListensOnLoopbackOnly(Integer.parseInt(m.group(2))); // serve --listen binds only there
            try (ChildJvm migrate = ChildJvm.start(null, DUMP, args(tls, "migrate", "-t", Integer.toString(memtouch.pid()),
                    "--to", "127.0.0.1:" + m.group(2), "--token", "t0k", "--mode", "hybrid"))) {
                assertEquals(0, migrate.await(T), migrate + "\n--- serve\n" + serve);
                Matcher done = Pattern.compile("migrated pid \\d+ to \\S+ \\(pid (\\d+) there\\)").matcher(migrate.stdout());
                assertTrue(done.find(), migrate.toString());
                restoredPid = Integer.parseInt(done.group(1));
            }
            assertMigrated();
        }
    }

    // ---- helpers

    private void startMemtouch(int mib, int threads) {
        memtouch = Stubs.spawn("memtouch", "--size-mib", Integer.toString(mib), "--threads", Integer.toString(threads),
                "--dirty-mib-per-sec", "8");
        memtouch.awaitLine(l -> l.startsWith("HEARTBEAT "), Duration.ofSeconds(30));
    }

    private Path fifo() throws IOException, InterruptedException {
        Path f = tmp.resolve("status-" + System.nanoTime());
        Process p = new ProcessBuilder("mkfifo", f.toString()).inheritIO().start();
        assertEquals(0, p.waitFor());
        return f;
    }

    /** The first byte read from the FIFO (-1 at EOF without one). */
    private static CompletableFuture<Integer> readOneByte(Path fifo) {
        return CompletableFuture.supplyAsync(() -> {
            try (InputStream in = new FileInputStream(fifo.toFile())) {
                return in.read();
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }, r -> Thread.ofPlatform().daemon().start(r));
    }

    private static int port(ChildJvm dump) throws InterruptedException {
        Matcher m = LISTENING.matcher(dump.awaitLine(l -> LISTENING.matcher(l).matches(), Duration.ofSeconds(60)));
        assertTrue(m.matches());
        return Integer.parseInt(m.group(2));
    }

    private static int restoredPid(ChildJvm restore) throws InterruptedException {
        Matcher m = RESTORED.matcher(restore.awaitLine(l -> RESTORED.matcher(l).matches(), T));
        assertTrue(m.matches());
        return Integer.parseInt(m.group(1));
    }

    private void assertMigrated() throws InterruptedException {
        assertTrue(restoredPid > 0);
        awaitGone(memtouch.pid());
        assertTrue(alive(restoredPid), "restored pid " + restoredPid + " is not running");
        verify(restoredPid);
        awaitMoreBeats(2);
    }

    private void assertRunsOn() throws InterruptedException {
        assertTrue(memtouch.isAlive(), "the original died: " + memtouch.tail());
        assertNotEquals('t', memtouch.state(), "still traced");
        verify(memtouch.pid());
        awaitMoreBeats(2);
    }

    private void verify(int pid) throws InterruptedException {
        long before = count("VERIFY");
        Posix.kill(pid, Posix.SIGUSR1);
        String v = awaitNth("VERIFY", before + 1);
        assertTrue(v.startsWith("VERIFY OK"), "pid " + pid + " failed its check:\n" + memtouch.tail());
    }

    private void awaitMoreBeats(int more) throws InterruptedException {
        awaitNth("HEARTBEAT ", count("HEARTBEAT ") + more);
    }

    private long count(String prefix) {
        return memtouch.lines().stream().filter(l -> l.startsWith(prefix)).count();
    }

    private String awaitNth(String prefix, long n) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (true) {
            List<String> l = memtouch.lines().stream().filter(s -> s.startsWith(prefix)).toList();
            if (l.size() >= n) {
                return l.getLast();
            }
            if (System.nanoTime() - deadline > 0) {
                fail("no " + n + "th '" + prefix + "' line within 30 s; log:\n" + memtouch.tail());
            }
            Thread.sleep(20);
        }
    }

    static boolean alive(int pid) {
        char s = Stubs.stateOf(pid);
        return s != 'Z' && s != 'X';
    }

    private static void awaitGone(int pid) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (alive(pid)) {
            if (System.nanoTime() - deadline > 0) {
                fail("pid " + pid + " is still alive (state " + Stubs.stateOf(pid) + ")");
            }
            Thread.sleep(10);
        }
    }
}
