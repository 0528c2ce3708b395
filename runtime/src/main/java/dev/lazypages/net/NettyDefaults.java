package dev.lazypages.net;

import io.netty.util.ResourceLeakDetector;

/**
 * Netty settings for the tools' own processes (lazy-pages, lazy-dump, lazy-bench), set by their
 * {@code main} before any buffer is allocated; the tests keep Netty's defaults.
 *
 * <p>Netty's leak detector, at its default level (SIMPLE), wraps one buffer in 128 to watch it
 * (recording where it was allocated). On the fault path that made one fault in 128 slower, and
 * the wrapper class showing up now and then in the decoders' type profiles made the JIT throw
 * away and compile again code of the fault path while a process faulted: traced with
 * {@code -XX:+PrintCompilation} in lazy-bench fault-latency, C2 compiles of
 * {@code WrappedByteBuf} methods and {@code PageData.forEachRun} in a measured round after
 * three warm-up rounds, and that round's p99 at 1.5-3.4 ms. So it is off, unless
 * {@code -Dio.netty.leakDetection.level} asks for a level.
 */
public final class NettyDefaults {
    private NettyDefaults() {
    }

    /** Applies them (idempotent). */
    public static void apply() {
        if (System.getProperty("io.netty.leakDetection.level") == null && System.getProperty("io.netty.leakDetectionLevel") == null) {
            ResourceLeakDetector.setLevel(ResourceLeakDetector.Level.DISABLED);
        }
    }
}
