package dev.lazypages.perf;

import dev.lazypages.dump.DumpOptions;
import dev.lazypages.dump.Dumper;
import dev.lazypages.dump.FrozenProcess;
import dev.lazypages.net.PageServer;
import dev.lazypages.proc.CpuYield;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * The source side of {@link TouchRig}'s ours pipeline in a JVM of its own, as a migration's
 * source runs on a machine of its own ({@code --source-jvm}): dumps the toucher {@code pid}
 * lazily into {@code img} and serves its pages from the frozen original, prints
 * {@code SERVING <port> <token> <pages served>} on stdout, then answers each line on stdin:
 * {@code served} with {@code SERVED <pages>}, {@code done} (or end of input) with killing the
 * frozen original, closing the server and exiting 0. Failures go to stderr, exit 1.
 *
 * <p>{@code java -cp lazy-bench.jar dev.lazypages.perf.TouchSource <pid> <img>}
 */
public final class TouchSource {
    private TouchSource() {
    }

    public static void main(String[] args) throws Exception {
        int pid = Integer.parseInt(args[0]);
        Path img = Path.of(args[1]);
        dev.lazypages.net.NettyDefaults.apply();
        CpuYield.compilers();
        FrozenProcess frozen = null;
        PageServer server = null;
        try {
            frozen = Dumper.dumpLazy(pid, DumpOptions.of(img));
            String token = Long.toHexString(System.nanoTime()) + Long.toHexString(Double.doubleToLongBits(Math.random()));
            server = PageServer.start(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), TouchRig.provider(frozen), token);
            System.out.println("SERVING " + server.localAddress().getPort() + " " + token);
            System.out.flush();
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            String line;
            while ((line = in.readLine()) != null && !line.equals("done")) {
                if (line.equals("served")) {
                    System.out.println("SERVED " + server.servedPages());
                    System.out.flush();
                }
            }
        } catch (Exception e) {
            System.err.println("touch source failed: " + e);
            e.printStackTrace();
            System.exit(1);
        } finally {
            if (frozen != null) {
                frozen.commitAndKill();
            }
            if (server != null) {
                server.close();
            }
        }
        System.exit(0);
    }
}
