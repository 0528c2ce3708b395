package dev.lazypages.perf.suite;

import java.nio.file.Path;
import java.util.function.Consumer;

/**
 * What a {@link SuiteBench} is given.
 *
 * @param outDir   the run's output directory (a benchmark may write extra files into it)
 * @param quick    the short version ({@code --quick}: the whole suite in under two minutes)
 * @param progress one line per step, for the terminal
 */
public record SuiteContext(Path outDir, boolean quick, Consumer<String> progress) {
}
