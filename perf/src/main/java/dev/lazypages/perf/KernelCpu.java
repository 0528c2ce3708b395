package dev.lazypages.perf;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * CPU time the kernel's own threads (children of kthreadd: kdamond, ksoftirqd, kworkers...)
 * used over a window: work that shares the CPUs with a measured round, which a process cannot
 * preempt while it runs inside the kernel. From /proc/PID/stat (utime + stime, 10 ms ticks).
 */
final class KernelCpu {
    private final Map<Integer, long[]> start;

    private KernelCpu(Map<Integer, long[]> start) {
        this.start = start;
    }

    static KernelCpu start() {
        return new KernelCpu(snapshot(new HashMap<>()));
    }

    /** pid → {ticks}, names into {@code names}. */
    private static Map<Integer, long[]> snapshot(Map<Integer, String> names) {
        Map<Integer, long[]> m = new HashMap<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(Path.of("/proc"), p -> p.getFileName().toString().matches("[0-9]+"))) {
            for (Path p : ds) {
                try {
                    String st = Files.readString(p.resolve("stat"));
                    int close = st.lastIndexOf(')');
                    String[] f = st.substring(close + 2).split(" ");
                    if (!f[1].equals("2")) { // ppid: kthreadd's children only
                        continue;
                    }
                    int pid = Integer.parseInt(p.getFileName().toString());
                    m.put(pid, new long[] {Long.parseLong(f[11]) + Long.parseLong(f[12])});
                    names.put(pid, st.substring(st.indexOf('(') + 1, close));
                } catch (IOException | RuntimeException e) {
                    // gone
                }
            }
        } catch (IOException e) {
            // no /proc
        }
        return m;
    }

    private long lastTotal = -1;

    /** The total of the last {@link #since}, in ms (-1 before). */
    long totalMillis() {
        return lastTotal;
    }

    /** "kernel threads 30 ms (kdamond.0 20, ksoftirqd/1 10)": those over 0 ms, by name with instance numbers dropped. */
    String since() {
        Map<Integer, String> names = new HashMap<>();
        Map<Integer, long[]> now = snapshot(names);
        Map<String, Long> byName = new TreeMap<>();
        long total = 0;
        for (var e : now.entrySet()) {
            long d = e.getValue()[0] - start.getOrDefault(e.getKey(), new long[] {e.getValue()[0]})[0];
            if (d > 0) {
                byName.merge(names.get(e.getKey()).replaceAll("/[0-9]+$", "").replaceAll(":[0-9A-Za-z_+-]+$", ""), d * 10, Long::sum);
                total += d * 10;
            }
        }
        lastTotal = total;
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "kernel threads %d ms", total));
        if (!byName.isEmpty()) {
            sb.append(" (");
            byName.entrySet().stream().sorted((a, b) -> Long.compare(b.getValue(), a.getValue()))
                    .forEach(e -> sb.append(e.getKey()).append(' ').append(e.getValue()).append(", "));
            sb.setLength(sb.length() - 2);
            sb.append(')');
        }
        return sb.toString();
    }
}
