package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.netty.util.ResourceLeakDetector;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The tools' Netty settings: no leak sampling on the fault path unless asked for. */
class NettyDefaultsTest {
    private final ResourceLeakDetector.Level before = ResourceLeakDetector.getLevel();

    @AfterEach
    void restore() {
        ResourceLeakDetector.setLevel(before);
        System.clearProperty("io.netty.leakDetection.level");
    }

    @Test
    void theLeakDetectorIsOffUnlessAPropertyAsksForALevel() {
        ResourceLeakDetector.setLevel(ResourceLeakDetector.Level.SIMPLE);
        NettyDefaults.apply();
        assertEquals(ResourceLeakDetector.Level.DISABLED, ResourceLeakDetector.getLevel());

        ResourceLeakDetector.setLevel(ResourceLeakDetector.Level.PARANOID);
        System.setProperty("io.netty.leakDetection.level", "paranoid");
        NettyDefaults.apply();
        assertEquals(ResourceLeakDetector.Level.PARANOID, ResourceLeakDetector.getLevel(), "the user's level stays");
    }
}
