package dev.lazypages.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import org.junit.jupiter.api.Test;

class DemoIT {
    @Test
    void demoDumpsMemtouchRestoresItLazilyAndItVerifies() throws Exception {
        String stubs = System.getProperty("lazypages.stubs.dir");
        JarRunner.Result r = JarRunner.run("lazy-pages.jar", Duration.ofSeconds(120), "demo", "--size-mib", "64",
                "--threads", "4", "--dirty-mib-per-sec", "32", "--stubs-dir", stubs);
        assertEquals(0, r.exitCode(), r.toString());
        assertTrue(r.stdout().contains("dump      5 threads"), r.toString());
        assertTrue(r.stdout().contains("(lazy, 0.0 MiB written before it ran)"), r.toString());
        assertTrue(r.stdout().contains("VERIFY OK pages=16384"), r.toString());
        assertTrue(r.stdout().contains("demo      OK"), r.toString());
        assertEquals("", r.stderr(), r.toString());
    }

    @Test
    void eagerDemoWritesEveryPageFirst() throws Exception {
        String stubs = System.getProperty("lazypages.stubs.dir");
        JarRunner.Result r = JarRunner.run("lazy-pages.jar", Duration.ofSeconds(120), "demo", "--size-mib", "32",
                "--eager", "--stubs-dir", stubs);
        assertEquals(0, r.exitCode(), r.toString());
        assertTrue(r.stdout().contains("eager"), r.toString());
        assertTrue(r.stdout().contains("VERIFY OK pages=8192"), r.toString());
    }

    @Test
    void demoWithoutMemtouchSaysWhereItLooked() throws Exception {
        JarRunner.Result r = JarRunner.run("lazy-pages.jar", Duration.ofSeconds(60), "demo", "--stubs-dir", "/nonexistent");
        assertEquals(ExitCodes.BAD_INPUT, r.exitCode(), r.toString());
        assertTrue(r.stderr().contains("'memtouch' not found") && r.stderr().contains("/nonexistent"), r.toString());
        assertTrue(r.stderr().lines().count() == 1, "one line, no stack trace: " + r);
    }
}
