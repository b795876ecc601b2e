/* Unit tests for quantile: exact small-n medians, P-square accuracy on fixed-seed
 * uniform and exponential samples, constant input. */
#include "pitot/util/quantile.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#define NSAMPLES 10000

/* splitmix64: a fixed, portable sequence so the test is reproducible. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double true_median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static void test_empty(void **state)
{
    struct quantile_p2 e;

    quantile_p2_init(&e);
    assert_true(quantile_p2_get(&e) == 0.0);
    quantile_p2_add(&e, NAN); /* ignored */
    assert_int_equal(e.n, 0);
    assert_true(quantile_p2_get(&e) == 0.0);
    (void)state;
}

static void test_exact_small(void **state)
{
    static const double in[5] = { 9.0, -1.0, 4.0, 7.0, 2.0 };
    /* medians of the first 1..5 values: {9}, {-1,9}, {-1,4,9}, {-1,4,7,9}, {-1,2,4,7,9} */
    static const double want[5] = { 9.0, 4.0, 4.0, 5.5, 4.0 };
    struct quantile_p2 e;
    size_t i;

    quantile_p2_init(&e);
    for (i = 0; i < 5; i++) {
        quantile_p2_add(&e, in[i]);
        assert_int_equal(e.n, i + 1);
        assert_true(quantile_p2_get(&e) == want[i]);
    }
    /* sixth sample: now an estimate, but still between the middle values */
    quantile_p2_add(&e, 100.0);
    assert_true(quantile_p2_get(&e) >= 2.0 && quantile_p2_get(&e) <= 7.0);
    (void)state;
}

static void check_dist(double (*gen)(uint64_t *), uint64_t seed)
{
    static double v[NSAMPLES];
    struct quantile_p2 e;
    double est, med;
    size_t i;

    quantile_p2_init(&e);
    for (i = 0; i < NSAMPLES; i++) {
        v[i] = gen(&seed);
        quantile_p2_add(&e, v[i]);
    }
    est = quantile_p2_get(&e);
    med = true_median(v, NSAMPLES);
    print_message("median %.6f estimate %.6f (%.3f%%)\n", med, est, 100.0 * fabs(est - med) / med);
    assert_true(fabs(est - med) <= 0.02 * fabs(med));
}

static double gen_uniform(uint64_t *s)
{
    return 10.0 + 90.0 * rng_unit(s); /* e.g. gaps of 10..100 ms */
}

static double gen_exponential(uint64_t *s)
{
    return -25.0 * log(1.0 - rng_unit(s)); /* mean 25, median 25 ln 2 */
}

static void test_uniform(void **state)
{
    check_dist(gen_uniform, 42);
    check_dist(gen_uniform, 7);
    (void)state;
}

static void test_exponential(void **state)
{
    check_dist(gen_exponential, 42);
    check_dist(gen_exponential, 1234567);
    (void)state;
}

static void test_sorted_input(void **state)
{
    static double v[NSAMPLES];
    struct quantile_p2 e;
    size_t i;

    /* increasing input is the worst order for the markers */
    quantile_p2_init(&e);
    for (i = 0; i < NSAMPLES; i++) {
        v[i] = (double)i;
        quantile_p2_add(&e, v[i]);
    }
    assert_true(fabs(quantile_p2_get(&e) - true_median(v, NSAMPLES)) <= 0.02 * 5000.0);
    (void)state;
}

static void test_constant(void **state)
{
    struct quantile_p2 e;
    size_t i;

    quantile_p2_init(&e);
    for (i = 0; i < 1000; i++)
        quantile_p2_add(&e, 3.25);
    assert_true(quantile_p2_get(&e) == 3.25);
    assert_int_equal(e.n, 1000);
    for (i = 0; i < 5; i++)
        assert_true(e.q[i] == 3.25);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),        cmocka_unit_test(test_exact_small),
        cmocka_unit_test(test_uniform),      cmocka_unit_test(test_exponential),
        cmocka_unit_test(test_sorted_input), cmocka_unit_test(test_constant),
    };

    return cmocka_run_group_tests_name("qnt", tests, NULL, NULL);
}
