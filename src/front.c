/* front: the client side. A connection reads one request at a time; bytes a
 * client pipelines behind it wait in the input buffer until the response is
 * done. Nothing malformed is forwarded: a bad head or body ends in an error
 * reply and a closed connection. */
#include "pitot/front.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "pitot/adm.h"
#include "pitot/cfg.h"
#include "pitot/clock.h"
#include "pitot/relay.h"
#include "pitot/wrk.h"

static void front_read_cb(struct bufferevent *bev, void *arg);
static void front_write_cb(struct bufferevent *bev, void *arg);
static void front_event_cb(struct bufferevent *bev, short what, void *arg);
static void front_timer_cb(evutil_socket_t fd, short what, void *arg);
static int front_body_cb(void *ud, struct span b);

void front_set_state(struct front_conn *fc, enum front_state st)
{
    static const unsigned char legal[][6] = {
        /*                IDLE HEAD BODY PROXY CLOSING DEAD */
        [FRONT_ST_IDLE] = { 1, 1, 0, 0, 1, 1 },
        [FRONT_ST_HEAD] = { 1, 0, 1, 0, 1, 1 }, /* IDLE: answered locally */
        [FRONT_ST_BODY] = { 0, 0, 0, 1, 1, 1 },
        [FRONT_ST_PROXY] = { 1, 0, 0, 0, 1, 1 },
        [FRONT_ST_CLOSING] = { 0, 0, 0, 0, 1, 1 },
        [FRONT_ST_DEAD] = { 0, 0, 0, 0, 0, 1 },
    };

    assert(legal[fc->st][st]);
    (void)legal;
    fc->st = st;
}

static void front_timer_arm(struct front_conn *fc, unsigned ms)
{
    struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

    evtimer_add(fc->timer, &tv);
}

static void front_peer_format(char *out, size_t cap, const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
    snprintf(out, cap, "%s", ip);
}

void front_accept(struct wrk *w, int fd, const struct sockaddr *sa, int salen)
{
    struct front_conn *fc;
    struct h1_limits lim;

    if (w->nconns >= w->cfg->max_clients || w->stopping || w->draining) {
        evutil_closesocket(fd);
        return;
    }
    fc = calloc(1, sizeof(*fc));
    if (fc == NULL) {
        evutil_closesocket(fd);
        return;
    }
    wrk_sock_nodelay(fd);
    fc->w = w;
    fc->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    fc->timer = evtimer_new(w->base, front_timer_cb, fc);
    if (fc->bev == NULL || fc->timer == NULL) {
        if (fc->bev)
            bufferevent_free(fc->bev);
        else
            evutil_closesocket(fd);
        if (fc->timer)
            event_free(fc->timer);
        free(fc);
        return;
    }
    (void)salen;
    front_peer_format(fc->peer, sizeof(fc->peer), sa);
    lim.max_headers = w->cfg->max_headers;
    lim.max_uri_bytes = w->cfg->max_uri_bytes;
    h1_init(&fc->hp, H1_REQUEST, &lim, front_body_cb, fc);
    fc->st = FRONT_ST_IDLE;
    TAILQ_INSERT_TAIL(&w->conns, fc, link);
    w->nconns++;
    bufferevent_setcb(fc->bev, front_read_cb, front_write_cb, front_event_cb, fc);
    bufferevent_enable(fc->bev, EV_READ | EV_WRITE);
    /* A fresh connection must send its head within the header timeout. */
    front_timer_arm(fc, w->cfg->header_timeout_ms);
}

void front_close(struct front_conn *fc)
{
    struct wrk *w = fc->w;

    if (fc->st == FRONT_ST_DEAD)
        return;
    if (fc->rl) {
        relay_retire(fc->rl);
        fc->rl = NULL;
    }
    bufferevent_free(fc->bev);
    fc->bev = NULL;
    event_del(fc->timer);
    front_set_state(fc, FRONT_ST_DEAD);
    TAILQ_REMOVE(&w->conns, fc, link);
    w->nconns--;
    /* Freed from the reaper: a caller up the stack may still hold fc. */
    TAILQ_INSERT_TAIL(&w->reap, fc, link);
    event_active(w->reap_ev, EV_TIMEOUT, 0);
    wrk_conn_closed(w);
}

void front_cut(struct front_conn *fc)
{
    if (fc->st == FRONT_ST_PROXY && fc->rl) {
        relay_client_gone(fc->rl, PITOT_ESHUTDOWN);
        if (fc->st == FRONT_ST_DEAD)
            return;
    }
    front_close(fc);
}

void front_free(struct front_conn *fc)
{
    event_free(fc->timer);
    free(fc);
}

void front_close_after_flush(struct front_conn *fc)
{
    if (fc->st == FRONT_ST_DEAD)
        return;
    front_set_state(fc, FRONT_ST_CLOSING);
    bufferevent_disable(fc->bev, EV_READ);
    bufferevent_setwatermark(fc->bev, EV_WRITE, 0, 0);
    event_del(fc->timer);
    /* Bound the flush: a client that stops reading loses the connection. */
    front_timer_arm(fc, fc->w->cfg->body_timeout_ms);
    if (evbuffer_get_length(bufferevent_get_output(fc->bev)) == 0)
        front_close(fc);
}

int front_error_json(enum pitot_err e, char *buf, size_t cap)
{
    return err_json(e, buf, cap);
}

bool front_reply_head(struct front_conn *fc, int status, const char *content_type, size_t len,
                      bool close, const char *extra)
{
    struct evbuffer *out = bufferevent_get_output(fc->bev);

    close = close || !wrk_keepalive(fc->w);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nServer: pitot\r\n", status,
                        err_reason_phrase(status));
    if (content_type)
        evbuffer_add_printf(out, "Content-Type: %s\r\n", content_type);
    if (extra)
        evbuffer_add(out, extra, strlen(extra));
    evbuffer_add_printf(out, "Content-Length: %zu\r\n%s\r\n", len,
                        close ? "Connection: close\r\n" : "");
    return close;
}

void front_reply(struct front_conn *fc, int status, const char *content_type, const char *body,
                 size_t len, bool close)
{
    close = front_reply_head(fc, status, content_type, len, close, NULL);
    if (len)
        evbuffer_add(bufferevent_get_output(fc->bev), body, len);
    if (close)
        front_close_after_flush(fc);
}

void front_reply_error(struct front_conn *fc, enum pitot_err e, bool close)
{
    char body[256];
    int n = front_error_json(e, body, sizeof(body));

    front_reply(fc, err_status(e), "application/json", body, (size_t)n, close);
}

static void front_go_idle(struct front_conn *fc)
{
    front_set_state(fc, FRONT_ST_IDLE);
    h1_reset(&fc->hp);
    bufferevent_enable(fc->bev, EV_READ);
    event_del(fc->timer);
    front_timer_arm(fc, fc->w->cfg->keepalive_timeout_ms);
}

static void front_read_body(struct front_conn *fc);

/* When the body being read times out if nothing more arrives: the earliest
 * of limits.body_timeout after its last bytes (a gap), limits.body_deadline
 * after its head (however the bytes are paced), and the moment its average
 * rate since the head falls under limits.min_body_rate (not before
 * CFG_BODY_RATE_GRACE_MS). Monotonic microseconds. */
static uint64_t front_body_due(const struct front_conn *fc)
{
    const struct cfg *c = fc->w->cfg;
    uint64_t due = fc->body_last_us + (uint64_t)c->body_timeout_ms * 1000;
    uint64_t t = fc->body_start_us + (uint64_t)c->body_deadline_ms * 1000;

    if (t < due)
        due = t;
    if (c->min_body_rate) {
        /* bytes / elapsed < rate exactly when elapsed > bytes / rate */
        t = fc->body_bytes * 1000000 / c->min_body_rate + 1;
        if (t < (uint64_t)CFG_BODY_RATE_GRACE_MS * 1000)
            t = (uint64_t)CFG_BODY_RATE_GRACE_MS * 1000;
        if (fc->body_start_us + t < due)
            due = fc->body_start_us + t;
    }
    return due;
}

static void front_body_arm(struct front_conn *fc, uint64_t now_us)
{
    uint64_t due = front_body_due(fc), d = due > now_us ? due - now_us : 0;
    struct timeval tv = { (time_t)(d / 1000000), (long)(d % 1000000) };

    event_del(fc->timer);
    evtimer_add(fc->timer, &tv);
}

/* The head is complete and its body follows: the body's clocks start. */
static void front_body_start(struct front_conn *fc)
{
    uint64_t now = clk_now_us();

    fc->body_start_us = fc->body_last_us = now;
    fc->body_bytes = 0;
    front_body_arm(fc, now);
}

/* Parses a head once it is whole; the head stays in the input buffer (spans
 * into it) until the relay copied what it needs. */
static void front_read_head(struct front_conn *fc)
{
    struct wrk *w = fc->w;
    struct evbuffer *in = bufferevent_get_input(fc->bev);
    size_t len = evbuffer_get_length(in), look, hl, used;
    const char *p;
    const struct h1_msg *m;
    enum h1_result r;
    uint64_t t0;

    if (len == 0)
        return;
    if (fc->st == FRONT_ST_IDLE) {
        front_set_state(fc, FRONT_ST_HEAD);
        event_del(fc->timer);
        front_timer_arm(fc, w->cfg->header_timeout_ms);
    }
    look = len < w->cfg->max_header_bytes ? len : w->cfg->max_header_bytes;
    p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    hl = h1_head_len(span_make(p, look));
    if (hl == 0) {
        if (len >= w->cfg->max_header_bytes)
            front_reply_error(fc, PITOT_EHEADER_TOO_LARGE, true);
        return;
    }
    t0 = clk_now_us();
    r = h1_execute(&fc->hp, span_make(p, hl), &used);
    if (r != H1_HEAD) {
        front_reply_error(fc, fc->hp.err != PITOT_EOK ? fc->hp.err : PITOT_EBAD_REQUEST, true);
        return;
    }
    m = &fc->hp.msg;
    event_del(fc->timer);
    fc->nreq++;
    if (adm_handles(m)) {
        bool has_body = m->chunked || m->content_length > 0;
        bool keep = m->keep_alive && !has_body && wrk_keepalive(w);
        adm_serve(fc, m, !keep);
        evbuffer_drain(in, hl);
        if (keep) {
            front_go_idle(fc);
            front_read_head(fc);
        }
        return;
    }
    if (m->content_length > 0 && (uint64_t)m->content_length > w->cfg->max_body_bytes) {
        front_reply_error(fc, PITOT_EBODY_TOO_LARGE, true);
        return;
    }
    fc->rl = relay_new(fc, m, t0);
    if (fc->rl == NULL) {
        front_reply_error(fc, PITOT_ENOMEM, true);
        return;
    }
    if (m->expect_continue && (m->chunked || m->content_length > 0))
        evbuffer_add(bufferevent_get_output(fc->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    evbuffer_drain(in, hl);
    front_set_state(fc, FRONT_ST_BODY);
    front_body_start(fc);
    front_read_body(fc);
}

static int front_body_cb(void *ud, struct span b)
{
    struct front_conn *fc = ud;
    int rc = relay_body(fc->rl, b);

    if (rc < 0) {
        fc->hp.err = (enum pitot_err) - rc;
        fc->hp.reason = err_message(fc->hp.err);
        return -1;
    }
    return 0;
}

static void front_read_body(struct front_conn *fc)
{
    struct evbuffer *in = bufferevent_get_input(fc->bev);
    enum h1_result r = H1_AGAIN;
    size_t used, got = 0;
    uint64_t now;

    /* A body-less request completes with an empty feed (DONE owed after HEAD). */
    for (;;) {
        struct evbuffer_iovec v;
        size_t avail = evbuffer_peek(in, -1, NULL, &v, 1) > 0 ? v.iov_len : 0;

        r = h1_execute(&fc->hp, span_make(avail ? v.iov_base : "", avail), &used);
        if (used)
            evbuffer_drain(in, used);
        got += used;
        if (r == H1_ERROR) {
            relay_free(fc->rl);
            fc->rl = NULL;
            front_reply_error(fc, fc->hp.err != PITOT_EOK ? fc->hp.err : PITOT_EBAD_REQUEST, true);
            return;
        }
        if (r == H1_DONE || avail == 0)
            break;
    }
    if (r != H1_DONE) {
        /* More body to come: the gap restarts, the deadline does not. */
        now = clk_now_us();
        if (got) {
            fc->body_bytes += got;
            fc->body_last_us = now;
        }
        front_body_arm(fc, now);
        return;
    }
    event_del(fc->timer);
    front_set_state(fc, FRONT_ST_PROXY);
    relay_start(fc->rl);
}

void front_relay_done(struct front_conn *fc, bool keep_alive)
{
    if (fc->st == FRONT_ST_DEAD)
        return;
    /* Called from inside the relay's own callbacks: retire, don't free. */
    relay_retire(fc->rl);
    fc->rl = NULL;
    if (!keep_alive || !wrk_keepalive(fc->w)) {
        front_close_after_flush(fc);
        return;
    }
    front_go_idle(fc);
    /* A pipelined request may already be waiting: read it from the loop, not
     * from this frame, or a row of requests pitot answers itself (400 to a
     * body that is no JSON) would nest one call per request. */
    if (evbuffer_get_length(bufferevent_get_input(fc->bev)))
        bufferevent_trigger(fc->bev, EV_READ,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void front_read_cb(struct bufferevent *bev, void *arg)
{
    struct front_conn *fc = arg;

    switch (fc->st) {
    case FRONT_ST_IDLE:
    case FRONT_ST_HEAD: front_read_head(fc); break;
    case FRONT_ST_BODY: front_read_body(fc); break;
    case FRONT_ST_PROXY:
        /* Reading stays on to see the client leave; a client that floods
         * pipelined bytes meanwhile is no longer read. */
        if (evbuffer_get_length(bufferevent_get_input(bev)) > fc->w->cfg->max_header_bytes)
            bufferevent_disable(bev, EV_READ);
        break;
    case FRONT_ST_CLOSING:
    case FRONT_ST_DEAD: break;
    }
}

static void front_write_cb(struct bufferevent *bev, void *arg)
{
    struct front_conn *fc = arg;

    if (fc->st == FRONT_ST_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            front_close(fc);
    } else if (fc->st == FRONT_ST_PROXY && fc->rl) {
        relay_client_drained(fc->rl);
    }
}

static void front_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct front_conn *fc = arg;

    if (fc->st == FRONT_ST_PROXY && fc->rl) {
        relay_client_gone(fc->rl, (what & BEV_EVENT_TIMEOUT) ? PITOT_ECLIENT_TIMEOUT
                                                             : PITOT_ECLIENT_CANCEL);
        if (fc->st == FRONT_ST_DEAD)
            return;
    }
    front_close(fc);
}

static void front_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct front_conn *fc = arg;
    uint64_t now;

    switch (fc->st) {
    case FRONT_ST_HEAD: front_reply_error(fc, PITOT_EHEADER_TIMEOUT, true); break;
    case FRONT_ST_BODY:
        now = clk_now_us();
        if (now < front_body_due(fc)) { /* woken early: not due yet */
            front_body_arm(fc, now);
            break;
        }
        relay_free(fc->rl);
        fc->rl = NULL;
        front_reply_error(fc, PITOT_EBODY_TIMEOUT, true);
        break;
    case FRONT_ST_IDLE:
        /* A fresh connection that never sent a byte, or keep-alive expiry. */
        front_close(fc);
        break;
    case FRONT_ST_CLOSING: front_close(fc); break;
    default: break;
    }
}
