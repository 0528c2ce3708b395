package dev.lazypages.perf.suite;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The machine a report was measured on: CPU model, cores, memory, kernel, JDK, date, and the
 * git commit of the working directory when there is one.
 */
public record Machine(String cpu, int cores, long memoryBytes, String kernel, String jdk, String date, String commit) {

    /** This machine, now. */
    public static Machine here() {
        return new Machine(cpuModel(), Runtime.getRuntime().availableProcessors(), memTotal(), firstLine(Path.of("/proc/sys/kernel/osrelease")),
                Runtime.version() + " (" + System.getProperty("java.vm.name", "?") + ")",
                Instant.now().truncatedTo(ChronoUnit.SECONDS).toString(), gitCommit());
    }

    public String markdown() {
        return String.format(Locale.ROOT, "- machine: %s, %d cores, %.1f GiB memory%n- kernel: Linux %s%n- JDK: %s%n- date: %s%n- commit: %s%n",
                cpu, cores, memoryBytes / (1024.0 * 1024 * 1024), kernel, jdk, date, commit != null ? commit : "(not a git checkout)");
    }

    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("cpu", cpu);
        m.put("cores", cores);
        m.put("memory_bytes", memoryBytes);
        m.put("kernel", kernel);
        m.put("jdk", jdk);
        m.put("date", date);
        m.put("commit", commit);
        return m;
    }

    private static String cpuModel() {
        try {
            for (String l : Files.readAllLines(Path.of("/proc/cpuinfo"), StandardCharsets.UTF_8)) {
                if (l.startsWith("model name")) {
                    return l.substring(l.indexOf(':') + 1).strip();
                }
            }
        } catch (IOException e) {
            // fall through
        }
        return System.getProperty("os.arch", "?");
    }

    private static long memTotal() {
        try {
            for (String l : Files.readAllLines(Path.of("/proc/meminfo"), StandardCharsets.UTF_8)) {
                if (l.startsWith("MemTotal:")) {
                    return Long.parseLong(l.replaceAll("[^0-9]", "")) * 1024;
                }
            }
        } catch (IOException | NumberFormatException e) {
            // fall through
        }
        return 0;
    }

    private static String firstLine(Path p) {
        try {
            List<String> l = Files.readAllLines(p, StandardCharsets.UTF_8);
            return l.isEmpty() ? "?" : l.getFirst().strip();
        } catch (IOException e) {
            return "?";
        }
    }

    /** {@code git rev-parse --short HEAD} in the working directory (plus "+dirty"), or null. */
    private static String gitCommit() {
        try {
            String head = git("rev-parse", "--short=12", "HEAD");
            if (head == null || head.isBlank()) {
                return null;
            }
            String status = git("status", "--porcelain", "--untracked-files=no");
            return head.strip() + (status != null && !status.isBlank() ? "+dirty" : "");
        } catch (IOException e) {
            return null;
        }
    }

    private static String git(String... args) throws IOException {
        List<String> cmd = new java.util.ArrayList<>(List.of("git"));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        try {
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(10, TimeUnit.SECONDS) || p.exitValue() != 0) {
                p.destroyForcibly();
                return null;
            }
            return out;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            p.destroyForcibly();
            return null;
        }
    }
}
