package dev.lazypages.net;

import dev.lazypages.ffm.PageBuffer;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A {@link PageProvider} whose page contents are a function of the address: the 8-byte word at
 * address {@code a} is {@code a * 31 + seed} (native order), as in LazyFixture. Addresses in
 * [{@code failFrom}, {@code failTo}) fail.
 */
final class GeneratedPages implements PageProvider {
    final int pageSize;
    final int seed;
    volatile long failFrom = -1;
    volatile long failTo = -1;
    final AtomicLong reads = new AtomicLong();
    /** Benchmarks: write only the first word of each page (generating every word costs as much as the network). */
    volatile boolean firstWordOnly;

    GeneratedPages(int pageSize, int seed) {
        this.pageSize = pageSize;
        this.seed = seed;
    }

    static long word(int seed, long address) {
        return address * 31 + seed;
    }

    @Override
    public int pageSize() {
        return pageSize;
    }

    @Override
    public void readPages(long vaddr, int nrPages, ByteBuffer dst) throws IOException {
        reads.incrementAndGet();
        long end = vaddr + (long) nrPages * pageSize;
        if (failFrom >= 0 && vaddr < failTo && end > failFrom) {
            throw new IOException("process_vm_readv: EFAULT (Bad address)");
        }
        if (!dst.isDirect() || dst.remaining() != nrPages * pageSize) {
            throw new IllegalStateException("provider got " + dst);
        }
        ByteBuffer w = dst.order(ByteOrder.nativeOrder());
        int base = w.position();
        int step = firstWordOnly ? pageSize : 8;
        for (int i = 0; i < nrPages * pageSize; i += step) {
            w.putLong(base + i, word(seed, vaddr + i));
        }
    }

    /** Null when {@code buf} holds the pages at {@code vaddr} from {@code offset}, else the first wrong address. */
    String check(PageBuffer buf, long offset, long vaddr, int nrPages) {
        for (long i = 0; i < (long) nrPages * pageSize; i += 8) {
            if (buf.getLong(offset + i) != word(seed, vaddr + i)) {
                return "0x" + Long.toHexString(vaddr + i);
            }
        }
        return null;
    }
}
