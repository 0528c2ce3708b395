package dev.lazypages.proc;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.time.Duration;
import java.util.regex.MatchResult;

/** Starting the C workloads for the tests of this package, and checking they are still healthy. */
final class Workloads {
    static final Duration TIMEOUT = Duration.ofSeconds(10);

    private Workloads() {
    }

    /** memtouch with {@code mib} MiB and {@code threads} workers, after READY and REGION. */
    static Stubs.Running memtouch(int mib, int threads) {
        Requires.root();
        Requires.ptrace();
        Stubs.Running r = Stubs.spawn("memtouch", "--size-mib", Integer.toString(mib), "--threads", Integer.toString(threads));
        r.awaitLine("REGION addr=.*", TIMEOUT);
        return r;
    }

    /** sleeper in {@code mode} (read, nanosleep, pause), after READY. */
    static Stubs.Running sleeper(String mode) {
        Requires.root();
        Requires.ptrace();
        Stubs.Running r = Stubs.spawn("sleeper", "--mode", mode);
        r.awaitLine("READY pid=\\d+", TIMEOUT);
        return r;
    }

    /** The REGION line of a memtouch: group 1 the address (hex), group 2 the size in bytes. */
    static MatchResult region(Stubs.Running memtouch) {
        return memtouch.awaitLine("REGION addr=0x([0-9a-f]+) size=(\\d+) pages=(\\d+).*", TIMEOUT);
    }

    /** The highest "PREFIX n" line so far (0 if none). */
    static int lastCount(Stubs.Running r, String prefix) {
        int last = 0;
        for (String line : r.lines()) {
            if (line.startsWith(prefix + " ")) {
                last = Math.max(last, Integer.parseInt(line.substring(prefix.length() + 1).strip()));
            }
        }
        return last;
    }

    /** Waits for {@code more} further "PREFIX n" lines than there are now: the process runs on. */
    static void awaitMore(Stubs.Running r, String prefix, int more, Duration timeout) {
        int target = lastCount(r, prefix) + more;
        r.awaitLine(line -> line.startsWith(prefix + " ") && Integer.parseInt(line.substring(prefix.length() + 1).strip()) >= target,
                timeout);
    }

    /** memtouch keeps beating and verifies its memory. */
    static void assertMemtouchHealthy(Stubs.Running memtouch) {
        awaitMore(memtouch, "HEARTBEAT", 1, TIMEOUT);
        memtouch.signal(Posix.SIGUSR1);
        String line = memtouch.awaitLine(l -> l.startsWith("VERIFY"), TIMEOUT);
        assertTrue(line.startsWith("VERIFY OK"), memtouch + " failed its check: " + line);
    }

    /** TracerPid of a thread (0 when nobody traces it). */
    static int tracerPid(int pid, int tid) {
        try {
            for (String line : Files.readAllLines(Proc.dir(pid).resolve("task/" + tid + "/status"))) {
                if (line.startsWith("TracerPid:")) {
                    return Integer.parseInt(line.substring(10).strip());
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        throw new IllegalStateException("no TracerPid in status of " + tid);
    }

    /** The gadget address from lp-stub.info. */
    static long lpStubGadget() {
        try {
            for (String line : Files.readAllLines(Stubs.dir().resolve("lp-stub.info"))) {
                if (line.startsWith("gadget=0x")) {
                    return Long.parseUnsignedLong(line.substring(9), 16);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        throw new IllegalStateException("no gadget= line in lp-stub.info");
    }
}
