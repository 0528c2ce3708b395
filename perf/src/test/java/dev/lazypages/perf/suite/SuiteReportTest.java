package dev.lazypages.perf.suite;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.perf.Samples;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import javax.imageio.ImageIO;
import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SuiteReportTest {
    @TempDir
    Path out;

    private static final Machine MACHINE = new Machine("Test CPU", 2, 8L << 30, "6.18.0", "25", "2026-01-01T00:00:00Z", "abc123");

    /** A result with one of everything: a table, two histograms on one chart, two series on another, a ratio, a note. */
    static SuiteResult sample() {
        SuiteResult r = new SuiteResult();
        Samples s = new Samples("hybrid 1024 MiB: downtime", "ms");
        for (double v : new double[] {120, 100, 140}) {
            s.add(v);
        }
        r.row("downtime", s);
        Random rnd = new Random(1);
        Histogram ours = new Histogram(3);
        Histogram floor = new Histogram(3);
        for (int i = 0; i < 10_000; i++) {
            ours.recordValue(20_000 + (long) (rnd.nextExponential() * 10_000)); // ns
            floor.recordValue(10_000 + (long) (rnd.nextExponential() * 5_000));
        }
        r.chart("fault-latency", "Fault latency", "percentile", "latency (µs)");
        r.histogram("fault-latency", "ours idle", ours).histogram("fault-latency", "floor idle", floor);
        r.chart("downtime", "Downtime against memory size", "memory size (MiB)", "ms").logX("downtime").logY("downtime");
        r.series("downtime", "hybrid", List.of(new double[] {256, 110}, new double[] {1024, 120}, new double[] {4096, 150}));
        r.series("downtime", "pre-copy", List.of(new double[] {256, 900}, new double[] {1024, 2500}, new double[] {4096, 8000}));
        r.ratio("hybrid downtime 4 GiB / 1 GiB", 1.25, 1.2, true);
        r.ratio("throughput GiB/s", 2.0, 1.5, false);
        r.note("noisy: shared machine");
        r.put("sizes_mib", List.of(256, 1024, 4096));
        return r;
    }

    @Test
    void writesJsonHgrmAndPngsAndTheMarkdownQuotesThemAll() throws Exception {
        SuiteReport.Outcome o = SuiteReport.write(out, "downtime", "Downtime", sample(), 12.34);
        assertEquals(List.of("downtime.json", "downtime-fault-latency-ours-idle.hgrm", "downtime-fault-latency-floor-idle.hgrm",
                "downtime-fault-latency.png", "downtime-downtime.png"), o.files());
        for (String f : o.files()) {
            assertTrue(Files.size(out.resolve(f)) > 0, f);
        }
        String hgrm = Files.readString(out.resolve("downtime-fault-latency-ours-idle.hgrm"));
        assertTrue(hgrm.replaceAll(" +", " ").contains("Value Percentile TotalCount 1/(1-Percentile)"), hgrm);
        assertTrue(hgrm.replaceAll(" +", " ").contains("Total count = 10000]"), hgrm);

        String json = Files.readString(out.resolve("downtime.json"));
        assertTrue(json.contains("\"status\": \"ok\""), json);
        assertTrue(json.contains("\"median\": 120.0"), json);
        assertTrue(json.contains("\"hgrm\": \"downtime-fault-latency-floor-idle.hgrm\""), json);
        assertTrue(json.contains("\"passed\": false"), json);
        assertTrue(json.contains("\"target\": \"<= 1.2\""), json);
        assertTrue(json.contains("\"sizes_mib\": [256, 1024, 4096]"), json);
        assertTrue(json.contains("\"noisy: shared machine\""), json);

        String md = SuiteReport.markdown(MACHINE, true, List.of(o), 13);
        assertTrue(md.contains("- machine: Test CPU, 2 cores, 8.0 GiB memory"), md);
        assertTrue(md.contains("- kernel: Linux 6.18.0"), md);
        assertTrue(md.contains("- commit: abc123"), md);
        assertTrue(md.contains("quick (--quick)"), md);
        assertTrue(md.contains("| metric | median | min | max | n |\n|---|---:|---:|---:|---:|\n"
                + "| hybrid 1024 MiB: downtime | 120.00 ms | 100.00 | 140.00 | 3 |"), md);
        assertTrue(md.contains("| `downtime`: hybrid downtime 4 GiB / 1 GiB | 1.25 | ≤ 1.2 | MISS |"), md);
        assertTrue(md.contains("| `downtime`: throughput GiB/s | 2 | ≥ 1.5 | PASS |"), md);
        assertTrue(md.contains("| fault-latency: ours idle | 10000 |"), md);
        assertTrue(md.contains("![downtime-downtime.png](downtime-downtime.png)"), md);
        assertTrue(md.indexOf("downtime-fault-latency.png)") < md.indexOf("downtime-downtime.png)"), "declared order");
        assertTrue(!md.contains("noisy ("), "100-140 ms is not noisy: " + md);
    }

    @Test
    void rowsWhoseRunsDisagreeAreCalledNoisy() {
        Samples steady = new Samples("steady", "ms");
        Samples jumpy = new Samples("jumpy", "ms");
        for (double v : new double[] {10, 11, 12}) {
            steady.add(v);
        }
        for (double v : new double[] {10, 31, 12}) {
            jumpy.add(v);
        }
        SuiteResult r = new SuiteResult().row("", steady).row("", jumpy);
        String n = SuiteReport.noisy(r);
        assertTrue(n != null && n.contains("jumpy (max/min 3.1)") && !n.contains("steady"), n);
    }

    @Test
    void pngsDecodeAtTheirSizeAndHaveLinesInSeveralColours() throws Exception {
        SuiteReport.write(out, "b", "B", sample(), 1);
        for (String f : List.of("b-fault-latency.png", "b-downtime.png")) {
            BufferedImage img = ImageIO.read(out.resolve(f).toFile());
            assertNotNull(img, f + " decodes");
            assertEquals(Charts.WIDTH, img.getWidth());
            assertEquals(Charts.HEIGHT, img.getHeight());
            Set<Integer> colours = new HashSet<>();
            int nonWhite = 0;
            for (int y = 0; y < img.getHeight(); y += 2) {
                for (int x = 0; x < img.getWidth(); x += 2) {
                    int rgb = img.getRGB(x, y) & 0xffffff;
                    if (rgb != 0xffffff) {
                        nonWhite++;
                    }
                    colours.add(rgb);
                }
            }
            assertTrue(nonWhite > 2000, f + ": " + nonWhite + " non-white pixels");
            // the first two palette colours (the two lines and their legend) are drawn
            assertTrue(colours.contains(0x1f77b4) && colours.contains(0xd62728), f + " has both lines' colours");
        }
    }

    @Test
    void aFailedBenchmarkHasItsMessageInJsonAndMarkdown() throws Exception {
        SuiteReport.Outcome o = SuiteReport.failed(out, "fault", "Fault latency", "memtouch died", 2);
        assertTrue(Files.readString(out.resolve("fault.json")).contains("\"error\": \"memtouch died\""));
        String md = SuiteReport.markdown(MACHINE, false, List.of(o), 2);
        assertTrue(md.contains("**FAILED** after 2.0 s: memtouch died"), md);
        assertTrue(md.contains("| `fault` | FAILED | | |"), md);
        assertTrue(md.contains("full, 1 benchmarks in 2.0 s (1 failed)"), md);
    }

    @Test
    void percentileLineEndsAtTheMaximumPlacedByTheCount() {
        Histogram h = new Histogram(3);
        for (int i = 1; i <= 1000; i++) {
            h.recordValue(i * 1000L);
        }
        List<double[]> pts = new ArrayList<>(Charts.percentileLine("x", h).points());
        double[] last = pts.getLast();
        assertEquals(3.0, last[0], 1e-9); // log10(1000)
        assertEquals(1000.0, last[1], 1.0); // 1 ms in µs
        assertEquals(0.0, pts.getFirst()[0], 1e-9);
    }

    @Test
    void slugsAndNiceSteps() {
        assertEquals("2000-s-fixed-rate-idle", SuiteReport.slug("2000/s fixed rate, idle"));
        assertEquals(2.0, Charts.niceStep(1.3), 1e-12);
        assertEquals(500.0, Charts.niceStep(260), 1e-12);
        assertEquals("1,000,000", Charts.number(1e6));
        assertEquals("0.25", Charts.number(0.25));
    }
}
