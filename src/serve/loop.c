/* loop: request ids. */
#include "pitot/serve/loop.h"

#include <sys/random.h>
#include <unistd.h>

#include "pitot/util/clock.h"

void loop_seed(struct loop *lp)
{
    if (getrandom(&lp->rng, sizeof(lp->rng), 0) != sizeof(lp->rng) || lp->rng == 0)
        lp->rng = clk_now_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
}

void loop_request_id(struct loop *lp, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    int i, k;

    for (k = 0; k < 2; k++) {
        /* xorshift64*: ids need to be unique, not secret */
        uint64_t x = lp->rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        lp->rng = x;
        x *= 0x2545f4914f6cdd1dull;
        for (i = 0; i < 16; i++)
            out[k * 16 + i] = hex[(x >> (i * 4)) & 15];
    }
    out[32] = '\0';
}
