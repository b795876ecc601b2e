/* make bench-ratelimit (not a test): what a rate-limit admission adds to a
 * request. In memory: rl_admit + rl_settle on the shared table, timed one
 * pair at a time. Redis: rl_redis_admit until its answer arrives on the loop,
 * against the redis-server on loopback whose port is argv[1], one admission
 * at a time (each settled after). Prints p50, p99 and p99.9. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "pitot/format/config.h"
#include "pitot/route/ratelimit.h"
#include "pitot/route/ratelimit_redis.h"

#define BENCH_N 20000
#define BENCH_WARM 500

static uint64_t ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *d, size_t n)
{
    qsort(d, n, sizeof(d[0]), cmp);
    printf("%-36s p50 %9.2f us  p99 %9.2f us  p99.9 %9.2f us  (%zu)\n", what, d[n / 2] / 1e3,
           d[n * 99 / 100] / 1e3, d[n * 999 / 1000] / 1e3, n);
}

/* A tier and a key with limits far above what the run asks. */
static struct cfg bench_cfg;
static uint64_t d[BENCH_N];

static struct {
    struct event_base *base;
    struct rl_redis *rr;
    int i;
    uint64_t t0;
    char id[32];
} rb;

static void redis_next(void);

static void redis_done(void *ud, const struct rl_redis_result *res)
{
    (void)ud;
    if (!res->answered || res->limit != RL_OK) {
        fprintf(stderr, "bench-ratelimit: Redis did not admit (answered %d, limit %d)\n",
                res->answered, res->limit);
        exit(1);
    }
    if (rb.i >= BENCH_WARM)
        d[rb.i - BENCH_WARM] = ns() - rb.t0;
    rl_redis_settle(rb.rr, &bench_cfg, 1, 0, 300, 250, rb.id);
    if (++rb.i < BENCH_N + BENCH_WARM)
        redis_next();
    else
        event_base_loopbreak(rb.base);
}

static void redis_next(void)
{
    snprintf(rb.id, sizeof(rb.id), "bench-%d", rb.i);
    rb.t0 = ns();
    if (rl_redis_admit(rb.rr, &bench_cfg, 1, 0, 300, rb.id, redis_done, NULL) == NULL)
        exit(2);
}

int main(int argc, char **argv)
{
    struct cfg *c = &bench_cfg;
    struct ratelimit *rl;
    struct timeval connect = { 0, 500000 };
    uint64_t retry;
    struct rl_view v;
    bool who;
    int i;

    cfg_init(c);
    c->ntiers = 2;
    snprintf(c->tiers[1].name, CFG_NAME_MAX, "bench");
    c->tiers[1].limits.tokens_per_minute = 1000000000000ull;
    c->tiers[1].limits.max_concurrent = 1000000;
    c->nkeys = 1;
    c->key_tier[0] = 1;
    snprintf(c->keys[0].name, CFG_NAME_MAX, "bench");
    c->keys[0].limits.requests_per_minute = 4000000000u;
    memset(c->keys[0].sha256, 7, sizeof(c->keys[0].sha256));

    rl = rl_new(c);
    if (rl == NULL)
        return 2;
    for (i = 0; i < BENCH_N + BENCH_WARM; i++) {
        uint64_t t0 = ns(), us = t0 / 1000;

        if (rl_admit(rl, c, 1, 0, us, 300, &retry, &v, &who) != RL_OK)
            return 1;
        rl_settle(rl, c, 1, 0, us, 300, 250);
        if (i >= BENCH_WARM)
            d[i - BENCH_WARM] = ns() - t0;
    }
    report("in memory: admit + settle", d, BENCH_N);
    rl_free(rl);

    if (argc < 2)
        return 0;
    snprintf(c->ratelimit_redis, sizeof(c->ratelimit_redis), "redis://127.0.0.1:%s", argv[1]);
    snprintf(c->ratelimit_redis_host, sizeof(c->ratelimit_redis_host), "127.0.0.1");
    c->ratelimit_redis_port = (uint16_t)atoi(argv[1]);
    rb.base = event_base_new();
    rb.rr = rb.base ? rl_redis_new(rb.base, c) : NULL;
    if (rb.rr == NULL)
        return 2;
    event_base_loopexit(rb.base, &connect); /* connected, scripts loaded */
    event_base_dispatch(rb.base);
    redis_next();
    event_base_dispatch(rb.base);
    report("Redis on loopback: admit -> answer", d, BENCH_N);
    rl_redis_free(rb.rr);
    event_base_free(rb.base);
    return 0;
}
