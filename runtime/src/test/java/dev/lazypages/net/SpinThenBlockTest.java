package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.channel.SelectStrategy;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The FAULT loops' select strategy: poll for a while after an event, then block. */
class SpinThenBlockTest {
    @AfterEach
    void off() {
        SpinThenBlock.enableHere(0);
    }

    @Test
    void aLoopThatDidNotAskBlocksAtOnceWithoutPolling() throws Exception {
        SpinThenBlock s = new SpinThenBlock();
        AtomicInteger polls = new AtomicInteger();
        assertEquals(SelectStrategy.SELECT, s.calculateStrategy(() -> {
            polls.incrementAndGet();
            return 0;
        }, false));
        assertEquals(0, polls.get(), "no epoll_wait(0) before blocking");
        assertEquals(3, s.calculateStrategy(() -> 3, true), "tasks pending: poll, never block");
    }

    @Test
    void afterAnEventItPollsForTheSpinThenBlocks() throws Exception {
        SpinThenBlock.enableHere(50_000_000); // 50 ms
        SpinThenBlock s = new SpinThenBlock();
        assertEquals(2, s.calculateStrategy(() -> 2, false), "ready events are handled");
        long t0 = System.nanoTime();
        int continues = 0;
        int r;
        while ((r = s.calculateStrategy(() -> 0, false)) == SelectStrategy.CONTINUE) {
            continues++;
        }
        long spun = System.nanoTime() - t0;
        assertEquals(SelectStrategy.SELECT, r);
        assertTrue(continues > 0 && spun >= 45_000_000, "polled " + continues + " times for " + spun / 1e6 + " ms");
        assertEquals(SelectStrategy.SELECT, s.calculateStrategy(() -> 0, false), "still nothing: blocks");
        assertEquals(1, s.calculateStrategy(() -> 1, false));
        assertEquals(SelectStrategy.CONTINUE, s.calculateStrategy(() -> 0, false), "a new event starts a new spin");
    }

    @Test
    void idleWorkRunsWhenNoEventIsReadyAndThePollComesFirst() throws Exception {
        AtomicInteger left = new AtomicInteger(3);
        AtomicInteger calls = new AtomicInteger();
        SpinThenBlock.idleWorkHere(() -> {
            calls.incrementAndGet();
            return left.getAndDecrement() > 0;
        });
        try {
            SpinThenBlock s = new SpinThenBlock(); // no spin: only the idle work keeps it polling
            assertEquals(4, s.calculateStrategy(() -> 4, false), "events first: no idle work before they are handled");
            assertEquals(0, calls.get());
            for (int i = 0; i < 3; i++) {
                assertEquals(SelectStrategy.CONTINUE, s.calculateStrategy(() -> 0, false), "did some work: polls again");
            }
            assertEquals(SelectStrategy.SELECT, s.calculateStrategy(() -> 0, false), "no work left, no spin: blocks");
            assertEquals(4, calls.get());
        } finally {
            SpinThenBlock.idleWorkHere(null);
        }
        SpinThenBlock s = new SpinThenBlock();
        assertEquals(SelectStrategy.SELECT, s.calculateStrategy(() -> 0, false), "work taken away: blocks at once");
        assertEquals(4, calls.get());
    }

    @Test
    void theSpinComesFromItsPropertyAndIsNeverNegative() {
        assertEquals(200_000, SpinThenBlock.spinNanos("lazypages.test.unset", 200));
        System.setProperty("lazypages.test.spin", "-5");
        try {
            assertEquals(0, SpinThenBlock.spinNanos("lazypages.test.spin", 200));
        } finally {
            System.clearProperty("lazypages.test.spin");
        }
    }
}
