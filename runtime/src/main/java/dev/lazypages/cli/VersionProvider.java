package dev.lazypages.cli;

import picocli.CommandLine;

/** {@code --version}: the jar's Implementation-Version, the JDK and the kernel. */
public final class VersionProvider implements CommandLine.IVersionProvider {
    @Override
    public String[] getVersion() {
        String v = VersionProvider.class.getPackage().getImplementationVersion();
        return new String[] {
            "${COMMAND-FULL-NAME} " + (v != null ? v : "(development build)"),
            "JDK " + Runtime.version() + " (" + System.getProperty("java.vendor") + "), " + System.getProperty("os.name")
                    + " " + System.getProperty("os.version") + " " + System.getProperty("os.arch")
        };
    }
}
