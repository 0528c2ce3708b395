package dev.lazypages.cli;

import dev.lazypages.net.PageClient;
import java.time.Duration;
import picocli.CommandLine;
import picocli.CommandLine.Option;

/**
 * {@code --recover-timeout SECONDS}, shared by the destination's commands that fetch pages from a
 * source during post-copy ({@code serve}, {@code restore --lazy-pages}, {@code --page-server}):
 * how long a lost page connection is retried before the pages count as lost (the restored
 * process is then killed, the command fails).
 */
final class RecoverTimeout {
    @Option(names = "--recover-timeout", paramLabel = "SECONDS",
            description = "During post-copy, how long to reconnect to a source that cannot be reached before giving up "
                    + "(the restored process is then killed); default 60.")
    private Double seconds;

    /** The timeout, or the default; a usage error for a negative value. */
    Duration get(CommandLine cmd) {
        if (seconds == null) {
            return PageClient.Options.DEFAULT_RECOVER_TIMEOUT;
        }
        if (!(seconds >= 0) || seconds > 86_400) {
            throw new CommandLine.ParameterException(cmd, "--recover-timeout must be between 0 and 86400 seconds");
        }
        return Duration.ofMillis(Math.round(seconds * 1000));
    }
}
