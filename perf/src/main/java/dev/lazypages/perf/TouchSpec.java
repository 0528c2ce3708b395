package dev.lazypages.perf;

import java.time.Duration;
import java.util.Locale;

/**
 * One touch run of native-stubs' toucher, the same for both pipelines ({@link TouchRig}).
 *
 * @param pages          the region's size in 4 KiB pages (every page served by the pipeline)
 * @param touches        pages touched, each once (at most {@code pages})
 * @param random         seeded random order, else from the first page on
 * @param seed           the pattern's and the order's seed
 * @param intervalMicros touch i starts no earlier than start + i * this (a fixed rate); 0: back to back
 * @param background     whether the background transfer runs (ours: the lazy server's sweep; floor: its bulk stream)
 * @param prefetch       ours: the engine's prefetch (fault-time prefetch pages and {@code -Dlazypages.prefetch});
 *                       the floor has none
 * @param delay          one-way delay of the link ({@link DelayProxy}); zero: direct loopback
 * @param backgroundCap  ours: the background transfer's bandwidth cap in bytes/s (0: none; the floor has none)
 */
public record TouchSpec(int pages, int touches, boolean random, long seed, int intervalMicros, boolean background,
                        boolean prefetch, Duration delay, long backgroundCap) {
    public TouchSpec {
        if (pages < 1 || touches < 1 || touches > pages || intervalMicros < 0 || delay.isNegative() || backgroundCap < 0) {
            throw new IllegalArgumentException("need 1 <= touches <= pages, interval >= 0, a delay >= 0 and a cap >= 0: " + this);
        }
    }

    /** Without a bandwidth cap. */
    public TouchSpec(int pages, int touches, boolean random, long seed, int intervalMicros, boolean background,
                     boolean prefetch, Duration delay) {
        this(pages, touches, random, seed, intervalMicros, background, prefetch, delay, 0);
    }

    public TouchSpec withBackgroundCap(long bytesPerSecond) {
        return new TouchSpec(pages, touches, random, seed, intervalMicros, background, prefetch, delay, bytesPerSecond);
    }

    public TouchSpec withTouches(int n) {
        return new TouchSpec(pages, n, random, seed, intervalMicros, background, prefetch, delay, backgroundCap);
    }

    public TouchSpec withBackground(boolean on) {
        return new TouchSpec(pages, touches, random, seed, intervalMicros, on, prefetch, delay, backgroundCap);
    }

    public TouchSpec withPrefetch(boolean on) {
        return new TouchSpec(pages, touches, random, seed, intervalMicros, background, on, delay, backgroundCap);
    }

    public TouchSpec withSeed(long s) {
        return new TouchSpec(pages, touches, random, s, intervalMicros, background, prefetch, delay, backgroundCap);
    }

    public TouchSpec withDelay(Duration d) {
        return new TouchSpec(pages, touches, random, seed, intervalMicros, background, prefetch, d, backgroundCap);
    }

    public TouchSpec withOrder(boolean rnd) {
        return new TouchSpec(pages, touches, rnd, seed, intervalMicros, background, prefetch, delay, backgroundCap);
    }

    /** The region in bytes. */
    public long bytes() {
        return (long) pages * 4096;
    }

    /** For progress lines. */
    public String describe() {
        return String.format(Locale.ROOT, "%d MiB, %d %s touches%s, background %s, prefetch %s%s", bytes() >> 20, touches,
                random ? "random" : "sequential", intervalMicros > 0 ? " every " + intervalMicros + " µs" : "",
                background ? backgroundCap > 0 ? "on, capped at " + (backgroundCap >> 20) + " MiB/s" : "on" : "off",
                prefetch ? "on" : "off",
                delay.isZero() ? "" : ", " + delay.toMillis() + " ms one-way delay");
    }
}
