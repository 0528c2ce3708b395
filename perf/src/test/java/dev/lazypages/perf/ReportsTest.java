package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class ReportsTest {
    @Test
    void parsesMemtouchsRegionLine() {
        Reports.Region r = Reports.parseRegion("REGION addr=0x7f0a12345000 size=1073741824 pages=262144 page_size=4096 table=0x7f0a00001000");
        assertEquals(0x7f0a12345000L, r.address());
        assertEquals(1L << 30, r.size());
        assertThrows(IllegalArgumentException.class, () -> Reports.parseRegion("HEARTBEAT 1"));
    }

    @Test
    void gibPerSecondOfOneGibInHalfASecondIsTwo() {
        assertEquals(2.0, Reports.gibPerSecond(1L << 30, 500_000_000L), 1e-9);
        assertThrows(IllegalArgumentException.class, () -> Reports.gibPerSecond(1, 0));
    }

    @Test
    void medianRatioAndMillis() {
        Samples a = new Samples("a", "ms");
        Samples b = new Samples("b", "ms");
        for (double v : new double[] {10, 12, 11}) {
            a.add(v);
        }
        for (double v : new double[] {5, 6, 4}) {
            b.add(v);
        }
        assertEquals(11.0 / 5.0, Reports.medianRatio(a, b), 1e-12);
        assertEquals(1.5, Reports.millis(1_500_000L), 1e-12);
    }

    @Test
    void markdownTableHasAHeaderAndOneRowPerMetric() {
        Samples s = new Samples("lazy 256 MiB: running", "ms");
        s.add(3);
        String t = Reports.markdownTable(List.of(s));
        List<String> lines = t.lines().toList();
        assertEquals(3, lines.size(), t);
        assertEquals("| metric | median | min | max | n |", lines.get(0));
        assertTrue(lines.get(1).startsWith("|---"), t);
        assertEquals("| lazy 256 MiB: running | 3.00 ms | 3.00 | 3.00 | 1 |", lines.get(2));
    }

    @Test
    void parsesCommaSeparatedSizesAndRefusesNonsense() {
        assertEquals(List.of(256, 1024), Reports.positiveInts("256, 1024"));
        assertThrows(IllegalArgumentException.class, () -> Reports.positiveInts("256,x"));
        assertThrows(IllegalArgumentException.class, () -> Reports.positiveInts("0"));
        assertThrows(IllegalArgumentException.class, () -> Reports.positiveInts(","));
    }

    @Test
    void chunkNames() {
        assertEquals("256 KiB", Reports.kib(256));
        assertEquals("16 MiB", Reports.kib(16384));
    }

    @Test
    void helpListsBothSubcommands() {
        java.io.StringWriter sw = new java.io.StringWriter();
        picocli.CommandLine cl = new picocli.CommandLine(new Bench());
        cl.setOut(new java.io.PrintWriter(sw));
        assertEquals(0, cl.execute("--help"));
        assertTrue(sw.toString().contains("restore") && sw.toString().contains("readv"), sw.toString());
    }
}
