/* sim_conn: the simulator's HTTP/1.1 server side: one bufferevent per client,
 * request heads and bodies through h1, keep-alive (5 s idle as cpp-httplib and
 * uvicorn do; the flavor's response limit, 100 for llama-server), and the
 * deferred close. */
#include "sim.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>

#include "pitot/util/clock.h"
#include "pitot/util/err.h"
#include "pitot/format/http1.h"

#define SIM_HEAD_MAX (16u << 10) /* bytes of a request head */
#define SIM_BODY_MAX (8u << 20)  /* bytes of a request body */
#define SIM_INPUT_MAX (1u << 20) /* pipelined bytes kept while busy */
#define SIM_IDLE_S 5             /* keep-alive idle timeout */
#define SIM_FLUSH_S 30           /* how long a close waits for the reader */

enum sim_conn_state {
    SIM_CONN_IDLE,    /* waiting for a request head; idle timeout armed */
    SIM_CONN_BODY,    /* reading a request body */
    SIM_CONN_BUSY,    /* a generation request is queued or running */
    SIM_CONN_RESUME,  /* transient: a generation ended; the kick resumes parsing */
    SIM_CONN_CLOSING, /* flushing output, then closing */
};

struct sim_conn {
    enum sim_conn_state state;
    struct sim_srv *srv;     /* borrowed */
    struct bufferevent *bev; /* owned; closes the socket */
    struct event *kick;      /* owned: deferred work once an exchange ended */
    struct evbuffer *body;   /* owned: the current request body, capped */
    struct sim_req *req;     /* owned; NULL when no generation */
    struct h1_parser parser;
    unsigned nresp;    /* responses sent on this connection */
    int last_status;   /* of the latest immediate response */
    bool keep_alive;   /* llhttp's verdict for the current request */
    bool client_close; /* the request said Connection: close */
    uint64_t t_req_us; /* the current request's head arrived */
    char method[16];
    char path[SIM_PATH_MAX]; /* target, query included */
    char origin[SIM_ORIGIN_MAX];
    char peer[64]; /* "ip:port" for log lines */
    TAILQ_ENTRY(sim_conn) link;
};

static void conn_process(struct sim_conn *c);

static void conn_set_state(struct sim_conn *c, enum sim_conn_state to)
{
    switch (to) {
    case SIM_CONN_IDLE:
        assert(c->state != SIM_CONN_CLOSING);
        if (c->state != SIM_CONN_IDLE)
            h1_reset(&c->parser); /* the next request's head starts */
        break;
    case SIM_CONN_BODY: assert(c->state == SIM_CONN_IDLE); break;
    case SIM_CONN_BUSY: assert(c->state == SIM_CONN_BODY); break;
    case SIM_CONN_RESUME: assert(c->state == SIM_CONN_BUSY); break;
    case SIM_CONN_CLOSING: break;
    }
    c->state = to;
}

static void conn_free(struct sim_conn *c)
{
    if (c->req) {
        sim_sched_cancel(c->req);
        sim_req_free(c->req);
    }
    TAILQ_REMOVE(&c->srv->conns, c, link);
    event_free(c->kick);
    bufferevent_free(c->bev);
    evbuffer_free(c->body);
    free(c);
}

void sim_conn_free_all(struct sim_srv *s)
{
    struct sim_conn *c;

    while ((c = TAILQ_FIRST(&s->conns)) != NULL)
        conn_free(c);
}

static void conn_idle_timeout(struct sim_conn *c)
{
    struct timeval tv = { SIM_IDLE_S, 0 };

    bufferevent_set_timeouts(c->bev, &tv, NULL);
}

struct sim_srv *sim_conn_srv(const struct sim_conn *c)
{
    return c->srv;
}

const char *sim_conn_origin(const struct sim_conn *c)
{
    return c->origin;
}

size_t sim_conn_pending(const struct sim_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* The flavor's keep-alive limit is reached once n responses were sent. */
static bool conn_keepalive_over(const struct sim_conn *c, unsigned n)
{
    unsigned max = c->srv->flavor->keepalive_max;

    return max != 0 && n >= max;
}

bool sim_conn_announce_close(const struct sim_conn *c)
{
    return c->client_close || conn_keepalive_over(c, c->nresp + 1);
}

void sim_conn_attach(struct sim_conn *c, struct sim_req *r)
{
    assert(c->req == NULL);
    c->req = r;
    conn_set_state(c, SIM_CONN_BUSY);
    /* No idle timeout while queued or generating: waiting is legitimate. */
    bufferevent_set_timeouts(c->bev, NULL, NULL);
}

void sim_conn_log(struct sim_conn *c, int status, int64_t tokens, const char *outcome)
{
    size_t plen = strcspn(c->path, "?");
    uint64_t ms = (clk_now_us() - c->t_req_us) / 1000;

    fprintf(stderr, "pitot-sim: %s %s %.*s %d tokens=%lld outcome=%s ms=%llu\n", c->peer, c->method,
            (int)plen, c->path, status, (long long)tokens, outcome, (unsigned long long)ms);
}

void sim_conn_write(struct sim_conn *c, struct evbuffer *data)
{
    bufferevent_write_buffer(c->bev, data);
}

void sim_conn_chunk(struct sim_conn *c, struct evbuffer *data)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t n = evbuffer_get_length(data);

    evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_add_buffer(out, data);
    evbuffer_add(out, "\r\n", 2);
}

void sim_conn_chunk_end(struct sim_conn *c)
{
    bufferevent_write(c->bev, "0\r\n\r\n", 5);
}

void sim_conn_stream_done(struct sim_conn *c, bool close)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_chunk_end(c);
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add(b, "0\r\n\r\n", 5);
    sim_conn_respond(c, b, 200, close);
    evbuffer_free(b);
}

void sim_conn_close_after_flush(struct sim_conn *c)
{
    struct timeval tv = { SIM_FLUSH_S, 0 };

    if (c->state == SIM_CONN_CLOSING)
        return;
    conn_set_state(c, SIM_CONN_CLOSING);
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_set_timeouts(c->bev, NULL, &tv);
    /* Never free here: a caller's frame (a timer, the parser) may still use
     * the connection. The kick or the drained-write callback closes it. */
    if (sim_conn_pending(c) == 0)
        event_active(c->kick, 0, 0);
}

void sim_conn_respond(struct sim_conn *c, struct evbuffer *resp, int status, bool close)
{
    c->nresp++;
    c->last_status = status;
    bufferevent_write_buffer(c->bev, resp);
    if (c->state == SIM_CONN_CLOSING)
        return; /* already on its way out; the response is flushed first */
    if (close || c->client_close || !c->keep_alive || conn_keepalive_over(c, c->nresp)) {
        sim_conn_close_after_flush(c);
    } else if (c->req) {
        /* From the scheduler: resume parsing outside its frame. */
        conn_set_state(c, SIM_CONN_RESUME);
        event_active(c->kick, 0, 0);
    } else {
        conn_set_state(c, SIM_CONN_IDLE);
        conn_idle_timeout(c);
    }
}

/* A response of our own (not the flavor's): /sim/stats and HTTP framing errors. */
static void conn_respond_plain(struct sim_conn *c, int status, const char *ctype, const char *body,
                               bool close)
{
    struct evbuffer *b = evbuffer_new();
    size_t n = strlen(body);

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    close = close || sim_conn_announce_close(c);
    evbuffer_add_printf(b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n%s",
                        status, err_reason_phrase(status), ctype, n,
                        close ? "Connection: close\r\n" : "Keep-Alive: timeout=5, max=100\r\n",
                        body);
    sim_conn_respond(c, b, status, close);
    evbuffer_free(b);
}

static void conn_sim_stats(struct sim_conn *c)
{
    const struct sim_srv *s = c->srv;
    char body[512];

    snprintf(body, sizeof(body),
             "{\"requests\":%llu,\"completed\":%llu,\"cancelled\":%llu,\"died\":%llu,"
             "\"tokens_sent\":%llu,\"in_queue\":%d,\"busy\":%d}",
             (unsigned long long)s->stats.requests, (unsigned long long)s->stats.completed,
             (unsigned long long)s->stats.cancelled, (unsigned long long)s->stats.died,
             (unsigned long long)s->stats.tokens_sent, s->queued, s->busy);
    conn_respond_plain(c, 200, "application/json", body, false);
}

static bool conn_loading(const struct sim_conn *c)
{
    const struct sim_srv *s = c->srv;

    return s->conf.loading_ms > 0 &&
           clk_now_us() - s->start_us < (uint64_t)s->conf.loading_ms * 1000;
}

static void conn_dispatch(struct sim_conn *c)
{
    struct sim_http h;
    size_t blen = evbuffer_get_length(c->body);
    char *q = strchr(c->path, '?');

    h.method = span_cstr(c->method);
    h.path = q ? span_make(c->path, (size_t)(q - c->path)) : span_cstr(c->path);
    h.query = q ? span_cstr(q + 1) : span_make("", 0);
    h.body = blen ? span_make((const char *)evbuffer_pullup(c->body, -1), blen) : span_make("", 0);

    /* The simulator's own window, outside the imitated server (even loading). */
    if (span_eq(h.path, "/sim/stats") && span_eq(h.method, "GET"))
        conn_sim_stats(c);
    else if (conn_loading(c))
        c->srv->flavor->loading(c, &h);
    else
        c->srv->flavor->route(c, &h);
    if (c->req == NULL)
        sim_conn_log(c, c->last_status, 0, c->last_status < 400 ? "ok" : "error");
}

static int conn_on_body(void *ud, struct span b)
{
    struct sim_conn *c = ud;

    if (evbuffer_get_length(c->body) + b.len > SIM_BODY_MAX) {
        c->parser.err = PITOT_EBODY_TOO_LARGE;
        c->parser.reason = "request body too large";
        return -1;
    }
    return evbuffer_add(c->body, b.p, b.len);
}

static void conn_copy(char *dst, size_t cap, struct span s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;

    memcpy(dst, s.p, n);
    dst[n] = '\0';
}

/* Keeps what the rest of the exchange needs from the head before the head's
 * bytes are drained. */
static void conn_take_head(struct sim_conn *c)
{
    const struct h1_msg *m = &c->parser.msg;
    const struct h1_header *h;

    conn_copy(c->method, sizeof(c->method), m->method);
    conn_copy(c->path, sizeof(c->path), m->url);
    c->keep_alive = m->keep_alive;
    c->client_close = false;
    h = h1_header_find(m, "connection");
    if (h && memmem(h->value.p, h->value.len, "close", 5) != NULL)
        c->client_close = true;
    h = h1_header_find(m, "origin");
    if (h)
        conn_copy(c->origin, sizeof(c->origin), h->value);
    else
        c->origin[0] = '\0';
}

static void conn_framing_error(struct sim_conn *c, enum pitot_err e)
{
    int status = err_status(e);
    char body[256];

    snprintf(body, sizeof(body), "{\"error\":{\"code\":%d,\"message\":\"%s\",\"type\":\"%s\"}}",
             status, err_message(e), "invalid_request_error");
    if (c->method[0] == '\0')
        snprintf(c->method, sizeof(c->method), "-");
    conn_respond_plain(c, status, "application/json; charset=utf-8", body, true);
    sim_conn_log(c, status, 0, err_label(e));
}

/* Parses as many requests as the input holds; stops while one is generating. */
static void conn_process(struct sim_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    while (c->state == SIM_CONN_IDLE || c->state == SIM_CONN_BODY) {
        size_t avail = evbuffer_get_length(in), used = 0;
        enum h1_result r;

        if (c->state == SIM_CONN_IDLE) {
            size_t n = avail < SIM_HEAD_MAX ? avail : SIM_HEAD_MAX, hl;
            const char *p;

            if (avail == 0)
                return;
            p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
            /* the head so far, from its first byte: h1 parses what is new */
            r = h1_execute(&c->parser, span_make(p, n), &hl);
            if (r == H1_AGAIN)
                return;
            c->t_req_us = clk_now_us();
            if (r == H1_ERROR) {
                c->method[0] = '\0';
                c->path[0] = '\0';
                conn_framing_error(c, c->parser.err);
                return;
            }
            conn_take_head(c);
            evbuffer_drain(in, hl);
            evbuffer_drain(c->body, evbuffer_get_length(c->body));
            conn_set_state(c, SIM_CONN_BODY);
            if (c->parser.msg.content_length > (int64_t)SIM_BODY_MAX) {
                conn_framing_error(c, PITOT_EBODY_TOO_LARGE);
                return;
            }
            if (c->parser.msg.expect_continue)
                bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            continue;
        }

        /* SIM_CONN_BODY: feed the first contiguous extent; the head is gone. */
        {
            struct evbuffer_iovec v = { NULL, 0 };

            if (avail)
                evbuffer_peek(in, -1, NULL, &v, 1);
            r = h1_execute(&c->parser, span_make(v.iov_base, v.iov_len), &used);
        }
        if (r == H1_ERROR) {
            conn_framing_error(c, c->parser.err);
            return;
        }
        evbuffer_drain(in, used);
        if (r == H1_AGAIN) {
            if (used == 0)
                return;
            continue;
        }
        /* H1_DONE: a whole request. */
        conn_dispatch(c);
        if (c->state == SIM_CONN_BODY)
            sim_conn_close_after_flush(c); /* nothing answered: never loop on it */
    }
    if (c->state == SIM_CONN_BUSY && evbuffer_get_length(in) > SIM_INPUT_MAX) {
        /* Pipelining beyond any reason: give up on this client. */
        sim_sched_cancel(c->req);
        sim_conn_close_after_flush(c);
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_process(arg);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct sim_conn *c = arg;

    (void)bev;
    if (c->state == SIM_CONN_CLOSING && sim_conn_pending(c) == 0)
        conn_free(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct sim_conn *c = arg;

    (void)bev;
    (void)what;
    /* EOF, error or timeout: the client is gone or idle; a generation still
     * attached is cancelled (its slot freed at once) by conn_free(). */
    conn_free(c);
}

static void conn_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sim_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->state == SIM_CONN_CLOSING) {
        if (sim_conn_pending(c) == 0)
            conn_free(c);
        return;
    }
    if (c->state == SIM_CONN_RESUME) {
        sim_req_free(c->req);
        c->req = NULL;
        conn_set_state(c, SIM_CONN_IDLE);
        conn_idle_timeout(c);
        conn_process(c);
    }
}

static void conn_peer(struct sim_conn *c, int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%u", host, port);
}

int sim_conn_accept(struct sim_srv *s, int fd)
{
    struct sim_conn *c = calloc(1, sizeof(*c));
    int one = 1;

    if (c == NULL) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->srv = s;
    c->state = SIM_CONN_IDLE;
    conn_peer(c, fd);
    snprintf(c->method, sizeof(c->method), "-");
    c->body = evbuffer_new();
    c->kick = event_new(s->base, -1, 0, conn_kick_cb, c);
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (c->body == NULL || c->kick == NULL || c->bev == NULL) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            close(fd);
        if (c->kick)
            event_free(c->kick);
        if (c->body)
            evbuffer_free(c->body);
        free(c);
        return -1;
    }
    {
        struct h1_limits lim = { H1_MAX_HEADERS, SIM_HEAD_MAX, SIM_HEAD_MAX };
        h1_init(&c->parser, H1_REQUEST, &lim, conn_on_body, c);
    }
    TAILQ_INSERT_TAIL(&s->conns, c, link);
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    conn_idle_timeout(c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return 0;
}
