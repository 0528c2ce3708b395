package dev.lazypages.cli;

import dev.lazypages.proc.CpuYield;
import picocli.CommandLine.Command;

/** {@code lazy-dump.jar}: the source side. */
@Command(name = "lazy-dump", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "The source side of lazy-pages, live migration of running Linux processes.",
            "",
            "It seizes a process with ptrace, copies its memory while it runs, freezes it for the final state "
                    + "and serves the pages the destination still misses.",
            "",
            "Commands: migrate (live migration to a lazy-pages serve daemon: pre-copy, post-copy or hybrid), dump (also "
                    + "CRIU style: dump --lazy-pages --address A --port P serves the memory to `lazy-pages.jar restore "
                    + "--lazy-pages`), pre-dump, pre-copy, inspect, check."
        },
        subcommands = {CheckCommand.class, MigrateCommand.class, DumpCommand.class, PreDumpCommand.class, PreCopyCommand.class, InspectCommand.class},
        footer = {"", "Exit status: 0 ok, 1 failed, 2 usage, 3 unsupported here, 4 bad input."})
public final class LazyDump extends TopLevelCommand {
    public static void main(String[] args) {
        dev.lazypages.net.NettyDefaults.apply();
        CpuYield.compilers(); // the dumped process keeps running through pre-copy: it comes first
        System.exit(Cli.run(new LazyDump(), args));
    }
}
