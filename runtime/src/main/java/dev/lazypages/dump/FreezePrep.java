package dev.lazypages.dump;

import dev.lazypages.proc.ProcMaps;
import dev.lazypages.proc.SyscallGadget;
import dev.lazypages.proc.Vma;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * What a freeze can read before it starts, so that the frozen window does not pay for it:
 * /proc/PID/smaps, whose every read walks the page tables of every VMA to count resident pages
 * (tens of ms at 1 GiB, the only thing a dump takes from it being the VmFlags). Read while the
 * process runs, just before the freeze; the frozen dump then reads /proc/PID/maps (no page
 * walk) and takes each VMA's VmFlags from here when its maps line is unchanged. A VMA that
 * appeared or changed in between makes it read smaps after all (correct, only slower). Not
 * seen: VmFlags changed by madvise(2) between this read and the freeze on a VMA whose maps
 * line stayed the same (madvise hints such as MADV_HUGEPAGE, MADV_DONTDUMP, MADV_DONTFORK in
 * the milliseconds before the freeze).
 *
 * <p>Also found before the freeze: the {@code syscall} instruction the frozen dump injects
 * through (a scan of libc's text), used when its mapping is unchanged.
 */
public final class FreezePrep {
    private final int pid;
    private final Map<Vma, Vma.Smaps> smaps = new HashMap<>();
    /** A {@code syscall} instruction in the process's libc text (found by reading it), or 0. */
    private final long gadget;

    private FreezePrep(int pid, List<Vma> read, long gadget) {
        this.pid = pid;
        this.gadget = gadget;
        for (Vma v : read) {
            smaps.put(v.withSmaps(null), v.smaps());
        }
    }

    /** Reads what can be read of {@code pid} while it runs. */
    public static FreezePrep read(int pid) {
        List<Vma> vmas = ProcMaps.readSmaps(pid);
        long gadget;
        try {
            gadget = SyscallGadget.find(pid);
        } catch (RuntimeException e) {
            gadget = 0; // the frozen dump looks again and names what is wrong
        }
        return new FreezePrep(pid, vmas, gadget);
    }

    /**
     * The syscall instruction found before the freeze, if it is still where it was (an
     * executable mapping, unchanged since), or 0.
     */
    long gadget(List<Vma> now) {
        if (gadget == 0) {
            return 0;
        }
        for (Vma v : now) {
            if (v.contains(gadget)) {
                return v.exec() && smaps.containsKey(v.withSmaps(null)) ? gadget : 0;
            }
        }
        return 0;
    }

    public int pid() {
        return pid;
    }

    /** The VMAs now, with smaps fields: from maps and this read, or from smaps when a VMA changed. */
    List<Vma> vmasNow() {
        List<Vma> now = ProcMaps.read(pid);
        List<Vma> out = new ArrayList<>(now.size());
        for (Vma v : now) {
            Vma.Smaps s = smaps.get(v);
            if (s == null) {
                return ProcMaps.readSmaps(pid);
            }
            out.add(v.withSmaps(s));
        }
        return out;
    }
}
