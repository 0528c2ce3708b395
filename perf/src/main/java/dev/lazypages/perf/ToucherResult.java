package dev.lazypages.perf;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * What one run of native-stubs' {@code toucher} wrote to its {@code --out} file (the format is
 * documented at the top of toucher.c): the touches' latencies in touch order, how many touched
 * pages did not hold the pattern, and for the floor with {@code --bulk} the time until every
 * page was in and the pages-in samples over time.
 *
 * @param mode        {@code ours} or {@code floor}
 * @param touchStartNanos    CLOCK_MONOTONIC (System.nanoTime's clock) when touching began
 * @param transferStartNanos floor: CLOCK_MONOTONIC when its transfer began; -1 for ours
 * @param allInNanos  floor with --bulk: transfer start to every page in; -1 otherwise
 * @param faultPages  floor: pages its fault thread copied; -1 for ours
 * @param bulkPages   floor: pages its bulk thread copied; -1 for ours
 * @param latencies   one per touch, in ns, in touch order
 * @param progress    {t_ns since transfer start, pages in}, in time order (floor with --bulk)
 */
public record ToucherResult(String mode, long pages, long touches, String order, long intervalMicros, long seed,
                            long badPages, long firstBad, long touchNanos, long touchStartNanos,
                            long transferStartNanos, long allInNanos, long faultPages,
                            long bulkPages, long[] latencies, List<long[]> progress) {
    private static final Set<String> KEYS = Set.of("mode", "pages", "touches", "order", "interval_us", "seed",
            "bad_pages", "first_bad", "touch_ns", "touch_start_ns", "transfer_start_ns", "all_in_ns", "fault_pages", "bulk_pages");

    /** True when every touched page held the pattern. */
    public boolean verified() {
        return badPages == 0;
    }

    /**
     * Parses a toucher's output.
     *
     * @throws IllegalArgumentException not a complete toucher output (the message names the line)
     */
    public static ToucherResult parse(String text) {
        String[] lines = (text.endsWith("\n") ? text.substring(0, text.length() - 1) : text).split("\n", -1);
        int i;
        if (lines.length == 0 || !lines[0].equals("toucher 1")) {
            throw new IllegalArgumentException("not a toucher output (format 1): first line '" + (lines.length > 0 ? lines[0] : "") + "'");
        }
        Map<String, String> kv = new HashMap<>();
        i = 1;
        while (i < lines.length && !lines[i].startsWith("latencies ")) {
            String[] f = lines[i].split(" ", 2);
            if (f.length != 2 || !KEYS.contains(f[0])) {
                throw new IllegalArgumentException("toucher output line " + (i + 1) + ": unexpected '" + lines[i] + "'");
            }
            kv.put(f[0], f[1]);
            i++;
        }
        for (String k : KEYS) {
            if (!kv.containsKey(k)) {
                throw new IllegalArgumentException("toucher output has no '" + k + "' line");
            }
        }
        int n = (int) count(lines, i, "latencies");
        long[] lat = new long[n];
        i++;
        for (int k = 0; k < n; k++, i++) {
            lat[k] = parseLong(line(lines, i), i);
        }
        int m = (int) count(lines, i, "progress");
        i++;
        List<long[]> progress = new ArrayList<>(m);
        for (int k = 0; k < m; k++, i++) {
            String[] f = line(lines, i).split(" ");
            if (f.length != 2) {
                throw new IllegalArgumentException("toucher output line " + (i + 1) + ": expected 't_ns pages', got '" + lines[i] + "'");
            }
            progress.add(new long[] {parseLong(f[0], i), parseLong(f[1], i)});
        }
        if (!line(lines, i).equals("end")) {
            throw new IllegalArgumentException("toucher output line " + (i + 1) + ": expected 'end', got '" + lines[i] + "'");
        }
        long touches = parseLong(kv.get("touches"), -1);
        if (touches != n) {
            throw new IllegalArgumentException("toucher output: touches " + touches + " but " + n + " latencies");
        }
        return new ToucherResult(kv.get("mode"), parseLong(kv.get("pages"), -1), touches, kv.get("order"),
                parseLong(kv.get("interval_us"), -1), parseLong(kv.get("seed"), -1), parseLong(kv.get("bad_pages"), -1),
                parseLong(kv.get("first_bad"), -1), parseLong(kv.get("touch_ns"), -1), parseLong(kv.get("touch_start_ns"), -1),
                parseLong(kv.get("transfer_start_ns"), -1), parseLong(kv.get("all_in_ns"), -1),
                parseLong(kv.get("fault_pages"), -1), parseLong(kv.get("bulk_pages"), -1), lat, List.copyOf(progress));
    }

    private static String line(String[] lines, int i) {
        if (i >= lines.length) {
            throw new IllegalArgumentException("toucher output ends early (truncated at line " + (i + 1) + ")");
        }
        return lines[i];
    }

    private static long count(String[] lines, int i, String key) {
        String l = line(lines, i);
        if (!l.startsWith(key + " ")) {
            throw new IllegalArgumentException("toucher output line " + (i + 1) + ": expected '" + key + " N', got '" + l + "'");
        }
        long n = parseLong(l.substring(key.length() + 1), i);
        if (n < 0 || n > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("toucher output line " + (i + 1) + ": bad count " + n);
        }
        return n;
    }

    private static long parseLong(String s, int lineIndex) {
        try {
            return Long.parseLong(s.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("toucher output" + (lineIndex >= 0 ? " line " + (lineIndex + 1) : "")
                    + ": not a number: '" + s + "'");
        }
    }
}
