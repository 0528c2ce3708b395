package dev.lazypages.proc;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.CodeSource;
import java.util.ArrayList;
import java.util.List;

/**
 * Where the programs built by the native-stubs module are ({@code lp-stub}, the process the
 * restorer rebuilds, above all), and what {@code lp-stub.info} says about the stub's layout.
 *
 * <p>A binary named NAME is looked for, in this order:
 * <ol>
 *   <li>an explicit override: a file (used as is) or a directory (NAME inside it);</li>
 *   <li>the directory in the environment variable {@value #ENV};</li>
 *   <li>the directory in the system property {@value #PROPERTY};</li>
 *   <li>{@code <directory of the running jar>/../../native-stubs/target/bin} (the layout of
 *       the source tree: {@code runtime/target/lazy-pages.jar}).</li>
 * </ol>
 * The first of these that is given decides; when the file is not there the error lists every
 * place looked at.
 */
public final class NativeStubs {
    /** Environment variable naming the stubs directory. */
    public static final String ENV = "LAZYPAGES_STUBS_DIR";
    /** System property naming the stubs directory. */
    public static final String PROPERTY = "lazypages.stubs.dir";
    /** The stub the restorer seizes. */
    public static final String LP_STUB = "lp-stub";

    private NativeStubs() {
    }

    /**
     * The layout of lp-stub from {@code lp-stub.info}.
     *
     * @param gadget    address of its {@code syscall; int3} bytes
     * @param entry     ELF entry point
     * @param textStart start of its only mapping (page aligned)
     * @param textEnd   end of that mapping (exclusive)
     */
    public record StubInfo(Path binary, long gadget, long entry, long textStart, long textEnd) {
    }

    /** The path of stub {@code name}; {@code override} (a file or a directory) may be null. */
    public static Path locate(String name, Path override) {
        List<String> looked = new ArrayList<>();
        for (Path dirOrFile : candidates(override, looked)) {
            Path p = Files.isDirectory(dirOrFile) ? dirOrFile.resolve(name) : dirOrFile;
            if (Files.isRegularFile(p) && Files.isExecutable(p)) {
                return p;
            }
            looked.add(p + " (" + (Files.exists(p) ? "not an executable file" : "missing") + ")");
        }
        throw new ProcException("native stub '" + name + "' not found; looked at: " + String.join(", ", looked)
                + " (set --stub, " + ENV + " or -D" + PROPERTY + " to the native-stubs/target/bin directory)");
    }

    /** The one place that decides (see the class comment); empty when none is known. */
    private static List<Path> candidates(Path override, List<String> looked) {
        List<Path> out = new ArrayList<>();
        if (override != null) {
            out.add(override);
            return out;
        }
        String env = System.getenv(ENV);
        if (env != null && !env.isBlank()) {
            out.add(Path.of(env));
            return out;
        }
        String prop = System.getProperty(PROPERTY);
        if (prop != null && !prop.isBlank()) {
            out.add(Path.of(prop));
            return out;
        }
        Path jarDir = jarDir();
        if (jarDir == null) {
            looked.add("jar location (unknown: no code source)");
        } else {
            out.add(jarDir.resolve("../../native-stubs/target/bin").normalize());
        }
        return out;
    }

    private static Path jarDir() {
        try {
            CodeSource cs = NativeStubs.class.getProtectionDomain().getCodeSource();
            if (cs == null || cs.getLocation() == null) {
                return null;
            }
            Path loc = Path.of(cs.getLocation().toURI());
            return loc.getParent(); // the jar's directory (or, run from classes/, target/)
        } catch (URISyntaxException | RuntimeException e) {
            return null;
        }
    }

    /** Locates lp-stub and reads the {@code lp-stub.info} next to it. */
    public static StubInfo lpStub(Path override) {
        Path bin = locate(LP_STUB, override);
        return readInfo(bin, bin.resolveSibling(LP_STUB + ".info"));
    }

    /** Parses {@code info} (lines {@code key=0x...}) for {@code binary}. */
    public static StubInfo readInfo(Path binary, Path info) {
        List<String> lines;
        try {
            lines = Files.readAllLines(info);
        } catch (IOException e) {
            throw new ProcException("cannot read " + info + " (written next to " + binary + " by the native-stubs build): " + e);
        }
        return new StubInfo(binary, hex(lines, "gadget", info), hex(lines, "entry", info), hex(lines, "text_start", info),
                hex(lines, "text_end", info));
    }

    private static long hex(List<String> lines, String key, Path info) {
        for (String line : lines) {
            String l = line.strip();
            if (l.startsWith(key + "=")) {
                String v = l.substring(key.length() + 1).strip();
                try {
                    return Long.parseUnsignedLong(v.startsWith("0x") ? v.substring(2) : v, 16);
                } catch (NumberFormatException e) {
                    throw new ProcException(info + ": bad value for " + key + ": '" + v + "'");
                }
            }
        }
        throw new ProcException(info + " has no " + key + "= line");
    }
}
