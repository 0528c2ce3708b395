package dev.lazypages.proc;

/**
 * The fields of /proc/PID/stat (proc(5)) that a checkpoint needs: the state and the
 * memory-layout addresses that PR_SET_MM_MAP takes.
 *
 * <p>Field numbers follow proc(5), counting from 1: (1) pid, (2) comm in parentheses,
 * (3) state, (4) ppid, (20) num_threads, (26) startcode, (27) endcode, (28) startstack,
 * (45) start_data, (46) end_data, (47) start_brk, (48) arg_start, (49) arg_end,
 * (50) env_start, (51) env_end. The comm may hold spaces and parentheses itself, so it is
 * taken up to the LAST ')' of the line. The kernel shows 0 (or 1) for the addresses to a
 * reader that may not ptrace the process.
 */
public record ProcStat(int pid, String comm, char state, int ppid, int numThreads,
                       long startCode, long endCode, long startStack,
                       long startData, long endData, long startBrk,
                       long argStart, long argEnd, long envStart, long envEnd) {

    private static final int FIRST_AFTER_COMM = 3;
    private static final int MIN_FIELDS = 51;

    /** Reads and parses /proc/PID/stat. */
    public static ProcStat read(int pid) {
        return parse(Proc.readText(pid, "stat"), "/proc/" + pid + "/stat");
    }

    /** Parses the one line of a stat file; {@code source} names it in errors. */
    public static ProcStat parse(String line, String source) {
        String text = line.strip();
        int open = text.indexOf('(');
        int close = text.lastIndexOf(')');
        if (open < 0 || close < open) {
            throw new ProcException(source + " is malformed (no \"(comm)\"): " + text);
        }
        String[] rest = text.substring(close + 1).strip().split(" ");
        if (rest.length + FIRST_AFTER_COMM - 1 < MIN_FIELDS) {
            throw new ProcException(source + " has " + (rest.length + 2) + " fields, expected at least " + MIN_FIELDS);
        }
        Fields f = new Fields(rest, source);
        try {
            return new ProcStat(Integer.parseInt(text.substring(0, open).strip()), text.substring(open + 1, close),
                    rest[0].charAt(0), (int) f.get(4), (int) f.get(20),
                    f.get(26), f.get(27), f.get(28),
                    f.get(45), f.get(46), f.get(47),
                    f.get(48), f.get(49), f.get(50), f.get(51));
        } catch (NumberFormatException e) {
            throw new ProcException(source + " has a non-numeric field: " + text);
        }
    }

    /** Access to fields by their proc(5) number. */
    private record Fields(String[] rest, String source) {
        long get(int number) {
            String s = rest[number - FIRST_AFTER_COMM];
            try {
                return Long.parseUnsignedLong(s);
            } catch (NumberFormatException e) {
                return Long.parseLong(s); // a few fields (priority, nice) may be negative
            }
        }
    }

    /** 'R' running, 'S' sleeping, 'D' disk sleep, 'T' stopped, 't' tracing stop, 'Z' zombie, 'X' dead. */
    public boolean isStopped() {
        return state == 'T' || state == 't';
    }
}
