package dev.lazypages.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class ByteRateTest {
    @Test
    void plainNumbersAreBytesPerSecond() {
        assertEquals(0, ByteRate.parse("0"));
        assertEquals(268_435_456L, ByteRate.parse("268435456"));
    }

    @Test
    void suffixesAreBinaryUnits() {
        assertEquals(512L << 10, ByteRate.parse("512K"));
        assertEquals(256L << 20, ByteRate.parse("256M"));
        assertEquals(256L << 20, ByteRate.parse("256MiB"));
        assertEquals(256L << 20, ByteRate.parse("256mib/s"));
        assertEquals(1L << 30, ByteRate.parse("1G"));
        assertEquals(2L << 30, ByteRate.parse(" 2 GB "));
    }

    @Test
    void badInputGetsAMessageThatSaysWhatIsExpected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ByteRate.parse("fast"));
        assertTrue(e.getMessage().contains("256M"), e.getMessage());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ByteRate.parse("-1M")).getMessage().contains("negative"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ByteRate.parse("9999999999999G")).getMessage().contains("too large"));
        assertThrows(IllegalArgumentException.class, () -> ByteRate.parse("1.5G"));
        assertThrows(IllegalArgumentException.class, () -> ByteRate.parse("M"));
    }
}
