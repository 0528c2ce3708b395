/*
 * forker - forks on demand, and both sides check every page, for lazy-restore fork tests.
 *
 *   forker [--size-mib N]     (default 64)
 *
 * Maps N MiB of private anonymous memory, writes a known pattern into every page (each
 * 8-byte word: page index * 0x9E3779B97F4A7C15 + word index), prints "READY pid=<pid>
 * pages=<n>" and waits in pause().  On SIGUSR1 it forks: the child checks every page and
 * prints "CHILD OK pages=<n>" (exit status 0) or "CHILD FAIL page=<i> word=<w>
 * got=<hex>" (exit status 1); the parent then checks every page too, prints "PARENT OK
 * pages=<n>" or "PARENT FAIL ...", waits for the child and prints "CHILD STATUS <s>"
 * (the exit status, or 128+signal), then goes back to pause().  SIGTERM/SIGINT: "EXIT",
 * status 0.  stdout is line buffered (flushed before every fork).
 *
 * Signal it only while it sleeps in pause() (/proc/PID/syscall starts with "34 "): the flag is
 * checked before pause(), so a SIGUSR1 handled just before pause() is entered is lost until the
 * next signal.  A restored forker resumes by re-executing the pause() it was dumped in, so that
 * window spans from the restorer's detach until the process runs again (long under CPU load).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t usr1_pending;
static volatile sig_atomic_t exit_pending;

static void on_usr1(int sig) { (void)sig; usr1_pending = 1; }
static void on_exit_sig(int sig) { (void)sig; exit_pending = 1; }

static uint64_t *mem;
static size_t pages;
static size_t words_per_page;

static uint64_t expected(size_t page, size_t word)
{
    return (uint64_t)page * 0x9E3779B97F4A7C15ULL + word;
}

/* 0 when every page holds the pattern, else prints the first mismatch and returns 1. */
static int check(const char *who)
{
    for (size_t p = 0; p < pages; p++) {
        const uint64_t *w = mem + p * words_per_page;
        for (size_t i = 0; i < words_per_page; i++) {
            if (w[i] != expected(p, i)) {
                printf("%s FAIL page=%zu word=%zu got=%llx\n", who, p, i, (unsigned long long)w[i]);
                fflush(stdout);
                return 1;
            }
        }
    }
    printf("%s OK pages=%zu\n", who, pages);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    size_t mib = 64;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--size-mib") == 0 && i + 1 < argc) {
            mib = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--help") == 0) {
            puts("usage: forker [--size-mib N]");
            return 0;
        } else {
            fprintf(stderr, "forker: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    long ps = sysconf(_SC_PAGESIZE);
    words_per_page = (size_t)ps / sizeof(uint64_t);
    pages = (mib << 20) / (size_t)ps;
    mem = mmap(NULL, pages * (size_t)ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("forker: mmap");
        return 2;
    }
    for (size_t p = 0; p < pages; p++) {
        for (size_t i = 0; i < words_per_page; i++) {
            mem[p * words_per_page + i] = expected(p, i);
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_exit_sig;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("READY pid=%d pages=%zu\n", (int)getpid(), pages);
    fflush(stdout);
    for (;;) {
        while (!usr1_pending && !exit_pending) {
            pause();
        }
        if (exit_pending) {
            puts("EXIT");
            fflush(stdout);
            return 0;
        }
        usr1_pending = 0;
        fflush(stdout);
        pid_t child = fork();
        if (child < 0) {
            perror("forker: fork");
            fflush(stderr);
            continue;
        }
        if (child == 0) {
            _exit(check("CHILD"));
        }
        check("PARENT");
        int status = 0;
        while (waitpid(child, &status, 0) < 0) {
        }
        printf("CHILD STATUS %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        fflush(stdout);
    }
}
