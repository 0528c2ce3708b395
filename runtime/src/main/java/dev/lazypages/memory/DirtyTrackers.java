package dev.lazypages.memory;

import dev.lazypages.ffm.Features;
import java.util.ArrayList;
import java.util.List;

/**
 * Picks and makes a {@link DirtyTracker}. Modes: {@code auto}, {@code pagemap-scan},
 * {@code soft-dirty}, {@code none}.
 *
 * <p>{@code auto} takes pagemap-scan when PAGEMAP_SCAN, userfaultfd WP_ASYNC (with
 * WP_UNPOPULATED) and pidfd_getfd are all available ({@link Features} probes), else soft-dirty
 * when the soft-dirty probe passes (a page written after clear_refs shows bit 55), else none.
 * {@link #select} says which and why. Asking for a tracker explicitly where it cannot work
 * throws {@link UnsupportedOperationException} naming the missing facility.
 */
public final class DirtyTrackers {
    public static final String AUTO = "auto";
    public static final String PAGEMAP_SCAN = "pagemap-scan";
    public static final String SOFT_DIRTY = "soft-dirty";
    public static final String NONE = "none";
    /** Every mode {@link #create} accepts. */
    public static final List<String> MODES = List.of(AUTO, PAGEMAP_SCAN, SOFT_DIRTY, NONE);

    /** The tracker a mode resolves to, and why (for logs and {@code check}). */
    public record Selection(String name, String reason) {
    }

    /** The probes the choice rests on (a seam for tests). */
    record Probes(Features.Probe pagemapScan, Features.Probe uffdWpAsync, Features.Probe pidfdGetfd, Features.Probe softDirty) {
        static Probes live() {
            return new Probes(Features.pagemapScan(), Features.uffdWpAsync(), Features.pidfdGetfd(), Features.softDirty());
        }

        /** The unavailable ones among pagemap-scan's needs. */
        List<Features.Probe> missingForScan() {
            List<Features.Probe> out = new ArrayList<>();
            for (Features.Probe p : List.of(pagemapScan, uffdWpAsync, pidfdGetfd)) {
                if (!p.available()) {
                    out.add(p);
                }
            }
            return out;
        }
    }

    private DirtyTrackers() {
    }

    /** What {@code mode} resolves to on this machine; throws as {@link #create} does. */
    public static Selection select(String mode) {
        return select(mode, Probes.live());
    }

    static Selection select(String mode, Probes probes) {
        switch (mode) {
            case AUTO -> {
                List<Features.Probe> missing = probes.missingForScan();
                if (missing.isEmpty()) {
                    return new Selection(PAGEMAP_SCAN, "PAGEMAP_SCAN with a userfaultfd in WP_ASYNC mode (pidfd_getfd available)");
                }
                if (probes.softDirty().available()) {
                    return new Selection(SOFT_DIRTY, "soft-dirty bits; pagemap-scan unavailable: " + describe(missing));
                }
                return new Selection(NONE, "no dirty tracking, every round copies all memory: pagemap-scan unavailable ("
                        + describe(missing) + "); soft-dirty unavailable (" + probes.softDirty().detail() + ")");
            }
            case PAGEMAP_SCAN -> {
                List<Features.Probe> missing = probes.missingForScan();
                if (!missing.isEmpty()) {
                    throw new UnsupportedOperationException("dirty tracker pagemap-scan needs " + describe(missing));
                }
                return new Selection(PAGEMAP_SCAN, "asked for");
            }
            case SOFT_DIRTY -> {
                if (!probes.softDirty().available()) {
                    throw new UnsupportedOperationException("dirty tracker soft-dirty needs "
                            + describe(List.of(probes.softDirty())));
                }
                return new Selection(SOFT_DIRTY, "asked for");
            }
            case NONE -> {
                return new Selection(NONE, "asked for");
            }
            default -> throw new IllegalArgumentException("unknown dirty tracking mode '" + mode + "' (one of " + MODES + ")");
        }
    }

    private static String describe(List<Features.Probe> missing) {
        StringBuilder b = new StringBuilder();
        for (Features.Probe p : missing) {
            b.append(b.isEmpty() ? "" : "; ").append(p.name()).append(", which is not available: ").append(p.detail());
        }
        return b.toString();
    }

    /** A tracker of process {@code pid} for {@code mode} (not armed yet). */
    public static DirtyTracker create(String mode, int pid) {
        Selection s = select(mode);
        return switch (s.name()) {
            case PAGEMAP_SCAN -> new PagemapScanTracker(pid);
            case SOFT_DIRTY -> new SoftDirtyTracker(pid);
            default -> new NoneTracker(pid, s.reason());
        };
    }
}
