package dev.lazypages.cli;

public final class LazyPages {
    public static void main(String[] args) {
    }
}
