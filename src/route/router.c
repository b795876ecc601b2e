/* router: the backend table, addresses and TLS clients, set up from the
 * configuration. */
#include "pitot/route/router.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/format/config.h"
#include "pitot/io/tls.h"
#include "pitot/measure/metrics.h"
#include "pitot/util/log.h"
#include "pitot/util/sock.h"

static int router_fail(struct router *rt, char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    router_release(rt);
    return -1;
}

int router_init(struct router *rt, struct event_base *base, const struct cfg *c,
                struct met_registry *met, struct json_toks *toks, char *err, size_t errlen)
{
    size_t n = c->nbackends ? c->nbackends : 1, i;
    char msg[448];
    int rc;

    memset(rt, 0, sizeof(*rt));
    pthread_mutex_init(&rt->lock, NULL);
    rt->base = base;
    rt->cfg = c;
    rt->met = met;
    rt->toks = toks;
    rt->addr = calloc(n, sizeof(*rt->addr));
    rt->addrlen = calloc(n, sizeof(*rt->addrlen));
    rt->tls = calloc(n, sizeof(*rt->tls));
    rt->tls_own = calloc(n, sizeof(*rt->tls_own));
    if (rt->addr == NULL || rt->addrlen == NULL || rt->tls == NULL || rt->tls_own == NULL ||
        bal_init(&rt->bal, c) != 0)
        return router_fail(rt, err, errlen, "out of memory");
    for (i = 0; i < c->nbackends; i++) {
        const struct cfg_backend *b = &c->backends[i];

        if (!b->https || b->spare)
            continue;
        if (b->slot != 0) {
            rt->tls[i] = rt->tls[b->group];
            continue;
        }
        rt->tls[i] = tls_client_new(&b->tls, b->host, msg, sizeof(msg));
        rt->tls_own[i] = rt->tls[i] != NULL;
        if (rt->tls[i] == NULL) {
            snprintf(err, errlen, "backend %s: %s", b->name, msg);
            router_release(rt);
            return -1;
        }
        if (!b->tls.verify)
            log_warn("backend %s: tls.verify is false: its certificate is not checked", b->name);
    }
    for (i = 0; i < c->nbackends; i++) {
        if (c->backends[i].dns || c->backends[i].spare)
            continue; /* dns_new looks names up; a spare slot has no address */
        rc = sock_resolve(c->backends[i].host, c->backends[i].port, &rt->addr[i], &rt->addrlen[i],
                          0);
        if (rc != 0) {
            snprintf(err, errlen, "backend %s: cannot resolve %s: %s", c->backends[i].name,
                     c->backends[i].host, gai_strerror(rc));
            router_release(rt);
            return -1;
        }
    }
    return 0;
}

void router_release(struct router *rt)
{
    size_t i;

    for (i = 0; rt->tls && i < rt->cfg->nbackends; i++)
        if (rt->tls[i] && rt->tls_own[i])
            tls_client_free(rt->tls[i]);
    for (i = 0; i < rt->nold_tls; i++)
        tls_client_free(rt->old_tls[i]);
    free(rt->old_tls);
    rt->old_tls = NULL;
    rt->nold_tls = 0;
    free(rt->tls);
    free(rt->tls_own);
    rt->tls_own = NULL;
    free(rt->addr);
    free(rt->addrlen);
    bal_release(&rt->bal);
    rt->tls = NULL;
    rt->addr = NULL;
    rt->addrlen = NULL;
    pthread_mutex_destroy(&rt->lock);
}

enum bal_verdict router_choose(struct router *rt, const struct bal_req *rq, uint64_t now_us,
                               struct bal_backend **out, unsigned *gen, enum cfg_flavor *flavor,
                               const struct cfg **table)
{
    enum bal_verdict v;

    router_lock(rt);
    v = bal_choose(&rt->bal, rq, now_us, out);
    if (v == BAL_OK) {
        bal_dispatched(*out);
        *gen = (*out)->gen;
        *flavor = (*out)->flavor;
        *table = cfg_hold(rt->cfg);
    }
    router_unlock(rt);
    return v;
}

bool router_result(struct router *rt, struct bal_backend *be, bool failure, uint64_t now_us)
{
    char name[CFG_NAME_MAX];
    uint64_t until;
    unsigned ejections, failures;
    bool ejected, back = false;
    char d[24];

    router_lock(rt); /* rt->cfg and be->cfg too: a reload swaps them under the lock */
    memcpy(name, be->cfg->name, sizeof(name));
    if (!failure && be->ejected_until_us != 0 && now_us >= be->ejected_until_us) {
        /* its ejection is over and it answered: taken back, said once (a
         * passing probe says it when it comes first); bal_result forgets
         * the ejections in a row as it would have */
        be->ejected_until_us = 0;
        back = true;
    }
    ejected = bal_result(&rt->bal, be, failure, now_us);
    until = be->ejected_until_us;
    ejections = be->ejections;
    failures = rt->cfg->eject_failures;
    router_unlock(rt);
    if (ejected)
        log_warn("backend %s: ejected for %s after %u failures in a row (ejection %u in a row)",
                 name, cfg_fmt_ms(d, sizeof(d), (until - now_us) / 1000), failures, ejections);
    if (back)
        log_info("backend %s: taken back: its ejection is over and it answered a request", name);
    return ejected;
}

void router_done(struct router *rt, struct bal_backend *be, uint64_t tpot_us)
{
    router_lock(rt);
    if (tpot_us > 0)
        bal_measured(be, tpot_us);
    bal_released(be);
    router_unlock(rt);
}

unsigned router_gen(struct router *rt, unsigned be)
{
    unsigned g;

    router_lock(rt);
    g = rt->bal.b[be].gen;
    router_unlock(rt);
    return g;
}

void router_addr(struct router *rt, unsigned be, struct sockaddr_storage *ss, socklen_t *len)
{
    router_lock(rt);
    *ss = rt->addr[be];
    *len = rt->addrlen[be];
    router_unlock(rt);
}

size_t router_up_count(struct router *rt)
{
    size_t n;

    router_lock(rt);
    n = bal_up_count(&rt->bal);
    router_unlock(rt);
    return n;
}

size_t router_disable(struct router *rt, struct span name, bool disabled)
{
    size_t n;

    router_lock(rt);
    n = bal_disable(&rt->bal, name, disabled);
    router_unlock(rt);
    return n;
}

bool router_ejected(struct router *rt, unsigned be, uint64_t now_us)
{
    bool e;

    router_lock(rt);
    e = bal_ejected(&rt->bal.b[be], now_us);
    router_unlock(rt);
    return e;
}

int router_tls_reload(struct router *rt)
{
    const struct cfg *c = rt->cfg;
    char msg[448];
    int failed = 0;
    size_t i;

    for (i = 0; i < c->nbackends; i++) {
        if (rt->tls[i] == NULL || !rt->tls_own[i] || c->backends[i].spare)
            continue;
        if (tls_client_reload(rt->tls[i], msg, sizeof(msg)) != 0) {
            log_error("backend %s: reloading TLS files: %s; the old ones stay", c->backends[i].name,
                      msg);
            failed++;
        }
    }
    return failed;
}

size_t router_models(struct router *rt, uint64_t now_us, char (*names)[CFG_NAME_MAX], size_t cap,
                     size_t *unlisted)
{
    size_t n = 0, k, i, j;

    *unlisted = 0;
    router_lock(rt);
    for (k = 0; k < rt->bal.n; k++) {
        const struct bal_backend *b = &rt->bal.b[k];

        if (!bal_live(b) || !b->up || b->disabled || bal_ejected(b, now_us))
            continue;
        if (b->nmodels == 0)
            (*unlisted)++;
        for (i = 0; i < b->nmodels; i++) {
            for (j = 0; j < n && strcmp(names[j], b->models[i]) != 0; j++)
                ;
            if (j == n && n < cap)
                memcpy(names[n++], b->models[i], CFG_NAME_MAX);
        }
    }
    router_unlock(rt);
    return n;
}

/* A TLS client a reload replaced: a connection may be starting with it on
 * another loop, so it stays until the end. */
static void router_keep_tls(struct router *rt, struct tls_client *t)
{
    struct tls_client **n;

    if (t == NULL)
        return;
    n = realloc(rt->old_tls, (rt->nold_tls + 1) * sizeof(*n));
    if (n == NULL) { /* a few kilobytes lost rather than a client freed in use */
        log_warn("out of memory keeping a replaced TLS client");
        return;
    }
    rt->old_tls = n;
    rt->old_tls[rt->nold_tls++] = t;
}

/* Slot i's TLS client becomes t (own: slot i frees it at the end); the one
 * it owned is kept (router_keep_tls). Under the lock. */
static void router_set_tls(struct router *rt, size_t i, struct tls_client *t, bool own)
{
    if (rt->tls_own[i] && rt->tls[i] != NULL)
        router_keep_tls(rt, rt->tls[i]);
    __atomic_store_n(&rt->tls[i], t, __ATOMIC_RELEASE);
    rt->tls_own[i] = own;
}

/* Slot be takes no request and has no address any more. Under the lock. */
static void router_unaddress(struct router *rt, unsigned be)
{
    memset(&rt->addr[be], 0, sizeof(rt->addr[be]));
    rt->addrlen[be] = 0;
    bal_activate(&rt->bal, &rt->bal.b[be], false);
}

static bool router_starts(enum cfg_place h)
{
    return h == CFG_PLACE_CHANGED || h == CFG_PLACE_ADDED || h == CFG_PLACE_BACK;
}

void router_reload(struct router *rt, const struct cfg *c, const enum cfg_place *how)
{
    struct tls_client *tls[CFG_MAX_BACKENDS] = { NULL };
    struct sockaddr_storage addr[CFG_MAX_BACKENDS];
    socklen_t addrlen[CFG_MAX_BACKENDS] = { 0 };
    bool ok[CFG_MAX_BACKENDS];
    unsigned left[CFG_MAX_BACKENDS] = { 0 };
    char msg[448];
    size_t i, n = rt->bal.n;

    /* what a starting backend needs, before the switch: its TLS client (the
     * files are read) and, for an IP literal, its address */
    for (i = 0; i < n; i++) {
        const struct cfg_backend *cb = &c->backends[i];
        int rc;

        ok[i] = true;
        if (!router_starts(how[i]))
            continue;
        if (cb->https && cb->slot == 0) {
            tls[i] = tls_client_new(&cb->tls, cb->host, msg, sizeof(msg));
            if (tls[i] == NULL)
                log_error("backend %s: %s; it takes no request until a reload mends it", cb->name,
                          msg);
            else if (!cb->tls.verify)
                log_warn("backend %s: tls.verify is false: its certificate is not checked",
                         cb->name);
        }
        ok[i] = !cb->https || tls[cb->group] != NULL;
        if (!cb->dns && ok[i]) {
            rc = sock_resolve(cb->host, cb->port, &addr[i], &addrlen[i], 0);
            if (rc != 0) {
                log_error("backend %s: cannot resolve %s: %s", cb->name, cb->host,
                          gai_strerror(rc));
                ok[i] = false;
            }
        }
    }
    router_lock(rt);
    rt->cfg = c;
    rt->bal.cfg = c;
    for (i = 0; i < n; i++)
        rt->bal.b[i].cfg = &c->backends[i];
    for (i = 0; i < n; i++) {
        const struct cfg_backend *cb = &c->backends[i];
        struct bal_backend *b = &rt->bal.b[i];

        if (how[i] == CFG_PLACE_REMOVED) {
            left[i] = b->in_flight;
            if (b->in_flight == 0)
                router_unaddress(rt, (unsigned)i);
            continue;
        }
        if (!router_starts(how[i])) {
            /* a slot a placement cleared (no name now): it keeps no client */
            if (cb->spare && cb->name[0] == '\0' && rt->tls[i] != NULL)
                router_set_tls(rt, i, NULL, false);
            continue;
        }
        router_set_tls(rt, i, cb->https ? tls[cb->group] : NULL,
                       cb->https && cb->slot == 0 && tls[i] != NULL);
        memcpy(&rt->addr[i], &addr[i], sizeof(addr[i]));
        rt->addrlen[i] = cb->dns ? 0 : addrlen[i];
        if (how[i] == CFG_PLACE_ADDED)
            b->disabled = false; /* another backend's operator state */
        bal_activate(&rt->bal, b, !cb->dns && ok[i]);
    }
    router_unlock(rt);
    /* then what the other modules keep of each slot */
    for (i = 0; i < n; i++) {
        const struct cfg_backend *cb = &c->backends[i];

        if (how[i] == CFG_PLACE_REMOVED) {
            if (left[i] == 0) {
                met_backend_active(rt->met, (unsigned)i, false);
                log_info("reload: backend %s removed", cb->name);
            } else {
                log_info("reload: backend %s removed: no new request goes there, its %u in "
                         "flight finish",
                         cb->name, left[i]);
            }
            router_readdressed(rt, (unsigned)i); /* its idle connections close */
            continue;
        }
        if (!router_starts(how[i]))
            continue;
        if (cb->slot == 0)
            log_info("reload: backend %s %s (%s)", cb->name,
                     how[i] == CFG_PLACE_CHANGED ? "changed: it starts over" : "added", cb->url);
        met_backend_active(rt->met, (unsigned)i, !cb->dns && ok[i]);
        router_readdressed(rt, (unsigned)i);
    }
    router_room(rt);
}

bool router_retire(struct router *rt, unsigned be)
{
    struct bal_backend *b = &rt->bal.b[be];
    bool gone = false;
    char name[CFG_NAME_MAX];

    router_lock(rt);
    if (b->cfg->spare && b->active && b->in_flight == 0) {
        router_unaddress(rt, be);
        gone = true;
    }
    memcpy(name, b->cfg->name, sizeof(name));
    router_unlock(rt);
    if (gone) {
        met_backend_active(rt->met, be, false);
        router_readdressed(rt, be);
        log_info("backend %s: its last request ended; removed", name);
    }
    return gone || !b->active;
}

void router_backends_reusable(struct router *rt, bool *reusable)
{
    size_t i;

    router_lock(rt);
    for (i = 0; i < rt->bal.n; i++)
        reusable[i] =
            rt->cfg->backends[i].spare && !rt->bal.b[i].active && rt->bal.b[i].in_flight == 0;
    router_unlock(rt);
}
