package dev.lazypages.image;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.cli.InspectCommand;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class InspectCommandTest {
    @TempDir
    Path tmp;
    final StringWriter out = new StringWriter();
    final StringWriter err = new StringWriter();

    /** Runs inspect the way the CLI does: IllegalArgumentException is one line and exit 4. */
    private int run(String... args) {
        CommandLine cl = new CommandLine(new InspectCommand());
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        cl.setExecutionExceptionHandler((ex, line, parse) -> {
            line.getErr().println(line.getCommandName() + ": " + ex.getMessage());
            return ex instanceof IllegalArgumentException ? 4 : 1;
        });
        return cl.execute(args);
    }

    private static void assertContains(String text, String... parts) {
        for (String p : parts) {
            assertTrue(text.contains(p), "missing '" + p + "' in:\n" + text);
        }
    }

    @Test
    void summaryShowsInventoryVmasPagesThreadsAndFiles() throws IOException {
        Path dir = ImageFixture.writeFull(tmp.resolve("img"));
        assertEquals(0, run("--summary", dir.toString()), err.toString());
        String s = out.toString();
        assertContains(s,
                "FULL, format 1, page size 4096, kernel 6.8.0-test",
                "root pid 100, tracker pagemap-scan, parent none",
                "VMAs: 5",
                "0000000000600000-0000000000604000 rw-p HEAP         [heap]",
                "ffffffffff600000-ffffffffff601000 --xp VSYSCALL     [vsyscall]",
                "pages: present 14 (0.05 MiB), in parent 0 (0.00 MiB), zero 8 (0.03 MiB)",
                "tid 100 rip 0x401234 in syscall 34 (rax -514)",
                "tid 101 rip 0x401244 not in a syscall",
                "fd 3 REGULAR   /var/tmp/app.log");
        assertEquals("", err.toString());
    }

    @Test
    void summaryOfAChildCountsInParentPages() throws IOException {
        Path child = ImageFixture.writeChain(tmp);
        assertEquals(0, run("--summary", "--verify-pages", child.toString()), err.toString());
        assertContains(out.toString(), "present 2 (0.01 MiB), in parent 10 (0.04 MiB), zero 4 (0.02 MiB)", "parent ../p");
    }

    @Test
    void jsonHasEveryMessageWithHexAddressesAndShortBytes() throws IOException {
        Path dir = ImageFixture.writeFull(tmp.resolve("img"));
        assertEquals(0, run(dir.toString()), err.toString());
        String j = out.toString();
        assertContains(j,
                "\"kernel_release\": \"6.8.0-test\"",
                "\"kind\": \"FULL\"",
                "\"cpu_xcr0\": \"0x2e7\"",
                "\"start\": \"0xffffffffff600000\"",
                "\"path\": \"[heap]\"",
                "\"fpregs\": \"00000000000000000000000000000000... (512 bytes)\"",
                "\"xstate\": \"00000000000000000000000000000000... (2688 bytes)\"",
                "\"rax\": -514",
                "\"vaddr\": \"0x7f0000008000\"",
                "\"flags\": 4",
                "\"pages\": 14");
        assertTrue(j.length() < 20_000, "bytes are not dumped whole: " + j.length());
    }

    @Test
    void corruptImageIsOneLineOnStderrAndExit4() throws IOException {
        Path dir = ImageFixture.writeFull(tmp.resolve("img"));
        ImageFixture.flip(dir.resolve("pagemap.img"), ImageFileDescriptor.HEADER_LENGTH + 1);
        assertEquals(4, run("--summary", dir.toString()));
        String e = err.toString();
        assertTrue(e.startsWith("inspect: " + dir.resolve("pagemap.img") + ": CRC-32C mismatch"), e);
        assertEquals(1, e.lines().count(), e);
        assertEquals("", out.toString());
    }
}
