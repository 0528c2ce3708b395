package dev.lazypages.perf.suite;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.perf.Samples;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SuiteRunnerTest {
    @TempDir
    Path out;

    private static SuiteBench bench(String name, SuiteBench.Body body) {
        return SuiteBench.of(name, "Title of " + name, body);
    }

    private static SuiteResult oneRow(String metric, double v) {
        Samples s = new Samples(metric, "ms");
        s.add(v);
        return new SuiteResult().row("", s);
    }

    @Test
    void aFailingBenchmarkIsReportedAndTheOthersStillRun() throws Exception {
        List<String> ran = new ArrayList<>();
        List<String> lines = new ArrayList<>();
        List<Boolean> quickSeen = new ArrayList<>();
        List<SuiteBench> benches = List.of(
                bench("first", ctx -> {
                    ran.add("first");
                    quickSeen.add(ctx.quick());
                    ctx.progress().accept("step one");
                    return oneRow("first metric", 1);
                }),
                bench("broken", ctx -> {
                    ran.add("broken");
                    throw new IllegalStateException("memtouch pid 42 failed its check: VERIFY FAIL page=7");
                }),
                bench("nothing", ctx -> {
                    ran.add("nothing");
                    return null;
                }),
                bench("last", ctx -> {
                    ran.add("last");
                    return oneRow("last metric", 3);
                }));
        List<SuiteReport.Outcome> outcomes = new SuiteRunner(out, true, lines::add, new Machine("cpu", 2, 1L << 30, "k", "j", "d", null))
                .run(benches);

        assertEquals(List.of("first", "broken", "nothing", "last"), ran);
        assertEquals(List.of(true), quickSeen);
        assertEquals(List.of(false, true, true, false), outcomes.stream().map(SuiteReport.Outcome::failed).toList());
        assertEquals("memtouch pid 42 failed its check: VERIFY FAIL page=7", outcomes.get(1).failure());
        assertEquals("returned no result", outcomes.get(2).failure());
        assertTrue(lines.contains("first: step one"), lines.toString());
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("== broken FAILED after ")), lines.toString());

        String md = Files.readString(out.resolve("report.md"));
        assertTrue(md.contains("4 benchmarks in"), md);
        assertTrue(md.contains("(2 failed)"), md);
        assertTrue(md.contains("**FAILED** after"), md);
        assertTrue(md.contains("VERIFY FAIL page=7"), md);
        assertTrue(md.contains("| first metric | 1.00 ms |"), md);
        assertTrue(md.contains("| last metric | 3.00 ms |"), md);
        assertTrue(md.contains("- commit: (not a git checkout)"), md);
        for (String n : List.of("first", "broken", "nothing", "last")) {
            assertTrue(Files.exists(out.resolve(n + ".json")), n);
        }
        assertTrue(Files.readString(out.resolve("broken.json")).contains("\"status\": \"failed\""));
        assertFalse(Files.readString(out.resolve("last.json")).contains("failed"));
    }

    @Test
    void messageNamesTheTypeWhenThereIsNoMessageAndAddsTheCause() {
        assertEquals("NullPointerException", SuiteRunner.message(new NullPointerException()));
        assertEquals("restore failed (ENOMEM)", SuiteRunner.message(new RuntimeException("restore failed", new Exception("ENOMEM"))));
    }
}
