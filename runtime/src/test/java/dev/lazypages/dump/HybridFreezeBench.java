package dev.lazypages.dump;

import dev.lazypages.ffm.testing.Requires;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;

/**
 * Prints the frozen window of a hybrid lazy final dump (one pre-copy round of a memtouch of
 * {@code lp.mib} MiB, default 1024, dirtying 8 MiB/s, then the freeze) and its breakdown by
 * step, four times (the first warms the JIT). Off in the normal run;
 * {@code -Dtest=HybridFreezeBench -Dlp.bench=true} prints it.
 */
@EnabledIfSystemProperty(named = "lp.bench", matches = "true")
class HybridFreezeBench {
    @TempDir
    Path tmp;

    @Test
    void frozenWindowOfAHybridFinalDump() throws Exception {
        Requires.root();
        Requires.ptrace();
        int mib = Integer.getInteger("lp.mib", 1024);
        for (int i = 0; i < 4; i++) {
            try (LogProcess w = LogProcess.memtouch(tmp, mib, 2, 8)) {
                w.awaitBeats(1);
                try (PreCopySession s = PreCopySession.start(w.pid, Trackings.AUTO, null)) {
                    s.durable(false);
                    s.preDump(tmp.resolve("r" + i));
                    s.collect();
                    DumpOptions o = DumpOptions.of(tmp.resolve("f" + i)).withProgress(l -> {
                        if (l.startsWith("frozen window")) {
                            System.out.println(l);
                        }
                    });
                    FreezePrep prep = FreezePrep.read(w.pid); // as migrate does: before the freeze
                    long t0 = System.nanoTime();
                    try (FrozenProcess f = s.finalDumpLazy(o, prep)) {
                        System.out.printf("run %d: call to ready %.1f ms, frozen until ready %.1f ms, %d REMOTE pages%n", i,
                                (System.nanoTime() - t0) / 1e6, f.dump().frozenNanos() / 1e6, f.remote().pageCount());
                        f.commitAndKill();
                    }
                }
            }
        }
    }
}
