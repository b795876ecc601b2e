/* loop: what the client connections and the requests on one event loop
 * share: the configuration, the backends (a router), the connections to them,
 * the overload queue, the metrics and logs, scratch buffers, the connections
 * open now and the ones to free. Its owner (the worker) sets it up and hears
 * back through the callback. */
#ifndef PITOT_SERVE_LOOP_H
#define PITOT_SERVE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "pitot/format/json.h"
#include "pitot/route/router.h"

struct alog;
struct cfg;
struct event;
struct event_base;
struct front_conn;
struct met_registry;
struct otlp;
struct queue_port;
struct refusal_phrases;
struct relay;
struct rl_redis;
struct status;
struct tls_server;
struct upstream;

struct loop {
    struct event_base *base;                /* owned */
    const struct cfg *cfg;                  /* borrowed */
    const struct refusal_phrases *refusals; /* borrowed: shared, immutable */
    struct alog *alog;                      /* borrowed: shared, one write(2) per line */
    struct met_registry *met;               /* borrowed: this loop's metrics */
    struct met_registry *const *regs;       /* borrowed: every loop's, [0] the one whose
                                               loop probes and scrapes; for /metrics */
    size_t nregs;
    struct router *rt;           /* borrowed, shared: the backends */
    struct ratelimit *ratelimit; /* borrowed, shared: the tiers' and keys' limits */
    struct rl_redis *rl_redis;   /* owned: this loop's connection to ratelimit.redis;
                                    NULL: the limits are counted in memory only */
    struct upstream *upstream;   /* owned: connections to the backends */
    struct queue_port *queue;    /* owned: this loop's way into the shared
                                               overload queue */
    _Atomic unsigned *clients;   /* borrowed, shared: client connections of
                                               every loop (limits.max_clients) */
    struct otlp *otlp;           /* owned: span exporter; NULL when traces are off */
    struct tls_server *tls;      /* owned: the client listener's TLS; NULL: plain */
    struct status *status;       /* borrowed, shared: the status page's data and
                                  runtime control; NULL without admin_listen */
    struct json_toks toks;       /* owned scratch for JSON parsing */
    char *scratch;               /* owned: multi-line SSE data, max_event_bytes */
    size_t scratch_cap;
    TAILQ_HEAD(, front_conn) conns; /* live client connections (borrowed links) */
    TAILQ_HEAD(, front_conn) reap;  /* closed, freed by reap_ev */
    struct event *reap_ev;          /* owned */
    struct relay *retired;          /* owned: relays to free, see relay_retire() */
    unsigned nconns;
    unsigned nadmin;          /* of nconns, those on the admin listener */
    uint64_t rng;             /* xorshift state for request ids */
    bool draining;            /* no new connections or requests; health checks, scrapes and
                        lookups go on */
    bool stopping;            /* the loop is ending: timers are not rearmed */
    void (*closed)(void *ud); /* a client connection closed (the owner may end a
                                 drain, or accept again) */
    void *ud;
};

/* True while a client connection may serve another request after this one:
 * false once the loop drains or stops. */
static inline bool loop_keepalive(const struct loop *lp)
{
    return !lp->draining && !lp->stopping;
}

/* A client connection closed (front calls it). */
static inline void loop_conn_closed(struct loop *lp)
{
    if (lp->closed)
        lp->closed(lp->ud);
}

/* Seeds the request ids (from getrandom, else the clock and pid). */
void loop_seed(struct loop *lp);

/* A fresh 32-hex-digit request id into out[33]. */
void loop_request_id(struct loop *lp, char out[33]);

#endif
