package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class SamplesTest {
    @Test
    void medianOfOddAndEvenCountsMinAndMax() {
        Samples s = new Samples("x", "ms");
        for (double v : new double[] {5, 1, 9}) {
            s.add(v);
        }
        assertEquals(5, s.median());
        s.add(7);
        assertEquals(6, s.median());
        assertEquals(1, s.min());
        assertEquals(9, s.max());
        assertEquals("| x | 6.00 ms | 1.00 | 9.00 | 4 |", s.markdownRow());
    }

    @Test
    void noSamplesIsAnError() {
        assertThrows(IllegalStateException.class, () -> new Samples("empty", "ms").median());
    }
}
