/*
 * floor-server - the page server of the C floor: the least a post-copy source can do.
 *
 *   floor-server --pages N [--base ADDR] [--seed S] [--bind A.B.C.D] [--port P]
 *
 * Holds a memory image of the region [ADDR, ADDR + N pages) in its own memory (every word
 * the pattern of floor-proto.h), listens on A.B.C.D:P (default 127.0.0.1, port 0: any) and
 * prints
 *
 *   LISTENING port=<p> pages=<n> base=0x<hex>
 *
 * Each connection gets a thread that answers requests (floor-proto.h) in order with blocking
 * I/O: the pages are written straight from the image with one send(), no copy, no framework.
 * Runs until killed. Exit status: 2 bad arguments, 1 runtime error.
 */
#define _GNU_SOURCE
#include "floor-proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static uint64_t base = FLOOR_DEFAULT_BASE;
static uint64_t npages_total;
static uint64_t seed = 1;
static unsigned char *image;

static void usage(void)
{
    fprintf(stderr, "usage: floor-server --pages N [--base ADDR] [--seed S] [--bind A.B.C.D] [--port P]\n");
    exit(2);
}

static int write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sends every byte of iov[0..n), resuming after partial writes. */
static int send_iov(int fd, struct iovec *iov, int n)
{
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    while (m.msg_iovlen > 0) {
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (m.msg_iovlen > 0 && (size_t)w >= m.msg_iov->iov_len) {
            w -= (ssize_t)m.msg_iov->iov_len;
            m.msg_iov++;
            m.msg_iovlen--;
        }
        if (m.msg_iovlen > 0) {
            m.msg_iov->iov_base = (char *)m.msg_iov->iov_base + w;
            m.msg_iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* 1: filled, 0: orderly EOF before the first byte, -1: error or EOF mid-way. */
static int read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, p + got, len - got, MSG_WAITALL);
        if (n == 0)
            return got == 0 ? 0 : -1;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 1;
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct floor_req rq;
    int r;
    while ((r = read_full(fd, &rq, sizeof rq)) == 1) {
        struct floor_resp rs = {FLOOR_RESP_MAGIC, FLOOR_OK, rq.vaddr};
        if (rq.magic != FLOOR_REQ_MAGIC) {
            rs.status = FLOOR_EBADREQ;
            write_full(fd, &rs, sizeof rs);
            break;
        }
        uint64_t first = (rq.vaddr - base) / FLOOR_PAGE_SIZE;
        if (rq.vaddr < base || rq.vaddr % FLOOR_PAGE_SIZE != 0 || rq.npages == 0 || first >= npages_total
                || rq.npages > npages_total - first) {
            rs.status = FLOOR_ERANGE;
            if (write_full(fd, &rs, sizeof rs) < 0)
                break;
            continue;
        }
        /* Header and pages in one sendmsg (one segment for a fault), straight from the image. */
        struct iovec iov[2] = {{&rs, sizeof rs}, {image + first * FLOOR_PAGE_SIZE, (size_t)rq.npages * FLOOR_PAGE_SIZE}};
        if (send_iov(fd, iov, 2) < 0)
            break;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *bind_addr = "127.0.0.1";
    uint64_t port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--pages"))
            npages_total = floor_parse_u64("floor-server", a, v);
        else if (!strcmp(a, "--base"))
            base = floor_parse_u64("floor-server", a, v);
        else if (!strcmp(a, "--seed"))
            seed = floor_parse_u64("floor-server", a, v);
        else if (!strcmp(a, "--bind"))
            bind_addr = v;
        else if (!strcmp(a, "--port"))
            port = floor_parse_u64("floor-server", a, v);
        else
            usage();
    }
    if (npages_total == 0 || base % FLOOR_PAGE_SIZE != 0 || port > 65535) {
        fprintf(stderr, "floor-server: --pages must be positive, --base page aligned, --port at most 65535\n");
        return 2;
    }
    if (sysconf(_SC_PAGESIZE) != FLOOR_PAGE_SIZE) {
        fprintf(stderr, "floor-server: page size %ld, need %u\n", sysconf(_SC_PAGESIZE), FLOOR_PAGE_SIZE);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    image = mmap(NULL, npages_total * FLOOR_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (image == MAP_FAILED) {
        perror("floor-server: mmap");
        return 1;
    }
    for (uint64_t p = 0; p < npages_total; p++)
        floor_fill_page((uint64_t *)(image + p * FLOOR_PAGE_SIZE), seed, base + p * FLOOR_PAGE_SIZE);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
        perror("floor-server: socket");
        return 1;
    }
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "floor-server: --bind: not an IPv4 address: '%s'\n", bind_addr);
        return 2;
    }
    socklen_t sl = sizeof sa;
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 16) < 0
            || getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
        fprintf(stderr, "floor-server: cannot listen on %s:%" PRIu64 ": %s\n", bind_addr, port, strerror(errno));
        return 1;
    }
    printf("LISTENING port=%u pages=%" PRIu64 " base=0x%" PRIx64 "\n", ntohs(sa.sin_port), npages_total, base);
    fflush(stdout);
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("floor-server: accept");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, serve, (void *)(intptr_t)fd) != 0) {
            fprintf(stderr, "floor-server: cannot start a connection thread\n");
            close(fd);
        }
        pthread_attr_destroy(&at);
    }
}
