package dev.lazypages.ffm;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.lazypages.ffm.gen.page_region;
import dev.lazypages.ffm.gen.pm_scan_arg;
import dev.lazypages.ffm.gen.prctl_mm_map;
import dev.lazypages.ffm.gen.uffd_msg;
import dev.lazypages.ffm.gen.uffdio_api;
import dev.lazypages.ffm.gen.uffdio_copy;
import dev.lazypages.ffm.gen.uffdio_register;
import dev.lazypages.ffm.gen.user_fpregs_struct;
import dev.lazypages.ffm.gen.user_regs_struct;
import dev.lazypages.ffm.testing.Stubs;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/**
 * The ioctl numbers that {@link Ioctl} builds in Java, and the struct sizes jextract generated,
 * against the numbers C computes from the same header (native-stubs' uapi-consts).
 */
class IoctlNumbersTest {
    private static Map<String, Long> c;

    @BeforeAll
    static void runUapiConsts() {
        c = new TreeMap<>();
        for (String line : Stubs.run("uapi-consts").split("\n")) {
            if (line.isBlank()) {
                continue;
            }
            int eq = line.indexOf('=');
            c.put(line.substring(0, eq), Long.parseUnsignedLong(line.substring(eq + 1)));
        }
    }

    private static Map<String, Long> javaIoctls() {
        Map<String, Long> m = new LinkedHashMap<>();
        m.put("UFFDIO_API", Ioctl.UFFDIO_API);
        m.put("UFFDIO_REGISTER", Ioctl.UFFDIO_REGISTER);
        m.put("UFFDIO_UNREGISTER", Ioctl.UFFDIO_UNREGISTER);
        m.put("UFFDIO_WAKE", Ioctl.UFFDIO_WAKE);
        m.put("UFFDIO_COPY", Ioctl.UFFDIO_COPY);
        m.put("UFFDIO_ZEROPAGE", Ioctl.UFFDIO_ZEROPAGE);
        m.put("UFFDIO_MOVE", Ioctl.UFFDIO_MOVE);
        m.put("UFFDIO_WRITEPROTECT", Ioctl.UFFDIO_WRITEPROTECT);
        m.put("UFFDIO_CONTINUE", Ioctl.UFFDIO_CONTINUE);
        m.put("UFFDIO_POISON", Ioctl.UFFDIO_POISON);
        m.put("USERFAULTFD_IOC_NEW", Ioctl.USERFAULTFD_IOC_NEW);
        m.put("PAGEMAP_SCAN", Ioctl.PAGEMAP_SCAN);
        return m;
    }

    private static Map<String, Long> generatedSizes() {
        Map<String, Long> m = new LinkedHashMap<>();
        m.put("SIZEOF_uffdio_api", uffdio_api.sizeof());
        m.put("SIZEOF_uffdio_register", uffdio_register.sizeof());
        m.put("SIZEOF_uffdio_copy", uffdio_copy.sizeof());
        m.put("SIZEOF_uffd_msg", uffd_msg.sizeof());
        m.put("SIZEOF_pm_scan_arg", pm_scan_arg.sizeof());
        m.put("SIZEOF_page_region", page_region.sizeof());
        m.put("SIZEOF_prctl_mm_map", prctl_mm_map.sizeof());
        m.put("SIZEOF_user_regs_struct", user_regs_struct.sizeof());
        m.put("SIZEOF_user_fpregs_struct", user_fpregs_struct.sizeof());
        return m;
    }

    private static void assertSameAsC(Map<String, Long> java) {
        assertAll(java.entrySet().stream().map(e -> (Executable) () -> {
            Long fromC = c.get(e.getKey());
            assertEquals(fromC, e.getValue(), () -> e.getKey() + ": Java 0x" + Long.toHexString(e.getValue())
                    + ", C " + (fromC == null ? "did not print it" : "0x" + Long.toHexString(fromC)));
        }));
    }

    @Test
    void everyIoctlNumberBuiltInJavaEqualsTheOneCBuilds() {
        assertSameAsC(javaIoctls());
    }

    @Test
    void everyGeneratedStructHasTheSizeCGivesIt() {
        assertSameAsC(generatedSizes());
    }

    @Test
    void cPrintsNothingThisTestDoesNotCompare() {
        Map<String, Long> compared = new TreeMap<>(javaIoctls());
        compared.putAll(generatedSizes());
        assertEquals(compared.keySet(), c.keySet(), "uapi-consts and this test must list the same names");
    }

    @Test
    void knownNumbersDecodeAsTheKernelDocumentsThem() {
        // Two anchors independent of both programs: the values printed by the kernel's own headers.
        assertEquals(0xc018aa3fL, Ioctl.UFFDIO_API, "_IOWR(0xAA, 0x3F, 24 bytes)");
        assertEquals(0xc0606610L, Ioctl.PAGEMAP_SCAN, "_IOWR('f', 16, 96 bytes)");
        assertEquals(0xaa00L, Ioctl.USERFAULTFD_IOC_NEW, "_IO(0xAA, 0)");
    }

    @Test
    void anArgumentTooLargeForTheSizeFieldIsRejected() {
        assertThrows(IllegalArgumentException.class, () -> Ioctl.iowr(0xAA, 0, 1 << 14));
    }
}
