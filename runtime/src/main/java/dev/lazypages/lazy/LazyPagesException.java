package dev.lazypages.lazy;

/** A lazy page server failed; the message names the step (reading the uffd, reading the source, UFFDIO_COPY...). */
public final class LazyPagesException extends RuntimeException {
    public LazyPagesException(String message, Throwable cause) {
        super(message, cause);
    }

    public LazyPagesException(String message) {
        super(message);
    }
}
