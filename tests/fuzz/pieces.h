/* Pieces for the fuzz targets that feed input the way a connection reads
 * it: random piece sizes from a seed, and each piece copied into its own
 * allocation, which the target frees right after the call it was given to,
 * so that ASan reports any pointer a parser kept into earlier input. */
#ifndef PITOT_FUZZ_PIECES_H
#define PITOT_FUZZ_PIECES_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct fz_rng {
    uint32_t x; /* xorshift32 state, never 0 */
};

/* A seed from the input's first 64 bytes (FNV-1a), never 0. */
static inline uint32_t fz_seed(const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < size && i < 64; i++)
        h = (h ^ data[i]) * 16777619u;
    return h | 1;
}

/* A piece length: mostly 1..small (splits inside every token), one in four
 * 1..big. */
static inline size_t fz_piece(struct fz_rng *r, unsigned small, unsigned big)
{
    r->x ^= r->x << 13;
    r->x ^= r->x >> 17;
    r->x ^= r->x << 5;
    return 1 + (r->x % ((r->x >> 8) % 4 == 0 ? big : small));
}

/* p[0..n) in an allocation of exactly n bytes (1 when n is 0); aborts when
 * out of memory. The caller frees it. */
static inline char *fz_copy(const char *p, size_t n)
{
    char *d = malloc(n ? n : 1);

    if (d == NULL)
        abort();
    if (n)
        memcpy(d, p, n);
    return d;
}

#endif
