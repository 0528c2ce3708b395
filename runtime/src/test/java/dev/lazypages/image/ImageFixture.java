package dev.lazypages.image;

import com.google.protobuf.ByteString;
import dev.lazypages.image.proto.InSyscall;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.MmStruct;
import dev.lazypages.image.proto.OpenFile;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.ProcessTree;
import dev.lazypages.image.proto.Rseq;
import dev.lazypages.image.proto.SigAction;
import dev.lazypages.image.proto.ThreadState;
import dev.lazypages.image.proto.Vma;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;

/**
 * Builds small synthetic images with known contents: one process (pid 100) with a text, heap,
 * anonymous and vsyscall VMA, two threads, three files, and page runs whose bytes are derived
 * from a seed so that tests can tell them apart.
 */
final class ImageFixture {
    static final int PID = 100;
    static final int PS = 4096;
    static final long TEXT = 0x400000L;
    static final long HEAP = 0x600000L;
    static final long ANON = 0x7f0000000000L;
    static final int ANON_PAGES = 16;
    static final long VSYSCALL = 0xffffffffff600000L;
    static final long RIP = 0x401234L;

    private ImageFixture() {
    }

    static Inventory inventory(Inventory.Kind kind, String parent) {
        return Inventory.newBuilder().setPageSize(PS).setKernelRelease("6.8.0-test").setCpuXcr0(0x2e7)
                .addAllXsaveComponents(Arrays.asList("x87", "sse", "avx")).setCreatedUnixMs(1_700_000_000_000L)
                .setToolVersion("0.1.0-test").setRootPid(PID).setKind(kind).setParent(parent).setTracker("pagemap-scan")
                .build();
    }

    static Vma vma(long start, long end, int prot, int flags, Vma.Kind kind, String path) {
        return Vma.newBuilder().setStart(start).setEnd(end).setProt(prot).setFlags(flags).setKind(kind).setPath(path)
                .build();
    }

    static Process.Builder process() {
        long[] regs = new long[ImageValidator.USER_REGS_WORDS];
        regs[10] = -514; // rax: ERESTARTNOHAND
        regs[15] = 34; // orig_rax: pause
        regs[16] = RIP;
        ThreadState main = ThreadState.newBuilder().setTid(PID)
                .addAllRegs(Arrays.stream(regs).boxed().toList())
                .setFpregs(ByteString.copyFrom(new byte[ImageValidator.FXSAVE_BYTES]))
                .setXstate(ByteString.copyFrom(new byte[2688]))
                .setFsBase(0x7f00deadb000L).setSigmask(0)
                .setRseq(Rseq.newBuilder().setAddress(0x7f00deadb9e0L).setLength(32).setSignature(0x53053053))
                .setInSyscall(InSyscall.newBuilder().setOrigRax(34).setRax(-514))
                .build();
        long[] regs2 = regs.clone();
        regs2[16] = RIP + 0x10;
        ThreadState second = ThreadState.newBuilder().setTid(PID + 1).addAllRegs(Arrays.stream(regs2).boxed().toList())
                .build();
        int priv = Vma.Flag.PRIVATE_VALUE;
        int anon = priv | Vma.Flag.ANONYMOUS_VALUE;
        int r = Vma.Prot.PROT_READ_VALUE;
        int rw = r | Vma.Prot.PROT_WRITE_VALUE;
        int rx = r | Vma.Prot.PROT_EXEC_VALUE;
        return Process.newBuilder().setPid(PID).setPpid(1).setExe("/usr/bin/app")
                .setMm(MmStruct.newBuilder().setStartCode(TEXT).setEndCode(TEXT + 2 * PS).setStartBrk(HEAP).setBrk(HEAP + 4 * PS))
                .addAllAuxv(Arrays.asList(6L, (long) PS, 0L, 0L))
                .addVmas(vma(TEXT, TEXT + 2 * PS, rx, priv, Vma.Kind.FILE_PRIVATE, "/usr/bin/app"))
                .addVmas(vma(HEAP, HEAP + 4 * PS, rw, anon, Vma.Kind.HEAP, "[heap]"))
                .addVmas(vma(ANON, ANON + 8L * PS, rw, anon, Vma.Kind.ANON, ""))
                .addVmas(vma(ANON + 8L * PS, ANON + ANON_PAGES * PS, r, anon, Vma.Kind.ANON, ""))
                .addVmas(vma(VSYSCALL, VSYSCALL + PS, Vma.Prot.PROT_EXEC_VALUE, priv, Vma.Kind.VSYSCALL, "[vsyscall]"))
                .addSigactions(SigAction.newBuilder().setSigno(2).setHandler(0x401500).setFlags(0x04000000).setRestorer(0x7f0000001000L))
                .addFiles(OpenFile.newBuilder().setFd(0).setPath("/dev/null").setKind(OpenFile.Kind.DEV_NULL))
                .addFiles(OpenFile.newBuilder().setFd(1).setPath("/dev/pts/0").setKind(OpenFile.Kind.TTY))
                .addFiles(OpenFile.newBuilder().setFd(3).setPath("/var/tmp/app.log").setKind(OpenFile.Kind.REGULAR)
                        .setFlags(02001).setPos(1234).setSize(1234).setMode(0100644).setInode(42))
                .addThreads(main).addThreads(second);
    }

    static ProcessTree tree() {
        return ProcessTree.newBuilder().addProcesses(process()).build();
    }

    /** {@code nr} pages whose bytes are a function of {@code seed} and the page's address. */
    static byte[] pages(int seed, long vaddr, int nr) {
        byte[] b = new byte[nr * PS];
        ByteBuffer w = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < b.length; i += 8) {
            w.putLong(i, (vaddr + i) * 31 + seed);
        }
        return b;
    }

    /**
     * A full image: 2 text pages and 4 heap pages stored (seed 1), 16 anonymous pages: 8 stored,
     * 8 zero.
     */
    static Path writeFull(Path dir) throws IOException {
        try (ImageWriter w = ImageWriter.create(dir, inventory(Inventory.Kind.FULL, ""))) {
            w.addPages(PID, HEAP, pages(1, HEAP, 4));
            w.addPages(PID, TEXT, pages(1, TEXT, 2));
            w.addPages(PID, ANON, ByteBuffer.wrap(pages(1, ANON, 8)));
            w.addZero(PID, ANON + 8L * PS, 8);
            w.finish(tree());
        }
        return dir;
    }

    /**
     * A chain of three images of the 16 anonymous pages, in {@code root}/gp, /p and /c:
     * grandparent stores all 16 (seed 10); parent: 0-7 in parent, 8-15 stored (seed 20); child:
     * 0-1 in parent, 2-3 stored (seed 30), 4-11 in parent, 12-15 zero. So the child reads pages
     * 0-1 from gp, 2-3 from itself, 4-7 from gp, 8-11 from p, 12-15 as zeroes.
     *
     * @return the child's directory
     */
    static Path writeChain(Path root) throws IOException {
        ProcessTree t = tree();
        try (ImageWriter w = ImageWriter.create(root.resolve("gp"), inventory(Inventory.Kind.PRE_DUMP, ""))) {
            w.addPages(PID, ANON, pages(10, ANON, 16));
            w.finish(t);
        }
        try (ImageWriter w = ImageWriter.create(root.resolve("p"), inventory(Inventory.Kind.PRE_DUMP, "../gp"))) {
            w.addInParent(PID, ANON, 8);
            w.addPages(PID, ANON + 8L * PS, pages(20, ANON + 8L * PS, 8));
            w.finish(t);
        }
        Path c = root.resolve("c");
        try (ImageWriter w = ImageWriter.create(c, inventory(Inventory.Kind.FULL, "../p"))) {
            w.addInParent(PID, ANON, 2);
            w.addPages(PID, ANON + 2L * PS, pages(30, ANON + 2L * PS, 2));
            w.addInParent(PID, ANON + 4L * PS, 8);
            w.addZero(PID, ANON + 12L * PS, 4);
            w.finish(t);
        }
        return c;
    }

    /** Expected contents of the child of {@link #writeChain}'s anonymous VMA. */
    static byte[] expectedChain() {
        byte[] b = new byte[ANON_PAGES * PS];
        put(b, 0, pages(10, ANON, 2));
        put(b, 2, pages(30, ANON + 2L * PS, 2));
        put(b, 4, pages(10, ANON + 4L * PS, 4));
        put(b, 8, pages(20, ANON + 8L * PS, 4));
        return b;
    }

    private static void put(byte[] dst, int page, byte[] src) {
        System.arraycopy(src, 0, dst, page * PS, src.length);
    }

    /** Overwrites {@code bytes} at {@code offset} of {@code file}. */
    static void patch(Path file, long offset, byte... bytes) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(bytes), offset);
        }
    }

    /** Overwrites a little-endian u32 at {@code offset} of {@code file}. */
    static void patchInt(Path file, long offset, int value) throws IOException {
        patch(file, offset, ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(value).array());
    }

    /** Inverts the byte at {@code offset} of {@code file}. */
    static void flip(Path file, long offset) throws IOException {
        byte[] all = Files.readAllBytes(file);
        patch(file, offset, (byte) ~all[(int) offset]);
    }

    /** Cuts {@code file} to {@code size} bytes. */
    static void truncate(Path file, long size) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
            ch.truncate(size);
        }
    }
}
