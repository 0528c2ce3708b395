package dev.lazypages.net;

import java.io.IOException;

/**
 * Where the answer to one asynchronous page request goes ({@link PageClient#fetchAsync}).
 * Called once, on the connection's event loop thread: keep it short and never block in it.
 */
public interface PageSink {
    /** The pages arrived; {@code data} is valid only during the call. */
    void received(PageData data);

    /** The request failed for good (the server could not read the pages, or the connection did not recover). */
    void failed(IOException cause);
}
