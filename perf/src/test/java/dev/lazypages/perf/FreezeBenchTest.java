package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Map;
import org.junit.jupiter.api.Test;

class FreezeBenchTest {
    @Test
    void stepsOfTheDumpersFrozenWindowLineWithoutTemporaryPaths() {
        Map<String, Double> s = FreezeBench.steps("frozen window 13.7 ms: create the image in /tmp/x1/run2/img 0.8 ms, seize 0.4 ms, "
                + "read registers of thread N 2.3 ms, inject brk(N) 0.3 ms");
        assertEquals(Map.of("create the image", 0.8, "seize", 0.4, "read registers of thread N", 2.3, "inject brk(N)", 0.3), s);
        assertEquals(Map.of(), FreezeBench.steps("no colon here"));
    }
}
