package dev.lazypages.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** {@link Posix#execve}: a JVM replaced by a shell with the argv and environment given, same pid; a failed exec returns. */
@Timeout(60)
class ExecveTest {
    /** The child JVM: becomes {@code sh -c 'echo "$$ $GREETING $0"' named} with GREETING=hello, after printing its pid. */
    public static final class Probe {
        public static void main(String[] args) {
            System.out.println("jvm " + ProcessHandle.current().pid());
            System.out.flush();
            Posix.execve("/bin/sh", List.of("sh", "-c", "echo \"sh $$ $GREETING $0\"", "named"), List.of("GREETING=hello"));
        }
    }

    @Test
    void theProcessBecomesTheProgramWithItsArgumentsAndEnvironment() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                Probe.class.getName()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), out);
        List<String> lines = out.lines().toList();
        assertEquals(List.of("jvm " + p.pid(), "sh " + p.pid() + " hello named"), lines);
    }

    @Test
    void aFailedExecThrowsAndThisProcessRunsOn() {
        SyscallException e = assertThrows(SyscallException.class,
                () -> Posix.execve("/nonexistent/program", List.of("x"), List.of()));
        assertEquals(Errno.ENOENT, e.errno());
    }
}
