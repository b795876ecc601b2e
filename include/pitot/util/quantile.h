/* quantile: streaming median estimate in O(1) memory (the P-square algorithm of
 * Jain and Chlamtac), for per-request inter-token latency p50 in the access
 * log without storing every gap. Exact for up to 5 samples. */
#ifndef PITOT_UTIL_QUANTILE_H
#define PITOT_UTIL_QUANTILE_H

#include <stdint.h>

struct quantile_p2 {
    uint64_t n;     /* samples seen */
    double q[5];    /* marker heights */
    double np[5];   /* desired marker positions */
    int64_t pos[5]; /* actual marker positions */
};

/* Starts an estimator of the median. */
void quantile_p2_init(struct quantile_p2 *e);

void quantile_p2_add(struct quantile_p2 *e, double x);

/* The current median estimate; exact median when n <= 5; 0 when n == 0. */
double quantile_p2_get(const struct quantile_p2 *e);

#endif
