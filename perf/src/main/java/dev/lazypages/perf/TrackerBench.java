package dev.lazypages.perf;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Pagemap;
import dev.lazypages.memory.DirtyTracker;
import dev.lazypages.memory.DirtyTrackers;
import dev.lazypages.memory.NoneTracker;
import dev.lazypages.memory.PageRanges;
import dev.lazypages.memory.PagemapScanTracker;
import dev.lazypages.memory.TrackedVmas;
import dev.lazypages.proc.NativeStubs;
import dev.lazypages.proc.SeizedProcess;
import dev.lazypages.proc.TracerThread;
import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import java.util.function.LongSupplier;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code tracker}: the cost of one dirty-set collection over a large, mostly idle process
 * (memtouch of {@code --size-mib}, one worker dirtying {@code --dirty-mib-per-sec}):
 * <ul>
 *   <li>{@code pagemap-scan}: {@link PagemapScanTracker#collect()} (maps, then PAGEMAP_SCAN with
 *       WP_MATCHING over every tracked VMA, re-protection included);</li>
 *   <li>{@code pagemap-read}: maps, then every 64-bit /proc/PID/pagemap entry of the tracked
 *       memory read and tested ({@link PagemapRead}: what a soft-dirty collect costs, clear_refs
 *       aside);</li>
 *   <li>{@code none}: {@link NoneTracker#collect()} (the populated pages, by PAGEMAP_SCAN).</li>
 * </ul>
 * plus the pagemap-scan tracker's arm() (process frozen), armed anew {@code --repeat} times after a
 * cold first arm. Collections interleave (read, none, scan; 200 ms apart, so some dirtying
 * happens between rounds); the first round is a warm-up. memtouch then verifies itself and is
 * killed. Formerly {@code DirtyTrackingBench} (a runtime test-source main).
 */
@Command(name = "tracker", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Cost of one dirty-set collect(): pagemap-scan, reading pagemap entries, none; and arm() (frozen).",
            "",
            "Writes DIR/tracker.json and DIR/tracker.md and prints the table."
        })
final class TrackerBench implements Callable<Integer> {
    private static final Duration POPULATE_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration VERIFY_TIMEOUT = Duration.ofSeconds(60);
    private static final long PAUSE_MILLIS = 200;

    @Spec
    private CommandSpec spec;

    @Option(names = "--size-mib", defaultValue = "1024", description = "memtouch size in MiB (default ${DEFAULT-VALUE}).")
    private int sizeMib;

    @Option(names = "--dirty-mib-per-sec", defaultValue = "1",
            description = "memtouch's dirtying rate, one worker (default ${DEFAULT-VALUE}).")
    private int rate;

    @Option(names = "--repeat", defaultValue = "5",
            description = "Measured collects per method and measured arms, after one warm-up (default ${DEFAULT-VALUE}).")
    private int repeat;

    @Option(names = "--out", defaultValue = "bench-results", paramLabel = "DIR",
            description = "Where tracker.json and tracker.md go (default ${DEFAULT-VALUE}).")
    private Path out;

    @Option(names = "--stubs-dir", paramLabel = "DIR",
            description = "Where memtouch is (default: $LAZYPAGES_STUBS_DIR, or native-stubs/target/bin next to the jar).")
    private Path stubsDir;

    private Consumer<String> progress;

    static final String NAME = "tracker";
    static final String TITLE = "Dirty tracking: cost of one collect, per GiB per round";

    @Override
    public Integer call() throws Exception {
        return SuiteCommands.runAlone(spec, out, NAME, TITLE, this::measure);
    }

    /** The suite's tracker: 1 GiB at 1 MiB/s, 5 rounds (quick: 256 MiB, 3 rounds). */
    static SuiteBench suite() {
        return SuiteBench.of(NAME, TITLE, ctx -> {
            TrackerBench b = new TrackerBench();
            b.sizeMib = ctx.quick() ? 256 : 1024;
            b.rate = 1;
            b.repeat = ctx.quick() ? 3 : 5;
            return b.measure(ctx.progress());
        });
    }

    SuiteResult measure(Consumer<String> progress) throws Exception {
        this.progress = progress;
        if (repeat < 1 || sizeMib < 1 || rate < 0) {
            throw new IllegalArgumentException("--repeat and --size-mib must be at least 1, --dirty-mib-per-sec at least 0");
        }
        Features.ptrace().ensureAvailable();
        DirtyTrackers.select(DirtyTrackers.PAGEMAP_SCAN); // throws, naming what is missing
        Path memtouch = NativeStubs.locate("memtouch", stubsDir);
        Path dir = Files.createTempDirectory("lazy-bench-tracker");

        Samples scanCollect = new Samples("pagemap-scan: collect", "ms");
        Samples readCollect = new Samples("pagemap-read: collect", "ms");
        Samples noneCollect = new Samples("none: collect", "ms");
        Samples scanPages = new Samples("pagemap-scan: pages reported dirty", "pages");
        Samples scanRate = new Samples("pagemap-scan: dirty rate seen", "MiB/s");
        Samples readPages = new Samples("pagemap-read: pages populated", "pages");
        Samples nonePages = new Samples("none: pages reported", "pages");
        Samples arm = new Samples("pagemap-scan: arm (frozen)", "ms");
        Samples frozen = new Samples("pagemap-scan: freeze + arm + thaw", "ms");
        double coldArmMs;
        long trackedBytes;
        int trackedVmas;
        String verified;
        try (Memtouch w = Memtouch.start(memtouch, dir.resolve("memtouch.log"), sizeMib, 1, rate);
             TracerThread tracer = new TracerThread("bench-tracer")) {
            w.awaitLine(l -> l.equals("HEARTBEAT 1"), POPULATE_TIMEOUT);
            int pid = w.pid();
            PageRanges tracked = PageRanges.ofVmas(TrackedVmas.read(pid));
            trackedBytes = tracked.byteCount();
            trackedVmas = TrackedVmas.read(pid).size();
            log("memtouch %d MiB at %d MiB/s, pid %d: %d tracked VMAs, %d MiB tracked", sizeMib, rate, pid, trackedVmas,
                    trackedBytes >> 20);

            try (Pagemap pm = Pagemap.open(pid);
                 SeizedProcess p = SeizedProcess.seize(pid, tracer);
                 NoneTracker none = new NoneTracker(pid, "bench")) {
                PagemapScanTracker scan = null;
                try {
                    // arm: the first (cold: class loading, linking, first injection) is the warm-up
                    double cold = 0;
                    for (int i = 0; i <= repeat; i++) {
                        if (scan != null) { // one uffd per VMA: the kernel refuses a second registration (EBUSY)
                            scan.close();
                            scan = null;
                        }
                        PagemapScanTracker t = new PagemapScanTracker(pid);
                        long f0 = System.nanoTime();
                        p.freeze();
                        long armNanos;
                        try {
                            if (i == 0) {
                                none.arm(p);
                            }
                            armNanos = t.arm(p);
                        } catch (RuntimeException | Error e) {
                            t.close();
                            throw e;
                        } finally {
                            p.thaw();
                        }
                        long f1 = System.nanoTime();
                        if (i == 0) {
                            cold = Reports.millis(armNanos);
                        } else {
                            arm.add(Reports.millis(armNanos));
                            frozen.add(Reports.millis(f1 - f0));
                        }
                        scan = t;
                    }
                    coldArmMs = cold;
                    log("pagemap-scan arm (frozen): cold %.2f ms, then median %.2f ms", coldArmMs, arm.median());

                    PagemapScanTracker active = scan;
                    long[] lastScan = {System.nanoTime()};
                    for (int i = 0; i <= repeat; i++) {
                        boolean warmUp = i == 0;
                        double[] read = time(() -> PagemapRead.populated(PageRanges.ofVmas(TrackedVmas.read(pid)), pm::read)
                                .pageCount());
                        double[] n = time(() -> collect(none));
                        long before = lastScan[0];
                        double[] s = time(() -> collect(active));
                        long after = System.nanoTime();
                        lastScan[0] = after;
                        double seen = Reports.mibPerSecond((long) s[1], PageRanges.PAGE_SIZE, after - before);
                        log("%s round %d: pagemap-read %.3f ms (%d pages), none %.3f ms (%d pages), pagemap-scan %.3f ms "
                                + "(%d pages, %.2f MiB/s)", warmUp ? "warm-up " : "measured", i, read[0], (long) read[1], n[0],
                                (long) n[1], s[0], (long) s[1], seen);
                        if (!warmUp) {
                            readCollect.add(read[0]);
                            readPages.add(read[1]);
                            noneCollect.add(n[0]);
                            nonePages.add(n[1]);
                            scanCollect.add(s[0]);
                            scanPages.add(s[1]);
                            scanRate.add(seen);
                        }
                    }
                } finally {
                    if (scan != null) {
                        scan.close();
                    }
                }
            }
            // detached and unregistered: memtouch must still hold exactly what it wrote
            verified = w.verify(VERIFY_TIMEOUT);
            log("memtouch: %s", verified);
        } finally {
            RestoreBench.deleteTree(dir);
        }
        return report(List.of(scanCollect, readCollect, noneCollect, arm, frozen, scanPages, scanRate, readPages, nonePages),
                scanCollect, readCollect, noneCollect, coldArmMs, trackedBytes, trackedVmas, verified);
    }

    /** Sleeps {@link #PAUSE_MILLIS}, then times {@code work}: {ms, its result}. */
    private static double[] time(LongSupplier work) throws InterruptedException {
        Thread.sleep(PAUSE_MILLIS);
        long t0 = System.nanoTime();
        long r = work.getAsLong();
        return new double[] {Reports.millis(System.nanoTime() - t0), r};
    }

    private static long collect(DirtyTracker t) {
        return t.collect().dirty().pageCount();
    }

    private SuiteResult report(List<Samples> rows, Samples scan, Samples read, Samples none, double coldArmMs, long trackedBytes,
                               int trackedVmas, String verified) {
        SuiteResult r = new SuiteResult();
        rows.forEach(x -> r.row("per collect", x));
        for (Samples s : List.of(scan, read, none)) {
            Samples perGib = new Samples(s.name() + " per GiB tracked", "ms/GiB");
            s.values().forEach(v -> perGib.add(Reports.msPerGib(v, trackedBytes)));
            r.row("per GiB tracked, per round", perGib);
        }
        double ratio = Reports.medianRatio(scan, read);
        r.note(String.format(Locale.ROOT, "memtouch %d MiB, 1 worker dirtying %d MiB/s; %d tracked VMAs, %d MiB tracked; %d measured "
                + "rounds after one warm-up, 200 ms apart (read, none, scan interleaved); %d measured arms after a cold one "
                + "(%.2f ms, left out)", sizeMib, rate, trackedVmas, trackedBytes >> 20, repeat, repeat, coldArmMs));
        r.note(String.format(Locale.ROOT, "pagemap-scan / pagemap-read (medians): %.3f; PAGEMAP_SCAN should cost well under a fifth "
                + "of reading every pagemap entry", ratio));
        r.note("memtouch afterwards: " + verified);
        r.put("workload", "memtouch --threads 1 --dirty-mib-per-sec " + rate);
        r.put("size_mib", sizeMib);
        r.put("tracked_vmas", trackedVmas);
        r.put("tracked_bytes", trackedBytes);
        r.put("repeat", repeat);
        r.put("cold_arm_ms", Samples.round(coldArmMs));
        r.put("scan_over_read", Samples.round(ratio));
        return r;
    }

    private void log(String fmt, Object... args) {
        progress.accept(String.format(Locale.ROOT, fmt, args));
    }
}
