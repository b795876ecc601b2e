/* ratelimit: GCRA limits per tier and per key (requests and tokens per
 * minute, tokens per day, requests at once), in integer microseconds; one
 * table of states under one lock, keys found by their SHA-256 digest. */
#include "pitot/route/ratelimit.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RL_MINUTE_US 60000000ULL
#define RL_DAY_US 86400000000ULL
#define RL_DIGEST_BYTES 32

/* One GCRA limit: n units per window_us, n of them at once from idle; n == 0
 * is no limit. A cost c advances the theoretical arrival time (TAT) by
 * ceil(c * window_us / n), never less than its exact share, and is let in
 * when the TAT then is at most window_us ahead of now. With increments
 * rounded up and a tolerance of one window, no run of length E ever admits
 * more than n + E * n / window_us units. Token limits use the period itself
 * as the window. The requests limit, whose every cost is 1, uses n times its
 * rounded-up emission interval (n * ceil(P / n), P when n divides P, less
 * than P + n otherwise): n requests then fit at once from idle even when n
 * does not divide the period, and the bound still holds since the interval
 * is not shorter than P / n. */
struct rl_gcra {
    unsigned long long n;
    uint64_t window_us;
};

struct rl_key {
    unsigned char sha256[RL_DIGEST_BYTES];
    struct rl_state st;
};

struct ratelimit {
    pthread_mutex_t lock; /* everything below */
    struct rl_state tier[CFG_MAX_TIERS];
    struct rl_key key[CFG_MAX_KEYS]; /* the current configuration's keys, in its order */
    size_t nkeys;
    struct rl_key scratch[CFG_MAX_KEYS]; /* rl_reload builds the next table here */
    uint64_t unanswered;                 /* admissions Redis did not answer */
};

static const char *const rl_labels[RL__COUNT] = {
    [RL_OK] = "",
    [RL_REQUESTS] = "requests",
    [RL_TOKENS] = "tokens",
    [RL_TOKENS_DAY] = "tokens_per_day",
    [RL_CONCURRENT] = "concurrent",
};

const char *rl_limit_label(enum rl_limit l)
{
    return (unsigned)l < RL__COUNT ? rl_labels[l] : "";
}

/* ---- one limit ---------------------------------------------------------- */

static uint64_t rl_sat64(unsigned __int128 x)
{
    return x > UINT64_MAX ? UINT64_MAX : (uint64_t)x;
}

static struct rl_gcra rl_gcra_requests(unsigned n)
{
    struct rl_gcra g = { n, 0 };

    if (n > 0)
        g.window_us = n * ((RL_MINUTE_US + n - 1) / n); /* < P + n: no overflow */
    return g;
}

static struct rl_gcra rl_gcra_tokens(unsigned long long n, uint64_t period_us)
{
    struct rl_gcra g = { n, n > 0 ? period_us : 0 };

    return g;
}

/* The TAT increment of `cost`: ceil(cost * window / n); n > 0. At most
 * 2^64 * 2^37, well inside 128 bits. */
static unsigned __int128 rl_gcra_inc(const struct rl_gcra *g, uint64_t cost)
{
    unsigned __int128 x = (unsigned __int128)cost * g->window_us;

    return (x + g->n - 1) / g->n;
}

/* Whether `cost` fits at now_us given the TAT; if so *tat_out is the TAT
 * after it, else *retry_us the wait until it would fit (0: never). */
static bool rl_gcra_check(const struct rl_gcra *g, uint64_t tat_us, uint64_t now_us, uint64_t cost,
                          uint64_t *tat_out, uint64_t *retry_us)
{
    uint64_t base = tat_us > now_us ? tat_us : now_us;
    unsigned __int128 next, limit;

    if (cost > g->n) {
        *retry_us = 0;
        return false;
    }
    next = (unsigned __int128)base + rl_gcra_inc(g, cost);
    limit = (unsigned __int128)now_us + g->window_us;
    if (next <= limit) {
        *tat_out = rl_sat64(next);
        return true;
    }
    *retry_us = rl_sat64(next - limit); /* > 0 */
    return false;
}

/* The TAT once a reservation of `reserved` turned out to be `used`: charged
 * ceil(used * window / n) in all. A refund never takes the TAT below now
 * (idle is as whole as a limit gets); an excess is charged past the limit. */
static uint64_t rl_gcra_settle(const struct rl_gcra *g, uint64_t tat_us, uint64_t now_us,
                               uint64_t reserved, uint64_t used)
{
    unsigned __int128 ir = rl_gcra_inc(g, reserved), iu = rl_gcra_inc(g, used);
    uint64_t base = tat_us > now_us ? tat_us : now_us;

    if (iu >= ir)
        return rl_sat64((unsigned __int128)base + (iu - ir));
    if (tat_us <= now_us)
        return tat_us; /* idle already */
    if (ir - iu >= tat_us - now_us)
        return now_us;
    return tat_us - (uint64_t)(ir - iu);
}

/* Units left at now_us (at most n) and the time until all n are back. */
static void rl_gcra_view(const struct rl_gcra *g, uint64_t tat_us, uint64_t now_us,
                         unsigned long long *left, uint64_t *reset_us)
{
    uint64_t base = tat_us > now_us ? tat_us : now_us;
    unsigned __int128 limit = (unsigned __int128)now_us + g->window_us, x;

    *reset_us = base - now_us;
    *left = 0;
    if (base >= limit)
        return;
    x = (limit - base) * g->n / g->window_us; /* (< 2^37) * (< 2^64) */
    *left = x > g->n ? g->n : (unsigned long long)x;
}

/* ---- one party ---------------------------------------------------------- */

enum rl_limit rl_state_admit(struct rl_state *s, const struct cfg_limits *l, uint64_t now_us,
                             uint64_t tokens, uint64_t *retry_us)
{
    struct rl_gcra req = rl_gcra_requests(l->requests_per_minute);
    struct rl_gcra tok = rl_gcra_tokens(l->tokens_per_minute, RL_MINUTE_US);
    struct rl_gcra day = rl_gcra_tokens(l->tokens_per_day, RL_DAY_US);
    uint64_t req_tat = s->req_tat_us, tok_tat = s->tok_tat_us, day_tat = s->day_tat_us;
    uint64_t retry = 0;
    enum rl_limit r = RL_OK;

    if (req.n > 0 && !rl_gcra_check(&req, s->req_tat_us, now_us, 1, &req_tat, &retry))
        r = RL_REQUESTS;
    else if (tok.n > 0 && !rl_gcra_check(&tok, s->tok_tat_us, now_us, tokens, &tok_tat, &retry))
        r = RL_TOKENS;
    else if (day.n > 0 && !rl_gcra_check(&day, s->day_tat_us, now_us, tokens, &day_tat, &retry))
        r = RL_TOKENS_DAY;
    else if (l->max_concurrent > 0 && s->concurrent >= l->max_concurrent)
        r = RL_CONCURRENT; /* retry 0: when one ends is unknown */
    if (retry_us != NULL)
        *retry_us = retry;
    if (r != RL_OK)
        return r;
    s->req_tat_us = req_tat;
    s->tok_tat_us = tok_tat;
    s->day_tat_us = day_tat;
    if (s->concurrent < UINT_MAX)
        s->concurrent++;
    return RL_OK;
}

void rl_state_settle(struct rl_state *s, const struct cfg_limits *l, uint64_t now_us,
                     uint64_t reserved, uint64_t used)
{
    struct rl_gcra tok = rl_gcra_tokens(l->tokens_per_minute, RL_MINUTE_US);
    struct rl_gcra day = rl_gcra_tokens(l->tokens_per_day, RL_DAY_US);

    if (tok.n > 0)
        s->tok_tat_us = rl_gcra_settle(&tok, s->tok_tat_us, now_us, reserved, used);
    if (day.n > 0)
        s->day_tat_us = rl_gcra_settle(&day, s->day_tat_us, now_us, reserved, used);
    if (s->concurrent > 0)
        s->concurrent--;
}

void rl_state_view(const struct rl_state *s, const struct cfg_limits *l, uint64_t now_us,
                   struct rl_view *v)
{
    struct rl_gcra req = rl_gcra_requests(l->requests_per_minute);
    struct rl_gcra tok = rl_gcra_tokens(l->tokens_per_minute, RL_MINUTE_US);

    memset(v, 0, sizeof(*v));
    if (req.n > 0) {
        v->limit_requests = req.n;
        rl_gcra_view(&req, s->req_tat_us, now_us, &v->remaining_requests, &v->reset_requests_us);
    }
    if (tok.n > 0) {
        v->limit_tokens = tok.n;
        rl_gcra_view(&tok, s->tok_tat_us, now_us, &v->remaining_tokens, &v->reset_tokens_us);
    }
}

/* ---- the table ---------------------------------------------------------- */

static bool rl_limits_any(const struct cfg_limits *l)
{
    return l->requests_per_minute > 0 || l->tokens_per_minute > 0 || l->max_concurrent > 0 ||
           l->tokens_per_day > 0;
}

/* The state of c->keys[key] (by digest: c may be the configuration before
 * the last reload), NULL for no key or one the table does not hold. Under
 * rl->lock. */
static struct rl_state *rl_key_state(struct ratelimit *rl, const struct cfg *c, int key)
{
    const unsigned char *d;
    size_t i;

    if (key < 0 || (size_t)key >= c->nkeys)
        return NULL;
    d = c->keys[key].sha256;
    /* the same index unless c is older than the table */
    if ((size_t)key < rl->nkeys && memcmp(rl->key[key].sha256, d, RL_DIGEST_BYTES) == 0)
        return &rl->key[key].st;
    for (i = 0; i < rl->nkeys; i++)
        if (memcmp(rl->key[i].sha256, d, RL_DIGEST_BYTES) == 0)
            return &rl->key[i].st;
    return NULL;
}

/* The key's own limits when it has any, else NULL. */
static const struct cfg_limits *rl_key_limits(const struct cfg *c, int key)
{
    if (key < 0 || (size_t)key >= c->nkeys || !rl_limits_any(&c->keys[key].limits))
        return NULL;
    return &c->keys[key].limits;
}

struct ratelimit *rl_new(const struct cfg *c)
{
    struct ratelimit *rl = calloc(1, sizeof(*rl));
    size_t i;

    if (rl == NULL)
        return NULL;
    if (pthread_mutex_init(&rl->lock, NULL) != 0) {
        free(rl);
        return NULL;
    }
    rl->nkeys = c->nkeys < CFG_MAX_KEYS ? c->nkeys : CFG_MAX_KEYS;
    for (i = 0; i < rl->nkeys; i++)
        memcpy(rl->key[i].sha256, c->keys[i].sha256, RL_DIGEST_BYTES);
    return rl;
}

void rl_free(struct ratelimit *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

/* l with every limit divided by share (a set one stays at least 1) into
 * out; returns out, or l itself when share is 1 or l is NULL. */
static const struct cfg_limits *rl_shared(const struct cfg_limits *l, unsigned share,
                                          struct cfg_limits *out)
{
    if (l == NULL || share <= 1)
        return l;
    out->requests_per_minute =
        l->requests_per_minute
            ? (l->requests_per_minute / share ? l->requests_per_minute / share : 1)
            : 0;
    out->tokens_per_minute = l->tokens_per_minute
                                 ? (l->tokens_per_minute / share ? l->tokens_per_minute / share : 1)
                                 : 0;
    out->max_concurrent =
        l->max_concurrent ? (l->max_concurrent / share ? l->max_concurrent / share : 1) : 0;
    out->tokens_per_day =
        l->tokens_per_day ? (l->tokens_per_day / share ? l->tokens_per_day / share : 1) : 0;
    return out;
}

enum rl_limit rl_admit(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key,
                       uint64_t now_us, uint64_t tokens, uint64_t *retry_us, struct rl_view *v,
                       bool *who_key)
{
    return rl_admit_share(rl, c, tier, key, now_us, tokens, 1, retry_us, v, who_key);
}

enum rl_limit rl_admit_share(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key,
                             uint64_t now_us, uint64_t tokens, unsigned share, uint64_t *retry_us,
                             struct rl_view *v, bool *who_key)
{
    struct cfg_limits kbuf, tbuf;
    const struct cfg_limits *kl = rl_shared(rl_key_limits(c, key), share, &kbuf);
    const struct cfg_limits *tl =
        rl_shared(tier < CFG_MAX_TIERS ? &c->tiers[tier].limits : NULL, share, &tbuf);
    struct rl_state *ks, *ts, kn, tn;
    uint64_t retry = 0;
    enum rl_limit r = RL_OK;
    bool by_key = false;

    pthread_mutex_lock(&rl->lock);
    ks = kl != NULL ? rl_key_state(rl, c, key) : NULL;
    ts = tl != NULL ? &rl->tier[tier] : NULL;
    /* both on copies, then both charged: a refusal charges neither */
    if (ks != NULL) {
        kn = *ks;
        r = rl_state_admit(&kn, kl, now_us, tokens, &retry);
        by_key = r != RL_OK;
    }
    if (r == RL_OK && ts != NULL) {
        tn = *ts;
        r = rl_state_admit(&tn, tl, now_us, tokens, &retry);
    }
    if (r == RL_OK) {
        if (ks != NULL)
            *ks = kn;
        if (ts != NULL)
            *ts = tn;
        by_key = ks != NULL; /* the view's party */
    } else if (by_key) {
        ks->refused[r]++;
    } else if (ts != NULL) {
        ts->refused[r]++;
    }
    if (v != NULL) {
        if (ks != NULL)
            rl_state_view(ks, kl, now_us, v);
        else if (ts != NULL)
            rl_state_view(ts, tl, now_us, v);
        else
            memset(v, 0, sizeof(*v));
    }
    pthread_mutex_unlock(&rl->lock);
    if (retry_us != NULL)
        *retry_us = retry;
    if (who_key != NULL)
        *who_key = by_key;
    return r;
}

void rl_settle(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key, uint64_t now_us,
               uint64_t reserved, uint64_t used)
{
    rl_settle_share(rl, c, tier, key, now_us, reserved, used, 1);
}

void rl_settle_share(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key,
                     uint64_t now_us, uint64_t reserved, uint64_t used, unsigned share)
{
    struct cfg_limits kbuf, tbuf;
    const struct cfg_limits *kl = rl_shared(rl_key_limits(c, key), share, &kbuf);
    struct rl_state *ks;

    pthread_mutex_lock(&rl->lock);
    /* charged at admission only when it had limits of its own (same c) */
    ks = kl != NULL ? rl_key_state(rl, c, key) : NULL;
    if (ks != NULL)
        rl_state_settle(ks, kl, now_us, reserved, used);
    if (tier < CFG_MAX_TIERS)
        rl_state_settle(&rl->tier[tier], rl_shared(&c->tiers[tier].limits, share, &tbuf), now_us,
                        reserved, used);
    pthread_mutex_unlock(&rl->lock);
}

void rl_reload(struct ratelimit *rl, const struct cfg *cur, const struct cfg *next)
{
    size_t i, j, n = next->nkeys < CFG_MAX_KEYS ? next->nkeys : CFG_MAX_KEYS;

    (void)cur; /* the table holds cur's digests itself */
    pthread_mutex_lock(&rl->lock);
    for (i = 0; i < n; i++) {
        struct rl_key *k = &rl->scratch[i];

        memcpy(k->sha256, next->keys[i].sha256, RL_DIGEST_BYTES);
        memset(&k->st, 0, sizeof(k->st));
        /* the same index first: most reloads do not move keys */
        if (i < rl->nkeys && memcmp(rl->key[i].sha256, k->sha256, RL_DIGEST_BYTES) == 0) {
            k->st = rl->key[i].st;
            continue;
        }
        for (j = 0; j < rl->nkeys; j++)
            if (memcmp(rl->key[j].sha256, k->sha256, RL_DIGEST_BYTES) == 0) {
                k->st = rl->key[j].st;
                break;
            }
    }
    memcpy(rl->key, rl->scratch, n * sizeof(rl->key[0]));
    rl->nkeys = n;
    pthread_mutex_unlock(&rl->lock);
}

long long rl_tokens_left(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key,
                         uint64_t now_us)
{
    static const struct rl_state idle;
    const struct cfg_limits *l;
    const struct rl_state *s;
    struct rl_view v;

    if (key >= 0) {
        if ((size_t)key >= c->nkeys)
            return -1;
        l = &c->keys[key].limits;
    } else {
        if (tier >= CFG_MAX_TIERS)
            return -1;
        l = &c->tiers[tier].limits;
    }
    if (l->tokens_per_minute == 0)
        return -1;
    pthread_mutex_lock(&rl->lock);
    s = key >= 0 ? rl_key_state(rl, c, key) : &rl->tier[tier];
    rl_state_view(s != NULL ? s : &idle, l, now_us, &v);
    pthread_mutex_unlock(&rl->lock);
    return v.remaining_tokens > LLONG_MAX ? LLONG_MAX : (long long)v.remaining_tokens;
}

/* The gauge's tokens left of s under l (v: the table's own count); -1
 * without a tokens_per_minute limit. */
static long long rl_left(const struct rl_state *s, const struct cfg_limits *l,
                         const struct rl_view *v)
{
    if (l->tokens_per_minute == 0)
        return -1;
    if (s->remote)
        return s->remote_tokens_left;
    return v->remaining_tokens > LLONG_MAX ? LLONG_MAX : (long long)v->remaining_tokens;
}

void rl_note_unanswered(struct ratelimit *rl)
{
    pthread_mutex_lock(&rl->lock);
    rl->unanswered++;
    pthread_mutex_unlock(&rl->lock);
}

uint64_t rl_unanswered(struct ratelimit *rl)
{
    uint64_t n;

    pthread_mutex_lock(&rl->lock);
    n = rl->unanswered;
    pthread_mutex_unlock(&rl->lock);
    return n;
}

void rl_note(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key, enum rl_limit limit,
             bool who_key, const struct rl_view *v)
{
    struct rl_state *ks, *ts;

    if (tier >= CFG_MAX_TIERS)
        return;
    pthread_mutex_lock(&rl->lock);
    ks = rl_key_limits(c, key) != NULL ? rl_key_state(rl, c, key) : NULL;
    ts = &rl->tier[tier];
    if (limit != RL_OK && (unsigned)limit < RL__COUNT)
        (who_key && ks != NULL ? ks : ts)->refused[limit]++;
    if (v != NULL && v->limit_tokens > 0) {
        struct rl_state *s = ks != NULL ? ks : ts;
        s->remote = true;
        s->remote_tokens_left =
            v->remaining_tokens > LLONG_MAX ? LLONG_MAX : (long long)v->remaining_tokens;
    }
    pthread_mutex_unlock(&rl->lock);
}

void rl_each(struct ratelimit *rl, const struct cfg *c, uint64_t now_us,
             void (*fn)(void *ud, unsigned tier, int key, const uint64_t *refused,
                        long long tokens_left),
             void *ud)
{
    struct rl_view v;
    size_t t, k;

    pthread_mutex_lock(&rl->lock);
    for (t = 0; t < c->ntiers && t < CFG_MAX_TIERS; t++) {
        const struct cfg_limits *l = &c->tiers[t].limits;

        if (c->tiers[t].spare || !rl_limits_any(l))
            continue;
        rl_state_view(&rl->tier[t], l, now_us, &v);
        fn(ud, (unsigned)t, -1, rl->tier[t].refused, rl_left(&rl->tier[t], l, &v));
    }
    for (k = 0; k < c->nkeys && k < CFG_MAX_KEYS; k++) {
        const struct cfg_limits *l = &c->keys[k].limits;
        struct rl_state *s;

        if (!rl_limits_any(l) || (s = rl_key_state(rl, c, (int)k)) == NULL)
            continue;
        rl_state_view(s, l, now_us, &v);
        fn(ud, c->key_tier[k], (int)k, s->refused, rl_left(s, l, &v));
    }
    pthread_mutex_unlock(&rl->lock);
}

uint64_t rl_estimate(const struct cfg *c, size_t body_bytes, long long max_tokens)
{
    uint64_t prompt = body_bytes / 4 + (body_bytes % 4 != 0);

    /* at most 2^62 + 2^63: no overflow */
    return prompt + (max_tokens >= 0 ? (uint64_t)max_tokens : c->ratelimit_default_max_tokens);
}
