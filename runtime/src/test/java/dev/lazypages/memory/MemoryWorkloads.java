package dev.lazypages.memory;

import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/** The workloads of the memory tests (mapper, memtouch) and checks on the processes. */
final class MemoryWorkloads {
    static final Duration TIMEOUT = Duration.ofSeconds(10);
    static final long PS = PageRanges.PAGE_SIZE;

    private MemoryWorkloads() {
    }

    /** Everything a live tracker test needs: root, ptrace. */
    static void requireTracing() {
        Requires.root();
        Requires.ptrace();
    }

    /** And PAGEMAP_SCAN with uffd WP_ASYNC. */
    static void requirePagemapScanTracking() {
        requireTracing();
        Requires.pagemapScan();
        Requires.uffdWpAsync();
    }

    /** mapper after its BASE line. */
    static Mapper mapper() {
        return new Mapper(Stubs.spawn("mapper"));
    }

    /** The mapper workload: its BASE region and its steps (see mapper.c). */
    static final class Mapper implements AutoCloseable {
        final Stubs.Running process;
        final long base;
        final long baseLen;
        private int step;

        Mapper(Stubs.Running process) {
            this.process = process;
            Map<String, String> b = fields(process.awaitLine(l -> l.startsWith("BASE "), TIMEOUT));
            this.base = hex(b.get("addr"));
            this.baseLen = Long.parseLong(b.get("len"));
        }

        int pid() {
            return process.pid();
        }

        /** Sends SIGUSR1, waits for the next STEP (or IDLE) line; its key=value fields, plus "what". */
        Map<String, String> step() {
            step++;
            String prefix = step <= 6 ? "STEP " + step + " " : "IDLE step=" + step;
            process.signal(Posix.SIGUSR1);
            String line = process.awaitLine(l -> l.startsWith(prefix), TIMEOUT);
            Map<String, String> f = fields(line);
            f.put("what", line.split(" ")[step <= 6 ? 2 : 0]);
            return f;
        }

        @Override
        public void close() {
            process.close();
        }
    }

    /** {@code key=value} words of a line. */
    static Map<String, String> fields(String line) {
        Map<String, String> out = new LinkedHashMap<>();
        for (String w : line.split(" ")) {
            int eq = w.indexOf('=');
            if (eq > 0) {
                out.put(w.substring(0, eq), w.substring(eq + 1));
            }
        }
        return out;
    }

    static long hex(String s) {
        return Long.parseUnsignedLong(s.startsWith("0x") ? s.substring(2) : s, 16);
    }

    /** The targets of /proc/PID/fd/* links (e.g. "anon_inode:[userfaultfd]"). */
    static List<String> fdTargets(int pid) {
        List<String> out = new ArrayList<>();
        try (Stream<Path> fds = Files.list(Path.of("/proc/" + pid + "/fd"))) {
            for (Path fd : fds.toList()) {
                try {
                    out.add(Files.readSymbolicLink(fd).toString());
                } catch (IOException gone) {
                    // closed meanwhile
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out;
    }

    static boolean hasUserfaultfd(int pid) {
        return fdTargets(pid).stream().anyMatch(t -> t.contains("userfaultfd"));
    }

    /** The pages of [start, start + pages * PS) as a set. */
    static PageRanges pages(long start, long pages) {
        return PageRanges.of(start, start + pages * PS);
    }
}
