package dev.lazypages.criu;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.HexFormat;

/**
 * The small files the CRIU-style flow keeps beside the image in DIR: the page server's token
 * ({@value #TOKEN}, mode 0600; it travels with the directory the user copies to the
 * destination, so that {@code restore --lazy-pages} needs no {@code --token}) and the address
 * of a local relay ({@value #RELAY}, written by {@code lazy-pages --page-server}, read by
 * {@code restore --lazy-pages} without {@code --address}). The image reader ignores both.
 */
public final class PageServerFiles {
    /** The page server's token, written by {@code dump --lazy-pages}. */
    public static final String TOKEN = "page-server.token";
    /** HOST:PORT of the relay started by {@code lazy-pages --page-server}. */
    public static final String RELAY = "lazy-pages.address";

    private PageServerFiles() {
    }

    /** A fresh random token (128 bits, hex). */
    public static String randomToken() {
        byte[] b = new byte[16];
        new SecureRandom().nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    /** Writes {@code token} to DIR/{@value #TOKEN}, readable by the owner only. */
    public static void writeToken(Path dir, String token) throws IOException {
        Path p = dir.resolve(TOKEN);
        Files.deleteIfExists(p);
        Files.createFile(p, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
        Files.writeString(p, token + "\n", StandardCharsets.UTF_8, StandardOpenOption.TRUNCATE_EXISTING);
    }

    /**
     * {@code explicit} when given, else the token in DIR/{@value #TOKEN}.
     *
     * @throws IllegalArgumentException neither (says what to do)
     */
    public static String token(String explicit, Path dir) throws IOException {
        if (explicit != null) {
            return explicit;
        }
        try {
            return Files.readString(dir.resolve(TOKEN), StandardCharsets.UTF_8).strip();
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("no --token and no " + dir.resolve(TOKEN)
                    + " (copy the whole image directory from the source, or pass the token dump --lazy-pages printed)");
        }
    }

    /** The relay's HOST:PORT from DIR/{@value #RELAY}, or null when there is none. */
    public static String relay(Path dir) throws IOException {
        try {
            return Files.readString(dir.resolve(RELAY), StandardCharsets.UTF_8).strip();
        } catch (NoSuchFileException e) {
            return null;
        }
    }

    static void writeRelay(Path dir, String hostPort) throws IOException {
        Path tmp = dir.resolve(RELAY + ".tmp");
        Files.writeString(tmp, hostPort + "\n", StandardCharsets.UTF_8);
        Files.move(tmp, dir.resolve(RELAY), java.nio.file.StandardCopyOption.ATOMIC_MOVE,
                java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    }

    static void removeRelay(Path dir) {
        try {
            Files.deleteIfExists(dir.resolve(RELAY));
        } catch (IOException ignored) {
            // best effort
        }
    }
}
