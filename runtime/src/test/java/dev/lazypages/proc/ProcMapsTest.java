package dev.lazypages.proc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Stubs;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Set;
import java.util.regex.MatchResult;
import org.junit.jupiter.api.Test;

class ProcMapsTest {
    static String resource(String name) throws IOException {
        try (InputStream in = ProcMapsTest.class.getResourceAsStream(name)) {
            return new String(in.readAllBytes(), StandardCharsets.ISO_8859_1);
        }
    }

    @Test
    void parsesEveryKindOfMapsLine() throws IOException {
        List<Vma> vmas = ProcMaps.parseMaps(resource("maps.txt"), "maps.txt");
        assertEquals(15, vmas.size());

        Vma text = vmas.get(1);
        assertEquals(0x55e7282d5000L, text.start());
        assertEquals(0x55e7282da000L, text.end());
        assertEquals("r-xp", text.perms());
        assertEquals(0x2000, text.offset());
        assertEquals(0xfe, text.devMajor());
        assertEquals(0, text.devMinor());
        assertEquals(260131, text.inode());
        assertEquals("/usr/bin/cat", text.path());
        assertEquals(Vma.Kind.FILE, text.kind());
        assertNull(text.smaps());

        assertEquals(Vma.Kind.HEAP, vmas.get(3).kind());
        Vma anon = vmas.get(4);
        assertEquals("", anon.path());
        assertEquals(Vma.Kind.ANONYMOUS, anon.kind());
        assertEquals(0x21000, anon.size());

        Vma memfd = vmas.get(5);
        assertTrue(memfd.shared());
        assertTrue(memfd.deleted());
        assertEquals("/memfd:lp shared", memfd.filePath());

        assertEquals(Vma.Kind.ANONYMOUS, vmas.get(8).kind(), "[anon:name] is anonymous memory");
        Vma spaces = vmas.get(9);
        assertEquals(0x103, spaces.devMajor());
        assertEquals(2, spaces.devMinor());
        assertEquals("/tmp/dir with spaces/data (deleted)", spaces.path());
        assertEquals("/tmp/dir with spaces/data", spaces.filePath());

        assertEquals(Vma.Kind.STACK, vmas.get(10).kind());
        assertEquals(Vma.Kind.VVAR, vmas.get(11).kind());
        assertEquals(Vma.Kind.VVAR_VCLOCK, vmas.get(12).kind());
        assertEquals(Vma.Kind.VDSO, vmas.get(13).kind());
        Vma vsyscall = vmas.get(14);
        assertEquals(Vma.Kind.VSYSCALL, vsyscall.kind());
        assertEquals(0xffffffffff600000L, vsyscall.start(), "addresses above 2^63 parse unsigned");
        assertEquals("--xp", vsyscall.perms());
        assertTrue(vsyscall.isKernelProvided());
        assertFalse(vmas.get(3).isKernelProvided());
    }

    @Test
    void parsesSmapsFieldsPerVma() throws IOException {
        List<Vma> vmas = ProcMaps.parseSmaps(resource("smaps.txt"), "smaps.txt");
        assertEquals(3, vmas.size());
        Vma heap = vmas.get(0);
        assertEquals(Vma.Kind.HEAP, heap.kind());
        assertEquals(12 * 1024, heap.smaps().rss());
        assertEquals(12 * 1024, heap.smaps().anonymous());
        assertEquals(8 * 1024, heap.smaps().swap());
        assertEquals(Set.of("rd", "wr", "mr", "mw", "me", "ac"), heap.smaps().vmFlags());
        Vma thp = vmas.get(1);
        assertEquals("", thp.path());
        assertEquals(2048 * 1024, thp.smaps().anonHugePages());
        assertTrue(thp.smaps().hasFlag("hg"));
        assertTrue(vmas.get(2).smaps().hasFlag("dd") == false && vmas.get(2).smaps().hasFlag("ex"));
    }

    @Test
    void malformedLinesNameTheSourceAndLine() {
        ProcException e = assertThrows(ProcException.class,
                () -> ProcMaps.parseMaps("7f00-7f10 rw-p 0 00:00 0\nnot a maps line\n", "sample"));
        assertTrue(e.getMessage().startsWith("sample line 2 is malformed"), e.getMessage());
    }

    @Test
    void readsTheLiveMappingsOfMemtouch() {
        try (Stubs.Running memtouch = Workloads.memtouch(4, 1)) {
            MatchResult region = Workloads.region(memtouch);
            long addr = Long.parseUnsignedLong(region.group(1), 16);
            long size = Long.parseLong(region.group(2));
            List<Vma> maps = ProcMaps.read(memtouch.pid());
            Vma data = maps.stream().filter(v -> v.contains(addr)).findFirst().orElseThrow();
            assertTrue(data.read() && data.write() && !data.shared(), data.toString());
            assertTrue(data.end() >= addr + size, data.toString());
            assertTrue(maps.stream().anyMatch(v -> v.kind() == Vma.Kind.VDSO));
            assertTrue(maps.stream().anyMatch(v -> v.kind() == Vma.Kind.STACK));
            assertTrue(maps.stream().anyMatch(v -> v.kind() == Vma.Kind.FILE && v.path().endsWith("/memtouch")));

            List<Vma> smaps = ProcMaps.readSmaps(memtouch.pid());
            assertEquals(maps.size(), smaps.size(), "maps and smaps list the same VMAs");
            Vma dataS = smaps.stream().filter(v -> v.contains(addr)).findFirst().orElseThrow();
            assertTrue(dataS.smaps().anonymous() >= size, "memtouch writes every page of its region: " + dataS.smaps());
            assertTrue(dataS.smaps().rss() >= size, dataS.smaps().toString());
            assertTrue(dataS.smaps().hasFlag("rd") && dataS.smaps().hasFlag("wr"), dataS.smaps().toString());
        }
    }

    @Test
    void aMissingProcessIsNamedInTheError() {
        ProcException e = assertThrows(ProcException.class, () -> ProcMaps.read(Integer.MAX_VALUE));
        assertTrue(e.getMessage().contains("/proc/" + Integer.MAX_VALUE + "/maps") && e.getMessage().contains("no such process"),
                e.getMessage());
    }
}
