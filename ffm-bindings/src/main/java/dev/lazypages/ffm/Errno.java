package dev.lazypages.ffm;

import dev.lazypages.ffm.gen.Native;
import java.lang.foreign.MemorySegment;

/**
 * errno values and their names. Names and messages come from glibc
 * ({@code strerrorname_np}, {@code strerror}) once, at class initialisation, so that building
 * an error message never calls into native code again.
 */
public final class Errno {
    public static final int EPERM = Native.EPERM();
    public static final int ENOENT = Native.ENOENT();
    public static final int ESRCH = Native.ESRCH();
    public static final int EINTR = Native.EINTR();
    public static final int EIO = Native.EIO();
    public static final int EBADF = Native.EBADF();
    public static final int ECHILD = Native.ECHILD();
    public static final int EAGAIN = Native.EAGAIN();
    public static final int ENOMEM = Native.ENOMEM();
    public static final int EACCES = Native.EACCES();
    public static final int EFAULT = Native.EFAULT();
    public static final int EBUSY = Native.EBUSY();
    public static final int EEXIST = Native.EEXIST();
    public static final int EINVAL = Native.EINVAL();
    public static final int ENOSPC = Native.ENOSPC();
    public static final int ENOSYS = Native.ENOSYS();
    public static final int ENOTTY = Native.ENOTTY();
    public static final int EOPNOTSUPP = Native.EOPNOTSUPP();

    private static final int MAX = 134;
    private static final String[] NAMES = new String[MAX];
    private static final String[] MESSAGES = new String[MAX];

    static {
        for (int e = 0; e < MAX; e++) {
            MemorySegment n = Native.strerrorname_np(e);
            NAMES[e] = n.equals(MemorySegment.NULL) ? null : n.reinterpret(64).getString(0);
            MemorySegment m = Native.strerror(e);
            MESSAGES[e] = m.equals(MemorySegment.NULL) ? null : m.reinterpret(256).getString(0);
        }
    }

    private Errno() {
    }

    /** The symbolic name, e.g. {@code ESRCH}; {@code errno 999} for a value glibc does not know. */
    public static String name(int errno) {
        String n = errno >= 0 && errno < MAX ? NAMES[errno] : null;
        return n != null ? n : "errno " + errno;
    }

    /** Name and message, e.g. {@code ESRCH (No such process)}. */
    public static String describe(int errno) {
        String m = errno >= 0 && errno < MAX ? MESSAGES[errno] : null;
        return m != null ? name(errno) + " (" + m + ")" : name(errno);
    }
}
