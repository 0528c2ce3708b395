package dev.lazypages.migrate;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.proc.OpenFile;
import dev.lazypages.proc.ProcFds;
import dev.lazypages.proc.ProcMaps;
import dev.lazypages.proc.Vma;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * The checks made before a migration touches the process: the source gathers its
 * {@link HostFacts} (of the machine and of the process, without seizing it), the destination
 * compares them with its own and stats every file; any difference refuses the migration with
 * a message naming what differs, and the source process is left as it was.
 */
public final class Prechecks {
    /**
     * The kernel-provided mappings whose sizes must match (the restorer moves them into place);
     * [vvar_vclock], where the kernel has it, counts as part of [vvar].
     */
    static final List<String> SPECIAL = List.of("[vdso]", "[vvar]");

    private Prechecks() {
    }

    /** Facilities the source needs in {@code mode}: ptrace always (dirty tracking falls back to none when missing). */
    static Map<String, String> sourceFeatures(MigrationMode mode) {
        Map<String, String> m = new LinkedHashMap<>();
        put(m, Features.ptrace());
        return m;
    }

    /** Facilities the destination needs in {@code mode}: ptrace, PR_SET_MM_MAP, and for lazy modes userfaultfd and pidfd_getfd. */
    static List<String> destinationFeatures(MigrationMode mode) {
        List<String> m = new ArrayList<>(List.of("ptrace", "pr_set_mm_map"));
        if (mode.lazy()) {
            m.addAll(List.of("userfaultfd", "pidfd_getfd"));
        }
        return m;
    }

    private static void put(Map<String, String> m, Features.Probe p) {
        m.put(p.name(), p.available() ? null : p.detail());
    }

    /** The source's facts about the machine and process {@code pid}, read from /proc without seizing it. */
    public static HostFacts ofSource(int pid, MigrationMode mode) {
        dev.lazypages.proc.ProcessOwner.requireMaySeize(pid); // before /proc/PID/maps: say why, not EACCES
        List<Vma> vmas = ProcMaps.read(pid);
        return new HostFacts((int) Posix.pageSize(), Features.xcr0(), sourceFeatures(mode), specialSizes(vmas),
                files(pid, vmas));
    }

    /** The names of the facilities the destination needs in {@code mode} (sent in the pre-check request). */
    public static List<String> neededAtDestination(MigrationMode mode) {
        return destinationFeatures(mode);
    }

    /** Why the source itself cannot migrate in this mode (facilities it lacks); empty when it can. */
    public static List<String> sourceProblems(HostFacts src, MigrationMode mode) {
        List<String> out = new ArrayList<>();
        src.features().forEach((name, why) -> {
            if (why != null) {
                out.add("source lacks " + name + " (needed for " + mode + "): " + why);
            }
        });
        return out;
    }

    /** The Features probe called {@code name}; an unknown name counts as missing. */
    static Features.Probe probe(String name) {
        return switch (name) {
            case "ptrace" -> Features.ptrace();
            case "pr_set_mm_map" -> Features.prSetMmMap();
            case "userfaultfd" -> Features.userfaultfd();
            case "pidfd_getfd" -> Features.pidfdGetfd();
            case "pagemap_scan" -> Features.pagemapScan();
            case "uffd_wp_async" -> Features.uffdWpAsync();
            case "soft_dirty" -> Features.softDirty();
            case "/dev/userfaultfd" -> Features.userfaultfdDevice();
            default -> new Features.Probe(name, false, "this destination does not know the facility '" + name + "'");
        };
    }

    /** The destination's own facts ({@code /proc/self/maps} for the special mappings), probing the facilities {@code needed}. */
    public static HostFacts ofDestination(List<String> needed) {
        List<Vma> vmas = ProcMaps.parseMaps(readSelfMaps(), "/proc/self/maps");
        Map<String, String> f = new LinkedHashMap<>();
        for (String n : needed) {
            put(f, n, probe(n));
        }
        return new HostFacts((int) Posix.pageSize(), Features.xcr0(), f, specialSizes(vmas), List.of());
    }

    private static void put(Map<String, String> m, String name, Features.Probe p) {
        m.put(name, p.available() ? null : p.detail());
    }

    private static String readSelfMaps() {
        try {
            return Files.readString(Path.of("/proc/self/maps"));
        } catch (IOException e) {
            throw new IllegalStateException("cannot read /proc/self/maps: " + e.getMessage(), e);
        }
    }

    static Map<String, Long> specialSizes(List<Vma> vmas) {
        Map<String, Long> m = new LinkedHashMap<>();
        for (Vma v : vmas) {
            if (SPECIAL.contains(v.path())) {
                m.merge(v.path(), v.size(), Long::sum);
            } else if (v.path().equals("[vvar_vclock]")) {
                m.merge("[vvar]", v.size(), Long::sum);
            }
        }
        return m;
    }

    /** Every regular file {@code pid} has open or maps (deleted ones included: the destination cannot have them). */
    static List<HostFacts.FileId> files(int pid, List<Vma> vmas) {
        List<HostFacts.FileId> out = new ArrayList<>();
        Set<String> seen = new LinkedHashSet<>();
        for (Vma v : vmas) {
            if (v.kind() != Vma.Kind.FILE || !seen.add(v.path())) {
                continue;
            }
            String why = String.format(Locale.ROOT, "mapped at 0x%x", v.start());
            HostFacts.FileId id = v.deleted() ? null : stat(Path.of(v.filePath()), why);
            if (id == null || id.inode() != v.inode()) {
                // deleted or replaced since it was mapped: what the process maps exists nowhere by that name
                id = new HostFacts.FileId(v.filePath(), makedev(v.devMajor(), v.devMinor()), v.inode(), -1, true, why
                        + (v.deleted() ? " (deleted at the source)" : " (replaced at the source)"));
            }
            out.add(id);
        }
        for (OpenFile f : ProcFds.list(pid)) {
            if (f.type() != OpenFile.Type.REGULAR || !seen.add(f.target())) {
                continue;
            }
            Path link = Path.of("/proc", Integer.toString(pid), "fd", Integer.toString(f.fd()));
            HostFacts.FileId id = stat(link, "fd " + f.fd());
            if (id != null) {
                boolean deleted = f.target().endsWith(" (deleted)");
                out.add(new HostFacts.FileId(f.target(), id.dev(), id.inode(), deleted ? -1 : id.size(), f.accessMode() == 0,
                        id.why() + (deleted ? " (deleted at the source)" : "")));
            }
        }
        return out;
    }

    /** glibc's makedev. */
    static long makedev(long major, long minor) {
        return ((major & 0xfffff000L) << 32) | ((major & 0xfffL) << 8) | ((minor & 0xffffff00L) << 12) | (minor & 0xffL);
    }

    /** stat(2) of {@code p} (following links), or null when it does not exist. */
    static HostFacts.FileId stat(Path p, String why) {
        try {
            Map<String, Object> a = Files.readAttributes(p, "unix:dev,ino,size");
            return new HostFacts.FileId(p.toString(), (Long) a.get("dev"), (Long) a.get("ino"), (Long) a.get("size"), true, why);
        } catch (IOException | UnsupportedOperationException e) {
            return null;
        }
    }

    /** The destination's file probe: stat of the path, null when missing. */
    public static Function<String, HostFacts.FileId> localFiles() {
        return path -> path.endsWith(" (deleted)") ? null : stat(Path.of(path), "");
    }

    /**
     * What differs between the source's facts and the destination's, one sentence each; empty
     * when the migration may go ahead.
     *
     * @param files how the destination finds a file of the source (null: missing)
     */
    public static List<String> differences(HostFacts src, HostFacts dst, MigrationMode mode,
                                           Function<String, HostFacts.FileId> files) {
        List<String> out = new ArrayList<>();
        if (src.pageSize() != dst.pageSize()) {
            out.add("page size differs: source " + src.pageSize() + " bytes, destination " + dst.pageSize());
        }
        if (src.xcr0() != -1 && dst.xcr0() != -1 && (src.xcr0() & ~dst.xcr0()) != 0) {
            out.add(String.format(Locale.ROOT, "CPU state components differ: source XCR0 0x%x has 0x%x that destination XCR0 0x%x lacks",
                    src.xcr0(), src.xcr0() & ~dst.xcr0(), dst.xcr0()));
        }
        dst.features().forEach((name, why) -> {
            if (why != null) {
                out.add("destination lacks " + name + " (needed for " + mode + "): " + why);
            }
        });
        for (String k : SPECIAL) {
            Long s = src.specialSizes().get(k);
            Long d = dst.specialSizes().get(k);
            if (s != null && !s.equals(d)) {
                out.add(k + " size differs: source " + s + " bytes, destination " + (d == null ? "has none" : d + " bytes"));
            }
        }
        for (HostFacts.FileId f : src.files()) {
            HostFacts.FileId d = f.size() < 0 ? null : files.apply(f.path());
            if (d == null) {
                out.add("file " + f.path() + " (" + f.why() + ") does not exist at the destination");
            } else if (d.dev() != f.dev() || d.inode() != f.inode() || (f.checkSize() && d.size() != f.size())) {
                out.add(String.format(Locale.ROOT, "file %s (%s) differs: source dev %d inode %d size %d, destination dev %d inode %d size %d",
                        f.path(), f.why(), f.dev(), f.inode(), f.size(), d.dev(), d.inode(), d.size()));
            }
        }
        return out;
    }
}
