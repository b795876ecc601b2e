/* front: the client side. A connection reads one request at a time; bytes a
 * client pipelines behind it wait in the input buffer until the response is
 * done. Nothing malformed is forwarded: a bad head or body ends in an error
 * reply and a closed connection. Nothing unauthorized is forwarded either:
 * with require_auth, a request without a configured key is answered 401 and
 * its body dropped. */
#include "pitot/serve/front.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "pitot/format/api.h"
#include "pitot/serve/admin.h"
#include "pitot/measure/access_log.h"
#include "pitot/format/config.h"
#include "pitot/util/clock.h"
#include "pitot/measure/metrics.h"
#include "pitot/serve/relay.h"
#include "pitot/serve/reply.h"
#include "pitot/route/tier.h"
#include "pitot/io/tls.h"
#include "pitot/serve/loop.h"
#include "pitot/util/sock.h"

static void front_read_cb(struct bufferevent *bev, void *arg);
static void front_write_cb(struct bufferevent *bev, void *arg);
static void front_event_cb(struct bufferevent *bev, short what, void *arg);
static void front_timer_cb(evutil_socket_t fd, short what, void *arg);
static int front_body_cb(void *ud, struct span b);

void front_set_state(struct front_conn *fc, enum front_state st)
{
    /* clang-format off */
    static const unsigned char legal[][8] = {
        /*                     HANDSHAKE IDLE HEAD BODY DISCARD PROXY CLOSING DEAD */
        [FRONT_ST_HANDSHAKE] = { 0,      1,   0,   0,   0,      0,    0,      1 },
        [FRONT_ST_IDLE] =      { 0,      1,   1,   0,   0,      0,    1,      1 },
        [FRONT_ST_HEAD] =      { 0,      1,   0,   1,   1,      0,    1,      1 }, /* IDLE: answered locally */
        [FRONT_ST_BODY] =      { 0,      0,   0,   0,   0,      1,    1,      1 },
        [FRONT_ST_DISCARD] =   { 0,      1,   0,   0,   0,      0,    1,      1 },
        [FRONT_ST_PROXY] =     { 0,      1,   0,   0,   0,      0,    1,      1 },
        [FRONT_ST_CLOSING] =   { 0,      0,   0,   0,   0,      0,    1,      1 },
        [FRONT_ST_DEAD] =      { 0,      0,   0,   0,   0,      0,    0,      1 },
    };
    /* clang-format on */

    assert(legal[fc->st][st]);
    (void)legal;
    fc->st = st;
}

static void front_timer_arm(struct front_conn *fc, unsigned ms)
{
    struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

    evtimer_add(fc->timer, &tv);
}

/* When this loop woke up for the events it is handling now (libevent's time
 * cache, taken as its wait returned), on the monotonic clock: a read handled
 * late in a busy iteration still gets the time its bytes were seen. */
static uint64_t front_loop_woke(struct loop *lp)
{
    uint64_t now = clk_now_us(), real, woke;
    struct timeval tv;

    if (event_base_gettimeofday_cached(lp->base, &tv) != 0)
        return now;
    real = clk_wall_us();
    woke = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    if (woke > real || real - woke > 1000000 || real - woke > now)
        return now; /* a clock step, or no cache: now */
    return now - (real - woke);
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

/* A request's first bytes are readable on an idle plain connection: their
 * receive stamp is peeked before anything reads them, then the connection
 * reads as usual, starting now rather than on the loop's next turn. */
static void front_arrival_cb(evutil_socket_t fd, short what, void *arg)
{
    struct front_conn *fc = arg;
    struct evbuffer *in = bufferevent_get_input(fc->bev);

    (void)what;
    fc->arrived_us = sock_waiting_since_us(fd);
    bufferevent_enable(fc->bev, EV_READ);
    /* nothing to peek (end of stream, an error): the bufferevent sees it */
    if (fc->arrived_us != 0 && evbuffer_read(in, fd, -1) > 0)
        front_read_cb(fc->bev, fc);
}

/* Waits for the next request: through front_arrival_cb on a plain client
 * connection with nothing pipelined, else by reading. */
static void front_await_request(struct front_conn *fc)
{
    if (fc->arrival == NULL || evbuffer_get_length(bufferevent_get_input(fc->bev)) != 0) {
        bufferevent_enable(fc->bev, EV_READ);
        return;
    }
    bufferevent_disable(fc->bev, EV_READ);
    event_add(fc->arrival, NULL);
}

void front_accept(struct loop *lp, int fd, const struct sockaddr *sa, int salen, bool admin)
{
    struct front_conn *fc;
    struct h1_limits lim;
    bool full =
        admin ? lp->nadmin >= FRONT_MAX_ADMIN_CONNS
              : atomic_load_explicit(lp->clients, memory_order_relaxed) >= lp->cfg->max_clients;
    bool tls = lp->tls != NULL && !admin; /* the admin listener is plain HTTP */

    if (full || lp->stopping || lp->draining) {
        evutil_closesocket(fd);
        return;
    }
    fc = calloc(1, sizeof(*fc));
    if (fc == NULL) {
        evutil_closesocket(fd);
        return;
    }
    sock_nodelay(fd);
    fc->lp = lp;
    if (tls)
        fc->bev = tls_server_bev(lp->tls, lp->base, fd);
    else
        fc->bev = bufferevent_socket_new(lp->base, fd, BEV_OPT_CLOSE_ON_FREE);
    fc->timer = evtimer_new(lp->base, front_timer_cb, fc);
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
    /* A plain client's requests are timed from the kernel's receive stamp
     * of their first bytes, peeked before they are read (front_arrival_cb);
     * through TLS the handshake comes first and records are stamped, not
     * requests. */
    if (!tls && !admin &&
        (fc->arrival = event_new(lp->base, fd, EV_READ, front_arrival_cb, fc)) == NULL) {
        bufferevent_free(fc->bev);
        event_free(fc->timer);
        free(fc);
        return;
    }
    lim.max_headers = lp->cfg->max_headers;
    lim.max_uri_bytes = lp->cfg->max_uri_bytes;
    lim.max_head_bytes = lp->cfg->max_header_bytes;
    h1_init(&fc->hp, H1_REQUEST, &lim, front_body_cb, fc);
    fc->st = tls ? FRONT_ST_HANDSHAKE : FRONT_ST_IDLE;
    fc->admin = admin;
    TAILQ_INSERT_TAIL(&lp->conns, fc, link);
    lp->nconns++;
    lp->nadmin += admin;
    if (!admin) {
        atomic_fetch_add_explicit(lp->clients, 1, memory_order_relaxed);
        met_add_connection(lp->met);
    }
    bufferevent_setcb(fc->bev, front_read_cb, front_write_cb, front_event_cb, fc);
    bufferevent_enable(fc->bev, EV_WRITE);
    front_await_request(fc);
    /* A fresh connection must send its head within the header timeout; on a
     * TLS listener the handshake counts against it too. */
    front_timer_arm(fc, lp->cfg->header_timeout_ms);
}

/* A client's TLS handshake failed: counted by reason, logged at most once a
 * second, closed. */
static void front_tls_failed(struct front_conn *fc, enum tls_fail why, const char *detail)
{
    met_add_tls_failure(fc->lp->met, why);
    tls_server_log_failure(fc->lp->tls, fc->peer, why, detail);
    front_close(fc);
}

void front_close(struct front_conn *fc)
{
    struct loop *lp = fc->lp;

    if (fc->st == FRONT_ST_DEAD)
        return;
    if (fc->rl) {
        relay_retire(fc->rl);
        fc->rl = NULL;
    }
    if (fc->st != FRONT_ST_HANDSHAKE)
        tls_close_notify(fc->bev);
    if (fc->arrival)
        event_del(fc->arrival); /* before its socket closes */
    bufferevent_free(fc->bev);
    fc->bev = NULL;
    event_del(fc->timer);
    front_set_state(fc, FRONT_ST_DEAD);
    TAILQ_REMOVE(&lp->conns, fc, link);
    lp->nconns--;
    lp->nadmin -= fc->admin;
    if (!fc->admin)
        atomic_fetch_sub_explicit(lp->clients, 1, memory_order_relaxed);
    /* Freed from the reaper: a caller up the stack may still hold fc. */
    TAILQ_INSERT_TAIL(&lp->reap, fc, link);
    event_active(lp->reap_ev, EV_TIMEOUT, 0);
    loop_conn_closed(lp);
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
    if (fc->arrival)
        event_free(fc->arrival);
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
    front_timer_arm(fc, fc->lp->cfg->body_timeout_ms);
    if (evbuffer_get_length(bufferevent_get_output(fc->bev)) == 0)
        front_close(fc);
}

static void front_go_idle(struct front_conn *fc)
{
    front_set_state(fc, FRONT_ST_IDLE);
    fc->head = false;
    h1_reset(&fc->hp);
    front_await_request(fc);
    event_del(fc->timer);
    front_timer_arm(fc, fc->lp->cfg->keepalive_timeout_ms);
}

static void front_read_body(struct front_conn *fc);
static void front_read_discard(struct front_conn *fc);
static void front_read_head(struct front_conn *fc);
static void front_relay_done(void *ud, bool keep_alive);

/* When the body being read times out if nothing more arrives: the earliest
 * of limits.body_timeout after its last bytes (a gap), limits.body_deadline
 * after its head (however the bytes are paced), and the moment its average
 * rate since the head falls under limits.min_body_rate (not before
 * CFG_BODY_RATE_GRACE_MS). Monotonic microseconds. */
static uint64_t front_body_due(const struct front_conn *fc)
{
    const struct cfg *c = fc->lp->cfg;
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

static void front_answer(struct front_conn *fc, const struct h1_msg *m, enum pitot_err e,
                         uint64_t t0, bool close, const char *extra);

/* pitot's own endpoints. On the admin listener every request is answered
 * here (own paths, else 404 or 405), never proxied. On the client listener
 * GET and HEAD of the own paths are, unless admin_listen serves them: then
 * those paths (and the admin listener's own: /status, /admin/...) get 404
 * whatever the method, rather than reaching a backend
 * whose own /metrics a scraper could mistake for pitot's. Returns whether
 * the request was answered; its head (hl bytes) is then consumed. A request
 * with a body is answered and the connection closed: it is not read. */
static bool front_serve_local(struct front_conn *fc, const struct h1_msg *m, size_t hl)
{
    struct loop *lp = fc->lp;
    bool has_body = m->chunked || m->content_length > 0;
    bool keep = m->keep_alive && !has_body && loop_keepalive(lp);
    struct evbuffer *out = bufferevent_get_output(fc->bev);

    if (fc->admin)
        admin_serve_admin(lp, out, m, !keep);
    else if (lp->cfg->admin && (admin_own_path(m) || admin_listener_path(m)))
        front_answer(fc, m, PITOT_ENOT_FOUND, 0, !keep, NULL);
    else if (!lp->cfg->admin && admin_handles(m))
        admin_serve(lp, out, m, !keep);
    else
        return false;
    evbuffer_drain(bufferevent_get_input(fc->bev), hl);
    if (!keep) {
        front_close_after_flush(fc);
        return true;
    }
    front_go_idle(fc);
    front_read_head(fc);
    return true;
}

/* The access-log line of a request pitot refused before any relay existed:
 * method, path (logged without its query), status and outcome; never a
 * header value. m: the parsed head, or NULL when none was (method and path
 * are then null); t0: when the head was complete, 0 if it never was (e2e is
 * then null). And its count in pitot_requests_total (backend ""). */
static void front_account_refusal(struct front_conn *fc, const struct h1_msg *m, enum pitot_err e,
                                  const char *id, enum api_kind api, int status, uint64_t t0)
{
    struct alog_rec rec;

    met_add_local(fc->lp->met, 0, api, status);
    if (fc->lp->alog == NULL)
        return;
    memset(&rec, 0, sizeof(rec));
    rec.id = span_cstr(id);
    rec.wall_us = clk_wall_us();
    rec.method = m ? m->method : span_make(NULL, 0);
    rec.path = m ? m->url : span_make(NULL, 0);
    rec.api = m ? api_label(api) : NULL;
    rec.status = status;
    rec.ttft_us = rec.itl_p50_us = rec.itl_max_us = rec.tpot_us = -1;
    rec.e2e_us = t0 ? (int64_t)(clk_now_us() - t0) : -1;
    rec.prompt_tokens = rec.completion_tokens = rec.cached_tokens = -1;
    rec.outcome = err_outcome(e);
    rec.error = err_label(e);
    alog_write(fc->lp->alog, &rec);
}

/* The X-Request-Id of a request pitot answers itself (the client's valid
 * one, else a new one) and the API its path speaks (other without a head). */
static enum api_kind front_request_id(struct front_conn *fc, const struct h1_msg *m,
                                      char id[RELAY_ID_MAX + 1])
{
    char path[512];

    if (m == NULL) {
        loop_request_id(fc->lp, id);
        return API_OTHER;
    }
    relay_request_id(fc->lp, m, id);
    snprintf(path, sizeof(path), "%.*s", (int)m->url.len, m->url.p);
    return api_of_path(path);
}

/* pitot's own error answer to a request: in its API's shape with its
 * X-Request-Id (and extra header lines, when not NULL), counted and logged.
 * The head says close when close is set; the caller closes. */
static void front_answer(struct front_conn *fc, const struct h1_msg *m, enum pitot_err e,
                         uint64_t t0, bool close, const char *extra)
{
    char id[RELAY_ID_MAX + 1], hdr[RELAY_ID_MAX + 96];
    enum api_kind api = front_request_id(fc, m, id);

    snprintf(hdr, sizeof(hdr), "%sX-Request-Id: %s\r\n", extra ? extra : "", id);
    reply_error_api(bufferevent_get_output(fc->bev), api, e, fc->head, close, hdr);
    front_account_refusal(fc, m, e, id, api, api_err_status(api, e), t0);
}

/* Refuses a request whose relay does not exist (yet) with front_answer.
 * Returns whether the connection closes after it: always, unless keep (the
 * request was read whole or its body will be). */
static bool front_refuse_ex(struct front_conn *fc, const struct h1_msg *m, enum pitot_err e,
                            uint64_t t0, bool keep, const char *extra)
{
    bool close = !keep || !loop_keepalive(fc->lp);

    front_answer(fc, m, e, t0, close, extra);
    if (close)
        front_close_after_flush(fc);
    return close;
}

/* Refuses a request whose relay does not exist (yet), closing the
 * connection after the reply. */
static void front_refuse(struct front_conn *fc, const struct h1_msg *m, enum pitot_err e,
                         uint64_t t0)
{
    front_refuse_ex(fc, m, e, t0, false, NULL);
}

/* require_auth, a request without a configured key: 401 with
 * WWW-Authenticate at once, logged, nothing sent to a backend. Like nginx,
 * the body is then read and dropped, so that the connection can serve the
 * next request (a client with a wrong key need not reconnect, and the body
 * can never be taken for a next request). The connection closes instead
 * when a body larger than limits.max_body_bytes is announced (not worth
 * reading), or the client waits for 100 Continue (it may never send the
 * body: its next bytes could be either). */
static void front_unauthorized(struct front_conn *fc, const struct h1_msg *m, size_t hl,
                               uint64_t t0)
{
    struct loop *lp = fc->lp;
    bool has_body = m->chunked || m->content_length > 0;
    bool too_large = m->content_length > 0 && (uint64_t)m->content_length > lp->cfg->max_body_bytes;
    bool close = !m->keep_alive || too_large || (has_body && m->expect_continue);

    close = front_refuse_ex(fc, m, PITOT_EUNAUTHORIZED, t0, !close, "WWW-Authenticate: Bearer\r\n");
    if (close)
        return;
    evbuffer_drain(bufferevent_get_input(fc->bev), hl);
    if (!has_body) {
        front_go_idle(fc);
        front_read_head(fc);
        return;
    }
    fc->discarded_bytes = 0;
    front_set_state(fc, FRONT_ST_DISCARD);
    front_body_start(fc);
    front_read_discard(fc);
}

/* Parses the head as it arrives (h1 sees each byte once, and refuses what
 * can no longer become a request at once); the head stays in the input buffer
 * (spans into it) until the relay copied what it needs. */
static void front_read_head(struct front_conn *fc)
{
    struct loop *lp = fc->lp;
    struct evbuffer *in = bufferevent_get_input(fc->bev);
    size_t len = evbuffer_get_length(in), look, hl;
    const char *p;
    const struct h1_msg *m;
    enum h1_result r;
    uint64_t t0;
    unsigned tier;
    int key;

    if (len == 0)
        return;
    if (fc->st == FRONT_ST_IDLE) {
        front_set_state(fc, FRONT_ST_HEAD);
        event_del(fc->timer);
        front_timer_arm(fc, lp->cfg->header_timeout_ms);
        /* t0: the request's first bytes as the kernel stamped them, else
         * (TLS, pipelined, no stamp) when this loop woke up with them, not
         * when it got round to reading them */
        fc->start_us = fc->arrived_us ? fc->arrived_us : front_loop_woke(lp);
        fc->arrived_us = 0;
    }
    look = len < lp->cfg->max_header_bytes ? len : lp->cfg->max_header_bytes;
    p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    r = h1_execute(&fc->hp, span_make(p, look), &hl);
    if (r == H1_AGAIN)
        return; /* h1 refuses a head past max_header_bytes itself */
    t0 = fc->start_us;
    if (r != H1_HEAD) {
        fc->head = false; /* not known: the error goes with its body */
        front_refuse(fc, NULL, fc->hp.err != PITOT_EOK ? fc->hp.err : PITOT_EBAD_REQUEST, t0);
        return;
    }
    m = &fc->hp.msg;
    event_del(fc->timer);
    fc->nreq++;
    fc->head = span_eq(m->method, "HEAD"); /* for the replies pitot writes itself */
    if (front_serve_local(fc, m, hl))
        return;
    /* before anything else looks at the request: no limit, queue or
     * backend learns of it without a key */
    tier = tier_resolve(lp->cfg, m, &key);
    if (lp->cfg->require_auth && key < 0) {
        front_unauthorized(fc, m, hl, t0);
        return;
    }
    if (m->content_length > 0 && (uint64_t)m->content_length > lp->cfg->max_body_bytes) {
        front_refuse(fc, m, PITOT_EBODY_TOO_LARGE, t0);
        return;
    }
    {
        /* a plain TCP client's socket may be written straight (relay_emit) */
        struct relay_client rc = { .bev = fc->bev,
                                   .direct = lp->tls == NULL || fc->admin,
                                   .peer = fc->peer,
                                   .done = front_relay_done,
                                   .ud = fc };
        fc->rl = relay_new(lp, &rc, m, t0, tier, key);
    }
    if (fc->rl == NULL) {
        front_refuse(fc, m, PITOT_ENOMEM, t0);
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
    int rc;

    if (fc->st == FRONT_ST_DISCARD) {
        /* dropped; bounded like a body that is kept */
        fc->discarded_bytes += b.len;
        if (fc->discarded_bytes <= fc->lp->cfg->max_body_bytes)
            return 0;
        fc->hp.err = PITOT_EBODY_TOO_LARGE;
        return -1;
    }
    rc = relay_body(fc->rl, b);

    if (rc < 0) {
        fc->hp.err = (enum pitot_err) - rc;
        fc->hp.reason = err_message(fc->hp.err);
        return -1;
    }
    return 0;
}

/* Feeds the buffered body bytes to the parser, whose body callback
 * (front_body_cb) takes them, until the input is used up (H1_AGAIN), the body
 * is complete (H1_DONE) or wrong (H1_ERROR). A body-less request completes
 * with an empty feed (DONE owed after HEAD). */
static enum h1_result front_feed_body(struct front_conn *fc, size_t *got)
{
    struct evbuffer *in = bufferevent_get_input(fc->bev);
    enum h1_result r;
    size_t used;

    for (;;) {
        struct evbuffer_iovec v;
        size_t avail = evbuffer_peek(in, -1, NULL, &v, 1) > 0 ? v.iov_len : 0;

        r = h1_execute(&fc->hp, span_make(avail ? v.iov_base : "", avail), &used);
        if (used)
            evbuffer_drain(in, used);
        *got += used;
        if (r == H1_ERROR || r == H1_DONE || avail == 0)
            return r;
    }
}

/* The body read so far counts for the body's clocks (see front_body_due). */
static void front_body_progress(struct front_conn *fc, size_t got)
{
    uint64_t now = clk_now_us();

    if (got) {
        fc->body_bytes += got;
        fc->body_last_us = now;
    }
    front_body_arm(fc, now);
}

static void front_read_body(struct front_conn *fc)
{
    size_t got = 0;
    enum h1_result r = front_feed_body(fc, &got);

    if (r == H1_ERROR) {
        relay_refuse(fc->rl, fc->hp.err != PITOT_EOK ? fc->hp.err : PITOT_EBAD_REQUEST, true);
        return;
    }
    if (r != H1_DONE) {
        /* More body to come: the gap restarts, the deadline does not. */
        front_body_progress(fc, got);
        return;
    }
    event_del(fc->timer);
    front_set_state(fc, FRONT_ST_PROXY);
    relay_start(fc->rl);
}

/* The body of a refused request, dropped. A malformed or oversized one, or a
 * gap over limits.body_timeout, closes the connection without a second
 * reply: the first is already on its way. */
static void front_read_discard(struct front_conn *fc)
{
    size_t got = 0;
    enum h1_result r = front_feed_body(fc, &got);

    if (r == H1_ERROR) {
        front_close_after_flush(fc);
        return;
    }
    if (r != H1_DONE) {
        front_body_progress(fc, got); /* the same clocks as a body to forward */
        return;
    }
    event_del(fc->timer);
    if (!loop_keepalive(fc->lp)) { /* a drain began meanwhile */
        front_close_after_flush(fc);
        return;
    }
    front_go_idle(fc);
    front_read_head(fc);
}

/* The relay is done with the response (relay_client.done). keep_alive: the
 * connection may serve another request; else it closes once the output is
 * flushed. */
static void front_relay_done(void *ud, bool keep_alive)
{
    struct front_conn *fc = ud;

    if (fc->st == FRONT_ST_DEAD)
        return;
    /* Called from inside the relay's own callbacks: retire, don't free. */
    relay_retire(fc->rl);
    fc->rl = NULL;
    if (!keep_alive || !loop_keepalive(fc->lp)) {
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
    case FRONT_ST_DISCARD: front_read_discard(fc); break;
    case FRONT_ST_PROXY:
        /* Reading stays on to see the client leave; a client that floods
         * pipelined bytes meanwhile is no longer read. */
        if (evbuffer_get_length(bufferevent_get_input(bev)) > fc->lp->cfg->max_header_bytes)
            bufferevent_disable(bev, EV_READ);
        break;
    case FRONT_ST_HANDSHAKE:
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

    if (fc->st == FRONT_ST_HANDSHAKE) {
        char detail[128];

        if (what & BEV_EVENT_CONNECTED) {
            front_set_state(fc, FRONT_ST_IDLE); /* the header timeout runs on */
            return;
        }
        front_tls_failed(fc, tls_handshake_reason(bev, what, detail, sizeof(detail)), detail);
        return;
    }

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
    case FRONT_ST_HANDSHAKE:
        front_tls_failed(fc, TLS_FAIL_TIMEOUT, "not complete within limits.header_timeout");
        break;
    case FRONT_ST_HEAD: front_refuse(fc, NULL, PITOT_EHEADER_TIMEOUT, 0); break;
    case FRONT_ST_BODY:
    case FRONT_ST_DISCARD:
        now = clk_now_us();
        if (now < front_body_due(fc)) { /* woken early: not due yet */
            front_body_arm(fc, now);
            break;
        }
        if (fc->st == FRONT_ST_DISCARD) {
            front_close_after_flush(fc); /* its reply is written */
            break;
        }
        relay_refuse(fc->rl, PITOT_EBODY_TIMEOUT, true);
        break;
    case FRONT_ST_IDLE:
        /* A fresh connection that never sent a byte, or keep-alive expiry. */
        front_close(fc);
        break;
    case FRONT_ST_CLOSING: front_close(fc); break;
    default: break;
    }
}
