/*
 * mapper - a workload that changes its memory layout on command, for the tests of
 * dirty tracking and VMA handling (lazy-pages dev.lazypages.memory).
 *
 *   mapper [--help]
 *
 * At start it maps BASE, an anonymous private region of BASE_PAGES pages, writes every page,
 * and prints (stdout, line buffered):
 *   READY pid=<pid>
 *   BASE addr=0x<hex> len=<bytes>
 *   FILE addr=0x<hex> len=<bytes>           the first page of its own executable, mapped
 *                                             private and writable; that page is written
 * Then each SIGUSR1 performs the next step of a fixed script and prints one line:
 *   STEP 1 mmap addr=0x<a> len=<n>            new anonymous private mapping, every page written
 *   STEP 2 write addr=0x<base> pages=<k> at=<i,j,...>
 *                                             writes pages i, j, ... (indexes from addr) of BASE
 *   STEP 3 munmap addr=0x<a> len=<n>          unmaps the mapping of step 1
 *   STEP 4 mremap old=0x<base> new=0x<b> len=<n> wrote=0x<p>
 *                                             moves BASE (MREMAP_MAYMOVE | MREMAP_FIXED onto a
 *                                             fresh reservation, so it really moves), then
 *                                             writes the page at p
 *   STEP 5 brk old=0x<o> new=0x<n>            grows the heap from o (page aligned) to n and
 *                                             writes every page of [o, n)
 *   STEP 6 brk old=0x<o> new=0x<n>            shrinks the heap back to o
 *   IDLE step=<n>                             any later SIGUSR1: nothing changes
 * SIGUSR2, at any time, frees pages 7 and 8 of BASE and the page of FILE with
 * madvise(MADV_DONTNEED) (BASE's read zero from then on, FILE's the file again) and prints
 *   ZAP addr=0x<base> pages=7,8 file=0x<file>
 * Between steps it waits in sigwaitinfo and touches no memory of its own regions.
 * SIGTERM/SIGINT: prints EXIT and exits 0. Exit status 1 on a failed call, 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BASE_PAGES  16
#define STEP1_PAGES 8
#define BRK_PAGES   16
#define ZAP_FIRST   7
#define ZAP_PAGES   2

static const int step2_pages[] = {1, 5, 6, 11};
#define STEP2_COUNT ((int) (sizeof step2_pages / sizeof step2_pages[0]))

static char out_buf[4096];
static long page_size;

static void die(const char *what) {
    printf("ERROR %s: %s\n", what, strerror(errno));
    exit(1);
}

static void write_page(unsigned char *page, unsigned value) {
    /* a write to every cache line, so the whole page is touched, never all zeros */
    for (long off = 0; off < page_size; off += 64) {
        page[off] = (unsigned char) (value + 1 + off / 64);
    }
}

static void *map_anon(size_t len, int prot) {
    void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        die("mmap");
    }
    return p;
}

static void usage(FILE *f) {
    fprintf(f, "usage: mapper [--help]\n"
               "Maps a %d-page region, prints READY and BASE, then on each SIGUSR1 performs the next\n"
               "layout change (mmap, write, munmap, mremap, brk grow, brk shrink) and prints a STEP line;\n"
               "SIGUSR2 frees pages %d and %d of the region and the written page of a private mapping of\n"
               "its own executable (madvise MADV_DONTNEED) and prints ZAP.\n",
            BASE_PAGES, ZAP_FIRST, ZAP_FIRST + 1);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        return 2;
    }
    setvbuf(stdout, out_buf, _IOLBF, sizeof out_buf); /* static buffer: no heap before step 5 */
    page_size = sysconf(_SC_PAGESIZE);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        die("sigprocmask");
    }

    size_t base_len = (size_t) BASE_PAGES * page_size;
    unsigned char *base = map_anon(base_len, PROT_READ | PROT_WRITE);
    for (int i = 0; i < BASE_PAGES; i++) {
        write_page(base + (size_t) i * page_size, (unsigned) i);
    }
    int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (exe < 0) {
        die("open /proc/self/exe");
    }
    unsigned char *file = mmap(NULL, (size_t) page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, exe, 0);
    if (file == MAP_FAILED) {
        die("mmap /proc/self/exe");
    }
    close(exe);
    write_page(file, 500u); /* an anonymous copy of the file's page from now on */
    printf("READY pid=%d\n", (int) getpid());
    printf("BASE addr=%p len=%zu\n", (void *) base, base_len);
    printf("FILE addr=%p len=%zu\n", (void *) file, (size_t) page_size);

    unsigned char *step1 = NULL;
    size_t step1_len = (size_t) STEP1_PAGES * page_size;
    uintptr_t brk_old = 0;
    int step = 0;
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&set, &info);
        if (sig < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("sigwaitinfo");
        }
        if (sig == SIGUSR2) {
            if (madvise(base + ZAP_FIRST * (size_t) page_size, ZAP_PAGES * (size_t) page_size, MADV_DONTNEED) != 0
                || madvise(file, (size_t) page_size, MADV_DONTNEED) != 0) {
                die("madvise");
            }
            printf("ZAP addr=%p pages=%d,%d file=%p\n", (void *) base, ZAP_FIRST, ZAP_FIRST + 1, (void *) file);
            continue;
        }
        if (sig != SIGUSR1) {
            printf("EXIT\n");
            return 0;
        }
        step++;
        switch (step) {
        case 1:
            step1 = map_anon(step1_len, PROT_READ | PROT_WRITE);
            for (int i = 0; i < STEP1_PAGES; i++) {
                write_page(step1 + (size_t) i * page_size, 100u + (unsigned) i);
            }
            printf("STEP 1 mmap addr=%p len=%zu\n", (void *) step1, step1_len);
            break;
        case 2: {
            char list[128];
            size_t used = 0;
            for (int i = 0; i < STEP2_COUNT; i++) {
                write_page(base + (size_t) step2_pages[i] * page_size, 200u + (unsigned) i);
                used += (size_t) snprintf(list + used, sizeof list - used, "%s%d", i ? "," : "", step2_pages[i]);
            }
            printf("STEP 2 write addr=%p pages=%d at=%s\n", (void *) base, STEP2_COUNT, list);
            break;
        }
        case 3:
            if (munmap(step1, step1_len) != 0) {
                die("munmap");
            }
            printf("STEP 3 munmap addr=%p len=%zu\n", (void *) step1, step1_len);
            break;
        case 4: {
            /* reserve a fresh range (with a page gap around it) and move BASE onto it */
            unsigned char *hole = map_anon(base_len + 2 * (size_t) page_size, PROT_NONE);
            unsigned char *target = hole + page_size;
            void *moved = mremap(base, base_len, base_len, MREMAP_MAYMOVE | MREMAP_FIXED, target);
            if (moved == MAP_FAILED) {
                die("mremap");
            }
            unsigned char *old = base;
            base = moved;
            unsigned char *wrote = base + 3 * (size_t) page_size;
            write_page(wrote, 300u);
            printf("STEP 4 mremap old=%p new=%p len=%zu wrote=%p\n", (void *) old, (void *) base, base_len, (void *) wrote);
            break;
        }
        case 5: {
            uintptr_t cur = (uintptr_t) sbrk(0);
            brk_old = (cur + (uintptr_t) page_size - 1) & ~((uintptr_t) page_size - 1);
            uintptr_t brk_new = brk_old + (uintptr_t) BRK_PAGES * (uintptr_t) page_size;
            if (brk((void *) brk_new) != 0) {
                die("brk");
            }
            for (uintptr_t p = brk_old; p < brk_new; p += (uintptr_t) page_size) {
                write_page((unsigned char *) p, 400u);
            }
            printf("STEP 5 brk old=0x%lx new=0x%lx\n", (unsigned long) brk_old, (unsigned long) brk_new);
            break;
        }
        case 6: {
            uintptr_t cur = (uintptr_t) sbrk(0);
            if (brk((void *) brk_old) != 0) {
                die("brk");
            }
            printf("STEP 6 brk old=0x%lx new=0x%lx\n", (unsigned long) cur, (unsigned long) brk_old);
            break;
        }
        default:
            printf("IDLE step=%d\n", step);
            break;
        }
    }
}
