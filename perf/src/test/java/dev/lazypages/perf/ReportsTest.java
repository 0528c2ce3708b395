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
    void helpListsEverySubcommand() {
        java.io.StringWriter sw = new java.io.StringWriter();
        picocli.CommandLine cl = new picocli.CommandLine(new Bench());
        cl.setOut(new java.io.PrintWriter(sw));
        assertEquals(0, cl.execute("--help"));
        for (String sub : List.of("restore", "readv", "tracker", "precopy", "fault")) {
            assertTrue(sw.toString().contains(sub), sub + " missing from " + sw);
        }
    }

    @Test
    void subcommandDefaultsAreTheDocumentedOnes() {
        picocli.CommandLine cl = new picocli.CommandLine(new Bench());
        picocli.CommandLine.Model.CommandSpec tracker = cl.getSubcommands().get("tracker").getCommandSpec();
        assertEquals("1024", tracker.findOption("--size-mib").defaultValue());
        assertEquals("1", tracker.findOption("--dirty-mib-per-sec").defaultValue());
        assertEquals("5", tracker.findOption("--repeat").defaultValue());
        assertEquals("1024", cl.getSubcommands().get("precopy").getCommandSpec().findOption("--size-mib").defaultValue());
        picocli.CommandLine.Model.CommandSpec pre = cl.getSubcommands().get("precopy").getCommandSpec();
        assertEquals("0,16,64", pre.findOption("--rates").defaultValue());
        assertEquals("4", pre.findOption("--threads").defaultValue());
        assertEquals("4", pre.findOption("--max-iterations").defaultValue());
        assertEquals("100", pre.findOption("--goal").defaultValue());
        assertEquals("3", pre.findOption("--repeat").defaultValue());
        picocli.CommandLine.Model.CommandSpec fault = cl.getSubcommands().get("fault").getCommandSpec();
        assertEquals("10000", fault.findOption("--pages").defaultValue());
        assertEquals("0", fault.findOption("--prefetch").defaultValue());
        assertEquals("false", fault.findOption("--background").defaultValue());
        assertEquals("5", fault.findOption("--repeat").defaultValue());
        // --background takes a value, as in `--background true`
        assertEquals(0, new picocli.CommandLine(new Bench()).parseArgs("fault", "--background", "true").errors().size());
    }

    @Test
    void ratesMayBeZeroButNotNegative() {
        assertEquals(List.of(0, 16, 64), Reports.nonNegativeInts("0,16,64"));
        assertThrows(IllegalArgumentException.class, () -> Reports.nonNegativeInts("-1"));
        assertThrows(IllegalArgumentException.class, () -> Reports.positiveInts("0,16"));
        assertThrows(IllegalArgumentException.class, () -> Reports.nonNegativeInts(" "));
    }

    @Test
    void costPerGibAndDirtyRate() {
        assertEquals(4.0, Reports.msPerGib(2.0, 512L << 20), 1e-12);
        assertThrows(IllegalArgumentException.class, () -> Reports.msPerGib(1, 0));
        // 256 pages of 4 KiB = 1 MiB in half a second
        assertEquals(2.0, Reports.mibPerSecond(256, 4096, 500_000_000L), 1e-12);
        assertEquals(0.0, Reports.mibPerSecond(256, 4096, 0), 0);
    }

    @Test
    void byPositionGroupsRunsOfDifferentLengths() {
        List<Samples> rows = Reports.byPosition("round %d pages", "pages",
                List.of(List.of(100.0, 10.0, 5.0), List.of(102.0, 12.0), List.of(98.0)));
        assertEquals(3, rows.size());
        assertEquals("round 1 pages", rows.get(0).name());
        assertEquals(3, rows.get(0).count());
        assertEquals(100.0, rows.get(0).median());
        assertEquals(2, rows.get(1).count());
        assertEquals(11.0, rows.get(1).median());
        assertEquals(1, rows.get(2).count());
        assertEquals("round 3 pages", rows.get(2).name());
        assertTrue(Reports.byPosition("r%d", "x", List.of()).isEmpty());
    }

    @Test
    void tallyCountsInOrderOfFirstAppearance() {
        assertEquals("max-iterations 2/3, goal-reached 1/3",
                Reports.tally(List.of("max-iterations", "goal-reached", "max-iterations")));
        assertEquals("", Reports.tally(List.of()));
    }

    @Test
    void microsAndHgrmOfANanosecondHistogram() {
        org.HdrHistogram.Histogram h = new org.HdrHistogram.Histogram(3);
        assertEquals(0.0, Reports.micros(h, 50), 0);
        for (int i = 1; i <= 100; i++) {
            h.recordValue(i * 1000L); // 1..100 µs
        }
        assertEquals(50.0, Reports.micros(h, 50), 0.1);
        assertEquals(99.0, Reports.micros(h, 99), 0.1);
        assertEquals(100.0, Reports.micros(h, 100), 0.1);
        String hgrm = Reports.hgrm(h);
        assertTrue(hgrm.contains("Value     Percentile TotalCount 1/(1-Percentile)"), hgrm);
        assertTrue(hgrm.contains("#[Max     =      100.031, Total count    =          100]")
                || hgrm.contains("Total count    =          100"), hgrm);
    }

    @Test
    void permutationHoldsEveryIndexOnce() {
        int[] p = Reports.permutation(1000, new java.util.Random(1));
        assertEquals(1000, p.length);
        java.util.BitSet seen = new java.util.BitSet();
        for (int v : p) {
            assertTrue(!seen.get(v), "twice: " + v);
            seen.set(v);
        }
        assertEquals(1000, seen.cardinality());
        assertTrue(!java.util.Arrays.equals(p, java.util.stream.IntStream.range(0, 1000).toArray()), "not shuffled");
    }
}
