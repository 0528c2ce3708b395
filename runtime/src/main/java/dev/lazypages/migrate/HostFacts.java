package dev.lazypages.migrate;

import java.util.List;
import java.util.Map;

/**
 * What one side of a migration is, for the pre-checks: the machine (page size, XSAVE
 * components, kernel facilities, the sizes of the kernel-provided mappings) and, on the
 * source, every file the process has open or maps.
 *
 * @param pageSize      bytes per page
 * @param xcr0          XCR0 (XSAVE components enabled), -1 when unknown
 * @param features      kernel facility name → null when available, else why not
 * @param specialSizes  [vdso], [vvar], [vvar_vclock] → bytes (absent when the mapping is absent)
 * @param files         the process's open and mapped files (source); empty on the destination
 */
public record HostFacts(int pageSize, long xcr0, Map<String, String> features, Map<String, Long> specialSizes,
                        List<FileId> files) {
    public HostFacts {
        features = java.util.Collections.unmodifiableMap(new java.util.LinkedHashMap<>(features));
        specialSizes = Map.copyOf(specialSizes);
        files = List.copyOf(files);
    }

    public HostFacts withPageSize(int ps) {
        return new HostFacts(ps, xcr0, features, specialSizes, files);
    }

    public HostFacts withSpecialSizes(Map<String, Long> sizes) {
        return new HostFacts(pageSize, xcr0, features, sizes, files);
    }

    public HostFacts withXcr0(long x) {
        return new HostFacts(pageSize, x, features, specialSizes, files);
    }

    public HostFacts withFeatures(Map<String, String> f) {
        return new HostFacts(pageSize, xcr0, f, specialSizes, files);
    }

    /**
     * A file as the source process sees it.
     *
     * @param path  its path
     * @param dev   st_dev
     * @param inode st_ino
     * @param size  st_size; -1 when the source process uses a file that no longer has this name (deleted, replaced)
     * @param checkSize whether the size must match (mapped and read-only files; not a file the process writes)
     * @param why   how the process uses it ("fd 3", "mapped at 0x7f..")
     */
    public record FileId(String path, long dev, long inode, long size, boolean checkSize, String why) {
    }
}
