package dev.lazypages.dump;

import dev.lazypages.proc.ProcMaps;
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
 */
public final class FreezePrep {
    private final int pid;
    private final Map<Vma, Vma.Smaps> smaps = new HashMap<>();

    private FreezePrep(int pid, List<Vma> read) {
        this.pid = pid;
        for (Vma v : read) {
            smaps.put(v.withSmaps(null), v.smaps());
        }
    }

    /** Reads what can be read of {@code pid} while it runs. */
    public static FreezePrep read(int pid) {
        return new FreezePrep(pid, ProcMaps.readSmaps(pid));
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
