package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.cli.MigrateCommand;
import dev.lazypages.cli.ServeCommand;
import dev.lazypages.ffm.testing.Requires;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** {@code lazy-pages serve} and {@code lazy-dump migrate} driven through picocli, in this JVM. */
@Timeout(180)
class CommandsTest {
    @TempDir
    Path tmp;

    private static final class Captured {
        final StringWriter out = new StringWriter();
        final StringWriter err = new StringWriter();

        CommandLine wire(Object command) {
            CommandLine cl = new CommandLine(command);
            cl.setOut(new PrintWriter(out, true));
            cl.setErr(new PrintWriter(err, true));
            return cl;
        }
    }

    @Test
    void serveThenMigrateThroughTheCommands() throws Exception {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
        ServeCommand serve = new ServeCommand();
        Captured s = new Captured();
        CommandLine scl = s.wire(serve);
        CompletableFuture<Integer> serving = CompletableFuture.supplyAsync(() -> scl.execute("--listen", "127.0.0.1:0",
                "--work-dir", tmp.resolve("work").toString(), "--report-dir", tmp.resolve("reports").toString()));
        try (Memtouch m = Memtouch.start(64, 2, 4)) {
            Matcher port = await(s.out, Pattern.compile("serving on 127\\.0\\.0\\.1:(\\d+)"));
            Matcher token = await(s.out, Pattern.compile("token ([0-9a-f]{32})"));
            Captured mg = new Captured();
            Path report = tmp.resolve("source.json");
            int rc = mg.wire(new MigrateCommand()).execute("-t", Integer.toString(m.pid), "--to", "127.0.0.1:" + port.group(1),
                    "--token", token.group(1), "--mode", "post-copy", "--report", report.toString(),
                    "--max-postcopy-bandwidth", "128M");
            assertEquals(0, rc, mg.err + "\n" + mg.out);
            await(s.out, Pattern.compile("post-copy background capped at 128\\.0 MiB/s"));
            Matcher newPid = Pattern.compile("\\(pid (\\d+) there\\)").matcher(mg.out.toString());
            assertTrue(newPid.find(), mg.out.toString());
            m.pid = Integer.parseInt(newPid.group(1));
            assertTrue(mg.out.toString().contains("  mode               post-copy"), mg.out.toString());
            m.assertVerifies();
            assertTrue(Files.readString(report).contains("\"outcome\": \"migrated\""));
            assertTrue(Files.readString(report).contains("\"postcopy_bandwidth_cap_bytes_per_sec\": 134217728"), Files.readString(report));
            assertTrue(mg.out.toString().contains("(capped at 128.0)"), mg.out.toString());
            assertTrue(Files.exists(tmp.resolve("source.hgrm")));
            await(s.out, Pattern.compile("migration \\w+: migrated"));
            try (var l = Files.list(tmp.resolve("reports"))) {
                assertEquals(2, l.count(), "json and hgrm");
            }

            Captured bad = new Captured();
            int rc2 = bad.wire(new MigrateCommand()).execute("-t", Integer.toString(m.pid), "--to", "127.0.0.1:" + port.group(1),
                    "--token", "nope");
            assertEquals(1, rc2);
            assertTrue(bad.err.toString().contains("token mismatch") && bad.err.toString().contains("runs on at the source"),
                    bad.err.toString());
            m.assertVerifies();

            Captured faulty = new Captured(); // the hidden fault injection reaches the migration
            int rc3 = faulty.wire(new MigrateCommand()).execute("-t", Integer.toString(m.pid), "--to", "127.0.0.1:" + port.group(1),
                    "--token", token.group(1), "--inject-fault", "precheck");
            assertEquals(1, rc3, faulty.err.toString());
            assertTrue(faulty.err.toString().contains("fault injected at step precheck"), faulty.err.toString());
            m.assertVerifies();
        } finally {
            serve.stop();
            assertEquals(0, serving.get());
        }
    }

    @Test
    void aBadDestinationIsAUsageError() {
        Captured c = new Captured();
        CommandLine cl = c.wire(new MigrateCommand());
        cl.setExecutionExceptionHandler((ex, line, parse) -> ex instanceof IllegalArgumentException ? 4 : 1);
        assertEquals(4, cl.execute("-t", "1", "--to", "nohostport"));
        assertEquals(4, cl.execute("-t", "1", "--to", "127.0.0.1:1", "--mode", "sideways"));
    }

    @Test
    void aBadBandwidthCapIsAUsageErrorThatSaysWhatItWants() {
        Captured c = new Captured();
        CommandLine cl = c.wire(new MigrateCommand());
        assertEquals(2, cl.execute("-t", "1", "--to", "127.0.0.1:1", "--max-postcopy-bandwidth", "fast"));
        assertTrue(c.err.toString().contains("'fast' is not a rate") && c.err.toString().contains("256M"), c.err.toString());
        Captured pre = new Captured();
        assertEquals(2, pre.wire(new MigrateCommand()).execute("-t", "1", "--to", "127.0.0.1:1", "--mode", "pre-copy",
                "--max-postcopy-bandwidth", "256M"));
        assertTrue(pre.err.toString().contains("applies to post-copy and hybrid"), pre.err.toString());
    }

    private static Matcher await(StringWriter w, Pattern p) throws InterruptedException {
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (System.nanoTime() - deadline < 0) {
            Matcher m = p.matcher(w.toString());
            if (m.find()) {
                return m;
            }
            Thread.sleep(20);
        }
        throw new AssertionError("no " + p + " in:\n" + w);
    }
}
