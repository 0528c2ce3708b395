package dev.lazypages.criu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import org.junit.jupiter.api.Test;

/** Usage errors of the CRIU-style options (no process is touched: each fails while parsing or checking options). */
class CriuStyleCommandLineTest {
    private static ChildJvm run(String main, String... args) throws Exception {
        ChildJvm c = ChildJvm.start(null, main, args);
        c.await(Duration.ofSeconds(60));
        return c;
    }

    @Test
    void pageServerExcludesACommand() throws Exception {
        try (ChildJvm c = run("dev.lazypages.cli.LazyPages", "--page-server", "--address", "127.0.0.1", "--port", "1",
                "-D", "/tmp", "restore", "-D", "/tmp")) {
            assertEquals(2, c.process.exitValue(), c.toString());
            assertTrue(c.stderr().contains("--page-server and the command 'restore' exclude each other"), c.toString());
        }
    }

    @Test
    void noCommandIsStillAUsageError() throws Exception {
        try (ChildJvm c = run("dev.lazypages.cli.LazyPages")) {
            assertEquals(2, c.process.exitValue(), c.toString());
            assertTrue(c.stderr().contains("a command is needed"), c.toString());
        }
    }

    @Test
    void pageServerNeedsItsAddressAndDirectory() throws Exception {
        try (ChildJvm c = run("dev.lazypages.cli.LazyPages", "--page-server", "--port", "7")) {
            assertEquals(2, c.process.exitValue(), c.toString());
            assertTrue(c.stderr().contains("--page-server needs --address, --port and -D"), c.toString());
        }
    }

    @Test
    void restoreLazyPagesWithoutAPageServerSaysWhatIsMissing() throws Exception {
        try (ChildJvm c = run("dev.lazypages.cli.LazyPages", "restore", "-D", "/nonexistent-image", "--lazy-pages")) {
            assertEquals(2, c.process.exitValue(), c.toString());
            assertTrue(c.stderr().contains("--lazy-pages needs --address and --port"), c.toString());
        }
    }

    @Test
    void lazyPagesOptionsNeedLazyPages() throws Exception {
        try (ChildJvm c = run("dev.lazypages.cli.LazyDump", "dump", "-t", "1", "-D", "/nonexistent-image", "--status-fd", "3")) {
            assertEquals(2, c.process.exitValue(), c.toString());
            assertTrue(c.stderr().contains("go with --lazy-pages"), c.toString());
        }
        try (ChildJvm c = run("dev.lazypages.cli.LazyDump", "dump", "-t", "1", "-D", "/nonexistent-image", "--lazy-pages",
                "--leave-running")) {
            assertEquals(2, c.process.exitValue(), c.toString());
            assertTrue(c.stderr().contains("exclude each other"), c.toString());
        }
    }
}
