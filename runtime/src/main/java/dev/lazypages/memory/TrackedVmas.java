package dev.lazypages.memory;

import dev.lazypages.proc.ProcMaps;
import dev.lazypages.proc.Vma;
import java.util.ArrayList;
import java.util.List;

/**
 * The VMAs dirty trackers watch: writable and private (anonymous, heap, stack, and private file
 * mappings such as a library's .data/.bss), never kernel-provided ones ([vdso], [vvar]...).
 * Read-only memory cannot be dirtied; when it is made writable again (mprotect) it shows up as
 * memory that appeared and counts as dirty entirely. Shared mappings are refused by the dump.
 */
public final class TrackedVmas {
    private TrackedVmas() {
    }

    /** Whether a dirty tracker watches {@code v}. */
    public static boolean tracked(Vma v) {
        return v.write() && !v.shared() && !v.isKernelProvided();
    }

    /** The tracked VMAs among {@code vmas}, in their order. */
    public static List<Vma> select(List<Vma> vmas) {
        List<Vma> out = new ArrayList<>();
        for (Vma v : vmas) {
            if (tracked(v)) {
                out.add(v);
            }
        }
        return out;
    }

    /** The tracked VMAs of {@code pid} now, from /proc/PID/maps. */
    public static List<Vma> read(int pid) {
        return select(ProcMaps.read(pid));
    }
}
