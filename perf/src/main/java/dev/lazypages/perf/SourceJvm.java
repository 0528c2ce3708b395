package dev.lazypages.perf;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * A {@link TouchSource} running in a child JVM (this JVM's java binary and class path, its
 * {@code lazypages.*} system properties, and the options in {@value #ARGS_PROPERTY}): started,
 * read until it serves, stopped.
 */
final class SourceJvm implements AutoCloseable {
    /** {@code -Dlazybench.sourceJvmArgs="..."}: more options for the child JVM (space-separated). */
    static final String ARGS_PROPERTY = "lazybench.sourceJvmArgs";

    final InetSocketAddress address;
    final String token;
    private final Process process;
    private final Writer in;

    private SourceJvm(Process process, Writer in, InetSocketAddress address, String token) {
        this.process = process;
        this.in = in;
        this.address = address;
        this.token = token;
    }

    static SourceJvm start(int pid, Path img, Path log) throws Exception {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED"));
        String extra = System.getProperty(ARGS_PROPERTY, "").trim();
        if (!extra.isEmpty()) {
            cmd.addAll(List.of(extra.split("\\s+")));
        }
        System.getProperties().stringPropertyNames().stream().filter(k -> k.startsWith("lazypages."))
                .forEach(k -> cmd.add("-D" + k + "=" + System.getProperty(k)));
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), TouchSource.class.getName(),
                Integer.toString(pid), img.toString()));
        Process p = new ProcessBuilder(cmd).redirectError(log.toFile()).start();
        Writer w = new OutputStreamWriter(p.getOutputStream(), StandardCharsets.UTF_8);
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        CompletableFuture<String> first = CompletableFuture.supplyAsync(() -> {
            try {
                return r.readLine();
            } catch (IOException e) {
                return null;
            }
        });
        String line;
        try {
            line = first.get(120, TimeUnit.SECONDS);
        } catch (Exception e) {
            p.destroyForcibly();
            throw new BenchFailure("the source JVM did not serve within 120 s: " + e + "; " + TouchRig.tail(log));
        }
        if (line == null || !line.startsWith("SERVING ")) {
            p.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            throw new BenchFailure("the source JVM failed: " + line + "; " + TouchRig.tail(log));
        }
        String[] f = line.split(" ");
        return new SourceJvm(p, w, new InetSocketAddress(InetAddress.getLoopbackAddress(), Integer.parseInt(f[1])), f[2]);
    }

    /** CPU time (user + system, all threads) the child used so far, in ms; -1 once it is gone. */
    long cpuMillis() {
        try {
            String st = Files.readString(Path.of("/proc/" + process.pid() + "/stat"));
            String[] f = st.substring(st.lastIndexOf(')') + 2).split(" ");
            return (Long.parseLong(f[11]) + Long.parseLong(f[12])) * 10; // utime, stime in 1/100 s
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }

    /** Tells it to finish (it kills the frozen original) and waits; kills it if it does not end within 10 s. */
    @Override
    public void close() {
        try {
            in.write("done\n");
            in.close();
        } catch (IOException e) {
            // gone already
        }
        try {
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            process.destroyForcibly();
        }
    }
}
