package dev.lazypages.dump;

import dev.lazypages.image.proto.Vma;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * /proc/PID/smaps VMAs as image {@link Vma}s, and which of them a dump stores pages of
 * (docs/IMAGE.md, Memory): private anonymous memory and private file mappings are supported;
 * the kernel's own mappings ([vdso], [vvar], [vvar_vclock], [vsyscall]) are recorded without
 * pages; shared mappings and other special ones are refused, naming the VMA.
 */
final class VmaRecords {
    /** The smaps VmFlags that madvise(2) can set again at restore. */
    static final Set<String> MADVISE_FLAGS = Set.of("dd", "dc", "hg", "nh", "wf", "mg", "sr", "rr");

    private VmaRecords() {
    }

    /** Throws {@link IllegalArgumentException} naming the first VMA a dump cannot handle. */
    static void checkSupported(List<dev.lazypages.proc.Vma> vmas) {
        for (dev.lazypages.proc.Vma v : vmas) {
            if (v.isKernelProvided()) {
                continue;
            }
            if (v.shared()) {
                throw new IllegalArgumentException("VMA " + v + " is a shared mapping, which cannot be dumped");
            }
            if (v.kind() == dev.lazypages.proc.Vma.Kind.OTHER_SPECIAL) {
                throw new IllegalArgumentException("VMA " + v + " is a special mapping of unknown kind, which cannot be dumped");
            }
        }
    }

    /** Whether the pages of {@code v} are stored (kernel-provided mappings are not). */
    static boolean hasPages(dev.lazypages.proc.Vma v) {
        return !v.isKernelProvided() && !v.shared();
    }

    /** A private mapping of a file: only its anonymous (written) pages are stored. */
    static boolean privateFile(dev.lazypages.proc.Vma v) {
        return v.kind() == dev.lazypages.proc.Vma.Kind.FILE;
    }

    static Vma toImage(dev.lazypages.proc.Vma v) {
        Vma.Kind kind = kind(v);
        Vma.Builder b = Vma.newBuilder()
                .setStart(v.start())
                .setEnd(v.end())
                .setProt((v.read() ? Vma.Prot.PROT_READ_VALUE : 0) | (v.write() ? Vma.Prot.PROT_WRITE_VALUE : 0)
                        | (v.exec() ? Vma.Prot.PROT_EXEC_VALUE : 0))
                .setFlags(flags(v))
                .setPgoff(v.offset())
                .setDev(makedev(v.devMajor(), v.devMinor()))
                .setInode(v.inode())
                .setKind(kind);
        if (kind != Vma.Kind.ANON) {
            b.setPath(v.filePath());
        }
        if (v.smaps() != null) {
            b.addAllVmFlags(new TreeSet<>(v.smaps().vmFlags().stream().filter(MADVISE_FLAGS::contains).toList()));
        }
        return b.build();
    }

    private static int flags(dev.lazypages.proc.Vma v) {
        int f = v.shared() ? Vma.Flag.SHARED_VALUE : Vma.Flag.PRIVATE_VALUE;
        if (v.inode() == 0) {
            f |= Vma.Flag.ANONYMOUS_VALUE;
        }
        if (v.smaps() != null && v.smaps().hasFlag("gd")) {
            f |= Vma.Flag.GROWSDOWN_VALUE;
        }
        if (v.deleted()) {
            f |= Vma.Flag.DELETED_VALUE;
        }
        return f;
    }

    static Vma.Kind kind(dev.lazypages.proc.Vma v) {
        return switch (v.kind()) {
            case FILE -> v.shared() ? Vma.Kind.FILE_SHARED : Vma.Kind.FILE_PRIVATE;
            case ANONYMOUS -> Vma.Kind.ANON;
            case HEAP -> Vma.Kind.HEAP;
            case STACK -> Vma.Kind.STACK;
            case VDSO -> Vma.Kind.VDSO;
            case VVAR -> Vma.Kind.VVAR;
            case VVAR_VCLOCK -> Vma.Kind.VVAR_VCLOCK;
            case VSYSCALL -> Vma.Kind.VSYSCALL;
            case OTHER_SPECIAL -> Vma.Kind.OTHER;
        };
    }

    /** glibc's makedev(3): what stat(2) reports as st_dev. */
    static long makedev(long major, long minor) {
        return ((major & 0xfffff000L) << 32) | ((major & 0xfffL) << 8) | ((minor & 0xffffff00L) << 12) | (minor & 0xffL);
    }
}
