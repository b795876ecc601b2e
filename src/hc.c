/* hc: GET /health per backend on a timer; verdicts go to the backend table
 * and the pitot_backend_up gauge. */
#include "pitot/hc.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "pitot/bal.h"
#include "pitot/cfg.h"
#include "pitot/clock.h"
#include "pitot/h1.h"
#include "pitot/met.h"
#include "pitot/wrk.h"

struct hc_probe {
    struct hc *h;               /* borrowed */
    unsigned be;
    struct event *timer;        /* owned */
    struct bufferevent *bev;    /* owned while a probe runs */
    struct h1_parser hp;
};

struct hc {
    struct wrk *w;              /* borrowed */
    struct hc_probe *p;         /* owned, one per backend */
    size_t n;
};

static void hc_verdict(struct hc_probe *pr, bool up, bool loading)
{
    struct wrk *w = pr->h->w;
    struct bal_backend *b = &w->bal.b[pr->be];
    struct timeval tv = { w->cfg->health_interval_ms / 1000,
                          (long)(w->cfg->health_interval_ms % 1000) * 1000 };

    if (pr->bev) {
        bufferevent_free(pr->bev);
        pr->bev = NULL;
    }
    b->up = up;
    b->loading = loading;
    b->last_probe_us = clk_now_us();
    met_gauge_set(w->met, MET_BACKEND_UP, pr->be, up ? 1 : 0);
    evtimer_add(pr->timer, &tv);
}

static void hc_read_cb(struct bufferevent *bev, void *arg)
{
    struct hc_probe *pr = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in), look = len < 8192 ? len : 8192, hl, used;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);

    hl = h1_head_len(span_make(p, look));
    if (hl == 0) {
        if (len >= 8192)
            hc_verdict(pr, false, false);
        return;
    }
    if (h1_execute(&pr->hp, span_make(p, hl), &used) != H1_HEAD) {
        hc_verdict(pr, false, false);
        return;
    }
    hc_verdict(pr, pr->hp.msg.status == 200, pr->hp.msg.status == 503);
}

static void hc_event_cb(struct bufferevent *bev, short what, void *arg)
{
    if (what & BEV_EVENT_CONNECTED)
        return;
    hc_verdict(arg, false, false);
}

static void hc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hc_probe *pr = arg;
    struct wrk *w = pr->h->w;
    const struct cfg_backend *cb = &w->cfg->backends[pr->be];
    struct timeval tv = { w->cfg->health_timeout_ms / 1000,
                          (long)(w->cfg->health_timeout_ms % 1000) * 1000 };

    if (w->stopping)
        return;
    pr->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (pr->bev == NULL) {
        hc_verdict(pr, false, false);
        return;
    }
    h1_init(&pr->hp, H1_RESPONSE, NULL, NULL, NULL);
    bufferevent_setcb(pr->bev, hc_read_cb, NULL, hc_event_cb, pr);
    bufferevent_set_timeouts(pr->bev, &tv, &tv);
    evbuffer_add_printf(bufferevent_get_output(pr->bev),
                        "GET /health HTTP/1.1\r\nHost: %s\r\nUser-Agent: pitot-health\r\n"
                        "Connection: close\r\n\r\n", cfg_backend_authority(cb));
    if (bufferevent_socket_connect(pr->bev, (struct sockaddr *)&w->be_addr[pr->be],
                                   w->be_addrlen[pr->be]) < 0) {
        hc_verdict(pr, false, false);
        return;
    }
    wrk_sock_nodelay(bufferevent_getfd(pr->bev));
    bufferevent_enable(pr->bev, EV_READ | EV_WRITE);
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

void hc_free(struct hc *h)
{
    size_t i;

    if (h == NULL)
        return;
    for (i = 0; i < h->n; i++) {
        if (h->p[i].timer)
            event_free(h->p[i].timer);
        if (h->p[i].bev)
            bufferevent_free(h->p[i].bev);
    }
    free(h->p);
    free(h);
}
