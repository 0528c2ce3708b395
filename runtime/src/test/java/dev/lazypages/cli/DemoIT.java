package dev.lazypages.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import org.junit.jupiter.api.Test;

class DemoIT {
    @Test
    void demoMigratesMemtouchHybridOverLoopbackAndItVerifies() throws Exception {
        String stubs = System.getProperty("lazypages.stubs.dir");
        JarRunner.Result r = JarRunner.run("lazy-pages.jar", Duration.ofSeconds(180), "demo", "--size-mib", "64",
                "--threads", "4", "--dirty-mib-per-sec", "32", "--stubs-dir", stubs);
        assertEquals(0, r.exitCode(), r.toString());
        assertTrue(r.stdout().contains("serve     destination daemon on 127.0.0.1:"), r.toString());
        assertTrue(r.stdout().contains("VERIFY OK pages=16384"), r.toString());
        assertTrue(r.stdout().contains("heartbeat went on"), r.toString());
        for (String row : new String[] {"mode               hybrid", "rounds", "stop reason", "downtime ms", "bytes pre-copy",
            "bytes post-copy", "faults", "fault latency us", "background MiB/s", "total ms"}) {
            assertTrue(r.stdout().contains("  " + row), "table row '" + row + "': " + r);
        }
        assertTrue(r.stdout().contains("demo      OK"), r.toString());
        assertEquals("", r.stderr(), r.toString());
    }

    @Test
    void preCopyDemoRestoresEveryPageBeforeItRuns() throws Exception {
        String stubs = System.getProperty("lazypages.stubs.dir");
        JarRunner.Result r = JarRunner.run("lazy-pages.jar", Duration.ofSeconds(180), "demo", "--size-mib", "32",
                "--mode", "pre-copy", "--stubs-dir", stubs);
        assertEquals(0, r.exitCode(), r.toString());
        assertTrue(r.stdout().contains("mode               pre-copy"), r.toString());
        assertTrue(r.stdout().contains("VERIFY OK pages=8192"), r.toString());
        assertEquals("", r.stderr(), r.toString());
    }

    @Test
    void demoWithoutMemtouchSaysWhereItLooked() throws Exception {
        JarRunner.Result r = JarRunner.run("lazy-pages.jar", Duration.ofSeconds(60), "demo", "--stubs-dir", "/nonexistent");
        assertEquals(ExitCodes.BAD_INPUT, r.exitCode(), r.toString());
        assertTrue(r.stderr().contains("'memtouch' not found") && r.stderr().contains("/nonexistent"), r.toString());
        assertTrue(r.stderr().lines().count() == 1, "one line, no stack trace: " + r);
    }
}
