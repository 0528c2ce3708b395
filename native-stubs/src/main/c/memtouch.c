/*
 * memtouch - self-verifying memory workload for lazy-pages migration tests.
 *
 *   memtouch --size-mib N [--threads T] [--dirty-mib-per-sec R] [--seed S]
 *            [--verify-every-sec K]
 *
 * All state lives in the process's own memory (globals, two anonymous private
 * mmap regions, thread stacks); the only fd used is stdout.  That makes the
 * process a fair target for checkpoint/restore: if any page is lost, stale or
 * torn by the migration, the next verification reports it.
 *
 * Memory layout
 *   data region   N MiB, anonymous private mmap, 4 KiB pages.  Every page is
 *                 struct page_hdr {magic, index, version, checksum} (32 bytes)
 *                 followed by 508 u64 payload words produced by splitmix64
 *                 seeded from (seed, index, version).  checksum = FNV-1a
 *                 applied to the payload 64-bit word at a time
 *                 (h ^= w; h *= FNV_PRIME, starting from FNV_OFFSET).
 *   version table one u64 per page, its own anonymous private mmap.  Initial
 *                 version of every page is 1 (so a zero page fails on magic).
 *
 * Workers
 *   T pthreads; worker w owns pages {i : i % A == w} where A = min(T, pages)
 *   (so two workers never touch the same page).  Every 10 ms (absolute
 *   CLOCK_MONOTONIC deadlines) a worker computes its byte budget
 *   R MiB/s / A * elapsed (elapsed clamped to 100 ms, so a clock jump or a long
 *   stop - e.g. a checkpoint - never causes a burst) and rewrites that many
 *   random pages of its own: table[i]++, then the page is regenerated for the
 *   new version.  With R = 0 the workers only sleep (100 ms ticks).
 *
 * Pausing (for verification)
 *   The main thread sets `pause_req` under a mutex; every worker checks it
 *   between pages (never mid-page), increments `paused_count`, signals the
 *   main thread and waits on a condition variable until `pause_req` clears.
 *   The main thread verifies only once paused_count == active workers.
 *
 * Output (stdout, line buffered, flushed after every line)
 *   READY pid=<pid>
 *   REGION addr=0x<hex> size=<bytes> pages=<n> page_size=4096 table=0x<hex>
 *   HEARTBEAT <n>                 every second, n = 1, 2, 3, ...
 *   VERIFY OK pages=<n>
 *   VERIFY FAIL page=<i> reason=<magic|index|version|checksum|content> \
 *       expected_version=<v> found_version=<v> failures=<k>
 *   EXIT                          on SIGTERM / SIGINT, then exit status 0
 *
 * Signals: SIGUSR1 -> verify now (the handler only sets a flag; the work is
 * done by the main loop).  Handlers are installed without SA_RESTART, and are
 * blocked in the worker threads, so the main thread's clock_nanosleep gets
 * EINTR; it then handles the flags and re-sleeps to the SAME absolute
 * deadline, so the heartbeat cadence is unaffected.
 *
 * Exit status: 0 normal (SIGTERM/SIGINT), 2 bad arguments, 1 runtime error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE      4096u
#define PAGE_WORDS     (PAGE_SIZE / 8u)
#define HDR_WORDS      4u
#define PAYLOAD_WORDS  (PAGE_WORDS - HDR_WORDS)
#define PAGE_MAGIC     UINT64_C(0x4d454d544f554348) /* "MEMTOUCH" */
#define FNV_OFFSET     UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME      UINT64_C(0x00000100000001b3)
#define GOLDEN         UINT64_C(0x9e3779b97f4a7c15)
#define NSEC           1000000000LL
#define WORK_TICK_NS   (10LL * 1000 * 1000)   /* 10 ms batches            */
#define IDLE_TICK_NS   (100LL * 1000 * 1000)  /* R = 0: sleep 100 ms      */
#define MAX_DT_NS      (100LL * 1000 * 1000)  /* clamp on elapsed time    */
#define MAX_THREADS    1024u

struct page_hdr {
    uint64_t magic;
    uint64_t index;
    uint64_t version;
    uint64_t checksum;
};

struct worker {
    pthread_t thread;
    unsigned id;
    uint64_t rng;            /* xorshift64* state */
    uint64_t pages_written;  /* statistics, for debugging with gdb */
};

/* ---- configuration (set once in main) ---- */
static uint64_t cfg_size_mib;
static unsigned cfg_threads = 1;
static double cfg_rate_mib = 0.0;
static uint64_t cfg_seed = 1;
static uint64_t cfg_verify_every = 0;

/* ---- state ---- */
static unsigned char *region;
static uint64_t *vtable;
static uint64_t npages;
static unsigned active_workers;   /* workers that own at least one page */
static struct worker *workers;

static pthread_mutex_t pause_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pause_cv = PTHREAD_COND_INITIALIZER;   /* workers wait  */
static pthread_cond_t ack_cv = PTHREAD_COND_INITIALIZER;     /* main waits    */
static volatile int pause_req;   /* read without the lock as a fast check   */
static unsigned paused_count;

static volatile sig_atomic_t sig_verify;
static volatile sig_atomic_t sig_exit;
static uint64_t heartbeat;

static const char usage_text[] =
    "usage: memtouch --size-mib N [--threads T] [--dirty-mib-per-sec R] "
    "[--seed S] [--verify-every-sec K] [--help]";

/* ------------------------------------------------------------------------ */

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline uint64_t page_seed(uint64_t index, uint64_t version)
{
    uint64_t k = mix64(cfg_seed + GOLDEN * (index + 1));
    return mix64(k ^ (version * UINT64_C(0xd6e8feb86659fd93)));
}

/* Write page `index` for `version`: header + payload + checksum. */
static void write_page(uint64_t index, uint64_t version)
{
    uint64_t *w = (uint64_t *)(region + index * PAGE_SIZE);
    uint64_t s = page_seed(index, version);
    uint64_t h = FNV_OFFSET;
    uint64_t *p = w + HDR_WORDS;
    for (unsigned i = 0; i < PAYLOAD_WORDS; i++) {
        s += GOLDEN;
        uint64_t v = mix64(s);
        p[i] = v;
        h = (h ^ v) * FNV_PRIME;
    }
    struct page_hdr *hdr = (struct page_hdr *)w;
    hdr->magic = PAGE_MAGIC;
    hdr->index = index;
    hdr->version = version;
    hdr->checksum = h;
}

enum fail_reason { OK = 0, R_MAGIC, R_INDEX, R_VERSION, R_CHECKSUM, R_CONTENT };
static const char *const reason_name[] = {
    "ok", "magic", "index", "version", "checksum", "content"
};

static enum fail_reason check_page(uint64_t index, uint64_t *found_version)
{
    const uint64_t *w = (const uint64_t *)(region + index * PAGE_SIZE);
    const struct page_hdr *hdr = (const struct page_hdr *)w;
    uint64_t expected = vtable[index];
    *found_version = hdr->version;
    if (hdr->magic != PAGE_MAGIC)
        return R_MAGIC;
    if (hdr->index != index)
        return R_INDEX;
    if (hdr->version != expected)
        return R_VERSION;
    const uint64_t *p = w + HDR_WORDS;
    uint64_t s = page_seed(index, expected);
    uint64_t h = FNV_OFFSET;
    uint64_t diff = 0;
    for (unsigned i = 0; i < PAYLOAD_WORDS; i++) {
        s += GOLDEN;
        uint64_t v = p[i];
        diff |= v ^ mix64(s);
        h = (h ^ v) * FNV_PRIME;
    }
    if (h != hdr->checksum)
        return R_CHECKSUM;
    if (diff)
        return R_CONTENT;
    return OK;
}

/* ---- time helpers ---- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NSEC + ts.tv_nsec;
}

static void ns_to_ts(int64_t ns, struct timespec *ts)
{
    ts->tv_sec = ns / NSEC;
    ts->tv_nsec = ns % NSEC;
}

/* Sleep until absolute monotonic time `deadline`, retrying on EINTR. */
static void sleep_until(int64_t deadline)
{
    struct timespec ts;
    ns_to_ts(deadline, &ts);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Keep a periodic deadline sane: if we fell behind, or the clock jumped (e.g.
 * after a restore), restart the cadence from now instead of bursting/hanging. */
static int64_t next_deadline(int64_t deadline, int64_t period)
{
    int64_t now = now_ns();
    deadline += period;
    if (deadline <= now || deadline - now > 2 * period)
        deadline = now + period;
    return deadline;
}

/* ---- workers ---- */

static inline uint64_t xorshift64s(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * UINT64_C(0x2545f4914f6cdd1d);
}

/* Called between pages: blocks while a pause is requested. Returns 1 if it
 * paused (caller should reset its rate-accounting clock). */
static int pause_point(void)
{
    if (!__atomic_load_n(&pause_req, __ATOMIC_ACQUIRE))
        return 0;
    pthread_mutex_lock(&pause_mu);
    if (!pause_req) {
        pthread_mutex_unlock(&pause_mu);
        return 0;
    }
    paused_count++;
    pthread_cond_signal(&ack_cv);
    while (pause_req)
        pthread_cond_wait(&pause_cv, &pause_mu);
    paused_count--;
    pthread_mutex_unlock(&pause_mu);
    return 1;
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    const uint64_t mine = (npages - wk->id + active_workers - 1) / active_workers;
    const double pages_per_ns =
        cfg_rate_mib * (1024.0 * 1024.0 / PAGE_SIZE) / active_workers / 1e9;
    const int64_t tick = cfg_rate_mib > 0 ? WORK_TICK_NS : IDLE_TICK_NS;
    double credit = 0.0;
    int64_t last = now_ns();
    int64_t deadline = last + tick;

    for (;;) {
        if (pause_point()) {
            last = now_ns();
            credit = 0.0;
            deadline = last + tick;
        }
        if (cfg_rate_mib > 0) {
            int64_t now = now_ns();
            int64_t dt = now - last;
            if (dt < 0)
                dt = 0;
            if (dt > MAX_DT_NS)
                dt = MAX_DT_NS;
            last = now;
            credit += (double)dt * pages_per_ns;
            while (credit >= 1.0) {
                if (pause_point()) {
                    last = now_ns();
                    credit = 0.0;
                    break;
                }
                uint64_t k = (uint64_t)(((unsigned __int128)xorshift64s(&wk->rng)
                                         * mine) >> 64);
                uint64_t idx = wk->id + k * active_workers;
                uint64_t v = vtable[idx] + 1;
                vtable[idx] = v;
                write_page(idx, v);
                wk->pages_written++;
                credit -= 1.0;
            }
        }
        sleep_until(deadline);
        deadline = next_deadline(deadline, tick);
    }
    return NULL;
}

static void pause_workers(void)
{
    pthread_mutex_lock(&pause_mu);
    __atomic_store_n(&pause_req, 1, __ATOMIC_RELEASE);
    while (paused_count < active_workers)
        pthread_cond_wait(&ack_cv, &pause_mu);
    pthread_mutex_unlock(&pause_mu);
}

static void resume_workers(void)
{
    pthread_mutex_lock(&pause_mu);
    __atomic_store_n(&pause_req, 0, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pause_cv);
    pthread_mutex_unlock(&pause_mu);
}

/* ---- verification ---- */

static void verify(void)
{
    pause_workers();
    uint64_t failures = 0, first = 0, first_found = 0, first_expected = 0;
    enum fail_reason first_reason = OK;
    for (uint64_t i = 0; i < npages; i++) {
        uint64_t found;
        enum fail_reason r = check_page(i, &found);
        if (r != OK) {
            if (failures == 0) {
                first = i;
                first_reason = r;
                first_found = found;
                first_expected = vtable[i];
            }
            failures++;
        }
    }
    resume_workers();
    if (failures == 0)
        printf("VERIFY OK pages=%" PRIu64 "\n", npages);
    else
        printf("VERIFY FAIL page=%" PRIu64 " reason=%s expected_version=%" PRIu64
               " found_version=%" PRIu64 " failures=%" PRIu64 "\n",
               first, reason_name[first_reason], first_expected, first_found,
               failures);
    fflush(stdout);
}

/* ---- signals ---- */

static void on_usr1(int sig)
{
    (void)sig;
    sig_verify = 1;
}

static void on_exit_sig(int sig)
{
    (void)sig;
    sig_exit = 1;
}

static void install(int sig, void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: interrupt the main thread's sleep */
    if (sigaction(sig, &sa, NULL) != 0) {
        perror("memtouch: sigaction");
        exit(1);
    }
}

/* ---- arguments ---- */

static void usage_error(const char *what, const char *arg)
{
    if (arg)
        fprintf(stderr, "memtouch: %s '%s'; %s\n", what, arg, usage_text);
    else
        fprintf(stderr, "memtouch: %s; %s\n", what, usage_text);
    exit(2);
}

static uint64_t parse_u64(const char *opt, const char *s)
{
    char *end;
    if (!s || !*s || *s == '-' || *s == '+')
        usage_error("invalid value for option", opt);
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        usage_error("invalid value for option", opt);
    return v;
}

static double parse_rate(const char *opt, const char *s)
{
    char *end;
    if (!s || !*s)
        usage_error("invalid value for option", opt);
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= 0.0) || v > 1e9)
        usage_error("invalid value for option", opt);
    return v;
}

static void parse_args(int argc, char **argv)
{
    int have_size = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("%s\n"
                   "  --size-mib N          size of the verified region in MiB (required, > 0)\n"
                   "  --threads T           worker threads dirtying pages (default 1)\n"
                   "  --dirty-mib-per-sec R total rewrite rate, MiB/s, may be fractional (default 0)\n"
                   "  --seed S              content seed (default 1)\n"
                   "  --verify-every-sec K  self-verify every K seconds (default 0 = off)\n"
                   "SIGUSR1 verifies; SIGTERM/SIGINT print EXIT and exit 0.\n",
                   usage_text);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0)
            usage_error("unexpected argument", a);
        /* accept both "--opt value" and "--opt=value" */
        char name[64];
        const char *val;
        char *eq = strchr(a, '=');
        if (eq) {
            size_t n = (size_t)(eq - a);
            if (n >= sizeof name)
                usage_error("unknown option", a);
            memcpy(name, a, n);
            name[n] = 0;
            val = eq + 1;
        } else {
            if (strlen(a) >= sizeof name)
                usage_error("unknown option", a);
            strcpy(name, a);
            val = NULL;
        }
        int known = strcmp(name, "--size-mib") == 0 || strcmp(name, "--threads") == 0 ||
                    strcmp(name, "--dirty-mib-per-sec") == 0 ||
                    strcmp(name, "--seed") == 0 || strcmp(name, "--verify-every-sec") == 0;
        if (!known)
            usage_error("unknown option", a);
        if (!val) {
            if (i + 1 >= argc)
                usage_error("missing value for option", name);
            val = argv[++i];
        }
        if (strcmp(name, "--size-mib") == 0) {
            cfg_size_mib = parse_u64(name, val);
            if (cfg_size_mib == 0 || cfg_size_mib > (UINT64_C(1) << 26))
                usage_error("invalid value for option", name);
            have_size = 1;
        } else if (strcmp(name, "--threads") == 0) {
            uint64_t t = parse_u64(name, val);
            if (t > MAX_THREADS)
                usage_error("invalid value for option", name);
            cfg_threads = (unsigned)t;
        } else if (strcmp(name, "--dirty-mib-per-sec") == 0) {
            cfg_rate_mib = parse_rate(name, val);
        } else if (strcmp(name, "--seed") == 0) {
            cfg_seed = parse_u64(name, val);
        } else {
            cfg_verify_every = parse_u64(name, val);
        }
    }
    if (!have_size)
        usage_error("missing required option --size-mib", NULL);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    parse_args(argc, argv);

    size_t size = (size_t)(cfg_size_mib << 20);
    npages = size / PAGE_SIZE;
    region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) {
        perror("memtouch: mmap region");
        return 1;
    }
    size_t tsize = (size_t)npages * sizeof(uint64_t);
    vtable = mmap(NULL, tsize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (vtable == MAP_FAILED) {
        perror("memtouch: mmap table");
        return 1;
    }
    for (uint64_t i = 0; i < npages; i++) {
        vtable[i] = 1;
        write_page(i, 1);
    }

    /* Signals go to the main thread only: block them while creating workers
     * (which inherit the mask), then unblock in the main thread. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    install(SIGUSR1, on_usr1);
    install(SIGTERM, on_exit_sig);
    install(SIGINT, on_exit_sig);

    active_workers = cfg_threads;
    if (active_workers > npages)
        active_workers = (unsigned)npages;
    workers = mmap(NULL, sizeof(struct worker) * (cfg_threads ? cfg_threads : 1),
                   PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (workers == MAP_FAILED) {
        perror("memtouch: mmap workers");
        return 1;
    }
    for (unsigned w = 0; w < cfg_threads; w++) {
        workers[w].id = w;
        workers[w].rng = mix64(cfg_seed ^ (GOLDEN * (w + 1))) | 1;
        if (w >= active_workers)
            continue; /* more threads than pages: nothing to own */
        int err = pthread_create(&workers[w].thread, NULL, worker_main, &workers[w]);
        if (err) {
            fprintf(stderr, "memtouch: pthread_create: %s\n", strerror(err));
            return 1;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    printf("READY pid=%d\n", (int)getpid());
    printf("REGION addr=%p size=%zu pages=%" PRIu64 " page_size=%u table=%p\n",
           (void *)region, size, npages, PAGE_SIZE, (void *)vtable);
    fflush(stdout);

    int64_t deadline = now_ns() + NSEC;
    while (!sig_exit) {
        if (sig_verify) {
            sig_verify = 0;
            verify();
            continue;
        }
        struct timespec ts;
        ns_to_ts(deadline, &ts);
        int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        if (r == EINTR)
            continue; /* handle flags, then sleep to the same deadline */
        if (r != 0 && now_ns() < deadline)
            continue;
        heartbeat++;
        printf("HEARTBEAT %" PRIu64 "\n", heartbeat);
        fflush(stdout);
        if (cfg_verify_every && heartbeat % cfg_verify_every == 0)
            verify();
        deadline = next_deadline(deadline, NSEC);
    }
    printf("EXIT\n");
    fflush(stdout);
    return 0;
}
