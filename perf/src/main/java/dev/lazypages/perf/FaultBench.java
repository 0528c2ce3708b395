package dev.lazypages.perf;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.image.ImageReader;
import dev.lazypages.lazy.AddressRange;
import dev.lazypages.lazy.ImageLazySource;
import dev.lazypages.lazy.LazyPageServer;
import dev.lazypages.lazy.LazyStats;
import dev.lazypages.stats.Json;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code fault}: the lazy page server's fault-service latency from a local image. Each run maps
 * {@code --pages} fresh anonymous pages in this JVM, writes an image storing all of them
 * ({@link FaultImage}), registers the mapping with a userfaultfd (MISSING), starts a
 * {@link LazyPageServer} on an {@link ImageLazySource} and first-touches every page once, in a
 * random order, from one thread, each touch a pwrite(2) of the page (so that the thread faults
 * inside a system call, never in Java code a safepoint would wait for). Measured: the server's
 * own latency (message available → UFFDIO_COPY done, its LazyStats histogram) and the toucher's
 * (pwrite start → return: the whole round trip). After completion every page is checked word
 * by word. One warm-up run, then {@code --repeat} runs; percentiles are medians across runs; the
 * last run's histograms are written as .hgrm. Formerly {@code LazyFaultBench} (a runtime
 * test-source main).
 */
@Command(name = "fault", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "Lazy fault-service latency from a local image: p50/p90/p99/p99.9/max µs (server and toucher).",
            "",
            "Writes DIR/fault.json, DIR/fault.md, DIR/fault.hgrm (server) and DIR/fault-toucher.hgrm (last run)."
        })
final class FaultBench implements Callable<Integer> {
    private static final long COMPLETION_TIMEOUT_SECONDS = 120;
    private static final double[] PERCENTILES = {50, 90, 99, 99.9, 100};
    private static final String[] PERCENTILE_NAMES = {"p50", "p90", "p99", "p99.9", "max"};

    @Spec
    private CommandSpec spec;

    @Option(names = "--pages", defaultValue = "10000", description = "Pages mapped, stored and faulted once each (default ${DEFAULT-VALUE}).")
    private int pages;

    @Option(names = "--prefetch", defaultValue = "0",
            description = "Stored pages after the faulting one copied with it (default ${DEFAULT-VALUE}).")
    private int prefetch;

    @Option(names = "--background", arity = "1", defaultValue = "false", paramLabel = "true|false",
            description = "Whether the background sweep runs too (default ${DEFAULT-VALUE}).")
    private boolean background;

    @Option(names = "--repeat", defaultValue = "5", description = "Measured runs, after one warm-up (default ${DEFAULT-VALUE}).")
    private int repeat;

    @Option(names = "--seed", defaultValue = "42", description = "Seed of the fault order (default ${DEFAULT-VALUE}).")
    private long seed;

    @Option(names = "--out", defaultValue = "bench-results", paramLabel = "DIR",
            description = "Where fault.json, fault.md and the .hgrm files go (default ${DEFAULT-VALUE}).")
    private Path out;

    private PrintWriter say;

    /** One run's result. */
    private record Run(LazyStats stats, Histogram toucher, double faultsPerSecond) {
    }

    @Override
    public Integer call() throws Exception {
        say = spec.commandLine().getErr();
        if (repeat < 1 || pages < 1 || prefetch < 0) {
            throw new IllegalArgumentException("--repeat and --pages must be at least 1, --prefetch at least 0");
        }
        Features.userfaultfd().ensureAvailable();
        Path dir = Files.createTempDirectory("lazy-bench-fault");
        Samples[] server = new Samples[PERCENTILES.length];
        Samples[] toucher = new Samples[PERCENTILES.length];
        for (int i = 0; i < PERCENTILES.length; i++) {
            server[i] = new Samples("server " + PERCENTILE_NAMES[i], "µs");
            toucher[i] = new Samples("toucher " + PERCENTILE_NAMES[i], "µs");
        }
        Samples rate = new Samples("faults per second", "1/s");
        Samples faults = new Samples("fault messages", "faults");
        Run last = null;
        try {
            for (int i = 0; i <= repeat; i++) {
                Run r = runOnce(dir.resolve("run" + i), new Random(seed + i));
                LazyStats st = r.stats();
                log("%s run %d: %d faults (%d copied, %d already there), %.0f faults/s; server %s; toucher %s",
                        i == 0 ? "warm-up " : "measured", i, st.faults(), st.faultsCopied(), st.faultsAlreadyThere(),
                        r.faultsPerSecond(), LazyStats.percentiles(st.copyLatency()), LazyStats.percentiles(r.toucher()));
                if (i == 0) {
                    continue;
                }
                for (int k = 0; k < PERCENTILES.length; k++) {
                    server[k].add(st.copyMicros(PERCENTILES[k]));
                    toucher[k].add(Reports.micros(r.toucher(), PERCENTILES[k]));
                }
                rate.add(r.faultsPerSecond());
                faults.add(st.faults());
                last = r;
            }
        } finally {
            RestoreBench.deleteTree(dir);
        }
        List<Samples> rows = new ArrayList<>(List.of(server));
        rows.addAll(List.of(toucher));
        rows.add(rate);
        rows.add(faults);
        report(rows, last);
        return 0;
    }

    /** One run over a fresh mapping; every page is checked before it is unmapped. */
    private Run runOnce(Path dir, Random random) throws Exception {
        int ps = (int) Posix.pageSize();
        PageBuffer mem = Posix.mmapAnonymous((long) pages * ps);
        Path touchFile = Files.createTempFile("lazy-bench-fault", ".page");
        int fd = Posix.open(touchFile.toString(), Posix.O_RDWR, 0);
        try {
            int imageSeed = random.nextInt(1 << 20) + 1;
            FaultImage.write(dir, mem.address(), pages, ps, imageSeed);
            LazyStats stats;
            Histogram seen = new Histogram(3);
            long elapsed;
            try (ImageReader reader = ImageReader.open(dir);
                 ImageLazySource source = ImageLazySource.open(reader, FaultImage.PID)) {
                Userfaultfd uffd = Userfaultfd.open(true);
                LazyPageServer server;
                try {
                    uffd.api(Userfaultfd.FEATURE_EVENT_REMOVE | Userfaultfd.FEATURE_EVENT_UNMAP | Userfaultfd.FEATURE_EVENT_REMAP);
                    uffd.register(mem.address(), mem.byteSize(), Userfaultfd.REGISTER_MODE_MISSING);
                    server = new LazyPageServer(uffd, List.of(new AddressRange(mem.address(), mem.address() + mem.byteSize())),
                            source, LazyPageServer.Options.defaults().withPrefetchPages(prefetch).withBackground(background));
                } catch (RuntimeException | Error e) {
                    uffd.close();
                    throw e;
                }
                try {
                    server.start();
                    int[] order = Reports.permutation(pages, random);
                    long t0 = System.nanoTime();
                    for (int p : order) { // in pwrite(2) (native) while it faults: safepoint-safe
                        long s = System.nanoTime();
                        mem.pages(p, 1).writeTo(fd, 0);
                        seen.recordValue(System.nanoTime() - s);
                    }
                    elapsed = System.nanoTime() - t0;
                    try {
                        stats = server.completion().get(COMPLETION_TIMEOUT_SECONDS, TimeUnit.SECONDS);
                    } catch (TimeoutException e) {
                        throw new BenchFailure("the lazy page server did not complete within " + COMPLETION_TIMEOUT_SECONDS
                                + " s (" + server.pendingPages() + " pages pending)");
                    } catch (ExecutionException e) {
                        throw new BenchFailure("the lazy page server failed: " + e.getCause());
                    }
                } finally {
                    server.close(); // closes the uffd: the mapping is plain memory again
                }
            }
            long delivered = stats.pagesByFault() + stats.pagesByBackground() + stats.pagesFoundPresent();
            if (delivered != pages || stats.pagesDropped() != 0) {
                throw new BenchFailure("the server delivered " + delivered + " of " + pages + " pages (" + stats + ")");
            }
            long bad = FaultImage.firstBadPage(mem, imageSeed);
            if (bad >= 0) {
                throw new BenchFailure("page " + bad + " does not hold what the image stored");
            }
            return new Run(stats, seen, pages / (elapsed / 1e9));
        } finally {
            Posix.closeQuietly(fd);
            Files.deleteIfExists(touchFile);
            Posix.munmap(mem);
            RestoreBench.deleteTree(dir);
        }
    }

    private void report(List<Samples> rows, Run last) throws Exception {
        StringBuilder md = new StringBuilder();
        md.append("# Lazy fault service latency (local image)\n\n");
        md.append(String.format(Locale.ROOT, "%d pages, each faulted once in random order by pwrite(2) from one thread; prefetch %d, "
                + "background %s; %d measured runs after one warm-up, percentiles are medians across runs; JDK %s; %d CPUs.%n%n",
                pages, prefetch, background, repeat, Runtime.version(), Runtime.getRuntime().availableProcessors()));
        md.append("\"server\": message available → UFFDIO_COPY done (LazyStats); \"toucher\": pwrite start → return "
                + "(the whole fault round trip). Every page checked afterwards.\n\n");
        md.append(Reports.markdownTable(rows));
        md.append('\n').append("last run: server ").append(LazyStats.percentiles(last.stats().copyLatency()))
                .append("; toucher ").append(LazyStats.percentiles(last.toucher())).append('\n');

        Map<String, Object> json = new LinkedHashMap<>();
        json.put("benchmark", "fault");
        json.put("pages", pages);
        json.put("prefetch", prefetch);
        json.put("background", background);
        json.put("repeat", repeat);
        json.put("warmup_runs", 1);
        json.put("jdk", Runtime.version().toString());
        json.put("cpus", Runtime.getRuntime().availableProcessors());
        json.put("metrics", rows.stream().map(Samples::toMap).toList());
        json.put("last_run", last.stats().toString());
        Files.createDirectories(out);
        Files.writeString(out.resolve("fault.md"), md, StandardCharsets.UTF_8);
        Files.writeString(out.resolve("fault.json"), Json.write(json) + "\n", StandardCharsets.UTF_8);
        Files.writeString(out.resolve("fault.hgrm"), Reports.hgrm(last.stats().copyLatency()), StandardCharsets.UTF_8);
        Files.writeString(out.resolve("fault-toucher.hgrm"), Reports.hgrm(last.toucher()), StandardCharsets.UTF_8);
        PrintWriter o = spec.commandLine().getOut();
        o.print(md);
        o.println();
        o.println("wrote " + out.resolve("fault.json") + ", " + out.resolve("fault.md") + ", " + out.resolve("fault.hgrm")
                + " and " + out.resolve("fault-toucher.hgrm"));
        o.flush();
    }

    private void log(String fmt, Object... args) {
        say.println(String.format(Locale.ROOT, fmt, args));
        say.flush();
    }
}
