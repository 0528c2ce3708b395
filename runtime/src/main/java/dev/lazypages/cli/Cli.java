package dev.lazypages.cli;

import dev.lazypages.ffm.SyscallException;
import picocli.CommandLine;

/**
 * Runs a picocli command with the project's exception mapping: our own failures print one
 * line naming what failed (a stack trace only with {@code LAZYPAGES_DEBUG=1}), and map to
 * {@link ExitCodes}.
 */
final class Cli {
    private Cli() {
    }

    static int run(Object command, String[] args) {
        CommandLine cl = new CommandLine(command);
        cl.setExecutionExceptionHandler((ex, line, parse) -> {
            String name = line.getCommandName();
            if (System.getenv("LAZYPAGES_DEBUG") != null) {
                ex.printStackTrace(line.getErr());
            }
            line.getErr().println(name + ": " + message(ex));
            return exitCode(ex);
        });
        if (command instanceof TopLevelCommand top) {
            // a top-level mode of its own (lazy-pages --page-server) excludes every subcommand
            cl.setExecutionStrategy(parsed -> {
                top.checkExclusive(parsed);
                return new CommandLine.RunLast().execute(parsed);
            });
        }
        return cl.execute(args);
    }

    static String message(Throwable ex) {
        String m = ex.getMessage();
        return m != null && !m.isBlank() ? m : ex.getClass().getSimpleName();
    }

    static int exitCode(Throwable ex) {
        if (ex instanceof UnsupportedOperationException) {
            return ExitCodes.UNSUPPORTED;
        }
        if (ex instanceof IllegalArgumentException) {
            return ExitCodes.BAD_INPUT;
        }
        if (ex instanceof SyscallException) {
            return ExitCodes.FAILED;
        }
        return ExitCodes.FAILED;
    }
}
