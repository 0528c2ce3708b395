package dev.lazypages.cli;

import dev.lazypages.image.ImageDir;
import dev.lazypages.image.ImageReader;
import dev.lazypages.image.PageFlags;
import dev.lazypages.image.ProtoMaps;
import dev.lazypages.image.proto.Inventory;
import dev.lazypages.image.proto.OpenFile;
import dev.lazypages.image.proto.PageMapEntry;
import dev.lazypages.image.proto.Process;
import dev.lazypages.image.proto.ThreadState;
import dev.lazypages.image.proto.Vma;
import dev.lazypages.stats.Json;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code inspect DIR}: prints an image directory, like CRIU's {@code crit show}: every message
 * as JSON, or with {@code --summary} a short human summary. The image (and its parents) is
 * fully checked first; a bad one fails with an {@code ImageFormatException}, which the command
 * line maps to exit 4 with its one-line message.
 */
@Command(name = "inspect", mixinStandardHelpOptions = true, versionProvider = VersionProvider.class,
        usageHelpAutoWidth = true,
        description = {
            "Prints a checkpoint image directory (inventory.img, processes.img, pagemap.img, pages.img).",
            "",
            "Default: every message as JSON, bytes fields shortened to a hex prefix and their length. "
                    + "--summary: the inventory, VMAs, page counts, threads and files in a few lines.",
            "",
            "Exit status: 0; 4 when the image is corrupt, truncated, of another format version or inconsistent "
                    + "(one line on stderr naming the file and the problem)."
        })
public final class InspectCommand implements Callable<Integer> {
    private static final double MIB = 1024.0 * 1024.0;
    /** user_regs_struct index of rip. */
    private static final int RIP = 16;

    @Spec
    private CommandSpec spec;

    @Parameters(index = "0", paramLabel = "DIR", description = "The image directory.")
    private Path dir;

    @Option(names = "--summary", description = "Print a short human summary instead of JSON.")
    private boolean summary;

    @Option(names = "--verify-pages", description = "Also read all page data and check every CRC (slow for big images).")
    private boolean verifyPages;

    @Override
    public Integer call() throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        try (ImageReader r = ImageReader.open(dir)) {
            if (verifyPages) {
                r.verifyPages();
            }
            if (summary) {
                printSummary(out, r.image());
            } else {
                out.println(Json.write(json(r.image())));
            }
        }
        out.flush();
        return ExitCodes.OK;
    }

    private static Map<String, Object> json(ImageDir img) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("dir", img.dir().toString());
        m.put("inventory", ProtoMaps.toMap(img.inventory()));
        m.put("processes", ProtoMaps.toMap(img.processes()));
        m.put("pagemap", ProtoMaps.toMap(img.pageMap()));
        Map<String, Object> pages = new LinkedHashMap<>();
        pages.put("pages", img.pagesInFile());
        pages.put("crc32c", String.format("0x%08x", img.pagesCrc()));
        m.put("pages", pages);
        return m;
    }

    private static void printSummary(PrintWriter out, ImageDir img) {
        Inventory inv = img.inventory();
        out.printf("image %s: %s, format %d, page size %d, kernel %s, xcr0 0x%x, tool %s, created %s, root pid %d, "
                        + "tracker %s, parent %s%n",
                img.dir(), inv.getKind(), inv.getFormatVersion(), inv.getPageSize(), inv.getKernelRelease(), inv.getCpuXcr0(),
                inv.getToolVersion(), Instant.ofEpochMilli(inv.getCreatedUnixMs()), inv.getRootPid(), inv.getTracker(),
                inv.getParent().isEmpty() ? "none" : inv.getParent());
        for (Process p : img.processes().getProcessesList()) {
            out.printf("process %d (%s)%n", p.getPid(), p.getExe());
            out.printf("  VMAs: %d%n", p.getVmasCount());
            for (Vma v : p.getVmasList()) {
                out.printf("    %016x-%016x %s %-12s %s%n", v.getStart(), v.getEnd(), prot(v), v.getKind(), v.getPath());
            }
            long[] pages = new long[4];
            for (PageMapEntry e : img.pageMap().getEntriesList()) {
                if (e.getPid() == p.getPid()) {
                    int k = switch (e.getFlags()) {
                        case PageFlags.PRESENT -> 0;
                        case PageFlags.IN_PARENT -> 1;
                        case PageFlags.REMOTE -> 3;
                        default -> 2;
                    };
                    pages[k] += Integer.toUnsignedLong(e.getNrPages());
                }
            }
            long ps = img.pageSize();
            out.printf("  pages: present %d (%.2f MiB), in parent %d (%.2f MiB), zero %d (%.2f MiB), remote %d (%.2f MiB)%n",
                    pages[0], pages[0] * ps / MIB, pages[1], pages[1] * ps / MIB, pages[2], pages[2] * ps / MIB,
                    pages[3], pages[3] * ps / MIB);
            out.printf("  threads: %d%n", p.getThreadsCount());
            for (ThreadState t : p.getThreadsList()) {
                String rip = t.getRegsCount() > RIP ? String.format("0x%x", t.getRegs(RIP)) : "?";
                String sys = t.hasInSyscall() ? String.format("in syscall %d (rax %d)", t.getInSyscall().getOrigRax(),
                        t.getInSyscall().getRax()) : "not in a syscall";
                out.printf("    tid %d rip %s %s%n", t.getTid(), rip, sys);
            }
            out.printf("  files: %d%n", p.getFilesCount());
            for (OpenFile f : p.getFilesList()) {
                out.printf("    fd %d %-9s %s%n", f.getFd(), f.getKind(), f.getPath());
            }
        }
    }

    private static String prot(Vma v) {
        int pr = v.getProt();
        return ((pr & Vma.Prot.PROT_READ_VALUE) != 0 ? "r" : "-") + ((pr & Vma.Prot.PROT_WRITE_VALUE) != 0 ? "w" : "-")
                + ((pr & Vma.Prot.PROT_EXEC_VALUE) != 0 ? "x" : "-") + ((v.getFlags() & Vma.Flag.SHARED_VALUE) != 0 ? "s" : "p");
    }
}
