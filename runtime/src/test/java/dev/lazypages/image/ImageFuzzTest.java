package dev.lazypages.image;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Message;
import dev.lazypages.fuzz.Fuzz;
import dev.lazypages.fuzz.Mutator;
import dev.lazypages.fuzz.Mutator.Field;
import dev.lazypages.image.ImageFile.Kind;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.PageMap;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.ProcessTree;
import dev.lazypages.image.proto.Vma;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Fuzzes the image reader and validator with images made by the real writer ({@link ImageFixture}:
 * a full image, and the child of a three-image parent chain), mutated at three levels: the raw
 * file (header fields included), the protobuf payload with a correct header and CRC (so the
 * parser is reached), and the messages themselves (fields set to huge, negative, unaligned or
 * overlapping values, records duplicated, dropped, reordered; so the validator is reached).
 * Properties: opening, verifying and reading every run either works or throws one line of
 * {@link ImageFormatException} naming a file; nothing else, no hang, no allocation sized by an
 * unchecked field.
 */
class ImageFuzzTest {
    private static final Kind[] KINDS = Kind.values();
    private static final List<Field> HEADER_FIELDS = List.of(Field.le(ImageFileDescriptor.VERSION_OFFSET, 4),
            Field.le(ImageFileDescriptor.KIND_OFFSET, 4), Field.le(ImageFileDescriptor.PAYLOAD_LENGTH_OFFSET, 8),
            Field.le(ImageFileDescriptor.PAYLOAD_LENGTH_OFFSET, 4), Field.le(ImageFileDescriptor.PAYLOAD_CRC_OFFSET, 4),
            Field.le(ImageFileDescriptor.PAGE_SIZE_OFFSET, 4));

    @TempDir
    Path tmp;
    /** Per template (0 full, 1 chain child): the bytes of each file. */
    private final List<Map<Kind, byte[]>> templates = new ArrayList<>();
    private Path caseDir;

    @BeforeEach
    void writeTemplates() throws IOException {
        templates.add(read(ImageFixture.writeFull(tmp.resolve("full"))));
        templates.add(read(ImageFixture.writeChain(tmp)));
        caseDir = tmp.resolve("case"); // a sibling of the chain's "p": the child's "../p" resolves
    }

    private static Map<Kind, byte[]> read(Path dir) throws IOException {
        Map<Kind, byte[]> m = new EnumMap<>(Kind.class);
        for (Kind k : KINDS) {
            m.put(k, Files.readAllBytes(dir.resolve(k.fileName())));
        }
        return m;
    }

    /** An image file of {@code kind} holding {@code payload}, header and CRC correct. */
    static byte[] file(Kind kind, byte[] payload) {
        CRC32C crc = new CRC32C();
        crc.update(payload);
        ByteBuffer h = ImageFileDescriptor.encode(kind, payload.length, (int) crc.getValue(), 0);
        return Mutator.concat(h.array(), payload);
    }

    private static byte[] payload(byte[] file) {
        return java.util.Arrays.copyOfRange(file, ImageFileDescriptor.HEADER_LENGTH, file.length);
    }

    private static Message parse(Kind k, byte[] file) throws IOException {
        byte[] p = payload(file);
        return switch (k) {
            case INVENTORY -> Inventory.parseFrom(p);
            case PROCESSES -> ProcessTree.parseFrom(p);
            case PAGEMAP -> PageMap.parseFrom(p);
            case PAGES -> throw new IllegalArgumentException();
        };
    }

    // ---------------------------------------------------------------- structure-aware mutations

    private static Inventory mutate(SplittableRandom r, Inventory inv) {
        Inventory.Builder b = inv.toBuilder();
        switch (r.nextInt(5)) {
            case 0 -> b.setPageSize((int) Mutator.interesting(r));
            case 1 -> b.setParent(List.of("../nowhere", ".", "../case", "../c", "../gp", "/", "../p/../p").get(r.nextInt(7)));
            case 2 -> b.setKindValue((int) Mutator.interesting(r));
            case 3 -> b.setFormatVersion((int) Mutator.interesting(r));
            default -> b.setPageSize(inv.getPageSize() * (r.nextBoolean() ? 2 : 16)).setParent("");
        }
        return b.build();
    }

    private static long nearby(SplittableRandom r, long v) {
        return switch (r.nextInt(5)) {
            case 0 -> v + ImageFixture.PS * (r.nextInt(9) - 4L);
            case 1 -> v + r.nextInt(4096);
            case 2 -> 0xfffffffffffff000L - ImageFixture.PS * (long) r.nextInt(4);
            default -> Mutator.interesting(r);
        };
    }

    private static ProcessTree mutate(SplittableRandom r, ProcessTree tree) {
        ProcessTree.Builder t = tree.toBuilder();
        Process.Builder p = t.getProcessesBuilder(0);
        int n = p.getVmasCount();
        int i = r.nextInt(n);
        Vma v = p.getVmas(i);
        switch (r.nextInt(8)) {
            case 0 -> p.setVmas(i, v.toBuilder().setStart(nearby(r, v.getStart())));
            case 1 -> p.setVmas(i, v.toBuilder().setEnd(nearby(r, v.getEnd())));
            case 2 -> p.setVmas(i, v.toBuilder().setEnd(v.getStart() + (1L << (32 + r.nextInt(12))) * ImageFixture.PS));
            case 3 -> p.addVmas(v);
            case 4 -> p.removeVmas(i);
            case 5 -> {
                Vma w = p.getVmas((i + 1) % n);
                p.setVmas(i, w).setVmas((i + 1) % n, v);
            }
            case 6 -> p.setPid((int) Mutator.interesting(r));
            default -> t.addProcesses(p.build().toBuilder().setPid(r.nextBoolean() ? p.getPid() : p.getPid() + 1));
        }
        return t.build();
    }

    private static PageMap mutate(SplittableRandom r, PageMap map) {
        PageMap.Builder m = map.toBuilder();
        int n = m.getEntriesCount();
        int i = r.nextInt(n);
        PageMapEntry e = m.getEntries(i);
        PageMapEntry.Builder b = e.toBuilder();
        switch (r.nextInt(10)) {
            case 0 -> m.setEntries(i, b.setVaddr(nearby(r, e.getVaddr())));
            case 1 -> m.setEntries(i, b.setNrPages((int) Mutator.interesting(r)));
            case 2 -> m.setEntries(i, b.setNrPages(e.getNrPages() + r.nextInt(5) - 2));
            case 3 -> m.setEntries(i, b.setPageOffset(Mutator.interesting(r)));
            case 4 -> m.setEntries(i, b.setFlags(r.nextInt(64)));
            case 5 -> m.setEntries(i, b.setPid((int) Mutator.interesting(r)));
            case 6 -> m.addEntries(i, e);
            case 7 -> m.removeEntries(i);
            case 8 -> {
                PageMapEntry f = m.getEntries((i + 1) % n);
                m.setEntries(i, f).setEntries((i + 1) % n, e);
            }
            default -> m.setEntries(i, b.setFlags(PageFlags.ZERO).setNrPages(0x80000000 + r.nextInt(4)));
        }
        return m.build();
    }

    private static byte[] mutateFile(SplittableRandom r, Kind k, byte[] valid) throws IOException {
        if (k == Kind.PAGES) {
            return Mutator.mutate(r, valid, HEADER_FIELDS);
        }
        return switch (r.nextInt(6)) {
            case 0 -> Mutator.mutate(r, valid, HEADER_FIELDS);
            case 1 -> file(k, Mutator.mutate(r, payload(valid), List.of()));
            default -> {
                Message m = parse(k, valid);
                int rounds = 1 + r.nextInt(2);
                for (int i = 0; i < rounds; i++) {
                    m = switch (m) {
                        case Inventory inv -> mutate(r, inv);
                        case ProcessTree tree -> tree.getProcessesCount() == 0 || tree.getProcesses(0).getVmasCount() == 0
                                ? tree : mutate(r, tree);
                        case PageMap map -> map.getEntriesCount() == 0 ? map : mutate(r, map);
                        default -> m;
                    };
                }
                yield file(k, m.toByteArray());
            }
        };
    }

    private static void hugeRun(SplittableRandom r, Map<Kind, byte[]> template, DataOutputStream out) throws IOException {
        PageMap map = (PageMap) parse(Kind.PAGEMAP, template.get(Kind.PAGEMAP));
        ProcessTree tree = (ProcessTree) parse(Kind.PROCESSES, template.get(Kind.PROCESSES));
        int i = r.nextInt(map.getEntriesCount());
        PageMapEntry e = map.getEntries(i);
        long nr = (1L << 31) + r.nextInt(3) - (r.nextBoolean() ? 0 : 1) + (r.nextInt(4) == 0 ? (1L << 31) - 8 : 0);
        int flags = List.of(PageFlags.ZERO, PageFlags.IN_PARENT, PageFlags.REMOTE, PageFlags.PRESENT).get(r.nextInt(4));
        map = map.toBuilder().setEntries(i, e.toBuilder().setNrPages((int) nr).setFlags(flags)).build();
        Process.Builder p = tree.getProcesses(0).toBuilder();
        List<Vma> kept = new ArrayList<>();
        for (Vma v : p.getVmasList()) { // the VMA of the entry grows over the ones after it (up to vsyscall)
            if (Long.compareUnsigned(v.getStart(), e.getVaddr()) <= 0 && Long.compareUnsigned(e.getVaddr(), v.getEnd()) < 0) {
                kept.add(v.toBuilder().setEnd(e.getVaddr() + nr * ImageFixture.PS).build());
            } else if (kept.isEmpty() || Long.compareUnsigned(v.getStart(), kept.getLast().getEnd()) >= 0) {
                kept.add(v);
            }
        }
        p.clearVmas().addAllVmas(kept);
        for (var f : List.of(Map.entry(Kind.PAGEMAP, file(Kind.PAGEMAP, map.toByteArray())),
                Map.entry(Kind.PROCESSES, file(Kind.PROCESSES, tree.toBuilder().setProcesses(0, p).build().toByteArray())))) {
            out.writeByte(f.getKey().ordinal());
            out.writeInt(f.getValue().length);
            out.write(f.getValue());
        }
    }

    /** Input: template number, then (kind, length, bytes) for the 1 or 2 files that differ from it. */
    private byte[] generate(SplittableRandom r) {
        try {
            int t = r.nextInt(templates.size());
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            DataOutputStream out = new DataOutputStream(bytes);
            out.writeByte(t);
            if (r.nextInt(10) == 0) { // an entry of 2^31 pages or more, inside a VMA widened to hold it
                hugeRun(r, templates.get(t), out);
                return bytes.toByteArray();
            }
            int files = r.nextInt(5) == 0 ? 2 : 1;
            for (int i = 0; i < files; i++) {
                Kind k = KINDS[r.nextInt(KINDS.length)];
                byte[] f = r.nextInt(20) == 0 ? Mutator.randomBytes(r, 300) : mutateFile(r, k, templates.get(t).get(k));
                out.writeByte(k.ordinal());
                out.writeInt(f.length);
                out.write(f);
            }
            return bytes.toByteArray();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private void writeCase(byte[] input) throws IOException {
        DataInputStream in = new DataInputStream(new java.io.ByteArrayInputStream(input));
        Map<Kind, byte[]> files = new EnumMap<>(templates.get(in.readByte()));
        while (in.available() > 0) {
            Kind k = KINDS[in.readByte()];
            files.put(k, in.readNBytes(in.readInt()));
        }
        Files.createDirectories(caseDir);
        for (var f : files.entrySet()) {
            Files.write(caseDir.resolve(f.getKey().fileName()), f.getValue());
        }
    }

    /** Opens, verifies and reads every run (first pages and last page) of the case's image. */
    private void readAll() throws IOException {
        try (ImageReader rd = ImageReader.open(caseDir)) {
            rd.verifyPages();
            int ps = rd.pageSize();
            for (PageMapEntry e : rd.image().pageMap().getEntriesList()) {
                long nr = Integer.toUnsignedLong(e.getNrPages());
                int first = (int) Math.min(nr, Math.max(1, (4 << 20) / ps));
                read(rd, e, e.getVaddr(), first, ps);
                read(rd, e, e.getVaddr() + (nr - 1) * ps, 1, ps);
            }
        }
    }

    private static void read(ImageReader rd, PageMapEntry e, long vaddr, int n, int ps) throws IOException {
        ByteBuffer dst = (n & 1) == 0 ? ByteBuffer.allocateDirect(n * ps) : ByteBuffer.allocate(n * ps);
        try {
            rd.readPages(e.getPid(), vaddr, n, dst);
            assertEquals(n * ps, dst.position(), "every page read");
        } catch (ImageFormatException bad) {
            throw bad;
        } catch (IllegalArgumentException remote) {
            assertTrue(e.getFlags() == PageFlags.REMOTE && remote.getMessage().contains("is REMOTE"), remote.toString());
        }
    }

    @Test
    void readerAndValidatorRefuseEveryBadImageWithOneLineNamingTheFile() {
        int cases = Fuzz.cases(3000);
        int[] opened = new int[1];
        int ran = Fuzz.suite("image").run(cases, this::generate, input -> {
            writeCase(input);
            try {
                readAll();
                opened[0]++;
            } catch (ImageFormatException refused) {
                String m = refused.getMessage();
                assertFalse(m.contains("\n"), "one line: " + m);
                assertTrue(refused.file() != null && m.startsWith(refused.file() + ": "), "names the file: " + m);
            }
        });
        assertEquals(cases, ran);
        assertTrue(opened[0] > 0 && opened[0] < cases, opened[0] + " of " + cases + " mutated images opened");
    }
}
