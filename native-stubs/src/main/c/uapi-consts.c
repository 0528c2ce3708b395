/*
 * uapi-consts - prints the ioctl request numbers and struct sizes that the Java facade builds
 * by itself (dev.lazypages.ffm.Ioctl, the generated struct layouts), as C computes them from
 * the same header the bindings are generated from (jextract/lazypages.h).
 *
 *   uapi-consts
 *
 * Output: one "NAME=<decimal unsigned value>" line per constant, then one
 * "SIZEOF_<struct>=<bytes>" line per struct; exit status 0. IoctlNumbersTest parses it.
 */
#include "lazypages.h"

#include <inttypes.h>
#include <stdio.h>

/* System headers older than Linux 6.6 / 6.8 lack these two requests; lazypages.h declares
 * their structs and numbers, the requests are built the way the kernel's header builds them. */
#ifndef UFFDIO_MOVE
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif
#ifndef UFFDIO_POISON
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif
#ifndef PAGEMAP_SCAN
#define PAGEMAP_SCAN _IOWR(LP_PAGEMAP_IOCTL_TYPE, LP_PAGEMAP_SCAN_NR, struct pm_scan_arg)
#endif

#define CONST(name) printf("%s=%" PRIu64 "\n", #name, (uint64_t)(unsigned long)(name))
#define SIZEOF(type) printf("SIZEOF_%s=%zu\n", #type, sizeof(struct type))

int main(void)
{
    CONST(UFFDIO_API);
    CONST(UFFDIO_REGISTER);
    CONST(UFFDIO_UNREGISTER);
    CONST(UFFDIO_WAKE);
    CONST(UFFDIO_COPY);
    CONST(UFFDIO_ZEROPAGE);
    CONST(UFFDIO_MOVE);
    CONST(UFFDIO_WRITEPROTECT);
    CONST(UFFDIO_CONTINUE);
    CONST(UFFDIO_POISON);
    CONST(USERFAULTFD_IOC_NEW);
    CONST(PAGEMAP_SCAN);

    SIZEOF(uffdio_api);
    SIZEOF(uffdio_register);
    SIZEOF(uffdio_copy);
    SIZEOF(uffd_msg);
    SIZEOF(pm_scan_arg);
    SIZEOF(page_region);
    SIZEOF(prctl_mm_map);
    SIZEOF(user_regs_struct);
    SIZEOF(user_fpregs_struct);
    return fflush(stdout) == 0 ? 0 : 1;
}
