package dev.lazypages.perf;

import dev.lazypages.dump.ConvergencePolicy;
import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.DumpResult;
import dev.lazypages.dump.PreCopy;
import dev.lazypages.dump.PreDumpResult;
import dev.lazypages.ffm.Features;
import dev.lazypages.proc.NativeStubs;
import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code precopy}: the in-process pre-copy loop ({@link PreCopy#run}: one PreCopySession, its
 * tracker alive across rounds, then the frozen final dump, leave-running) over memtouch of
 * {@code --size-mib} with {@code --threads} workers, for each dirty rate: pages per round, time
 * frozen (round 1 arms the tracker; the final dump), the dirty rate the tracker measured and the
 * stop reason. One warm-up run (at the first rate) is discarded; then {@code --repeat} runs per
 * rate. After each run memtouch, still running, verifies itself and is killed; the images are
 * deleted. Formerly the runtime test {@code dump.PreCopyBench}.
 */
@Command(name = "precopy", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Pre-copy of memtouch per dirty rate: pages and time frozen per round, measured dirty rate, stop reason.",
            "",
            "Writes DIR/precopy.json and DIR/precopy.md and prints the table."
        })
final class PreCopyBench implements Callable<Integer> {
    private static final Duration POPULATE_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration VERIFY_TIMEOUT = Duration.ofSeconds(60);
    private static final double MIB = 1024.0 * 1024.0;

    @Spec
    private CommandSpec spec;

    @Option(names = "--size-mib", defaultValue = "1024", description = "memtouch size in MiB (default ${DEFAULT-VALUE}).")
    private int sizeMib;

    @Option(names = "--rates", defaultValue = "0,16,64", paramLabel = "R,R...",
            description = "memtouch dirty rates in MiB/s, one series each (default ${DEFAULT-VALUE}).")
    private String rates;

    @Option(names = "--threads", defaultValue = "4", description = "memtouch worker threads (default ${DEFAULT-VALUE}).")
    private int threads;

    @Option(names = "--max-iterations", defaultValue = "4", description = "Pre-dump rounds at most (default ${DEFAULT-VALUE}).")
    private int maxIterations;

    @Option(names = "--goal", defaultValue = "100",
            description = "Percent of last round's pages that must stay clean to stop early (default ${DEFAULT-VALUE}).")
    private double goal;

    @Option(names = "--downtime-limit-ms", defaultValue = "0",
            description = "Stop when the final round is predicted to take at most this long; 0: off (default ${DEFAULT-VALUE}).")
    private long downtimeLimitMs;

    @Option(names = "--track-mem", defaultValue = "auto",
            description = "Dirty tracker: auto, pagemap-scan, soft-dirty, none (default ${DEFAULT-VALUE}).")
    private String trackMem;

    @Option(names = "--repeat", defaultValue = "3", description = "Measured runs per rate, after one warm-up run (default ${DEFAULT-VALUE}).")
    private int repeat;

    @Option(names = "--out", defaultValue = "bench-results", paramLabel = "DIR",
            description = "Where precopy.json and precopy.md go (default ${DEFAULT-VALUE}).")
    private Path out;

    @Option(names = "--work-dir", paramLabel = "DIR",
            description = "Where the images and logs are written (default: a new directory under java.io.tmpdir).")
    private Path workDir;

    @Option(names = "--stubs-dir", paramLabel = "DIR",
            description = "Where memtouch is (default: $LAZYPAGES_STUBS_DIR, or native-stubs/target/bin next to the jar).")
    private Path stubsDir;

    @Option(names = "--verbose", description = "Print the pre-copy's progress lines.")
    private boolean verbose;

    private Consumer<String> progress;

    /** One measured pre-copy. */
    private record Run(PreCopy.Report report, double measuredDirtyMiBps, String verify) {
    }

    static final String NAME = "precopy";
    static final String TITLE = "Pre-copy: pages and time frozen per round, per dirty rate";

    @Override
    public Integer call() throws Exception {
        return SuiteCommands.runAlone(spec, out, NAME, TITLE, this::measure);
    }

    /** The suite's precopy: 1 GiB, rates 0, 16, 64 MiB/s, 3 runs each (quick: 128 MiB, 64 MiB/s, 1 run). */
    static SuiteBench suite() {
        return SuiteBench.of(NAME, TITLE, ctx -> {
            PreCopyBench b = new PreCopyBench();
            b.sizeMib = ctx.quick() ? 128 : 1024;
            b.rates = ctx.quick() ? "64" : "0,16,64";
            b.threads = 4;
            b.maxIterations = ctx.quick() ? 3 : 4;
            b.goal = 100;
            b.trackMem = "auto";
            b.repeat = ctx.quick() ? 1 : 3;
            return b.measure(ctx.progress());
        });
    }

    SuiteResult measure(Consumer<String> progress) throws Exception {
        this.progress = progress;
        List<Integer> rateList = Reports.nonNegativeInts(rates);
        if (repeat < 1 || sizeMib < 1 || threads < 1) {
            throw new IllegalArgumentException("--repeat, --size-mib and --threads must be at least 1");
        }
        ConvergencePolicy.Limits limits = new ConvergencePolicy.Limits(maxIterations, goal, downtimeLimitMs);
        Features.ptrace().ensureAvailable();
        Path memtouch = NativeStubs.locate("memtouch", stubsDir);
        Path work = workDir != null ? Files.createDirectories(workDir) : Files.createTempDirectory("lazy-bench-precopy");
        Map<Integer, List<Run>> runs = new LinkedHashMap<>();
        try {
            Run warm = runOnce(memtouch, work, rateList.get(0), limits);
            log("warm-up  %3d MiB/s: %s", rateList.get(0), oneLine(warm));
            for (int rate : rateList) {
                List<Run> rs = new ArrayList<>();
                for (int i = 1; i <= repeat; i++) {
                    Run r = runOnce(memtouch, work, rate, limits);
                    log("measured %3d MiB/s run %d: %s", rate, i, oneLine(r));
                    if (verbose) {
                        log("%s", r.report().text());
                    }
                    rs.add(r);
                }
                runs.put(rate, rs);
            }
        } finally {
            if (workDir == null) {
                RestoreBench.deleteTree(work);
            }
        }
        return report(runs, limits);
    }

    private static String oneLine(Run r) {
        PreCopy.Report p = r.report();
        StringBuilder b = new StringBuilder();
        b.append(p.rounds().size()).append(" round(s), pages");
        for (ConvergencePolicy.Round round : p.rounds()) {
            b.append(' ').append(round.pagesSent());
        }
        b.append(String.format(Locale.ROOT, ", final %d; frozen arm %.1f ms, final %.1f ms; dirty %.1f MiB/s; %s; %s",
                p.finalDump().pagesStored(), Reports.millis(p.rounds().getFirst().frozenNanos()),
                Reports.millis(p.finalDump().frozenNanos()), r.measuredDirtyMiBps(), p.decision().reason(), r.verify()));
        return b.toString();
    }

    /** One pre-copy of a fresh memtouch at {@code rate}; it is verified and killed, the images deleted. */
    private Run runOnce(Path memtouchBin, Path work, int rate, ConvergencePolicy.Limits limits) throws Exception {
        Path dir = Files.createTempDirectory(work, "run");
        try (Memtouch w = Memtouch.start(memtouchBin, dir.resolve("memtouch.log"), sizeMib, threads, rate)) {
            w.awaitLine(l -> l.equals("HEARTBEAT 1"), POPULATE_TIMEOUT);
            Path pc = dir.resolve("pc");
            long[] lastRoundStart = {0};
            Consumer<PreDumpResult> perRound = r -> lastRoundStart[0] = System.nanoTime() - r.totalNanos();
            Consumer<String> progress = verbose ? line -> log("  %s", line) : line -> { };
            DumpOptions opts = DumpOptions.of(pc).withLeaveRunning(true).withTrackMem(trackMem).withProgress(progress);
            PreCopy.Report rep = PreCopy.run(w.pid(), pc, limits, opts, perRound);
            long returned = System.nanoTime();
            double measured = measuredRate(rep, lastRoundStart[0], returned);
            String v = w.verify(VERIFY_TIMEOUT); // left running: it must hold exactly what it wrote
            return new Run(rep, measured, v);
        } finally {
            RestoreBench.deleteTree(dir);
        }
    }

    /**
     * The dirty rate the tracker saw, MiB/s: the median of the rates of rounds 2, 3, ... (pages
     * collected over the time between collects); with one round only, the final dump's pages over
     * the time from the last round's start to the final dump's start.
     */
    static double measuredRate(PreCopy.Report rep, long lastRoundStartNanos, long returnedNanos) {
        DumpResult f = rep.finalDump();
        long ps = f.pageSize();
        Samples later = new Samples("rate", "MiB/s");
        for (ConvergencePolicy.Round r : rep.rounds()) {
            if (r.number() > 1) {
                later.add(r.dirtyRate() * ps / MIB);
            }
        }
        if (later.count() > 0) {
            return later.median();
        }
        long finalStart = returnedNanos - f.totalNanos();
        return Reports.mibPerSecond(f.pagesStored(), ps, finalStart - lastRoundStartNanos);
    }

    private SuiteResult report(Map<Integer, List<Run>> runs, ConvergencePolicy.Limits limits) {
        List<Samples> rows = new ArrayList<>();
        StringBuilder notes = new StringBuilder();
        List<Object> jsonRates = new ArrayList<>();
        for (Map.Entry<Integer, List<Run>> e : runs.entrySet()) {
            int rate = e.getKey();
            List<Run> rs = e.getValue();
            String pre = rate + " MiB/s: ";
            Samples rounds = new Samples(pre + "rounds", "rounds");
            Samples arm = new Samples(pre + "round 1 frozen (arm)", "ms");
            Samples finalPages = new Samples(pre + "final pages", "pages");
            Samples finalFrozen = new Samples(pre + "final frozen", "ms");
            Samples totalFrozen = new Samples(pre + "total frozen", "ms");
            Samples dirty = new Samples(pre + "measured dirty rate", "MiB/s");
            Samples total = new Samples(pre + "total time", "ms");
            List<List<Double>> pagesPerRound = new ArrayList<>();
            List<String> reasons = new ArrayList<>();
            for (Run r : rs) {
                PreCopy.Report p = r.report();
                rounds.add(p.rounds().size());
                arm.add(Reports.millis(p.rounds().getFirst().frozenNanos()));
                finalPages.add(p.finalDump().pagesStored());
                finalFrozen.add(Reports.millis(p.finalDump().frozenNanos()));
                totalFrozen.add(Reports.millis(p.totalFrozenNanos()));
                dirty.add(r.measuredDirtyMiBps());
                total.add(Reports.millis(p.totalNanos()));
                pagesPerRound.add(p.rounds().stream().map(x -> (double) x.pagesSent()).toList());
                reasons.add(p.decision().reason());
            }
            rows.add(rounds);
            rows.addAll(Reports.byPosition(pre + "round %d pages", "pages", pagesPerRound));
            rows.add(finalPages);
            rows.add(arm);
            rows.add(finalFrozen);
            rows.add(totalFrozen);
            rows.add(dirty);
            rows.add(total);
            String stop = Reports.tally(reasons);
            notes.append(String.format(Locale.ROOT, "- %d MiB/s: stopped by %s%n", rate, stop));
            Map<String, Object> j = new LinkedHashMap<>();
            j.put("rate_mib_per_sec", rate);
            j.put("stop_reasons", stop);
            j.put("runs", rs.stream().map(r -> {
                Map<String, Object> m = new LinkedHashMap<>(r.report().toMap());
                m.put("measured_dirty_mib_per_sec", Samples.round(r.measuredDirtyMiBps()));
                m.put("verify", r.verify());
                return m;
            }).toList());
            jsonRates.add(j);
        }
        SuiteResult r = new SuiteResult();
        rows.forEach(x -> r.row("", x));
        r.note(String.format(Locale.ROOT, "memtouch %d MiB, %d threads; tracker %s; max %d rounds, goal %.0f%%, downtime limit %s; "
                + "%d measured runs per rate after one warm-up run; final dump leave-running, then VERIFY OK",
                sizeMib, threads, trackMem, limits.maxIterations(), limits.goalPercent(),
                limits.downtimeLimitMillis() > 0 ? limits.downtimeLimitMillis() + " ms" : "off", repeat));
        r.note("\"round k pages\": pages copied by pre-dump k, over the runs that got that far (n); only round 1 freezes "
                + "(to arm the tracker). \"measured dirty rate\": as the tracker saw it (median over rounds 2+; with one round, "
                + "final pages over the last interval)");
        notes.toString().lines().forEach(l -> r.note(l.replaceFirst("^- ", "")));
        r.put("workload", "memtouch --threads " + threads);
        r.put("size_mib", sizeMib);
        r.put("max_iterations", limits.maxIterations());
        r.put("goal_percent", limits.goalPercent());
        r.put("downtime_limit_ms", limits.downtimeLimitMillis());
        r.put("track_mem", trackMem);
        r.put("repeat", repeat);
        r.put("rates", jsonRates);
        return r;
    }

    private void log(String fmt, Object... args) {
        progress.accept(String.format(Locale.ROOT, fmt, args));
    }
}
