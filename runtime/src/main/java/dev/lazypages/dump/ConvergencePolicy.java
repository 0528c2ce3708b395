package dev.lazypages.dump;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;

/**
 * When the pre-copy loop stops copying memory while the process runs and freezes it for the
 * final dump. Pure: it is fed one {@link Round} per pre-dump and, before each further round,
 * the number of pages dirtied during the last one ({@link #decide}); it keeps every record.
 *
 * <p>Rules, checked in this order after every round:
 * <ol>
 *   <li>{@code goal-reached} (LXD's rule): at least {@link Limits#goalPercent} percent of the
 *       pages sent in the last round stayed unchanged while it ran:
 *       {@code 1 - dirty_this_round / sent_last_round >= goal}.</li>
 *   <li>{@code downtime-limit} (QEMU's rule, only when {@link Limits#downtimeLimitMillis} is
 *       positive): the pages left to send in a frozen final round, at the bandwidth measured in
 *       the last round, take at most that long: {@code dirty_bytes / bandwidth <= limit}.</li>
 *   <li>{@code max-iterations}: {@link Limits#maxIterations} pre-dumps are done.</li>
 *   <li>{@code no-progress}: the dirty set did not shrink below {@link #STALL_SHRINK} of the
 *       previous one for {@link #STALL_ROUNDS} rounds in a row (the process dirties memory at
 *       least as fast as it is copied: more rounds only cost time).</li>
 * </ol>
 * Otherwise {@code continue}.
 */
public final class ConvergencePolicy {
    /** Stop reasons, as reports print them. */
    public static final String GOAL_REACHED = "goal-reached";
    public static final String DOWNTIME_LIMIT = "downtime-limit";
    public static final String MAX_ITERATIONS = "max-iterations";
    public static final String NO_PROGRESS = "no-progress";
    public static final String CONTINUE = "continue";
    /** A round whose dirty set is not below this share of the previous round's counts as a stall. */
    static final double STALL_SHRINK = 0.95;
    /** Stalled rounds in a row that stop the loop. */
    static final int STALL_ROUNDS = 2;

    /**
     * The stopping rules' parameters.
     *
     * @param maxIterations       pre-dump rounds at most (at least 1)
     * @param goalPercent         share of last round's pages that must stay clean, 0..100
     * @param downtimeLimitMillis predicted final-round time that is good enough; 0 turns the rule off
     */
    public record Limits(int maxIterations, double goalPercent, long downtimeLimitMillis) {
        public static final int DEFAULT_MAX_ITERATIONS = 10;
        public static final double DEFAULT_GOAL_PERCENT = 70;

        public Limits {
            if (maxIterations < 1) {
                throw new IllegalArgumentException("--max-iterations must be at least 1, not " + maxIterations);
            }
            if (!(goalPercent >= 0 && goalPercent <= 100)) {
                throw new IllegalArgumentException("--goal must be a percentage from 0 to 100, not " + goalPercent);
            }
            if (downtimeLimitMillis < 0) {
                throw new IllegalArgumentException("--downtime-limit-ms must not be negative, not " + downtimeLimitMillis);
            }
        }

        public static Limits defaults() {
            return new Limits(DEFAULT_MAX_ITERATIONS, DEFAULT_GOAL_PERCENT, 0);
        }
    }

    /**
     * What one pre-dump round did.
     *
     * @param number       1, 2, ...
     * @param pagesSent    pages copied (stored PRESENT)
     * @param pagesInParent pages left to the parent image (unchanged since it)
     * @param bytesSent    bytes of page data copied
     * @param copyNanos    time spent finding and copying pages (process running)
     * @param frozenNanos  time the process was stopped in this round (arming the tracker), else 0
     * @param scanNanos    time the tracker spent collecting the dirty set this round was based on
     * @param dirtyPages   pages the tracker reported dirty when this round started (for round 1: every page)
     * @param dirtyRate    pages per second dirtied before this round (0 for round 1)
     */
    public record Round(int number, long pagesSent, long pagesInParent, long bytesSent, long copyNanos, long frozenNanos,
                        long scanNanos, long dirtyPages, double dirtyRate) {
        /** Bytes per second while copying; 0 when nothing was timed. */
        public double bandwidth() {
            return copyNanos > 0 ? bytesSent * 1e9 / copyNanos : 0;
        }

        public Map<String, Object> toMap(long pageSize) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("round", number);
            m.put("pages", pagesSent);
            m.put("pages_in_parent", pagesInParent);
            m.put("bytes", bytesSent);
            m.put("mib", round1(bytesSent / 1048576.0));
            m.put("copy_ms", round1(copyNanos / 1e6));
            m.put("frozen_ms", round1(frozenNanos / 1e6));
            m.put("scan_ms", round1(scanNanos / 1e6));
            m.put("dirty_pages", dirtyPages);
            m.put("dirty_pages_per_sec", Math.round(dirtyRate));
            m.put("dirty_mib_per_sec", round1(dirtyRate * pageSize / 1048576.0));
            m.put("bandwidth_mib_per_sec", round1(bandwidth() / 1048576.0));
            return m;
        }
    }

    /**
     * The policy's answer.
     *
     * @param stop             whether to freeze now
     * @param reason           one of the reason constants ({@link #CONTINUE} when not stopping)
     * @param detail           one line with the numbers behind it
     * @param predictedMillis  the final round's predicted duration at the measured bandwidth (-1 unknown)
     */
    public record Decision(boolean stop, String reason, String detail, double predictedMillis) {
    }

    private final Limits limits;
    private final long pageSize;
    private final List<Round> rounds = new ArrayList<>();
    private int stalled;
    private Decision last;

    public ConvergencePolicy(Limits limits, long pageSize) {
        this.limits = Objects.requireNonNull(limits, "limits");
        this.pageSize = pageSize;
    }

    public Limits limits() {
        return limits;
    }

    /** Records a finished pre-dump round. */
    public void recordRound(Round r) {
        rounds.add(r);
    }

    /** The rounds recorded so far, oldest first. */
    public List<Round> rounds() {
        return List.copyOf(rounds);
    }

    /** The last decision taken, or {@code null}. */
    public Decision lastDecision() {
        return last;
    }

    /**
     * Whether to stop, given that {@code dirtyPages} pages were dirtied since the last round
     * started (what a further round, or the final dump, has to copy). Call after
     * {@link #recordRound}; with no round recorded it always says continue.
     */
    public Decision decide(long dirtyPages) {
        last = decide0(dirtyPages);
        return last;
    }

    private Decision decide0(long dirtyPages) {
        if (rounds.isEmpty()) {
            return new Decision(false, CONTINUE, "no round yet", -1);
        }
        Round r = rounds.getLast();
        double bw = r.bandwidth();
        double predicted = bw > 0 ? dirtyPages * pageSize * 1000.0 / bw : (dirtyPages == 0 ? 0 : -1);
        long sent = r.pagesSent();
        double clean = sent > 0 ? 1.0 - (double) dirtyPages / sent : (dirtyPages == 0 ? 1.0 : 0.0);
        String numbers = String.format(Locale.ROOT, "round %d sent %d pages, %d dirtied since (%.1f%% unchanged, goal %.0f%%), "
                + "final round predicted %s", r.number(), sent, dirtyPages, clean * 100, limits.goalPercent(),
                predicted < 0 ? "unknown" : String.format(Locale.ROOT, "%.1f ms", predicted));
        if (clean * 100 >= limits.goalPercent()) {
            return new Decision(true, GOAL_REACHED, numbers, predicted);
        }
        if (limits.downtimeLimitMillis() > 0 && predicted >= 0 && predicted <= limits.downtimeLimitMillis()) {
            return new Decision(true, DOWNTIME_LIMIT, numbers + " <= limit " + limits.downtimeLimitMillis() + " ms", predicted);
        }
        if (rounds.size() >= limits.maxIterations()) {
            return new Decision(true, MAX_ITERATIONS, numbers + "; " + rounds.size() + " rounds done", predicted);
        }
        long before = r.dirtyPages();
        if (r.number() > 1 && dirtyPages >= before * STALL_SHRINK) {
            stalled++;
        } else {
            stalled = 0;
        }
        if (stalled >= STALL_ROUNDS) {
            return new Decision(true, NO_PROGRESS, numbers + "; the dirty set has not shrunk for " + stalled + " rounds", predicted);
        }
        return new Decision(false, CONTINUE, numbers, predicted);
    }

    static double round1(double v) {
        return Math.round(v * 10) / 10.0;
    }
}
