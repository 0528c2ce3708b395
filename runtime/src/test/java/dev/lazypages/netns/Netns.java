package dev.lazypages.netns;

import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Requires;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

/**
 * Two network namespaces for tests, a source and a destination, joined by a veth pair: {@code
 * lp-src-<hex>} holds {@code lpv<hex>s} with {@link #srcAddress()} = 10.199.N.1/30, {@code
 * lp-dst-<hex>} holds {@code lpv<hex>d} with {@link #dstAddress()} = 10.199.N.2/30; {@code lo} is
 * up in both. Nothing is added outside the two namespaces (the veth pair is created directly in
 * them), and {@link #close} (also run at JVM exit) kills what still runs in them and deletes both,
 * which deletes the veth pair.
 *
 * <p>Needs root and {@code ip} (iproute2); without them {@link #create} skips the test with the
 * reason, or fails it where {@link Requires#strict()} (CI).
 */
public final class Netns implements AutoCloseable {
    private static final SecureRandom RANDOM = new SecureRandom();
    private static final long CMD_TIMEOUT_SECONDS = 20;

    private final String src;
    private final String dst;
    private final String srcIf;
    private final String dstIf;
    private final String srcAddr;
    private final String dstAddr;
    private final Thread hook;
    private boolean closed;

    private Netns(String id, int subnet) {
        this.src = "lp-src-" + id;
        this.dst = "lp-dst-" + id;
        this.srcIf = "lpv" + id + "s";
        this.dstIf = "lpv" + id + "d";
        this.srcAddr = "10.199." + subnet + ".1";
        this.dstAddr = "10.199." + subnet + ".2";
        this.hook = new Thread(this::closeQuietly, "netns-cleanup-" + id);
    }

    /** Creates the pair, checks a TCP SYN from the source reaches the destination, or skips/fails the test. */
    public static Netns create() {
        String missing = missing();
        if (missing != null) {
            if (Requires.strict()) {
                Assertions.fail("required in CI: " + missing);
            }
            Assumptions.abort(missing);
        }
        byte[] b = new byte[3];
        RANDOM.nextBytes(b);
        Netns n = new Netns(HexFormat.of().formatHex(b), Byte.toUnsignedInt(b[0]));
        Runtime.getRuntime().addShutdownHook(n.hook);
        try {
            n.setUp();
            n.checkReachable();
            return n;
        } catch (RuntimeException | Error e) {
            n.closeQuietly();
            throw e;
        }
    }

    /** Why namespaces cannot be made here, or null. */
    static String missing() {
        if (Posix.geteuid() != 0) {
            return "network namespaces need root (euid is " + Posix.geteuid() + ")";
        }
        if (ipCommand() == null) {
            return "network namespaces need `ip` (iproute2), not found on PATH or in /usr/sbin, /sbin";
        }
        return null;
    }

    static String ipCommand() {
        List<String> dirs = new ArrayList<>(List.of(System.getenv().getOrDefault("PATH", "").split(":")));
        dirs.addAll(List.of("/usr/sbin", "/sbin", "/usr/bin", "/bin"));
        for (String d : dirs) {
            if (!d.isEmpty() && Files.isExecutable(Path.of(d, "ip"))) {
                return Path.of(d, "ip").toString();
            }
        }
        return null;
    }

    private void setUp() {
        ip("netns", "add", src);
        ip("netns", "add", dst);
        ip("link", "add", srcIf, "netns", src, "type", "veth", "peer", "name", dstIf, "netns", dst);
        ip("-n", src, "addr", "add", srcAddr + "/30", "dev", srcIf);
        ip("-n", dst, "addr", "add", dstAddr + "/30", "dev", dstIf);
        for (String[] nsIf : new String[][] {{src, srcIf}, {dst, dstIf}, {src, "lo"}, {dst, "lo"}}) {
            ip("-n", nsIf[0], "link", "set", nsIf[1], "up");
        }
    }

    /**
     * Ping-free check: a TCP connection from the source to a closed port of the destination must
     * be refused (the SYN went through the veth pair and the destination's kernel answered RST),
     * not time out or find no route. Retried for a few seconds while the links come up.
     */
    private void checkReachable() {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        String last = "";
        while (System.nanoTime() - deadline < 0) {
            Cmd r = run(List.of(ipCommand(), "netns", "exec", src, "timeout", "3", "bash", "-c",
                    "exec 3<>/dev/tcp/" + dstAddr + "/9"));
            last = r.output;
            if (r.output.contains("Connection refused")) {
                return;
            }
            sleep(100);
        }
        Assertions.fail(src + " cannot reach " + dstAddr + " in " + dst + " over TCP (expected 'Connection refused' from "
                + "a closed port, got: " + last.strip() + ")");
    }

    public String srcNamespace() {
        return src;
    }

    public String dstNamespace() {
        return dst;
    }

    /** 10.199.N.1, inside the source namespace. */
    public String srcAddress() {
        return srcAddr;
    }

    /** 10.199.N.2, inside the destination namespace. */
    public String dstAddress() {
        return dstAddr;
    }

    /** {@code ip netns exec SRC} followed by {@code command}. */
    /**
     * Takes both ends of the veth pair down (a cable pulled: packets are dropped, connections stay
     * open and TCP retransmits) or up again.
     */
    public void setLinkUp(boolean up) {
        ip("-n", src, "link", "set", "dev", srcIf, up ? "up" : "down");
        ip("-n", dst, "link", "set", "dev", dstIf, up ? "up" : "down");
    }

    public List<String> inSrc(String... command) {
        return in(src, command);
    }

    /** {@code ip netns exec DST} followed by {@code command}. */
    public List<String> inDst(String... command) {
        return in(dst, command);
    }

    private static List<String> in(String ns, String... command) {
        List<String> c = new ArrayList<>(List.of(ipCommand(), "netns", "exec", ns));
        c.addAll(List.of(command));
        return c;
    }

    /** Kills whatever still runs in the namespaces, then deletes them (and with them the veth pair). */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (String ns : new String[] {src, dst}) {
            Cmd pids = run(List.of(ipCommand(), "netns", "pids", ns));
            for (String p : pids.output.split("\\s+")) {
                if (p.matches("\\d+")) {
                    try {
                        Posix.kill(Integer.parseInt(p), Posix.SIGKILL);
                    } catch (RuntimeException gone) {
                        // exited meanwhile
                    }
                }
            }
            run(List.of(ipCommand(), "netns", "del", ns));
        }
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException shuttingDown) {
            // we are the hook
        }
    }

    private void closeQuietly() {
        try {
            close();
        } catch (RuntimeException ignored) {
            // best effort at exit
        }
    }

    /** True when namespace {@code name} exists. */
    static boolean exists(String name) {
        return Files.exists(Path.of("/run/netns", name));
    }

    @Override
    public String toString() {
        return src + " (" + srcAddr + ") <-> " + dst + " (" + dstAddr + ")";
    }

    private void ip(String... args) {
        List<String> c = new ArrayList<>();
        c.add(ipCommand());
        c.addAll(List.of(args));
        Cmd r = run(c);
        if (r.exit != 0) {
            Assertions.fail(String.join(" ", c) + " failed (exit " + r.exit + "): " + r.output.strip());
        }
    }

    private record Cmd(int exit, String output) {
    }

    private static Cmd run(List<String> cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            p.getOutputStream().close();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(CMD_TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                return new Cmd(-1, out + " (timed out)");
            }
            return new Cmd(p.exitValue(), out);
        } catch (IOException e) {
            return new Cmd(-1, "cannot run " + cmd + ": " + e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new Cmd(-1, "interrupted");
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
