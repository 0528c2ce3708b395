package dev.lazypages.net;

/**
 * A decoded client → server frame (REQUEST, DONE or AUTH) of {@link PageFrameDescriptor}.
 *
 * @param decodedNanos System.nanoTime() when the frame was decoded, for serve latency
 * @param token        the AUTH token, else null
 */
record PageRequest(int type, int flags, int nrPages, long vaddr, long requestId, long decodedNanos, String token) {
}
