package dev.lazypages.cli;

public final class LazyDump {
    public static void main(String[] args) {
    }
}
