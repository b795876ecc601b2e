/* quantile: the P-square median estimator (Jain and Chlamtac, CACM 1985): five
 * markers whose heights track the min, quartiles-ish, median and max. */
#include "pitot/util/quantile.h"

#include <string.h>

/* Desired-position increments per sample for p = 0.5: 0, p/2, p, (1+p)/2, 1. */
static const double quantile_dn[5] = { 0.0, 0.25, 0.5, 0.75, 1.0 };

void quantile_p2_init(struct quantile_p2 *e)
{
    memset(e, 0, sizeof(*e));
}

/* Until five samples are in, q[] simply holds them sorted (insertion). */
static void quantile_p2_store(struct quantile_p2 *e, double x)
{
    size_t i = (size_t)e->n;

    while (i > 0 && e->q[i - 1] > x) {
        e->q[i] = e->q[i - 1];
        i--;
    }
    e->q[i] = x;
    e->n++;
    if (e->n == 5) {
        for (i = 0; i < 5; i++) {
            e->pos[i] = (int64_t)i + 1;
            e->np[i] = (double)i + 1.0;
        }
    }
}

/* Piecewise-parabolic prediction of marker i moved by d (+1 or -1). */
static double quantile_p2_parabolic(const struct quantile_p2 *e, int i, double d)
{
    double n0 = (double)e->pos[i - 1], n1 = (double)e->pos[i], n2 = (double)e->pos[i + 1];

    return e->q[i] + d / (n2 - n0) *
                         ((n1 - n0 + d) * (e->q[i + 1] - e->q[i]) / (n2 - n1) +
                          (n2 - n1 - d) * (e->q[i] - e->q[i - 1]) / (n1 - n0));
}

static double quantile_p2_linear(const struct quantile_p2 *e, int i, int d)
{
    return e->q[i] + (double)d * (e->q[i + d] - e->q[i]) / (double)(e->pos[i + d] - e->pos[i]);
}

void quantile_p2_add(struct quantile_p2 *e, double x)
{
    int i, k;

    if (x != x) /* NaN would poison every marker for good */
        return;
    if (e->n < 5) {
        quantile_p2_store(e, x);
        return;
    }

    /* Cell k such that q[k] <= x < q[k+1]; the extremes stretch. */
    if (x < e->q[0]) {
        e->q[0] = x;
        k = 0;
    } else if (x >= e->q[4]) {
        e->q[4] = x;
        k = 3;
    } else {
        k = 0;
        while (k < 3 && x >= e->q[k + 1])
            k++;
    }
    for (i = k + 1; i < 5; i++)
        e->pos[i]++;
    for (i = 0; i < 5; i++)
        e->np[i] += quantile_dn[i];
    e->n++;

    /* Move the middle markers at most one position towards where they should
     * be, only when there is room (positions stay strictly increasing, which
     * also keeps every denominator above non-zero). */
    for (i = 1; i <= 3; i++) {
        double d = e->np[i] - (double)e->pos[i];

        if ((d >= 1.0 && e->pos[i + 1] - e->pos[i] > 1) ||
            (d <= -1.0 && e->pos[i - 1] - e->pos[i] < -1)) {
            int s = d > 0 ? 1 : -1;
            double qp = quantile_p2_parabolic(e, i, (double)s);

            if (e->q[i - 1] < qp && qp < e->q[i + 1])
                e->q[i] = qp;
            else
                e->q[i] = quantile_p2_linear(e, i, s);
            e->pos[i] += s;
        }
    }
}

double quantile_p2_get(const struct quantile_p2 *e)
{
    if (e->n == 0)
        return 0.0;
    if (e->n < 5) {
        size_t n = (size_t)e->n;
        return n % 2 ? e->q[n / 2] : (e->q[n / 2 - 1] + e->q[n / 2]) / 2.0;
    }
    return e->q[2];
}
