package dev.lazypages.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Features;
import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

class CheckCommandIT {
    private static final Duration TIMEOUT = Duration.ofSeconds(60);

    private static boolean jsonBoolean(String json, String key) {
        Matcher m = Pattern.compile("\"" + key + "\": (true|false)").matcher(json);
        assertTrue(m.find(), "no boolean key " + key + " in\n" + json);
        return Boolean.parseBoolean(m.group(1));
    }

    @Test
    void checkJsonReportsWhatTheKernelReallyHas() throws Exception {
        JarRunner.Result r = JarRunner.run("lazy-dump.jar", TIMEOUT, "check", "--json");
        // The truth, probed in this JVM by the same facility code the tests of ffm-bindings cover.
        assertEquals(Features.softDirty().available(), jsonBoolean(r.stdout(), "soft_dirty"), r.toString());
        assertEquals(Features.pagemapScan().available(), jsonBoolean(r.stdout(), "pagemap_scan"), r.toString());
        assertEquals(Features.uffdWpAsync().available(), jsonBoolean(r.stdout(), "uffd_wp_async"), r.toString());
        assertEquals(Features.ptrace().available(), jsonBoolean(r.stdout(), "ptrace"), r.toString());
        assertEquals(Features.userfaultfd().available(), jsonBoolean(r.stdout(), "userfaultfd"), r.toString());
        boolean ready = jsonBoolean(r.stdout(), "live_migration_ready");
        assertEquals(ready ? 0 : ExitCodes.UNSUPPORTED, r.exitCode(), r.toString());
        if (ready) {
            assertEquals("", r.stderr(), "a ready machine prints nothing on stderr (no JVM warnings either)");
        } else {
            assertTrue(r.stderr().lines().allMatch(l -> l.startsWith("missing: ")), r.toString());
        }
        assertTrue(r.stdout().contains("\"page_size\": 4096"), r.toString());
    }

    @Test
    void checkOnThisMachineSaysSoftDirtyIsMissingWhenTheKernelLacksIt() throws Exception {
        JarRunner.Result r = JarRunner.run("lazy-dump.jar", TIMEOUT, "check");
        String line = r.stdout().lines().filter(l -> l.startsWith("soft_dirty")).findFirst().orElseThrow();
        assertEquals(Features.softDirty().available(), !line.contains(" NO "), r.toString());
        assertTrue(r.stdout().contains("dirty tracker"), r.toString());
    }

    @Test
    void helpAndVersionWorkOnBothJarsWithoutWarnings() throws Exception {
        for (String jar : new String[] {"lazy-dump.jar", "lazy-pages.jar"}) {
            JarRunner.Result help = JarRunner.run(jar, TIMEOUT, "--help");
            assertEquals(0, help.exitCode(), help.toString());
            assertTrue(help.stdout().contains("Usage: lazy-"), help.toString());
            assertTrue(help.stdout().contains("check"), help.toString());
            assertEquals("", help.stderr(), "no warnings from " + jar);
            JarRunner.Result version = JarRunner.run(jar, TIMEOUT, "--version");
            assertEquals(0, version.exitCode(), version.toString());
            assertTrue(version.stdout().contains("0.1.0"), version.toString());
            assertEquals("", version.stderr(), "no warnings from " + jar);
        }
    }

    @Test
    void anUnknownCommandIsAUsageErrorWithoutAStackTrace() throws Exception {
        JarRunner.Result r = JarRunner.run("lazy-dump.jar", TIMEOUT, "frobnicate");
        assertEquals(ExitCodes.USAGE, r.exitCode(), r.toString());
        assertTrue(r.stderr().contains("Unmatched argument") && r.stderr().contains("frobnicate"), r.toString());
        assertFalse(r.stderr().contains("\tat "), "no stack trace: " + r);
    }
}
