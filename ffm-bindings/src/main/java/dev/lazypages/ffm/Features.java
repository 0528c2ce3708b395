package dev.lazypages.ffm;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Probes of the kernel facilities live migration needs, each really exercised once (not
 * guessed from the kernel version) and cached: {@link Probe#available()},
 * {@link Probe#detail()} (what was found, or why not), {@link Probe#ensureAvailable()}.
 * {@code lazy-dump check} prints them; code and tests that need a facility ask here first.
 */
public final class Features {
    /** The result of one probe. */
    public record Probe(String name, boolean available, String detail) {
        /** Throws {@link UnsupportedOperationException} naming the facility and the cause when unavailable. */
        public void ensureAvailable() {
            if (!available) {
                throw new UnsupportedOperationException(name + " is not available: " + detail);
            }
        }
    }

    /** XSAVE state components by bit of XCR0 (Intel SDM vol. 1, 13.1). */
    private static final String[] XSTATE_COMPONENTS = {
        "x87", "sse", "avx", "mpx_bndregs", "mpx_bndcsr", "avx512_opmask", "avx512_zmm_hi256", "avx512_hi16_zmm",
        "pt", "pkru", "pasid", "cet_u", "cet_s", "hdc", "uintr", "lbr", "hwp", "amx_tilecfg", "amx_tiledata", "apx"
    };
    /** Offset of XCR0 in the software-usable bytes of the XSAVE area ptrace returns (arch/x86/include/asm/user.h; gdb reads it there too). */
    private static final int XSTATE_SW_XFEATURES = 464;

    private static volatile Probe ptrace;
    private static volatile long xcr0 = -1;
    private static volatile Probe uffd;
    private static volatile long uffdFeatures;
    private static volatile long uffdIoctls;
    private static volatile Probe uffdDevice;
    private static volatile Probe wpAsync;
    private static volatile Probe pagemapScan;
    private static volatile Probe softDirty;
    private static volatile Probe pidfdGetfd;
    private static volatile Probe prSetMmMap;

    private Features() {
    }

    /** ptrace: seize a child of ours, interrupt it, read its registers and xstate, detach. */
    public static synchronized Probe ptrace() {
        if (ptrace == null) {
            ptrace = probePtrace();
        }
        return ptrace;
    }

    private static Probe probePtrace() {
        int pid;
        try {
            pid = spawnDetached("/bin/sleep", "60");
        } catch (IOException e) {
            return new Probe("ptrace", false, "could not start a test child: " + e.getMessage());
        }
        try {
            Ptrace.seize(pid, Ptrace.O_EXITKILL);
            Ptrace.interrupt(pid);
            WaitStatus ws = Ptrace.waitpid(pid, Ptrace.WALL);
            if (!ws.stopped()) {
                return new Probe("ptrace", false, "seized child " + pid + " did not stop: " + ws);
            }
            Regs regs = Ptrace.getRegs(pid);
            byte[] xstate = Ptrace.getXstate(pid);
            if (xstate.length >= XSTATE_SW_XFEATURES + 8) {
                xcr0 = java.nio.ByteBuffer.wrap(xstate).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong(XSTATE_SW_XFEATURES);
            }
            Ptrace.detach(pid, 0);
            return new Probe("ptrace", true, "seized, interrupted and detached test child " + pid + " (rip=0x"
                    + Long.toHexString(regs.rip()) + ", xstate " + xstate.length + " bytes)" + yamaScope());
        } catch (SyscallException e) {
            return new Probe("ptrace", false, e.getMessage() + yamaScope());
        } finally {
            Libc.kill(pid, Posix.SIGKILL);
        }
    }

    private static String yamaScope() {
        Path p = Path.of("/proc/sys/kernel/yama/ptrace_scope");
        try {
            return Files.exists(p) ? "; yama ptrace_scope=" + Files.readString(p).trim() : "";
        } catch (IOException e) {
            return "";
        }
    }

    /**
     * Starts a program in a new session, not as a child the JVM waits for (the JDK reaps its
     * children on its own thread, which would swallow ptrace stops). Returns its pid.
     */
    public static int spawnDetached(String program, String... args) throws IOException {
        return spawnDetachedWithLog(Path.of("/dev/null"), program, args);
    }

    /** {@link #spawnDetached}, with stdout and stderr going to {@code log} (created or truncated). */
    public static int spawnDetachedWithLog(Path log, String program, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of("/bin/sh", "-c", "log=$1; shift; setsid \"$0\" \"$@\" </dev/null >\"$log\" 2>&1 & echo $!",
                program, log.toString()));
        cmd.addAll(List.of(args));
        Process sh = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(sh.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        try {
            if (!sh.waitFor(10, TimeUnit.SECONDS)) {
                sh.destroyForcibly();
                throw new IOException("shell starting " + program + " did not finish");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while starting " + program);
        }
        try {
            return Integer.parseInt(out);
        } catch (NumberFormatException e) {
            throw new IOException("could not start " + program + ": " + out);
        }
    }

    /** The XSAVE components enabled in XCR0 as the kernel reports them for a process, or empty if unknown. */
    public static List<String> xsaveComponents() {
        ptrace();
        long mask = xcr0;
        List<String> out = new ArrayList<>();
        if (mask == -1) {
            return out;
        }
        for (int b = 0; b < 64; b++) {
            if ((mask & (1L << b)) != 0) {
                out.add(b < XSTATE_COMPONENTS.length ? XSTATE_COMPONENTS[b] : "bit" + b);
            }
        }
        return out;
    }

    /** XCR0 of a process as the kernel reports it (-1 when unknown). */
    public static long xcr0() {
        ptrace();
        return xcr0;
    }

    /** userfaultfd(2) and UFFDIO_API: granted features and ioctls. */
    public static synchronized Probe userfaultfd() {
        if (uffd == null) {
            try (Userfaultfd u = Userfaultfd.open(true)) {
                Userfaultfd.Api api = u.api(0);
                uffdFeatures = api.features();
                uffdIoctls = api.ioctls();
                uffd = new Probe("userfaultfd", true, "features " + Userfaultfd.decode(api.features(), Userfaultfd.FEATURES)
                        + "; unprivileged_userfaultfd=" + sysctl("/proc/sys/vm/unprivileged_userfaultfd"));
            } catch (SyscallException e) {
                uffd = new Probe("userfaultfd", false, e.getMessage());
            }
        }
        return uffd;
    }

    /** Every UFFD_FEATURE_* bit UFFDIO_API offers (0 when userfaultfd is unavailable). */
    public static long userfaultfdFeatures() {
        userfaultfd();
        return uffdFeatures;
    }

    /** Every _UFFDIO_* ioctl bit UFFDIO_API reports. */
    public static long userfaultfdIoctls() {
        userfaultfd();
        return uffdIoctls;
    }

    /** /dev/userfaultfd (Linux 6.1+), the way for users without CAP_SYS_PTRACE. */
    public static synchronized Probe userfaultfdDevice() {
        if (uffdDevice == null) {
            if (!Files.exists(Path.of("/dev/userfaultfd"))) {
                uffdDevice = new Probe("/dev/userfaultfd", false, "no /dev/userfaultfd node");
            } else {
                try (Userfaultfd u = Userfaultfd.openDevice(true)) {
                    u.api(0);
                    uffdDevice = new Probe("/dev/userfaultfd", true, "USERFAULTFD_IOC_NEW and UFFDIO_API succeeded");
                } catch (SyscallException e) {
                    uffdDevice = new Probe("/dev/userfaultfd", false, e.getMessage());
                }
            }
        }
        return uffdDevice;
    }

    /** UFFD_FEATURE_WP_ASYNC with WP_UNPOPULATED (Linux 6.7+): write-protect tracking without faults to handle. */
    public static synchronized Probe uffdWpAsync() {
        if (wpAsync == null) {
            long want = Userfaultfd.FEATURE_WP_ASYNC | Userfaultfd.FEATURE_WP_UNPOPULATED | Userfaultfd.FEATURE_PAGEFAULT_FLAG_WP;
            if (!userfaultfd().available()) {
                wpAsync = new Probe("uffd_wp_async", false, "userfaultfd unavailable");
            } else if ((userfaultfdFeatures() & want) != want) {
                wpAsync = new Probe("uffd_wp_async", false, "UFFDIO_API does not offer "
                        + Userfaultfd.decode(want & ~userfaultfdFeatures(), Userfaultfd.FEATURES));
            } else {
                try (Userfaultfd u = Userfaultfd.open(true)) {
                    u.api(want);
                    wpAsync = new Probe("uffd_wp_async", true, "UFFDIO_API accepted WP_ASYNC, WP_UNPOPULATED, PAGEFAULT_FLAG_WP");
                } catch (SyscallException e) {
                    wpAsync = new Probe("uffd_wp_async", false, e.getMessage());
                }
            }
        }
        return wpAsync;
    }

    /** The PAGEMAP_SCAN ioctl on /proc/PID/pagemap (Linux 6.7+). */
    public static synchronized Probe pagemapScan() {
        if (pagemapScan == null) {
            try (Arena arena = Arena.ofConfined(); Pagemap pm = Pagemap.open(0)) {
                PageBuffer page = PageBuffer.allocate(arena, 1);
                page.putLong(0, 42);
                Pagemap.Regions regions = new Pagemap.Regions(arena, 4);
                int n = pm.scan(new Pagemap.ScanRequest(page.address(), page.address() + page.byteSize(), 0, 0, 0,
                        Pagemap.PAGE_IS_PRESENT, 0, Pagemap.PAGE_IS_PRESENT), regions);
                pagemapScan = n == 1
                        ? new Probe("pagemap_scan", true, "PAGEMAP_SCAN reported a page just written as present")
                        : new Probe("pagemap_scan", false, "PAGEMAP_SCAN ran but reported " + n + " regions for one written page");
            } catch (SyscallException e) {
                pagemapScan = new Probe("pagemap_scan", false, e.getMessage()
                        + (e.errno() == Errno.ENOTTY ? " (kernel older than 6.7)" : ""));
            }
        }
        return pagemapScan;
    }

    /** Soft-dirty bits: clear_refs 4, write a page, read bit 55 of its pagemap entry. */
    public static synchronized Probe softDirty() {
        if (softDirty == null) {
            try (Arena arena = Arena.ofConfined(); Pagemap pm = Pagemap.open(0)) {
                PageBuffer page = PageBuffer.allocate(arena, 1);
                page.putLong(0, 1);
                Pagemap.clearSoftDirty(0);
                long before = pm.entry(page.address());
                page.putLong(0, 2);
                long after = pm.entry(page.address());
                if (Pagemap.softDirty(after) && !Pagemap.softDirty(before)) {
                    softDirty = new Probe("soft_dirty", true, "bit 55 cleared by clear_refs 4 and set by a write");
                } else {
                    softDirty = new Probe("soft_dirty", false, "pagemap bit 55 " + (Pagemap.softDirty(before)
                            ? "stayed set after clear_refs 4" : "stayed clear after a write")
                            + " (kernel built without CONFIG_MEM_SOFT_DIRTY?)");
                }
            } catch (SyscallException e) {
                softDirty = new Probe("soft_dirty", false, e.getMessage());
            }
        }
        return softDirty;
    }

    /** pidfd_open and pidfd_getfd (Linux 5.6+), used to take a userfaultfd out of a target. */
    public static synchronized Probe pidfdGetfd() {
        if (pidfdGetfd == null) {
            try {
                int fd = Pidfd.stealFd(Posix.getpid(), 1);
                Posix.close(fd);
                pidfdGetfd = new Probe("pidfd_getfd", true, "pidfd_open and pidfd_getfd duplicated an fd of this process");
            } catch (SyscallException e) {
                pidfdGetfd = new Probe("pidfd_getfd", false, e.getMessage());
            }
        }
        return pidfdGetfd;
    }

    /** PR_SET_MM_MAP: the size query, then setting this process's own current values back. */
    public static synchronized Probe prSetMmMap() {
        if (prSetMmMap == null) {
            try {
                int size = Prctl.mmMapSize();
                if (size != Prctl.MM_MAP_SIZE) {
                    prSetMmMap = new Probe("pr_set_mm_map", false, "kernel expects struct prctl_mm_map of " + size
                            + " bytes, this build has " + Prctl.MM_MAP_SIZE);
                } else {
                    Prctl.setMmMap(selfMmMap());
                    prSetMmMap = new Probe("pr_set_mm_map", true, "PR_SET_MM_MAP accepted this process's own layout");
                }
            } catch (SyscallException e) {
                prSetMmMap = new Probe("pr_set_mm_map", false, e.getMessage());
            } catch (IOException | RuntimeException e) {
                prSetMmMap = new Probe("pr_set_mm_map", false, "could not read /proc/self/stat: " + e.getMessage());
            }
        }
        return prSetMmMap;
    }

    /** This process's mm fields from /proc/self/stat (proc(5) fields 26-28 and 45-51) and current brk. */
    private static Prctl.MmMap selfMmMap() throws IOException {
        String stat = Files.readString(Path.of("/proc/self/stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).trim().split(" ");
        // f[0] is field 3 (state): field N is f[N - 3]
        long startCode = Long.parseUnsignedLong(f[26 - 3]);
        long endCode = Long.parseUnsignedLong(f[27 - 3]);
        long startStack = Long.parseUnsignedLong(f[28 - 3]);
        long startData = Long.parseUnsignedLong(f[45 - 3]);
        long endData = Long.parseUnsignedLong(f[46 - 3]);
        long startBrk = Long.parseUnsignedLong(f[47 - 3]);
        long argStart = Long.parseUnsignedLong(f[48 - 3]);
        long argEnd = Long.parseUnsignedLong(f[49 - 3]);
        long envStart = Long.parseUnsignedLong(f[50 - 3]);
        long envEnd = Long.parseUnsignedLong(f[51 - 3]);
        long brk = Libc.syscall(dev.lazypages.ffm.gen.Native.SYS_brk(), 0, 0, 0, 0, 0, 0);
        return new Prctl.MmMap(startCode, endCode, startData, endData, startBrk, brk, startStack,
                argStart, argEnd, envStart, envEnd, Prctl.selfAuxv(), -1);
    }

    /** Transparent huge pages mode, the bracketed word of /sys/kernel/mm/transparent_hugepage/enabled. */
    public static String thpMode() {
        String s = sysctl("/sys/kernel/mm/transparent_hugepage/enabled");
        int a = s.indexOf('[');
        int b = s.indexOf(']');
        return a >= 0 && b > a ? s.substring(a + 1, b) : s;
    }

    private static String sysctl(String path) {
        try {
            return Files.readString(Path.of(path)).trim();
        } catch (IOException e) {
            return "unknown";
        }
    }
}
