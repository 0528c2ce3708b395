package dev.lazypages.proc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.Posix;
import dev.lazypages.ffm.testing.Stubs;
import java.io.IOException;
import java.util.List;
import org.junit.jupiter.api.Test;

class ProcStatTest {
    @Test
    void parsesStatWithParenthesesAndSpacesInComm() throws IOException {
        ProcStat s = ProcStat.parse(ProcMapsTest.resource("stat.txt"), "stat.txt");
        assertEquals(4242, s.pid());
        assertEquals("we(i)rd) name", s.comm());
        assertEquals('S', s.state());
        assertEquals(1, s.ppid());
        assertEquals(3, s.numThreads());
        assertEquals(94234567000000L, s.startCode());
        assertEquals(94234567010000L, s.endCode());
        assertEquals(140723456780000L, s.startStack());
        assertEquals(94234567020000L, s.startData());
        assertEquals(94234567021000L, s.endData());
        assertEquals(94234570000000L, s.startBrk());
        assertEquals(140723456790000L, s.argStart());
        assertEquals(140723456790100L, s.argEnd());
        assertEquals(140723456790100L, s.envStart());
        assertEquals(140723456795000L, s.envEnd());
    }

    @Test
    void readsStatThreadsAuxvExeAndFdsOfALiveProcess() {
        try (Stubs.Running memtouch = Workloads.memtouch(1, 3)) {
            int pid = memtouch.pid();
            ProcStat s = ProcStat.read(pid);
            assertEquals(pid, s.pid());
            assertEquals("memtouch", s.comm());
            assertEquals(4, s.numThreads());
            assertTrue(s.startCode() > 0 && s.startCode() < s.endCode(), s.toString());
            assertTrue(s.startData() < s.endData() && s.startBrk() >= s.endData(), s.toString());
            assertTrue(s.argStart() < s.argEnd() && s.argEnd() <= s.envStart() && s.envStart() < s.envEnd(), s.toString());
            Vma stack = ProcMaps.read(pid).stream().filter(v -> v.kind() == Vma.Kind.STACK).findFirst().orElseThrow();
            assertTrue(stack.contains(s.startStack()) && stack.contains(s.argStart()), stack + " vs " + s);

            List<Integer> threads = Proc.threads(pid);
            assertEquals(4, threads.size());
            assertEquals(pid, threads.get(0));

            Auxv auxv = Auxv.read(pid);
            assertEquals(Posix.pageSize(), auxv.get(Auxv.AT_PAGESZ).orElseThrow());
            long vdso = ProcMaps.read(pid).stream().filter(v -> v.kind() == Vma.Kind.VDSO).findFirst().orElseThrow().start();
            assertEquals(vdso, auxv.get(Auxv.AT_SYSINFO_EHDR).orElseThrow());
            long[] w = auxv.words();
            assertEquals(Auxv.AT_NULL, w[w.length - 2], "auxv ends with AT_NULL");

            assertTrue(Proc.exe(pid).endsWith("/memtouch"), Proc.exe(pid));

            List<OpenFile> fds = ProcFds.list(pid);
            OpenFile stdin = fds.get(0);
            assertEquals(0, stdin.fd());
            assertEquals(OpenFile.Type.DEVNULL, stdin.type());
            assertEquals(0, stdin.accessMode());
            OpenFile stdout = fds.get(1);
            assertEquals(OpenFile.Type.REGULAR, stdout.type());
            assertEquals(memtouch.log().toAbsolutePath().toString(), stdout.target());
            assertEquals(1, stdout.accessMode());
            assertTrue(stdout.pos() > 0, "memtouch has written READY and REGION: " + stdout);
        }
    }

    @Test
    void classifiesLinkTargets() {
        assertEquals(OpenFile.Type.PIPE, ProcFds.classify("pipe:[1234]", null));
        assertEquals(OpenFile.Type.SOCKET, ProcFds.classify("socket:[99]", null));
        assertEquals(OpenFile.Type.ANON_INODE, ProcFds.classify("anon_inode:[eventfd]", null));
        assertEquals(OpenFile.Type.ANON_INODE, ProcFds.classify("anon_inode:inotify", null));
        assertEquals(OpenFile.Type.DEVNULL, ProcFds.classify("/dev/null", null));
        assertEquals(OpenFile.Type.OTHER, ProcFds.classify("/dev/pts/0", null));
    }

    @Test
    void listsPipesAndSocketsOfThisJvm() throws IOException {
        java.nio.channels.Pipe pipe = java.nio.channels.Pipe.open();
        try (java.nio.channels.Pipe.SourceChannel source = pipe.source(); java.nio.channels.Pipe.SinkChannel sink = pipe.sink();
             java.nio.channels.ServerSocketChannel server = java.nio.channels.ServerSocketChannel.open()) {
            List<OpenFile> fds = ProcFds.list(Posix.getpid());
            assertTrue(fds.stream().anyMatch(f -> f.type() == OpenFile.Type.PIPE), fds.toString());
            assertTrue(fds.stream().anyMatch(f -> f.type() == OpenFile.Type.SOCKET), fds.toString());
            assertTrue(fds.stream().anyMatch(f -> f.type() == OpenFile.Type.REGULAR && f.target().endsWith(".jar")), fds.toString());
        }
    }
}
