/* health: GET /health per backend on a timer; verdicts go to the backend table
 * and the pitot_backend_up gauge, and each change of verdict to the log with
 * its reason, as does the end of an ejection that a probe finds. */
#include "pitot/route/health.h"

#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

#include "pitot/route/balancer.h"
#include "pitot/format/config.h"
#include "pitot/util/clock.h"
#include "pitot/util/log.h"
#include "pitot/io/fetch.h"
#include "pitot/measure/metrics.h"
#include "pitot/route/router.h"

struct health_probe {
    struct health *h; /* borrowed */
    unsigned be;
    struct event *timer; /* owned */
    struct fetch *get;   /* owned while a probe runs */
};

struct health {
    struct router *rt;      /* borrowed */
    struct health_probe *p; /* owned, one per backend */
    size_t n;
};

/* why: what the probe found ("GET /health answered 200", or why it failed),
 * for the line that says a backend went down or came up. */
static void health_verdict(struct health_probe *pr, bool up, bool loading, const char *why)
{
    struct router *rt = pr->h->rt;
    struct bal_backend *b = &rt->bal.b[pr->be];
    const char *name = rt->cfg->backends[pr->be].name;
    struct timeval tv = { rt->cfg->health_interval_ms / 1000,
                          (long)(rt->cfg->health_interval_ms % 1000) * 1000 };
    uint64_t now = clk_now_us();
    bool back = false;

    pr->get = NULL;
    if (up != b->up) {
        if (!up)
            log_warn("backend %s: down: %s", name, why);
        else
            log_info("backend %s: up again: %s", name, why);
    }
    router_lock(rt); /* the loops that route read it */
    b->up = up;
    b->loading = loading;
    b->last_probe_us = now;
    if (up && b->ejected_until_us != 0 && now >= b->ejected_until_us) {
        /* its ejection is over and it passes a probe: taken back, said
         * once (router_result says it when a request gets there first) */
        b->ejected_until_us = 0;
        back = true;
    }
    router_unlock(rt);
    if (back)
        log_info("backend %s: taken back: its ejection is over and %s", name, why);
    met_gauge_set(rt->met, MET_BACKEND_UP, pr->be, up ? 1 : 0);
    evtimer_add(pr->timer, &tv);
}

static void health_done(void *ud, enum fetch_result res, int status, struct span body)
{
    char why[320];

    if (res == FETCH_OK)
        snprintf(why, sizeof(why), "GET /health answered %d%s", status,
                 status == 503 ? " (loading, or not ready)" : "");
    else
        snprintf(why, sizeof(why), "GET /health: %s%.*s", res == FETCH_TLS ? "TLS handshake: " : "",
                 (int)body.len, body.p);
    /* 200 is up; llama.cpp's 503 "Loading model" is not ready, not broken. */
    health_verdict(ud, res == FETCH_OK && status == 200, res == FETCH_OK && status == 503, why);
}

static void health_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct health_probe *pr = arg;
    struct router *rt = pr->h->rt;

    if (rt->stopping || !rt->bal.b[pr->be].active)
        return; /* health_reset starts it again with an address */
    if (rt->bal.b[pr->be].cfg->spare) {
        /* a reload removed it: it leaves once its last request ended */
        if (!router_retire(rt, pr->be)) {
            struct timeval tv = { rt->cfg->health_interval_ms / 1000,
                                  (long)(rt->cfg->health_interval_ms % 1000) * 1000 };
            evtimer_add(pr->timer, &tv);
        }
        return;
    }
    pr->get = fetch_start(rt->base, rt->tls[pr->be], (struct sockaddr *)&rt->addr[pr->be],
                          rt->addrlen[pr->be], cfg_backend_authority(&rt->cfg->backends[pr->be]),
                          "/health", rt->cfg->health_timeout_ms, 4096, health_done, pr);
    if (pr->get == NULL)
        health_verdict(pr, false, false, "GET /health: cannot open a connection");
}

struct health *health_new(struct router *rt)
{
    struct health *h = calloc(1, sizeof(*h));
    size_t i;

    if (h == NULL)
        return NULL;
    h->rt = rt;
    h->n = rt->bal.n;
    h->p = calloc(h->n ? h->n : 1, sizeof(*h->p));
    if (h->p == NULL) {
        free(h);
        return NULL;
    }
    for (i = 0; i < h->n; i++) {
        struct timeval now = { 0, 0 };
        h->p[i].h = h;
        h->p[i].be = (unsigned)i;
        h->p[i].timer = evtimer_new(rt->base, health_timer_cb, &h->p[i]);
        if (h->p[i].timer == NULL) {
            health_free(h);
            return NULL;
        }
        met_gauge_set(rt->met, MET_BACKEND_UP, (unsigned)i, 1);
        evtimer_add(h->p[i].timer, &now);
    }
    return h;
}

void health_reset(struct health *h, unsigned be)
{
    struct health_probe *pr;
    struct timeval now = { 0, 0 };

    if (h == NULL || be >= h->n)
        return;
    pr = &h->p[be];
    fetch_cancel(pr->get);
    pr->get = NULL;
    evtimer_del(pr->timer);
    met_gauge_set(h->rt->met, MET_BACKEND_UP, be, 1);
    if (h->rt->bal.b[be].active && !h->rt->stopping)
        evtimer_add(pr->timer, &now);
}

void health_free(struct health *h)
{
    size_t i;

    if (h == NULL)
        return;
    for (i = 0; i < h->n; i++) {
        if (h->p[i].timer)
            event_free(h->p[i].timer);
        fetch_cancel(h->p[i].get);
    }
    free(h->p);
    free(h);
}
