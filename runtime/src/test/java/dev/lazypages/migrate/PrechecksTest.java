package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Posix;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PrechecksTest {
    @TempDir
    Path tmp;

    private static HostFacts facts(int ps, long xcr0, Map<String, Long> special, List<HostFacts.FileId> files) {
        return new HostFacts(ps, xcr0, Map.of(), special, files);
    }

    private static final Map<String, Long> SPECIAL = Map.of("[vdso]", 8192L, "[vvar]", 16384L);

    @Test
    void thisProcessCanMigrateToThisMachine() {
        int self = (int) ProcessHandle.current().pid();
        HostFacts src = Prechecks.ofSource(self, MigrationMode.HYBRID);
        HostFacts dst = Prechecks.ofDestination(Prechecks.neededAtDestination(MigrationMode.PRE_COPY));
        assertTrue(src.files().stream().anyMatch(f -> f.path().endsWith(".so") || f.path().contains("libjvm")), src.files().toString());
        // this JVM may map a native library it unpacked and deleted (netty's epoll): only those can differ
        List<String> d = Prechecks.differences(src, dst, MigrationMode.PRE_COPY, Prechecks.localFiles());
        assertTrue(d.stream().allMatch(l -> l.contains("(deleted at the source)")), d.toString());
        assertEquals(Posix.pageSize(), src.pageSize());
        assertTrue(src.specialSizes().containsKey("[vdso]"), src.specialSizes().toString());
    }

    @Test
    void everyDifferenceIsNamed() {
        HostFacts src = facts(4096, 0x2e7, SPECIAL, List.of(
                new HostFacts.FileId("/gone", 1, 2, 3, true, "fd 3"),
                new HostFacts.FileId("/other", 1, 2, 3, true, "mapped at 0x1000"),
                new HostFacts.FileId("/grows", 1, 5, 100, false, "fd 1"),
                new HostFacts.FileId("/deleted", 1, 6, -1, true, "fd 4 (deleted at the source)")));
        HostFacts dst = facts(16384, 0x7, Map.of("[vdso]", 4096L, "[vvar]", 16384L), List.of())
                .withFeatures(Map.of("userfaultfd", "EPERM"));
        Map<String, HostFacts.FileId> there = new LinkedHashMap<>();
        there.put("/other", new HostFacts.FileId("/other", 1, 9, 3, true, ""));
        there.put("/grows", new HostFacts.FileId("/grows", 1, 5, 999, true, ""));
        there.put("/deleted", new HostFacts.FileId("/deleted", 1, 6, 0, true, ""));
        List<String> d = Prechecks.differences(src, dst, MigrationMode.HYBRID, there::get);
        String all = String.join("\n", d);
        assertTrue(all.contains("page size differs: source 4096 bytes, destination 16384"), all);
        assertTrue(all.contains("source XCR0 0x2e7 has 0x2e0 that destination XCR0 0x7 lacks"), all);
        assertTrue(all.contains("destination lacks userfaultfd (needed for hybrid): EPERM"), all);
        assertTrue(all.contains("[vdso] size differs: source 8192 bytes, destination 4096 bytes"), all);
        assertTrue(all.contains("file /gone (fd 3) does not exist at the destination"), all);
        assertTrue(all.contains("file /other (mapped at 0x1000) differs: source dev 1 inode 2 size 3, destination dev 1 inode 9"), all);
        assertTrue(all.contains("file /deleted (fd 4 (deleted at the source)) does not exist"), all);
        assertTrue(!all.contains("/grows"), "a file the process writes may grow: " + all);
        assertEquals(7, d.size(), all);
    }

    @Test
    void aSmallerXcr0AtTheSourceIsFine() {
        HostFacts src = facts(4096, 0x7, SPECIAL, List.of());
        HostFacts dst = facts(4096, 0x2e7, SPECIAL, List.of());
        assertEquals(List.of(), Prechecks.differences(src, dst, MigrationMode.POST_COPY, p -> null));
    }

    @Test
    void aFileIsComparedByDevInodeAndSize() throws Exception {
        Path f = Files.writeString(tmp.resolve("lib.so"), "x".repeat(100));
        HostFacts.FileId id = Prechecks.stat(f, "mapped");
        HostFacts src = facts(4096, 0, Map.of(), List.of(id));
        assertEquals(List.of(), Prechecks.differences(src, src, MigrationMode.PRE_COPY, Prechecks.localFiles()));
        Files.writeString(f, "y".repeat(101));
        List<String> d = Prechecks.differences(src, src, MigrationMode.PRE_COPY, Prechecks.localFiles());
        assertEquals(1, d.size(), d.toString());
        assertTrue(d.getFirst().contains("size 100") && d.getFirst().contains("size 101"), d.toString());
    }

    @Test
    void makedevMatchesStat() throws Exception {
        Path root = Path.of("/proc/self/exe");
        long stDev = (Long) Files.getAttribute(root, "unix:dev");
        // the JVM's own executable mapping carries the same device in maps
        long ino = (Long) Files.getAttribute(root, "unix:ino");
        dev.lazypages.proc.Vma vma = dev.lazypages.proc.ProcMaps.parseMaps(Files.readString(Path.of("/proc/self/maps")), "maps")
                .stream().filter(v -> v.inode() == ino).findFirst().orElseThrow();
        assertEquals(stDev, Prechecks.makedev(vma.devMajor(), vma.devMinor()));
    }
}
