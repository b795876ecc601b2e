/* balancer: the backend table of one event loop and the choice of a backend for a
 * request: least busy by the backends' own scraped load (running + waiting,
 * corrected by what pitot sent and saw end since the scrape) relative to
 * capacity, or by pitot's own in-flight count when the scrape is stale,
 * optionally weighted by each backend's speed as pitot measures it; only
 * backends serving the request's model; passive ejection on repeated
 * failures; optional session affinity with a bounded-load rule. Integer
 * comparisons only. */
#ifndef PITOT_ROUTE_BALANCER_H
#define PITOT_ROUTE_BALANCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pitot/format/config.h"
#include "pitot/util/span.h"

#define BAL_TPOT_MAX_US 60000000u /* a speed sample above a minute per token is capped */

struct bal_backend {
    const struct cfg_backend *cfg; /* borrowed from the config */
    unsigned idx;                  /* position in the table and in metrics */
    unsigned in_flight;            /* requests pitot is serving on it now */
    bool active;                   /* has an address: false for a DNS slot with none,
                                      a spare slot, a removed backend with no request left */
    unsigned gen;                  /* bumped by bal_activate: a connection opened
                                      under an older one is not pooled */
    bool up;                       /* last health verdict (optimistic at start) */
    bool loading;                  /* last probe said 503 "Loading model" */
    uint64_t last_probe_us;        /* monotonic time of the last verdict */
    /* load, from the backend's own /metrics */
    enum cfg_flavor flavor;    /* configured, or detected at the first scrape */
    unsigned capacity;         /* concurrent requests it runs (>= 1) */
    uint32_t running, waiting; /* at the last good scrape */
    int cache_permille;        /* cache pressure 0..1000, -1 when unknown */
    uint64_t scraped_us;       /* monotonic time of the last good scrape, 0 never */
    unsigned dispatched;       /* requests pitot sent it since that scrape */
    unsigned completed;        /* requests of pitot's that ended since that scrape */
    uint32_t tpot_us;          /* EWMA of the TPOT pitot measured on it, 0 none yet */
    /* served models: none known = serves any */
    char models[CFG_MAX_BACKEND_MODELS][CFG_NAME_MAX];
    size_t nmodels;
    /* passive health */
    unsigned fails;            /* consecutive connect failures or 5xx */
    unsigned ejections;        /* ejections in a row, for the growing time */
    uint64_t ejected_until_us; /* monotonic; 0 when not ejected */
    bool disabled;             /* taken out by an operator (bal_disable): never chosen,
                                  not up; kept across bal_activate */
};

struct bal {
    const struct cfg *cfg; /* borrowed */
    struct bal_backend *b; /* owned, n entries */
    size_t n;
    unsigned rr; /* rotation start for ties and round robin */
};

enum bal_verdict {
    BAL_OK,         /* *out is the backend */
    BAL_SATURATED,  /* every backend that could serve it is full: queue or shed */
    BAL_NO_MODEL,   /* no backend serves the requested model */
    BAL_NO_BACKEND, /* backends serve it, but none is up (or all were tried) */
};

struct bal_req {
    struct span model; /* the request's model after aliasing; len 0: any */
    uint64_t affinity; /* session key hash, 0: none */
    const bool *tried; /* per backend: already failed for this request; may be NULL */
    char *served;      /* may be NULL; else out, served_cap bytes: the name the chosen
                          backend lists for the request's model (a bounded metric
                          label): `model` itself, or when no backend serves `model`
                          and routing.unknown_model let the request through
                          (bal_any_model), the backend's first name; "" when the
                          backend lists no names or model is empty */
    size_t served_cap;
};

/* Does b take requests, probes and scrapes: it has an address and holds a
 * configured backend (a backend a reload removed stays active, not live,
 * until its requests end)? */
static inline bool bal_live(const struct bal_backend *b)
{
    return b->active && !b->cfg->spare;
}

/* Builds the table from c->backends. Returns 0 or -PITOT_ENOMEM. */
int bal_init(struct bal *bl, const struct cfg *c);
void bal_release(struct bal *bl);

/* A DNS slot got an address (active) or lost it. Either way what was known
 * of the old address is forgotten: health (optimistic up), scraped load,
 * learned flavor, capacity, speed and models, failures and ejection; in_flight is
 * kept, for requests still running on the old address. An inactive backend
 * is never chosen and does not count as up. */
void bal_activate(struct bal *bl, struct bal_backend *b, bool active);

/* May a request for `model`, which no backend serves, go to any backend?
 * routing.unknown_model any: yes; reject: no; auto: when every backend that
 * lists its models lists the same names (one and the same model, as one
 * llama-server with its aliases), as llama-server itself answers any name
 * with its own model. False for a model some backend serves. */
bool bal_any_model(const struct bal *bl, struct span model);

/* Chooses a backend at monotonic time now_us (see the verdicts): among the
 * usable, unsaturated backends serving rq's model (any backend when
 * bal_any_model), the lowest load / capacity
 * (least_busy, least_in_flight; see bal_load in bal.c), where under least_busy
 * with routing.speed_aware each load counts times the backend's time per
 * token relative to the fastest candidate's, in quarters (within 1/8 of each
 * other: equal); at equal load the faster goes first; at equal both, the
 * rotation (so equal backends share). round_robin: the next in rotation. */
enum bal_verdict bal_choose(struct bal *bl, const struct bal_req *rq, uint64_t now_us,
                            struct bal_backend **out);

/* Is b full: it would have to queue more than routing.saturation.max_waiting
 * requests, its cache pressure passed max_cache_ratio, or pitot's in-flight to
 * it reached max_in_flight? */
bool bal_saturated(const struct bal *bl, const struct bal_backend *b, uint64_t now_us);

/* Does b serve `model` (len 0: any; a backend with no known list serves any)? */
bool bal_serves(const struct bal_backend *b, struct span model);

/* Book-keeping: a request was sent to b / finished on b. */
void bal_dispatched(struct bal_backend *b);
void bal_released(struct bal_backend *b);

/* A streamed request ended well on b with this time per output token: b's
 * speed estimate moves 1/8 of the way to it (the first sets it). 0 is
 * ignored; values are capped at BAL_TPOT_MAX_US. */
void bal_measured(struct bal_backend *b, uint64_t tpot_us);

/* A fresh scrape of b's own load (cache_permille -1 when none). */
void bal_scraped(struct bal_backend *b, uint32_t running, uint32_t waiting, int cache_permille,
                 uint64_t now_us);

/* A request's result on b: failure = the backend failed it (a connection
 * failure or timeout before its answer, or an answer bal_status_health calls
 * BAL_HEALTH_FAULT). After
 * routing.eject.failures failures in a row b is ejected for eject.base,
 * doubling per ejection up to eject.max, unless it is the last backend that
 * can serve one of its models. Returns true when this call ejected b. */
bool bal_result(struct bal *bl, struct bal_backend *b, bool failure, uint64_t now_us);

/* What the status of a backend's answer says of the backend's health. */
enum bal_health {
    BAL_HEALTH_OK,      /* it answered (1xx-4xx): ends a row of failures */
    BAL_HEALTH_FAULT,   /* its fault: 502, 503, 504, or 500 to a request pitot checked */
    BAL_HEALTH_NEUTRAL, /* another 5xx (a 500 to a request pitot could not judge,
                           501, 505, ...): the request may be at fault; counts
                           neither way */
};

/* The health verdict of an answer with this status. checked: the request
 * went to a JSON API and pitot found its body well-formed, so a 500 to it is
 * the backend's failure, not the client's. Whatever the client sends, its
 * requests alone cannot eject a healthy backend. */
enum bal_health bal_status_health(int status, bool checked);

/* Is b ejected at now_us? */
bool bal_ejected(const struct bal_backend *b, uint64_t now_us);

/* The served name a client's model name maps to (routing.aliases), or name. */
struct span bal_alias(const struct cfg *c, struct span name);

/* Number of backends currently active, up and not disabled. */
size_t bal_up_count(const struct bal *bl);

/* Takes the backends named `name` out of the choice (disabled true) or puts
 * them back: the backend of that configured name, and when it is a DNS name,
 * every one of its address slots ("name/1", ...); a slot's own name
 * ("name/2") is that slot alone. Requests in flight on them go on. Returns
 * how many backends matched (0: no such name). */
size_t bal_disable(struct bal *bl, struct span name, bool disabled);

#endif
