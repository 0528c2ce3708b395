package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Stubs;
import java.time.Duration;
import java.util.List;
import java.util.function.Predicate;

/**
 * memtouch for migration tests: the original (a detached stub with its log) and, once
 * migrated, the pid it runs as now, writing to the same log. close kills both.
 */
final class Memtouch implements AutoCloseable {
    static final Duration TIMEOUT = Duration.ofSeconds(30);
    private static final Predicate<String> VERIFY = l -> l.startsWith("VERIFY");
    private static final Predicate<String> BEAT = l -> l.startsWith("HEARTBEAT ");

    final Stubs.Running original;
    volatile int pid;

    private Memtouch(Stubs.Running r) {
        this.original = r;
        this.pid = r.pid();
    }

    static Memtouch start(int mib, int threads, int dirtyMibPerSec) {
        Stubs.Running r = Stubs.spawn("memtouch", "--size-mib", Integer.toString(mib), "--threads", Integer.toString(threads),
                "--dirty-mib-per-sec", Integer.toString(dirtyMibPerSec));
        Memtouch m = new Memtouch(r);
        m.awaitCount(BEAT, 1);
        return m;
    }

    List<String> lines() {
        return original.lines();
    }

    long count(Predicate<String> p) {
        return lines().stream().filter(p).count();
    }

    long beats() {
        return count(BEAT);
    }

    String awaitCount(Predicate<String> wanted, long n) {
        int p = pid;
        return Stubs.awaitMatches(p, original.log(), "pid " + p, wanted, n, TIMEOUT, 20).getLast();
    }

    /** SIGUSR1 to the current pid; the next VERIFY line must be VERIFY OK. */
    void assertVerifies() {
        long n = count(VERIFY);
        Posix.kill(pid, Posix.SIGUSR1);
        String v = awaitCount(VERIFY, n + 1);
        assertTrue(v.startsWith("VERIFY OK"), "pid " + pid + " failed its check:\n" + original.tail());
    }

    /** Waits for {@code more} further heartbeats. */
    void awaitBeats(int more) {
        awaitCount(BEAT, beats() + more);
    }

    static boolean alive(int pid) {
        return Stubs.isAlive(pid);
    }

    static void awaitGone(int pid) {
        Stubs.awaitDead(pid, TIMEOUT);
    }

    @Override
    public void close() {
        if (pid != original.pid()) {
            MigrationDestination.kill(pid);
            awaitGone(pid);
        }
        original.close();
    }
}
