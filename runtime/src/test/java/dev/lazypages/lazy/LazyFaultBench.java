package dev.lazypages.lazy;

import dev.lazypages.ffm.PageBuffer;
import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.Userfaultfd;
import dev.lazypages.image.ImageReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.BitSet;
import java.util.List;
import java.util.Random;
import org.HdrHistogram.Histogram;

/**
 * Fault service latency from a local image: {@code faults} first touches, in random order, of a
 * registered mapping of as many stored pages (no background, no prefetch unless given), each raised
 * by pwrite(2) of the page from one thread. Prints the server's own latency (message available
 * → UFFDIO_COPY done) and the toucher's (pwrite start → return: the whole fault round trip).
 *
 * <p>Run: {@code java --enable-native-access=ALL-UNNAMED -cp <test classpath>
 * dev.lazypages.lazy.LazyFaultBench [faults=10000] [prefetch=0] [background=false]}
 */
public final class LazyFaultBench {
    private LazyFaultBench() {
    }

    public static void main(String[] args) throws Exception {
        int faults = args.length > 0 ? Integer.parseInt(args[0]) : 10_000;
        int pages = faults; // every page is faulted once, in random order
        int prefetch = args.length > 1 ? Integer.parseInt(args[1]) : 0;
        boolean background = args.length > 2 && Boolean.parseBoolean(args[2]);
        Path dir = Files.createTempDirectory("lazy-bench");
        System.out.printf("warm-up: %d faults%n", faults / 2);
        run(dir.resolve("warm"), faults / 2, pages / 2, prefetch, background, false);
        run(dir.resolve("run"), faults, pages, prefetch, background, true);
    }

    private static void run(Path dir, int faults, int pages, int prefetch, boolean background, boolean print)
            throws Exception {
        int ps = LazyFixture.PS;
        PageBuffer mem = Posix.mmapAnonymous((long) pages * ps);
        BitSet all = new BitSet();
        all.set(0, pages);
        LazyFixture.write(dir, mem.address(), pages, all, 1);
        Path out = Files.createTempFile("lazy-bench", ".page");
        int fd = Posix.open(out.toString(), Posix.O_RDWR, 0);
        try (ImageReader reader = ImageReader.open(dir); ImageLazySource source = ImageLazySource.open(reader, LazyFixture.PID)) {
            Userfaultfd uffd = Userfaultfd.open(true);
            uffd.api(Userfaultfd.FEATURE_EVENT_REMOVE | Userfaultfd.FEATURE_EVENT_UNMAP | Userfaultfd.FEATURE_EVENT_REMAP);
            uffd.register(mem.address(), mem.byteSize(), Userfaultfd.REGISTER_MODE_MISSING);
            LazyPageServer server = new LazyPageServer(uffd, List.of(new AddressRange(mem.address(), mem.address() + mem.byteSize())),
                    source, LazyPageServer.Options.defaults().withPrefetchPages(prefetch).withBackground(background));
            server.start();
            Histogram seen = new Histogram(3);
            int[] order = new Random(42).ints(0, pages).distinct().limit(pages).toArray(); // a random permutation
            long t0 = System.nanoTime();
            for (int p : order) { // this thread is in pwrite(2) (native) while it faults: safepoint-safe
                long s = System.nanoTime();
                mem.pages(p, 1).writeTo(fd, 0);
                seen.recordValue(System.nanoTime() - s);
            }
            long elapsed = System.nanoTime() - t0;
            // finish: let the background (or nothing) complete, then stop
            LazyStats st = server.completion().get(); // every page touched or swept: it completes
            server.close();
            if (print) {
                System.out.printf("%d random faults over %d pages, prefetch %d, background %s: %.0f faults/s%n", order.length,
                        pages, prefetch, background, order.length / (elapsed / 1e9));
                System.out.println("toucher (pwrite round trip): " + LazyStats.percentiles(seen));
                System.out.println("server: " + st);
            }
        } finally {
            Posix.closeQuietly(fd);
            Files.deleteIfExists(out);
        }
    }
}
