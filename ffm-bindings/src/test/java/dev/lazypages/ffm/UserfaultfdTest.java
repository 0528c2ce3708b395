package dev.lazypages.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lazypages.ffm.testing.Requires;
import dev.lazypages.ffm.testing.Stubs;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * userfaultfd on this test's own memory: a fresh anonymous mapping (Posix.mmapAnonymous),
 * registered for missing pages, faulted on by another thread and resolved with UFFDIO_COPY
 * and UFFDIO_ZEROPAGE.
 *
 * <p>The faulting thread touches the page from inside a system call (write(2) of the page to a
 * file, so the kernel reads it), not with a Java load: a Java thread blocked in a page fault
 * is "in Java" to the JVM and would stall any safepoint until the fault is resolved, while
 * one blocked in a native call is safepoint-safe. The fault the kernel reports is the same.
 */
class UserfaultfdTest {
    private static final int PAGES = 8;

    private final long ps = Posix.pageSize();
    private PageBuffer mem;
    private Userfaultfd uffd;
    private Arena arena;

    @BeforeEach
    void mapFreshMemory() {
        Requires.userfaultfd();
        arena = Arena.ofShared();
        mem = Posix.mmapAnonymous(PAGES * ps);
        uffd = Userfaultfd.open(true);
    }

    @AfterEach
    void release() {
        if (uffd != null) {
            uffd.close(); // unregisters everything: a thread still waiting on a fault would retry and succeed
        }
        if (mem != null) {
            Posix.munmap(mem);
        }
        if (arena != null) {
            arena.close();
        }
    }

    @Test
    void aMissingPageBlocksTheFaultingThreadUntilUffdioCopyFillsIt() throws Exception {
        Userfaultfd.Api api = uffd.api(Userfaultfd.FEATURE_THREAD_ID);
        assertTrue(api.has(Userfaultfd.FEATURE_THREAD_ID), api.toString());
        long allowed = uffd.register(mem.address(), mem.byteSize(), Userfaultfd.REGISTER_MODE_MISSING);
        assertTrue(Userfaultfd.decode(allowed, Userfaultfd.IOCTLS).containsAll(List.of("WAKE", "COPY", "ZEROPAGE")),
                Userfaultfd.decode(allowed, Userfaultfd.IOCTLS).toString());

        Path file = Files.createTempFile("uffd-test", ".page");
        int fd = Posix.open(file.toString(), Posix.O_RDWR, 0);
        try {
            long page = mem.address() + 2 * ps;
            CompletableFuture<Integer> faulterTid = new CompletableFuture<>();
            Thread faulter = Thread.ofPlatform().name("uffd-faulter").start(() -> {
                faulterTid.complete(Posix.gettid());
                mem.pages(2, 1).writeTo(fd, 0); // write(2) reads page 2: a missing-page read fault
            });
            int tid = faulterTid.get(5, TimeUnit.SECONDS);

            assertTrue(uffd.await(5000), "a page fault message within 5 s");
            Userfaultfd.Messages msgs = new Userfaultfd.Messages(arena, 4);
            assertEquals(1, uffd.read(msgs));
            assertEquals(Userfaultfd.EVENT_PAGEFAULT, msgs.event(0));
            assertEquals(page, msgs.address(0), "the fault is on page 2, page aligned");
            assertEquals(0, msgs.flags(0) & Userfaultfd.PAGEFAULT_FLAG_WRITE, "the kernel only read the page");
            assertEquals(tid, msgs.threadId(0), "FEATURE_THREAD_ID names the faulting thread");
            assertTrue(faulter.isAlive(), "the faulting thread waits for the page");
            assertEquals('S', Stubs.threadState(Posix.getpid(), tid), "it sleeps in the kernel");
            assertEquals(0, uffd.read(msgs), "one fault, one message");

            PageBuffer src = PageBuffer.allocate(arena, 1);
            for (long o = 0; o < ps; o += 8) {
                src.putLong(o, 0xC0FFEE00_00000000L | o);
            }
            assertEquals(ps, uffd.copy(page, src, 0, ps, 0));
            faulter.join(5000);
            assertFalse(faulter.isAlive(), "UFFDIO_COPY woke the faulting thread");

            byte[] written = Files.readAllBytes(file);
            byte[] expected = new byte[(int) ps];
            src.copyTo(0, expected, 0, expected.length);
            assertEquals(ps, written.length);
            assertTrue(java.util.Arrays.equals(expected, written), "the faulting write(2) saw the copied page");
            for (long o = 0; o < ps; o += 8) {
                assertEquals(src.getLong(o), mem.getLong(2 * ps + o));
            }

            assertEquals(Userfaultfd.EEXIST, uffd.copy(page, src, 0, ps, 0),
                    "a second copy to a present page is a result, not an exception");
        } finally {
            Posix.closeQuietly(fd);
            Files.deleteIfExists(file);
        }
    }

    @Test
    void zeropageMapsZerosAndASecondOneFindsThePagePresent() {
        uffd.api(0);
        uffd.register(mem.address(), mem.byteSize(), Userfaultfd.REGISTER_MODE_MISSING);
        long page = mem.address() + 5 * ps;
        assertEquals(ps, uffd.zeropage(page, ps, 0));
        assertTrue(mem.isZeroPage(5)); // present now: no fault
        assertEquals(Userfaultfd.EEXIST, uffd.zeropage(page, ps, 0));
        assertEquals(ps, uffd.copy(mem.address() + 6 * ps, mem.address() + 5 * ps, ps, 0), "copy from zeros works too");
        try (Pagemap pm = Pagemap.open(0)) {
            long[] entries = new long[PAGES];
            pm.read(mem.address(), PAGES, entries);
            for (int i = 0; i < PAGES; i++) {
                assertEquals(i == 5 || i == 6, Pagemap.present(entries[i]), "only the resolved pages are present: page " + i);
            }
        }
    }

    @Test
    void aCopyThatMeetsAPresentPagePartWayReturnsTheBytesItCopied() {
        uffd.api(0);
        uffd.register(mem.address(), mem.byteSize(), Userfaultfd.REGISTER_MODE_MISSING);
        PageBuffer src = PageBuffer.allocate(arena, 4);
        for (long o = 0; o < 4 * ps; o += 8) {
            src.putLong(o, 0xAB00_0000_0000_0000L | o);
        }
        assertEquals(ps, uffd.copy(mem.address() + 3 * ps, src.address() + 2 * ps, ps, 0), "page 3 first");
        assertEquals(3 * ps, uffd.copy(mem.address(), src.address(), 4 * ps, 0),
                "pages 0-2 copied, then page 3 was present: the kernel's EAGAIN with 3 pages done comes back as 3 pages");
        assertEquals(Userfaultfd.EEXIST, uffd.copy(mem.address() + 3 * ps, src.address() + 3 * ps, ps, 0));
        assertEquals(Userfaultfd.EEXIST, uffd.copy(mem.address() + 2 * ps, src.address(), 2 * ps, 0),
                "a copy whose first page is present copies nothing: EEXIST");
        for (long o = 0; o < 3 * ps; o += 8) {
            assertEquals(src.getLong(o), mem.getLong(o), "page " + o / ps + " holds what the long copy brought");
        }
        assertEquals(src.getLong(2 * ps + 8), mem.getLong(3 * ps + 8), "page 3 keeps what the first copy brought");
    }

    @Test
    void copyIntoAnUnregisteredRangeIsAnError() {
        uffd.api(0);
        PageBuffer src = PageBuffer.allocate(arena, 1);
        long result = uffd.copy(mem.address(), src, 0, ps, 0);
        assertEquals(Userfaultfd.ENOENT, result, "the range is not registered with this uffd");
    }

    @Test
    void apiReportsWpAsyncOnThisKernelAndDecodesEveryBitByName() {
        Requires.uffdWpAsync();
        Userfaultfd.Api api = uffd.api(0);
        List<String> names = Userfaultfd.decode(api.features(), Userfaultfd.FEATURES);
        assertTrue(names.contains("WP_ASYNC"), names.toString());
        assertTrue(names.containsAll(List.of("EVENT_FORK", "EVENT_REMAP", "EVENT_REMOVE", "EVENT_UNMAP", "THREAD_ID",
                "PAGEFAULT_FLAG_WP", "WP_UNPOPULATED")), names.toString());
        assertTrue(Userfaultfd.decode(api.ioctls(), Userfaultfd.IOCTLS).containsAll(List.of("API", "REGISTER", "UNREGISTER")),
                Userfaultfd.decode(api.ioctls(), Userfaultfd.IOCTLS).toString());
    }

    @Test
    void decodeNamesKnownBitsAndNumbersUnknownOnes() {
        assertEquals(List.of("WP_ASYNC", "bit 40"),
                Userfaultfd.decode(Userfaultfd.FEATURE_WP_ASYNC | 1L << 40, Userfaultfd.FEATURES));
        assertEquals(List.of(), Userfaultfd.decode(0, Userfaultfd.FEATURES));
    }

    @Test
    void askingForAFeatureTheKernelLacksFailsNamingUffdioApi() {
        SyscallException e = assertThrows(SyscallException.class, () -> uffd.api(1L << 62));
        assertEquals(Errno.EINVAL, e.errno(), e.getMessage());
        assertTrue(e.getMessage().contains("UFFDIO_API"), e.getMessage());
        assertTrue(e.getMessage().contains("bit 62"), e.getMessage());
    }

    @Test
    void registeringBeforeTheApiHandshakeFails() {
        SyscallException e = assertThrows(SyscallException.class,
                () -> uffd.register(mem.address(), mem.byteSize(), Userfaultfd.REGISTER_MODE_MISSING));
        assertEquals(Errno.EINVAL, e.errno(), e.getMessage());
        assertTrue(e.getMessage().contains("UFFDIO_REGISTER"), e.getMessage());
    }
}
