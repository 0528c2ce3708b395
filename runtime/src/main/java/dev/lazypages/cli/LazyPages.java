package dev.lazypages.cli;

import picocli.CommandLine.Command;

/** {@code lazy-pages.jar}: the destination side. */
@Command(name = "lazy-pages", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "The destination side of lazy-pages, live migration of running Linux processes.",
            "",
            "It rebuilds a migrated process, registers userfaultfd over its memory and answers every page "
                    + "fault by fetching the page from the source or a local image.",
            "",
            "Commands: serve (the migration daemon), restore (eager or --lazy from an image), demo (a hybrid migration of a bundled workload on loopback), inspect, check. Not built yet: the CRIU-style --page-server mode, network recovery (see README)."
        },
        subcommands = {CheckCommand.class, ServeCommand.class, RestoreCommand.class, InspectCommand.class, DemoCommand.class},
        footer = {"", "Exit status: 0 ok, 1 failed, 2 usage, 3 unsupported here, 4 bad input."})
public final class LazyPages extends TopLevelCommand {
    public static void main(String[] args) {
        System.exit(Cli.run(new LazyPages(), args));
    }
}
