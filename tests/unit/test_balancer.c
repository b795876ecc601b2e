/* Unit tests for balancer: least in-flight choice, rotation among equals, down
 * backends skipped, the up count, over tables built from a real cfg. */
#include "pitot/route/balancer.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pitot/format/config.h"

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
    /* The tests below this pair exercise pitot's own in-flight count, with
     * room to spare: the load-aware rules have their own tests further down. */
    cfg.policy = CFG_POLICY_LEAST_IN_FLIGHT;
    cfg.default_capacity = 1000000;
    for (i = 0; i < n; i++)
        cfg.backends[i].capacity = 0;
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
    struct bal_req rq = { { NULL, 0 }, 0, NULL, NULL, 0 };
    struct bal_backend *b;

    if (bal_choose(bl, &rq, 1, &b) != BAL_OK) {
        assert_null(b);
        return -1;
    }
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

/* ---- load-aware rules ---------------------------------------------------- */

static enum bal_verdict choose(struct bal *bl, const char *model, uint64_t now, int *idx)
{
    struct bal_req rq = { model ? span_cstr(model) : span_make(NULL, 0), 0, NULL, NULL, 0 };
    struct bal_backend *b;
    enum bal_verdict v = bal_choose(bl, &rq, now, &b);

    *idx = v == BAL_OK ? (int)b->idx : -1;
    return v;
}

static void busy_with(struct bal *bl, size_t n, unsigned capacity)
{
    size_t i;

    cfg_with(n);
    cfg.policy = CFG_POLICY_LEAST_BUSY;
    for (i = 0; i < n; i++)
        cfg.backends[i].capacity = capacity;
    assert_int_equal(bal_init(bl, &cfg), 0);
}

/* The backends' own running + waiting decide, relative to capacity, and
 * what pitot sent since the scrape counts too. */
static void test_least_busy_scraped(void **state)
{
    struct bal bl;
    uint64_t now = 10000000;
    int i;

    busy_with(&bl, 3, 4);
    bl.b[2].capacity = 8;
    bal_scraped(&bl.b[0], 1, 0, -1, now); /* 1/4 */
    bal_scraped(&bl.b[1], 0, 0, -1, now); /* 0/4 */
    bal_scraped(&bl.b[2], 3, 0, -1, now); /* 3/8 */
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_int_equal(i, 1);
    bal_dispatched(&bl.b[1]);
    bal_dispatched(&bl.b[1]); /* b1 now 2/4 by pitot's own sending */
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_int_equal(i, 0); /* 1/4 beats 3/8 and 2/4 */
    /* One replica with requests deferred is avoided though pitot sent it nothing. */
    bal_scraped(&bl.b[0], 2, 2, -1, now);
    bal_scraped(&bl.b[1], 2, 0, -1, now);
    bal_scraped(&bl.b[2], 0, 0, -1, now);
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_int_equal(i, 2);
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

/* A request pitot sees end frees its slot at once, not at the next scrape;
 * the backend's own count never goes below pitot's in-flight. */
static void test_completion_frees_slot(void **state)
{
    struct bal bl;
    uint64_t now = 10000000;
    int i;

    busy_with(&bl, 1, 1);
    bal_scraped(&bl.b[0], 1, 0, -1, now); /* its one slot is busy */
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_SATURATED);
    bl.b[0].in_flight = 1;  /* pitot's request on it ... */
    bal_released(&bl.b[0]); /* ... ends */
    assert_int_equal(bl.b[0].in_flight, 0);
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    bal_dispatched(&bl.b[0]);
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_SATURATED);
    /* more completions than the scrape saw: not below zero, in-flight floor */
    bal_released(&bl.b[0]);
    bal_released(&bl.b[0]);
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

/* A stale scrape falls back to pitot's own in-flight count, never to idle. */
static void test_stale_scrape_uses_in_flight(void **state)
{
    struct bal bl;
    uint64_t t = 10000000;
    int i;

    busy_with(&bl, 2, 4);
    bal_scraped(&bl.b[0], 0, 0, -1, t);
    bal_scraped(&bl.b[1], 0, 0, -1, t);
    bl.b[0].in_flight = 3;
    bl.b[1].in_flight = 1;
    bl.b[1].running = 0;
    /* fresh: b0 load = max(0 + 0 dispatched, in_flight 3) = 3 vs 1 */
    assert_int_equal(choose(&bl, NULL, t, &i), BAL_OK);
    assert_int_equal(i, 1);
    /* b1 scraped long ago reporting 0: stale, its in-flight 1 counts */
    bl.b[0].in_flight = 1;
    bl.b[1].in_flight = 2;
    assert_int_equal(choose(&bl, NULL, t + (uint64_t)cfg.scrape_stale_ms * 1000 + 1, &i), BAL_OK);
    assert_int_equal(i, 0);
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

static void test_saturation(void **state)
{
    struct bal bl;
    uint64_t now = 10000000;
    int i;

    busy_with(&bl, 2, 2);
    bal_scraped(&bl.b[0], 2, 0, -1, now);
    bal_scraped(&bl.b[1], 1, 1, -1, now);
    assert_true(bal_saturated(&bl, &bl.b[0], now));
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_SATURATED);
    assert_int_equal(i, -1);
    /* max_waiting lets each queue one more */
    cfg.max_waiting = 1;
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    cfg.max_waiting = 0;
    /* cache pressure alone saturates */
    bal_scraped(&bl.b[0], 0, 0, 960, now);
    bal_scraped(&bl.b[1], 0, 0, 100, now);
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_int_equal(i, 1);
    assert_true(bal_saturated(&bl, &bl.b[0], now));
    /* pitot's own in-flight cap */
    cfg.max_in_flight = 1;
    bl.b[1].in_flight = 1;
    assert_true(bal_saturated(&bl, &bl.b[1], now));
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

static void test_models_and_aliases(void **state)
{
    struct bal bl;
    int i;

    busy_with(&bl, 3, 4);
    snprintf(bl.b[0].models[0], CFG_NAME_MAX, "small");
    bl.b[0].nmodels = 1;
    snprintf(bl.b[1].models[0], CFG_NAME_MAX, "large");
    bl.b[1].nmodels = 1;
    snprintf(bl.b[2].models[0], CFG_NAME_MAX, "large");
    bl.b[2].nmodels = 1;
    assert_int_equal(choose(&bl, "small", 1, &i), BAL_OK);
    assert_int_equal(i, 0);
    assert_int_equal(choose(&bl, "large", 1, &i), BAL_OK);
    assert_true(i == 1 || i == 2);
    assert_int_equal(choose(&bl, "tiny", 1, &i), BAL_NO_MODEL);
    assert_int_equal(choose(&bl, NULL, 1, &i), BAL_OK); /* no model: any */
    bl.b[0].up = false;
    assert_int_equal(choose(&bl, "small", 1, &i), BAL_NO_BACKEND);
    snprintf(cfg.aliases[0].from, CFG_NAME_MAX, "gpt-4o");
    snprintf(cfg.aliases[0].to, CFG_NAME_MAX, "large");
    cfg.naliases = 1;
    assert_true(span_eq(bal_alias(&cfg, span_cstr("gpt-4o")), "large"));
    assert_true(span_eq(bal_alias(&cfg, span_cstr("small")), "small"));
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

/* routing.unknown_model: a name no backend serves goes to the pool when
 * every listing backend serves the same names (auto), always (any), never
 * (reject); the chosen backend's name is what the request is labelled with. */
static void test_unknown_model(void **state)
{
    struct bal bl;
    char served[CFG_NAME_MAX];
    struct bal_req rq = { span_cstr("gpt-4o-mini"), 0, NULL, served, sizeof(served) };
    struct bal_backend *b;
    size_t k;

    busy_with(&bl, 3, 4);
    /* nothing listed yet: every backend serves any name, none is "unknown" */
    assert_false(bal_any_model(&bl, span_cstr("gpt-4o-mini")));
    for (k = 0; k < 3; k++) {
        snprintf(bl.b[k].models[0], CFG_NAME_MAX, "tiny");
        snprintf(bl.b[k].models[1], CFG_NAME_MAX, "tiny-alias");
        bl.b[k].nmodels = 2;
    }
    assert_true(bal_any_model(&bl, span_cstr("gpt-4o-mini")));
    assert_false(bal_any_model(&bl, span_cstr("tiny-alias"))); /* served: matched as it is */
    assert_false(bal_any_model(&bl, span_make(NULL, 0)));
    assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_OK);
    assert_string_equal(served, "tiny");
    rq.model = span_cstr("tiny-alias");
    assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_OK);
    assert_string_equal(served, "tiny-alias");
    rq.model = span_cstr("gpt-4o-mini");
    /* one backend lists one name less: they no longer serve the same model */
    bl.b[2].nmodels = 1;
    assert_false(bal_any_model(&bl, span_cstr("gpt-4o-mini")));
    assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_NO_MODEL);
    assert_string_equal(served, "");
    cfg.unknown_model = CFG_UNKNOWN_ANY;
    assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_OK);
    assert_string_equal(served, b->models[0]);
    /* a down backend still counts: the verdict does not flip with health */
    cfg.unknown_model = CFG_UNKNOWN_AUTO;
    bl.b[2].nmodels = 2;
    bl.b[1].up = false;
    snprintf(bl.b[1].models[1], CFG_NAME_MAX, "other");
    assert_false(bal_any_model(&bl, span_cstr("gpt-4o-mini")));
    snprintf(bl.b[1].models[1], CFG_NAME_MAX, "tiny-alias");
    assert_true(bal_any_model(&bl, span_cstr("gpt-4o-mini")));
    cfg.unknown_model = CFG_UNKNOWN_REJECT;
    assert_false(bal_any_model(&bl, span_cstr("gpt-4o-mini")));
    assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_NO_MODEL);
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

/* Passive ejection after repeated failures, growing, never the last backend
 * of a model; taken back when the time is over. */
static void test_ejection(void **state)
{
    struct bal bl;
    uint64_t t = 1000000;
    int i;

    busy_with(&bl, 2, 4);
    cfg.eject_failures = 2;
    cfg.eject_base_ms = 1000;
    cfg.eject_max_ms = 3000;
    assert_false(bal_result(&bl, &bl.b[0], true, t));
    assert_true(bal_result(&bl, &bl.b[0], true, t));
    assert_true(bal_ejected(&bl.b[0], t));
    assert_int_equal(choose(&bl, NULL, t, &i), BAL_OK);
    assert_int_equal(i, 1);
    /* b1 is now the last one: its failures never eject it */
    assert_false(bal_result(&bl, &bl.b[1], true, t));
    assert_false(bal_result(&bl, &bl.b[1], true, t));
    assert_false(bal_ejected(&bl.b[1], t));
    /* back after 1 s; ejected again: 2 s; then capped at 3 s */
    assert_false(bal_ejected(&bl.b[0], t + 1000000));
    t += 1000000;
    bal_result(&bl, &bl.b[0], true, t);
    assert_true(bal_result(&bl, &bl.b[0], true, t));
    assert_true(bal_ejected(&bl.b[0], t + 1999999));
    assert_false(bal_ejected(&bl.b[0], t + 2000000));
    t += 2000000;
    bal_result(&bl, &bl.b[0], true, t);
    assert_true(bal_result(&bl, &bl.b[0], true, t));
    assert_false(bal_ejected(&bl.b[0], t + 3000000));
    /* a success after re-admission resets the growth */
    t += 3000000;
    bal_result(&bl, &bl.b[0], false, t);
    bal_result(&bl, &bl.b[0], true, t);
    assert_true(bal_result(&bl, &bl.b[0], true, t));
    assert_false(bal_ejected(&bl.b[0], t + 1000000));
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

static void test_tried_backends_skipped(void **state)
{
    struct bal bl;
    bool tried[3] = { true, false, true };
    struct bal_req rq = { { NULL, 0 }, 0, tried, NULL, 0 };
    struct bal_backend *b;

    busy_with(&bl, 3, 4);
    assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_OK);
    assert_int_equal(b->idx, 1);
    tried[1] = true;
    assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_NO_BACKEND);
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

/* The same session key sticks to one backend while it is not much busier than
 * the average; above max_load times the average it moves. */
static void test_affinity_bounded_load(void **state)
{
    struct bal bl;
    struct bal_req rq = { { NULL, 0 }, 0x1234567, NULL, NULL, 0 };
    struct bal_backend *b;
    unsigned first;
    int k;

    busy_with(&bl, 4, 100);
    cfg.affinity = CFG_AFFINITY_HEADER;
    cfg.affinity_max_load = 1.25;
    assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_OK);
    first = b->idx;
    for (k = 0; k < 10; k++) {
        assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_OK);
        assert_int_equal(b->idx, first);
    }
    /* make the session's backend far busier than the others */
    bl.b[first].in_flight = 50;
    assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_OK);
    assert_int_not_equal(b->idx, first);
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

/* The speed estimate: the first sample sets it, each later one moves it 1/8
 * of the way, nothing (0) is no sample, and absurd values are capped. */
static void test_speed_estimate(void **state)
{
    struct bal bl;

    busy_with(&bl, 1, 2);
    assert_int_equal(bl.b[0].tpot_us, 0);
    bal_measured(&bl.b[0], 0);
    assert_int_equal(bl.b[0].tpot_us, 0);
    bal_measured(&bl.b[0], 25000);
    assert_int_equal(bl.b[0].tpot_us, 25000);
    bal_measured(&bl.b[0], 33000);
    assert_int_equal(bl.b[0].tpot_us, 26000);
    bal_measured(&bl.b[0], 18000);
    assert_int_equal(bl.b[0].tpot_us, 25000);
    bal_measured(&bl.b[0], 0);
    assert_int_equal(bl.b[0].tpot_us, 25000);
    bal_measured(&bl.b[0], UINT64_MAX);
    assert_int_equal(bl.b[0].tpot_us, 25000 + (BAL_TPOT_MAX_US - 25000) / 8);
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

/* least_busy with speed_aware: loads count times the time per token relative
 * to the fastest candidate, in quarters; at equal load the faster goes first;
 * backends within 1/8 of each other still share. */
static void test_speed_weighs_load(void **state)
{
    unsigned seen[3] = { 0, 0, 0 };
    struct bal bl;
    uint64_t now = 10000000;
    int i, k;

    busy_with(&bl, 3, 2);
    for (k = 0; k < 3; k++)
        bal_scraped(&bl.b[k], 0, 0, -1, now);
    /* Nothing measured yet: idle equals take turns, the slow one too. */
    for (k = 0; k < 6; k++) {
        assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
        seen[i]++;
    }
    assert_int_equal(seen[0], 2);
    assert_int_equal(seen[1], 2);
    assert_int_equal(seen[2], 2);
    /* b0 and b1 within 1/8 of each other, b2 twice as slow. */
    bal_measured(&bl.b[0], 25000);
    bal_measured(&bl.b[1], 27000);
    bal_measured(&bl.b[2], 50000);
    memset(seen, 0, sizeof(seen));
    for (k = 0; k < 6; k++) {
        assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
        seen[i]++;
    }
    assert_int_equal(seen[0], 3); /* the two fast ones still share */
    assert_int_equal(seen[1], 3);
    assert_int_equal(seen[2], 0); /* idle too, but slower */
    /* One request on each fast one (1 x 4/2) outweighs an idle slow one. */
    bal_scraped(&bl.b[0], 1, 0, -1, now);
    bal_scraped(&bl.b[1], 1, 0, -1, now);
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_int_equal(i, 2);
    /* One on the slow one (1 x 8/2) outweighs one on a fast one (1 x 4/2). */
    bal_scraped(&bl.b[2], 1, 0, -1, now);
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_true(i == 0 || i == 1);
    /* ... but not an idle fast one with its other slot ... */
    bal_scraped(&bl.b[0], 0, 0, -1, now);
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_int_equal(i, 0);
    /* ... and a full fast one is saturated: the slow one's free slot it is. */
    bal_scraped(&bl.b[0], 2, 0, -1, now);
    bal_scraped(&bl.b[1], 2, 0, -1, now);
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_int_equal(i, 2);
    /* Speed is relative to the fastest usable candidate: with b0 down, b1
     * is the reference and b2 (50000 / 27000 = 1.85) weighs 7 quarters. */
    bl.b[0].up = false;
    bal_scraped(&bl.b[1], 4, 0, -1, now); /* 4 x 4 / 8 = 2 */
    bal_scraped(&bl.b[2], 1, 0, -1, now); /* 1 x 7 / 2 = 3.5 */
    bl.b[1].capacity = 8;
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_int_equal(i, 1);
    bal_scraped(&bl.b[1], 7, 0, -1, now); /* 7 x 4 / 8 = 3.5: equal, faster */
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_int_equal(i, 1);
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

/* A backend not measured yet is taken for as fast as the fastest: it gets its
 * turn, and so its own estimate. */
static void test_speed_unmeasured_tried(void **state)
{
    unsigned seen[2] = { 0, 0 };
    struct bal bl;
    uint64_t now = 10000000;
    int i, k;

    busy_with(&bl, 2, 2);
    bal_scraped(&bl.b[0], 0, 0, -1, now);
    bal_scraped(&bl.b[1], 0, 0, -1, now);
    bal_measured(&bl.b[0], 80000);
    for (k = 0; k < 4; k++) {
        assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
        seen[i]++;
    }
    assert_int_equal(seen[0], 2);
    assert_int_equal(seen[1], 2);
    /* Measured faster: now it goes first at equal load. */
    bal_measured(&bl.b[1], 20000);
    for (k = 0; k < 4; k++) {
        assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
        assert_int_equal(i, 1);
    }
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

/* speed_aware off, or another policy: the speed estimate changes nothing. */
static void test_speed_ignored(void **state)
{
    unsigned seen[2] = { 0, 0 };
    struct bal bl;
    uint64_t now = 10000000;
    int i, k, pol;

    for (pol = 0; pol < 2; pol++) {
        busy_with(&bl, 2, 2);
        if (pol == 0)
            cfg.speed_aware = false;
        else
            cfg.policy = CFG_POLICY_LEAST_IN_FLIGHT;
        bal_scraped(&bl.b[0], 0, 0, -1, now);
        bal_scraped(&bl.b[1], 0, 0, -1, now);
        bal_measured(&bl.b[0], 20000);
        bal_measured(&bl.b[1], 80000);
        memset(seen, 0, sizeof(seen));
        for (k = 0; k < 4; k++) {
            assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
            seen[i]++;
        }
        assert_int_equal(seen[0], 2);
        assert_int_equal(seen[1], 2);
        /* and the plain load / capacity order holds: 1/2 loses to 0/2 */
        bal_dispatched(&bl.b[0]);
        assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
        assert_int_equal(i, 1);
        bal_release(&bl);
        cfg_release(&cfg);
    }
    (void)state;
}

/* Extreme loads, capacities and speeds neither wrap nor divide by zero. */
static void test_speed_extremes(void **state)
{
    struct bal bl;
    uint64_t now = 10000000;
    int i;

    busy_with(&bl, 2, 65536);
    cfg.max_waiting = UINT32_MAX; /* beyond the config's range: nothing saturates */
    bl.b[1].capacity = 999999;    /* a /props answer's largest */
    bal_scraped(&bl.b[0], UINT32_MAX, 0, -1, now);
    bal_scraped(&bl.b[1], 1, 0, -1, now);
    bal_measured(&bl.b[0], UINT64_MAX); /* a minute per token, the largest weight */
    bal_measured(&bl.b[1], 1);
    /* 2^32 x 65535 x 999999 would wrap: loads are capped before the product */
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_int_equal(i, 1);
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_OK);
    assert_int_equal(i, 1);
    /* and with room left nowhere, saturated */
    cfg.max_waiting = 0;
    bal_scraped(&bl.b[1], 999999, 0, -1, now);
    assert_int_equal(choose(&bl, NULL, now, &i), BAL_SATURATED);
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

static void test_round_robin(void **state)
{
    struct bal bl;
    int i, k, seen[3] = { 0, 0, 0 };

    busy_with(&bl, 3, 4);
    cfg.policy = CFG_POLICY_ROUND_ROBIN;
    bl.b[0].in_flight = 3; /* ignored by round robin, below capacity */
    for (k = 0; k < 9; k++) {
        assert_int_equal(choose(&bl, NULL, 1, &i), BAL_OK);
        seen[i]++;
    }
    assert_int_equal(seen[0], 3);
    assert_int_equal(seen[1], 3);
    assert_int_equal(seen[2], 3);
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

/* DNS slots: one without an address is never chosen, is not up, and does
 * not turn an unknown model's 404 into a 503; getting an address forgets what
 * was known of the old one. */
static void test_dns_slots(void **state)
{
    struct bal bl;
    char err[256];
    int i;

    cfg_init(&cfg);
    assert_int_equal(cfg_backend_add(&cfg, "http://10.0.0.1:80", "ip", err, sizeof(err)), 0);
    assert_int_equal(cfg_backend_add(&cfg, "http://pool.example:80", "pool", err, sizeof(err)), 0);
    cfg.max_addresses = 3;
    assert_int_equal(cfg_backends_expand(&cfg, err, sizeof(err)), 0);
    cfg.policy = CFG_POLICY_LEAST_IN_FLIGHT;
    assert_int_equal(bal_init(&bl, &cfg), 0);
    assert_int_equal(bl.n, 4 + 16); /* and routing.spare_backends */
    assert_true(bl.b[0].active);
    for (i = 1; i < 4 + 16; i++)
        assert_false(bl.b[i].active); /* names wait for their first answer; spares */
    assert_int_equal(bal_up_count(&bl), 1);
    for (i = 0; i < 8; i++)
        assert_int_equal(pick(&bl), 0);

    /* the ip backend learned its models: an unknown one is a 404, the
     * empty slots (models unknown) do not claim it */
    snprintf(bl.b[0].models[0], CFG_NAME_MAX, "small");
    bl.b[0].nmodels = 1;
    cfg.unknown_model = CFG_UNKNOWN_REJECT;
    assert_int_equal(choose(&bl, "tiny", 1, &i), BAL_NO_MODEL);
    cfg.unknown_model = CFG_UNKNOWN_AUTO; /* the one listing backend: one model */
    assert_int_equal(choose(&bl, "tiny", 1, &i), BAL_OK);
    assert_int_equal(i, 0);

    /* slot pool/1 gets an address: it shares the load */
    bl.b[0].nmodels = 0;
    bl.b[2].ejected_until_us = 1000; /* left over from an older address */
    bl.b[2].fails = 2;
    bl.b[2].in_flight = 1;
    {
        unsigned gen = bl.b[2].gen;
        bal_activate(&bl, &bl.b[2], true);
        assert_int_equal(bl.b[2].gen, gen + 1);
    }
    assert_true(bl.b[2].active);
    assert_int_equal(bl.b[2].ejected_until_us, 0);
    assert_int_equal(bl.b[2].fails, 0);
    assert_int_equal(bl.b[2].in_flight, 1); /* still running on the old address */
    assert_int_equal(bal_up_count(&bl), 2);
    bal_dispatched(&bl.b[0]);
    i = pick(&bl); /* 1 each: either */
    assert_true(i == 0 || i == 2);
    bal_dispatched(&bl.b[0]);
    assert_int_equal(pick(&bl), 2); /* 2 on ip, 1 on pool/1 */

    /* both lose their address: nothing is up, a request is a 503 */
    bal_activate(&bl, &bl.b[0], false);
    bal_activate(&bl, &bl.b[2], false);
    assert_int_equal(bal_up_count(&bl), 0);
    assert_int_equal(choose(&bl, NULL, 1, &i), BAL_NO_BACKEND);
    assert_int_equal(choose(&bl, "small", 1, &i), BAL_NO_BACKEND);
    bal_release(&bl);
    cfg_release(&cfg);
    (void)state;
}

/* Which answers count toward ejection: a client cannot eject a healthy
 * backend with requests it makes fail. */
static void test_status_health(void **state)
{
    static const int ok[] = { 100, 200, 204, 301, 400, 404, 413, 429, 499 };
    static const int neutral[] = { 501, 505, 507, 599 };
    static const int fault[] = { 502, 503, 504 };
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(bal_status_health(ok[i], false), BAL_HEALTH_OK);
        assert_int_equal(bal_status_health(ok[i], true), BAL_HEALTH_OK);
    }
    for (i = 0; i < sizeof(neutral) / sizeof(neutral[0]); i++) {
        assert_int_equal(bal_status_health(neutral[i], false), BAL_HEALTH_NEUTRAL);
        assert_int_equal(bal_status_health(neutral[i], true), BAL_HEALTH_NEUTRAL);
    }
    for (i = 0; i < sizeof(fault) / sizeof(fault[0]); i++) {
        assert_int_equal(bal_status_health(fault[i], false), BAL_HEALTH_FAULT);
        assert_int_equal(bal_status_health(fault[i], true), BAL_HEALTH_FAULT);
    }
    /* 500: the backend's fault only when pitot found the request well-formed */
    assert_int_equal(bal_status_health(500, true), BAL_HEALTH_FAULT);
    assert_int_equal(bal_status_health(500, false), BAL_HEALTH_NEUTRAL);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_least_in_flight),
        cmocka_unit_test(test_least_busy_scraped),
        cmocka_unit_test(test_stale_scrape_uses_in_flight),
        cmocka_unit_test(test_completion_frees_slot),
        cmocka_unit_test(test_saturation),
        cmocka_unit_test(test_models_and_aliases),
        cmocka_unit_test(test_unknown_model),
        cmocka_unit_test(test_ejection),
        cmocka_unit_test(test_tried_backends_skipped),
        cmocka_unit_test(test_affinity_bounded_load),
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_speed_estimate),
        cmocka_unit_test(test_speed_weighs_load),
        cmocka_unit_test(test_speed_unmeasured_tried),
        cmocka_unit_test(test_speed_ignored),
        cmocka_unit_test(test_speed_extremes),
        cmocka_unit_test(test_rotation_among_equals),
        cmocka_unit_test(test_down_skipped),
        cmocka_unit_test(test_many_backends),
        cmocka_unit_test(test_dns_slots),
        cmocka_unit_test(test_status_health),
    };

    return cmocka_run_group_tests_name("bal", tests, NULL, NULL);
}
