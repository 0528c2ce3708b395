package dev.lazypages.dump;

import java.util.Locale;

/**
 * What a dump does with a file descriptor it cannot restore (a pipe, a socket, a terminal, an
 * eventfd...): only regular files and /dev/null are supported (docs/IMAGE.md, Files).
 */
public enum UnsupportedFds {
    /** Refuse the dump, naming the fd and its type (the default). */
    REFUSE,
    /** Record it as /dev/null with the same access mode. */
    DEVNULL,
    /** Leave it out: the restored process does not have it. */
    CLOSE;

    /** The command-line spelling: {@code refuse}, {@code devnull}, {@code close}. */
    public String optionValue() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** Parses the command-line spelling (case-insensitive). */
    public static UnsupportedFds parse(String s) {
        for (UnsupportedFds v : values()) {
            if (v.optionValue().equalsIgnoreCase(s.strip())) {
                return v;
            }
        }
        throw new IllegalArgumentException("unsupported-fds '" + s + "' is not one of refuse, devnull, close");
    }
}
