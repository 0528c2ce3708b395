package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MigrationReportTest {
    @TempDir
    Path tmp;

    @Test
    void theJsonHasEveryFieldAndTheHgrmLiesBesideIt() throws Exception {
        MigrationReport r = new MigrationReport();
        r.mode = MigrationMode.HYBRID;
        r.addRound(new MigrationReport.Round(1, 100, 409600, 12.34, 0, 0));
        r.addRound(new MigrationReport.Round(2, 10, 40960, 1.0, 2560, 10));
        r.stopReason = "goal-reached";
        r.downtimeMs = 42.25;
        r.faultLatency = new Histogram(3);
        for (int i = 1; i <= 1000; i++) {
            r.faultLatency.recordValue(i * 1000L); // 1..1000 µs
        }
        r.faults = 1000;
        r.backgroundMiBps = 250.5;
        r.postcopyBandwidthCap = 256L << 20;
        r.serveLatency = new Histogram(3);
        r.serveLatency.recordValue(15_000);
        Path hgrm = r.write(tmp.resolve("m.json"));
        String json = Files.readString(tmp.resolve("m.json"));
        for (String k : new String[] {"\"mode\": \"hybrid\"", "\"rounds\"", "\"dirty_rate\": 2560", "\"mib_per_sec\": 31.7", "\"stop_reason\": \"goal-reached\"",
            "\"downtime_ms\": 42.3", "\"bytes_precopy\": 450560", "\"bytes_postcopy\"", "\"faults\": 1000", "\"fault_latency_us\"",
            "\"p999\"", "\"background_mib_per_sec\"", "\"postcopy_bandwidth_cap_bytes_per_sec\": 268435456", "\"total_ms\"", "\"serve_latency_us\""}) {
            assertTrue(json.contains(k), k + " in " + json);
        }
        assertEquals(tmp.resolve("m.hgrm"), hgrm);
        String h = Files.readString(hgrm);
        assertTrue(h.contains("Value     Percentile TotalCount 1/(1-Percentile)"), h);
        assertTrue(h.contains("#[Max     =     1000."), h);
        assertEquals(500.0, (Double) MigrationReport.percentiles(r.faultLatency).get("p50"), 1.0);
        assertTrue(r.table().contains("downtime ms        42.3"), r.table());
        assertTrue(r.table().contains("background MiB/s   250.5 (capped at 256.0)"), r.table());
    }
}
