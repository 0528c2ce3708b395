package dev.lazypages.dump;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * Pre-copy of a 1 GiB memtouch at 0, 16 and 64 MiB/s: pages and time frozen per round. Off in
 * the normal run; {@code -Dtest=PreCopyBench -Dlp.bench=true} prints the reports.
 */
@EnabledIfSystemProperty(named = "lp.bench", matches = "true")
class PreCopyBench {
    @Test
    void oneGibAtZeroSixteenAndSixtyFourMibPerSecond() throws Exception {
        for (int rate : new int[] {0, 16, 64}) {
            for (ConvergencePolicy.Limits limits : new ConvergencePolicy.Limits[] {
                    ConvergencePolicy.Limits.defaults(), new ConvergencePolicy.Limits(4, 100, 0)}) {
                Path tmp = Files.createTempDirectory("lp-bench-");
                try (LogProcess w = LogProcess.memtouch(tmp, 1024, 4, rate)) {
                    PreCopy.Report r = PreCopy.run(w.pid, tmp.resolve("pc"), limits,
                            DumpOptions.of(tmp.resolve("pc")).withLeaveRunning(true), null);
                    System.out.printf("== 1 GiB memtouch, 4 threads, %d MiB/s, max %d rounds, goal %.0f%%%n%s%n", rate,
                            limits.maxIterations(), limits.goalPercent(), r.text());
                } finally {
                    try (var s = Files.walk(tmp)) {
                        s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
                    }
                }
            }
        }
    }
}
