package dev.lazypages.cli;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.ProcessMemory;
import dev.lazypages.ffm.Ptrace;
import dev.lazypages.ffm.WaitStatus;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code demo}, foundation stage: the memory half of a migration against a real, running,
 * self-verifying workload. It starts memtouch, copies all its memory while it runs (a
 * pre-copy round), freezes every thread, copies again and checks every page of the frozen
 * copy against memtouch's own version table, thaws it, and has memtouch verify itself.
 * Network migration replaces this once the post-copy daemon lands (see README).
 */
@Command(name = "demo", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "Runs the bundled workload through the memory path of a migration (foundation stage).",
            "",
            "Starts memtouch (a workload whose every page carries its index, version and checksum), copies its "
                    + "memory with process_vm_readv while it runs, freezes all its threads with ptrace, copies "
                    + "again, checks every copied page against memtouch's version table, thaws it and asks it to "
                    + "verify itself (SIGUSR1). The full network migration demo replaces this when the "
                    + "lazy-pages daemon lands."
        })
public final class DemoCommand implements Callable<Integer> {
    private static final long MAGIC = 0x4d454d544f554348L;
    private static final long FNV_OFFSET = 0xcbf29ce484222325L;
    private static final long FNV_PRIME = 0x00000100000001b3L;
    private static final long CHUNK = 4L << 20;

    @Spec
    private CommandSpec spec;

    @Option(names = "--size-mib", defaultValue = "256", description = "Workload size in MiB (default ${DEFAULT-VALUE}).")
    private int sizeMib;

    @Option(names = "--threads", defaultValue = "2", description = "Workload threads that dirty memory (default ${DEFAULT-VALUE}).")
    private int threads;

    @Option(names = "--dirty-mib-per-sec", defaultValue = "8", description = "Dirty rate of the workload (default ${DEFAULT-VALUE}).")
    private int dirtyRate;

    @Option(names = "--stubs-dir", description = "Where memtouch is (default: native-stubs/target/bin next to the jar, or $LAZYPAGES_STUBS_DIR).")
    private Path stubsDir;

    private PrintWriter out;

    @Override
    public Integer call() throws Exception {
        out = spec.commandLine().getOut();
        if (sizeMib < 1 || threads < 1 || dirtyRate < 0) {
            throw new IllegalArgumentException("--size-mib and --threads must be at least 1, --dirty-mib-per-sec at least 0");
        }
        Features.ptrace().ensureAvailable();
        Path memtouch = findMemtouch();
        Path work = Files.createTempDirectory("lazy-pages-demo");
        Path log = work.resolve("memtouch.log");
        say("workload: %s --size-mib %d --threads %d --dirty-mib-per-sec %d (log %s)", memtouch, sizeMib, threads, dirtyRate, log);
        int pid = spawn(memtouch, log);
        try {
            String region = awaitLine(log, "REGION ", 30_000);
            Matcher m = Pattern.compile("addr=0x([0-9a-f]+) size=(\\d+) pages=(\\d+) page_size=(\\d+) table=0x([0-9a-f]+)").matcher(region);
            if (!m.find()) {
                throw new IllegalStateException("memtouch printed an unexpected REGION line: " + region);
            }
            long addr = Long.parseUnsignedLong(m.group(1), 16);
            long size = Long.parseLong(m.group(2));
            long pages = Long.parseLong(m.group(3));
            long table = Long.parseUnsignedLong(m.group(5), 16);
            awaitLine(log, "HEARTBEAT 2", 10_000);
            say("memtouch pid %d: %d pages at 0x%x, running and dirtying", pid, pages, addr);

            try (PageBuffer copy = PageBuffer.allocate(size / Posix.pageSize());
                 PageBuffer versions = PageBuffer.allocate((pages * 8 + Posix.pageSize() - 1) / Posix.pageSize())) {
                long t0 = System.nanoTime();
                copyRegion(pid, addr, size, copy);
                long t1 = System.nanoTime();
                say("round 1 (process running): copied %d MiB in %.1f ms, %.2f GiB/s", size >> 20, (t1 - t0) / 1e6,
                        size / ((t1 - t0) / 1e9) / (1L << 30));

                long f0 = System.nanoTime();
                List<Integer> tids = freeze(pid);
                long f1 = System.nanoTime();
                copyRegion(pid, addr, size, copy);
                ProcessMemory.read(pid, table, versions, 0, pages * 8);
                long f2 = System.nanoTime();
                thaw(tids);
                long f3 = System.nanoTime();
                say("freeze: %d threads stopped in %.2f ms; final copy %.1f ms; thawed in %.2f ms; frozen %.1f ms in all",
                        tids.size(), (f1 - f0) / 1e6, (f2 - f1) / 1e6, (f3 - f2) / 1e6, (f3 - f0) / 1e6);

                long bad = checkPages(copy, versions, pages);
                if (bad != 0) {
                    say("FAILED: %d of %d copied pages do not match memtouch's version table", bad, pages);
                    return ExitCodes.FAILED;
                }
                say("frozen copy checked: all %d pages carry the right index, version and checksum", pages);
            }
            Posix.kill(pid, Posix.SIGUSR1);
            String verify = awaitLine(log, "VERIFY ", 30_000);
            long beat = lastHeartbeat(log);
            awaitLine(log, "HEARTBEAT " + (beat + 1), 5_000);
            say("memtouch after thaw: %s, heartbeat continues (%d -> %d)", verify, beat, beat + 1);
            if (!verify.startsWith("VERIFY OK")) {
                return ExitCodes.FAILED;
            }
            say("demo: OK (network migration, restore and post-copy are not built yet: see README)");
            return ExitCodes.OK;
        } finally {
            Posix.kill(pid, Posix.SIGKILL);
        }
    }

    private void say(String fmt, Object... args) {
        out.printf(fmt + "%n", args);
        out.flush();
    }

    private Path findMemtouch() {
        List<Path> candidates = new ArrayList<>();
        if (stubsDir != null) {
            candidates.add(stubsDir.resolve("memtouch"));
        } else {
            String env = System.getenv("LAZYPAGES_STUBS_DIR");
            if (env != null) {
                candidates.add(Path.of(env, "memtouch"));
            }
            try {
                Path jar = Path.of(DemoCommand.class.getProtectionDomain().getCodeSource().getLocation().toURI());
                candidates.add(jar.toAbsolutePath().getParent().resolve("../../native-stubs/target/bin/memtouch").normalize());
            } catch (Exception e) {
                // no code source: only the explicit locations
            }
        }
        for (Path p : candidates) {
            if (Files.isExecutable(p)) {
                return p;
            }
        }
        throw new IllegalArgumentException("memtouch not found (looked at " + candidates
                + "); build it with ./lp build or pass --stubs-dir");
    }

    private int spawn(Path memtouch, Path log) throws IOException {
        return Features.spawnDetachedWithLog(log, memtouch.toString(), "--size-mib", Integer.toString(sizeMib), "--threads",
                Integer.toString(threads), "--dirty-mib-per-sec", Integer.toString(dirtyRate));
    }

    private static String awaitLine(Path log, String prefix, long timeoutMillis) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + timeoutMillis * 1_000_000;
        while (System.nanoTime() - deadline < 0) {
            if (Files.exists(log)) {
                try (Stream<String> lines = Files.lines(log)) {
                    var hit = lines.filter(l -> l.startsWith(prefix)).findFirst();
                    if (hit.isPresent()) {
                        return hit.get();
                    }
                }
            }
            Thread.sleep(20);
        }
        throw new IllegalStateException("memtouch did not print '" + prefix + "' within " + timeoutMillis + " ms (log " + log + ")");
    }

    private static long lastHeartbeat(Path log) throws IOException {
        try (Stream<String> lines = Files.lines(log)) {
            return lines.filter(l -> l.startsWith("HEARTBEAT ")).mapToLong(l -> Long.parseLong(l.substring(10).trim())).max().orElse(0);
        }
    }

    private static void copyRegion(int pid, long addr, long size, PageBuffer into) {
        for (long off = 0; off < size; off += CHUNK) {
            long len = Math.min(CHUNK, size - off);
            long got = ProcessMemory.read(pid, addr + off, into, off, len);
            if (got != len) {
                throw new IllegalStateException("process_vm_readv of pid " + pid + " at 0x" + Long.toHexString(addr + off)
                        + " moved " + got + " of " + len + " bytes");
            }
        }
    }

    /** Seizes every thread and stops it; returns the thread ids (seized and stopped). */
    private static List<Integer> freeze(int pid) throws IOException {
        List<Integer> tids = new ArrayList<>();
        try (Stream<Path> tasks = Files.list(Path.of("/proc/" + pid + "/task"))) {
            tasks.map(p -> Integer.parseInt(p.getFileName().toString())).sorted().forEach(tids::add);
        }
        for (int tid : tids) {
            Ptrace.seize(tid, 0);
        }
        for (int tid : tids) {
            Ptrace.interrupt(tid);
        }
        for (int tid : tids) {
            WaitStatus ws = Ptrace.waitpid(tid, Ptrace.WALL);
            if (!ws.stopped()) {
                throw new IllegalStateException("thread " + tid + " did not stop: " + ws);
            }
        }
        return tids;
    }

    private static void thaw(List<Integer> tids) {
        for (int tid : tids) {
            Ptrace.detach(tid, 0);
        }
    }

    /** Counts pages whose header or checksum disagree with the version table (memtouch.c's layout). */
    private static long checkPages(PageBuffer copy, PageBuffer versions, long pages) {
        long ps = copy.pageSize();
        long bad = 0;
        for (long i = 0; i < pages; i++) {
            long base = i * ps;
            boolean ok = copy.getLong(base) == MAGIC && copy.getLong(base + 8) == i
                    && copy.getLong(base + 16) == versions.getLong(i * 8);
            if (ok) {
                long h = FNV_OFFSET;
                for (long o = 32; o < ps; o += 8) {
                    h = (h ^ copy.getLong(base + o)) * FNV_PRIME;
                }
                ok = h == copy.getLong(base + 24);
            }
            if (!ok) {
                bad++;
            }
        }
        return bad;
    }
}
