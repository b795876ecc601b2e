/* router: what routing knows of every backend (the backend table, the
 * addresses, the TLS clients) and the loop that keeps it current. The
 * modules that keep it current (health, scrape, dns) and those that use it
 * (the relay, the admin endpoints) share one; it tells the layers above what
 * changed through the callbacks its owner sets. */
#ifndef PITOT_ROUTE_ROUTER_H
#define PITOT_ROUTE_ROUTER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "pitot/route/balancer.h"

struct cfg;
struct event_base;
struct health;
struct json_toks;
struct met_registry;
struct scrape;
struct tls_client;

/* Every loop reads and changes the backend table and the addresses: they are
 * used under `lock` (router_lock, or the router_* calls below, which take it
 * themselves), never on the per-chunk path. */
struct router {
    pthread_mutex_t lock;          /* bal, addr, addrlen */
    struct event_base *base;       /* borrowed: where probes, scrapes and lookups run */
    const struct cfg *cfg;         /* borrowed */
    struct met_registry *met;      /* borrowed: the pitot_backend_* gauges */
    struct json_toks *toks;        /* borrowed: scratch for the JSON bodies of scrapes */
    struct bal bal;                /* owned: the backend table */
    struct sockaddr_storage *addr; /* owned, per backend: where it is (see dns.h) */
    socklen_t *addrlen;            /* owned, per backend: 0 while it has no address */
    struct tls_client **tls;       /* per backend, NULL for http://: owned by a name's
                                      first slot (tls_own), borrowed by its other
                                      slots; a reload swaps them (atomic stores) */
    bool *tls_own;                 /* per backend: tls[i] is its own (freed at the end) */
    struct tls_client **old_tls;   /* owned: the ones a reload replaced, kept */
    size_t nold_tls;
    struct health *health;                      /* borrowed: the owner's health checks, or NULL */
    struct scrape *scrape;                      /* borrowed: the owner's scrapes, or NULL */
    bool stopping;                              /* the loop is ending: timers are not rearmed */
    void (*room)(void *ud);                     /* a backend may take requests it could not before
                                      (up again, scraped, a new address) */
    void (*readdressed)(void *ud, unsigned be); /* be's address changed or went: its
                                                   idle connections are stale */
    void *ud;
};

/* Sets up rt for c's backends on `base`: the backend table, a TLS client per
 * https backend, and the addresses of those given as IP literals or names
 * resolved now (a DNS slot gets its address from dns_new later). Returns 0, or
 * -1 with a message in err (rt is then released). */
int router_init(struct router *rt, struct event_base *base, const struct cfg *c,
                struct met_registry *met, struct json_toks *toks, char *err, size_t errlen);

void router_release(struct router *rt);

/* Loads the https backends' CA files and client certificates again (SIGHUP).
 * What fails keeps its old context; returns the failures, each written to
 * stderr. */
int router_tls_reload(struct router *rt);

static inline void router_lock(struct router *rt)
{
    pthread_mutex_lock(&rt->lock);
}

static inline void router_unlock(struct router *rt)
{
    pthread_mutex_unlock(&rt->lock);
}

/* A backend for rq (bal_choose) and, when one is chosen, the request counted
 * as dispatched to it; *gen and *flavor: the backend's address generation
 * and flavor now; *table: the configuration whose backends[(*out)->idx] it
 * is, held for the caller (cfg_drop when done with the backend). */
enum bal_verdict router_choose(struct router *rt, const struct bal_req *rq, uint64_t now_us,
                               struct bal_backend **out, unsigned *gen, enum cfg_flavor *flavor,
                               const struct cfg **table);

/* A reload's configuration c (held by the caller as long as rt uses it),
 * its backends laid out in the table's slots as how says
 * (cfg_backends_place): the router takes c, a backend that starts (added,
 * back, changed) gets its TLS client and address (a name: from dns later)
 * and starts over (what was learned of it), and one removed takes no new
 * request and leaves once its requests ended (router_retire). On the
 * probing loop; the caller has reset the metric series of the slots a new
 * name takes, and starts their probes and scrapes over after (health_reset,
 * scrape_reset: those of the slots that start or were removed). */
void router_reload(struct router *rt, const struct cfg *c, const enum cfg_place *how);

/* A removed backend whose last request ended loses its address and leaves
 * the exposition; true when it is gone (now or before). Probing loop. */
bool router_retire(struct router *rt, unsigned be);

/* Per slot: may a reload put a new backend there (spare, no address, no
 * request on it)? */
void router_backends_reusable(struct router *rt, bool *reusable);

/* An answer or a failure of be (bal_result); true when it got be ejected. */
bool router_result(struct router *rt, struct bal_backend *be, bool failure, uint64_t now_us);

/* A request of pitot's on be ended (bal_released); tpot_us > 0: a whole
 * stream's time per output token, a speed sample (bal_measured). */
void router_done(struct router *rt, struct bal_backend *be, uint64_t tpot_us);

/* be's address generation now (see bal_activate). */
unsigned router_gen(struct router *rt, unsigned be);

/* be's address now into *ss and *len (0: none). */
void router_addr(struct router *rt, unsigned be, struct sockaddr_storage *ss, socklen_t *len);

/* Backends up now (bal_up_count). */
size_t router_up_count(struct router *rt);

/* An operator disables (true) or enables the backends of `name`
 * (bal_disable). Returns how many backends matched. The caller kicks its
 * loop's queue after an enable (router_room runs on the probing loop only). */
size_t router_disable(struct router *rt, struct span name, bool disabled);

/* The union of the model names the healthy backends (active, up, enabled, not
 * ejected) serve, without repeats, in backend order, at most cap of them,
 * into names; *unlisted: how many healthy backends list none (they serve any
 * name). Returns the number of names. */
size_t router_models(struct router *rt, uint64_t now_us, char (*names)[CFG_NAME_MAX], size_t cap,
                     size_t *unlisted);

/* Whether be is ejected at now_us (bal_ejected). */
bool router_ejected(struct router *rt, unsigned be, uint64_t now_us);

/* Tells the owner that a backend may take requests it could not before. */
static inline void router_room(struct router *rt)
{
    if (rt->room)
        rt->room(rt->ud);
}

/* Tells the owner that backend be's address changed or went. */
static inline void router_readdressed(struct router *rt, unsigned be)
{
    if (rt->readdressed)
        rt->readdressed(rt->ud, be);
}

#endif
