package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.perf.suite.SuiteResult;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/** One real, small run of the downtime benchmark: three modes, two sizes, live migrations on loopback. */
class DowntimeBenchTest {
    @Test
    void migratesEachModeAtTwoSmallSizesAndReportsSaneDowntimes() throws Exception {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
        DowntimeBench b = DowntimeBench.configured("32,64", 1);
        b.warmUp = false;
        b.hybridRepeat = 2;
        List<String> progress = new ArrayList<>();
        SuiteResult r = b.measure(progress::add);

        Map<String, Samples> rows = r.tables().values().stream().flatMap(List::stream)
                .collect(Collectors.toMap(Samples::name, Function.identity()));
        for (String mode : List.of("pre-copy", "post-copy", "hybrid")) {
            for (int mib : new int[] {32, 64}) {
                Samples d = rows.get(mode + " " + mib + " MiB: downtime");
                assertEquals(mode.equals("hybrid") ? 2 : 1, d.count(), mode + " " + mib + ": hybrid has its own repeat count");
                assertTrue(d.median() > 0 && d.median() < 30_000, mode + " " + mib + " MiB downtime " + d.median() + " ms");
                double moved = rows.get(mode + " " + mib + " MiB: pre-copied").median() + rows.get(mode + " " + mib + " MiB: post-copied").median();
                assertTrue(moved >= mib * 0.9, mode + " " + mib + " MiB moved only " + moved + " MiB");
                assertTrue(rows.get(mode + " " + mib + " MiB: total").median() >= d.median(), "total covers the downtime");
            }
        }
        assertEquals(0.0, rows.get("pre-copy 64 MiB: post-copied").median(), "pre-copy sends nothing after the freeze");
        assertEquals(0.0, rows.get("post-copy 64 MiB: pre-copied").median(), "post-copy sends nothing before it");
        assertEquals(3, r.series().size());
        r.series().forEach(s -> assertEquals(2, s.points().size(), s.label()));
        assertEquals(1, r.ratios().size());
        assertEquals("hybrid downtime 64 MiB / 32 MiB (medians)", r.ratios().getFirst().name());
        assertTrue(r.ratios().getFirst().value() > 0);
        assertEquals(8, progress.stream().filter(l -> l.startsWith("measured ")).count(), progress.toString());
    }
}
