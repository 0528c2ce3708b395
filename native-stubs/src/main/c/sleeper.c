/*
 * sleeper - a process that blocks in a chosen system call, for restore tests.
 *
 *   sleeper --mode read|nanosleep|pause
 *
 * Prints "READY pid=<pid>" and then blocks:
 *   read       read(0, buf, 4096) in a loop; after every return prints
 *              "READ ret=<ret> errno=<e>" (errno 0 when ret >= 0).  On end of
 *              file (ret == 0) it prints "EOF" and continues in pause mode
 *              (to avoid spinning on an empty stdin such as /dev/null), so tests
 *              wanting a blocked read() should give it a pipe/FIFO that stays
 *              open (e.g. the default stdin pipe of a Java Process).
 *   nanosleep  relative nanosleep(5 s) in a loop - the nanosleep syscall
 *              itself (nr 35, /proc/PID/syscall shows "35 ..."), not glibc's
 *              clock_nanosleep - "TICK <n>" after each full sleep (n = 1, 2, ...).  When interrupted by a signal it
 *              re-enters nanosleep with the remaining time, so the 5 s
 *              cadence of TICK is kept.
 *   pause      pause() in a loop, "WOKE <n>" after each return (n = 1, 2, ...).
 *
 * Signals (all handlers only set flags, all installed WITHOUT SA_RESTART so
 * the blocking call returns EINTR and the main loop reports and re-enters):
 *   SIGUSR1   "ALIVE <n>", n = number of SIGUSR1 handled so far (1, 2, ...)
 *   SIGUSR2   no output by itself; only interrupts the blocking call
 *   SIGTERM, SIGINT   "EXIT", exit status 0
 * Order of lines after an interrupted call: READ/WOKE line first (if any),
 * then ALIVE, then EXIT.  Known window: a signal arriving between the flag
 * check and entering the blocking call is reported only when the call next
 * returns (for pause: at the next signal); tests should wait for READY and
 * for /proc/PID/syscall to show the blocking call before signalling.
 *
 * stdout is line buffered and flushed after each line.  Bad arguments: one
 * line on stderr and exit status 2; --help prints usage and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1_pending;
static volatile sig_atomic_t exit_pending;
static unsigned long alive_count;

static const char usage_text[] = "usage: sleeper --mode read|nanosleep|pause [--help]";

static void on_usr1(int sig)
{
    (void)sig;
    usr1_pending = 1;
}

static void on_usr2(int sig)
{
    (void)sig;
}

static void on_exit_sig(int sig)
{
    (void)sig;
    exit_pending = 1;
}

static void install(int sig, void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART */
    if (sigaction(sig, &sa, NULL) != 0) {
        perror("sleeper: sigaction");
        exit(1);
    }
}

/* Report pending signals; exits on SIGTERM/SIGINT. */
static void handle_flags(void)
{
    if (usr1_pending) {
        usr1_pending = 0;
        alive_count++;
        printf("ALIVE %lu\n", alive_count);
        fflush(stdout);
    }
    if (exit_pending) {
        printf("EXIT\n");
        fflush(stdout);
        exit(0);
    }
}

static void run_pause(void)
{
    unsigned long woke = 0;
    for (;;) {
        handle_flags();
        pause();
        woke++;
        printf("WOKE %lu\n", woke);
        fflush(stdout);
    }
}

static void run_read(void)
{
    char buf[4096];
    for (;;) {
        handle_flags();
        ssize_t r = read(0, buf, sizeof buf);
        int e = r < 0 ? errno : 0;
        printf("READ ret=%zd errno=%d\n", r, e);
        fflush(stdout);
        if (r == 0) {
            printf("EOF\n");
            fflush(stdout);
            run_pause();
        }
    }
}

static void run_nanosleep(void)
{
    unsigned long ticks = 0;
    for (;;) {
        struct timespec req = { 5, 0 }, rem;
        for (;;) {
            handle_flags();
            /* the real nanosleep(2) syscall (35); glibc's nanosleep() would
             * use clock_nanosleep (230) instead */
            if (syscall(SYS_nanosleep, &req, &rem) == 0)
                break;
            if (errno != EINTR) {
                perror("sleeper: nanosleep");
                exit(1);
            }
            req = rem;
        }
        ticks++;
        printf("TICK %lu\n", ticks);
        fflush(stdout);
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s\n", usage_text);
            return 0;
        } else if (strcmp(argv[i], "--mode") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sleeper: missing value for --mode; %s\n", usage_text);
                return 2;
            }
            mode = argv[++i];
        } else if (strncmp(argv[i], "--mode=", 7) == 0) {
            mode = argv[i] + 7;
        } else {
            fprintf(stderr, "sleeper: unexpected argument '%s'; %s\n", argv[i], usage_text);
            return 2;
        }
    }
    void (*run)(void);
    if (!mode) {
        fprintf(stderr, "sleeper: missing required option --mode; %s\n", usage_text);
        return 2;
    } else if (strcmp(mode, "read") == 0) {
        run = run_read;
    } else if (strcmp(mode, "nanosleep") == 0) {
        run = run_nanosleep;
    } else if (strcmp(mode, "pause") == 0) {
        run = run_pause;
    } else {
        fprintf(stderr, "sleeper: invalid mode '%s'; %s\n", mode, usage_text);
        return 2;
    }
    install(SIGUSR1, on_usr1);
    install(SIGUSR2, on_usr2);
    install(SIGTERM, on_exit_sig);
    install(SIGINT, on_exit_sig);
    printf("READY pid=%d\n", (int)getpid());
    fflush(stdout);
    run();
    return 0;
}
