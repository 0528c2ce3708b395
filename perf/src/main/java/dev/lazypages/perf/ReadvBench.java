package dev.lazypages.perf;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.ProcessMemory;
import dev.lazypages.proc.NativeStubs;
import dev.lazypages.perf.suite.SuiteBench;
import dev.lazypages.perf.suite.SuiteResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code readv}: process_vm_readv throughput out of a running memtouch, reading its whole data
 * region chunk by chunk into one buffer, for each chunk size: one warm-up pass, then
 * {@code --repeat} measured passes; the median in GiB/s. The machine's floor (a C loop doing
 * the same) is 7-10 GiB/s.
 */
@Command(name = "readv", mixinStandardHelpOptions = true, versionProvider = Bench.Version.class,
        usageHelpAutoWidth = true,
        description = {
            "process_vm_readv throughput from a running memtouch, by chunk size (median GiB/s).",
            "",
            "Writes DIR/readv.json and DIR/readv.md and prints the table."
        })
final class ReadvBench implements Callable<Integer> {
    private static final Duration POPULATE_TIMEOUT = Duration.ofSeconds(120);

    @Spec
    private CommandSpec spec;

    @Option(names = "--size-mib", defaultValue = "1024", description = "memtouch size in MiB (default ${DEFAULT-VALUE}).")
    private int sizeMib;

    @Option(names = "--chunks-kib", defaultValue = "256,1024,4096,16384", paramLabel = "N,N...",
            description = "Chunk sizes in KiB, one process_vm_readv each (default ${DEFAULT-VALUE}).")
    private String chunks;

    @Option(names = "--repeat", defaultValue = "5", description = "Measured passes per chunk size, after one warm-up (default ${DEFAULT-VALUE}).")
    private int repeat;

    @Option(names = "--out", defaultValue = "bench-results", paramLabel = "DIR",
            description = "Where readv.json and readv.md go (default ${DEFAULT-VALUE}).")
    private Path out;

    @Option(names = "--stubs-dir", paramLabel = "DIR",
            description = "Where memtouch is (default: $LAZYPAGES_STUBS_DIR, or native-stubs/target/bin next to the jar).")
    private Path stubsDir;

    static final String NAME = "readv";
    static final String TITLE = "process_vm_readv throughput (the floor of reading another process)";

    @Override
    public Integer call() throws Exception {
        return SuiteCommands.runAlone(spec, out, NAME, TITLE, this::measure);
    }

    /** The suite's readv: 1 GiB, chunks 256 KiB to 16 MiB, 5 passes (quick: 256 MiB, 1 and 4 MiB chunks, 3 passes). */
    static SuiteBench suite() {
        return SuiteBench.of(NAME, TITLE, ctx -> {
            ReadvBench b = new ReadvBench();
            b.sizeMib = ctx.quick() ? 256 : 1024;
            b.chunks = ctx.quick() ? "1024,4096" : "256,1024,4096,16384";
            b.repeat = ctx.quick() ? 3 : 5;
            return b.measure(ctx.progress());
        });
    }

    SuiteResult measure(Consumer<String> progress) throws Exception {
        List<Integer> chunkKib = Reports.positiveInts(chunks);
        if (repeat < 1 || sizeMib < 1) {
            throw new IllegalArgumentException("--repeat and --size-mib must be at least 1");
        }
        long ps = Posix.pageSize();
        for (int k : chunkKib) {
            if ((k * 1024L) % ps != 0) {
                throw new IllegalArgumentException("chunk of " + k + " KiB is not a whole number of pages");
            }
        }
        Path memtouch = NativeStubs.locate("memtouch", stubsDir);
        Path dir = Files.createTempDirectory("lazy-bench-readv");
        SuiteResult r = new SuiteResult();
        try (Memtouch w = Memtouch.start(memtouch, dir.resolve("memtouch.log"), sizeMib, 1, 0)) {
            w.awaitLine(l -> l.equals("HEARTBEAT 1"), POPULATE_TIMEOUT);
            Reports.Region region = Reports.parseRegion(w.awaitLine(l -> l.startsWith("REGION "), Duration.ofSeconds(5)));
            for (int k : chunkKib) {
                long chunk = k * 1024L;
                Samples s = new Samples(Reports.kib(k) + " chunks", "GiB/s");
                try (PageBuffer buf = PageBuffer.allocate(chunk / ps)) {
                    for (int i = 0; i <= repeat; i++) {
                        double gibps = pass(w.pid(), region, buf, chunk);
                        if (i > 0) {
                            s.add(gibps);
                        }
                    }
                }
                progress.accept(String.format(Locale.ROOT, "%s: median %.2f GiB/s", s.name(), s.median()));
                r.row("", s);
            }
            r.put("verify", w.verify(Duration.ofSeconds(60))); // reading must not have disturbed it
        } finally {
            RestoreBench.deleteTree(dir);
        }
        r.note(String.format(Locale.ROOT, "memtouch %d MiB, whole region per pass, one process_vm_readv per chunk into one buffer; "
                + "median of %d passes after one warm-up. A C loop doing the same reaches 7-10 GiB/s on the development machine.",
                sizeMib, repeat));
        r.put("size_mib", sizeMib);
        r.put("repeat", repeat);
        return r;
    }

    /** Reads the whole region once, {@code chunk} bytes per call; GiB/s. */
    private static double pass(int pid, Reports.Region region, PageBuffer buf, long chunk) {
        long t0 = System.nanoTime();
        long done = 0;
        while (done < region.size()) {
            long n = Math.min(chunk, region.size() - done);
            long got = ProcessMemory.read(pid, region.address() + done, buf, 0, n);
            if (got != n) {
                throw new BenchFailure("process_vm_readv read " + got + " of " + n + " bytes at 0x"
                        + Long.toHexString(region.address() + done));
            }
            done += n;
        }
        return Reports.gibPerSecond(done, System.nanoTime() - t0);
    }
}
