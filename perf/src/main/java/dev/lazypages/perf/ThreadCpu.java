package dev.lazypages.perf;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * CPU time used by this JVM's threads, by kind (the name without its instance numbers:
 * {@code page-client-11-2} counts as {@code page-client}), and by one other process, over a
 * window: where the CPU time of a round went, for the round's detail line. From
 * /proc/self/task/T/schedstat (ns on a CPU); a thread that ended within the window is not
 * counted, so a round's window closes while its servers' threads still run.
 */
final class ThreadCpu {
    private final Map<String, Long> start;

    private ThreadCpu(Map<String, Long> start) {
        this.start = start;
    }

    /** Starts a window now. */
    static ThreadCpu start() {
        return new ThreadCpu(snapshot());
    }

    /** Kind of a thread: its name up to the first "-digit" ({@code C2 CompilerThre}, {@code page-server-bul}...). */
    static String kind(String comm) {
        return comm.replaceFirst("-[0-9].*$", "");
    }

    /** CPU time so far of this JVM's threads whose kind passes {@code kinds}, in ns (0 without /proc). */
    static long nanos(java.util.function.Predicate<String> kinds) {
        return snapshot().entrySet().stream().filter(e -> kinds.test(e.getKey())).mapToLong(Map.Entry::getValue).sum();
    }

    private static Map<String, Long> snapshot() {
        Map<String, Long> m = new TreeMap<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(Path.of("/proc/self/task"))) {
            for (Path t : ds) {
                try {
                    m.merge(kind(Files.readString(t.resolve("comm")).strip()), runNanos(t.resolve("schedstat")), Long::sum);
                } catch (IOException | RuntimeException e) {
                    // the thread ended
                }
            }
        } catch (IOException e) {
            // no /proc: an empty window
        }
        return m;
    }

    private static long runNanos(Path schedstat) throws IOException {
        String s = Files.readString(schedstat);
        return Long.parseLong(s.substring(0, s.indexOf(' ')));
    }

    /**
     * "CPU ms: page-client 700, page-server 347, ... toucher 257" since the start: kinds over 2 ms,
     * largest first, and {@code pid}'s main thread (since it started) as {@code name}.
     */
    String since(int pid, String name) {
        Map<String, Long> now = snapshot();
        StringBuilder sb = new StringBuilder("CPU ms in this JVM:");
        now.entrySet().stream()
                .map(e -> Map.entry(e.getKey(), e.getValue() - start.getOrDefault(e.getKey(), 0L)))
                .filter(e -> e.getValue() > 2_000_000)
                .sorted((a, b) -> Long.compare(b.getValue(), a.getValue()))
                .forEach(e -> sb.append(String.format(Locale.ROOT, " %s %.0f,", e.getKey(), e.getValue() / 1e6)));
        sb.setLength(sb.length() - 1);
        try {
            sb.append(String.format(Locale.ROOT, "; %s %.0f", name, runNanos(Path.of("/proc/" + pid + "/schedstat")) / 1e6));
        } catch (IOException | RuntimeException e) {
            // gone
        }
        return sb.toString();
    }
}
