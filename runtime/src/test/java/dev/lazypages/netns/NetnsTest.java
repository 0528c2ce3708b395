package dev.lazypages.netns;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class NetnsTest {
    @Test
    void twoNamespacesJoinedByAVethPairAndGoneAfterClose() throws Exception {
        String src;
        String dst;
        try (Netns n = Netns.create()) {
            src = n.srcNamespace();
            dst = n.dstNamespace();
            assertTrue(Netns.exists(src) && Netns.exists(dst), n.toString());
            assertTrue(src.startsWith("lp-src-") && dst.startsWith("lp-dst-"), n.toString());
            assertTrue(n.srcAddress().matches("10\\.199\\.\\d+\\.1") && n.dstAddress().matches("10\\.199\\.\\d+\\.2"));
            Process p = new ProcessBuilder(n.inDst("ip", "-4", "-o", "addr", "show")).redirectErrorStream(true).start();
            String addrs = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertEquals(0, p.waitFor());
            assertTrue(addrs.contains(n.dstAddress() + "/30"), addrs);
            assertFalse(addrs.contains(n.srcAddress()), addrs);
            // the host's own namespace got nothing
            Process h = new ProcessBuilder("ip", "-4", "-o", "addr", "show").redirectErrorStream(true).start();
            String host = new String(h.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            h.waitFor();
            assertFalse(host.contains(n.srcAddress()) || host.contains(n.dstAddress()), host);
        }
        assertFalse(Netns.exists(src) || Netns.exists(dst), "namespaces left behind");
    }
}
