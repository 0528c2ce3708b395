package dev.lazypages.restore;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.image.ImageDir;
import dev.lazypages.image.proto.OpenFile;
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
 * A lazy restore leaves the restored process its own reference to its userfaultfd (so a killed
 * daemon blocks its faults instead of zero-filling them, see the criu package's
 * DaemonKilledDuringPostCopyTest): after a complete lazy restore that fd is idle, above every fd
 * of the image, and the ranges are unregistered, so the process changes its layout (mremap and
 * brk shrink of ranges registered at restore, whose REMAP/UNMAP events nobody reads any more)
 * without blocking, and a dump of it leaves that idle fd out (it can be migrated again).
 */
@Timeout(60)
class LazyRestoreKeptUffdTest {
    @TempDir
    Path tmp;

    @Test
    void afterACompleteLazyRestoreTheProcessRemapsAndShrinksRegisteredMemoryWithoutBlocking() throws Exception {
        Requires.root();
        Requires.ptrace();
        Requires.userfaultfd();
        Path img = tmp.resolve("img");
        try (TestProcess w = TestProcess.spawn(tmp, false, "mapper")) {
            w.awaitLine(l -> l.startsWith("BASE "), TestProcess.TIMEOUT);
            Dumper.dump(w.pid(), DumpOptions.of(img));
            TestProcess.awaitDead(w.pid());
            int maxImageFd = ImageDir.load(img).processes().getProcesses(0).getFilesList().stream().mapToInt(OpenFile::getFd).max().orElse(-1);
            try (ImageLazyHandoff h = new ImageLazyHandoff()) {
                Restorer.Result r = Restorer.restore(Restorer.Options.eager(img).withLazy(h));
                assertTrue(r.lazyBytes() > 0, "nothing left to the page server: " + r);
                try (TestProcess c = new TestProcess(r.pid(), w.log())) {
                    LazyStats stats = h.completion().get(30, TimeUnit.SECONDS);
                    assertFalse(stats.targetExited(), stats.toString());
                    List<Integer> uffds = userfaultfds(c.pid());
                    assertEquals(1, uffds.size(), "the restored process keeps exactly one userfaultfd: " + uffds);
                    assertTrue(uffds.getFirst() > maxImageFd, "kept at fd " + uffds.getFirst() + ", image fds up to " + maxImageFd);
                    for (int step = 1; step <= 6; step++) {
                        String want = "STEP " + step + " ";
                        long before = c.count(l -> l.startsWith(want));
                        c.signal(Posix.SIGUSR1);
                        c.awaitMore(l -> l.startsWith(want), before, TestProcess.TIMEOUT);
                    }
                    c.signal(Posix.SIGUSR1);
                    c.awaitLine(l -> l.startsWith("IDLE step=7"), TestProcess.TIMEOUT);
                    // migrated again: the idle userfaultfd is left out of the next image, not refused
                    Path again = tmp.resolve("again");
                    Dumper.dump(c.pid(), DumpOptions.of(again).withLeaveRunning(true));
                    List<Integer> fds = ImageDir.load(again).processes().getProcesses(0).getFilesList().stream()
                            .map(OpenFile::getFd).toList();
                    assertFalse(fds.contains(uffds.getFirst()), "the idle userfaultfd went into the image: " + fds);
                }
            }
        }
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
