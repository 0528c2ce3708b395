package dev.lazypages.migrate;

import java.nio.file.Path;
import java.util.List;

/**
 * The migration's control messages as the state machines see them; {@link Link} carries them
 * (over the control connection of dev.lazypages.net in production, in memory in unit tests).
 *
 * <p>The sequence, source → destination unless marked ←:
 * <pre>
 *   (handshake: Hello both ways, token and protocol checked)
 *   PrecheckRequest(mode, pid, facts)        ← PrecheckReply(differences; empty = go)
 *   [pre-copy, hybrid] per round: directory "1", "2", ... (FileChunk..., DirectoryDone)
 *                                            ← RoundApplied(round) once the warm process has it
 *   PageServerReady(port)                     (the destination connects its page client now)
 *   Freeze(round count)                        (informational: the source is frozen now)
 *   directory "final"; RestoreRequest(lazy, page server port, "final")
 *                                            ← Running(pid) | Failed(step, message)
 *   Commit                                     (or Abort: the destination kills what it built)
 *   [lazy] the destination's page client fetches from the page server, sends it DONE
 *                                            ← PostCopyDone(stats)
 *                                            ← or Failed: its copy could not go on and was killed;
 *                                              the source resumes its frozen original
 * </pre>
 */
public sealed interface Msg {
    /**
     * Source → destination: what the source and the process are.
     *
     * @param neededFeatures the kernel facilities (Features probe names) the destination needs for the mode
     */
    record PrecheckRequest(MigrationMode mode, HostFacts facts, List<String> neededFeatures) implements Msg {
    }

    /** Destination → source: empty {@code differences} means go ahead. */
    record PrecheckReply(List<String> differences) implements Msg {
    }

    /** A directory (a pre-copy round or the final image) arrived and is written under the work dir. */
    record DirectoryArrived(int round, Path dir, long bytes) implements Msg {
    }

    /**
     * Source → destination, before the freeze: the page server listens on {@code port} (the
     * control peer's host); the destination connects its page client while the process runs.
     */
    record PageServerReady(int port) implements Msg {
    }

    /** Destination → source: pre-copy round {@code round} is written into the warm process. */
    record RoundApplied(int round) implements Msg {
    }

    /** Source → destination: the process is frozen; the final image follows. */
    record Freeze() implements Msg {
    }

    /**
     * Source → destination: restore the directory {@code dir} (a name under the work dir); the post-copy background
     * transfer capped at {@code maxPostcopyBandwidth} bytes/s (0: none).
     */
    record RestoreRequest(boolean lazy, int pageServerPort, String dir, long maxPostcopyBandwidth) implements Msg {
        public RestoreRequest(boolean lazy, int pageServerPort, String dir) {
            this(lazy, pageServerPort, dir, 0);
        }
    }

    /** Destination → source: the process runs as {@code pid}. */
    record Running(int pid, double restoreMs, java.util.Map<String, Double> phasesMs) implements Msg {
        public Running {
            phasesMs = phasesMs != null ? java.util.Collections.unmodifiableMap(new java.util.LinkedHashMap<>(phasesMs))
                    : java.util.Map.of();
        }

        public Running(int pid, double restoreMs) {
            this(pid, restoreMs, null);
        }

    }

    /** Either way: the step that failed and why. */
    record Failed(String step, String message) implements Msg {
    }

    /** Source → destination: the source gives the process up (it is killed once its pages are served). */
    record Commit() implements Msg {
    }

    /** Source → destination: the migration is called off before Commit. */
    record Abort(String reason) implements Msg {
    }

    /**
     * Destination → source: every page is in place (or the process exited); on the wire a
     * PostCopyDone (counts, percentiles) followed by a Report whose JSON carries the rest.
     *
     * @param faults       page faults served
     * @param pages        pages delivered after the process ran
     * @param bytes        bytes fetched from the source after the process ran
     * @param durationMs   process running → every page in place
     * @param backgroundMiBps background sweep throughput
     * @param faultLatency the fault latency histogram (ns), or null
     */
    record PostCopyDone(long faults, long pages, long bytes, long durationMs, double backgroundMiBps,
                        org.HdrHistogram.Histogram faultLatency) implements Msg {
    }

    /** Liveness (ignored by the state machines). */
    record Ping() implements Msg {
    }
}
