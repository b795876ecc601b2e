/* balancer: backend choice over the backends of one loop. Loads are compared as
 * load_a * w_a / cap_a < load_b * w_b / cap_b by cross-multiplication (nginx
 * least_conn style, w the speed weight): integers, no divide-by-zero. */
#include "pitot/route/balancer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/util/err.h"

int bal_init(struct bal *bl, const struct cfg *c)
{
    size_t i;

    bl->cfg = c;
    bl->n = c->nbackends;
    bl->rr = 0;
    bl->b = calloc(bl->n ? bl->n : 1, sizeof(*bl->b));
    if (bl->b == NULL)
        return -PITOT_ENOMEM;
    for (i = 0; i < bl->n; i++) {
        bl->b[i].cfg = &c->backends[i];
        bl->b[i].idx = (unsigned)i;
        /* a name has no address until it is resolved; a spare slot none */
        bal_activate(bl, &bl->b[i], !c->backends[i].dns && !c->backends[i].spare);
    }
    return 0;
}

void bal_activate(struct bal *bl, struct bal_backend *b, bool active)
{
    const struct cfg *c = bl->cfg;
    const struct cfg_backend *cb = b->cfg;
    size_t k;

    b->active = active;
    b->gen++;
    b->up = true;
    b->loading = false;
    b->last_probe_us = 0;
    b->flavor = cb->flavor;
    b->capacity = cb->capacity ? cb->capacity : (c->default_capacity ? c->default_capacity : 1);
    b->running = b->waiting = 0;
    b->cache_permille = -1;
    b->scraped_us = 0;
    b->dispatched = b->completed = 0;
    b->tpot_us = 0;
    for (k = 0; k < cb->nmodels; k++)
        memcpy(b->models[k], cb->models[k], CFG_NAME_MAX);
    b->nmodels = cb->nmodels;
    b->fails = 0;
    b->ejections = 0;
    b->ejected_until_us = 0;
}

void bal_release(struct bal *bl)
{
    free(bl->b);
    bl->b = NULL;
    bl->n = 0;
}

bool bal_ejected(const struct bal_backend *b, uint64_t now_us)
{
    return b->ejected_until_us != 0 && now_us < b->ejected_until_us;
}

static bool bal_fresh(const struct bal *bl, const struct bal_backend *b, uint64_t now_us)
{
    uint64_t stale = (uint64_t)bl->cfg->scrape_stale_ms * 1000;

    return b->scraped_us != 0 && now_us - b->scraped_us <= stale;
}

/* Requests on b as best known: its own count plus what pitot sent since,
 * less what pitot saw end since (else a slot that frees stays "busy" until
 * the next scrape), or pitot's in-flight count when the scrape is stale
 * (never "idle"). */
static uint64_t bal_load(const struct bal *bl, const struct bal_backend *b, uint64_t now_us)
{
    if (bl->cfg->policy == CFG_POLICY_LEAST_BUSY && bal_fresh(bl, b, now_us)) {
        uint64_t own = (uint64_t)b->running + b->waiting + b->dispatched;
        own = own > b->completed ? own - b->completed : 0;
        /* pitot's own count is a floor: a scrape can lag what it sent */
        return own > b->in_flight ? own : b->in_flight;
    }
    return b->in_flight;
}

bool bal_saturated(const struct bal *bl, const struct bal_backend *b, uint64_t now_us)
{
    const struct cfg *c = bl->cfg;

    if (c->max_in_flight && b->in_flight >= c->max_in_flight)
        return true;
    if (bal_load(bl, b, now_us) >= (uint64_t)b->capacity + c->max_waiting)
        return true;
    return b->cache_permille >= 0 && bal_fresh(bl, b, now_us) &&
           b->cache_permille >= (int)(c->max_cache_ratio * 1000 + 0.5);
}

bool bal_serves(const struct bal_backend *b, struct span model)
{
    size_t i;

    if (model.len == 0 || b->nmodels == 0)
        return true;
    for (i = 0; i < b->nmodels; i++)
        if (span_eq(model, b->models[i]))
            return true;
    return false;
}

struct span bal_alias(const struct cfg *c, struct span name)
{
    size_t i;

    for (i = 0; i < c->naliases; i++)
        if (span_eq(name, c->aliases[i].from))
            return span_cstr(c->aliases[i].to);
    return name;
}

/* Speed weights are quarters of the fastest candidate's time per token: a
 * backend within 1/8 of it weighs the same (measurement noise is no reason to
 * stop sharing), one twice as slow weighs double. */
#define BAL_SPEED_UNIT 4u
#define BAL_WEIGHT_MAX 65535u   /* a backend 16k times slower than the fastest */
#define BAL_LOAD_MAX (1u << 24) /* keeps load * weight * capacity below 2^64 */
#define BAL_CAP_MAX (1u << 20)

/* Can b take a request now: it has an address, is up, not disabled, not
 * ejected, and has not failed this request already (tried may be NULL)? */
static bool bal_usable(const struct bal_backend *b, const bool *tried, uint64_t now_us)
{
    return bal_live(b) && b->up && !b->disabled && !bal_ejected(b, now_us) &&
           !(tried && tried[b->idx]);
}

/* The lowest speed estimate among the backends that could take rq now, 0
 * when none has one (or speed does not count). */
static uint32_t bal_fastest(const struct bal *bl, const struct bal_req *rq, uint64_t now_us)
{
    uint32_t f = 0;
    size_t k;

    if (!bl->cfg->speed_aware || bl->cfg->policy != CFG_POLICY_LEAST_BUSY)
        return 0;
    for (k = 0; k < bl->n; k++) {
        const struct bal_backend *b = &bl->b[k];
        if (b->tpot_us == 0 || !bal_usable(b, rq->tried, now_us) || !bal_serves(b, rq->model))
            continue;
        if (f == 0 || b->tpot_us < f)
            f = b->tpot_us;
    }
    return f;
}

/* b's weight relative to the fastest candidate, rounded to the nearest
 * quarter: BAL_SPEED_UNIT for the fastest and for a backend not measured yet
 * (it is tried like the fastest, then known); the same for every backend when
 * no candidate was measured. */
static unsigned bal_weight(const struct bal_backend *b, uint32_t fastest_us)
{
    uint64_t w;

    if (fastest_us == 0 || b->tpot_us == 0)
        return BAL_SPEED_UNIT;
    w = (2 * BAL_SPEED_UNIT * (uint64_t)b->tpot_us + fastest_us) / (2 * (uint64_t)fastest_us);
    return w > BAL_WEIGHT_MAX ? BAL_WEIGHT_MAX : (unsigned)w;
}

/* a goes before b: less weighted load per unit of capacity,
 * la*wa/ca < lb*wb/cb by cross-multiplication; at equal load the faster
 * (lower weight); at equal both, neither (the rotation decides). */
static bool bal_before(uint64_t la, unsigned wa, unsigned ca, uint64_t lb, unsigned wb, unsigned cb)
{
    uint64_t x, y;

    la = la < BAL_LOAD_MAX ? la : BAL_LOAD_MAX;
    lb = lb < BAL_LOAD_MAX ? lb : BAL_LOAD_MAX;
    ca = ca < BAL_CAP_MAX ? ca : BAL_CAP_MAX;
    cb = cb < BAL_CAP_MAX ? cb : BAL_CAP_MAX;
    x = la * wa * cb;
    y = lb * wb * ca;
    return x != y ? x < y : wa < wb;
}

/* Rendezvous weight of backend i for a session key. */
static uint64_t bal_hrw(uint64_t key, unsigned i)
{
    uint64_t x = key ^ (0x9e3779b97f4a7c15ull * (i + 1));

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* Does b take part in model matching: a DNS slot without an address serves
 * only what it is configured to ("any model" would turn every 404 into a
 * 503); a spare slot, nothing. */
static bool bal_lists(const struct bal_backend *b)
{
    return !b->cfg->spare && (b->active || b->cfg->nmodels > 0);
}

/* Do a and b serve the same names? */
static bool bal_same_models(const struct bal_backend *a, const struct bal_backend *b)
{
    size_t i;

    for (i = 0; i < a->nmodels; i++)
        if (!bal_serves(b, span_cstr(a->models[i])))
            return false;
    for (i = 0; i < b->nmodels; i++)
        if (!bal_serves(a, span_cstr(b->models[i])))
            return false;
    return true;
}

bool bal_any_model(const struct bal *bl, struct span model)
{
    const struct bal_backend *first = NULL;
    size_t k;

    if (model.len == 0 || bl->cfg->unknown_model == CFG_UNKNOWN_REJECT)
        return false;
    for (k = 0; k < bl->n; k++)
        if (bal_lists(&bl->b[k]) && bal_serves(&bl->b[k], model))
            return false;
    if (bl->cfg->unknown_model == CFG_UNKNOWN_ANY)
        return true;
    for (k = 0; k < bl->n; k++) {
        const struct bal_backend *b = &bl->b[k];

        if (!bal_lists(b))
            continue;
        if (first == NULL)
            first = b;
        else if (!bal_same_models(first, b))
            return false;
    }
    return first != NULL;
}

static enum bal_verdict bal_choose_among(struct bal *bl, const struct bal_req *rq, uint64_t now_us,
                                         struct bal_backend **out);

enum bal_verdict bal_choose(struct bal *bl, const struct bal_req *rq, uint64_t now_us,
                            struct bal_backend **out)
{
    struct bal_req q = *rq;
    bool any = bal_any_model(bl, rq->model);
    enum bal_verdict v;

    if (rq->served && rq->served_cap)
        rq->served[0] = '\0';
    if (any)
        q.model = span_make(NULL, 0);
    v = bal_choose_among(bl, &q, now_us, out);
    if (v != BAL_OK || rq->served == NULL || rq->served_cap == 0 || (*out)->nmodels == 0)
        return v;
    if (any)
        snprintf(rq->served, rq->served_cap, "%s", (*out)->models[0]);
    else if (rq->model.len && rq->model.len < rq->served_cap) /* a name it lists */
        snprintf(rq->served, rq->served_cap, "%.*s", (int)rq->model.len, rq->model.p);
    return v;
}

static enum bal_verdict bal_choose_among(struct bal *bl, const struct bal_req *rq, uint64_t now_us,
                                         struct bal_backend **out)
{
    struct bal_backend *best = NULL, *aff = NULL;
    uint64_t best_load = 0, aff_w = 0, sum_load = 0, sum_cap = 0;
    uint32_t fastest = bal_fastest(bl, rq, now_us);
    unsigned best_w = 0;
    bool any_serves = false, any_usable = false, any_active = false;
    size_t k;

    *out = NULL;
    for (k = 0; k < bl->n; k++) {
        struct bal_backend *b = &bl->b[(bl->rr + k) % bl->n];
        uint64_t load;
        unsigned w;

        any_active = any_active || bal_live(b);
        if (!bal_lists(b) || !bal_serves(b, rq->model))
            continue;
        any_serves = true;
        if (!bal_usable(b, rq->tried, now_us))
            continue;
        any_usable = true;
        if (bal_saturated(bl, b, now_us))
            continue;
        load = bal_load(bl, b, now_us);
        sum_load += load;
        sum_cap += b->capacity;
        if (rq->affinity && bl->cfg->affinity != CFG_AFFINITY_OFF) {
            uint64_t wgt = bal_hrw(rq->affinity, b->idx);
            if (aff == NULL || wgt > aff_w) {
                aff = b;
                aff_w = wgt;
            }
        }
        if (bl->cfg->policy == CFG_POLICY_ROUND_ROBIN) {
            if (best == NULL)
                best = b;
            continue;
        }
        w = bal_weight(b, fastest);
        if (best == NULL || bal_before(load, w, b->capacity, best_load, best_w, best->capacity)) {
            best = b;
            best_load = load;
            best_w = w;
        }
    }
    if (!any_serves)
        return any_active ? BAL_NO_MODEL : BAL_NO_BACKEND;
    if (!any_usable)
        return BAL_NO_BACKEND;
    if (best == NULL)
        return BAL_SATURATED;
    if (aff) {
        /* Bounded load (consistent hashing with bounded loads): the session's
         * backend keeps it while load + 1 <= ceil(f * (total + 1) * cap / sum_cap). */
        uint64_t f = (uint64_t)(bl->cfg->affinity_max_load * 1000 + 0.5);
        uint64_t num = f * (sum_load + 1) * aff->capacity, den = 1000 * sum_cap;
        if (bal_load(bl, aff, now_us) + 1 <= (num + den - 1) / den)
            best = aff;
    }
    bl->rr = (best->idx + 1) % (unsigned)bl->n;
    *out = best;
    return BAL_OK;
}

void bal_dispatched(struct bal_backend *b)
{
    b->in_flight++;
    b->dispatched++;
}

void bal_released(struct bal_backend *b)
{
    if (b->in_flight)
        b->in_flight--;
    b->completed++;
}

void bal_measured(struct bal_backend *b, uint64_t tpot_us)
{
    int64_t x;

    if (tpot_us == 0)
        return;
    x = (int64_t)(tpot_us < BAL_TPOT_MAX_US ? tpot_us : BAL_TPOT_MAX_US);
    if (b->tpot_us == 0) {
        b->tpot_us = (uint32_t)x;
        return;
    }
    /* EWMA, alpha 1/8: a few seconds of a busy backend's requests */
    x = (int64_t)b->tpot_us + (x - (int64_t)b->tpot_us) / 8;
    b->tpot_us = x < 1 ? 1 : (uint32_t)x;
}

void bal_scraped(struct bal_backend *b, uint32_t running, uint32_t waiting, int cache_permille,
                 uint64_t now_us)
{
    b->running = running;
    b->waiting = waiting;
    b->cache_permille = cache_permille;
    b->scraped_us = now_us;
    b->dispatched = 0;
    b->completed = 0;
}

/* Could every model b serves still be served if b were out? */
static bool bal_replaceable(const struct bal *bl, const struct bal_backend *b, uint64_t now_us)
{
    size_t i, m;

    for (m = 0; m < (b->nmodels ? b->nmodels : 1); m++) {
        struct span model = b->nmodels ? span_cstr(b->models[m]) : span_make(NULL, 0);
        bool other = false;
        for (i = 0; i < bl->n && !other; i++) {
            const struct bal_backend *o = &bl->b[i];
            other = o != b && bal_usable(o, NULL, now_us) && bal_serves(o, model);
        }
        if (!other)
            return false;
    }
    return true;
}

enum bal_health bal_status_health(int status, bool checked)
{
    if (status < 500)
        return BAL_HEALTH_OK;
    if (status == 502 || status == 503 || status == 504 || (status == 500 && checked))
        return BAL_HEALTH_FAULT;
    return BAL_HEALTH_NEUTRAL;
}

bool bal_result(struct bal *bl, struct bal_backend *b, bool failure, uint64_t now_us)
{
    const struct cfg *c = bl->cfg;
    uint64_t ms;
    unsigned shift;

    if (!failure) {
        b->fails = 0;
        if (!bal_ejected(b, now_us))
            b->ejections = 0;
        return false;
    }
    b->fails++;
    if (c->eject_failures == 0 || b->fails < c->eject_failures || bal_ejected(b, now_us))
        return false;
    if (!bal_replaceable(bl, b, now_us))
        return false;
    shift = b->ejections < 16 ? b->ejections : 16;
    ms = (uint64_t)c->eject_base_ms << shift;
    if (ms > c->eject_max_ms)
        ms = c->eject_max_ms;
    b->ejected_until_us = now_us + ms * 1000;
    b->ejections++;
    b->fails = 0;
    return true;
}

size_t bal_up_count(const struct bal *bl)
{
    size_t i, n = 0;

    for (i = 0; i < bl->n; i++)
        n += bal_live(&bl->b[i]) && bl->b[i].up && !bl->b[i].disabled;
    return n;
}

size_t bal_disable(struct bal *bl, struct span name, bool disabled)
{
    size_t i, n = 0;

    for (i = 0; i < bl->n; i++) {
        const struct cfg_backend *cb = bl->b[i].cfg;
        const struct cfg_backend *first = &bl->cfg->backends[cb->group];
        /* a DNS name's slots share its first slot's name: the whole group */
        bool hit = !cb->spare &&
                   (span_eq(name, cb->name) ||
                    (cb->dns && cb->group < bl->cfg->nbackends && span_eq(name, first->name)));

        if (hit) {
            bl->b[i].disabled = disabled;
            n++;
        }
    }
    return n;
}
