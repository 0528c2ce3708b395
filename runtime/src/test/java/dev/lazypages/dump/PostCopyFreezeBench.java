package dev.lazypages.dump;

import dev.lazypages.ffm.testing.Requires;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;

/**
 * Prints the frozen window of a 256 MiB post-copy lazy final dump and its breakdown by step,
 * five times (the first warms the JIT). Off in the normal run;
 * {@code -Dtest=PostCopyFreezeBench -Dlp.bench=true} prints it.
 */
@EnabledIfSystemProperty(named = "lp.bench", matches = "true")
class PostCopyFreezeBench {
    @TempDir
    Path tmp;

    @Test
    void frozenWindowOf256MiBPostCopy() throws Exception {
        Requires.root();
        Requires.ptrace();
        for (int i = 0; i < 5; i++) {
            try (LogProcess w = LogProcess.memtouch(tmp, 256, 2, 16)) {
                w.awaitBeats(1);
                try (FrozenProcess f = Dumper.dumpLazy(w.pid, DumpOptions.of(tmp.resolve("i" + i))
                        .withProgress(l -> {
                            if (l.startsWith("frozen window")) {
                                System.out.println(l);
                            }
                        }))) {
                    System.out.printf("run %d: frozen until ready %.1f ms, %d REMOTE pages%n", i, f.dump().frozenNanos() / 1e6,
                            f.remote().pageCount());
                    f.commitAndKill();
                }
            }
        }
    }
}
