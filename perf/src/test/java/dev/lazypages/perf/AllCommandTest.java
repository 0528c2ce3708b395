package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteResult;
import java.util.List;
import org.junit.jupiter.api.Test;

class AllCommandTest {
    private static final List<SuiteBench> ALL = List.of(SuiteBench.of("a", "A", ctx -> new SuiteResult()),
            SuiteBench.of("b", "B", ctx -> new SuiteResult()), SuiteBench.of("c", "C", ctx -> new SuiteResult()));

    private static List<String> names(List<SuiteBench> l) {
        return l.stream().map(SuiteBench::name).toList();
    }

    @Test
    void onlyAndSkipChooseBenchmarksInSuiteOrder() {
        assertEquals(List.of("a", "b", "c"), names(AllCommand.select(ALL, null, null)));
        assertEquals(List.of("a", "c"), names(AllCommand.select(ALL, List.of("c", "a"), null)));
        assertEquals(List.of("b"), names(AllCommand.select(ALL, null, List.of("a", "c"))));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> AllCommand.select(ALL, List.of("x"), null));
        assertTrue(e.getMessage().contains("no benchmark named 'x' (there are: a, b, c)"), e.getMessage());
    }

    @Test
    void theSuiteHasEveryBenchmarkOnceWithFileSafeNames() {
        List<String> n = names(SuiteCommands.benches());
        assertTrue(n.containsAll(List.of("restore", "readv", "fault-latency", "postcopy-throughput", "delayed-link", "tracker", "precopy",
                "downtime", "net", "freeze", "jmh")), n.toString());
        assertEquals(n.size(), n.stream().distinct().count(), "unique: " + n);
        n.forEach(x -> assertTrue(x.matches("[a-z0-9-]+"), "file-name-safe: " + x));
    }

    @Test
    void listNeedsNoOutputDirectoryButARunDoes() {
        assertEquals(0, Bench.run("all", "--list"));
        assertEquals(2, Bench.run("all"));
    }
}
