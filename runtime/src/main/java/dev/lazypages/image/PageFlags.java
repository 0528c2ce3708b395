package dev.lazypages.image;

import dev.lazypages.image.proto.PageMap;
import java.util.ArrayList;
import java.util.List;

/** The bits of {@code PageMapEntry.flags} ({@link PageMap.Flag}) as int masks. */
public final class PageFlags {
    /** The run's bytes are in this image's pages.img. */
    public static final int PRESENT = PageMap.Flag.PRESENT_VALUE;
    /** The run is unchanged since the parent image. */
    public static final int IN_PARENT = PageMap.Flag.IN_PARENT_VALUE;
    /** The run is all zeroes. */
    public static final int ZERO = PageMap.Flag.ZERO_VALUE;
    /** The run's bytes stay at the source; the destination fetches them through the page server. */
    public static final int REMOTE = PageMap.Flag.REMOTE_VALUE;
    /** Every defined bit; an entry has exactly one of them. */
    public static final int KINDS = PRESENT | IN_PARENT | ZERO | REMOTE;

    private PageFlags() {
    }

    /** E.g. {@code PRESENT|ZERO} or {@code 0x10}. */
    public static String describe(int flags) {
        List<String> names = new ArrayList<>();
        if ((flags & PRESENT) != 0) {
            names.add("PRESENT");
        }
        if ((flags & IN_PARENT) != 0) {
            names.add("IN_PARENT");
        }
        if ((flags & ZERO) != 0) {
            names.add("ZERO");
        }
        if ((flags & REMOTE) != 0) {
            names.add("REMOTE");
        }
        if ((flags & ~KINDS) != 0) {
            names.add(ImageFile.hex32(flags & ~KINDS));
        }
        return names.isEmpty() ? "none" : String.join("|", names);
    }
}
