/* bal: least in-flight choice over the healthy backends of one loop. */
#include "pitot/bal.h"

#include <stdlib.h>

#include "pitot/cfg.h"
#include "pitot/err.h"

int bal_init(struct bal *bl, const struct cfg *c)
{
    size_t i;

    bl->n = c->nbackends;
    bl->rr = 0;
    bl->b = calloc(bl->n ? bl->n : 1, sizeof(*bl->b));
    if (bl->b == NULL)
        return -PITOT_ENOMEM;
    for (i = 0; i < bl->n; i++) {
        bl->b[i].cfg = &c->backends[i];
        bl->b[i].idx = (unsigned)i;
        bl->b[i].up = true;
    }
    return 0;
}

void bal_release(struct bal *bl)
{
    free(bl->b);
    bl->b = NULL;
    bl->n = 0;
}

struct bal_backend *bal_pick(struct bal *bl)
{
    struct bal_backend *best = NULL;
    size_t k;

    for (k = 0; k < bl->n; k++) {
        struct bal_backend *b = &bl->b[(bl->rr + k) % bl->n];
        if (!b->up)
            continue;
        if (best == NULL || b->in_flight < best->in_flight)
            best = b;
    }
    if (best)
        bl->rr = (best->idx + 1) % (unsigned)bl->n;
    return best;
}

size_t bal_up_count(const struct bal *bl)
{
    size_t i, n = 0;

    for (i = 0; i < bl->n; i++)
        n += bl->b[i].up;
    return n;
}
