package dev.lazypages.dump;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The pre-copy loop: pre-dumps into {@code DIR/1}, {@code DIR/2}, ... (each the parent of the
 * next) with one {@link PreCopySession} and its tracker alive throughout, asking the
 * {@link ConvergencePolicy} after each round whether to go on, then the frozen final dump into
 * {@code DIR/final} with the last round as parent.
 */
public final class PreCopy {
    /** The final image's directory name under the pre-copy directory. */
    public static final String FINAL = "final";

    private PreCopy() {
    }

    /**
     * What the loop did.
     *
     * @param pid           the process
     * @param dir           the pre-copy directory
     * @param tracker       the tracker used
     * @param trackerReason why that tracker
     * @param rounds        the pre-dump rounds
     * @param decision      why the loop stopped
     * @param finalDump     the final dump
     * @param totalNanos    everything, seizing to the end of the final dump
     */
    public record Report(int pid, Path dir, String tracker, String trackerReason, List<ConvergencePolicy.Round> rounds,
                         ConvergencePolicy.Decision decision, DumpResult finalDump, long totalNanos) {
        public long totalFrozenNanos() {
            return rounds.stream().mapToLong(ConvergencePolicy.Round::frozenNanos).sum() + finalDump.frozenNanos();
        }

        public long totalPagesSent() {
            return rounds.stream().mapToLong(ConvergencePolicy.Round::pagesSent).sum() + finalDump.pagesStored();
        }

        public Map<String, Object> toMap() {
            long ps = finalDump.pageSize();
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("pid", pid);
            m.put("images_dir", dir.toString());
            m.put("tracker", tracker);
            m.put("tracker_reason", trackerReason);
            m.put("stop_reason", decision.reason());
            m.put("stop_detail", decision.detail());
            List<Object> rs = new ArrayList<>();
            for (ConvergencePolicy.Round r : rounds) {
                rs.add(r.toMap(ps));
            }
            m.put("rounds", rs);
            Map<String, Object> f = new LinkedHashMap<>();
            f.put("images_dir", finalDump.imagesDir().toString());
            f.put("pages", finalDump.pagesStored());
            f.put("pages_in_parent", finalDump.pagesInParent());
            f.put("mib", ConvergencePolicy.round1(finalDump.bytesStored() / 1048576.0));
            f.put("frozen_ms", ConvergencePolicy.round1(finalDump.frozenNanos() / 1e6));
            f.put("predicted_ms", ConvergencePolicy.round1(decision.predictedMillis()));
            m.put("final", f);
            m.put("total_pages", totalPagesSent());
            m.put("total_mib", ConvergencePolicy.round1(totalPagesSent() * ps / 1048576.0));
            m.put("total_frozen_ms", ConvergencePolicy.round1(totalFrozenNanos() / 1e6));
            m.put("total_ms", ConvergencePolicy.round1(totalNanos / 1e6));
            return m;
        }

        /** The closing report, several lines. */
        public String text() {
            long ps = finalDump.pageSize();
            StringBuilder b = new StringBuilder();
            b.append(String.format(Locale.ROOT, "pre-copy of pid %d into %s with %s: stopped after %d round(s): %s (%s)%n",
                    pid, dir, tracker, rounds.size(), decision.reason(), decision.detail()));
            b.append(String.format(Locale.ROOT, "%6s %10s %10s %9s %9s %12s %10s%n", "round", "pages", "in-parent", "MiB", "ms",
                    "dirty MiB/s", "frozen ms"));
            for (ConvergencePolicy.Round r : rounds) {
                b.append(String.format(Locale.ROOT, "%6d %10d %10d %9.1f %9.1f %12.1f %10.2f%n", r.number(), r.pagesSent(),
                        r.pagesInParent(), r.bytesSent() / 1048576.0, r.copyNanos() / 1e6, r.dirtyRate() * ps / 1048576.0,
                        r.frozenNanos() / 1e6));
            }
            b.append(String.format(Locale.ROOT, "%6s %10d %10d %9.1f %9s %12s %10.2f%n", "final", finalDump.pagesStored(),
                    finalDump.pagesInParent(), finalDump.bytesStored() / 1048576.0, "-", "-", finalDump.frozenNanos() / 1e6));
            b.append(String.format(Locale.ROOT, "total: %d pages (%.1f MiB) copied, frozen %.1f ms, %.0f ms in all",
                    totalPagesSent(), totalPagesSent() * ps / 1048576.0, totalFrozenNanos() / 1e6, totalNanos / 1e6));
            return b.toString();
        }
    }

    /**
     * Runs the loop on {@code pid}.
     *
     * @param dir       the pre-copy directory (rounds and final go below it)
     * @param limits    the convergence policy's limits
     * @param options   the final dump's options (its images dir is replaced by {@code dir/final});
     *                  its progress gets one line per step, its trackMem picks the tracker
     * @param perRound  receives each round as it ends (for a terminal)
     */
    public static Report run(int pid, Path dir, ConvergencePolicy.Limits limits, DumpOptions options,
                             Consumer<PreDumpResult> perRound) {
        long t0 = System.nanoTime();
        Consumer<String> progress = options.progress();
        Dumper.checkTarget(pid, dir);
        try (PreCopySession s = PreCopySession.start(pid, options.trackMem(), progress)) {
            if (s.copiesEverything()) {
                progress.accept("tracker none (" + s.trackerReason() + "): every round copies all memory");
            }
            ConvergencePolicy policy = new ConvergencePolicy(limits, s.pageSize());
            ConvergencePolicy.Decision d;
            int n = 1;
            while (true) {
                PreDumpResult r = s.preDump(dir.resolve(Integer.toString(n)));
                policy.recordRound(r.toRound());
                if (perRound != null) {
                    perRound.accept(r);
                }
                PreCopySession.Collect c = s.collect();
                d = policy.decide(c.pendingPages());
                progress.accept("round " + n + ": " + d.reason() + ": " + d.detail());
                if (d.stop()) {
                    break;
                }
                n++;
            }
            DumpResult f = s.finalDump(options.withImagesDir(dir.resolve(FINAL)).withPrevImagesDir(null));
            return new Report(pid, dir, s.tracker(), s.trackerReason(), policy.rounds(), d, f, System.nanoTime() - t0);
        }
    }
}
