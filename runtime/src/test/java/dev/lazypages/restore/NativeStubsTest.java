package dev.lazypages.restore;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.proc.NativeStubs;
import dev.lazypages.proc.ProcException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link NativeStubs}: where lp-stub is found and what lp-stub.info says. */
class NativeStubsTest {
    @TempDir
    Path tmp;

    @Test
    void findsLpStubThroughTheSystemPropertyAndReadsItsInfo() {
        NativeStubs.StubInfo info = NativeStubs.lpStub(null); // Surefire sets lazypages.stubs.dir
        assertEquals(Stubs.path("lp-stub"), info.binary());
        assertEquals(0x100000000b0L, info.gadget());
        assertEquals(0x10000000000L, info.textStart());
        assertEquals(0x10000001000L, info.textEnd());
    }

    @Test
    void anOverrideMayBeTheFileOrItsDirectory() {
        Path bin = Stubs.path("lp-stub");
        assertEquals(bin, NativeStubs.locate("lp-stub", bin));
        assertEquals(bin, NativeStubs.locate("lp-stub", bin.getParent()));
    }

    /** A stub whose restorer died before seizing it does not pause forever: its own alarm(10) ends it. */
    @Test
    void anLpStubNobodySeizesEndsWithinItsAlarm() {
        try (Stubs.Running stub = Stubs.spawn("lp-stub")) {
            assertTrue(stub.isAlive());
            Stubs.awaitDead(stub.pid(), java.time.Duration.ofSeconds(20));
        }
    }

    @Test
    void aMissingStubNamesWhereItLooked() {
        ProcException e = assertThrows(ProcException.class, () -> NativeStubs.locate("lp-stub", tmp));
        assertTrue(e.getMessage().contains(tmp.resolve("lp-stub") + " (missing)"), e.getMessage());
        assertTrue(e.getMessage().contains("LAZYPAGES_STUBS_DIR"), e.getMessage());
    }
}
