package dev.lazypages.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.channel.SelectStrategy;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
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
        AtomicLong clock = new AtomicLong(1_000_000_000L);
        SpinThenBlock s = new SpinThenBlock(() -> clock.addAndGet(10_000), clock::get, true); // yields of 10 µs: the CPUs are free
        assertEquals(2, s.calculateStrategy(() -> 2, false), "ready events are handled");
        long t0 = clock.get();
        int continues = 0;
        int r;
        while ((r = s.calculateStrategy(() -> 0, false)) == SelectStrategy.CONTINUE) {
            continues++;
        }
        assertEquals(SelectStrategy.SELECT, r);
        assertEquals(5_000, continues, "polled and yielded until the 50 ms were over");
        assertEquals(50_000_000, clock.get() - t0);
        assertEquals(SelectStrategy.SELECT, s.calculateStrategy(() -> 0, false), "still nothing: blocks");
        assertEquals(1, s.calculateStrategy(() -> 1, false));
        assertEquals(SelectStrategy.CONTINUE, s.calculateStrategy(() -> 0, false), "a new event starts a new spin");
    }

    @Test
    void aSlowYieldEndsTheSpinForAHoldOffThatGrowsWhileYieldsStaySlow() throws Exception {
        SpinThenBlock.enableHere(50_000_000); // 50 ms
        AtomicLong clock = new AtomicLong(1_000_000_000L);
        AtomicLong yieldTakes = new AtomicLong(2_000_000); // another thread had the CPU 2 ms, as under load
        AtomicInteger yields = new AtomicInteger();
        SpinThenBlock s = new SpinThenBlock(() -> {
            yields.incrementAndGet();
            clock.addAndGet(yieldTakes.get());
        }, clock::get, true);
        assertEquals(1, s.calculateStrategy(() -> 1, false));
        assertEquals(SelectStrategy.SELECT, s.calculateStrategy(() -> 0, false), "a slow yield: block, an event wakes the loop");
        assertEquals(1, yields.get());
        assertEquals(1, s.calculateStrategy(() -> 1, false), "the event");
        assertEquals(SelectStrategy.SELECT, s.calculateStrategy(() -> 0, false), "within the 1 ms hold-off: blocks without yielding");
        assertEquals(1, yields.get());
        clock.addAndGet(SpinThenBlock.MIN_HOLD_OFF_NANOS);
        assertEquals(1, s.calculateStrategy(() -> 1, false));
        assertEquals(SelectStrategy.SELECT, s.calculateStrategy(() -> 0, false), "after the hold-off it tries again: still slow");
        assertEquals(2, yields.get());
        clock.addAndGet(SpinThenBlock.MIN_HOLD_OFF_NANOS + 500_000);
        assertEquals(1, s.calculateStrategy(() -> 1, false));
        assertEquals(SelectStrategy.SELECT, s.calculateStrategy(() -> 0, false), "still within the doubled hold-off (2 ms)");
        assertEquals(2, yields.get());
        clock.addAndGet(SpinThenBlock.MIN_HOLD_OFF_NANOS);
        yieldTakes.set(1_000); // the CPUs are free again
        assertEquals(1, s.calculateStrategy(() -> 1, false));
        assertEquals(SelectStrategy.CONTINUE, s.calculateStrategy(() -> 0, false), "a fast yield: spins again");
        assertEquals(SelectStrategy.CONTINUE, s.calculateStrategy(() -> 0, false));
        assertEquals(4, yields.get());
    }

    @Test
    void withoutHoldOffsSlowYieldsDoNotEndTheSpin() throws Exception {
        SpinThenBlock.enableHere(50_000_000);
        AtomicLong clock = new AtomicLong(1_000_000_000L);
        SpinThenBlock s = new SpinThenBlock(() -> clock.addAndGet(2_000_000), clock::get, false);
        assertEquals(1, s.calculateStrategy(() -> 1, false));
        for (int i = 0; i < 24; i++) {
            assertEquals(SelectStrategy.CONTINUE, s.calculateStrategy(() -> 0, false), "yield " + i);
        }
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
