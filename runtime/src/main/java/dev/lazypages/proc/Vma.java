package dev.lazypages.proc;

import java.util.Set;

/**
 * One line of /proc/PID/maps, optionally with the fields of /proc/PID/smaps that the dump
 * needs ({@link Smaps}).
 *
 * @param start    first address (page aligned)
 * @param end      end address, exclusive
 * @param read     'r'
 * @param write    'w'
 * @param exec     'x'
 * @param shared   's' (MAP_SHARED) rather than 'p'
 * @param offset   file offset of {@code start}
 * @param devMajor device major of the backing file (0 for anonymous memory)
 * @param devMinor device minor
 * @param inode    inode of the backing file (0 for anonymous memory)
 * @param path     the file, a pseudo-name such as {@code [heap]}, {@code [stack]}, {@code [vdso]},
 *                 or empty for anonymous memory; " (deleted)" suffix kept as the kernel prints it
 * @param smaps    the smaps fields, or {@code null} when read from maps only
 */
public record Vma(long start, long end, boolean read, boolean write, boolean exec, boolean shared,
                  long offset, int devMajor, int devMinor, long inode, String path, Smaps smaps) {

    private static final String DELETED = " (deleted)";

    /**
     * The smaps fields that matter for a dump; sizes in bytes.
     *
     * @param rss           resident bytes
     * @param anonymous     bytes of anonymous (private, written or never file-backed) pages
     * @param anonHugePages bytes in transparent huge pages
     * @param swap          bytes swapped out
     * @param vmFlags       the two-letter VmFlags, e.g. {@code rd}, {@code wr}, {@code dd}, {@code ht}
     */
    public record Smaps(long rss, long anonymous, long anonHugePages, long swap, Set<String> vmFlags) {
        public Smaps {
            vmFlags = Set.copyOf(vmFlags);
        }

        public boolean hasFlag(String flag) {
            return vmFlags.contains(flag);
        }
    }

    /** What kind of memory the mapping is, from its path. */
    public enum Kind { FILE, ANONYMOUS, HEAP, STACK, VDSO, VVAR, VVAR_VCLOCK, VSYSCALL, OTHER_SPECIAL }

    public Vma {
        if (end <= start) {
            throw new IllegalArgumentException("VMA end 0x" + Long.toHexString(end) + " is not above start 0x" + Long.toHexString(start));
        }
    }

    /** The same VMA with smaps fields. */
    public Vma withSmaps(Smaps s) {
        return new Vma(start, end, read, write, exec, shared, offset, devMajor, devMinor, inode, path, s);
    }

    public long size() {
        return end - start;
    }

    public boolean contains(long address) {
        return address >= start && address < end;
    }

    /** {@code rw-p} and the like, as in maps. */
    public String perms() {
        return new String(new char[] {read ? 'r' : '-', write ? 'w' : '-', exec ? 'x' : '-', shared ? 's' : 'p'});
    }

    /** The backing file was unlinked (maps prints " (deleted)"). */
    public boolean deleted() {
        return inode != 0 && path.endsWith(DELETED);
    }

    /** The path without a " (deleted)" suffix. */
    public String filePath() {
        return deleted() ? path.substring(0, path.length() - DELETED.length()) : path;
    }

    public Kind kind() {
        return switch (path) {
            case "[heap]" -> Kind.HEAP;
            case "[stack]" -> Kind.STACK;
            case "[vdso]" -> Kind.VDSO;
            case "[vvar]" -> Kind.VVAR;
            case "[vvar_vclock]" -> Kind.VVAR_VCLOCK;
            case "[vsyscall]" -> Kind.VSYSCALL;
            case "" -> Kind.ANONYMOUS;
            default -> {
                if (inode != 0) {
                    yield Kind.FILE;
                }
                // [anon:name] (PR_SET_VMA_ANON_NAME) and [anon_shmem:name] are anonymous memory
                yield path.startsWith("[anon") ? Kind.ANONYMOUS : Kind.OTHER_SPECIAL;
            }
        };
    }

    /** Memory the kernel provides itself ([vdso], [vvar], [vvar_vclock], [vsyscall]): never dumped as pages. */
    public boolean isKernelProvided() {
        Kind k = kind();
        return k == Kind.VDSO || k == Kind.VVAR || k == Kind.VVAR_VCLOCK || k == Kind.VSYSCALL;
    }

    @Override
    public String toString() {
        return String.format("%x-%x %s %08x %02x:%02x %d %s", start, end, perms(), offset, devMajor, devMinor, inode, path);
    }
}
