package dev.lazypages.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Stubs;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.MatchResult;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * process_vm_readv/writev against memtouch, whose pages describe themselves. memtouch's page
 * layout (native-stubs/src/main/c/memtouch.c): {@code struct page_hdr {u64 magic, index,
 * version, checksum}} then 508 payload words, checksum = FNV-1a over the payload words.
 * Without --dirty-mib-per-sec nothing rewrites them, so every page stays at version 1.
 */
class ProcessMemoryTest {
    private static final long MAGIC = 0x4d454d544f554348L; // "MEMTOUCH" read as a big-endian word
    private static final long FNV_OFFSET = 0xcbf29ce484222325L;
    private static final long FNV_PRIME = 0x00000100000001b3L;
    private static final int PAGES = 1024;

    private final long ps = Posix.pageSize();
    private Stubs.Running memtouch;
    private long region;
    private Arena arena;

    @BeforeEach
    void startMemtouch() {
        arena = Arena.ofConfined();
        memtouch = Stubs.spawn("memtouch", "--size-mib", "4", "--threads", "1");
        MatchResult r = memtouch.awaitLine(
                "REGION addr=0x([0-9a-f]+) size=(\\d+) pages=(\\d+) page_size=4096 table=0x[0-9a-f]+", Duration.ofSeconds(10));
        region = Long.parseUnsignedLong(r.group(1), 16);
        assertEquals(PAGES * ps, Long.parseLong(r.group(2)));
        assertEquals(PAGES, Long.parseLong(r.group(3)));
    }

    @AfterEach
    void stop() {
        memtouch.close();
        arena.close();
    }

    @Test
    void readsPagesWhoseHeadersAndChecksumsAreIntact() {
        PageBuffer buf = PageBuffer.allocate(arena, 8);
        long n = ProcessMemory.read(memtouch.pid(), region, buf, 0, 8 * ps);
        assertEquals(8 * ps, n);
        for (int i = 0; i < 8; i++) {
            assertIsMemtouchPage(buf, i, i);
        }
    }

    @Test
    void readvGathersScatteredRangesOneAfterAnother() {
        long[] pages = {5, 9, 1000, 6};
        long[] addresses = new long[pages.length];
        long[] lengths = new long[pages.length];
        for (int i = 0; i < pages.length; i++) {
            addresses[i] = region + pages[i] * ps;
            lengths[i] = ps;
        }
        PageBuffer buf = PageBuffer.allocate(arena, pages.length + 1);
        long n = ProcessMemory.readv(memtouch.pid(), addresses, lengths, pages.length, buf, ps);
        assertEquals(pages.length * ps, n);
        assertTrue(buf.isZeroPage(0), "nothing written before the offset");
        for (int i = 0; i < pages.length; i++) {
            assertIsMemtouchPage(buf, i + 1, pages[i]);
        }
    }

    @Test
    void readvOfMoreRangesThanIovMaxTakesSeveralCalls() {
        int count = ProcessMemory.MAX_RANGES + 24; // every page in two halves: 2 * 524 ranges
        long[] addresses = new long[count];
        long[] lengths = new long[count];
        for (int i = 0; i < count; i++) {
            addresses[i] = region + (i / 2) * ps + (i % 2) * (ps / 2);
            lengths[i] = ps / 2;
        }
        PageBuffer buf = PageBuffer.allocate(arena, count / 2);
        assertEquals(count / 2 * ps, ProcessMemory.readv(memtouch.pid(), addresses, lengths, count, buf, 0));
        for (int i = 0; i < count / 2; i++) {
            assertIsMemtouchPage(buf, i, i);
        }
    }

    @Test
    void aReadThatRunsIntoAnUnmappedHoleReturnsAShortCount() {
        long end = mappingEndFollowedByAHole(memtouch.pid());
        PageBuffer buf = PageBuffer.allocate(arena, 2);
        // One range across the end: the kernel copies up to the hole.
        assertEquals(ps, ProcessMemory.read(memtouch.pid(), end - ps, buf, 0, 2 * ps));
        // Two ranges, the second in the hole: partial at the granularity of ranges, as documented.
        long n = ProcessMemory.readv(memtouch.pid(), new long[] {end - ps, end}, new long[] {ps, ps}, 2, buf, 0);
        assertEquals(ps, n);
    }

    @Test
    void aReadEntirelyInAHoleFailsWithEfault() {
        long end = mappingEndFollowedByAHole(memtouch.pid());
        PageBuffer buf = PageBuffer.allocate(arena, 1);
        SyscallException e = assertThrows(SyscallException.class, () -> ProcessMemory.read(memtouch.pid(), end, buf, 0, ps));
        assertEquals(Errno.EFAULT, e.errno(), e.getMessage());
        assertTrue(e.getMessage().startsWith("process_vm_readv(pid=" + memtouch.pid()), e.getMessage());
    }

    @Test
    void aBufferTooSmallForTheRangesIsRejectedBeforeAnySystemCall() {
        PageBuffer buf = PageBuffer.allocate(arena, 1);
        assertThrows(IndexOutOfBoundsException.class, () -> ProcessMemory.read(memtouch.pid(), region, buf, 0, 2 * ps));
        assertThrows(IndexOutOfBoundsException.class, () -> ProcessMemory.read(memtouch.pid(), region, buf, 8, ps));
    }

    @Test
    void writevIntoTheTargetIsSeenByTheTargetItself() {
        PageBuffer page = PageBuffer.allocate(arena, 1);
        assertEquals(ps, ProcessMemory.read(memtouch.pid(), region + 7 * ps, page, 0, ps));
        page.putLong(8, 9999); // the header's index field
        assertEquals(8, ProcessMemory.write(memtouch.pid(), region + 7 * ps + 8, page, 8, 8));

        memtouch.signal(Posix.SIGUSR1);
        String verdict = memtouch.awaitLine(line -> line.startsWith("VERIFY "), Duration.ofSeconds(5));
        assertEquals("VERIFY FAIL page=7 reason=index expected_version=1 found_version=1 failures=1", verdict);
    }

    @Test
    void writevScattersOneBufferOverSeveralRanges() {
        PageBuffer src = PageBuffer.allocate(arena, 1);
        for (long o = 0; o < ps; o += 8) {
            src.putLong(o, 0x1111_0000_0000_0000L + o);
        }
        PageBuffer dst = PageBuffer.allocate(arena, 4);
        // Into this very process: first half of the source to page 3, second half to page 1.
        long n = ProcessMemory.writev(Posix.getpid(), new long[] {dst.address() + 3 * ps, dst.address() + ps},
                new long[] {ps / 2, ps / 2}, 2, src, 0);
        assertEquals(ps, n);
        for (long o = 0; o < ps / 2; o += 8) {
            assertEquals(src.getLong(o), dst.getLong(3 * ps + o));
            assertEquals(src.getLong(ps / 2 + o), dst.getLong(ps + o));
        }
        assertTrue(dst.isZeroPage(0) && dst.isZeroPage(2), "the other pages are untouched");
    }

    /** Page {@code at} of {@code buf} is memtouch's page {@code index}, version 1, checksum right. */
    private void assertIsMemtouchPage(PageBuffer buf, int at, long index) {
        long base = at * ps;
        assertEquals(MAGIC, buf.getLong(base), "magic of page " + index);
        assertEquals(index, buf.getLong(base + 8), "index");
        assertEquals(1, buf.getLong(base + 16), "version of page " + index);
        long h = FNV_OFFSET;
        for (long o = 32; o < ps; o += 8) {
            h = (h ^ buf.getLong(base + o)) * FNV_PRIME;
        }
        assertEquals(buf.getLong(base + 24), h, "FNV-1a checksum of page " + index);
    }

    /** The end of a readable anonymous mapping of {@code pid} with nothing mapped right after it. */
    private static long mappingEndFollowedByAHole(int pid) {
        List<long[]> maps = new ArrayList<>();
        List<Boolean> candidate = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/maps"))) {
                String[] f = line.trim().split("\\s+");
                String[] range = f[0].split("-");
                maps.add(new long[] {Long.parseUnsignedLong(range[0], 16), Long.parseUnsignedLong(range[1], 16)});
                candidate.add(f[1].startsWith("rw") && f.length == 5); // anonymous, no name
            }
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        for (int i = 0; i + 1 < maps.size(); i++) {
            if (candidate.get(i) && maps.get(i)[1] != maps.get(i + 1)[0]) {
                return maps.get(i)[1];
            }
        }
        throw new AssertionError("no anonymous mapping followed by a hole in /proc/" + pid + "/maps");
    }
}
