package dev.lazypages.dump;

/**
 * A dump failed. The process was left running as before (thawed, detached, nothing left in its
 * memory or fd table) and no image was left behind. The one-line message names the pid and the
 * step, e.g. {@code dump of pid 123 failed at 'read registers of thread 125': ...}.
 */
public final class DumpException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int pid;
    private final String step;

    public DumpException(int pid, String step, Throwable cause) {
        super("dump of pid " + pid + " failed at '" + step + "': " + oneLine(cause), cause);
        this.pid = pid;
        this.step = step;
    }

    public int pid() {
        return pid;
    }

    /** The step that failed, e.g. {@code list open files}. */
    public String step() {
        return step;
    }

    private static String oneLine(Throwable t) {
        String m = t.getMessage();
        if (m == null || m.isBlank()) {
            m = t.getClass().getSimpleName();
        }
        return m.replaceAll("\\s*[\\r\\n]+\\s*", "; ");
    }
}
