/* Unit tests for bal: least in-flight choice, rotation among equals, down
 * backends skipped, the up count, over tables built from a real cfg. */
#include "pitot/bal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pitot/cfg.h"

static struct cfg cfg; /* large: static, not on the stack */

/* A config with n backends on ports 9001.. named b0.. */
static void cfg_with(size_t n)
{
    char url[64], name[32], err[256];
    size_t i;

    cfg_init(&cfg);
    for (i = 0; i < n; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%zu", 9001 + i);
        snprintf(name, sizeof(name), "b%zu", i);
        if (cfg_backend_add(&cfg, url, name, err, sizeof(err)) != 0)
            fail_msg("cfg_backend_add %s: %s", url, err);
    }
    assert_int_equal(cfg.nbackends, n);
}

static void bal_with(struct bal *bl, size_t n)
{
    cfg_with(n);
    assert_int_equal(bal_init(bl, &cfg), 0);
    assert_int_equal(bl->n, n);
}

static void done(struct bal *bl)
{
    bal_release(bl);
    assert_null(bl->b);
    assert_int_equal(bl->n, 0);
    cfg_release(&cfg);
}

/* Index of the pick, -1 for NULL. */
static int pick(struct bal *bl)
{
    struct bal_backend *b = bal_pick(bl);

    if (b == NULL)
        return -1;
    assert_true(b >= bl->b && b < bl->b + bl->n);
    assert_int_equal(b->idx, (unsigned)(b - bl->b));
    return (int)b->idx;
}

static void test_init(void **state)
{
    struct bal bl;
    size_t i;

    /* Every backend starts up (optimistic), idle, in config order. */
    bal_with(&bl, 3);
    for (i = 0; i < 3; i++) {
        assert_ptr_equal(bl.b[i].cfg, &cfg.backends[i]);
        assert_int_equal(bl.b[i].idx, i);
        assert_int_equal(bl.b[i].in_flight, 0);
        assert_true(bl.b[i].up);
        assert_false(bl.b[i].loading);
        assert_int_equal(bl.b[i].last_probe_us, 0);
    }
    assert_string_equal(bl.b[2].cfg->name, "b2");
    assert_int_equal(bl.b[2].cfg->port, 9003);
    assert_int_equal(bal_up_count(&bl), 3);
    done(&bl);

    /* No backends: a valid, empty table. */
    bal_with(&bl, 0);
    assert_int_equal(bal_up_count(&bl), 0);
    assert_int_equal(pick(&bl), -1);
    done(&bl);
    (void)state;
}

static void test_least_in_flight(void **state)
{
    struct bal bl;
    int i;

    bal_with(&bl, 4);
    bl.b[0].in_flight = 3;
    bl.b[1].in_flight = 1;
    bl.b[2].in_flight = 2;
    bl.b[3].in_flight = 5;
    /* The unique minimum wins every time, wherever the rotation stands. */
    for (i = 0; i < 8; i++)
        assert_int_equal(pick(&bl), 1);
    /* Taking requests as a proxy does: 1 -> 2, then 1 and 2 tie at 2. */
    bl.b[pick(&bl)].in_flight++;
    assert_int_equal(bl.b[1].in_flight, 2);
    assert_int_equal(pick(&bl), 2); /* rotation starts after 1 */
    bl.b[2].in_flight++;
    assert_int_equal(pick(&bl), 1);
    bl.b[1].in_flight++;
    /* Now {3,3,3,5}: the tie goes round from after the last pick (1). */
    assert_int_equal(pick(&bl), 2);
    assert_int_equal(pick(&bl), 0);
    assert_int_equal(pick(&bl), 1);
    assert_int_equal(pick(&bl), 2);
    /* A finished request makes its backend the least loaded. */
    bl.b[3].in_flight = 2;
    assert_int_equal(pick(&bl), 3);
    assert_int_equal(pick(&bl), 3);
    /* Zero beats everything, even far in the rotation. */
    bl.b[2].in_flight = 0;
    assert_int_equal(pick(&bl), 2);
    done(&bl);
    (void)state;
}

static void test_rotation_among_equals(void **state)
{
    unsigned count[5] = { 0 };
    struct bal bl;
    int i, p, L;

    /* Idle equals: strict round robin. */
    bal_with(&bl, 3);
    for (i = 0; i < 9; i++)
        assert_int_equal(pick(&bl), i % 3);
    done(&bl);

    /* Over many picks equal backends share evenly, with requests that
     * come and go (each finishes before the next arrives). */
    bal_with(&bl, 5);
    for (i = 0; i < 1000; i++) {
        p = pick(&bl);
        assert_true(p >= 0);
        bl.b[p].in_flight++;
        count[p]++;
        bl.b[p].in_flight--;
    }
    for (i = 0; i < 5; i++)
        assert_int_equal(count[i], 200);
    done(&bl);

    /* Concurrent load, requests of equal length (each ends when L more
     * have been picked): every pick is a least-loaded backend and the four
     * share the 1200 picks exactly, whatever the concurrency. */
    for (L = 1; L <= 7; L++) {
        int hist[7] = { 0 };

        bal_with(&bl, 4);
        memset(count, 0, sizeof(count));
        for (i = 0; i < 1200; i++) {
            unsigned lo = ~0u;
            int k;

            if (i >= L)
                bl.b[hist[i % L]].in_flight--;
            for (k = 0; k < 4; k++)
                lo = bl.b[k].in_flight < lo ? bl.b[k].in_flight : lo;
            p = pick(&bl);
            assert_int_equal(bl.b[p].in_flight, lo);
            bl.b[p].in_flight++;
            count[p]++;
            hist[i % L] = p;
        }
        for (i = 0; i < 4; i++)
            assert_int_equal(count[i], 300);
        done(&bl);
    }

    /* Ties among a subset alternate between its members only. */
    bal_with(&bl, 4);
    bl.b[1].in_flight = 1;
    bl.b[3].in_flight = 1;
    for (i = 0; i < 6; i++)
        assert_int_equal(pick(&bl), i % 2 ? 2 : 0);
    done(&bl);
    (void)state;
}

static void test_down_skipped(void **state)
{
    struct bal bl;
    int i;

    bal_with(&bl, 3);
    bl.b[1].up = false;
    assert_int_equal(bal_up_count(&bl), 2);
    for (i = 0; i < 6; i++)
        assert_int_equal(pick(&bl), i % 2 ? 2 : 0);
    /* A down backend is not chosen even when it is the least loaded. */
    bl.b[0].in_flight = 4;
    bl.b[2].in_flight = 7;
    assert_int_equal(pick(&bl), 0);
    /* Loading only matters through up: a loading backend that is up counts. */
    bl.b[0].loading = true;
    assert_int_equal(pick(&bl), 0);
    assert_int_equal(bal_up_count(&bl), 2);
    /* Back up and idle: it gets the next request. */
    bl.b[1].up = true;
    assert_int_equal(bal_up_count(&bl), 3);
    assert_int_equal(pick(&bl), 1);

    /* None up: NULL, and the table is unchanged for when one returns. */
    for (i = 0; i < 3; i++)
        bl.b[i].up = false;
    assert_int_equal(bal_up_count(&bl), 0);
    assert_int_equal(pick(&bl), -1);
    assert_int_equal(pick(&bl), -1);
    bl.b[2].up = true;
    assert_int_equal(bal_up_count(&bl), 1);
    for (i = 0; i < 3; i++)
        assert_int_equal(pick(&bl), 2);
    done(&bl);

    /* A single backend: itself or nothing. */
    bal_with(&bl, 1);
    assert_int_equal(pick(&bl), 0);
    bl.b[0].in_flight = 1000;
    assert_int_equal(pick(&bl), 0);
    bl.b[0].up = false;
    assert_int_equal(pick(&bl), -1);
    done(&bl);
    (void)state;
}

static void test_many_backends(void **state)
{
    unsigned count[CFG_MAX_BACKENDS] = { 0 };
    struct bal bl;
    int i;

    /* The configured maximum, every other one down. */
    bal_with(&bl, CFG_MAX_BACKENDS);
    for (i = 0; i < CFG_MAX_BACKENDS; i += 2)
        bl.b[i].up = false;
    assert_int_equal(bal_up_count(&bl), CFG_MAX_BACKENDS / 2);
    for (i = 0; i < 10 * CFG_MAX_BACKENDS; i++)
        count[pick(&bl)]++;
    for (i = 0; i < CFG_MAX_BACKENDS; i++)
        assert_int_equal(count[i], i % 2 ? 20 : 0);
    done(&bl);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_least_in_flight),
        cmocka_unit_test(test_rotation_among_equals),
        cmocka_unit_test(test_down_skipped),
        cmocka_unit_test(test_many_backends),
    };

    return cmocka_run_group_tests_name("bal", tests, NULL, NULL);
}
