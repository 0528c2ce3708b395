package dev.lazypages.perf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class JvmActivityTest {
    @Test
    void countsTheCollectionsAndCompilesOfAWindow() {
        JvmActivity before = JvmActivity.now();
        System.gc();
        JvmActivity d = JvmActivity.now().since(before);
        assertTrue(d.gcCount() >= 1, "an explicit collection is counted: " + d);
        assertTrue(d.gcMillis() >= 0 && d.jitMillis() >= 0, d.toString());
        assertEquals(new JvmActivity(2, 5, 7), new JvmActivity(5, 15, 27).since(new JvmActivity(3, 10, 20)));
        assertEquals(-1, new JvmActivity(5, 15, 27).since(new JvmActivity(3, 10, -1)).jitMillis(), "unknown stays unknown");
    }
}
