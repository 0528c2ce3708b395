/*
 * lazy-pages: the one header the FFM bindings are generated from (see generate.sh).
 *
 * It includes the system headers of Debian 12 (glibc 2.36, linux-libc-dev 6.1) and, below,
 * declares what the kernel has added to its UAPI since 6.1 that this tool uses. Those
 * declarations are copied from the Linux kernel's UAPI headers (include/uapi/linux/fs.h and
 * include/uapi/linux/userfaultfd.h as of Linux 6.18, licensed GPL-2.0 WITH
 * Linux-syscall-note); each is guarded so that newer system headers win.
 *
 * Function-like macros (the _IOWR-built UFFDIO_* and PAGEMAP_SCAN requests) cannot be
 * generated: the facade builds them in Java from the generated struct sizes
 * (dev.lazypages.ffm.Ioctl), and a test compares each with the number a C program prints
 * (native-stubs/src/main/c/uapi-consts.c, which includes this header too).
 */
#ifndef LAZYPAGES_H
#define LAZYPAGES_H

#define _GNU_SOURCE 1
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <elf.h>
#include <sys/types.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <linux/userfaultfd.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <linux/sched/types.h>

/* ---- userfaultfd additions after Linux 6.1 (include/uapi/linux/userfaultfd.h, 6.18) ---- */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1<<13) /* since 6.4 */
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1<<14) /* since 6.6 */
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1<<15) /* since 6.7 */
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1<<16) /* since 6.8 */
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
struct uffdio_poison {
	struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1<<0)
	__u64 mode;
	__s64 updated;
};
#endif
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1<<0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1<<1)
	__u64 mode;
	__s64 move;
};
#endif

/* ---- PAGEMAP_SCAN, since Linux 6.7 (include/uapi/linux/fs.h, 6.18) ---- */
#ifndef PAGE_IS_WPALLOWED
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)
/* Linux 6.18 adds PAGE_IS_GUARD */
#define PAGE_IS_GUARD (1 << 8)

struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};
#endif

/* Kernel-side ioctl type letter of PAGEMAP_SCAN: _IOWR('f', 16, struct pm_scan_arg). */
#define LP_PAGEMAP_IOCTL_TYPE 'f'
#define LP_PAGEMAP_SCAN_NR 16

#endif
