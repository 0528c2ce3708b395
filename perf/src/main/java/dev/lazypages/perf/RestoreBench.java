package dev.lazypages.perf;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.ffm.Features;
import dev.lazypages.lazy.LazyStats;
import dev.lazypages.proc.NativeStubs;
import dev.lazypages.restore.ImageLazyHandoff;
import dev.lazypages.restore.Restorer;
import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code restore}: how long a restore takes before the process runs, and before every page is
 * in, eager against lazy, for memtouch of each size. Each run starts memtouch (1 thread, no
 * dirtying), dumps it in-process with the {@link Dumper}, restores it in-process with the
 * {@link Restorer} (lazy: an {@link ImageLazyHandoff}), waits for every page (lazy: the page
 * server's completion), has it verify every page (SIGUSR1; anything but VERIFY OK fails the
 * benchmark) and kills it. Modes alternate within each repeat; the first repeat of each size is
 * a warm-up and is discarded.
 */
@Command(name = "restore", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Eager against lazy restore of memtouch: ms until the process runs, ms until every page is in.",
            "",
            "Writes DIR/restore.json, DIR/restore.md (and a PNG) and prints the table."
        })
final class RestoreBench implements Callable<Integer> {
    private static final Duration POPULATE_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration VERIFY_TIMEOUT = Duration.ofSeconds(60);
    private static final long LAZY_TIMEOUT_SECONDS = 300;

    @Spec
    private CommandSpec spec;

    @Option(names = "--sizes-mib", defaultValue = "256,1024", paramLabel = "N,N...",
            description = "memtouch sizes in MiB (default ${DEFAULT-VALUE}).")
    private String sizes;

    @Option(names = "--repeat", defaultValue = "5", description = "Measured runs per size and mode, after one warm-up (default ${DEFAULT-VALUE}).")
    private int repeat;

    @Option(names = "--out", defaultValue = "bench-results", paramLabel = "DIR",
            description = "Where restore.json and restore.md go (default ${DEFAULT-VALUE}).")
    private Path out;

    @Option(names = "--work-dir", paramLabel = "DIR",
            description = "Where the images and logs are written (default: a new directory under java.io.tmpdir).")
    private Path workDir;

    @Option(names = "--stubs-dir", paramLabel = "DIR",
            description = "memtouch and lp-stub (default: $LAZYPAGES_STUBS_DIR, or native-stubs/target/bin next to the jar).")
    private Path stubsDir;


    /** The measurements of one size. */
    private record Row(int sizeMib, Samples eagerStart, Samples eagerAll, Samples lazyStart, Samples lazyAll) {
        List<Samples> all() {
            return List.of(eagerStart, eagerAll, lazyStart, lazyAll);
        }
    }

    @Override
    public Integer call() throws Exception {
        return SuiteCommands.runAlone(spec, out, NAME, TITLE, this::measure);
    }

    static final String NAME = "restore";
    static final String TITLE = "Restore: eager against lazy";

    /** The suite's restore: 256 and 1024 MiB, 5 runs (quick: 64 MiB, 1 run). */
    static SuiteBench suite() {
        return SuiteBench.of(NAME, TITLE, ctx -> {
            RestoreBench b = new RestoreBench();
            b.sizes = ctx.quick() ? "64" : "256,1024";
            b.repeat = ctx.quick() ? 1 : 5;
            return b.measure(ctx.progress());
        });
    }

    SuiteResult measure(Consumer<String> progress) throws Exception {
        List<Integer> sizesMib = Reports.positiveInts(sizes);
        if (repeat < 1) {
            throw new IllegalArgumentException("--repeat must be at least 1");
        }
        Features.ptrace().ensureAvailable();
        Features.userfaultfd().ensureAvailable();
        Path memtouch = NativeStubs.locate("memtouch", stubsDir);
        Path work = workDir != null ? Files.createDirectories(workDir) : Files.createTempDirectory("lazy-bench-restore");
        List<Row> rows = new ArrayList<>();
        try {
            for (int size : sizesMib) {
                Row row = new Row(size, new Samples("eager " + size + " MiB: running", "ms"),
                        new Samples("eager " + size + " MiB: all pages in", "ms"),
                        new Samples("lazy " + size + " MiB: running", "ms"),
                        new Samples("lazy " + size + " MiB: all pages in", "ms"));
                for (int i = 0; i <= repeat; i++) {
                    boolean warmUp = i == 0;
                    for (boolean lazy : new boolean[] {false, true}) {
                        double[] t = runOnce(memtouch, work, size, lazy);
                        progress.accept(String.format(Locale.ROOT, "%s %4d MiB %-5s run %d: running after %.1f ms, all pages in after %.1f ms",
                                warmUp ? "warm-up " : "measured", size, lazy ? "lazy" : "eager", i, t[0], t[1]));
                        if (!warmUp) {
                            (lazy ? row.lazyStart() : row.eagerStart()).add(t[0]);
                            (lazy ? row.lazyAll() : row.eagerAll()).add(t[1]);
                        }
                    }
                }
                rows.add(row);
            }
        } finally {
            if (workDir == null) {
                deleteTree(work);
            }
        }
        return report(rows);
    }

    /** One dump and restore; returns {ms until running, ms until every page is in}. */
    private double[] runOnce(Path memtouchBin, Path work, int sizeMib, boolean lazy) throws Exception {
        Path dir = Files.createTempDirectory(work, "run");
        Path img = dir.resolve("img");
        Memtouch restored = null;
        ImageLazyHandoff handoff = lazy ? new ImageLazyHandoff() : null;
        try (Memtouch w = Memtouch.start(memtouchBin, dir.resolve("memtouch.log"), sizeMib, 1, 0)) {
            w.awaitLine(l -> l.equals("HEARTBEAT 1"), POPULATE_TIMEOUT);
            Dumper.dump(w.pid(), DumpOptions.of(img));
            w.awaitDead(Duration.ofSeconds(10));

            Restorer.Options opts = Restorer.Options.eager(img).withStub(stubsDir);
            if (handoff != null) {
                opts = opts.withLazy(handoff);
            }
            AtomicLong allIn = new AtomicLong();
            long t0 = System.nanoTime();
            Restorer.Result r = Restorer.restore(opts);
            long running = System.nanoTime();
            restored = w.restoredAs(r.pid());
            long all = running;
            if (handoff != null) {
                // stamped by the server thread as it completes (or at once here, if it already has)
                handoff.completion().whenComplete((s, e) -> allIn.set(System.nanoTime()));
                LazyStats stats;
                try {
                    stats = handoff.completion().get(LAZY_TIMEOUT_SECONDS, TimeUnit.SECONDS);
                } catch (TimeoutException e) {
                    throw new BenchFailure("the lazy page server did not complete within " + LAZY_TIMEOUT_SECONDS + " s");
                } catch (ExecutionException e) {
                    throw new BenchFailure("the lazy page server failed: " + e.getCause());
                }
                if (stats.targetExited()) {
                    throw new BenchFailure("restored memtouch pid " + r.pid() + " exited while its pages were served: " + stats);
                }
                all = allIn.get();
            }
            restored.verify(VERIFY_TIMEOUT);
            return new double[] {Reports.millis(running - t0), Reports.millis(all - t0)};
        } finally {
            if (restored != null) {
                restored.close();
            }
            if (handoff != null) {
                handoff.close();
            }
            deleteTree(dir);
        }
    }

    private SuiteResult report(List<Row> rows) {
        SuiteResult r = new SuiteResult();
        rows.forEach(row -> row.all().forEach(x -> r.row("", x)));
        r.note(String.format(Locale.ROOT, "memtouch, 1 thread, no dirtying; in-process Dumper and Restorer; %d measured runs per size "
                + "and mode after one warm-up. \"running\": restore start to the process running; \"all pages in\": to the last "
                + "page in place (eager: the same; lazy: the page server's completion).", repeat));
        r.put("workload", "memtouch --threads 1 --dirty-mib-per-sec 0");
        r.put("sizes_mib", rows.stream().map(Row::sizeMib).toList());
        r.put("repeat", repeat);
        r.put("warmup_runs", 1);
        List<double[]> eager = new ArrayList<>();
        List<double[]> lazy = new ArrayList<>();
        for (Row row : rows) {
            eager.add(new double[] {row.sizeMib(), row.eagerStart().median()});
            lazy.add(new double[] {row.sizeMib(), row.lazyStart().median()});
        }
        if (rows.size() > 1) {
            Row small = rows.get(0);
            Row big = rows.get(rows.size() - 1);
            double ratio = Reports.medianRatio(big.lazyStart(), small.lazyStart());
            r.note(String.format(Locale.ROOT, "lazy start %d MiB / %d MiB (medians): %.2f; it should stay near 1 (no page is copied "
                    + "before the process runs)", big.sizeMib(), small.sizeMib(), ratio));
            r.put("lazy_start_ratio", Samples.round(ratio));
            r.chart("restore-start", "Restore: ms until the process runs", "memory size (MiB)", "ms (median)").logX("restore-start");
            r.series("restore-start", "eager", eager).series("restore-start", "lazy", lazy);
        }
        return r;
    }

    static void deleteTree(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // a temporary directory left behind is harmless
        }
    }
}
