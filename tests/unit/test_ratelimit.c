/* Unit tests for ratelimit: GCRA bursts, edges and long-run bounds, token
 * reservations and their settlement, tokens per day, requests at once, key
 * and tier limits together, the header view, reloads by digest, the
 * estimate, large values, and two threads sharing one table. The clock is
 * the tests' own: every call is given its now_us. */
#include "pitot/route/ratelimit.h"

#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pitot/format/config.h"

#define MIN_US 60000000ULL
#define DAY_US 86400000000ULL
#define T0 1000000000ULL /* a start well past 0 (0 is idle) */

static struct cfg cfg, cfg2; /* large: static, not on the stack */

static struct cfg_limits limits(unsigned rpm, unsigned long long tpm, unsigned conc,
                                unsigned long long tpd)
{
    struct cfg_limits l = { rpm, tpm, conc, tpd };

    return l;
}

/* A deterministic pseudo-random sequence (LCG). */
static uint64_t rnd_state = 88172645463325252ULL;

static uint64_t rnd(uint64_t n)
{
    rnd_state = rnd_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (rnd_state >> 33) % n;
}

/* Key i's digest: 32 bytes of 0xA0 + i. */
static void digest(unsigned char *d, unsigned i)
{
    memset(d, 0xA0 + (int)i, 32);
}

/* A config with n keys; key i has digest(i), name "k<i>", tier 0. */
static void cfg_keys(struct cfg *c, size_t n)
{
    size_t i;

    cfg_init(c);
    c->ratelimit_default_max_tokens = 1024;
    for (i = 0; i < n; i++) {
        digest(c->keys[i].sha256, (unsigned)i);
        snprintf(c->keys[i].name, sizeof(c->keys[i].name), "k%zu", i);
        c->key_tier[i] = 0;
    }
    c->nkeys = n;
}

static void test_labels(void **state)
{
    assert_string_equal(rl_limit_label(RL_OK), "");
    assert_string_equal(rl_limit_label(RL_REQUESTS), "requests");
    assert_string_equal(rl_limit_label(RL_TOKENS), "tokens");
    assert_string_equal(rl_limit_label(RL_TOKENS_DAY), "tokens_per_day");
    assert_string_equal(rl_limit_label(RL_CONCURRENT), "concurrent");
    (void)state;
}

/* N requests per minute fit at once from idle, the next is told to wait one
 * emission interval; also when N does not divide the minute. */
static void test_requests_burst(void **state)
{
    static const unsigned ns[] = { 1, 7, 60, 1000, 7000001 };
    struct cfg_limits l;
    struct rl_state s;
    uint64_t retry;
    size_t i;
    unsigned k;

    for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        unsigned n = ns[i];
        uint64_t t = (MIN_US + n - 1) / n; /* the interval, rounded up */

        l = limits(n, 0, 0, 0);
        memset(&s, 0, sizeof(s));
        for (k = 0; k < n; k++) {
            assert_int_equal(rl_state_admit(&s, &l, T0, 0, &retry), RL_OK);
            assert_int_equal(retry, 0);
        }
        assert_int_equal(s.concurrent, n);
        assert_int_equal(rl_state_admit(&s, &l, T0, 0, &retry), RL_REQUESTS);
        assert_int_equal(retry, t);
        assert_int_equal(s.concurrent, n); /* a refusal charges nothing */
    }
}

/* After the burst: one more exactly one interval later, not a microsecond
 * before. */
static void test_requests_edge(void **state)
{
    const uint64_t t = MIN_US / 60;
    struct cfg_limits l = limits(60, 0, 0, 0);
    struct rl_state s, before;
    uint64_t retry;
    unsigned k;

    memset(&s, 0, sizeof(s));
    for (k = 0; k < 60; k++)
        assert_int_equal(rl_state_admit(&s, &l, T0, 0, &retry), RL_OK);
    before = s;
    assert_int_equal(rl_state_admit(&s, &l, T0 + t - 1, 0, &retry), RL_REQUESTS);
    assert_int_equal(retry, 1);
    assert_memory_equal(&s, &before, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0 + t, 0, &retry), RL_OK);
    assert_int_equal(rl_state_admit(&s, &l, T0 + t, 0, &retry), RL_REQUESTS);
    assert_int_equal(retry, t);
    /* idle for a while: the whole burst again, no more */
    for (k = 0; k < 60; k++)
        assert_int_equal(rl_state_admit(&s, &l, T0 + 10 * MIN_US, 0, &retry), RL_OK);
    assert_int_equal(rl_state_admit(&s, &l, T0 + 10 * MIN_US, 0, &retry), RL_REQUESTS);
    (void)state;
}

/* Full speed for a long time (admit until refused, then step the clock):
 * exactly N + elapsed / interval admitted at every step, never more than
 * N + elapsed * N / P. */
static void test_requests_sweep(void **state)
{
    static const unsigned ns[] = { 7, 60, 1000 };
    size_t i;

    for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        unsigned n = ns[i];
        uint64_t t = (MIN_US + n - 1) / n, now = T0, admitted = 0, retry;
        struct cfg_limits l = limits(n, 0, 0, 0);
        struct rl_state s;
        unsigned step;

        memset(&s, 0, sizeof(s));
        for (step = 0; step < 20000; step++) {
            while (rl_state_admit(&s, &l, now, 0, &retry) == RL_OK)
                admitted++;
            assert_true(retry >= 1 && retry <= t);
            assert_int_equal(admitted, n + (now - T0) / t);
            /* (admitted - N) * P <= elapsed * N */
            assert_true((admitted - n) * MIN_US <= (now - T0) * n);
            now += rnd(2 * t);
        }
        assert_true(now - T0 > 10 * MIN_US); /* a long run */
    }
    (void)state;
}

/* Tokens, costs of every size: never more than N + elapsed * N / P, and not
 * much less (refused only when the cost did not fit). */
static void test_tokens_sweep(void **state)
{
    const unsigned long long n = 90000, cmax = 5000;
    struct cfg_limits l = limits(0, n, 0, 0);
    uint64_t now = T0, sum = 0, k = 0, cost, retry;
    struct rl_state s;
    unsigned step;

    memset(&s, 0, sizeof(s));
    for (step = 0; step < 200000; step++) {
        cost = 1 + rnd(cmax);
        if (rl_state_admit(&s, &l, now, cost, &retry) == RL_OK) {
            sum += cost;
            k++;
            assert_true((sum > n ? sum - n : 0) * MIN_US <= (now - T0) * n);
            continue;
        }
        assert_true(retry >= 1);
        assert_true(retry <= cost * MIN_US / n + 1);
        /* a refusal: at most the cost and a microsecond per request short */
        assert_true((sum + cmax + 1) * MIN_US + k * n >= (now - T0 + MIN_US) * n);
        now += rnd(cost * MIN_US / n);
    }
    assert_true(now - T0 > 10 * MIN_US);
    (void)state;
}

/* A reservation settled for less gives the rest back; the next fits. */
static void test_tokens_settle_refund(void **state)
{
    struct cfg_limits l = limits(0, 1000, 0, 0); /* 60 ms a token */
    struct rl_view v;
    struct rl_state s;
    uint64_t retry;

    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, 600, &retry), RL_OK);
    assert_int_equal(s.tok_tat_us, T0 + 36000000);
    assert_int_equal(rl_state_admit(&s, &l, T0, 600, &retry), RL_TOKENS);
    assert_int_equal(retry, 12000000);
    rl_state_settle(&s, &l, T0, 600, 100);
    assert_int_equal(s.tok_tat_us, T0 + 6000000);
    assert_int_equal(s.concurrent, 0);
    assert_int_equal(rl_state_admit(&s, &l, T0, 600, &retry), RL_OK);
    rl_state_view(&s, &l, T0, &v);
    assert_int_equal(v.limit_tokens, 1000);
    assert_int_equal(v.remaining_tokens, 300);
    assert_int_equal(v.reset_tokens_us, 42000000);

    /* a refund never makes a limit more than whole: 10 s after admission,
       60 s refunded, the state is idle, not 50 s "in credit" */
    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, 1000, &retry), RL_OK);
    rl_state_settle(&s, &l, T0 + 10000000, 1000, 0);
    assert_int_equal(s.tok_tat_us, T0 + 10000000);
    assert_int_equal(rl_state_admit(&s, &l, T0 + 10000000, 1000, &retry), RL_OK);
    assert_int_equal(rl_state_admit(&s, &l, T0 + 10000000, 1, &retry), RL_TOKENS);
    /* and one settled when already idle stays idle */
    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, 500, &retry), RL_OK);
    rl_state_settle(&s, &l, T0 + 5 * MIN_US, 500, 0);
    rl_state_view(&s, &l, T0 + 5 * MIN_US, &v);
    assert_int_equal(v.remaining_tokens, 1000);
    assert_int_equal(v.reset_tokens_us, 0);
    (void)state;
}

/* Used more than reserved: the extra is charged, past the limit too. */
static void test_tokens_settle_extra(void **state)
{
    struct cfg_limits l = limits(0, 1000, 0, 0);
    struct rl_view v;
    struct rl_state s;
    uint64_t retry;

    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, 100, &retry), RL_OK);
    rl_state_settle(&s, &l, T0, 100, 1500);
    assert_int_equal(s.tok_tat_us, T0 + 90000000);
    rl_state_view(&s, &l, T0, &v);
    assert_int_equal(v.remaining_tokens, 0);
    assert_int_equal(v.reset_tokens_us, 90000000);
    /* even a request reserving nothing waits until the debt is paid */
    assert_int_equal(rl_state_admit(&s, &l, T0, 0, &retry), RL_TOKENS);
    assert_int_equal(retry, 30000000);
    assert_int_equal(rl_state_admit(&s, &l, T0, 1, &retry), RL_TOKENS);
    assert_int_equal(retry, 30060000);
    assert_int_equal(rl_state_admit(&s, &l, T0 + 30060000, 1, &retry), RL_OK);
    /* an extra after the state went idle counts from now */
    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, 100, &retry), RL_OK);
    rl_state_settle(&s, &l, T0 + 2 * MIN_US, 100, 200);
    assert_int_equal(s.tok_tat_us, T0 + 2 * MIN_US + 6000000);
    (void)state;
}

/* A reservation larger than a whole token limit never fits: retry 0. */
static void test_cost_too_large(void **state)
{
    struct cfg_limits l = limits(10, 1000, 0, 5000);
    struct rl_state s, before;
    uint64_t retry = 99;

    memset(&s, 0, sizeof(s));
    before = s;
    assert_int_equal(rl_state_admit(&s, &l, T0, 1001, &retry), RL_TOKENS);
    assert_int_equal(retry, 0);
    assert_memory_equal(&s, &before, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, 1000, &retry), RL_OK);
    l = limits(10, 10000, 0, 5000);
    memset(&s, 0, sizeof(s));
    retry = 99;
    assert_int_equal(rl_state_admit(&s, &l, T0, 6000, &retry), RL_TOKENS_DAY);
    assert_int_equal(retry, 0);
    assert_memory_equal(&s, &before, sizeof(s));
    (void)state;
}

/* Tokens per day refuse on their own while the minute would allow. */
static void test_tokens_per_day(void **state)
{
    struct cfg_limits l = limits(0, 1000, 0, 2500); /* 34.56 s a token per day */
    struct rl_state s, before;
    uint64_t retry;

    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, 1000, &retry), RL_OK);
    assert_int_equal(rl_state_admit(&s, &l, T0 + MIN_US, 1000, &retry), RL_OK);
    assert_int_equal(s.day_tat_us, T0 + 2000 * (DAY_US / 2500));
    before = s;
    assert_int_equal(rl_state_admit(&s, &l, T0 + 2 * MIN_US, 1000, &retry), RL_TOKENS_DAY);
    assert_int_equal(retry, T0 + 3000 * (DAY_US / 2500) - DAY_US - (T0 + 2 * MIN_US));
    assert_memory_equal(&s, &before, sizeof(s)); /* the minute's not charged either */
    assert_int_equal(rl_state_admit(&s, &l, T0 + 2 * MIN_US, 500, &retry), RL_OK);
    /* the day is spent but for what two minutes gave back (3.47 tokens) */
    before = s;
    assert_int_equal(rl_state_admit(&s, &l, T0 + 2 * MIN_US, 4, &retry), RL_TOKENS_DAY);
    assert_int_equal(retry, 4 * (DAY_US / 2500) - 2 * MIN_US);
    assert_memory_equal(&s, &before, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0 + 2 * MIN_US, 3, &retry), RL_OK);
    /* the minute alone does not touch the day */
    l = limits(0, 1000, 0, 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, 1000, &retry), RL_OK);
    assert_int_equal(s.day_tat_us, 0);
    assert_int_equal(rl_state_admit(&s, &l, T0, 1, &retry), RL_TOKENS);
    /* the first refusing limit is reported: requests, then tokens, then day */
    l = limits(1, 1000, 1, 1000);
    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, 1000, &retry), RL_OK);
    assert_int_equal(rl_state_admit(&s, &l, T0, 1, &retry), RL_REQUESTS);
    assert_int_equal(rl_state_admit(&s, &l, T0 + MIN_US, 1, &retry), RL_TOKENS_DAY);
    assert_int_equal(rl_state_admit(&s, &l, T0 + MIN_US, 0, &retry), RL_CONCURRENT);
    (void)state;
}

/* max_concurrent counts admitted requests and releases them at settle. */
static void test_concurrent(void **state)
{
    struct cfg_limits l = limits(100, 0, 2, 0);
    struct rl_state s, before;
    uint64_t retry = 99;

    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, 10, &retry), RL_OK);
    assert_int_equal(rl_state_admit(&s, &l, T0, 10, &retry), RL_OK);
    before = s;
    assert_int_equal(rl_state_admit(&s, &l, T0, 10, &retry), RL_CONCURRENT);
    assert_int_equal(retry, 0);
    assert_memory_equal(&s, &before, sizeof(s)); /* requests not charged */
    rl_state_settle(&s, &l, T0 + 1, 10, 10);
    assert_int_equal(s.concurrent, 1);
    assert_int_equal(rl_state_admit(&s, &l, T0 + 1, 10, &retry), RL_OK);
    rl_state_settle(&s, &l, T0 + 2, 10, 10);
    rl_state_settle(&s, &l, T0 + 2, 10, 10);
    rl_state_settle(&s, &l, T0 + 2, 10, 10); /* one too many: never below 0 */
    assert_int_equal(s.concurrent, 0);
    assert_int_equal(rl_state_admit(&s, &l, T0 + 3, 10, &retry), RL_OK);
    assert_int_equal(s.concurrent, 1);
    (void)state;
}

/* What the headers say at a few points. */
static void test_view(void **state)
{
    struct cfg_limits l = limits(60, 6000, 0, 0); /* 1 s a request, 10 ms a token */
    struct rl_state s;
    struct rl_view v;
    uint64_t retry;
    unsigned k;

    memset(&s, 0, sizeof(s));
    rl_state_view(&s, &l, T0, &v);
    assert_int_equal(v.limit_requests, 60);
    assert_int_equal(v.remaining_requests, 60);
    assert_int_equal(v.reset_requests_us, 0);
    assert_int_equal(v.limit_tokens, 6000);
    assert_int_equal(v.remaining_tokens, 6000);
    assert_int_equal(v.reset_tokens_us, 0);
    for (k = 0; k < 10; k++)
        assert_int_equal(rl_state_admit(&s, &l, T0, 600, &retry), RL_OK);
    rl_state_view(&s, &l, T0, &v);
    assert_int_equal(v.remaining_requests, 50);
    assert_int_equal(v.reset_requests_us, 10000000);
    assert_int_equal(v.remaining_tokens, 0);
    assert_int_equal(v.reset_tokens_us, MIN_US);
    rl_state_view(&s, &l, T0 + 2500000, &v);
    assert_int_equal(v.remaining_requests, 52);
    assert_int_equal(v.reset_requests_us, 7500000);
    assert_int_equal(v.remaining_tokens, 250);
    assert_int_equal(v.reset_tokens_us, 57500000);
    rl_state_view(&s, &l, T0 + 100 * 1000000ULL, &v);
    assert_int_equal(v.remaining_requests, 60);
    assert_int_equal(v.reset_requests_us, 0);
    assert_int_equal(v.remaining_tokens, 6000);
    assert_int_equal(v.reset_tokens_us, 0);
    /* no limits: no numbers */
    l = limits(0, 0, 5, 100);
    rl_state_view(&s, &l, T0, &v);
    assert_int_equal(v.limit_requests, 0);
    assert_int_equal(v.remaining_requests, 0);
    assert_int_equal(v.limit_tokens, 0);
    assert_int_equal(v.remaining_tokens, 0);
    (void)state;
}

/* Key 0 (2 requests a minute) and key 1 (10 requests, 5000 tokens) share
 * tier 0 (4 requests, 1000 tokens): each refusal names its party and
 * charges neither. */
static void test_key_and_tier(void **state)
{
    struct ratelimit *rl;
    struct rl_view v;
    uint64_t retry;
    bool who;

    cfg_keys(&cfg, 2);
    cfg.tiers[0].limits = limits(4, 1000, 0, 0);
    cfg.keys[0].limits = limits(2, 0, 0, 0);
    cfg.keys[1].limits = limits(10, 5000, 0, 0);
    rl = rl_new(&cfg);
    assert_non_null(rl);

    assert_int_equal(rl_admit(rl, &cfg, 0, 0, T0, 100, &retry, &v, &who), RL_OK);
    assert_true(who);
    assert_int_equal(v.limit_requests, 2);
    assert_int_equal(v.remaining_requests, 1);
    assert_int_equal(v.limit_tokens, 0);
    assert_int_equal(rl_admit(rl, &cfg, 0, 0, T0, 100, &retry, &v, &who), RL_OK);
    assert_int_equal(v.remaining_requests, 0);
    assert_int_equal(rl_tokens_left(rl, &cfg, 0, -1, T0), 800);
    /* the key's own limit */
    assert_int_equal(rl_admit(rl, &cfg, 0, 0, T0, 100, &retry, &v, &who), RL_REQUESTS);
    assert_true(who);
    assert_int_equal(retry, 30000000);
    assert_int_equal(rl_tokens_left(rl, &cfg, 0, -1, T0), 800); /* tier not charged */

    assert_int_equal(rl_admit(rl, &cfg, 0, 1, T0, 100, &retry, &v, &who), RL_OK);
    assert_int_equal(rl_admit(rl, &cfg, 0, 1, T0, 100, &retry, &v, &who), RL_OK);
    assert_true(who);
    assert_int_equal(v.limit_requests, 10);
    assert_int_equal(v.remaining_requests, 8);
    assert_int_equal(v.remaining_tokens, 4800);
    /* the tier's aggregate: 4 requests of the two keys */
    assert_int_equal(rl_admit(rl, &cfg, 0, 1, T0, 100, &retry, &v, &who), RL_REQUESTS);
    assert_false(who);
    assert_int_equal(retry, 15000000);
    assert_int_equal(v.limit_requests, 10); /* the view stays the key's */
    assert_int_equal(v.remaining_requests, 8);
    assert_int_equal(rl_tokens_left(rl, &cfg, 0, 1, T0), 4800); /* key not charged */
    assert_int_equal(rl_tokens_left(rl, &cfg, 0, -1, T0), 600);
    /* no key: the tier alone, and its view */
    assert_int_equal(rl_admit(rl, &cfg, 0, -1, T0, 100, &retry, &v, &who), RL_REQUESTS);
    assert_false(who);
    assert_int_equal(v.limit_requests, 4);
    assert_int_equal(v.remaining_requests, 0);
    assert_int_equal(v.limit_tokens, 1000);
    assert_int_equal(v.remaining_tokens, 600);
    /* the tier's tokens refuse too */
    assert_int_equal(rl_admit(rl, &cfg, 0, 1, T0 + 15000000, 900, &retry, &v, &who), RL_TOKENS);
    assert_int_equal(retry, 3000000); /* 850 left then */
    assert_false(who);
    /* settle: both parties refunded */
    rl_settle(rl, &cfg, 0, 1, T0, 100, 50);
    assert_int_equal(rl_tokens_left(rl, &cfg, 0, 1, T0), 4850);
    assert_int_equal(rl_tokens_left(rl, &cfg, 0, -1, T0), 650);
    /* -1 without a tokens_per_minute limit */
    assert_int_equal(rl_tokens_left(rl, &cfg, 0, 0, T0), -1);
    assert_int_equal(rl_tokens_left(rl, &cfg, 1, -1, T0), -1);
    /* another tier is another state */
    cfg.tiers[1].limits = limits(1, 0, 0, 0);
    assert_int_equal(rl_admit(rl, &cfg, 1, -1, T0, 0, &retry, NULL, NULL), RL_OK);
    assert_int_equal(rl_admit(rl, &cfg, 1, -1, T0, 0, &retry, NULL, NULL), RL_REQUESTS);
    rl_free(rl);
    cfg_release(&cfg);
    (void)state;
}

/* A key without limits of its own: the tier's limits and view. */
static void test_key_without_limits(void **state)
{
    struct ratelimit *rl;
    struct rl_view v;
    uint64_t retry;
    bool who = true;

    cfg_keys(&cfg, 1);
    cfg.tiers[0].limits = limits(1, 0, 0, 0);
    rl = rl_new(&cfg);
    assert_non_null(rl);
    assert_int_equal(rl_admit(rl, &cfg, 0, 0, T0, 5, &retry, &v, &who), RL_OK);
    assert_false(who);
    assert_int_equal(v.limit_requests, 1);
    assert_int_equal(v.remaining_requests, 0);
    assert_int_equal(rl_admit(rl, &cfg, 0, 0, T0, 5, &retry, &v, &who), RL_REQUESTS);
    assert_false(who);
    assert_int_equal(retry, MIN_US);
    /* nothing limited at all: admitted, an empty view */
    cfg.tiers[0].limits = limits(0, 0, 0, 0);
    assert_int_equal(rl_admit(rl, &cfg, 0, 0, T0, 5, &retry, &v, &who), RL_OK);
    assert_int_equal(v.limit_requests, 0);
    assert_int_equal(v.limit_tokens, 0);
    rl_free(rl);
    cfg_release(&cfg);
    (void)state;
}

/* A reload that reorders the keys keeps each one's state by digest, a new
 * key starts idle, and a settle under the old configuration still reaches
 * the state (a removed key's is a no-op). */
static void test_reload_by_digest(void **state)
{
    const struct cfg_limits kl = limits(0, 1000, 1, 0);
    struct ratelimit *rl;
    uint64_t retry;
    bool who;

    /* cur: keys a b c (0 1 2) */
    cfg_keys(&cfg, 3);
    cfg.keys[0].limits = kl;
    cfg.keys[1].limits = kl;
    cfg.keys[2].limits = kl;
    cfg.tiers[0].limits = limits(0, 0, 3, 0);
    rl = rl_new(&cfg);
    assert_non_null(rl);
    assert_int_equal(rl_admit(rl, &cfg, 0, 0, T0, 1000, &retry, NULL, &who), RL_OK); /* a */
    assert_int_equal(rl_admit(rl, &cfg, 0, 1, T0, 400, &retry, NULL, &who), RL_OK);  /* b */
    assert_int_equal(rl_admit(rl, &cfg, 0, 2, T0, 10, &retry, NULL, &who), RL_OK);   /* c */

    /* next: c a d (d new), b removed */
    cfg_keys(&cfg2, 3);
    digest(cfg2.keys[0].sha256, 2);
    digest(cfg2.keys[1].sha256, 0);
    digest(cfg2.keys[2].sha256, 3);
    cfg2.keys[0].limits = kl;
    cfg2.keys[1].limits = kl;
    cfg2.keys[2].limits = kl;
    cfg2.tiers[0].limits = limits(0, 0, 3, 0);
    rl_reload(rl, &cfg, &cfg2);

    assert_int_equal(rl_tokens_left(rl, &cfg2, 0, 1, T0), 0);    /* a */
    assert_int_equal(rl_tokens_left(rl, &cfg2, 0, 0, T0), 990);  /* c */
    assert_int_equal(rl_tokens_left(rl, &cfg2, 0, 2, T0), 1000); /* d */
    assert_int_equal(rl_admit(rl, &cfg2, 0, 1, T0, 1, &retry, NULL, &who), RL_TOKENS);
    assert_true(who);
    /* c still runs one request: its max_concurrent 1 kept */
    assert_int_equal(rl_admit(rl, &cfg2, 0, 0, T0, 0, &retry, NULL, &who), RL_CONCURRENT);
    assert_true(who);
    /* the tier's state kept by slot: 3 running */
    assert_int_equal(rl_admit(rl, &cfg2, 0, 2, T0, 0, &retry, NULL, &who), RL_CONCURRENT);
    assert_false(who);

    /* a's and b's requests end under cur: a's refund reaches a (index 1 now),
       b's is gone (a no-op for it), the tier has room again */
    rl_settle(rl, &cfg, 0, 0, T0, 1000, 0);
    rl_settle(rl, &cfg, 0, 1, T0, 400, 400);
    assert_int_equal(rl_tokens_left(rl, &cfg2, 0, 1, T0), 1000);
    assert_int_equal(rl_tokens_left(rl, &cfg, 0, 1, T0), 1000); /* b: idle, unknown */
    assert_int_equal(rl_admit(rl, &cfg2, 0, 1, T0, 1000, &retry, NULL, &who), RL_OK);
    assert_int_equal(rl_admit(rl, &cfg2, 0, 2, T0, 0, &retry, NULL, &who), RL_OK);
    assert_int_equal(rl_admit(rl, &cfg2, 0, 2, T0, 0, &retry, NULL, &who), RL_CONCURRENT);
    assert_true(who); /* d's own limit: the key is checked before the tier */

    /* b back later: idle */
    rl_reload(rl, &cfg2, &cfg);
    assert_int_equal(rl_tokens_left(rl, &cfg, 0, 1, T0), 1000);
    assert_int_equal(rl_tokens_left(rl, &cfg, 0, 0, T0), 0); /* a kept again */
    rl_free(rl);
    cfg_release(&cfg);
    cfg_release(&cfg2);
    (void)state;
}

static void test_estimate(void **state)
{
    cfg_init(&cfg);
    cfg.ratelimit_default_max_tokens = 1024;
    assert_int_equal(rl_estimate(&cfg, 0, -1), 1024);
    assert_int_equal(rl_estimate(&cfg, 0, 0), 0);
    assert_int_equal(rl_estimate(&cfg, 1, 0), 1);
    assert_int_equal(rl_estimate(&cfg, 4, 0), 1);
    assert_int_equal(rl_estimate(&cfg, 5, 0), 2);
    assert_int_equal(rl_estimate(&cfg, 8, 100), 102);
    assert_int_equal(rl_estimate(&cfg, 9, -5), 1027);
    assert_int_equal(rl_estimate(&cfg, SIZE_MAX, 0), SIZE_MAX / 4 + 1);
    assert_true(rl_estimate(&cfg, SIZE_MAX, LLONG_MAX) ==
                (uint64_t)(SIZE_MAX / 4 + 1) + (uint64_t)LLONG_MAX);
    cfg_release(&cfg);
    (void)state;
}

/* tokens_per_day 1e15 and costs of 1e12: exact, no overflow. */
static void test_large_values(void **state)
{
    const unsigned long long big = 1000000000000000ULL, cost = 1000000000000ULL;
    struct cfg_limits l = limits(0, big, 0, big);
    struct rl_state s;
    struct rl_view v;
    uint64_t retry;
    unsigned k;

    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, cost, &retry), RL_OK);
    assert_int_equal(s.tok_tat_us, T0 + 60000);
    assert_int_equal(s.day_tat_us, T0 + 86400000);
    rl_state_view(&s, &l, T0, &v);
    assert_true(v.limit_tokens == big);
    assert_true(v.remaining_tokens == big - cost);
    for (k = 1; k < 1000; k++)
        assert_int_equal(rl_state_admit(&s, &l, T0 + k * 60000ULL, cost, &retry), RL_OK);
    /* 1000 * 1e12 = the whole day, each minute given back as it went */
    assert_int_equal(s.day_tat_us, T0 + DAY_US);
    assert_int_equal(rl_state_admit(&s, &l, T0 + 1000 * 60000ULL, cost, &retry), RL_TOKENS_DAY);
    assert_int_equal(retry, 86400000 - 1000 * 60000ULL);
    /* the whole limit fits from idle; one more never does */
    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, big, &retry), RL_OK);
    assert_int_equal(s.day_tat_us, T0 + DAY_US);
    assert_int_equal(rl_state_admit(&s, &l, T0, big + 1, &retry), RL_TOKENS);
    assert_int_equal(retry, 0);
    /* a usage far past any limit saturates, it does not wrap to idle */
    l = limits(0, 1, 0, 1);
    memset(&s, 0, sizeof(s));
    assert_int_equal(rl_state_admit(&s, &l, T0, 1, &retry), RL_OK);
    rl_state_settle(&s, &l, T0, 1, UINT64_MAX);
    assert_true(s.tok_tat_us == UINT64_MAX);
    assert_true(s.day_tat_us == UINT64_MAX);
    assert_int_equal(rl_state_admit(&s, &l, T0 + DAY_US, 0, &retry), RL_TOKENS);
    assert_true(retry > DAY_US);
    rl_state_view(&s, &l, T0, &v);
    assert_int_equal(v.remaining_tokens, 0);
    assert_true(v.reset_tokens_us == UINT64_MAX - T0);
    /* the largest requests_per_minute */
    l = limits(UINT32_MAX, 0, 0, 0);
    memset(&s, 0, sizeof(s));
    for (k = 0; k < 1000; k++)
        assert_int_equal(rl_state_admit(&s, &l, T0, 0, &retry), RL_OK);
    rl_state_view(&s, &l, T0, &v);
    assert_true(v.remaining_requests == UINT32_MAX - 1000ULL);
    (void)state;
}

/* ---- two threads, one table ------------------------------------------- */

#define RACE_ROUNDS 100000
#define RACE_RPM 150000 /* of the 2 x RACE_ROUNDS tries, all at one instant */

struct racer {
    struct ratelimit *rl;
    int key;
    unsigned admitted, refused, other;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    uint64_t retry;
    enum rl_limit res;
    unsigned i;

    for (i = 0; i < RACE_ROUNDS; i++) {
        res = rl_admit(r->rl, &cfg, 0, r->key, T0, 10, &retry, NULL, NULL);
        if (res == RL_OK) {
            r->admitted++;
            rl_settle(r->rl, &cfg, 0, r->key, T0, 10, 3);
        } else if (res == RL_REQUESTS) {
            r->refused++;
        } else {
            r->other++;
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct racer r[2];
    pthread_t th[2];
    uint64_t retry;
    unsigned i;

    cfg_keys(&cfg, 2);
    cfg.tiers[0].limits = limits(RACE_RPM, 10000000, 2, 0);
    cfg.keys[0].limits = limits(0, 10000000, 1, 0);
    cfg.keys[1].limits = limits(0, 10000000, 1, 0);
    memset(r, 0, sizeof(r));
    r[0].rl = rl_new(&cfg);
    assert_non_null(r[0].rl);
    r[1].rl = r[0].rl;
    r[1].key = 1;
    for (i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
    for (i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    /* exactly the tier's requests, none lost or doubled */
    assert_int_equal(r[0].admitted + r[1].admitted, RACE_RPM);
    assert_int_equal(r[0].refused + r[1].refused, 2 * RACE_ROUNDS - RACE_RPM);
    assert_int_equal(r[0].other + r[1].other, 0);
    /* each admitted request 3 tokens net, at the tier and at its key */
    assert_int_equal(rl_tokens_left(r[0].rl, &cfg, 0, -1, T0),
                     10000000 - 3LL * (r[0].admitted + r[1].admitted));
    for (i = 0; i < 2; i++)
        assert_int_equal(rl_tokens_left(r[0].rl, &cfg, 0, (int)i, T0),
                         10000000 - 3LL * r[i].admitted);
    /* every request ended: two may run at once again, not three */
    assert_int_equal(rl_admit(r[0].rl, &cfg, 0, 0, T0 + MIN_US, 0, &retry, NULL, NULL), RL_OK);
    assert_int_equal(rl_admit(r[0].rl, &cfg, 0, 1, T0 + MIN_US, 0, &retry, NULL, NULL), RL_OK);
    assert_int_equal(rl_admit(r[0].rl, &cfg, 0, -1, T0 + MIN_US, 0, &retry, NULL, NULL),
                     RL_CONCURRENT);
    rl_free(r[0].rl);
    cfg_release(&cfg);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_requests_burst),
        cmocka_unit_test(test_requests_edge),
        cmocka_unit_test(test_requests_sweep),
        cmocka_unit_test(test_tokens_sweep),
        cmocka_unit_test(test_tokens_settle_refund),
        cmocka_unit_test(test_tokens_settle_extra),
        cmocka_unit_test(test_cost_too_large),
        cmocka_unit_test(test_tokens_per_day),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_view),
        cmocka_unit_test(test_key_and_tier),
        cmocka_unit_test(test_key_without_limits),
        cmocka_unit_test(test_reload_by_digest),
        cmocka_unit_test(test_estimate),
        cmocka_unit_test(test_large_values),
        cmocka_unit_test(test_threads),
    };

    return cmocka_run_group_tests_name("rl", tests, NULL, NULL);
}
