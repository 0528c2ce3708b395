package dev.lazypages.cli;

import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

/** What both jars' top-level commands share: without a subcommand they are a usage error. */
abstract class TopLevelCommand implements Runnable {
    @Spec
    private CommandSpec spec;

    @Override
    public final void run() {
        throw new CommandLine.ParameterException(spec.commandLine(), "a command is needed (try --help)");
    }
}
