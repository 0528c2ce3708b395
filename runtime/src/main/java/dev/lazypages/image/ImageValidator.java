package dev.lazypages.image;

import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.PageMap;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.ProcessTree;
import dev.lazypages.image.proto.ThreadState;
import dev.lazypages.image.proto.Vma;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * The consistency checks of an image's messages, shared by the reader (on open) and the writer
 * (before it publishes). Each failure is an {@link ImageFormatException} naming the file and
 * the first problem. Addresses are compared unsigned: {@code [vsyscall]} lies above 2^63.
 */
final class ImageValidator {
    /** user_regs_struct on x86-64, in 8-byte words. */
    static final int USER_REGS_WORDS = 27;
    /** The FXSAVE area. */
    static final int FXSAVE_BYTES = 512;
    /** Largest PRESENT run a reader accepts: it is read whole to check its CRC. */
    static final long MAX_RUN_BYTES = 64L << 20;
    /** Most pages in any run (ZERO, IN_PARENT and REMOTE runs are not stored, but readers count them in an int). */
    static final long MAX_RUN_PAGES = Integer.MAX_VALUE;

    private ImageValidator() {
    }

    static void inventory(Path file, Inventory inv) {
        if (inv.getFormatVersion() != ImageFileDescriptor.FORMAT_VERSION) {
            throw new ImageFormatException(file, "unsupported format version " + Integer.toUnsignedString(inv.getFormatVersion())
                    + "; this build reads version " + ImageFileDescriptor.FORMAT_VERSION);
        }
        if (!ImageFile.validPageSize(Integer.toUnsignedLong(inv.getPageSize()))) {
            throw new ImageFormatException(file, "invalid page size " + Integer.toUnsignedString(inv.getPageSize())
                    + " (a power of two from 4096 to 1 MiB)");
        }
        if (inv.getKind() != Inventory.Kind.FULL && inv.getKind() != Inventory.Kind.PRE_DUMP) {
            throw new ImageFormatException(file, "unknown image kind " + inv.getKindValue());
        }
    }

    /** Checks every process: unique pids, VMA lists sorted, aligned and disjoint, thread register sizes. */
    static Map<Integer, Process> processes(Path file, ProcessTree tree, long pageSize) {
        Map<Integer, Process> byPid = new HashMap<>();
        for (Process p : tree.getProcessesList()) {
            if (p.getPid() <= 0) {
                throw new ImageFormatException(file, "process with invalid pid " + p.getPid());
            }
            if (byPid.put(p.getPid(), p) != null) {
                throw new ImageFormatException(file, "pid " + p.getPid() + " appears twice");
            }
            vmas(file, p, pageSize);
            for (ThreadState t : p.getThreadsList()) {
                threadState(file, p.getPid(), t);
            }
        }
        return byPid;
    }

    private static void vmas(Path file, Process p, long pageSize) {
        List<Vma> vmas = p.getVmasList();
        for (int i = 0; i < vmas.size(); i++) {
            Vma v = vmas.get(i);
            String what = "pid " + p.getPid() + " VMA " + i + " " + range(v.getStart(), v.getEnd());
            if (Long.compareUnsigned(v.getStart(), v.getEnd()) >= 0) {
                throw new ImageFormatException(file, what + ": start is not below end");
            }
            if (!aligned(v.getStart(), pageSize) || !aligned(v.getEnd(), pageSize)) {
                throw new ImageFormatException(file, what + ": not aligned to the page size " + pageSize);
            }
            if (i > 0) {
                Vma prev = vmas.get(i - 1);
                if (Long.compareUnsigned(v.getStart(), prev.getStart()) < 0) {
                    throw new ImageFormatException(file, what + ": VMA list not sorted (VMA " + (i - 1) + " starts at "
                            + Hex.of(prev.getStart()) + ")");
                }
                if (Long.compareUnsigned(v.getStart(), prev.getEnd()) < 0) {
                    throw new ImageFormatException(file, what + ": overlaps VMA " + (i - 1) + " "
                            + range(prev.getStart(), prev.getEnd()));
                }
            }
        }
    }

    private static void threadState(Path file, int pid, ThreadState t) {
        String what = "pid " + pid + " thread " + t.getTid();
        if (t.getRegsCount() != 0 && t.getRegsCount() != USER_REGS_WORDS) {
            throw new ImageFormatException(file, what + ": " + t.getRegsCount() + " register words, expected "
                    + USER_REGS_WORDS);
        }
        if (!t.getFpregs().isEmpty() && t.getFpregs().size() != FXSAVE_BYTES) {
            throw new ImageFormatException(file, what + ": fpregs of " + t.getFpregs().size() + " bytes, expected "
                    + FXSAVE_BYTES);
        }
    }

    /**
     * Checks the page map: each entry aligned, of one kind, in bounds of pages.img, inside the
     * VMAs of a known process; entries sorted by (pid, vaddr) and disjoint.
     *
     * @param pagesInFile pages stored in pages.img
     * @param hasParent   whether IN_PARENT entries can be resolved
     */
    static void pageMap(Path file, PageMap map, long pageSize, long pagesInFile, Map<Integer, Process> processes,
                        boolean hasParent) {
        List<PageMapEntry> entries = map.getEntriesList();
        for (int i = 0; i < entries.size(); i++) {
            PageMapEntry e = entries.get(i);
            long nr = Integer.toUnsignedLong(e.getNrPages());
            long end = e.getVaddr() + nr * pageSize;
            int at = i;
            // built only for an error: formatting it for every entry of a large page map costs more than the checks
            Supplier<String> what = () -> "entry " + at + " (pid " + e.getPid() + ", " + range(e.getVaddr(), end) + ", " + nr + " pages)";
            if (nr == 0) {
                throw new ImageFormatException(file, what.get() + ": empty run");
            }
            if (nr > MAX_RUN_PAGES) { // readers count pages in an int (found by ImageFuzzTest)
                throw new ImageFormatException(file, what.get() + ": run of more than " + MAX_RUN_PAGES + " pages");
            }
            if (!aligned(e.getVaddr(), pageSize)) {
                throw new ImageFormatException(file, what.get() + ": address not aligned to the page size " + pageSize);
            }
            if (end != 0 && Long.compareUnsigned(end, e.getVaddr()) <= 0) {
                throw new ImageFormatException(file, what.get() + ": run wraps around the address space");
            }
            int kind = e.getFlags() & PageFlags.KINDS;
            if (Integer.bitCount(kind) != 1 || (e.getFlags() & ~PageFlags.KINDS) != 0) {
                throw new ImageFormatException(file, what.get() + ": flags " + PageFlags.describe(e.getFlags())
                        + ", expected exactly one of PRESENT, IN_PARENT, ZERO, REMOTE");
            }
            if (kind == PageFlags.PRESENT) {
                present(file, what, e, nr, pageSize, pagesInFile);
            } else if (kind == PageFlags.IN_PARENT && !hasParent) {
                throw new ImageFormatException(file, what.get() + ": IN_PARENT but the image has no parent");
            }
            if (i > 0) {
                order(file, what, i, entries.get(i - 1), e, pageSize);
            }
            Process p = processes.get(e.getPid());
            if (p == null) {
                throw new ImageFormatException(file, what.get() + ": no process " + e.getPid() + " in processes.img");
            }
            if (!insideVmas(p.getVmasList(), e.getVaddr(), end)) {
                throw new ImageFormatException(file, what.get() + ": not inside any VMA of pid " + e.getPid());
            }
        }
    }

    private static void present(Path file, Supplier<String> what, PageMapEntry e, long nr, long pageSize, long pagesInFile) {
        if (nr * pageSize > MAX_RUN_BYTES) {
            throw new ImageFormatException(file, what.get() + ": PRESENT run of " + nr * pageSize + " bytes exceeds the limit of "
                    + MAX_RUN_BYTES);
        }
        long first = e.getPageOffset();
        if (first < 0 || first > pagesInFile || nr > pagesInFile - first) {
            throw new ImageFormatException(file, what.get() + ": pages " + Long.toUnsignedString(first) + ".."
                    + Long.toUnsignedString(first + nr - 1) + " lie past the end of pages.img (" + pagesInFile + " pages)");
        }
    }

    private static void order(Path file, Supplier<String> what, int i, PageMapEntry prev, PageMapEntry e, long pageSize) {
        long prevEnd = prev.getVaddr() + Integer.toUnsignedLong(prev.getNrPages()) * pageSize;
        int byPid = Integer.compare(prev.getPid(), e.getPid());
        if (byPid > 0 || byPid == 0 && Long.compareUnsigned(e.getVaddr(), prev.getVaddr()) < 0) {
            throw new ImageFormatException(file, what.get() + ": entries not sorted by pid and address (entry " + (i - 1)
                    + " is pid " + prev.getPid() + " at " + Hex.of(prev.getVaddr()) + ")");
        }
        if (byPid == 0 && Long.compareUnsigned(e.getVaddr(), prevEnd) < 0) {
            throw new ImageFormatException(file, what.get() + ": overlaps entry " + (i - 1) + " "
                    + range(prev.getVaddr(), prevEnd));
        }
    }

    /** Whether [start, end) is covered by VMAs (adjacent VMAs may share it); {@code vmas} sorted. */
    static boolean insideVmas(List<Vma> vmas, long start, long end) {
        int lo = 0;
        int hi = vmas.size() - 1;
        int found = -1;
        while (lo <= hi) { // last VMA with start <= address
            int mid = (lo + hi) >>> 1;
            if (Long.compareUnsigned(vmas.get(mid).getStart(), start) <= 0) {
                found = mid;
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        long covered = start;
        for (int i = found; i >= 0 && i < vmas.size(); i++) {
            Vma v = vmas.get(i);
            if (Long.compareUnsigned(v.getStart(), covered) > 0 || Long.compareUnsigned(v.getEnd(), covered) <= 0) {
                return false;
            }
            covered = v.getEnd();
            if (Long.compareUnsigned(covered, end) >= 0 || covered == 0) {
                return true;
            }
        }
        return false;
    }

    static boolean aligned(long address, long pageSize) {
        return (address & (pageSize - 1)) == 0;
    }

    static String range(long start, long end) {
        return Hex.of(start) + "-" + Hex.of(end);
    }
}
