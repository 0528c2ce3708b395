package dev.lazypages.migrate;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

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
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (true) {
            List<String> m = lines().stream().filter(wanted).toList();
            if (m.size() >= n) {
                return m.getLast();
            }
            if (!alive(pid)) {
                fail("pid " + pid + " died (state " + Stubs.stateOf(pid) + "); log:\n" + original.tail());
            }
            if (System.nanoTime() - deadline > 0) {
                fail("pid " + pid + ": no expected line within " + TIMEOUT + "; log:\n" + original.tail());
            }
            sleep(10);
        }
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
        char s = Stubs.stateOf(pid);
        return s != 'Z' && s != 'X';
    }

    static void awaitGone(int pid) {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (alive(pid)) {
            if (System.nanoTime() - deadline > 0) {
                fail("pid " + pid + " is still alive (state " + Stubs.stateOf(pid) + ")");
            }
            sleep(5);
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
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
