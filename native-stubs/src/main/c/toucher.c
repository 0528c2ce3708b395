/*
 * toucher - the workload of lazy-bench's fault-latency and post-copy throughput benchmarks.
 * The same touching code measures our engine and the C floor.
 *
 *   toucher --pages N --out FILE [--touches K] [--order random|sequential] [--seed S]
 *           [--base ADDR] [--interval-us U] [--wait-file PATH] [--floor A.B.C.D:PORT [--bulk]]
 *
 * The region: N pages, private anonymous, at ADDR (default 0x600000000000), every word the
 * pattern of floor-proto.h with seed S (default 1).
 *
 * Ours (no --floor): fills the region, prints READY, then polls every 200 µs until PATH exists.
 *   Meanwhile lazy-bench dumps it lazily, restores it with our engine (every page REMOTE,
 *   served over TCP by our page server) and creates PATH.
 * Floor (--floor): maps the region empty, registers it with a userfaultfd (MISSING) and starts
 *   a fault thread: read a fault message, request that one page from floor-server on a
 *   connection of its own, UFFDIO_COPY it (EEXIST: already there, wake). Blocking I/O, no
 *   framework. With --bulk, a bulk thread requests the whole region on a second connection
 *   and copies it in 256 KiB pieces as it streams in (pages a fault brought first answer
 *   EEXIST and are skipped); a sampler records the pages in every 2 ms. Touching starts as
 *   soon as both threads are connected (with --wait-file, once PATH exists).
 *
 * Touching: K (default N) distinct pages, in a seeded random order or from the first page on;
 * each touch is a load of the page's first word between two clock_gettime(CLOCK_MONOTONIC)
 * calls; each touched page is then checked word by word, outside the timed window. The order
 * and the latencies live in memory mapped after the wait (never lazily restored). With
 * --interval-us U, touch i starts no earlier than start + i*U (a fixed rate; a late touch
 * starts at once: the reader records with the expected interval U against coordinated
 * omission); 0 (default) touches back to back.
 *
 * FILE, written once the touches are done (floor --bulk: once every page is in), text:
 *   toucher 1                 format version
 *   mode ours|floor
 *   pages N / touches K / order random|sequential / interval_us U / seed S
 *   bad_pages B / first_bad I  pages that did not hold the pattern (-1: none)
 *   touch_ns T                first touch start to last touch end
 *   touch_start_ns S          CLOCK_MONOTONIC when touching began (the JVM's System.nanoTime clock)
 *   transfer_start_ns X       floor: CLOCK_MONOTONIC when its transfer began; ours: -1
 *   all_in_ns A               floor --bulk: transfer start to every page in; else -1
 *   fault_pages F / bulk_pages G   floor: pages copied by each thread; ours: -1
 *   latencies K               then K lines: one touch's latency in ns, in touch order
 *   progress M                then M lines "t_ns pages": pages in since transfer start (floor --bulk)
 *   end
 * stdout: "READY pid=<pid> base=0x<hex> pages=<n>", later "DONE touches=<k> bad=<b>".
 * Then ours sleeps until killed (the engine may still be filling the region); floor exits 0.
 * Exit status: 0 done, 2 bad arguments, 1 runtime error (one line on stderr).
 */
#define _GNU_SOURCE
#include "floor-proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NSEC           1000000000LL
#define BULK_CHUNK     (64u * FLOOR_PAGE_SIZE) /* 256 KiB, as our engine's bulk requests */
#define SAMPLE_NS      (2LL * 1000 * 1000)
#define MAX_SAMPLES    150000                  /* 5 minutes of 2 ms samples */
#define BULK_TIMEOUT_S 300

static uint64_t base = FLOOR_DEFAULT_BASE;
static uint64_t npages;
static uint64_t seed = 1;

/* Floor state. */
static int uffd = -1;
static struct sockaddr_in server;
static int64_t transfer_start;
static _Atomic uint64_t fault_pages;
static _Atomic uint64_t bulk_pages;
static _Atomic int bulk_done;
static int64_t all_in_ns = -1;
static int64_t (*samples)[2];
static _Atomic uint64_t nsamples;
static pthread_t sampler;

static void die(const char *what)
{
    fprintf(stderr, "toucher: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(const char *why)
{
    fprintf(stderr, "toucher: %s\nusage: toucher --pages N --out FILE [--touches K] [--order random|sequential]"
            " [--seed S] [--base ADDR] [--interval-us U] [--wait-file PATH] [--floor A.B.C.D:PORT [--bulk]]\n", why);
    exit(2);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * NSEC + ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Fresh private anonymous memory, populated (never registered with any userfaultfd). */
static void *fresh(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

/* ---- the floor: fault thread, bulk thread, sampler ---------------------------------------- */

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        die("socket");
    if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0)
        die("connect to floor-server");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_request(int fd, uint64_t vaddr, uint32_t n)
{
    struct floor_req rq = {FLOOR_REQ_MAGIC, n, vaddr};
    const char *p = (const char *)&rq;
    size_t left = sizeof rq;
    while (left > 0) {
        ssize_t w = send(fd, p, left, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("send request");
        }
        p += w;
        left -= (size_t)w;
    }
}

static void recv_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, (char *)buf + got, len - got, MSG_WAITALL);
        if (n == 0) {
            errno = ECONNRESET;
            die("floor-server closed the connection");
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("recv");
        }
        got += (size_t)n;
    }
}

static void check_response(const struct floor_resp *rs, uint64_t vaddr)
{
    if (rs->magic != FLOOR_RESP_MAGIC || rs->status != FLOOR_OK || rs->vaddr != vaddr) {
        fprintf(stderr, "toucher: floor-server answered magic 0x%x status %u for 0x%" PRIx64 " (asked 0x%" PRIx64 ")\n",
                rs->magic, rs->status, rs->vaddr, vaddr);
        exit(1);
    }
}

/* UFFDIO_COPY of [dst, dst+len) from src; pages already there are skipped. Returns pages copied. */
static uint64_t copy_range(uint64_t dst, const char *src, uint64_t len)
{
    uint64_t copied = 0;
    while (len > 0) {
        struct uffdio_copy c = {.dst = dst, .src = (uint64_t)(uintptr_t)src, .len = len, .mode = 0};
        if (ioctl(uffd, UFFDIO_COPY, &c) == 0) {
            return copied + len / FLOOR_PAGE_SIZE;
        }
        uint64_t step;
        if (c.copy > 0) { /* part of it copied, then a page that exists or a changing mm */
            step = (uint64_t)c.copy;
            copied += step / FLOOR_PAGE_SIZE;
        } else if (c.copy == -EEXIST) { /* a fault brought this one first */
            step = FLOOR_PAGE_SIZE;
        } else if (c.copy == -EAGAIN) {
            continue;
        } else {
            errno = (int)-c.copy;
            die("UFFDIO_COPY");
        }
        dst += step;
        src += step;
        len -= step;
    }
    return copied;
}

static void *fault_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static struct {
        struct floor_resp hdr;
        char page[FLOOR_PAGE_SIZE];
    } in; /* header and page in one recv (no padding: 16 + 4096 bytes); UFFDIO_COPY takes any source alignment */
    _Static_assert(sizeof in == sizeof(struct floor_resp) + FLOOR_PAGE_SIZE, "response buffer has no padding");
    for (;;) {
        struct uffd_msg msg;
        ssize_t n = read(uffd, &msg, sizeof msg);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            die("read userfaultfd");
        }
        if (n != sizeof msg || msg.event != UFFD_EVENT_PAGEFAULT)
            continue;
        uint64_t addr = msg.arg.pagefault.address & ~(uint64_t)(FLOOR_PAGE_SIZE - 1);
        send_request(fd, addr, 1);
        recv_full(fd, &in, sizeof in);
        check_response(&in.hdr, addr);
        struct uffdio_copy c = {.dst = addr, .src = (uint64_t)(uintptr_t)in.page, .len = FLOOR_PAGE_SIZE, .mode = 0};
        if (ioctl(uffd, UFFDIO_COPY, &c) == 0) {
            atomic_fetch_add_explicit(&fault_pages, 1, memory_order_relaxed);
        } else if (errno == EEXIST) { /* the bulk thread was first: wake the faulting thread */
            struct uffdio_range r = {.start = addr, .len = FLOOR_PAGE_SIZE};
            if (ioctl(uffd, UFFDIO_WAKE, &r) < 0)
                die("UFFDIO_WAKE");
        } else if (errno != EAGAIN) {
            die("UFFDIO_COPY (fault)");
        }
    }
    return NULL;
}

static void *bulk_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = fresh(BULK_CHUNK);
    struct floor_resp rs;
    send_request(fd, base, (uint32_t)npages);
    recv_full(fd, &rs, sizeof rs);
    check_response(&rs, base);
    uint64_t total = npages * FLOOR_PAGE_SIZE;
    for (uint64_t off = 0; off < total; off += BULK_CHUNK) {
        uint64_t len = total - off < BULK_CHUNK ? total - off : BULK_CHUNK;
        recv_full(fd, buf, len);
        atomic_fetch_add_explicit(&bulk_pages, copy_range(base + off, buf, len), memory_order_relaxed);
    }
    all_in_ns = now_ns() - transfer_start;
    atomic_store_explicit(&bulk_done, 1, memory_order_release);
    return NULL;
}

static void *sampler_thread(void *arg)
{
    (void)arg;
    int64_t next = transfer_start;
    for (;;) {
        int done = atomic_load_explicit(&bulk_done, memory_order_acquire);
        uint64_t i = atomic_load_explicit(&nsamples, memory_order_relaxed);
        if (i < MAX_SAMPLES) {
            samples[i][0] = now_ns() - transfer_start;
            samples[i][1] = (int64_t)(atomic_load_explicit(&fault_pages, memory_order_relaxed)
                    + atomic_load_explicit(&bulk_pages, memory_order_relaxed));
            atomic_store_explicit(&nsamples, i + 1, memory_order_release);
        }
        if (done)
            return NULL;
        next += SAMPLE_NS;
        struct timespec ts = {next / NSEC, next % NSEC};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
    }
}

static void start_floor(int bulk)
{
    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    if (uffd < 0)
        die("userfaultfd");
    struct uffdio_api api = {.api = UFFD_API, .features = 0};
    if (ioctl(uffd, UFFDIO_API, &api) < 0)
        die("UFFDIO_API");
    struct uffdio_register reg = {.range = {.start = base, .len = npages * FLOOR_PAGE_SIZE},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
        die("UFFDIO_REGISTER");
    int faultfd = connect_server();
    int bulkfd = bulk ? connect_server() : -1;
    pthread_t t;
    if (pthread_create(&t, NULL, fault_thread, (void *)(intptr_t)faultfd) != 0) {
        errno = EAGAIN;
        die("pthread_create");
    }
    transfer_start = now_ns();
    if (bulk) {
        samples = fresh(sizeof(*samples) * MAX_SAMPLES);
        if (pthread_create(&t, NULL, bulk_thread, (void *)(intptr_t)bulkfd) != 0
                || pthread_create(&sampler, NULL, sampler_thread, NULL) != 0) {
            errno = EAGAIN;
            die("pthread_create");
        }
    }
}

static void await_bulk(void)
{
    int64_t deadline = now_ns() + BULK_TIMEOUT_S * NSEC;
    while (!atomic_load_explicit(&bulk_done, memory_order_acquire)) {
        if (now_ns() > deadline) {
            fprintf(stderr, "toucher: the bulk transfer did not finish within %d s\n", BULK_TIMEOUT_S);
            exit(1);
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    pthread_join(sampler, NULL); /* it takes its last sample once it sees bulk_done */
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    uint64_t touches = 0;
    uint64_t interval_us = 0;
    int random_order = 1;
    int floor_mode = 0;
    int bulk = 0;
    const char *out = NULL;
    const char *wait_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--bulk")) {
            bulk = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage("missing value or unknown option");
        const char *v = argv[++i];
        if (!strcmp(a, "--pages"))
            npages = floor_parse_u64("toucher", a, v);
        else if (!strcmp(a, "--touches"))
            touches = floor_parse_u64("toucher", a, v);
        else if (!strcmp(a, "--seed"))
            seed = floor_parse_u64("toucher", a, v);
        else if (!strcmp(a, "--base"))
            base = floor_parse_u64("toucher", a, v);
        else if (!strcmp(a, "--interval-us"))
            interval_us = floor_parse_u64("toucher", a, v);
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--wait-file"))
            wait_file = v;
        else if (!strcmp(a, "--order")) {
            if (!strcmp(v, "random"))
                random_order = 1;
            else if (!strcmp(v, "sequential"))
                random_order = 0;
            else
                usage("--order must be random or sequential");
        } else if (!strcmp(a, "--floor")) {
            char host[64];
            const char *colon = strrchr(v, ':');
            if (!colon || (size_t)(colon - v) >= sizeof host)
                usage("--floor needs A.B.C.D:PORT");
            memcpy(host, v, (size_t)(colon - v));
            host[colon - v] = '\0';
            uint64_t port = floor_parse_u64("toucher", a, colon + 1);
            server.sin_family = AF_INET;
            server.sin_port = htons((uint16_t)port);
            if (port == 0 || port > 65535 || inet_pton(AF_INET, host, &server.sin_addr) != 1)
                usage("--floor needs A.B.C.D:PORT");
            floor_mode = 1;
        } else
            usage("unknown option");
    }
    if (npages == 0 || npages > UINT32_MAX || !out)
        usage("--pages (1..2^32-1) and --out are required");
    if (touches == 0)
        touches = npages;
    if (touches > npages)
        usage("--touches must not exceed --pages (each page is touched once)");
    if (base % FLOOR_PAGE_SIZE != 0)
        usage("--base must be page aligned");
    if (bulk && !floor_mode)
        usage("--bulk goes with --floor");
    if (sysconf(_SC_PAGESIZE) != FLOOR_PAGE_SIZE) {
        fprintf(stderr, "toucher: page size %ld, need %u\n", sysconf(_SC_PAGESIZE), FLOOR_PAGE_SIZE);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    char *region = mmap((void *)(uintptr_t)base, npages * FLOOR_PAGE_SIZE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (region == MAP_FAILED)
        die("mmap of the region at --base");
    if ((uint64_t)(uintptr_t)region != base) {
        fprintf(stderr, "toucher: the kernel placed the region at %p, not 0x%" PRIx64 "\n", (void *)region, base);
        return 1;
    }
    if (floor_mode) {
        start_floor(bulk);
    } else {
        for (uint64_t p = 0; p < npages; p++)
            floor_fill_page((uint64_t *)(region + p * FLOOR_PAGE_SIZE), seed, base + p * FLOOR_PAGE_SIZE);
    }
    printf("READY pid=%d base=0x%" PRIx64 " pages=%" PRIu64 "\n", getpid(), base, npages);
    if (wait_file) {
        while (access(wait_file, F_OK) != 0) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }

    /* Everything the touch loop writes is mapped now, after any lazy restore, and populated. */
    uint32_t *order = fresh(npages * sizeof *order);
    uint64_t *lat = fresh(touches * sizeof *lat);
    for (uint64_t i = 0; i < npages; i++)
        order[i] = (uint32_t)i;
    if (random_order) {
        uint64_t rs = seed ^ UINT64_C(0x5deece66d);
        for (uint64_t i = 0; i < touches; i++) {
            uint64_t j = i + splitmix64(&rs) % (npages - i);
            uint32_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
    if (interval_us > 0)
        prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake on time, not up to 50 µs late */

    uint64_t bad = 0;
    int64_t first_bad = -1;
    int64_t start = now_ns();
    int64_t last_end = start;
    for (uint64_t i = 0; i < touches; i++) {
        if (interval_us > 0) {
            int64_t due = start + (int64_t)(i * interval_us * 1000);
            if (now_ns() < due) {
                struct timespec ts = {due / NSEC, due % NSEC};
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
                }
            }
        }
        const uint64_t *page = (const uint64_t *)(region + (uint64_t)order[i] * FLOOR_PAGE_SIZE);
        int64_t t0 = now_ns();
        (void)*(volatile const uint64_t *)page;
        last_end = now_ns();
        lat[i] = (uint64_t)(last_end - t0);
        if (!floor_page_ok(page, seed, base + (uint64_t)order[i] * FLOOR_PAGE_SIZE)) {
            if (bad++ == 0)
                first_bad = order[i];
        }
    }
    int64_t touch_ns = last_end - start;
    if (bulk)
        await_bulk();

    FILE *f = fopen(out, "w");
    if (!f)
        die(out);
    fprintf(f, "toucher 1\nmode %s\npages %" PRIu64 "\ntouches %" PRIu64 "\norder %s\ninterval_us %" PRIu64
            "\nseed %" PRIu64 "\nbad_pages %" PRIu64 "\nfirst_bad %" PRId64 "\ntouch_ns %" PRId64 "\ntouch_start_ns %" PRId64
            "\ntransfer_start_ns %" PRId64 "\nall_in_ns %" PRId64
            "\nfault_pages %" PRId64 "\nbulk_pages %" PRId64 "\nlatencies %" PRIu64 "\n",
            floor_mode ? "floor" : "ours", npages, touches, random_order ? "random" : "sequential", interval_us, seed, bad,
            first_bad, touch_ns, start, floor_mode ? transfer_start : -1, all_in_ns, floor_mode ? (int64_t)atomic_load(&fault_pages) : -1,
            floor_mode ? (int64_t)atomic_load(&bulk_pages) : -1, touches);
    for (uint64_t i = 0; i < touches; i++)
        fprintf(f, "%" PRIu64 "\n", lat[i]);
    uint64_t ns = samples ? atomic_load(&nsamples) : 0;
    fprintf(f, "progress %" PRIu64 "\n", ns);
    for (uint64_t i = 0; i < ns; i++)
        fprintf(f, "%" PRId64 " %" PRId64 "\n", samples[i][0], samples[i][1]);
    fprintf(f, "end\n");
    if (fclose(f) != 0)
        die(out);
    printf("DONE touches=%" PRIu64 " bad=%" PRIu64 "\n", touches, bad);
    if (floor_mode)
        return 0;
    for (;;)
        pause();
}
