/* bal: the backend table of one event loop and the choice of a backend for a
 * request (least in-flight among healthy backends, ties rotated). */
#ifndef PITOT_BAL_H
#define PITOT_BAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cfg;
struct cfg_backend;

struct bal_backend {
    const struct cfg_backend *cfg; /* borrowed from the config */
    unsigned idx;                  /* position in the table and in metrics */
    unsigned in_flight;            /* requests pitot is serving on it now */
    bool up;                       /* last health verdict (optimistic at start) */
    bool loading;                  /* last probe said 503 "Loading model" */
    uint64_t last_probe_us;        /* monotonic time of the last verdict */
};

struct bal {
    struct bal_backend *b; /* owned, n entries */
    size_t n;
    unsigned rr;           /* rotation start for ties */
};

/* Builds the table from c->backends. Returns 0 or -PITOT_ENOMEM. */
int bal_init(struct bal *bl, const struct cfg *c);
void bal_release(struct bal *bl);

/* The healthy backend with the fewest requests in flight; among equals the
 * next one after the previous pick, so equal backends share load. Compared
 * in integers. NULL when no backend is up. */
struct bal_backend *bal_pick(struct bal *bl);

/* Number of backends currently up. */
size_t bal_up_count(const struct bal *bl);

#endif
