package dev.lazypages.ffm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class ErrnoTest {
    @Test
    void namesTheErrnosTheFacadeMeetsMostBySymbol() {
        assertEquals("ESRCH", Errno.name(Errno.ESRCH));
        assertEquals("EPERM", Errno.name(Errno.EPERM));
        assertEquals("EEXIST", Errno.name(Errno.EEXIST));
        assertEquals("EAGAIN", Errno.name(Errno.EAGAIN));
        assertEquals("EFAULT", Errno.name(Errno.EFAULT));
    }

    @Test
    void constantsHaveTheLinuxValues() {
        assertEquals(1, Errno.EPERM);
        assertEquals(3, Errno.ESRCH);
        assertEquals(11, Errno.EAGAIN);
        assertEquals(14, Errno.EFAULT);
        assertEquals(17, Errno.EEXIST);
    }

    @Test
    void describeGivesNameAndMessage() {
        assertEquals("ESRCH (No such process)", Errno.describe(Errno.ESRCH));
        assertEquals("EPERM (Operation not permitted)", Errno.describe(Errno.EPERM));
        assertEquals("EEXIST (File exists)", Errno.describe(Errno.EEXIST));
    }

    @Test
    void anUnknownErrnoIsNamedByNumber() {
        assertEquals("errno 999", Errno.name(999));
        assertEquals("errno 999", Errno.describe(999));
        assertEquals("errno -1", Errno.name(-1));
        assertEquals("errno -1", Errno.describe(-1));
    }

    @Test
    void zeroIsNotAnError() {
        assertTrue(Errno.describe(0).contains("Success"), Errno.describe(0));
    }

    @Test
    void syscallExceptionNamesCallErrnoAndMessage() {
        SyscallException e = new SyscallException("ptrace(PTRACE_SEIZE, pid=123)", Errno.ESRCH);
        assertEquals("ptrace(PTRACE_SEIZE, pid=123) failed: ESRCH (No such process)", e.getMessage());
        assertEquals("ptrace(PTRACE_SEIZE, pid=123)", e.call());
        assertEquals(Errno.ESRCH, e.errno());
        assertEquals("ESRCH", e.errnoName());
    }
}
