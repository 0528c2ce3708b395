package dev.lazypages.ffm;

import dev.lazypages.ffm.gen.user_regs_struct;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * The general-purpose registers of one x86-64 thread ({@code struct user_regs_struct}), held
 * on the Java heap so that no native segment escapes the facade.
 */
public final class Regs {
    static final long SIZE = user_regs_struct.sizeof();
    private static final int COUNT = (int) (SIZE / 8);
    private static final int R15 = index(user_regs_struct.r15$offset());
    private static final int R14 = index(user_regs_struct.r14$offset());
    private static final int R13 = index(user_regs_struct.r13$offset());
    private static final int R12 = index(user_regs_struct.r12$offset());
    private static final int RBP = index(user_regs_struct.rbp$offset());
    private static final int RBX = index(user_regs_struct.rbx$offset());
    private static final int R11 = index(user_regs_struct.r11$offset());
    private static final int R10 = index(user_regs_struct.r10$offset());
    private static final int R9 = index(user_regs_struct.r9$offset());
    private static final int R8 = index(user_regs_struct.r8$offset());
    private static final int RAX = index(user_regs_struct.rax$offset());
    private static final int RCX = index(user_regs_struct.rcx$offset());
    private static final int RDX = index(user_regs_struct.rdx$offset());
    private static final int RSI = index(user_regs_struct.rsi$offset());
    private static final int RDI = index(user_regs_struct.rdi$offset());
    private static final int ORIG_RAX = index(user_regs_struct.orig_rax$offset());
    private static final int RIP = index(user_regs_struct.rip$offset());
    private static final int CS = index(user_regs_struct.cs$offset());
    private static final int EFLAGS = index(user_regs_struct.eflags$offset());
    private static final int RSP = index(user_regs_struct.rsp$offset());
    private static final int SS = index(user_regs_struct.ss$offset());
    private static final int FS_BASE = index(user_regs_struct.fs_base$offset());
    private static final int GS_BASE = index(user_regs_struct.gs_base$offset());
    private static final int DS = index(user_regs_struct.ds$offset());
    private static final int ES = index(user_regs_struct.es$offset());
    private static final int FS = index(user_regs_struct.fs$offset());
    private static final int GS = index(user_regs_struct.gs$offset());

    private final long[] words;

    private static int index(long offset) {
        return (int) (offset / 8);
    }

    private Regs(long[] words) {
        this.words = words;
    }

    /** All registers zero. */
    public static Regs zero() {
        return new Regs(new long[COUNT]);
    }

    /** From the raw words in {@code struct user_regs_struct} order (as stored in an image). */
    public static Regs fromWords(long[] words) {
        if (words.length != COUNT) {
            throw new IllegalArgumentException("user_regs_struct has " + COUNT + " words, got " + words.length);
        }
        return new Regs(words.clone());
    }

    static Regs readFrom(MemorySegment seg) {
        return new Regs(seg.toArray(ValueLayout.JAVA_LONG));
    }

    void writeTo(MemorySegment seg) {
        MemorySegment.copy(words, 0, seg, ValueLayout.JAVA_LONG, 0, COUNT);
    }

    /** The raw words in {@code struct user_regs_struct} order. */
    public long[] words() {
        return words.clone();
    }

    public Regs copy() {
        return new Regs(words.clone());
    }

    public long rip() { return words[RIP]; }
    public void rip(long v) { words[RIP] = v; }
    public long rsp() { return words[RSP]; }
    public void rsp(long v) { words[RSP] = v; }
    public long rax() { return words[RAX]; }
    public void rax(long v) { words[RAX] = v; }
    public long origRax() { return words[ORIG_RAX]; }
    public void origRax(long v) { words[ORIG_RAX] = v; }
    public long rdi() { return words[RDI]; }
    public void rdi(long v) { words[RDI] = v; }
    public long rsi() { return words[RSI]; }
    public void rsi(long v) { words[RSI] = v; }
    public long rdx() { return words[RDX]; }
    public void rdx(long v) { words[RDX] = v; }
    public long r10() { return words[R10]; }
    public void r10(long v) { words[R10] = v; }
    public long r8() { return words[R8]; }
    public void r8(long v) { words[R8] = v; }
    public long r9() { return words[R9]; }
    public void r9(long v) { words[R9] = v; }
    public long rcx() { return words[RCX]; }
    public long r11() { return words[R11]; }
    public long rbx() { return words[RBX]; }
    public long rbp() { return words[RBP]; }
    public long r12() { return words[R12]; }
    public long r13() { return words[R13]; }
    public long r14() { return words[R14]; }
    public long r15() { return words[R15]; }
    public long eflags() { return words[EFLAGS]; }
    public long cs() { return words[CS]; }
    public long ss() { return words[SS]; }
    public long ds() { return words[DS]; }
    public long es() { return words[ES]; }
    public long fs() { return words[FS]; }
    public long gs() { return words[GS]; }
    public long fsBase() { return words[FS_BASE]; }
    public void fsBase(long v) { words[FS_BASE] = v; }
    public long gsBase() { return words[GS_BASE]; }
    public void gsBase(long v) { words[GS_BASE] = v; }

    /** Sets up a system call: number in rax (and orig_rax), arguments in rdi, rsi, rdx, r10, r8, r9. */
    public void syscallArgs(long nr, long... args) {
        if (args.length > 6) {
            throw new IllegalArgumentException("a system call takes at most 6 arguments");
        }
        words[RAX] = nr;
        words[ORIG_RAX] = nr;
        int[] slots = {RDI, RSI, RDX, R10, R8, R9};
        for (int i = 0; i < args.length; i++) {
            words[slots[i]] = args[i];
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Regs r && Arrays.equals(words, r.words);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(words);
    }

    @Override
    public String toString() {
        return String.format("rip=0x%x rsp=0x%x rax=0x%x orig_rax=%d rdi=0x%x rsi=0x%x rdx=0x%x fs_base=0x%x",
                rip(), rsp(), rax(), origRax(), rdi(), rsi(), rdx(), fsBase());
    }
}
