package dev.lazypages.cli;

/** Exit codes of both command lines. */
public final class ExitCodes {
    /** Success. */
    public static final int OK = 0;
    /** The operation ran and failed (the message says which step). */
    public static final int FAILED = 1;
    /** Bad command line: unknown option, missing argument. */
    public static final int USAGE = 2;
    /** This machine lacks something the operation needs (kernel feature, permission). */
    public static final int UNSUPPORTED = 3;
    /** Bad input data: an image or a message that is corrupt or of another version. */
    public static final int BAD_INPUT = 4;

    private ExitCodes() {
    }
}
