/* ratelimit: per tier and per key limits (cfg_limits) on requests per minute,
 * tokens per minute and per day, and requests at once, checked before a
 * request touches a backend. The algorithm is GCRA (the generic cell rate
 * algorithm, a token bucket kept as one "theoretical arrival time" per
 * limit): a limit of N per period holds N at once and refills continuously
 * at N per period; integer microseconds, no window edges, O(1) and no
 * allocation per request. Token limits are charged a reservation at
 * admission (prompt estimate + the request's max_tokens) and settled with
 * the real usage when the request ends. One lock for the whole table, taken
 * once at admission and once at the end of a request. */
#ifndef PITOT_ROUTE_RATELIMIT_H
#define PITOT_ROUTE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pitot/format/config.h"

/* Which limit refused a request; also the `limit` label value and the
 * access log's rate_limit field (rl_limit_label). */
enum rl_limit {
    RL_OK = 0,
    RL_REQUESTS,   /* requests_per_minute */
    RL_TOKENS,     /* tokens_per_minute */
    RL_TOKENS_DAY, /* tokens_per_day */
    RL_CONCURRENT, /* max_concurrent */
    RL__COUNT
};

/* "requests", "tokens", "tokens_per_day", "concurrent"; "" for RL_OK. */
const char *rl_limit_label(enum rl_limit l);

/* The state of one limited party (a tier, or a key): GCRA theoretical
 * arrival times in microseconds on the caller's monotonic clock (0: idle),
 * and the requests it has running. */
struct rl_state {
    uint64_t req_tat_us;
    uint64_t tok_tat_us;
    uint64_t day_tat_us;
    unsigned concurrent;
    uint64_t refused[RL__COUNT];  /* requests its limits refused, by limit (rl_admit) */
    long long remote_tokens_left; /* Redis's last word on its tokens left (rl_note) */
    bool remote;                  /* counted in Redis: that is the gauge's value */
};

/* What OpenAI's x-ratelimit-* headers say of one party (the key when it has
 * limits of its own, else its tier): for each of requests and tokens per
 * minute, the limit (0: none, no headers), what is left now, and the time
 * until it is whole again. */
struct rl_view {
    unsigned long long limit_requests, remaining_requests;
    uint64_t reset_requests_us;
    unsigned long long limit_tokens, remaining_tokens;
    uint64_t reset_tokens_us;
};

/* ---- one party, pure (no lock): the algorithm ------------------------- */

/* Would l let a request reserving `tokens` in at now_us? If every limit
 * allows it, charges them all (one request, `tokens`, one running) and
 * returns RL_OK; else charges nothing, returns the first limit that refused
 * (requests, tokens, tokens per day, concurrent) and sets *retry_us to the
 * time until that limit would let it in (0 for concurrent: unknown, the
 * caller says 1 s). A reservation larger than a whole token limit is refused
 * with retry_us 0 (it never fits). */
enum rl_limit rl_state_admit(struct rl_state *s, const struct cfg_limits *l, uint64_t now_us,
                             uint64_t tokens, uint64_t *retry_us);

/* The request ends: one running less, and the token limits charged `used`
 * instead of the `reserved` they were charged at admission (a refund when
 * used < reserved, never below idle). */
void rl_state_settle(struct rl_state *s, const struct cfg_limits *l, uint64_t now_us,
                     uint64_t reserved, uint64_t used);

/* What is left of l for s at now_us. */
void rl_state_view(const struct rl_state *s, const struct cfg_limits *l, uint64_t now_us,
                   struct rl_view *v);

/* ---- the table: every tier and key of a configuration ------------------- */

struct ratelimit;

/* A table for c's tiers and keys (their limits are read from the
 * configuration passed to each call). NULL when out of memory. */
struct ratelimit *rl_new(const struct cfg *c);
void rl_free(struct ratelimit *rl);

/* One request's admission (tier: its tier slot; key: its index in c->keys,
 * -1 when it came without a configured key). Checks the key's limits and
 * the tier's: admitted only when both allow it (then both are charged).
 * *v: what the headers say (the key's when it has limits, else the tier's);
 * *who_key: whether the refusing limit (or the view) is the key's. Returns
 * RL_OK or the limit that refused, with *retry_us as rl_state_admit. */
enum rl_limit rl_admit(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key,
                       uint64_t now_us, uint64_t tokens, uint64_t *retry_us, struct rl_view *v,
                       bool *who_key);

/* rl_admit with every limit divided by `share` (a set one stays at least
 * 1): the part of a budget one of `share` pitot replicas grants alone, when
 * the shared count in Redis does not answer (ratelimit.redis_fail open). */
enum rl_limit rl_admit_share(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key,
                             uint64_t now_us, uint64_t tokens, unsigned share, uint64_t *retry_us,
                             struct rl_view *v, bool *who_key);

/* The end of an admitted request (the same c, tier and key it was admitted
 * under): settles the key's and the tier's token limits. */
void rl_settle(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key, uint64_t now_us,
               uint64_t reserved, uint64_t used);

/* rl_settle of a request rl_admit_share admitted with `share`. */
void rl_settle_share(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key,
                     uint64_t now_us, uint64_t reserved, uint64_t used, unsigned share);

/* A reload: next's keys take the state of the same keys (by digest) in
 * cur, new ones start idle; tiers keep theirs by slot. Requests admitted
 * under cur settle by digest too (rl_settle with cur: a key gone is a
 * no-op for it). */
void rl_reload(struct ratelimit *rl, const struct cfg *cur, const struct cfg *next);

/* Tokens left now per minute for a tier (key -1) or a key, for the
 * gauges; -1 when it has no tokens_per_minute limit. */
long long rl_tokens_left(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key,
                         uint64_t now_us);

/* What Redis answered for a request of (tier, key): a refusal counted on
 * the refusing party (who_key), and the view's tokens left kept for the
 * gauge (the key's when it has limits, else the tier's). */
void rl_note(struct ratelimit *rl, const struct cfg *c, unsigned tier, int key, enum rl_limit limit,
             bool who_key, const struct rl_view *v);

/* An admission Redis did not answer (down, slow, in error): counted for
 * pitot_ratelimit_redis_failures_total; rl_unanswered reads the count. */
void rl_note_unanswered(struct ratelimit *rl);
uint64_t rl_unanswered(struct ratelimit *rl);

/* For /metrics: every configured tier (key -1) and key of c that has
 * limits, in order, with its refusals by limit and the tokens per minute
 * it has left now (-1: no such limit); fn runs under the table's lock. */
void rl_each(struct ratelimit *rl, const struct cfg *c, uint64_t now_us,
             void (*fn)(void *ud, unsigned tier, int key, const uint64_t *refused,
                        long long tokens_left),
             void *ud);

/* The estimate a request reserves against token limits: its body's bytes /
 * 4 (rounded up) plus max_tokens, or c->ratelimit_default_max_tokens when
 * it names none (max_tokens < 0). */
uint64_t rl_estimate(const struct cfg *c, size_t body_bytes, long long max_tokens);

#endif
