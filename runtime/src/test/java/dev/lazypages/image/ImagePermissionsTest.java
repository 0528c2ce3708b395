package dev.lazypages.image;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** An image holds a process's memory: its directory is created 0700 and every file 0600, whatever the umask lets through. */
class ImagePermissionsTest {
    @TempDir
    Path tmp;

    private static String mode(Path p) throws IOException {
        return PosixFilePermissions.toString(Files.getPosixFilePermissions(p));
    }

    @Test
    void imageDirectoriesAre0700AndTheirFiles0600() throws IOException {
        Path full = ImageFixture.writeFull(tmp.resolve("new/parents/img"));
        Path child = ImageFixture.writeChain(tmp.resolve("chain"));
        for (Path dir : List.of(full, full.getParent(), full.getParent().getParent(), child, child.resolveSibling("p"),
                child.resolveSibling("gp"))) {
            assertEquals("rwx------", mode(dir), dir.toString());
            try (Stream<Path> files = Files.list(dir)) {
                for (Path f : files.filter(Files::isRegularFile).toList()) {
                    assertEquals("rw-------", mode(f), f.toString());
                }
            }
        }
        try (Stream<Path> files = Files.list(full)) {
            assertFalse(files.toList().isEmpty());
        }
    }

    @Test
    void anExistingDirectoryIsLeftAsItIs() throws IOException {
        Path dir = Files.createDirectory(tmp.resolve("mine"), PosixFilePermissions.asFileAttribute(
                PosixFilePermissions.fromString("rwxr-x---")));
        ImageFixture.writeFull(dir);
        assertEquals("rwxr-x---", mode(dir));
        assertEquals("rw-------", mode(dir.resolve(ImageFile.Kind.PAGES.fileName())));
    }
}
