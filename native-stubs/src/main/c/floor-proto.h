/*
 * floor-proto.h - what floor-server and toucher share: the page pattern of the benchmark
 * region and the floor's wire format.
 *
 * The pattern: every 8-byte word of the region holds (vaddr + offset) * 31 + seed (uint64
 * arithmetic, wrapping), as lazy-bench's FaultImage writes it, so that any page can be checked
 * on its own, wherever it came from.
 *
 * Wire format (TCP, host byte order: both ends run on this machine):
 *
 *   request   0        4          8                16
 *             +--------+----------+----------------+
 *             | magic  | npages   | vaddr          |     magic FLOOR_REQ_MAGIC ("FLRQ")
 *             +--------+----------+----------------+
 *   response  +--------+----------+----------------+------------------------+
 *             | magic  | status   | vaddr          | npages * 4096 bytes    |   magic FLOOR_RESP_MAGIC ("FLRP")
 *             +--------+----------+----------------+------------------------+
 *
 * status 0: the pages follow; any other status (FLOOR_ERANGE, FLOOR_EBADREQ) is the whole
 * response. A connection carries any number of requests, answered in order.
 */
#ifndef FLOOR_PROTO_H
#define FLOOR_PROTO_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FLOOR_PAGE_SIZE   4096u
#define FLOOR_REQ_MAGIC   0x51524c46u /* "FLRQ" little endian */
#define FLOOR_RESP_MAGIC  0x50524c46u /* "FLRP" little endian */
#define FLOOR_OK          0u
#define FLOOR_ERANGE      1u /* pages outside the served region, or not page aligned */
#define FLOOR_EBADREQ     2u /* wrong magic: the connection is closed after the response */
/* Where both ends put the benchmark region by default (far from libraries, heap and lp-stub). */
#define FLOOR_DEFAULT_BASE UINT64_C(0x600000000000)

struct floor_req {
    uint32_t magic;
    uint32_t npages;
    uint64_t vaddr;
};

struct floor_resp {
    uint32_t magic;
    uint32_t status;
    uint64_t vaddr;
};

_Static_assert(sizeof(struct floor_req) == 16, "floor_req is 16 bytes");
_Static_assert(sizeof(struct floor_resp) == 16, "floor_resp is 16 bytes");

static inline uint64_t floor_word(uint64_t seed, uint64_t vaddr, uint64_t offset)
{
    return (vaddr + offset) * 31u + seed;
}

/* Fills one page at `dst` (any address) with the words of the page at `vaddr`. */
static inline void floor_fill_page(uint64_t *dst, uint64_t seed, uint64_t vaddr)
{
    for (uint64_t off = 0; off < FLOOR_PAGE_SIZE; off += 8)
        dst[off / 8] = floor_word(seed, vaddr, off);
}

/* 1 when the page at `p` holds the words of the page at `vaddr`. */
static inline int floor_page_ok(const uint64_t *p, uint64_t seed, uint64_t vaddr)
{
    for (uint64_t off = 0; off < FLOOR_PAGE_SIZE; off += 8)
        if (p[off / 8] != floor_word(seed, vaddr, off))
            return 0;
    return 1;
}

/* A non-negative number (decimal, 0x hex) for option `flag` of program `prog`; exits 2 with one line if it is not one. */
static inline uint64_t floor_parse_u64(const char *prog, const char *flag, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *s == '\0' || *end != '\0' || *s == '-') {
        fprintf(stderr, "%s: %s: not a number: '%s'\n", prog, flag, s);
        exit(2);
    }
    return v;
}

#endif
