/* fetch: a GET (or a POST) with a deadline over a bufferevent, plain or TLS,
 * parsed with h1. */
#include "pitot/io/fetch.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "pitot/format/http1.h"
#include "pitot/io/tls.h"
#include "pitot/util/sock.h"

#define FETCH_HEAD_MAX 16384 /* bytes of a response head */

struct fetch {
    struct bufferevent *bev; /* owned */
    struct event *timer;     /* owned */
    struct evbuffer *body;   /* owned */
    struct h1_parser hp;
    size_t max_body;
    unsigned timeout_ms;
    int phase; /* 0 head, 1 body */
    fetch_cb cb;
    void *ud;
};

static void fetch_free(struct fetch *g)
{
    if (g->bev)
        bufferevent_free(g->bev);
    if (g->timer)
        event_free(g->timer);
    if (g->body)
        evbuffer_free(g->body);
    free(g);
}

static void fetch_done(struct fetch *g, enum fetch_result res)
{
    size_t n = evbuffer_get_length(g->body);
    struct span body = span_make(n ? (const char *)evbuffer_pullup(g->body, -1) : "", n);

    g->cb(g->ud, res, res == FETCH_OK ? g->hp.msg.status : 0, body);
    fetch_free(g);
}

/* Ends a request that failed, with why in words. */
static void fetch_fail(struct fetch *g, enum fetch_result res, const char *why)
{
    g->cb(g->ud, res, 0, span_cstr(why));
    fetch_free(g);
}

static int fetch_on_body(void *ud, struct span b)
{
    struct fetch *g = ud;

    if (evbuffer_get_length(g->body) + b.len > g->max_body)
        return -1;
    return evbuffer_add(g->body, b.p, b.len);
}

/* Parses what arrived; true when the request finished (g is then freed). */
static bool fetch_consume(struct fetch *g)
{
    struct evbuffer *in = bufferevent_get_input(g->bev);
    size_t used;
    enum h1_result r;

    if (g->phase == 0) {
        size_t len = evbuffer_get_length(in), look = len < FETCH_HEAD_MAX ? len : FETCH_HEAD_MAX;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        size_t hl;

        /* the head so far, from its first byte: h1 parses only what is new */
        r = h1_execute(&g->hp, span_make(p, look), &hl);
        if (r == H1_AGAIN)
            return false;
        if (r != H1_HEAD || g->hp.msg.status < 200) {
            fetch_fail(g, FETCH_PROTOCOL,
                       r == H1_HEAD   ? "interim response"
                       : g->hp.reason ? g->hp.reason
                                      : "malformed response head");
            return true;
        }
        evbuffer_drain(in, hl);
        g->phase = 1;
    }
    for (;;) {
        struct evbuffer_iovec v;
        size_t avail = evbuffer_peek(in, -1, NULL, &v, 1) > 0 ? v.iov_len : 0;

        r = h1_execute(&g->hp, span_make(avail ? v.iov_base : "", avail), &used);
        if (used)
            evbuffer_drain(in, used);
        if (r == H1_DONE) {
            fetch_done(g, FETCH_OK);
            return true;
        }
        if (r == H1_ERROR) {
            fetch_fail(g, FETCH_PROTOCOL, "malformed response body, or over the size cap");
            return true;
        }
        if (avail == 0)
            return false;
    }
}

static void fetch_read_cb(struct bufferevent *bev, void *arg)
{
    fetch_consume(arg);
}

static void fetch_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct fetch *g = arg;
    int e = EVUTIL_SOCKET_ERROR(); /* a failed connect's, before anything else runs */
    char why[256];

    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & BEV_EVENT_EOF) {
        if (evbuffer_get_length(bufferevent_get_input(bev)) && fetch_consume(g))
            return;
        if (g->phase == 1) {
            if (h1_finish(&g->hp) == H1_DONE)
                fetch_done(g, FETCH_OK);
            else
                fetch_fail(g, FETCH_PROTOCOL, "connection closed in the middle of the response");
            return;
        }
        fetch_fail(g, FETCH_CONNECT, "connection closed before a response");
        return;
    }
    if (tls_bev_error(bev, why, sizeof(why))) {
        fetch_fail(g, g->phase == 1 ? FETCH_PROTOCOL : FETCH_TLS, why);
        return;
    }
    if (g->phase == 1)
        fetch_fail(g, FETCH_PROTOCOL, "connection reset in the middle of the response");
    else
        fetch_fail(g, FETCH_CONNECT, e ? evutil_socket_error_to_string(e) : "connection failed");
}

static void fetch_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fetch *g = arg;
    char why[64];

    snprintf(why, sizeof(why), "no complete response within %u ms", g->timeout_ms);
    fetch_fail(g, FETCH_TIMEOUT, why);
}

/* A request object with its parser; the caller writes the request. */
static struct fetch *fetch_new(struct event_base *base, struct tls_client *tls, size_t max_body,
                               fetch_cb cb, void *ud)
{
    struct fetch *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return NULL;
    g->cb = cb;
    g->ud = ud;
    g->max_body = max_body;
    g->bev =
        tls ? tls_client_bev(tls, base) : bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    g->timer = evtimer_new(base, fetch_timer_cb, g);
    g->body = evbuffer_new();
    if (g->bev == NULL || g->timer == NULL || g->body == NULL) {
        fetch_free(g);
        return NULL;
    }
    {
        struct h1_limits lim = { H1_MAX_HEADERS, 8192, FETCH_HEAD_MAX };
        h1_init(&g->hp, H1_RESPONSE, &lim, fetch_on_body, g);
    }
    bufferevent_setcb(g->bev, fetch_read_cb, NULL, fetch_event_cb, g);
    return g;
}

/* Connects and arms the deadline; NULL (g freed) on immediate failure. */
static struct fetch *fetch_go(struct fetch *g, const struct sockaddr *sa, socklen_t salen,
                              unsigned timeout_ms)
{
    struct timeval tv = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000 };

    g->timeout_ms = timeout_ms;
    if (bufferevent_socket_connect(g->bev, sa, (int)salen) < 0) {
        fetch_free(g);
        return NULL;
    }
    sock_nodelay(bufferevent_getfd(g->bev));
    bufferevent_enable(g->bev, EV_READ | EV_WRITE);
    evtimer_add(g->timer, &tv);
    return g;
}

struct fetch *fetch_start(struct event_base *base, struct tls_client *tls,
                          const struct sockaddr *sa, socklen_t salen, const char *authority,
                          const char *path, unsigned timeout_ms, size_t max_body, fetch_cb cb,
                          void *ud)
{
    struct fetch *g = fetch_new(base, tls, max_body, cb, ud);

    if (g == NULL)
        return NULL;
    evbuffer_add_printf(bufferevent_get_output(g->bev),
                        "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pitot\r\nAccept: */*\r\n"
                        "Connection: close\r\n\r\n",
                        path, authority);
    return fetch_go(g, sa, salen, timeout_ms);
}

struct fetch *fetch_post(struct event_base *base, struct tls_client *tls, const struct sockaddr *sa,
                         socklen_t salen, const char *authority, const char *path,
                         const char *content_type, const char *body, size_t body_len,
                         unsigned timeout_ms, size_t max_body, fetch_cb cb, void *ud)
{
    struct fetch *g = fetch_new(base, tls, max_body, cb, ud);
    struct evbuffer *out;

    if (g == NULL)
        return NULL;
    out = bufferevent_get_output(g->bev);
    evbuffer_add_printf(out,
                        "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pitot\r\nAccept: */*\r\n"
                        "Content-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                        path, authority, content_type, body_len);
    /* by reference: the body is the caller's until the callback */
    if (body_len && evbuffer_add_reference(out, body, body_len, NULL, NULL) != 0) {
        fetch_free(g);
        return NULL;
    }
    return fetch_go(g, sa, salen, timeout_ms);
}

void fetch_cancel(struct fetch *g)
{
    if (g)
        fetch_free(g);
}
