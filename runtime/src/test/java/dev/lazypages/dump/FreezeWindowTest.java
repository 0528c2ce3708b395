package dev.lazypages.dump;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.proc.ProcMaps;
import dev.lazypages.proc.Vma;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What the hybrid freeze no longer does while frozen, and that the process is fine after it. */
class FreezeWindowTest {
    @TempDir
    Path tmp;

    @BeforeEach
    void needs() {
        Requires.root();
        Requires.ptrace();
    }

    /** smaps read before the freeze is reused for unchanged VMAs (the frozen read is of maps only). */
    @Test
    void unchangedMappingsTakeTheirSmapsFieldsFromTheReadBeforeTheFreeze() {
        try (LogProcess w = LogProcess.memtouch(tmp, 32, 1, 0)) {
            w.awaitBeats(1);
            FreezePrep prep = FreezePrep.read(w.pid);
            List<Vma> before = ProcMaps.readSmaps(w.pid);
            List<Vma> now = prep.vmasNow();
            assertEquals(before.size(), now.size());
            for (int i = 0; i < now.size(); i++) {
                assertEquals(before.get(i).withSmaps(null), now.get(i).withSmaps(null));
                assertEquals(before.get(i).smaps().vmFlags(), now.get(i).smaps().vmFlags(), now.get(i).toString());
            }
            List<Vma> again = prep.vmasNow();
            for (int i = 0; i < now.size(); i++) {
                assertSame(now.get(i).smaps(), again.get(i).smaps(), "taken from the read before the freeze, not read again");
            }
        }
    }

    /**
     * A hybrid final dump leaves the dirty tracker to the FrozenProcess (no unregistering in the
     * frozen window), after a rehearsal that leaves nothing behind; resumed, the process runs
     * on untracked and verifies.
     */
    @Test
    void theTrackerIsClosedAfterTheFreezeAndTheRehearsalLeavesNothing() throws Exception {
        try (LogProcess w = LogProcess.memtouch(tmp, 64, 2, 8)) {
            w.awaitBeats(1);
            List<String> lines = new ArrayList<>();
            try (PreCopySession s = PreCopySession.start(w.pid, Trackings.AUTO, null)) {
                s.durable(false);
                s.preDump(tmp.resolve("1"));
                s.collect();
                Path scratch = tmp.resolve("rehearsal");
                s.rehearseFinal(scratch);
                assertFalse(Files.exists(scratch), "the rehearsal image is removed");
                FreezePrep prep = FreezePrep.read(w.pid);
                try (FrozenProcess f = s.finalDumpLazy(DumpOptions.of(tmp.resolve("final")).withProgress(lines::add), prep)) {
                    String window = lines.stream().filter(l -> l.startsWith("frozen window")).findFirst().orElseThrow();
                    assertFalse(window.contains("stop the dirty tracker"), window);
                    assertFalse(window.contains("find a syscall instruction"), "found before the freeze: " + window);
                    // the pagemap walks (dirty set, page selection) run beside the injected calls, not after them
                    assertTrue(window.contains("store pages beside") && window.contains("collect dirty pages (pagemap-scan) beside"),
                            window);
                    assertTrue(f.remote().pageCount() > 0, "pages dirtied since round 1 are REMOTE");
                    // the pages of the threads' rseq areas are in the image, not REMOTE: the restore writes them
                    // (registering rseq again) before the process runs, and would have to fetch them from here
                    var image = dev.lazypages.image.ImageReader.open(tmp.resolve("final"));
                    try (image) {
                        var proc = image.image().processes().getProcesses(0);
                        int checked = 0;
                        int present = 0;
                        for (var t : proc.getThreadsList()) {
                            if (t.hasRseq() && t.getRseq().getAddress() != 0) {
                                long page = t.getRseq().getAddress() & -4096L;
                                assertFalse(f.remote().intersect(dev.lazypages.memory.PageRanges.of(page, page + 4096)).pageCount() > 0,
                                        "rseq page 0x" + Long.toHexString(page) + " is REMOTE");
                                checked++;
                                for (var e : image.image().pageMap().getEntriesList()) {
                                    if (e.getFlags() == dev.lazypages.image.PageFlags.PRESENT && e.getVaddr() <= page
                                            && page < e.getVaddr() + 4096L * e.getNrPages()) {
                                        present++;
                                    }
                                }
                            }
                        }
                        assertEquals(3, checked, "memtouch's main thread and its 2 workers registered rseq");
                        assertTrue(present > 0, "the rseq pages written since round 1 are copied into the image");
                        assertTrue(window.contains("store pages beside"), window);
                    }
                    f.resume();
                }
            }
            assertEquals("0", dev.lazypages.proc.Proc.readText(w.pid, "status").lines()
                    .filter(l -> l.startsWith("TracerPid:")).findFirst().orElseThrow().split("\\s+")[1]);
            w.awaitBeats(1);
            w.assertVerifies();
        }
    }
}
