/* ratelimit_redis: the rate limits of ratelimit.h kept in Redis
 * (ratelimit.redis), so that several pitot replicas share one budget. The
 * same GCRA as the in-memory table, run by one Lua script per admission
 * (atomic: EVALSHA, loaded with SCRIPT LOAD, EVAL again after NOSCRIPT) on
 * Redis's own clock (TIME), so replicas agree on "now" whatever their
 * clocks say. One asynchronous hiredis connection per event loop (its
 * libevent adapter), pipelined, never blocking; each admission bounded by
 * ratelimit.redis_timeout. Keys: <redis_prefix>t:<tier name> and
 * <redis_prefix>k:<key name> (hashes of the three arrival times), with
 * <...>:c (a sorted set of the requests running, by request id, scored by
 * when they stop counting: a replica that dies leaks nothing for longer
 * than RL_REDIS_RUNNING_TTL_S). A settle sent while Redis is down is lost:
 * that request's slot counts until then, its unused tokens stay charged. */
#ifndef PITOT_ROUTE_RATELIMIT_REDIS_H
#define PITOT_ROUTE_RATELIMIT_REDIS_H

#include <stdbool.h>
#include <stdint.h>

#include "pitot/format/config.h"
#include "pitot/route/ratelimit.h"

struct event_base;

/* A running request stops counting against max_concurrent after this long
 * even if its end never reached Redis (its replica died). */
#define RL_REDIS_RUNNING_TTL_S 3600

/* What Redis said of one admission. */
struct rl_redis_result {
    bool answered;       /* false: Redis down, slow (redis_timeout) or in error:
                            the caller fails open or closed (ratelimit.redis_fail) */
    enum rl_limit limit; /* RL_OK: admitted (and charged); else the limit that refused */
    uint64_t retry_us;   /* refused: until that limit lets it in (0 for concurrent) */
    struct rl_view view; /* as rl_admit's */
    bool who_key;        /* as rl_admit's */
};

struct rl_redis;
struct rl_redis_req;

/* A connection to c's ratelimit.redis for the loop `base` (connected at
 * once, again after a failure, at most once a second). NULL when out of
 * memory or the URL cannot be used. */
struct rl_redis *rl_redis_new(struct event_base *base, const struct cfg *c);

/* Frees rr: admissions still pending get no done call (free their callers
 * first). Not from inside a done callback. */
void rl_redis_free(struct rl_redis *rr);

/* Asks Redis to admit a request of `tier` (slot) with `key` (index in c->keys,
 * -1 none) reserving `tokens`, running as `request_id`: both the key's limits
 * (when it has any) and the tier's, atomically, as rl_admit. done(ud, res)
 * is called exactly once, later, on the loop (never from inside this call),
 * unless rl_redis_cancel came first. NULL when out of memory (nothing will
 * be called). */
struct rl_redis_req *rl_redis_admit(struct rl_redis *rr, const struct cfg *c, unsigned tier,
                                    int key, uint64_t tokens, const char *request_id,
                                    void (*done)(void *ud, const struct rl_redis_result *res),
                                    void *ud);

/* The caller is gone: done will not be called; the admission (if Redis makes
 * it) is settled as if nothing was used. */
void rl_redis_cancel(struct rl_redis_req *q);

/* The end of a request Redis admitted: tokens charged `used` instead of
 * `reserved`, no longer running. Fire and forget. */
void rl_redis_settle(struct rl_redis *rr, const struct cfg *c, unsigned tier, int key,
                     uint64_t reserved, uint64_t used, const char *request_id);

/* Answers that did not come (timeouts, errors) since the start, for
 * pitot_ratelimit_redis_failures_total. */
uint64_t rl_redis_failures(const struct rl_redis *rr);

#endif
