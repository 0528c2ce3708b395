package dev.lazypages.ffm.testing;

import dev.lazypages.ffm.Features;
import dev.lazypages.ffm.Posix;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;


/**
 * What a test needs from the machine it runs on. Each method probes once per JVM (quickly, and
 * for real: it makes the calls the tests make) and returns when the capability is there.
 * When it is not, the test is skipped with the reason, except in CI (environment
 * {@code CI=true}) or when {@code LAZYPAGES_REQUIRE_ALL=1}: there a missing capability fails
 * the test with "required in CI: reason", so that a runner without it cannot pass by skipping.
 */
public final class Requires {
    private Requires() {
    }

    /** Effective user id 0. */
    public static void root() {
        require(RootProbe.CAUSE);
    }

    /** This thread may PTRACE_SEIZE a process that is not its child (what the tests do with stubs). */
    public static void ptrace() {
        require(PtraceProbe.CAUSE);
    }

    /** userfaultfd(2) opens and answers UFFDIO_API. */
    public static void userfaultfd() {
        require(UserfaultfdProbe.CAUSE);
    }

    /** The PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7+). */
    public static void pagemapScan() {
        require(PagemapScanProbe.CAUSE);
    }

    /** userfaultfd with UFFD_FEATURE_WP_ASYNC (Linux 6.7+, anonymous memory write-protect tracking). */
    public static void uffdWpAsync() {
        require(UffdWpAsyncProbe.CAUSE);
    }

    /** True when a missing capability fails tests instead of skipping them. */
    public static boolean strict() {
        return "true".equalsIgnoreCase(System.getenv("CI")) || "1".equals(System.getenv("LAZYPAGES_REQUIRE_ALL"));
    }

    private static void require(String cause) {
        if (cause == null) {
            return;
        }
        if (strict()) {
            Assertions.fail("required in CI: " + cause);
        }
        Assumptions.abort(cause);
    }

    // Root is a fact of this JVM; every other answer comes from the same probes that
    // `lazy-dump check` prints (dev.lazypages.ffm.Features), which really exercise the facility.

    private static final class RootProbe {
        static final String CAUSE = Posix.geteuid() == 0 ? null : "needs root (euid is " + Posix.geteuid() + ")";
    }

    private static final class PtraceProbe {
        static final String CAUSE = cause(Features.ptrace());
    }

    private static final class UserfaultfdProbe {
        static final String CAUSE = cause(Features.userfaultfd());
    }

    private static final class PagemapScanProbe {
        static final String CAUSE = cause(Features.pagemapScan());
    }

    private static final class UffdWpAsyncProbe {
        static final String CAUSE = cause(Features.uffdWpAsync());
    }

    private static String cause(Features.Probe p) {
        return p.available() ? null : p.name() + " unavailable: " + p.detail();
    }
}
