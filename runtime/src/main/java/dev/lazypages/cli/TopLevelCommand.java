package dev.lazypages.cli;

import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.Spec;

/**
 * What both jars' top-level commands share: without a subcommand they are a usage error,
 * unless the command has a mode of its own ({@link #ownMode}, e.g. {@code lazy-pages
 * --page-server}), which then excludes every subcommand.
 */
abstract class TopLevelCommand implements Callable<Integer> {
    @Spec
    private CommandSpec spec;

    /** The top-level option that selects this command's own mode, when it was given; null otherwise. */
    protected String ownMode() {
        return null;
    }

    /** Runs this command's own mode (only called when {@link #ownMode} is not null). */
    protected Integer runOwnMode() throws Exception {
        throw new IllegalStateException("no mode of its own");
    }

    @Override
    public final Integer call() throws Exception {
        if (ownMode() == null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "a command is needed (try --help)");
        }
        return runOwnMode();
    }

    /** Refuses a subcommand together with {@link #ownMode} (called by {@link Cli} after parsing). */
    final void checkExclusive(ParseResult parsed) {
        if (ownMode() != null && parsed.hasSubcommand()) {
            throw new CommandLine.ParameterException(spec.commandLine(), ownMode() + " and the command '"
                    + parsed.subcommand().commandSpec().name() + "' exclude each other");
        }
    }
}
