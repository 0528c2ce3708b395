package dev.lazypages.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import dev.lazypages.image.ImageDir;
import dev.lazypages.image.ImageFile;
import dev.lazypages.image.ImageFileDescriptor;
import dev.lazypages.image.PageFlags;
import dev.lazypages.image.proto.PageMap;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.ProcessTree;
import dev.lazypages.image.proto.Vma;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code lazy-dump.jar dump} and {@code lazy-pages.jar restore}/{@code inspect} run as separate
 * processes, the way users run them, on real memtouch dumps: a good image restores and keeps
 * counting; each kind of bad image is refused with exit 4 and one line naming the file, and
 * leaves no process behind.
 *
 * <p>"Left behind" is judged on the processes this class caused: every JVM it starts and every
 * memtouch it spawns carries {@value #MARK} in its environment (a restored process gets the
 * environment of the dumped one; an lp-stub inherits the restore JVM's), so teammates' tests
 * running at the same time on this machine cannot disturb the count.
 */
class RestoreIT {
    private static final Duration JAR_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration LOG_TIMEOUT = Duration.ofSeconds(20);
    private static final String MARK = "LP_RESTORE_IT";
    private static final String TOKEN = UUID.randomUUID().toString();
    private static final Pattern REGION = Pattern.compile("REGION addr=0x([0-9a-f]+) size=(\\d+) .*");
    private static final Pattern VMA_LINE = Pattern.compile("\\s+([0-9a-f]{16})-([0-9a-f]{16}) (\\S+) +(\\S+).*");

    /** A dump of memtouch (16 MiB, 2 worker threads), made once; each test corrupts its own copy. */
    @TempDir
    static Path shared;
    private static Path fixture;
    private static Path fixtureLog;
    private static String fixtureRegion;

    @TempDir
    Path tmp;

    record Run(int exitCode, String stdout, String stderr) {
        @Override
        public String toString() {
            return "exit " + exitCode + "\n--- stdout\n" + stdout + "\n--- stderr\n" + stderr;
        }
    }

    @BeforeAll
    static void dumpTheFixture() throws Exception {
        Requires.root();
        Requires.ptrace();
        fixtureLog = shared.resolve("fixture.log");
        fixture = shared.resolve("fixture");
        int pid = spawnMemtouch(fixtureLog, "--size-mib", "16", "--threads", "2");
        try {
            awaitLine(pid, fixtureLog, l -> l.equals("HEARTBEAT 1"));
            fixtureRegion = awaitLine(pid, fixtureLog, l -> l.startsWith("REGION "));
            Run d = jar("lazy-dump.jar", "dump", "-t", Integer.toString(pid), "-D", fixture.toString());
            assertEquals(0, d.exitCode(), d.toString());
            awaitDead(pid);
        } finally {
            killQuietly(pid);
        }
    }

    @AfterAll
    static void nothingOfOursIsLeft() throws IOException {
        assertEquals(Set.of(), ours(), "processes of this test class still alive");
    }

    // ---- a good image, end to end ----

    @Test
    void dumpAndRestoreThroughTheJarsKeepsMemtouchCountingInTheSameLog() throws Exception {
        Path log = tmp.resolve("memtouch.log");
        Path img = tmp.resolve("img");
        int pid = spawnMemtouch(log, "--size-mib", "256", "--threads", "1", "--dirty-mib-per-sec", "16");
        int restored = -1;
        try {
            awaitLine(pid, log, l -> l.equals("HEARTBEAT 2"));
            Run d = jar("lazy-dump.jar", "dump", "-t", Integer.toString(pid), "-D", img.toString());
            assertEquals(0, d.exitCode(), d.toString());
            assertEquals("", d.stderr(), d.toString());
            awaitDead(pid);
            int lastBefore = lastHeartbeat(log);
            List<String> before = Files.readAllLines(log);

            Path pidfile = tmp.resolve("restored.pid");
            Run r = jar("lazy-pages.jar", "restore", "-D", img.toString(), "--pidfile", pidfile.toString());
            if (Files.exists(pidfile)) {
                restored = Integer.parseInt(Files.readString(pidfile).strip());
            }
            assertEquals(0, r.exitCode(), r.toString());
            assertEquals("", r.stderr(), "no warnings: " + r);
            Matcher m = Pattern.compile("restored pid (\\d+) from " + Pattern.quote(img.toString())
                    + " \\(2 threads, [0-9.]+ MiB, \\d+ ms\\)").matcher(r.stdout().strip());
            assertTrue(m.matches(), r.toString());
            assertEquals(restored, Integer.parseInt(m.group(1)), r.toString());
            assertEquals("memtouch", exeName(restored));

            int rp = restored;
            awaitLine(rp, log, l -> l.equals("HEARTBEAT " + (lastBefore + 2)));
            long verifies = count(log, l -> l.startsWith("VERIFY"));
            Posix.kill(rp, Posix.SIGUSR1);
            String verify = awaitNth(rp, log, l -> l.startsWith("VERIFY"), verifies + 1);
            assertTrue(verify.startsWith("VERIFY OK pages=65536"), verify + "\n" + tail(log));

            List<String> after = Files.readAllLines(log);
            assertEquals(before, after.subList(0, before.size()), "the restored copy overwrote the log");
            List<Integer> beats = after.stream().filter(l -> l.startsWith("HEARTBEAT ")).map(l -> Integer.parseInt(l.substring(10).strip())).toList();
            for (int i = 0; i < beats.size(); i++) {
                assertEquals(i + 1, beats.get(i), "heartbeats must go on 1, 2, 3... across the restore: " + beats);
            }
        } finally {
            killQuietly(pid);
            if (restored > 0 && killQuietly(restored)) {
                awaitDead(restored);
            }
        }
    }

    // ---- inspect ----

    @Test
    void inspectSummaryShowsTheThreadsAndTheRegionVma() throws Exception {
        Run r = jar("lazy-pages.jar", "inspect", "--summary", fixture.toString());
        assertEquals(0, r.exitCode(), r.toString());
        assertEquals("", r.stderr(), r.toString());
        assertTrue(r.stdout().contains("  threads: 3\n"), "main thread and two workers: " + r);
        assertEquals(3, r.stdout().lines().filter(l -> l.matches("    tid \\d+ rip 0x[0-9a-f]+ .*")).count(), r.toString());

        Matcher region = REGION.matcher(fixtureRegion);
        assertTrue(region.matches(), fixtureRegion);
        long start = Long.parseUnsignedLong(region.group(1), 16);
        long end = start + Long.parseLong(region.group(2));
        boolean covered = false;
        for (String l : r.stdout().lines().toList()) {
            Matcher v = VMA_LINE.matcher(l);
            if (v.matches() && Long.parseUnsignedLong(v.group(1), 16) <= start && Long.parseUnsignedLong(v.group(2), 16) >= end) {
                assertEquals("rw-p", v.group(3), l);
                assertEquals("ANON", v.group(4), l);
                covered = true;
            }
        }
        assertTrue(covered, "no VMA line covers memtouch's " + fixtureRegion + "\n" + r);
    }

    @Test
    void inspectPrintsTheWholeImageAsJson() throws Exception {
        Run r = jar("lazy-pages.jar", "inspect", fixture.toString());
        assertEquals(0, r.exitCode(), r.toString());
        assertEquals("", r.stderr(), r.toString());
        String json = r.stdout().strip();
        assertTrue(json.startsWith("{") && json.endsWith("}"), json);
        assertTrue(json.contains("\"vmas\""), json);
        assertTrue(json.contains("\"pagemap\"") && json.contains("\"threads\""), json);
        assertBalanced(json);
    }

    // ---- bad images: exit 4, one line naming the file, nothing left running ----

    @Test
    void refusesATruncatedProcessesImg() throws Exception {
        Path img = copyOfFixture();
        Path f = img.resolve("processes.img");
        try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
            raf.setLength(raf.length() / 2);
        }
        assertRefused(img, f, "truncated");
    }

    @Test
    void refusesAPagemapImgWithFlippedBytes() throws Exception {
        Path img = copyOfFixture();
        Path f = img.resolve("pagemap.img");
        long size = Files.size(f);
        flip(f, ImageFileDescriptor.HEADER_LENGTH + (size - ImageFileDescriptor.HEADER_LENGTH) / 2);
        assertRefused(img, f, "CRC-32C mismatch");
    }

    @Test
    void refusesAFileWithTheWrongMagic() throws Exception {
        Path img = copyOfFixture();
        Path f = img.resolve("pages.img");
        flip(f, ImageFileDescriptor.MAGIC_OFFSET + 2);
        assertRefused(img, f, "not a lazy-pages image file (wrong magic");
    }

    @Test
    void refusesAnotherFormatVersion() throws Exception {
        Path img = copyOfFixture();
        Path f = img.resolve("inventory.img");
        try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
            raf.seek(ImageFileDescriptor.VERSION_OFFSET);
            raf.writeInt(Integer.reverseBytes(ImageFileDescriptor.FORMAT_VERSION + 1)); // little-endian
        }
        assertRefused(img, f, "unsupported format version " + (ImageFileDescriptor.FORMAT_VERSION + 1));
    }

    @Test
    void refusesAPagemapEntryPointingPastTheEndOfPagesImg() throws Exception {
        Path img = copyOfFixture();
        ImageDir good = ImageDir.load(img);
        List<PageMapEntry> entries = new ArrayList<>(good.pageMap().getEntriesList());
        int last = -1;
        for (int i = 0; i < entries.size(); i++) {
            if (entries.get(i).getFlags() == PageFlags.PRESENT) {
                last = i;
            }
        }
        assertTrue(last >= 0, "the fixture has no PRESENT run");
        PageMapEntry e = entries.get(last);
        entries.set(last, e.toBuilder().setPageOffset(good.pagesInFile() - e.getNrPages() + 1).build());
        Path f = img.resolve("pagemap.img");
        ImageFile.writeMessage(f, ImageFile.Kind.PAGEMAP,
                good.pageMap().toBuilder().clearEntries().addAllEntries(entries).build());
        assertRefused(img, f, "lie past the end of pages.img");
    }

    @Test
    void refusesAVmaListThatOverlapsItself() throws Exception {
        Path img = copyOfFixture();
        ImageDir good = ImageDir.load(img);
        Process p = good.processes().getProcesses(0);
        int k = -1;
        for (int i = 0; i < p.getVmasCount(); i++) {
            Vma v = p.getVmas(i);
            if (v.getKind() == Vma.Kind.ANON && v.getEnd() - v.getStart() >= 2L * good.pageSize()) {
                k = i;
                break;
            }
        }
        assertTrue(k >= 0, "no anonymous VMA of two pages or more");
        Vma v = p.getVmas(k);
        // the second half of VMA k once more, right after it: sorted, aligned, but overlapping
        long mid = v.getStart() + (v.getEnd() - v.getStart()) / good.pageSize() / 2 * good.pageSize();
        List<Vma> vmas = new ArrayList<>(p.getVmasList());
        vmas.add(k + 1, v.toBuilder().setStart(mid).build());
        ProcessTree bad = good.processes().toBuilder()
                .setProcesses(0, p.toBuilder().clearVmas().addAllVmas(vmas).build()).build();
        Path f = img.resolve("processes.img");
        ImageFile.writeMessage(f, ImageFile.Kind.PROCESSES, bad); // a valid header and CRC
        assertRefused(img, f, "overlaps VMA " + k);
    }

    @Test
    void refusesFlippedPageDataWhenItReadsThePagesAndKillsTheHalfBuiltProcess() throws Exception {
        Path img = copyOfFixture();
        Path f = img.resolve("pages.img");
        flip(f, Files.size(f) - 100); // inside the last run's data: headers, page map and run bounds all stay valid
        Run r = assertRefused(img, f, "CRC-32C mismatch in pages");
        assertTrue(r.stderr().startsWith("restore: restore failed at 'write pages': "),
                "found only while writing pages, after lp-stub was spawned: " + r);
    }

    // ---- helpers ----

    /** Runs {@code restore -D img}; expects exit 4 and one stderr line naming {@code file}; nothing of ours left. */
    private Run assertRefused(Path img, Path file, String problem) throws Exception {
        Set<Integer> before = ours();
        Run r = jar("lazy-pages.jar", "restore", "-D", img.toString());
        assertEquals(ExitCodes.BAD_INPUT, r.exitCode(), r.toString());
        List<String> lines = r.stderr().lines().toList();
        assertEquals(1, lines.size(), "one line on stderr, no stack trace: " + r);
        String line = lines.get(0);
        assertTrue(line.startsWith("restore: restore failed at '"), r.toString());
        assertTrue(line.contains(file + ": "), "names " + file + ": " + r);
        assertTrue(line.contains(problem), "says '" + problem + "': " + r);
        assertFalse(line.contains("Exception"), r.toString());
        assertEquals("", r.stdout(), r.toString());
        awaitNothingNew(before, r);
        return r;
    }

    private void awaitNothingNew(Set<Integer> before, Run r) throws IOException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (true) {
            Set<Integer> now = ours();
            now.removeAll(before);
            if (now.isEmpty()) {
                return;
            }
            if (System.nanoTime() - deadline > 0) {
                fail("left behind: " + describe(now) + " (all lp-stubs on the machine: " + countExe("lp-stub") + ")\n" + r);
            }
            sleep(20);
        }
    }

    private Path copyOfFixture() throws IOException {
        Path img = tmp.resolve("img");
        Files.createDirectories(img);
        try (Stream<Path> s = Files.list(fixture)) {
            for (Path f : s.toList()) {
                Files.copy(f, img.resolve(f.getFileName()));
            }
        }
        return img;
    }

    private static void flip(Path f, long at) throws IOException {
        try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
            raf.seek(at);
            int b = raf.read();
            raf.seek(at);
            raf.write(b ^ 0xff);
        }
    }

    /** Runs a shaded jar in its own JVM with our mark in its environment (see the class comment). */
    private static Run jar(String name, String... args) throws IOException, InterruptedException {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of(java, "-jar", JarRunner.jar(name).toString()));
        cmd.addAll(List.of(args));
        Path out = Files.createTempFile("restore-it-out", ".txt");
        Path err = Files.createTempFile("restore-it-err", ".txt");
        try {
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile());
            pb.environment().put(MARK, TOKEN);
            java.lang.Process p = pb.start();
            if (!p.waitFor(JAR_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                p.destroyForcibly();
                throw new AssertionError(String.join(" ", cmd) + " did not finish within " + JAR_TIMEOUT);
            }
            return new Run(p.exitValue(), Files.readString(out, StandardCharsets.UTF_8), Files.readString(err, StandardCharsets.UTF_8));
        } finally {
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
    }

    /** memtouch detached from this JVM (see {@link Stubs}), its output to {@code log}, our mark in its environment. */
    private static int spawnMemtouch(Path log, String... args) throws IOException {
        Path memtouch = Stubs.path("memtouch").toRealPath();
        String[] all = new String[args.length + 2];
        all[0] = MARK + "=" + TOKEN;
        all[1] = memtouch.toString();
        System.arraycopy(args, 0, all, 2, args.length);
        int pid = Features.spawnDetachedWithLog(log, "/usr/bin/env", all);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (!memtouch.equals(exe(pid))) {
            if (System.nanoTime() - deadline > 0) {
                killQuietly(pid);
                fail("pid " + pid + " did not exec " + memtouch + " (exe " + exe(pid) + ")");
            }
            sleep(2);
        }
        return pid;
    }

    /** Live (not zombie) lp-stub and memtouch processes whose environment carries our mark. */
    private static Set<Integer> ours() throws IOException {
        Set<Integer> out = new TreeSet<>();
        byte[] mark = (MARK + "=" + TOKEN).getBytes(StandardCharsets.US_ASCII);
        try (Stream<Path> s = Files.list(Path.of("/proc"))) {
            for (Path p : s.filter(p -> p.getFileName().toString().matches("\\d+")).toList()) {
                int pid = Integer.parseInt(p.getFileName().toString());
                String name = exeName(pid);
                if (!"lp-stub".equals(name) && !"memtouch".equals(name)) {
                    continue;
                }
                char st = Stubs.stateOf(pid);
                if (st == 'Z' || st == 'X') {
                    continue;
                }
                try {
                    if (contains(Files.readAllBytes(p.resolve("environ")), mark)) {
                        out.add(pid);
                    }
                } catch (IOException gone) {
                    // exited meanwhile
                }
            }
        }
        return out;
    }

    private static long countExe(String name) throws IOException {
        try (Stream<Path> s = Files.list(Path.of("/proc"))) {
            return s.filter(p -> p.getFileName().toString().matches("\\d+"))
                    .filter(p -> name.equals(exeName(Integer.parseInt(p.getFileName().toString())))).count();
        }
    }

    private static String describe(Set<Integer> pids) {
        StringBuilder sb = new StringBuilder();
        for (int pid : pids) {
            sb.append(pid).append(' ').append(exeName(pid)).append(" state ").append(Stubs.stateOf(pid)).append("; ");
        }
        return sb.toString();
    }

    private static boolean contains(byte[] hay, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= hay.length; i++) {
            if (i > 0 && hay[i - 1] != 0) {
                continue; // entries start after a NUL
            }
            for (int j = 0; j < needle.length; j++) {
                if (hay[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return true;
        }
        return false;
    }

    private static Path exe(int pid) {
        try {
            return Files.readSymbolicLink(Path.of("/proc/" + pid + "/exe"));
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    private static String exeName(int pid) {
        Path e = exe(pid);
        return e == null ? null : e.getFileName().toString();
    }

    private static List<String> lines(Path log) {
        try {
            return Files.readAllLines(log, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            return List.of();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static long count(Path log, java.util.function.Predicate<String> p) {
        return lines(log).stream().filter(p).count();
    }

    private static String awaitLine(int pid, Path log, java.util.function.Predicate<String> wanted) {
        return awaitNth(pid, log, wanted, 1);
    }

    /** The {@code n}th line matching, once there is one; fails if {@code pid} dies or time runs out. */
    private static String awaitNth(int pid, Path log, java.util.function.Predicate<String> wanted, long n) {
        long deadline = System.nanoTime() + LOG_TIMEOUT.toNanos();
        while (true) {
            char st = Stubs.stateOf(pid);
            List<String> hits = lines(log).stream().filter(wanted).toList();
            if (hits.size() >= n) {
                return hits.get((int) n - 1);
            }
            if (st == 'Z' || st == 'X') {
                fail("pid " + pid + " died; log:\n" + tail(log));
            }
            if (System.nanoTime() - deadline > 0) {
                fail("pid " + pid + " printed no expected line within " + LOG_TIMEOUT + "; log:\n" + tail(log));
            }
            sleep(5);
        }
    }

    private static int lastHeartbeat(Path log) {
        return lines(log).stream().filter(l -> l.startsWith("HEARTBEAT ")).mapToInt(l -> Integer.parseInt(l.substring(10).strip()))
                .max().orElse(0);
    }

    private static String tail(Path log) {
        List<String> l = lines(log);
        return String.join("\n", l.subList(Math.max(0, l.size() - 30), l.size()));
    }

    /** Rough JSON shape check: braces and brackets balance outside strings. */
    private static void assertBalanced(String json) {
        int depth = 0;
        boolean inString = false;
        for (int i = 0; i < json.length(); i++) {
            char c = json.charAt(i);
            if (inString) {
                if (c == '\\') {
                    i++;
                } else if (c == '"') {
                    inString = false;
                }
            } else if (c == '"') {
                inString = true;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                depth--;
                assertTrue(depth >= 0, "unbalanced at " + i);
            }
        }
        assertEquals(0, depth, "unbalanced JSON");
        assertFalse(inString, "unterminated string");
    }

    private static void awaitDead(int pid) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (true) {
            char s = Stubs.stateOf(pid);
            if (s == 'Z' || s == 'X') {
                return;
            }
            if (System.nanoTime() - deadline > 0) {
                fail("pid " + pid + " is still alive (state " + s + ")");
            }
            sleep(2);
        }
    }

    /** SIGKILLs {@code pid} if it is still one of ours (the pid of a dead one may have been reused). */
    private static boolean killQuietly(int pid) {
        try {
            if (!ours().contains(pid)) {
                return false;
            }
            Posix.kill(pid, Posix.SIGKILL);
            return true;
        } catch (IOException | SyscallException e) {
            return false; // gone
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }
}
