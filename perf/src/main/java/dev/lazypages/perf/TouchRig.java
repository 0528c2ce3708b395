package dev.lazypages.perf;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.dump.FrozenProcess;
import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.SyscallException;
import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.image.ImageReader;
import dev.lazypages.lazy.ImageLazySource;
import dev.lazypages.lazy.LazyPageServer;
import dev.lazypages.lazy.LazySource;
import dev.lazypages.lazy.LazyStats;
import dev.lazypages.lazy.RemoteLazySource;
import dev.lazypages.net.PageClient;
import dev.lazypages.net.PageProvider;
import dev.lazypages.net.PageServer;
import dev.lazypages.proc.NativeStubs;
import dev.lazypages.restore.ImageLazyHandoff;
import dev.lazypages.restore.LazyHandoff;
import dev.lazypages.restore.Restorer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;
import java.util.function.Predicate;

/**
 * Runs native-stubs' toucher through one of two post-copy pipelines, the same touching code
 * measuring both:
 *
 * <ul>
 *   <li><b>floor</b>: the C floor. A floor-server holds the region's image; the toucher maps
 *       its region empty, registers it with a userfaultfd and fetches each faulting page from
 *       the server over TCP (blocking I/O, one fault thread); with background on, a bulk thread
 *       streams the whole region on a second connection.</li>
 *   <li><b>ours</b>: our engine as a post-copy migration runs it. The toucher fills its region
 *       and waits; it is dumped lazily ({@link Dumper#dumpLazy}: every page REMOTE, the original
 *       frozen), a {@link PageServer} serves its pages from the frozen original over TCP on
 *       loopback, and it is restored lazily ({@link Restorer} with a {@link RemoteLazySource} on a
 *       {@link PageClient} and an {@link ImageLazyHandoff}) as {@code MigrationDestination} does;
 *       then it is told to touch.</li>
 * </ul>
 *
 * With a delay, both pipelines' TCP connections go through a {@link DelayProxy}. Floor servers
 * are started once per region size and seed and reused; {@link #close} stops them.
 */
public final class TouchRig implements AutoCloseable {
    /** The system property another part of the engine reads for its prefetch switch (default true). */
    public static final String PREFETCH_PROPERTY = "lazypages.prefetch";
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(120);
    private static final long SAMPLE_NANOS = 2_000_000;

    private final Path toucher;
    private final Path floorServer;
    private final Path stubsDir;
    private final Path work;
    private final boolean ownWork;
    private final Consumer<String> say;
    private final Map<String, FloorServer> floors = new HashMap<>();
    /** Ours' source side (dump, page server) in a JVM of its own ({@link SourceJvm}). */
    private final boolean sourceJvm = Boolean.getBoolean(SOURCE_JVM_PROPERTY);
    private int runs;

    /**
     * @param stubsDir native-stubs' binaries (null: $LAZYPAGES_STUBS_DIR, or next to the jar)
     * @param workDir  where images, logs and outputs go (null: a temporary directory, removed at close)
     * @param say      progress lines
     */
    public TouchRig(Path stubsDir, Path workDir, Consumer<String> say) throws IOException {
        this.stubsDir = stubsDir;
        this.toucher = NativeStubs.locate("toucher", stubsDir);
        this.floorServer = NativeStubs.locate("floor-server", stubsDir);
        this.ownWork = workDir == null;
        this.work = workDir != null ? Files.createDirectories(workDir) : Files.createTempDirectory("lazy-bench-touch");
        this.say = say;
    }

    /** Runs {@code spec} through {@code pipeline} ({@code ours} or {@code floor}). */
    public TouchRun run(String pipeline, TouchSpec spec) throws Exception {
        if (pipeline.equals("floor") && spec.backgroundCap() > 0) {
            throw new IllegalArgumentException("the floor has no bandwidth cap: " + spec);
        }
        Path dir = Files.createDirectories(work.resolve(pipeline + "-" + (++runs)));
        try {
            return switch (pipeline) {
                case "floor" -> runFloor(spec, dir);
                case "ours" -> runOurs(spec, dir);
                default -> throw new IllegalArgumentException("unknown pipeline " + pipeline);
            };
        } finally {
            if (Boolean.getBoolean("lazybench.keepTouches") && Files.exists(dir.resolve("touches.txt"))) {
                Files.copy(dir.resolve("touches.txt"), work.resolve(pipeline + "-" + runs + "-touches.txt"));
            }
            RestoreBench.deleteTree(dir);
        }
    }

    /** {@code -Dlazybench.sourceJvm=true}: ours' source side runs in a JVM of its own. */
    public static final String SOURCE_JVM_PROPERTY = "lazybench.sourceJvm";

    /** The report's note on {@link #quietCompilers}. */
    static final String QUIET_NOTE = "before each round (floor and ours alike) this JVM waits until its JIT compilers have "
            + "used under 1 ms of CPU in 100 ms (at most 3 s; ours: before the restore, and with the background off also "
            + "after it): the compiles that a round's dump and restore queue (code that runs once per round; in a real "
            + "migration in the source's JVM, or before the process runs) would otherwise run beside the touches; what the "
            + "JIT does during the touches is still counted (-D" + "lazybench.quietJit=false: no wait)";

    /** The system property that turns off {@link #quietCompilers} ({@code false}), for comparison. */
    public static final String QUIET_JIT_PROPERTY = "lazybench.quietJit";

    /**
     * Before a round's measured part, waits (at most 3 s) until this JVM's JIT compilers have
     * been quiet for 100 ms ({@link JvmActivity#awaitQuietCompilers}); the ms waited. The floor's
     * rounds wait too: the compiles an earlier round of ours queued would run beside them.
     */
    static long quietCompilers() {
        return "false".equals(System.getProperty(QUIET_JIT_PROPERTY)) ? 0 : JvmActivity.awaitQuietCompilers(100, 3000);
    }

    /** How long a run may take: every touch a fault over the link, plus slack. */
    private static Duration runTimeout(TouchSpec s) {
        long perFault = 2 * s.delay().toMillis() + 5;
        return Duration.ofSeconds(120).plusMillis(s.touches() * perFault + (long) s.touches() * s.intervalMicros() / 1000);
    }

    // ---- the floor ----------------------------------------------------------------------------

    private TouchRun runFloor(TouchSpec s, Path dir) throws Exception {
        FloorServer fs = floors.get(s.pages() + "/" + s.seed());
        if (fs == null) {
            fs = FloorServer.start(floorServer, s.pages(), s.seed(), work.resolve("floor-server-" + floors.size() + ".log"));
            floors.put(s.pages() + "/" + s.seed(), fs);
        }
        Path out = dir.resolve("touches.txt");
        Path log = dir.resolve("toucher.log");
        JvmActivity jvm0;
        JvmActivity jvm;
        long quietMs;
        KernelCpu kernel;
        String kernelLine;
        try (DelayProxy proxy = s.delay().isZero() ? null : DelayProxy.start(fs.address(), s.delay())) {
            InetSocketAddress at = proxy != null ? proxy.address() : fs.address();
            List<String> cmd = toucherArgs(s, out);
            cmd.add("--floor");
            cmd.add(at.getAddress().getHostAddress() + ":" + at.getPort());
            if (s.background()) {
                cmd.add("--bulk");
            }
            quietMs = quietCompilers();
            jvm0 = JvmActivity.now();
            kernel = KernelCpu.start();
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
            Duration timeout = runTimeout(s);
            if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                p.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
                throw new BenchFailure("the floor toucher did not finish within " + timeout + "; log: " + tail(log));
            }
            if (p.exitValue() != 0) {
                throw new BenchFailure("the floor toucher exited with " + p.exitValue() + ": " + tail(log));
            }
            jvm = JvmActivity.now().since(jvm0);
            kernelLine = kernel.since();
        }
        ToucherResult t = ToucherResult.parse(Files.readString(out, StandardCharsets.UTF_8));
        List<double[]> progress = new ArrayList<>();
        for (long[] p : t.progress()) {
            progress.add(new double[] {p[0] / 1e6, p[1] * 4096.0});
        }
        long bytes = s.background() ? s.bytes() : 0;
        return new TouchRun("floor", s, t, bytes, t.allInNanos(), t.touchStartNanos() - t.transferStartNanos(), progress,
                "fault thread " + t.faultPages() + " pages, bulk " + Math.max(0, t.bulkPages()) + " pages; waited "
                + quietMs + " ms for a quiet JIT; during the touches " + kernelLine, jvm, kernel.totalMillis());
    }

    private List<String> toucherArgs(TouchSpec s, Path out) {
        List<String> cmd = new ArrayList<>(List.of(toucher.toString(), "--pages", Integer.toString(s.pages()),
                "--touches", Integer.toString(s.touches()), "--order", s.random() ? "random" : "sequential",
                "--seed", Long.toString(s.seed()), "--interval-us", Integer.toString(s.intervalMicros()),
                "--out", out.toString()));
        return cmd;
    }

    // ---- ours ---------------------------------------------------------------------------------

    private TouchRun runOurs(TouchSpec s, Path dir) throws Exception {
        String before = System.getProperty(PREFETCH_PROPERTY); // put back afterwards: later benchmarks run with the defaults
        System.setProperty(PREFETCH_PROPERTY, Boolean.toString(s.prefetch()));
        try {
            return runOursWithProperty(s, dir);
        } finally {
            if (before == null) {
                System.clearProperty(PREFETCH_PROPERTY);
            } else {
                System.setProperty(PREFETCH_PROPERTY, before);
            }
        }
    }

    private TouchRun runOursWithProperty(TouchSpec s, Path dir) throws Exception {
        Path out = dir.resolve("touches.txt");
        Path log = dir.resolve("toucher.log");
        Path go = dir.resolve("go");
        Path img = dir.resolve("img");
        List<String> cmd = toucherArgs(s, out);
        cmd.add("--wait-file");
        cmd.add(go.toString());
        int pid = Features.spawnDetachedWithLog(log, cmd.getFirst(), cmd.subList(1, cmd.size()).toArray(String[]::new));
        FrozenProcess frozen = null;
        PageServer server = null;
        DelayProxy proxy = null;
        SourceJvm source = null;
        PageClient client = null;
        RemoteLazySource remote = null;
        ImageLazyHandoff handoff = null;
        int restored = -1;
        Sampler sampler = null;
        try {
            awaitLine(pid, log, l -> l.startsWith("READY "), READY_TIMEOUT);
            String token;
            InetSocketAddress at;
            if (sourceJvm) {
                source = SourceJvm.start(pid, img, dir.resolve("source.log"));
                token = source.token;
                at = source.address;
            } else {
                frozen = Dumper.dumpLazy(pid, DumpOptions.of(img));
                token = Long.toHexString(System.nanoTime()) + Long.toHexString(Double.doubleToLongBits(Math.random()));
                server = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), provider(frozen), token);
                at = server.localAddress();
            }
            if (!s.delay().isZero()) {
                proxy = DelayProxy.start(at, s.delay());
                at = proxy.address();
            }
            client = PageClient.connect(at, token);
            remote = new RemoteLazySource(client, remoteRuns(img));
            LazyPageServer.Options lo = LazyPageServer.Options.defaults().withBackground(s.background())
                    .withBackgroundBandwidth(s.backgroundCap());
            if (!s.prefetch()) {
                lo = lo.withPrefetchPages(0);
            }
            handoff = new ImageLazyHandoff(lo);
            ImageLazyHandoff h = handoff;
            PageServer srv = server;
            sampler = new Sampler(srv != null ? srv::servedPages : () -> {
                long p = h.pendingPages(); // delivered pages: the page server's count is in the other JVM
                return p < 0 ? 0 : h.remotePages() - p;
            }, s.background()); // no transfer to plot without the background: no thread waking every 2 ms
            long quietMs = quietCompilers(); // the dump's compiles: before the process runs
            ThreadCpu cpu = ThreadCpu.start();
            Restorer.Result res = Restorer.restore(Restorer.Options.eager(img).withStub(stubsDir).withRemote(remote)
                    .withLazy(new TimedHandoff(handoff, sampler)));
            restored = res.pid();
            if (!s.background()) {
                quietMs += quietCompilers(); // the restore's: nothing moves before the first touch
            }
            JvmActivity jvm0 = JvmActivity.now();
            KernelCpu kernel = KernelCpu.start();
            Files.createFile(go);
            Duration timeout = runTimeout(s);
            awaitLine(restored, log, l -> l.startsWith("DONE "), timeout, DONE_POLL_NANOS); // seldom: the toucher times itself
            JvmActivity jvm = JvmActivity.now().since(jvm0);
            String kernelLine = kernel.since();
            LazyStats stats = null;
            if (s.background()) {
                try {
                    stats = handoff.completion().get(timeout.toMillis(), TimeUnit.MILLISECONDS);
                } catch (TimeoutException e) {
                    throw new BenchFailure("our engine did not bring every page in within " + timeout);
                } catch (ExecutionException e) {
                    throw new BenchFailure("our lazy page server failed: " + e.getCause().getMessage());
                }
                if (stats.targetExited()) {
                    throw new BenchFailure("the restored toucher exited before every page was in; log: " + tail(log));
                }
            }
            sampler.stop();
            String cpuLine = cpu.since(restored, "toucher") + (source != null ? "; source JVM " + source.cpuMillis() : "");
            String detail = (stats != null ? stats.toString()
                    : server == null ? "page server in its own JVM"
                    : "page server served " + server.servedPages() + " pages in " + server.servedRequests() + " requests")
                    + "; waited " + quietMs + " ms for a quiet JIT; " + cpuLine + "; during the touches " + kernelLine;
            ToucherResult t = ToucherResult.parse(Files.readString(out, StandardCharsets.UTF_8));
            if (stats == null) { // background off: the lazy server completes once its target is gone
                killToucher(restored);
                restored = -1;
                try {
                    LazyStats st = handoff.completion().get(10, TimeUnit.SECONDS);
                    detail = "fault service " + LazyStats.percentiles(st.copyLatency()) + "; " + detail;
                } catch (TimeoutException | ExecutionException e) {
                    detail = "(no lazy server statistics: " + e + "); " + detail;
                }
            }
            long bytes = stats != null ? handoff.remotePages() * (long) Posix.pageSize() : 0;
            long allIn = stats != null ? stats.timeToCompletion().toNanos() : -1;
            return new TouchRun("ours", s, t, bytes, allIn, t.touchStartNanos() - sampler.startNanos, sampler.progress(), detail,
                    jvm, kernel.totalMillis());
        } finally {
            if (sampler != null) {
                sampler.stop();
            }
            if (restored > 0) {
                killToucher(restored);
            }
            if (handoff != null) {
                handoff.close();
            }
            if (remote != null) {
                remote.close();
            }
            if (client != null) {
                client.close();
            }
            if (source != null) {
                source.close(); // kills the frozen original
            }
            if (frozen != null) {
                frozen.commitAndKill();
            } else {
                killToucher(pid);
            }
            if (server != null) {
                server.close();
            }
            if (proxy != null) {
                proxy.close();
            }
        }
    }

    static PageProvider provider(FrozenProcess frozen) {
        return new PageProvider() {
            @Override
            public int pageSize() {
                return frozen.pageSize();
            }

            @Override
            public void readPages(long vaddr, int nrPages, ByteBuffer directDst) throws IOException {
                try {
                    frozen.readPages(vaddr, nrPages, directDst);
                } catch (RuntimeException e) {
                    throw new IOException(e.getMessage(), e);
                }
            }
        };
    }

    private static List<LazySource.Run> remoteRuns(Path img) throws IOException {
        try (ImageReader r = ImageReader.open(img)) {
            int imagePid = r.image().processes().getProcesses(0).getPid();
            try (ImageLazySource src = ImageLazySource.open(r, imagePid)) {
                return src.remoteRuns();
            }
        }
    }

    /** Samples the pages in (the page server's pages served, or delivered) every 2 ms, from the lazy server's start on. */
    private static final class Sampler {
        private final java.util.function.LongSupplier pagesIn;
        private final List<long[]> samples = new ArrayList<>();
        private volatile boolean stop;
        private volatile long startNanos;
        private volatile long startPages;
        private Thread thread;

        private final boolean sample;

        /** {@code sample}: every 2 ms (else only the start and the end). */
        Sampler(java.util.function.LongSupplier pagesIn, boolean sample) {
            this.pagesIn = pagesIn;
            this.sample = sample;
        }

        /** The lazy page server is about to start: time zero. */
        void started() {
            startPages = pagesIn.getAsLong();
            startNanos = System.nanoTime();
            if (!sample) {
                synchronized (samples) {
                    samples.add(new long[] {0, 0});
                }
                return;
            }
            thread = Thread.ofPlatform().daemon().name("touch-sampler").start(this::loop);
        }

        private void loop() {
            long next = startNanos;
            while (!stop) {
                long now = System.nanoTime();
                synchronized (samples) {
                    samples.add(new long[] {now - startNanos, pagesIn.getAsLong() - startPages});
                }
                next += SAMPLE_NANOS;
                long wait = next - System.nanoTime();
                if (wait > 0) {
                    LockSupport.parkNanos(wait);
                }
            }
        }

        void stop() {
            if (stop) {
                return;
            }
            stop = true;
            Thread t = thread;
            if (t != null) {
                try {
                    t.join();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            if (t != null || (!sample && startNanos != 0)) {
                synchronized (samples) { // the last one once the transfer is over
                    samples.add(new long[] {System.nanoTime() - startNanos, pagesIn.getAsLong() - startPages});
                }
            }
        }

        /** {ms, bytes} pairs. */
        List<double[]> progress() {
            int ps = (int) Posix.pageSize();
            synchronized (samples) {
                return samples.stream().map(x -> new double[] {x[0] / 1e6, x[1] * (double) ps}).toList();
            }
        }
    }

    /** An {@link ImageLazyHandoff} that starts the sampler's clock when the lazy page server starts. */
    private record TimedHandoff(ImageLazyHandoff handoff, Sampler sampler) implements LazyHandoff {
        @Override
        public long uffdFeatures() {
            return handoff.uffdFeatures();
        }

        @Override
        public void start(int pid, int imagePid, Path imagesDir, Userfaultfd uffd, List<Region> regions) throws Exception {
            start(pid, imagePid, imagesDir, uffd, regions, null);
        }

        @Override
        public void start(int pid, int imagePid, Path imagesDir, Userfaultfd uffd, List<Region> regions, LazySource remote)
                throws Exception {
            sampler.started();
            handoff.start(pid, imagePid, imagesDir, uffd, regions, remote);
        }
    }

    // ---- processes ----------------------------------------------------------------------------

    /**
     * Polls {@code log} until a line matches; fails when {@code pid} dies first or the time is up.
     * Runs while the faults are measured, in the JVM that serves them: it allocates next to
     * nothing (a stat per poll, every {@code pollNanos}: 1 ms, 20 ms for DONE; the log is read only
     * when it grew, the process checked every 50 ms), so that it causes no garbage collection
     * pause in the measurement.
     */
    static String awaitLine(int pid, Path log, Predicate<String> wanted, Duration timeout) {
        return awaitLine(pid, log, wanted, timeout, 1_000_000);
    }

    /**
     * How often the wait for the toucher's DONE looks at its log: every 20 ms, not every 1 ms,
     * so that this thread does not wake 1000 times a second on the CPUs the touches are measured on.
     */
    private static final long DONE_POLL_NANOS = 20_000_000;

    static String awaitLine(int pid, Path log, Predicate<String> wanted, Duration timeout, long pollNanos) {
        long deadline = System.nanoTime() + timeout.toNanos();
        java.io.File f = log.toFile();
        long seen = -1;
        long nextAliveCheck = 0;
        while (true) {
            long now = System.nanoTime();
            boolean check = now - nextAliveCheck >= 0;
            boolean alive = !check || isAlive(pid); // before reading: no last line is missed
            long len = f.length();
            if (len != seen || !alive) {
                seen = len;
                for (String l : lines(log)) {
                    if (wanted.test(l)) {
                        return l;
                    }
                }
            }
            if (!alive) {
                throw new BenchFailure("toucher pid " + pid + " died; log: " + tail(log));
            }
            if (now - deadline > 0) {
                throw new BenchFailure("toucher pid " + pid + " printed no expected line within " + timeout + "; log: " + tail(log));
            }
            if (check) {
                nextAliveCheck = now + 50_000_000;
            }
            LockSupport.parkNanos(pollNanos);
        }
    }

    private static boolean isAlive(int pid) {
        char st = Memtouch.state(pid);
        return st != 'Z' && st != 'X';
    }

    /** SIGKILLs {@code pid} if it still runs the toucher, and waits until it is gone. */
    private static void killToucher(int pid) {
        try {
            if (!Files.readSymbolicLink(Path.of("/proc/" + pid + "/exe")).getFileName().toString().equals("toucher")) {
                return;
            }
            Posix.kill(pid, Posix.SIGKILL);
        } catch (IOException | SyscallException e) {
            return; // gone
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (isAlive(pid) && System.nanoTime() - deadline < 0) {
            LockSupport.parkNanos(1_000_000);
        }
    }

    private static List<String> lines(Path log) {
        try {
            return Files.readAllLines(log, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            return List.of();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static String tail(Path log) {
        List<String> l = lines(log);
        return String.join(" | ", l.subList(Math.max(0, l.size() - 5), l.size()));
    }

    @Override
    public void close() {
        floors.values().forEach(FloorServer::close);
        floors.clear();
        if (ownWork) {
            RestoreBench.deleteTree(work);
        }
    }

    /** A running floor-server. */
    static final class FloorServer implements AutoCloseable {
        private final Process process;
        private final InetSocketAddress address;

        private FloorServer(Process process, InetSocketAddress address) {
            this.process = process;
            this.address = address;
        }

        /** Starts floor-server for {@code pages} pages with {@code seed}; returns once it listens on loopback. */
        static FloorServer start(Path binary, int pages, long seed, Path log) throws IOException {
            Process p = new ProcessBuilder(binary.toString(), "--pages", Integer.toString(pages), "--seed", Long.toString(seed))
                    .redirectErrorStream(true).redirectOutput(log.toFile()).start();
            long deadline = System.nanoTime() + READY_TIMEOUT.toNanos();
            while (true) {
                for (String l : lines(log)) {
                    if (l.startsWith("LISTENING port=")) {
                        int port = Integer.parseInt(l.substring("LISTENING port=".length()).split(" ")[0]);
                        return new FloorServer(p, new InetSocketAddress(InetAddress.getLoopbackAddress(), port));
                    }
                }
                if (!p.isAlive() || System.nanoTime() - deadline > 0) {
                    p.destroyForcibly();
                    throw new BenchFailure("floor-server did not start listening: " + tail(log));
                }
                LockSupport.parkNanos(2_000_000);
            }
        }

        InetSocketAddress address() {
            return address;
        }

        @Override
        public void close() {
            process.destroyForcibly();
            try {
                process.waitFor(5, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
