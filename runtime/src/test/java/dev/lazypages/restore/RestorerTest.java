package dev.lazypages.restore;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.image.ImageDir;
import dev.lazypages.image.proto.Process;
import dev.lazypages.lazy.LazyStats;
import dev.lazypages.proc.Auxv;
import dev.lazypages.proc.ProcMaps;
import dev.lazypages.proc.Vma;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Real processes dumped with the {@link Dumper} and restored by the {@link Restorer}; every process started is killed. */
class RestorerTest {
    private static final Duration TIMEOUT = TestProcess.TIMEOUT;
    private static final Predicate<String> VERIFY = l -> l.startsWith("VERIFY");
    private static final Pattern STUB_PID = Pattern.compile("seize lp-stub \\(pid (\\d+)\\)");

    @TempDir
    Path tmp;

    @BeforeEach
    void requirements() {
        Requires.root();
        Requires.ptrace();
    }

    @Test
    void restoresMemtouchEagerlyAndKeepsCounting() throws Exception {
        restoreMemtouch(1);
    }

    @Test
    void restoresEightThreadsThatDirtyMemoryAndKeepsCounting() throws Exception {
        restoreMemtouch(8);
    }

    private void restoreMemtouch(int threads) throws Exception {
        Path img = tmp.resolve("img");
        try (TestProcess w = TestProcess.spawn(tmp, false, "memtouch", "--size-mib", "256", "--threads",
                Integer.toString(threads), "--dirty-mib-per-sec", "64")) {
            w.awaitLine(l -> l.equals("HEARTBEAT 2"), TIMEOUT);
            Dumper.dump(w.pid(), DumpOptions.of(img));
            TestProcess.awaitDead(w.pid());
            List<String> before = w.lines();
            int lastBefore = w.last("HEARTBEAT");

            List<long[]> marks = new ArrayList<>(); // [nanoTime, index of step]
            List<String> steps = new ArrayList<>();
            Restorer.Result r = Restorer.restore(Restorer.Options.eager(img).withProgress(step -> {
                marks.add(new long[] {System.nanoTime(), steps.size()});
                steps.add(step);
            }));
            long end = System.nanoTime();
            int wp = steps.indexOf("write pages");
            long writeNanos = (wp + 1 < marks.size() ? marks.get(wp + 1)[0] : end) - marks.get(wp)[0];
            System.out.printf(Locale.ROOT, "restore memtouch 256 MiB %d thread(s): %d ms (write pages %d ms), %.1f MiB written, %d threads%n",
                    threads, r.millis(), writeNanos / 1_000_000, r.bytesWritten() / 1048576.0, r.threads());
            assertEquals(threads + 1, r.threads());
            try (TestProcess c = new TestProcess(r.pid(), w.log())) {
                c.awaitLine(l -> l.equals("HEARTBEAT " + (lastBefore + 2)), TIMEOUT);
                assertVerifies(c);
                List<String> after = c.lines();
                assertEquals(before, after.subList(0, before.size()), "the restored copy overwrote the log");
                List<Integer> beats = new ArrayList<>();
                for (String l : after) {
                    if (l.startsWith("HEARTBEAT ")) {
                        beats.add(Integer.parseInt(l.substring(10).strip()));
                    }
                }
                for (int i = 0; i < beats.size(); i++) {
                    assertEquals(i + 1, beats.get(i), "heartbeats " + beats);
                }
                assertEquals(threads + 1, Files.list(Path.of("/proc/" + c.pid() + "/task")).count());
                assertLayoutRestored(img, c.pid());
            }
        }
    }

    /** Every VMA of the image is there again with its permissions and file; the exe link is the dumped one. */
    private static void assertLayoutRestored(Path img, int pid) throws IOException {
        Process p = ImageDir.load(img).processes().getProcesses(0);
        List<Vma> now = ProcMaps.read(pid);
        for (dev.lazypages.image.proto.Vma v : p.getVmasList()) {
            Vma got = now.stream().filter(n -> n.start() <= v.getStart() && n.end() >= v.getEnd()).findFirst()
                    .orElseThrow(() -> new AssertionError("no mapping over " + Long.toHexString(v.getStart()) + " in " + now));
            int prot = (got.read() ? 1 : 0) | (got.write() ? 2 : 0) | (got.exec() ? 4 : 0);
            assertEquals(v.getProt(), prot, "prot of " + got);
            if (v.getKind() == dev.lazypages.image.proto.Vma.Kind.FILE_PRIVATE) {
                assertEquals(v.getPath(), got.filePath(), "file of " + got);
            }
            if (v.getKind() == dev.lazypages.image.proto.Vma.Kind.VDSO) {
                assertEquals(v.getStart(), got.start(), "[vdso] moved: " + got);
                assertEquals(Vma.Kind.VDSO, got.kind());
            }
        }
        assertEquals(p.getExe(), Files.readSymbolicLink(Path.of("/proc/" + pid + "/exe")).toString());
        assertEquals(p.getAuxvList(), java.util.Arrays.stream(Auxv.read(pid).words()).boxed().toList());
        String exeName = Path.of(p.getExe()).getFileName().toString();
        assertEquals(exeName.substring(0, Math.min(15, exeName.length())),
                Files.readString(Path.of("/proc/" + pid + "/comm")).strip());
    }

    @Test
    void restoresMemtouchLazilyFromTheImage() throws Exception {
        restoreMemtouchLazily(4, 64);
    }

    @Test
    void restoresOneThreadLazilyAndTheServerDeliversEveryPage() throws Exception {
        restoreMemtouchLazily(1, 8);
    }

    @Test
    void restoresEightThreadsLazilyWhileTheyDirtyAndTheServerDeliversEveryPage() throws Exception {
        restoreMemtouchLazily(8, 8);
    }

    /**
     * memtouch 256 MiB restored with {@code --lazy}: it runs at once, verifies while its pages
     * are still coming, the page server completes with every stored page accounted for, it
     * verifies again and its heartbeat goes on in the same log.
     */
    private void restoreMemtouchLazily(int threads, int dirtyMibPerSec) throws Exception {
        Requires.userfaultfd();
        Path img = tmp.resolve("img");
        try (TestProcess w = TestProcess.spawn(tmp, false, "memtouch", "--size-mib", "256", "--threads",
                Integer.toString(threads), "--dirty-mib-per-sec", Integer.toString(dirtyMibPerSec))) {
            w.awaitLine(l -> l.equals("HEARTBEAT 2"), TIMEOUT);
            Dumper.dump(w.pid(), DumpOptions.of(img));
            TestProcess.awaitDead(w.pid());
            int lastBefore = w.last("HEARTBEAT");
            List<String> before = w.lines();
            long stored = storedPages(img);
            try (ImageLazyHandoff h = new ImageLazyHandoff()) {
                Restorer.Result r = Restorer.restore(Restorer.Options.eager(img).withLazy(h));
                System.out.printf(Locale.ROOT, "lazy restore memtouch 256 MiB %d thread(s): %d ms to run, %.1f MiB eager, %.1f MiB lazy%n",
                        threads, r.millis(), r.bytesWritten() / 1048576.0, r.lazyBytes() / 1048576.0);
                assertTrue(r.lazyBytes() >= 256L << 20, "lazy bytes " + r.lazyBytes());
                assertEquals(threads + 1, r.threads());
                try (TestProcess c = new TestProcess(r.pid(), w.log())) {
                    c.awaitLine(l -> l.equals("HEARTBEAT " + (lastBefore + 1)), TIMEOUT);
                    assertVerifies(c);
                    LazyStats stats = h.completion().get(30, TimeUnit.SECONDS);
                    System.out.println("lazy stats: " + stats);
                    assertFalse(stats.targetExited(), "the server stopped because the process went away: " + stats);
                    long lazyStored = stored - r.bytesWritten() / 4096; // file-private pages were written eagerly
                    assertEquals(lazyStored, stats.pagesByFault() + stats.pagesByBackground() + stats.pagesDropped()
                            + stats.pagesFoundPresent(), "every stored page of the lazy VMAs delivered or dropped ("
                            + stored + " stored, " + r.bytesWritten() / 4096 + " written eagerly): " + stats);
                    assertTrue(stats.pagesByFault() + stats.pagesByBackground() > 0, stats.toString());
                    assertVerifies(c);
                    c.awaitLine(l -> l.equals("HEARTBEAT " + (lastBefore + 2)), TIMEOUT);
                    List<String> after = c.lines();
                    assertEquals(before, after.subList(0, before.size()), "the restored copy overwrote the log");
                    assertHeartbeatsConsecutive(after);
                    assertEquals(threads + 1, Files.list(Path.of("/proc/" + c.pid() + "/task")).count());
                }
            }
        }
    }

    /** PRESENT pages of the image's process: what the page server must deliver. */
    private static long storedPages(Path img) throws IOException {
        long n = 0;
        for (var e : ImageDir.load(img).pageMap().getEntriesList()) {
            if (e.getFlags() == dev.lazypages.image.PageFlags.PRESENT) {
                n += Integer.toUnsignedLong(e.getNrPages());
            }
        }
        return n;
    }

    private static void assertHeartbeatsConsecutive(List<String> log) {
        List<Integer> beats = new ArrayList<>();
        for (String l : log) {
            if (l.startsWith("HEARTBEAT ")) {
                beats.add(Integer.parseInt(l.substring(10).strip()));
            }
        }
        for (int i = 0; i < beats.size(); i++) {
            assertEquals(i + 1, beats.get(i), "heartbeats " + beats);
        }
    }

    @Test
    void restoreCommandPrintsOneLineAndWritesThePidfile() throws Exception {
        Path img = tmp.resolve("img");
        Path log;
        try (TestProcess w = TestProcess.spawn(tmp, false, "sleeper", "--mode", "pause")) {
            w.awaitLine(l -> l.startsWith("READY"), TIMEOUT);
            awaitSyscall(w.pid(), "34 ");
            Dumper.dump(w.pid(), DumpOptions.of(img));
            log = w.log();
        }
        Path pidfile = tmp.resolve("pid");
        java.io.StringWriter out = new java.io.StringWriter();
        picocli.CommandLine cl = new picocli.CommandLine(new dev.lazypages.cli.RestoreCommand());
        cl.setOut(new java.io.PrintWriter(out));
        int rc = cl.execute("-D", img.toString(), "--pidfile", pidfile.toString());
        assertEquals(0, rc, out.toString());
        String line = out.toString().strip();
        Matcher m = Pattern.compile("restored pid (\\d+) from " + Pattern.quote(img.toString())
                + " \\(1 threads, [0-9.]+ MiB, \\d+ ms\\)").matcher(line);
        assertTrue(m.matches(), line);
        int pid = Integer.parseInt(m.group(1));
        try (TestProcess c = new TestProcess(pid, log)) {
            assertEquals(pid + "", Files.readString(pidfile).strip());
            // Signal only once it is back inside pause(): sleeper checks its flag before the call,
            // so a signal landing between the restart and the call would wait for the next one.
            awaitSyscall(pid, "34 ");
            c.signal(Posix.SIGUSR1);
            c.awaitLine(l -> l.equals("ALIVE 1"), TIMEOUT);
        }
    }

    @Test
    void restoreCommandReportsACorruptImageAsBadInput() throws Exception {
        Path img = tmp.resolve("bad");
        Files.createDirectories(img);
        for (String f : List.of("inventory.img", "processes.img", "pagemap.img", "pages.img")) {
            Files.write(img.resolve(f), new byte[8192]);
        }
        picocli.CommandLine cl = new picocli.CommandLine(new dev.lazypages.cli.RestoreCommand());
        List<Exception> thrown = new ArrayList<>();
        cl.setExecutionExceptionHandler((ex, line, parse) -> {
            thrown.add(ex);
            return 4;
        });
        long stubsBefore = liveStubs();
        cl.execute("-D", img.toString());
        assertEquals(1, thrown.size());
        Exception e = thrown.get(0);
        assertTrue(e instanceof IllegalArgumentException, e.toString()); // the CLI maps it to exit 4
        assertTrue(e.getMessage().startsWith("restore failed at 'open image " + img + "': " + img), e.getMessage());
        assertEquals(stubsBefore, liveStubs());
    }

    private static void assertVerifies(TestProcess c) {
        long n = c.count(VERIFY);
        c.signal(Posix.SIGUSR1);
        c.awaitMore(VERIFY, n, TIMEOUT);
        List<String> v = c.lines().stream().filter(VERIFY).toList();
        assertTrue(v.get(v.size() - 1).startsWith("VERIFY OK"), "pid " + c.pid() + " failed its check:\n" + c.tail());
    }

    @Test
    void leaveRunningDumpThenRestoreGivesTwoCopiesThatBothVerify() throws Exception {
        Path img = tmp.resolve("img");
        try (TestProcess w = TestProcess.spawn(tmp, true, "memtouch", "--size-mib", "64", "--threads", "2",
                "--dirty-mib-per-sec", "16")) {
            w.awaitLine(l -> l.equals("HEARTBEAT 1"), TIMEOUT);
            Dumper.dump(w.pid(), DumpOptions.of(img).withLeaveRunning(true));
            Restorer.Result r = Restorer.restore(Restorer.Options.eager(img));
            try (TestProcess c = new TestProcess(r.pid(), w.log())) {
                assertTrue(w.isAlive() && c.isAlive());
                assertVerifies(c);
                assertVerifies(w);
                long beats = c.count(l -> l.startsWith("HEARTBEAT"));
                c.awaitMore(l -> l.startsWith("HEARTBEAT"), beats + 1, TIMEOUT); // both beat: two more lines
            }
        }
    }

    @Test
    void restoresSleeperInNanosleep() throws Exception {
        restoreSleeper("nanosleep", "35 ");
    }

    @Test
    void restoresSleeperInPause() throws Exception {
        restoreSleeper("pause", "34 ");
    }

    @Test
    void restoresSleeperInNanosleepLazily() throws Exception {
        Requires.userfaultfd();
        try (ImageLazyHandoff h = new ImageLazyHandoff()) {
            restoreSleeper("nanosleep", "35 ", h);
            LazyStats stats = h.completion().get(30, TimeUnit.SECONDS);
            System.out.println("lazy sleeper stats: " + stats);
        }
    }

    private void restoreSleeper(String mode, String syscall) throws Exception {
        restoreSleeper(mode, syscall, null);
    }

    /** With {@code lazy}, its anonymous memory (stack, heap, data) is served by the page server. */
    private void restoreSleeper(String mode, String syscall, ImageLazyHandoff lazy) throws Exception {
        Path img = tmp.resolve("img");
        try (TestProcess w = TestProcess.spawn(tmp, false, "sleeper", "--mode", mode)) {
            w.awaitLine(l -> l.startsWith("READY"), TIMEOUT);
            awaitSyscall(w.pid(), syscall);
            Dumper.dump(w.pid(), DumpOptions.of(img));
            TestProcess.awaitDead(w.pid());
            Restorer.Options opts = Restorer.Options.eager(img);
            Restorer.Result r = Restorer.restore(lazy == null ? opts : opts.withLazy(lazy));
            if (lazy != null) {
                assertTrue(r.lazyBytes() > 0, "nothing left to the page server: " + r);
            }
            try (TestProcess c = new TestProcess(r.pid(), w.log())) {
                awaitSyscall(c.pid(), syscall); // back in the same call (nanosleep: re-entered after EINTR)
                c.signal(Posix.SIGUSR1);
                c.awaitLine(l -> l.equals("ALIVE 1"), TIMEOUT);
                if (mode.equals("pause")) {
                    c.awaitLine(l -> l.equals("WOKE 1"), TIMEOUT);
                } else {
                    c.awaitLine(l -> l.equals("TICK 1"), Duration.ofSeconds(12));
                }
                if (lazy != null) {
                    LazyStats stats = lazy.completion().get(30, TimeUnit.SECONDS);
                    assertFalse(stats.targetExited(), "the server stopped because the process went away: " + stats);
                    assertTrue(c.isAlive());
                }
            }
        }
    }

    private static void awaitSyscall(int pid, String prefix) throws IOException {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (!Files.readString(Path.of("/proc/" + pid + "/syscall")).startsWith(prefix)) {
            assertTrue(System.nanoTime() - deadline < 0, "pid " + pid + " never blocked in syscall " + prefix);
            TestProcess.sleep(5);
        }
    }

    @Test
    void refusesAnImageWhoseMappedFileIsGoneAndLeavesNothingBehind() throws Exception {
        Path bin = tmp.resolve("bin");
        Files.createDirectories(bin);
        Path copy = bin.resolve("sleeper");
        Files.copy(Stubs.path("sleeper"), copy, StandardCopyOption.COPY_ATTRIBUTES);
        Path img = tmp.resolve("img");
        int pid = spawnPausedSleeper(copy);
        try (TestProcess w = new TestProcess(pid, tmp.resolve("none.log"))) {
            awaitSyscall(w.pid(), "34 ");
            Dumper.dump(w.pid(), DumpOptions.of(img));
        }
        Files.delete(copy);
        long stubsBefore = liveStubs();
        List<String> steps = new ArrayList<>();
        RestoreException e = assertThrows(RestoreException.class,
                () -> Restorer.restore(Restorer.Options.eager(img).withProgress(steps::add)));
        assertTrue(e.getMessage().startsWith("restore failed at 'check image': "), e.getMessage());
        assertTrue(e.getMessage().contains(copy.toString()), e.getMessage());
        assertEquals(RestoreException.Reason.UNSUPPORTED, e.reason());
        assertEquals(stubsBefore, liveStubs());
    }

    private static int spawnPausedSleeper(Path program) throws IOException {
        return dev.lazypages.ffm.Features.spawnDetached(program.toString(), "--mode", "pause");
    }

    @Test
    void corruptPagesFailTheRestoreNamingTheStepAndKillTheHalfBuiltProcess() throws Exception {
        Path img = tmp.resolve("img");
        try (TestProcess w = TestProcess.spawn(tmp, false, "memtouch", "--size-mib", "16")) {
            w.awaitLine(l -> l.startsWith("HEARTBEAT 1"), TIMEOUT);
            Dumper.dump(w.pid(), DumpOptions.of(img));
        }
        Path pages = img.resolve("pages.img");
        try (RandomAccessFile f = new RandomAccessFile(pages.toFile(), "rw")) {
            long at = f.length() - 100; // inside the last run's data, after the header page
            f.seek(at);
            int b = f.read();
            f.seek(at);
            f.write(b ^ 0xff);
        }
        long stubsBefore = liveStubs();
        List<String> steps = new ArrayList<>();
        RestoreException e = assertThrows(RestoreException.class,
                () -> Restorer.restore(Restorer.Options.eager(img).withProgress(steps::add)));
        assertTrue(e.getMessage().startsWith("restore failed at 'write pages': "), e.getMessage());
        assertTrue(e.getMessage().contains("CRC-32C"), e.getMessage());
        assertEquals(RestoreException.Reason.BAD_IMAGE, e.reason());
        int stub = steps.stream().map(STUB_PID::matcher).filter(Matcher::matches).mapToInt(m -> Integer.parseInt(m.group(1)))
                .findFirst().orElseThrow(() -> new AssertionError("no lp-stub was spawned: " + steps));
        TestProcess.awaitDead(stub);
        assertEquals(stubsBefore, liveStubs());
    }

    /** lp-stub processes that are alive (not zombies). */
    private static long liveStubs() throws IOException {
        try (Stream<Path> s = Files.list(Path.of("/proc"))) {
            return s.filter(p -> p.getFileName().toString().matches("\\d+")).filter(p -> {
                try {
                    return Files.readSymbolicLink(p.resolve("exe")).getFileName().toString().equals("lp-stub")
                            && Stubs.stateOf(Integer.parseInt(p.getFileName().toString())) != 'Z';
                } catch (IOException | RuntimeException e) {
                    return false;
                }
            }).count();
        }
    }
}
