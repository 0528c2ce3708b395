package dev.lazypages.restore;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.dump.DumpException;
import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.image.ImageDir;
import dev.lazypages.image.proto.OpenFile;
import dev.lazypages.lazy.LazyPageServer;
import dev.lazypages.lazy.LazyStats;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A lazy restore leaves the restored process its own reference to its userfaultfd while pages
 * are missing (so a killed daemon blocks its faults instead of zero-filling them, see the criu
 * package's DaemonKilledDuringPostCopyTest), above every fd of the image; a dump then refuses it
 * and says why. After a complete lazy restore the ranges are unregistered and that fd is closed
 * inside the process (KeptUffd), so the process changes its layout (mremap and brk shrink of
 * ranges registered at restore) without blocking and can be migrated again.
 */
@Timeout(60)
class LazyRestoreKeptUffdTest {
    @TempDir
    Path tmp;

    @Test
    void afterACompleteLazyRestoreTheProcessRemapsAndShrinksRegisteredMemoryWithoutBlocking() throws Exception {
        Path img = tmp.resolve("img");
        try (TestProcess w = dumpedMapper(img)) {
            try (ImageLazyHandoff h = new ImageLazyHandoff()) {
                Restorer.Result r = Restorer.restore(Restorer.Options.eager(img).withLazy(h));
                assertTrue(r.lazyBytes() > 0, "nothing left to the page server: " + r);
                try (TestProcess c = new TestProcess(r.pid(), w.log())) {
                    LazyStats stats = h.completion().get(30, TimeUnit.SECONDS);
                    assertFalse(stats.targetExited(), stats.toString());
                    assertEquals(List.of(), userfaultfds(c.pid()), "every page in: the kept userfaultfd is closed in the process");
                    for (int step = 1; step <= 6; step++) {
                        String want = "STEP " + step + " ";
                        long before = c.count(l -> l.startsWith(want));
                        c.signal(Posix.SIGUSR1);
                        c.awaitMore(l -> l.startsWith(want), before, TestProcess.TIMEOUT);
                    }
                    c.signal(Posix.SIGUSR1);
                    c.awaitLine(l -> l.startsWith("IDLE step=7"), TestProcess.TIMEOUT);
                    // migrated again: nothing of the lazy restore is left to refuse
                    Path again = tmp.resolve("again");
                    Dumper.dump(c.pid(), DumpOptions.of(again).withLeaveRunning(true));
                    assertTrue(Files.isDirectory(again));
                }
            }
        }
    }

    @Test
    void whilePagesAreMissingTheProcessHoldsItsUffdAboveTheImageFdsAndADumpRefusesItClearly() throws Exception {
        Path img = tmp.resolve("img");
        try (TestProcess w = dumpedMapper(img)) {
            int maxImageFd = ImageDir.load(img).processes().getProcesses(0).getFilesList().stream().mapToInt(OpenFile::getFd).max().orElse(-1);
            // no background sweep: pages stay missing until touched
            try (ImageLazyHandoff h = new ImageLazyHandoff(LazyPageServer.Options.defaults().withBackground(false))) {
                Restorer.Result r = Restorer.restore(Restorer.Options.eager(img).withLazy(h));
                try (TestProcess c = new TestProcess(r.pid(), w.log())) {
                    List<Integer> uffds = userfaultfds(c.pid());
                    assertEquals(1, uffds.size(), "the restored process keeps exactly one userfaultfd: " + uffds);
                    assertTrue(uffds.getFirst() > maxImageFd, "kept at fd " + uffds.getFirst() + ", image fds up to " + maxImageFd);
                    assertFalse(h.completion().isDone());
                    DumpException e = assertThrows(DumpException.class,
                            () -> Dumper.dump(c.pid(), DumpOptions.of(tmp.resolve("early")).withLeaveRunning(true)));
                    assertTrue(e.getMessage().contains("fd " + uffds.getFirst()) && e.getMessage().contains("pages are still arriving"),
                            e.getMessage());
                }
            }
        }
    }

    /** A mapper (the stub that remaps and shrinks memory on SIGUSR1) dumped into {@code img}, ended by the dump. */
    private TestProcess dumpedMapper(Path img) throws Exception {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
        TestProcess w = TestProcess.spawn(tmp, false, "mapper");
        w.awaitLine(l -> l.startsWith("BASE "), TestProcess.TIMEOUT);
        Dumper.dump(w.pid(), DumpOptions.of(img));
        TestProcess.awaitDead(w.pid());
        return w;
    }

    /** The fds of {@code pid} that are userfaultfds. */
    static List<Integer> userfaultfds(int pid) throws IOException {
        List<Integer> out = new ArrayList<>();
        try (Stream<Path> s = Files.list(Path.of("/proc/" + pid + "/fd"))) {
            for (Path p : s.toList()) {
                try {
                    if (Files.readSymbolicLink(p).toString().equals("anon_inode:[userfaultfd]")) {
                        out.add(Integer.parseInt(p.getFileName().toString()));
                    }
                } catch (IOException e) {
                    // closed meanwhile
                }
            }
        }
        return out;
    }
}
