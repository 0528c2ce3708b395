package dev.lazypages.ffm;

import dev.lazypages.ffm.gen.Native;
import dev.lazypages.ffm.gen.pm_scan_arg;
import dev.lazypages.ffm.gen.uffdio_api;
import dev.lazypages.ffm.gen.uffdio_copy;
import dev.lazypages.ffm.gen.uffdio_move;
import dev.lazypages.ffm.gen.uffdio_poison;
import dev.lazypages.ffm.gen.uffdio_range;
import dev.lazypages.ffm.gen.uffdio_register;
import dev.lazypages.ffm.gen.uffdio_writeprotect;
import dev.lazypages.ffm.gen.uffdio_zeropage;
import dev.lazypages.ffm.gen.uffdio_continue;

/**
 * ioctl request numbers that C builds with function-like macros, which jextract cannot
 * generate. Built here from the generated struct sizes exactly as
 * {@code include/uapi/asm-generic/ioctl.h} builds them on x86-64:
 * {@code _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr}.
 * {@code IoctlNumbersTest} compares every one with what a C program prints.
 */
public final class Ioctl {
    private static final int NRBITS = 8;
    private static final int TYPEBITS = 8;
    private static final int SIZEBITS = 14;
    private static final int NRSHIFT = 0;
    private static final int TYPESHIFT = NRSHIFT + NRBITS;
    private static final int SIZESHIFT = TYPESHIFT + TYPEBITS;
    private static final int DIRSHIFT = SIZESHIFT + SIZEBITS;
    private static final long NONE = 0;
    private static final long WRITE = 1;
    private static final long READ = 2;

    /** {@code UFFDIO}: the userfaultfd ioctl type, 0xAA. */
    private static final int UFFDIO = 0xAA;

    /** {@code _IOWR(UFFDIO, _UFFDIO_API, struct uffdio_api)} */
    public static final long UFFDIO_API = iowr(UFFDIO, Native._UFFDIO_API(), uffdio_api.sizeof());
    /** {@code _IOWR(UFFDIO, _UFFDIO_REGISTER, struct uffdio_register)} */
    public static final long UFFDIO_REGISTER = iowr(UFFDIO, Native._UFFDIO_REGISTER(), uffdio_register.sizeof());
    /** {@code _IOR(UFFDIO, _UFFDIO_UNREGISTER, struct uffdio_range)} */
    public static final long UFFDIO_UNREGISTER = ior(UFFDIO, Native._UFFDIO_UNREGISTER(), uffdio_range.sizeof());
    /** {@code _IOR(UFFDIO, _UFFDIO_WAKE, struct uffdio_range)} */
    public static final long UFFDIO_WAKE = ior(UFFDIO, Native._UFFDIO_WAKE(), uffdio_range.sizeof());
    /** {@code _IOWR(UFFDIO, _UFFDIO_COPY, struct uffdio_copy)} */
    public static final long UFFDIO_COPY = iowr(UFFDIO, Native._UFFDIO_COPY(), uffdio_copy.sizeof());
    /** {@code _IOWR(UFFDIO, _UFFDIO_ZEROPAGE, struct uffdio_zeropage)} */
    public static final long UFFDIO_ZEROPAGE = iowr(UFFDIO, Native._UFFDIO_ZEROPAGE(), uffdio_zeropage.sizeof());
    /** {@code _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)} */
    public static final long UFFDIO_MOVE = iowr(UFFDIO, Native._UFFDIO_MOVE(), uffdio_move.sizeof());
    /** {@code _IOWR(UFFDIO, _UFFDIO_WRITEPROTECT, struct uffdio_writeprotect)} */
    public static final long UFFDIO_WRITEPROTECT =
            iowr(UFFDIO, Native._UFFDIO_WRITEPROTECT(), uffdio_writeprotect.sizeof());
    /** {@code _IOWR(UFFDIO, _UFFDIO_CONTINUE, struct uffdio_continue)} */
    public static final long UFFDIO_CONTINUE = iowr(UFFDIO, Native._UFFDIO_CONTINUE(), uffdio_continue.sizeof());
    /** {@code _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)} */
    public static final long UFFDIO_POISON = iowr(UFFDIO, Native._UFFDIO_POISON(), uffdio_poison.sizeof());
    /** {@code _IO(USERFAULTFD_IOC, 0x00)}: /dev/userfaultfd's USERFAULTFD_IOC_NEW, since 6.1. */
    public static final long USERFAULTFD_IOC_NEW = io(UFFDIO, 0x00);
    /** {@code _IOWR('f', 16, struct pm_scan_arg)}, in linux/fs.h since 6.7. */
    public static final long PAGEMAP_SCAN =
            iowr(Native.LP_PAGEMAP_IOCTL_TYPE(), Native.LP_PAGEMAP_SCAN_NR(), pm_scan_arg.sizeof());

    private Ioctl() {
    }

    /** {@code _IOC(dir, type, nr, size)} */
    public static long ioc(long dir, long type, long nr, long size) {
        if (size >= 1L << SIZEBITS) {
            throw new IllegalArgumentException("ioctl argument size " + size + " does not fit in 14 bits");
        }
        return dir << DIRSHIFT | type << TYPESHIFT | nr << NRSHIFT | size << SIZESHIFT;
    }

    /** {@code _IO(type, nr)} */
    public static long io(long type, long nr) {
        return ioc(NONE, type, nr, 0);
    }

    /** {@code _IOR(type, nr, size)} */
    public static long ior(long type, long nr, long size) {
        return ioc(READ, type, nr, size);
    }

    /** {@code _IOW(type, nr, size)} */
    public static long iow(long type, long nr, long size) {
        return ioc(WRITE, type, nr, size);
    }

    /** {@code _IOWR(type, nr, size)} */
    public static long iowr(long type, long nr, long size) {
        return ioc(READ | WRITE, type, nr, size);
    }
}
