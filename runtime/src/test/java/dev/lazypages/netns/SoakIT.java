package dev.lazypages.netns;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.netns.JarRig.Daemon;
import dev.lazypages.netns.JarRig.Side;
import dev.lazypages.netns.JarRig.Workload;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The CI version of the soak (issue 7 point 6; the full run is {@code perf/soak.sh}): memtouch
 * with 4 threads dirtying is migrated 10 times back and forth between daemon A (source namespace)
 * and daemon B (destination namespace), the modes in turn, each {@code migrate} run where the
 * process lives. After each: VERIFY OK, heartbeat on, original gone, the daemon's work dir empty.
 * The daemons' fds, threads, VmRSS and live heap (after a full GC, by jcmd) are measured before,
 * after the warm-up and at the end; growth after the warm-up must stay within bounds. At the end
 * nothing is left: in the namespaces only the two daemons and the one memtouch run, the work dirs
 * and the JVMs' temporary directory are empty, and the daemons reported every migration migrated.
 *
 * <p>The daemons run with a fixed, pre-touched heap (as perf/soak.sh does): otherwise G1's heap
 * sizing alone moves their RSS by hundreds of MiB and hides what the check is for, memory outside
 * the heap (native allocations, mappings, direct buffers, thread stacks).
 */
class SoakIT {
    private static final int MIGRATIONS = 10;
    private static final int WARMUP = 4;
    private static final String[] MODES = {"hybrid", "post-copy", "pre-copy"};
    private static final String[] DAEMON_JVM = {"-Xms384m", "-Xmx384m", "-XX:+AlwaysPreTouch"};
    private static final int MAX_FD_GROWTH = 4;
    private static final int MAX_THREAD_GROWTH = 2;
    private static final long MAX_RSS_GROWTH_KIB = 48 * 1024;
    private static final long MAX_HEAP_GROWTH_KIB = 8 * 1024;
    private static final Duration T = Duration.ofSeconds(120);
    private static final Pattern HEAP_USED = Pattern.compile(" used (\\d+)K");

    private JarRig rig;
    private Workload w;

    /** One measurement of one daemon; heap is -1 where jcmd is missing. */
    record Usage(int fds, int threads, long rssKib, long heapKib) {
        static Usage of(int pid) throws IOException, InterruptedException {
            long heap = liveHeapKib(pid); // first: jcmd's attach listener thread and socket exist from the first row on
            int threads = 0;
            long rss = 0;
            for (String l : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
                if (l.startsWith("Threads:")) {
                    threads = Integer.parseInt(l.substring(8).trim());
                } else if (l.startsWith("VmRSS:")) {
                    rss = Long.parseLong(l.substring(6).replace("kB", "").trim());
                }
            }
            int fds;
            try (var s = Files.list(Path.of("/proc/" + pid + "/fd"))) {
                fds = (int) s.count();
            }
            return new Usage(fds, threads, rss, heap);
        }

        String row() {
            return String.format(Locale.ROOT, "%5d %5d %9.1f %9s", fds, threads, rssKib / 1024.0,
                    heapKib < 0 ? "-" : String.format(Locale.ROOT, "%.1f", heapKib / 1024.0));
        }
    }

    @AfterEach
    void cleanUp() throws Exception {
        if (w != null) {
            w.kill();
        }
        if (rig != null) {
            rig.close();
        }
    }

    @Test
    void tenMigrationsBackAndForthLeakNothingInTheDaemons() throws Exception {
        rig = JarRig.create("SoakIT");
        Daemon a = rig.serve(Side.SRC, DAEMON_JVM);
        Daemon b = rig.serve(Side.DST, DAEMON_JVM);
        w = rig.memtouch(Side.SRC, 128, 4, 8, null);
        List<String> labels = new ArrayList<>();
        List<Usage[]> rows = new ArrayList<>();
        labels.add("start");
        rows.add(new Usage[] {Usage.of(a.pid()), Usage.of(b.pid())});
        Side here = Side.SRC;
        for (int i = 1; i <= MIGRATIONS; i++) {
            Daemon to = here == Side.SRC ? b : a;
            String mode = MODES[(i - 1) % MODES.length];
            JarRig.Migrate r = rig.migrateAndCheck(w, here, to, mode, T);
            to.assertWorkDirEmptySoon();
            System.out.printf("soak %2d: %-9s %s -> %s, pid %d, %.0f ms%n", i, mode, here, to.side, w.pid, r.ms());
            here = to.side;
            if (i == WARMUP || i == MIGRATIONS) {
                labels.add(Integer.toString(i));
                rows.add(new Usage[] {Usage.of(a.pid()), Usage.of(b.pid())});
            }
        }
        StringBuilder table = new StringBuilder(String.format(Locale.ROOT, "%-6s | %5s %5s %9s %9s | %5s %5s %9s %9s%n", "after",
                "A fds", "A thr", "A RSS MiB", "A heap", "B fds", "B thr", "B RSS MiB", "B heap"));
        for (int i = 0; i < rows.size(); i++) {
            table.append(String.format(Locale.ROOT, "%-6s | %s | %s%n", labels.get(i), rows.get(i)[0].row(), rows.get(i)[1].row()));
        }
        System.out.print(table);

        List<String> grew = new ArrayList<>();
        Usage[] warm = rows.get(1);
        Usage[] end = rows.getLast();
        for (int d = 0; d < 2; d++) {
            String who = d == 0 ? "daemon A" : "daemon B";
            check(grew, who + " fds", warm[d].fds(), end[d].fds(), MAX_FD_GROWTH);
            check(grew, who + " threads", warm[d].threads(), end[d].threads(), MAX_THREAD_GROWTH);
            check(grew, who + " RSS KiB", warm[d].rssKib(), end[d].rssKib(), MAX_RSS_GROWTH_KIB);
            if (warm[d].heapKib() >= 0 && end[d].heapKib() >= 0) {
                check(grew, who + " live heap KiB", warm[d].heapKib(), end[d].heapKib(), MAX_HEAP_GROWTH_KIB);
            }
        }
        assertEquals(List.of(), grew, "growth after migration " + WARMUP + ":\n" + table);

        // nothing left behind
        List<Integer> left = rig.pidsInNamespaces().stream().filter(p -> p != a.pid() && p != b.pid() && p != w.pid).toList();
        assertEquals(List.of(), left.stream().map(JarRig::describe).toList(), "left running in the namespaces");
        assertTrue(rig.pidsInNamespaces().contains(w.pid), "memtouch pid " + w.pid + " runs in a namespace of the test");
        assertEquals(List.of(), a.workDirEntries(), "daemon A's work dir");
        assertEquals(List.of(), b.workDirEntries(), "daemon B's work dir");
        try (var s = Files.list(rig.jvmTmp())) {
            assertEquals(List.of(), s.map(Path::toString).toList(), "left in the JVMs' java.io.tmpdir");
        }
        List<String> outcomes = new ArrayList<>(a.awaitReports(MIGRATIONS / 2));
        outcomes.addAll(b.awaitReports(MIGRATIONS - MIGRATIONS / 2));
        assertEquals(MIGRATIONS, outcomes.stream().filter("migrated"::equals).count(), outcomes.toString());
    }

    private static void check(List<String> grew, String what, long from, long to, long max) {
        if (to - from > max) {
            grew.add(what + " grew by " + (to - from) + " (from " + from + " to " + to + ", bound " + max + ")");
        }
    }

    /** jcmd PID GC.run, then the "used" of GC.heap_info, in KiB; -1 without jcmd. */
    static long liveHeapKib(int pid) throws IOException, InterruptedException {
        Path jcmd = Path.of(JarRig.java()).resolveSibling("jcmd");
        if (!Files.isExecutable(jcmd)) {
            return -1;
        }
        jcmd(jcmd, pid, "GC.run");
        Matcher m = HEAP_USED.matcher(jcmd(jcmd, pid, "GC.heap_info"));
        return m.find() ? Long.parseLong(m.group(1)) : -1;
    }

    private static String jcmd(Path jcmd, int pid, String command) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(jcmd.toString(), Integer.toString(pid), command).redirectErrorStream(true).start();
        p.getOutputStream().close();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(30, TimeUnit.SECONDS)) {
            p.destroyForcibly();
        }
        return out;
    }
}
