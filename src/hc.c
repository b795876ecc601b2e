/* hc: GET /health per backend on a timer; verdicts go to the backend table
 * and the pitot_backend_up gauge, and each change of verdict to the log with
 * its reason. */
#include "pitot/hc.h"

#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

#include "pitot/bal.h"
#include "pitot/cfg.h"
#include "pitot/clock.h"
#include "pitot/hget.h"
#include "pitot/met.h"
#include "pitot/wrk.h"

struct hc_probe {
    struct hc *h; /* borrowed */
    unsigned be;
    struct event *timer; /* owned */
    struct hget *get;    /* owned while a probe runs */
};

struct hc {
    struct wrk *w;      /* borrowed */
    struct hc_probe *p; /* owned, one per backend */
    size_t n;
};

/* why: the reason a probe failed, for the line that says a backend went down. */
static void hc_verdict(struct hc_probe *pr, bool up, bool loading, const char *why)
{
    struct wrk *w = pr->h->w;
    struct bal_backend *b = &w->bal.b[pr->be];
    struct timeval tv = { w->cfg->health_interval_ms / 1000,
                          (long)(w->cfg->health_interval_ms % 1000) * 1000 };

    pr->get = NULL;
    if (up != b->up) {
        if (!up && w->cfg->log_level >= 1)
            fprintf(stderr, "pitot: warn: backend %s: down: %s\n", w->cfg->backends[pr->be].name,
                    why);
        else if (up && w->cfg->log_level >= 2)
            fprintf(stderr, "pitot: info: backend %s: up again\n", w->cfg->backends[pr->be].name);
    }
    b->up = up;
    b->loading = loading;
    b->last_probe_us = clk_now_us();
    met_gauge_set(w->met, MET_BACKEND_UP, pr->be, up ? 1 : 0);
    evtimer_add(pr->timer, &tv);
}

static void hc_done(void *ud, enum hget_result res, int status, struct span body)
{
    char why[320];

    if (res == HGET_OK)
        snprintf(why, sizeof(why), "GET /health answered %d%s", status,
                 status == 503 ? " (loading, or not ready)" : "");
    else
        snprintf(why, sizeof(why), "GET /health: %s%.*s", res == HGET_TLS ? "TLS handshake: " : "",
                 (int)body.len, body.p);
    /* 200 is up; llama.cpp's 503 "Loading model" is not ready, not broken. */
    hc_verdict(ud, res == HGET_OK && status == 200, res == HGET_OK && status == 503, why);
}

static void hc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hc_probe *pr = arg;
    struct wrk *w = pr->h->w;

    if (w->stopping || !w->bal.b[pr->be].active)
        return; /* hc_reset starts it again with an address */
    pr->get = hget_start(w->base, w->be_tls[pr->be], (struct sockaddr *)&w->be_addr[pr->be],
                         w->be_addrlen[pr->be], cfg_backend_authority(&w->cfg->backends[pr->be]),
                         "/health", w->cfg->health_timeout_ms, 4096, hc_done, pr);
    if (pr->get == NULL)
        hc_verdict(pr, false, false, "GET /health: cannot open a connection");
}

struct hc *hc_new(struct wrk *w)
{
    struct hc *h = calloc(1, sizeof(*h));
    size_t i;

    if (h == NULL)
        return NULL;
    h->w = w;
    h->n = w->bal.n;
    h->p = calloc(h->n ? h->n : 1, sizeof(*h->p));
    if (h->p == NULL) {
        free(h);
        return NULL;
    }
    for (i = 0; i < h->n; i++) {
        struct timeval now = { 0, 0 };
        h->p[i].h = h;
        h->p[i].be = (unsigned)i;
        h->p[i].timer = evtimer_new(w->base, hc_timer_cb, &h->p[i]);
        if (h->p[i].timer == NULL) {
            hc_free(h);
            return NULL;
        }
        met_gauge_set(w->met, MET_BACKEND_UP, (unsigned)i, 1);
        evtimer_add(h->p[i].timer, &now);
    }
    return h;
}

void hc_reset(struct hc *h, unsigned be)
{
    struct hc_probe *pr;
    struct timeval now = { 0, 0 };

    if (h == NULL || be >= h->n)
        return;
    pr = &h->p[be];
    hget_cancel(pr->get);
    pr->get = NULL;
    evtimer_del(pr->timer);
    met_gauge_set(h->w->met, MET_BACKEND_UP, be, 1);
    if (h->w->bal.b[be].active && !h->w->stopping)
        evtimer_add(pr->timer, &now);
}

void hc_free(struct hc *h)
{
    size_t i;

    if (h == NULL)
        return;
    for (i = 0; i < h->n; i++) {
        if (h->p[i].timer)
            event_free(h->p[i].timer);
        hget_cancel(h->p[i].get);
    }
    free(h->p);
    free(h);
}
