package dev.lazypages.proc;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Parses /proc/PID/maps and /proc/PID/smaps (proc(5)) into {@link Vma}s.
 *
 * <p>A maps line is {@code start-end perms offset major:minor inode   path}; the path is the
 * rest of the line after the padding and may itself contain spaces. smaps repeats that line
 * per VMA, followed by {@code Key:  value kB} lines and a final {@code VmFlags:} line.
 */
public final class ProcMaps {
    private ProcMaps() {
    }

    /** The VMAs of {@code pid}, from /proc/PID/maps. */
    public static List<Vma> read(int pid) {
        return parseMaps(Proc.readText(pid, "maps"), "/proc/" + pid + "/maps");
    }

    /** The VMAs of {@code pid} with their smaps fields, from /proc/PID/smaps. */
    public static List<Vma> readSmaps(int pid) {
        return parseSmaps(Proc.readText(pid, "smaps"), "/proc/" + pid + "/smaps");
    }

    /** Parses maps text; {@code source} names it in errors. */
    public static List<Vma> parseMaps(String text, String source) {
        List<Vma> out = new ArrayList<>();
        int lineNo = 0;
        for (String line : text.split("\n")) {
            lineNo++;
            if (!line.isEmpty()) {
                out.add(parseLine(line, source, lineNo));
            }
        }
        return out;
    }

    /** Parses smaps text; {@code source} names it in errors. */
    public static List<Vma> parseSmaps(String text, String source) {
        List<Vma> out = new ArrayList<>();
        Vma current = null;
        long rss = 0;
        long anon = 0;
        long thp = 0;
        long swap = 0;
        Set<String> flags = new HashSet<>();
        int lineNo = 0;
        for (String line : text.split("\n")) {
            lineNo++;
            if (line.isEmpty()) {
                continue;
            }
            if (isHeader(line)) {
                if (current != null) {
                    out.add(current.withSmaps(new Vma.Smaps(rss, anon, thp, swap, flags)));
                }
                current = parseLine(line, source, lineNo);
                rss = anon = thp = swap = 0;
                flags = new HashSet<>();
                continue;
            }
            if (current == null) {
                throw malformed(source, lineNo, line, "field before the first mapping");
            }
            int colon = line.indexOf(':');
            if (colon < 0) {
                throw malformed(source, lineNo, line, "no ':'");
            }
            String key = line.substring(0, colon);
            String value = line.substring(colon + 1).trim();
            switch (key) {
                case "Rss" -> rss = kilobytes(value, source, lineNo, line);
                case "Anonymous" -> anon = kilobytes(value, source, lineNo, line);
                case "AnonHugePages" -> thp = kilobytes(value, source, lineNo, line);
                case "Swap" -> swap = kilobytes(value, source, lineNo, line);
                case "VmFlags" -> {
                    for (String f : value.split("\\s+")) {
                        if (!f.isEmpty()) {
                            flags.add(f);
                        }
                    }
                }
                default -> {
                    // other smaps fields are not needed by the dump
                }
            }
        }
        if (current != null) {
            out.add(current.withSmaps(new Vma.Smaps(rss, anon, thp, swap, flags)));
        }
        return out;
    }

    /** A mapping line starts with {@code hex-hex }; a field line starts with {@code Name:}. */
    private static boolean isHeader(String line) {
        int dash = line.indexOf('-');
        int space = line.indexOf(' ');
        if (dash <= 0 || space < dash) {
            return false;
        }
        for (int i = 0; i < dash; i++) {
            if (Character.digit(line.charAt(i), 16) < 0) {
                return false;
            }
        }
        return true;
    }

    private static long kilobytes(String value, String source, int lineNo, String line) {
        String v = value.endsWith(" kB") ? value.substring(0, value.length() - 3).trim() : value;
        try {
            return Long.parseLong(v) * 1024;
        } catch (NumberFormatException e) {
            throw malformed(source, lineNo, line, "not a size in kB");
        }
    }

    static Vma parseLine(String line, String source, int lineNo) {
        int[] pos = {0};
        String range = token(line, pos);
        String perms = token(line, pos);
        String offset = token(line, pos);
        String dev = token(line, pos);
        String inode = token(line, pos);
        if (inode == null) {
            throw malformed(source, lineNo, line, "fewer than 5 fields");
        }
        int p = pos[0];
        while (p < line.length() && line.charAt(p) == ' ') {
            p++;
        }
        String path = line.substring(p);
        int dash = range.indexOf('-');
        int colon = dev.indexOf(':');
        if (dash < 0 || colon < 0 || perms.length() != 4) {
            throw malformed(source, lineNo, line, "bad range, perms or device");
        }
        try {
            return new Vma(Long.parseUnsignedLong(range, 0, dash, 16), Long.parseUnsignedLong(range, dash + 1, range.length(), 16),
                    perms.charAt(0) == 'r', perms.charAt(1) == 'w', perms.charAt(2) == 'x', perms.charAt(3) == 's',
                    Long.parseUnsignedLong(offset, 16),
                    Integer.parseInt(dev, 0, colon, 16), Integer.parseInt(dev, colon + 1, dev.length(), 16),
                    Long.parseUnsignedLong(inode), path, null);
        } catch (IllegalArgumentException e) {
            throw malformed(source, lineNo, line, e.getMessage());
        }
    }

    private static String token(String line, int[] pos) {
        int p = pos[0];
        while (p < line.length() && line.charAt(p) == ' ') {
            p++;
        }
        if (p >= line.length()) {
            return null;
        }
        int e = line.indexOf(' ', p);
        if (e < 0) {
            e = line.length();
        }
        pos[0] = e;
        return line.substring(p, e);
    }

    private static ProcException malformed(String source, int lineNo, String line, String why) {
        return new ProcException(source + " line " + lineNo + " is malformed (" + why + "): " + line);
    }
}
