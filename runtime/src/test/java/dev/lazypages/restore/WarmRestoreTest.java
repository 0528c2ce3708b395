package dev.lazypages.restore;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.FrozenProcess;
import dev.lazypages.dump.PreCopySession;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.lazy.LazyStats;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The warm destination on its own: the mapper workload changes its layout between pre-copy
 * rounds (mmap, page writes, munmap, mremap, brk up and down), each round is applied to one
 * process built from round 1, and after the final image the restored process has exactly the
 * source's layout and memory, and runs.
 */
@org.junit.jupiter.api.Timeout(120)
class WarmRestoreTest {
    private static final Duration TIMEOUT = Duration.ofSeconds(10);
    private static final long PS = Posix.pageSize();

    @TempDir
    Path tmp;

    @BeforeEach
    void needs() {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
        Requires.pagemapScan();
    }

    /**
     * {@code hurried}: the freeze came before the rounds wrote anything (the destination hurries
     * the builder at the restore request): lazily, the pages the rounds did not write are left
     * absent and served from the local image chain; eagerly, the final restore writes them, or
     * with a handoff ({@code local}, as the pre-copy mode of a migration does) leaves them to it too.
     */
    @ParameterizedTest(name = "lazy={0}, hurried={1}, local handoff={2}")
    @CsvSource({"false, false, false", "true, false, false", "false, true, false", "true, true, false", "false, true, true"})
    void followsEveryLayoutChangeBetweenRoundsAndEndsAsTheSource(boolean lazy, boolean hurried, boolean local)
            throws Exception {
        try (Stubs.Running m = Stubs.spawn("mapper")) {
            m.awaitLine(l -> l.startsWith("BASE "), TIMEOUT);
            FrozenProcess f;
            WarmRestore warm;
            List<String> steps = new ArrayList<>();
            try (PreCopySession s = PreCopySession.start(m.pid(), "auto", null)) {
                s.preDump(tmp.resolve("1"));
                warm = WarmRestore.create(null, steps::add);
                if (hurried) {
                    warm.hurry();
                }
                warm.applyRound(tmp.resolve("1"));
                assertTrue(steps.stream().anyMatch(l -> l.startsWith("spawn lp-stub")), steps.toString());
                int skeleton = warm.pid();
                assertTrue(Stubs.isAlive(skeleton), "the skeleton exists while the source runs");
                // steps 1..5 (mmap, write, munmap, mremap, brk up): one round after each
                for (int step = 1; step <= 5; step++) {
                    step(m, step);
                    s.preDump(tmp.resolve(Integer.toString(step + 1)));
                    warm.applyRound(tmp.resolve(Integer.toString(step + 1)));
                }
                assertEquals(6, warm.rounds());
                assertEquals(skeleton, warm.pid(), "one process, updated round by round");
                step(m, 6); // brk down: the final image has one more layout change
                f = s.finalDumpLazy(DumpOptions.of(tmp.resolve("final")));
            }
            try (f; warm) {
                long[] rseq = rseqArea(tmp.resolve("final"));
                Map<String, String> want = snapshot(m.pid(), rseq);
                Restorer.Options o = finalRestore(f, warm);
                ImageLazyHandoff h = lazy || local ? new ImageLazyHandoff() : null;
                if (lazy) {
                    o = o.withLazy(h);
                } else if (local) {
                    o = o.withWarmHandoff(h);
                }
                Restorer.Result r = Restorer.restore(o);
                assertEquals(warm.pid(), r.pid(), "the restore ran the warm process");
                try {
                    if (h != null) {
                        assertTrue(h.started(), "pages were left to the handoff");
                        LazyStats st = h.completion().get(30, TimeUnit.SECONDS);
                        System.out.println("post-copy: " + st);
                    }
                    long fromImage = r.bytesWritten() - r.remoteBytesFetched(); // at the freeze, not from the source
                    String written = "the rounds wrote " + warm.bytesWritten() + " bytes, the final restore " + r.bytesWritten()
                            + " (" + r.remoteBytesFetched() + " fetched from the source)";
                    if (!hurried) {
                        assertTrue(fromImage <= 16 * PS, "at the freeze only the final dirty pages are written: " + written);
                        assertTrue(warm.bytesWritten() >= 16 * PS, written);
                    } else {
                        assertEquals(0, warm.bytesWritten(), written);
                        boolean served = lazy || local;
                        assertTrue(served ? fromImage <= 16 * PS : fromImage >= 16 * PS,
                                (served ? "anonymous memory is served lazily from the image: " : "eager: the restore writes it: ")
                                        + written);
                    }
                    assertEquals(want, snapshot(r.pid(), rseq), "layout and memory as at the source's freeze");
                    f.commitAndKill();
                    Posix.kill(r.pid(), Posix.SIGUSR1);
                    Stubs.awaitMatches(r.pid(), m.log(), "restored mapper", l -> l.startsWith("IDLE step=7"), 1, TIMEOUT, 20);
                } finally {
                    Stubs.kill(r.pid(), TIMEOUT);
                    if (h != null) {
                        h.close();
                    }
                }
            }
        }
    }

    @Test
    void closedBeforeTheRestoreLeavesNothingBehind() throws Exception {
        try (Stubs.Running m = Stubs.spawn("mapper")) {
            m.awaitLine(l -> l.startsWith("BASE "), TIMEOUT);
            try (PreCopySession s = PreCopySession.start(m.pid(), "auto", null)) {
                s.preDump(tmp.resolve("1"));
                WarmRestore warm = WarmRestore.start(tmp.resolve("1"), null, null);
                int pid = warm.pid();
                assertTrue(Stubs.isAlive(pid));
                warm.close();
                Stubs.awaitDead(pid, TIMEOUT);
                assertFalse(Stubs.isAlive(pid));
            }
            m.signal(Posix.SIGUSR1);
            m.awaitLine(l -> l.startsWith("STEP 1 "), TIMEOUT); // the source runs on
        }
    }

    /**
     * Pages the source frees (madvise DONTNEED) after the last round are held by the parent
     * image and not written since: the final dump, which with pagemap-scan walks only the dirty
     * pages' page tables (PreCopyTest), must still leave them out (the tracker reports an
     * emptied PTE as written), so that they read zero at the destination, lazily or not. A freed
     * written page of a private file mapping reads the file again (a uffd-wp marker, which
     * looks like a page in swap, is left there): it must not stay IN_PARENT with the old data.
     */
    @ParameterizedTest(name = "lazy={0}")
    @CsvSource({"false", "true"})
    void pagesFreedAfterTheLastRoundReadZeroAfterTheRestore(boolean lazy) throws Exception {
        try (Stubs.Running m = Stubs.spawn("mapper")) {
            String baseLine = m.awaitLine(l -> l.startsWith("BASE "), TIMEOUT);
            long base = Long.decode(baseLine.replaceAll(".*addr=(0x[0-9a-f]+).*", "$1"));
            long file = Long.decode(m.awaitLine(l -> l.startsWith("FILE "), TIMEOUT).replaceAll(".*addr=(0x[0-9a-f]+).*", "$1"));
            byte[] fileHead = java.util.Arrays.copyOf(Files.readAllBytes(Path.of("/proc/" + m.pid() + "/exe")), (int) PS);
            FrozenProcess f;
            WarmRestore warm;
            try (PreCopySession s = PreCopySession.start(m.pid(), "pagemap-scan", null)) {
                warm = WarmRestore.create(null, l -> { });
                for (int round = 1; round <= 2; round++) {
                    s.preDump(tmp.resolve(Integer.toString(round)));
                    warm.applyRound(tmp.resolve(Integer.toString(round)));
                }
                m.signal(Posix.SIGUSR2);
                m.awaitLine(l -> l.startsWith("ZAP "), TIMEOUT);
                f = s.finalDumpLazy(DumpOptions.of(tmp.resolve("final")));
            }
            try (f; warm) {
                long[] rseq = rseqArea(tmp.resolve("final"));
                Map<String, String> want = snapshot(m.pid(), rseq);
                Restorer.Options o = finalRestore(f, warm);
                ImageLazyHandoff h = lazy ? new ImageLazyHandoff() : null;
                if (lazy) {
                    o = o.withLazy(h);
                }
                Restorer.Result r = Restorer.restore(o);
                try {
                    if (h != null) {
                        h.completion().get(30, TimeUnit.SECONDS);
                    }
                    try (RandomAccessFile mem = new RandomAccessFile("/proc/" + r.pid() + "/mem", "r")) {
                        byte[] page = new byte[(int) PS];
                        for (int i = 6; i <= 9; i++) {
                            mem.seek(base + i * PS);
                            mem.readFully(page);
                            boolean zero = java.util.Arrays.equals(page, new byte[(int) PS]);
                            assertEquals(i == 7 || i == 8, zero, "page " + i + " of BASE reads "
                                    + (zero ? "zero" : "data") + " after the restore");
                        }
                        mem.seek(file);
                        mem.readFully(page);
                        assertTrue(java.util.Arrays.equals(fileHead, page),
                                "the freed page of the private file mapping reads the file again, not the data written there");
                    }
                    assertEquals(want, snapshot(r.pid(), rseq), "layout and memory as at the source's freeze");
                    f.commitAndKill();
                } finally {
                    Stubs.kill(r.pid(), TIMEOUT);
                    if (h != null) {
                        h.close();
                    }
                }
            }
        }
    }

    /** The restore of the final image into the warm process, pages still at the frozen source fetched from it. */
    private Restorer.Options finalRestore(FrozenProcess f, WarmRestore warm) {
        return Restorer.Options.eager(tmp.resolve("final")).withWarm(warm).withRemote(new FrozenProcessSource(f));
    }

    private static void step(Stubs.Running m, int step) {
        m.signal(Posix.SIGUSR1);
        m.awaitLine(l -> l.startsWith("STEP " + step + " "), TIMEOUT);
    }

    /** The main thread's rseq area {address, length} in the image, or null. */
    private static long[] rseqArea(Path image) throws IOException {
        try (dev.lazypages.image.ImageReader r = dev.lazypages.image.ImageReader.open(image)) {
            var t = r.image().processes().getProcesses(0).getThreads(0);
            return t.hasRseq() && t.getRseq().getAddress() != 0
                    ? new long[] {t.getRseq().getAddress(), Integer.toUnsignedLong(t.getRseq().getLength())} : null;
        }
    }

    /**
     * The process's mappings (adjacent ones with the same protection and file coalesced: the
     * kernel may merge differently) and a digest of each one's memory; [vvar*] and [vsyscall]
     * are not read, the rseq area counts as zeros.
     */
    private static Map<String, String> snapshot(int pid, long[] rseq) throws IOException, NoSuchAlgorithmException {
        List<String[]> regions = new ArrayList<>(); // start, end, perms, path
        for (String l : Files.readAllLines(Path.of("/proc/" + pid + "/maps"))) {
            String[] w = l.trim().split("\\s+", 6);
            String[] range = w[0].split("-");
            String path = w.length > 5 ? w[5] : "";
            String[] last = regions.isEmpty() ? null : regions.getLast();
            if (last != null && last[1].equals(range[0]) && last[2].equals(w[1]) && last[3].equals(path)) {
                last[1] = range[1];
            } else {
                regions.add(new String[] {range[0], range[1], w[1], path});
            }
        }
        Map<String, String> out = new LinkedHashMap<>();
        try (RandomAccessFile mem = new RandomAccessFile("/proc/" + pid + "/mem", "r")) {
            for (String[] r : regions) {
                String key = r[0] + "-" + r[1] + " " + r[2] + " " + r[3];
                if (r[3].startsWith("[vvar") || r[3].equals("[vsyscall]")) {
                    out.put(key, "-");
                    continue;
                }
                long start = Long.parseUnsignedLong(r[0], 16);
                long end = Long.parseUnsignedLong(r[1], 16);
                MessageDigest d = MessageDigest.getInstance("SHA-256");
                byte[] page = new byte[(int) PS];
                for (long a = start; a < end; a += PS) {
                    mem.seek(a);
                    mem.readFully(page);
                    if (rseq != null && rseq[0] >= a && rseq[0] < a + PS) {
                        // the kernel keeps the current CPU there: it differs wherever the process runs
                        java.util.Arrays.fill(page, (int) (rseq[0] - a), (int) Math.min(PS, rseq[0] - a + rseq[1]), (byte) 0);
                    }
                    d.update(page);
                }
                out.put(key, HexFormat.of().formatHex(d.digest()).substring(0, 16));
            }
        }
        return out;
    }
}
