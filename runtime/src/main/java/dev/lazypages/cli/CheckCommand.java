package dev.lazypages.cli;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.stats.Json;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code check}: like {@code criu check}, every kernel facility live migration uses, each
 * really exercised. Exit 0 when all that live migration needs is there; otherwise exit 3 with
 * one line per missing thing.
 */
@Command(name = "check", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "Checks that this machine's kernel has what live migration needs.",
            "",
            "Every facility is really used, not guessed from the kernel version: a test child is seized with "
                    + "ptrace, a userfaultfd is opened and asked for every feature, PAGEMAP_SCAN runs on a page, "
                    + "soft-dirty is probed (clear_refs 4, write, pagemap bit 55), pidfd_getfd and PR_SET_MM_MAP "
                    + "are called. Also reports THP mode and the CPU's XSAVE components (XCR0).",
            "",
            "Exit status: 0 when everything live migration needs is available; 3 otherwise, with one line "
                    + "per missing facility on stderr."
        })
public final class CheckCommand implements Callable<Integer> {
    /** userfaultfd features the lazy-pages daemon relies on. */
    private static final long NEEDED_UFFD_FEATURES = Userfaultfd.FEATURE_EVENT_FORK | Userfaultfd.FEATURE_EVENT_REMAP
            | Userfaultfd.FEATURE_EVENT_REMOVE | Userfaultfd.FEATURE_EVENT_UNMAP | Userfaultfd.FEATURE_THREAD_ID;

    private static final List<String> XSAVE_CPU_FLAGS = List.of("xsave", "xsaveopt", "xsavec", "xsaves", "avx", "avx2",
            "avx512f", "avx512bw", "avx512vl", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "pku", "ospke");

    @Spec
    private CommandSpec spec;

    @Option(names = "--json", description = "Print the result as JSON (keys include soft_dirty, pagemap_scan, uffd_wp_async as booleans).")
    private boolean json;

    @Override
    public Integer call() {
        Map<String, Object> r = new LinkedHashMap<>();
        Map<String, String> details = new LinkedHashMap<>();
        List<String> missing = new ArrayList<>();

        Posix.Uname u = Posix.uname();
        r.put("kernel", u.release());
        r.put("machine", u.machine());
        long pageSize = Posix.pageSize();
        r.put("page_size", pageSize);

        Features.Probe ptrace = Features.ptrace();
        r.put("ptrace", ptrace.available());
        details.put("ptrace", ptrace.detail());
        need(ptrace, "ptrace: cannot seize a process (" + ptrace.detail() + ")", missing);

        Features.Probe uffd = Features.userfaultfd();
        r.put("userfaultfd", uffd.available());
        details.put("userfaultfd", uffd.detail());
        need(uffd, "userfaultfd: " + uffd.detail(), missing);
        Features.Probe dev = Features.userfaultfdDevice();
        r.put("userfaultfd_device", dev.available());
        details.put("userfaultfd_device", dev.detail());
        long features = Features.userfaultfdFeatures();
        r.put("uffd_features", Userfaultfd.decode(features, Userfaultfd.FEATURES));
        r.put("uffd_ioctls", Userfaultfd.decode(Features.userfaultfdIoctls(), Userfaultfd.IOCTLS));
        if (uffd.available() && (features & NEEDED_UFFD_FEATURES) != NEEDED_UFFD_FEATURES) {
            missing.add("userfaultfd features: " + Userfaultfd.decode(NEEDED_UFFD_FEATURES & ~features, Userfaultfd.FEATURES)
                    + " not offered (needed to follow fork, mremap, madvise and munmap in post-copy)");
        }
        r.put("uffd_move", (features & Userfaultfd.FEATURE_MOVE) != 0);

        Features.Probe wpAsync = Features.uffdWpAsync();
        r.put("uffd_wp_async", wpAsync.available());
        details.put("uffd_wp_async", wpAsync.detail());
        Features.Probe scan = Features.pagemapScan();
        r.put("pagemap_scan", scan.available());
        details.put("pagemap_scan", scan.detail());
        Features.Probe soft = Features.softDirty();
        r.put("soft_dirty", soft.available());
        details.put("soft_dirty", soft.detail());
        Features.Probe pidfd = Features.pidfdGetfd();
        r.put("pidfd_getfd", pidfd.available());
        details.put("pidfd_getfd", pidfd.detail());
        Features.Probe mm = Features.prSetMmMap();
        r.put("pr_set_mm_map", mm.available());
        details.put("pr_set_mm_map", mm.detail());
        need(mm, "PR_SET_MM_MAP: " + mm.detail() + " (needed to restore the mm layout)", missing);

        boolean scanTracker = scan.available() && wpAsync.available() && pidfd.available();
        String tracker = scanTracker ? "pagemap-scan" : soft.available() ? "soft-dirty" : "none";
        r.put("dirty_tracker", tracker);
        if (tracker.equals("none")) {
            missing.add("dirty tracking: neither PAGEMAP_SCAN with uffd WP_ASYNC and pidfd_getfd (Linux 6.7+) nor soft-dirty"
                    + " is available; pre-copy would copy all memory every round");
        }

        r.put("thp", Features.thpMode());
        r.put("cpu_xsave_components", Features.xsaveComponents());
        r.put("cpu_xcr0", Features.xcr0() == -1 ? null : "0x" + Long.toHexString(Features.xcr0()));
        r.put("cpu_xsave_flags", cpuFlags());
        r.put("details", details);
        r.put("missing", missing);
        r.put("live_migration_ready", missing.isEmpty());

        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            out.println(Json.write(r));
        } else {
            printText(out, r, details);
        }
        out.flush();
        if (!missing.isEmpty()) {
            PrintWriter err = spec.commandLine().getErr();
            for (String m : missing) {
                err.println("missing: " + m);
            }
            err.flush();
            return ExitCodes.UNSUPPORTED;
        }
        return ExitCodes.OK;
    }

    private static void need(Features.Probe p, String line, List<String> missing) {
        if (!p.available()) {
            missing.add(line);
        }
    }

    private static List<String> cpuFlags() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("flags")) {
                    List<String> have = Arrays.asList(line.substring(line.indexOf(':') + 1).trim().split("\\s+"));
                    return XSAVE_CPU_FLAGS.stream().filter(have::contains).toList();
                }
            }
        } catch (IOException e) {
            // fall through: unknown
        }
        return List.of();
    }

    private static void printText(PrintWriter out, Map<String, Object> r, Map<String, String> details) {
        out.printf("%-22s %s (%s)%n", "kernel", r.get("kernel"), r.get("machine"));
        out.printf("%-22s %s%n", "page size", r.get("page_size"));
        for (var e : details.entrySet()) {
            boolean ok = Boolean.TRUE.equals(r.get(e.getKey()));
            out.printf("%-22s %-4s %s%n", e.getKey(), ok ? "yes" : "NO", e.getValue());
        }
        out.printf("%-22s %s%n", "uffd features", String.join(" ", cast(r.get("uffd_features"))));
        out.printf("%-22s %s%n", "uffd ioctls", String.join(" ", cast(r.get("uffd_ioctls"))));
        out.printf("%-22s %s%n", "dirty tracker", r.get("dirty_tracker"));
        out.printf("%-22s %s%n", "transparent hugepages", r.get("thp"));
        out.printf("%-22s %s (XCR0 %s)%n", "cpu xsave components", String.join(" ", cast(r.get("cpu_xsave_components"))),
                r.get("cpu_xcr0"));
        out.printf("%-22s %s%n", "cpu xsave flags", String.join(" ", cast(r.get("cpu_xsave_flags"))));
        out.printf("%-22s %s%n", "live migration", Boolean.TRUE.equals(r.get("live_migration_ready")) ? "ready" : "NOT ready");
    }

    @SuppressWarnings("unchecked")
    private static List<String> cast(Object o) {
        return (List<String>) o;
    }
}
