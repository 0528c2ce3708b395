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

class ForkedBenchTest {
    @TempDir
    Path out;

    /** The child: runs the benchmark args[0] names in its own JVM, or exits 3 without an outcome for "dies". */
    public static final class Child {
        public static void main(String[] args) throws Exception {
            System.out.println("child pid " + ProcessHandle.current().pid());
            if (args[0].equals("dies")) {
                System.err.println("something went wrong in the child");
                System.exit(3);
            }
            SuiteBench b = SuiteBench.of(args[0], "Title of " + args[0], ctx -> {
                ctx.progress().accept("measuring in pid " + ProcessHandle.current().pid());
                Samples s = new Samples("child metric", "ms");
                s.add(7);
                return new SuiteResult().row("", s).ratio("ours/floor p50", 1.1, 1.25, true);
            });
            ForkedBench.writeOutcome(Path.of(args[1]), SuiteRunner.IN_THIS_JVM.run(b, Path.of(args[2]), false, System.err::println));
        }
    }

    private ForkedBench forked() {
        return new ForkedBench(Child.class.getName(), (b, outcome) -> List.of(b.name(), outcome.toString(), out.toString()));
    }

    private static SuiteBench named(String name) {
        return SuiteBench.of(name, "Title of " + name, ctx -> {
            throw new AssertionError("runs in the child, not here");
        });
    }

    @Test
    void aBenchmarkRunsInAnotherJvmAndItsOutcomeComesBack() throws Exception {
        List<String> lines = new ArrayList<>();
        SuiteReport.Outcome o = forked().run(named("child-bench"), out, false, lines::add);

        assertFalse(o.failed(), o.failure());
        assertEquals("child-bench", o.name());
        assertEquals("Title of child-bench", o.title());
        assertEquals(List.of(new SuiteResult.Ratio("ours/floor p50", 1.1, 1.25, true)), o.ratios());
        assertTrue(o.section().contains("| child metric | 7.00 ms |"), o.section());
        assertEquals("child-bench.json", o.files().get(0));
        assertTrue(Files.exists(out.resolve("child-bench.json")));
        long childPid = lines.stream().filter(l -> l.startsWith("child pid ")).mapToLong(l -> Long.parseLong(l.substring(10)))
                .findFirst().orElseThrow(() -> new AssertionError(lines.toString()));
        assertTrue(childPid != ProcessHandle.current().pid());
        assertTrue(lines.contains("child-bench: measuring in pid " + childPid), lines.toString());
        try (var s = Files.list(out)) {
            assertTrue(s.noneMatch(p -> p.getFileName().toString().endsWith(".outcome")), "outcome file left behind");
        }
    }

    @Test
    void aChildThatDiesIsAFailedOutcomeThatQuotesItsLastLines() throws Exception {
        SuiteReport.Outcome o = forked().run(named("dies"), out, false, l -> { });

        assertTrue(o.failed());
        assertTrue(o.failure().contains("exited with status 3 without a result"), o.failure());
        assertTrue(o.failure().contains("something went wrong in the child"), o.failure());
        assertTrue(Files.readString(out.resolve("dies.json")).contains("\"status\": \"failed\""));
    }

    @Test
    void theReportOfForkedBenchmarksHasTheirTargetsAndSections() throws Exception {
        List<SuiteReport.Outcome> outcomes = new SuiteRunner(out, false, l -> { }, new Machine("cpu", 2, 1L << 30, "k", "j", "d", null),
                forked()).run(List.of(named("child-bench"), named("dies")));

        String md = Files.readString(out.resolve("report.md"));
        assertEquals(List.of(false, true), outcomes.stream().map(SuiteReport.Outcome::failed).toList());
        assertTrue(md.contains("| `child-bench`: ours/floor p50 | 1.1 | ≤ 1.25 | PASS |"), md);
        assertTrue(md.contains("| `dies` | FAILED | | |"), md);
        assertTrue(md.contains("## Title of child-bench (`child-bench`)"), md);
    }
}
