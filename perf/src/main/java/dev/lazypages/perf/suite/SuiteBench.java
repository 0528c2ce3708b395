package dev.lazypages.perf.suite;

/**
 * One benchmark of {@code lazy-bench all}: runs its measurement (warm-up discarded, repeated),
 * and returns what the report shows. A benchmark that cannot run here throws with a message
 * that says why; one whose workload fails its own verification throws too.
 */
public interface SuiteBench {
    /** File-name-safe name, e.g. {@code fault-latency}: the JSON file is {@code <name>.json}. */
    String name();

    /** The report section's heading. */
    String title();

    /** Runs the benchmark; {@link SuiteContext#quick()} asks for a short version. */
    SuiteResult run(SuiteContext ctx) throws Exception;

    /** What a benchmark does, as a lambda. */
    @FunctionalInterface
    interface Body {
        SuiteResult run(SuiteContext ctx) throws Exception;
    }

    /** A benchmark of this name and title that runs {@code body}. */
    static SuiteBench of(String name, String title, Body body) {
        return new SuiteBench() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public String title() {
                return title;
            }

            @Override
            public SuiteResult run(SuiteContext ctx) throws Exception {
                return body.run(ctx);
            }
        };
    }
}
