/* load conn: one slot = one request in flight on its own TCP connection (kept
 * for the slot's next request when the response allowed keep-alive). Reads
 * the response with h1, splits SSE events with sse, classifies them with json
 * (Chat Completions, Completions, Responses and Messages alike), and
 * timestamps output events on CLOCK_MONOTONIC. */
#include "load.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "pitot/util/clock.h"
#include "pitot/io/tls.h"

enum load_slot_state {
    LOAD_SLOT_IDLE,       /* no request; may hold a kept-alive connection */
    LOAD_SLOT_CONNECTING, /* transient: TCP connect in progress, request queued */
    LOAD_SLOT_SENDING,    /* transient: request bytes not all written yet */
    LOAD_SLOT_HEAD,       /* request written (t_send set); waiting for the head */
    LOAD_SLOT_BODY,       /* reading the response body */
    LOAD_SLOT_FAILING,    /* transient: failed inside a call; reported from `defer` */
    LOAD_SLOT__COUNT
};

#define LOAD_BIT(st) (1u << (st))

/* Legal moves; load_slot_abort() may leave any state. */
static const unsigned load_slot_moves[LOAD_SLOT__COUNT] = {
    [LOAD_SLOT_IDLE] =
        LOAD_BIT(LOAD_SLOT_CONNECTING) | LOAD_BIT(LOAD_SLOT_SENDING) | LOAD_BIT(LOAD_SLOT_FAILING),
    [LOAD_SLOT_CONNECTING] = LOAD_BIT(LOAD_SLOT_SENDING) | LOAD_BIT(LOAD_SLOT_IDLE),
    [LOAD_SLOT_SENDING] = LOAD_BIT(LOAD_SLOT_HEAD) | LOAD_BIT(LOAD_SLOT_CONNECTING) |
                          LOAD_BIT(LOAD_SLOT_FAILING) | LOAD_BIT(LOAD_SLOT_IDLE),
    [LOAD_SLOT_HEAD] = LOAD_BIT(LOAD_SLOT_BODY) | LOAD_BIT(LOAD_SLOT_CONNECTING) |
                       LOAD_BIT(LOAD_SLOT_FAILING) | LOAD_BIT(LOAD_SLOT_IDLE),
    [LOAD_SLOT_BODY] = LOAD_BIT(LOAD_SLOT_IDLE),
    [LOAD_SLOT_FAILING] = LOAD_BIT(LOAD_SLOT_IDLE),
};

struct load_slot {
    struct load_run *run; /* borrowed */
    unsigned index;
    enum load_slot_state state;
    struct bufferevent *bev; /* owned; NULL without a connection */
    struct event *timer;     /* owned: the per-request timeout */
    struct event *defer;     /* owned: reports a failure found inside a call */
    enum load_err defer_err;

    /* The request. */
    uint64_t n; /* request number */
    char *req;  /* owned: request bytes, kept for one retry */
    size_t req_len;
    bool reused;            /* sent on a kept-alive connection */
    bool retried;           /* already resent once on a fresh connection */
    bool got_bytes;         /* a response byte arrived on this connection */
    uint64_t t_send_us;     /* request fully written; 0 before */
    uint64_t t_read_us;     /* the current read callback's arrival time */
    uint64_t t_last_us;     /* arrival of the last response byte */
    uint64_t t_prev_out_us; /* arrival of the previous output event */

    /* The response. */
    struct h1_parser h1;
    int status;             /* 0 before the head */
    bool keep_alive;        /* the head allows reuse */
    bool is_sse;            /* Content-Type: text/event-stream */
    bool reusable;          /* complete, keep-alive, nothing trailing */
    enum load_err body_err; /* why on_body stopped the parser */
    struct sse_scanner sse;
    char *ev; /* owned: an SSE event split across reads */
    size_t ev_len, ev_cap;
    char *body; /* owned: a non-SSE body */
    size_t body_len, body_cap;
    bool saw_done;        /* data: [DONE] */
    bool saw_end;         /* the last JSON event was the API's final one
                             (response.completed / .incomplete, message_stop) */
    bool saw_error_event; /* an event with a top-level "error" */
    uint64_t events;      /* output-carrying events */
    bool has_ttft;
    uint64_t ttft_us;
    struct load_vec gaps;                     /* inter-output-event gaps, microseconds */
    int64_t prompt_tokens, completion_tokens; /* -1 unknown */
    enum json_finish finish;
};

static void load_on_read_head(struct bufferevent *bev, void *arg);
static void load_on_read_body(struct bufferevent *bev, void *arg);
static void load_on_read_idle(struct bufferevent *bev, void *arg);
static void load_on_write(struct bufferevent *bev, void *arg);
static void load_on_event(struct bufferevent *bev, short what, void *arg);
static void load_on_event_idle(struct bufferevent *bev, short what, void *arg);
static void load_slot_connect(struct load_slot *s);
static int load_on_body(void *ud, struct span b);

static void load_slot_set_state(struct load_slot *s, enum load_slot_state to)
{
    assert(load_slot_moves[s->state] & LOAD_BIT(to));
    s->state = to;
}

unsigned load_slot_index(const struct load_slot *s)
{
    return s->index;
}

static void load_slot_drop_conn(struct load_slot *s)
{
    if (s->bev) {
        bufferevent_free(s->bev);
        s->bev = NULL;
    }
}

static void load_slot_reset_response(struct load_slot *s)
{
    h1_init(&s->h1, H1_RESPONSE, NULL, load_on_body, s);
    sse_scan_init(&s->sse);
    s->status = 0;
    s->keep_alive = false;
    s->is_sse = false;
    s->reusable = false;
    s->body_err = LOAD_ENONE;
    s->ev_len = 0;
    s->body_len = 0;
    s->saw_done = false;
    s->saw_end = false;
    s->saw_error_event = false;
    s->events = 0;
    s->has_ttft = false;
    s->ttft_us = 0;
    s->gaps.n = 0;
    s->prompt_tokens = -1;
    s->completion_tokens = -1;
    s->finish = JSON_FINISH_NONE;
    s->got_bytes = false;
    s->t_send_us = 0;
    s->t_read_us = 0;
    s->t_last_us = 0;
    s->t_prev_out_us = 0;
}

/* Ends the request with err: hands the result to the run, which may start the
 * slot's next request at once. Callers return right after. */
static void load_slot_finish(struct load_slot *s, enum load_err err)
{
    struct load_result r;

    evtimer_del(s->timer);
    if (s->reusable && s->bev) {
        /* Watch the idle connection: the server may close it meanwhile. */
        bufferevent_setcb(s->bev, load_on_read_idle, NULL, load_on_event_idle, s);
    } else {
        load_slot_drop_conn(s);
    }
    memset(&r, 0, sizeof(r));
    r.n = s->n;
    r.status = s->status;
    r.err = err;
    r.has_ttft = s->has_ttft;
    r.ttft_us = s->ttft_us;
    r.has_e2e = s->status != 0 && s->t_send_us != 0 && s->t_last_us >= s->t_send_us;
    r.e2e_us = r.has_e2e ? s->t_last_us - s->t_send_us : 0;
    r.measured_events = s->is_sse;
    r.events = s->events;
    r.gaps_us = s->gaps.v;
    r.ngaps = s->gaps.n;
    r.prompt_tokens = s->prompt_tokens;
    r.completion_tokens = s->completion_tokens;
    r.finish = s->finish;
    load_slot_set_state(s, LOAD_SLOT_IDLE);
    load_run_done(s->run, s, &r);
}

static void load_on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct load_slot *s = arg;

    (void)fd;
    (void)what;
    load_slot_finish(s, s->defer_err);
}

/* A failure found while the caller's frame is still running (e.g. inside
 * load_slot_start(), called from load_run_done()): report it from the loop so
 * that finishing never recurses into starting. */
static void load_slot_fail_later(struct load_slot *s, enum load_err err)
{
    load_slot_drop_conn(s);
    s->defer_err = err;
    load_slot_set_state(s, LOAD_SLOT_FAILING);
    event_active(s->defer, EV_TIMEOUT, 1);
}

static void load_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct load_slot *s = arg;

    (void)fd;
    (void)what;
    if (s->state == LOAD_SLOT_FAILING)
        return; /* its own report is already queued */
    s->reusable = false;
    load_slot_finish(s, LOAD_ETIMEOUT);
}

struct load_slot *load_slot_new(struct load_run *run, unsigned index)
{
    struct load_slot *s = calloc(1, sizeof(*s));
    struct event_base *base = load_run_base(run);

    if (s == NULL)
        return NULL;
    s->run = run;
    s->index = index;
    s->state = LOAD_SLOT_IDLE;
    s->timer = evtimer_new(base, load_on_timeout, s);
    s->defer = event_new(base, -1, 0, load_on_defer, s);
    if (s->timer == NULL || s->defer == NULL) {
        load_slot_free(s);
        return NULL;
    }
    load_slot_reset_response(s);
    return s;
}

void load_slot_abort(struct load_slot *s)
{
    evtimer_del(s->timer);
    event_del(s->defer);
    load_slot_drop_conn(s);
    s->state = LOAD_SLOT_IDLE;
}

void load_slot_free(struct load_slot *s)
{
    if (s == NULL)
        return;
    load_slot_abort(s);
    if (s->timer)
        event_free(s->timer);
    if (s->defer)
        event_free(s->defer);
    free(s->req);
    free(s->ev);
    free(s->body);
    load_vec_release(&s->gaps);
    free(s);
}

void load_slot_start(struct load_slot *s, uint64_t n, char *req, size_t req_len)
{
    const struct load_opts *o = load_run_opts(s->run);
    struct timeval tv;

    free(s->req);
    s->req = req;
    s->req_len = req_len;
    s->n = n;
    s->retried = false;
    load_slot_reset_response(s);
    tv.tv_sec = (time_t)(o->timeout_us / 1000000u);
    tv.tv_usec = (suseconds_t)(o->timeout_us % 1000000u);
    evtimer_add(s->timer, &tv);
    if (s->bev == NULL) {
        s->reused = false;
        load_slot_connect(s);
        return;
    }
    s->reused = true;
    bufferevent_setcb(s->bev, load_on_read_head, load_on_write, load_on_event, s);
    load_slot_set_state(s, LOAD_SLOT_SENDING);
    if (bufferevent_write(s->bev, s->req, s->req_len) < 0)
        load_slot_fail_later(s, LOAD_ERESET);
}

/* https: a TLS connection whose handshake follows the connect; TCP_NODELAY
 * once the socket exists, before its first byte. */
static void load_slot_connect_tls(struct load_slot *s, const struct sockaddr *addr, socklen_t alen)
{
    int one = 1;

    s->bev = tls_client_bev(load_run_tls(s->run), load_run_base(s->run));
    if (s->bev == NULL) {
        load_slot_fail_later(s, LOAD_ECONNECT);
        return;
    }
    bufferevent_setcb(s->bev, load_on_read_head, load_on_write, load_on_event, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    load_slot_set_state(s, LOAD_SLOT_CONNECTING);
    if (bufferevent_write(s->bev, s->req, s->req_len) < 0 ||
        bufferevent_socket_connect(s->bev, addr, (int)alen) < 0) {
        load_slot_fail_later(s, LOAD_ECONNECT);
        return;
    }
    (void)setsockopt(bufferevent_getfd(s->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Opens a fresh connection (TCP_NODELAY before connect) and queues the request. */
static void load_slot_connect(struct load_slot *s)
{
    socklen_t alen;
    const struct sockaddr *addr = load_run_addr(s->run, s->index, &alen);
    int one = 1;
    evutil_socket_t fd;

    load_slot_drop_conn(s);
    if (load_run_tls(s->run) != NULL) {
        load_slot_connect_tls(s, addr, alen);
        return;
    }
    fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        load_slot_fail_later(s, LOAD_ECONNECT);
        return;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->bev = bufferevent_socket_new(load_run_base(s->run), fd, BEV_OPT_CLOSE_ON_FREE);
    if (s->bev == NULL) {
        close(fd);
        load_slot_fail_later(s, LOAD_ECONNECT);
        return;
    }
    bufferevent_setcb(s->bev, load_on_read_head, load_on_write, load_on_event, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    load_slot_set_state(s, LOAD_SLOT_CONNECTING);
    if (bufferevent_write(s->bev, s->req, s->req_len) < 0 ||
        bufferevent_socket_connect(s->bev, addr, (int)alen) < 0)
        load_slot_fail_later(s, LOAD_ECONNECT);
}

/* A kept-alive connection may have been closed by the server just as we reused
 * it; like browsers, resend once on a fresh connection if nothing came back. */
static bool load_slot_retry(struct load_slot *s)
{
    if (!s->reused || s->retried || s->got_bytes)
        return false;
    s->retried = true;
    s->reused = false;
    load_slot_reset_response(s);
    load_slot_connect(s);
    return true;
}

static void load_on_write(struct bufferevent *bev, void *arg)
{
    struct load_slot *s = arg;

    (void)bev;
    if (s->state == LOAD_SLOT_SENDING) {
        s->t_send_us = clk_now_us();
        load_slot_set_state(s, LOAD_SLOT_HEAD);
    }
}

/* Usage, finish reason, errors, and for SSE the output timing of one object. */
static void load_slot_note(struct load_slot *s, const struct json_resp *jr, bool streaming)
{
    if (jr->is_error)
        s->saw_error_event = true;
    if (jr->has_usage) {
        if (jr->prompt_tokens >= 0)
            s->prompt_tokens = jr->prompt_tokens;
        if (jr->completion_tokens >= 0)
            s->completion_tokens = jr->completion_tokens;
    } else if (jr->has_timings) {
        /* llama.cpp native: prompt_n excludes the cached prefix. */
        if (jr->timings_prompt_n >= 0)
            s->prompt_tokens =
                jr->timings_prompt_n + (jr->timings_cache_n > 0 ? jr->timings_cache_n : 0);
        if (jr->timings_predicted_n >= 0)
            s->completion_tokens = jr->timings_predicted_n;
    }
    if (jr->finish != JSON_FINISH_NONE)
        s->finish = jr->finish;
    if (!streaming || !jr->has_output)
        return;
    if (s->events == 0) {
        s->has_ttft = true;
        s->ttft_us = s->t_read_us - s->t_send_us;
    } else if (load_vec_push(&s->gaps, s->t_read_us - s->t_prev_out_us) < 0) {
        s->body_err = LOAD_EPROTOCOL; /* out of memory: checked by the caller */
    }
    s->t_prev_out_us = s->t_read_us;
    s->events++;
}

/* json_paths_visit() callback: keeps the "type" string's raw bytes. */
static void load_type_found(void *ud, size_t path, struct span raw, bool is_string)
{
    (void)path;
    if (is_string)
        *(struct span *)ud = raw;
}

/* True when ev, which held a JSON object, is the event that ends a complete
 * stream of the Responses or Messages API: response.completed or
 * response.incomplete (response.failed is an error), message_stop. Named by
 * its `event:` line, which those servers send, else by its data's "type". */
static bool load_is_end_event(struct load_slot *s, enum load_api api, const struct sse_event *ev)
{
    static const char *const type_path[] = { "type" };
    struct span ty = ev->name;

    if (ty.len == 0)
        json_paths_visit(ev->data, load_run_toks(s->run), type_path, 1, load_type_found, &ty);
    if (api == LOAD_API_RESPONSES)
        return span_eq(ty, "response.completed") || span_eq(ty, "response.incomplete");
    return span_eq(ty, "message_stop");
}

static void load_slot_sse_event(struct load_slot *s, struct span event)
{
    enum load_api api = load_run_opts(s->run)->api;
    struct sse_event ev;
    struct json_resp jr;

    sse_event_decode(event, load_run_scratch(s->run), LOAD_SCRATCH_BYTES, &ev);
    if (!ev.has_data)
        return;
    if (ev.done) {
        s->saw_done = true;
        return;
    }
    if (json_resp_parse(ev.data, load_run_toks(s->run), &jr) < 0 || !jr.valid)
        return; /* not JSON: neither output nor an error object */
    load_slot_note(s, &jr, true);
    if (api == LOAD_API_RESPONSES || api == LOAD_API_MESSAGES)
        s->saw_end = load_is_end_event(s, api, &ev);
}

/* Appends to a capped growable buffer. */
static int load_buf_add(char **buf, size_t *len, size_t *cap, size_t max, struct span b)
{
    if (*len + b.len > max)
        return -1;
    if (*len + b.len > *cap) {
        size_t ncap = *cap ? *cap : 4096;
        char *nb;

        while (ncap < *len + b.len)
            ncap *= 2;
        if (ncap > max)
            ncap = max;
        nb = realloc(*buf, ncap);
        if (nb == NULL)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, b.p, b.len);
    *len += b.len;
    return 0;
}

/* De-chunked SSE bytes in any split. An event wholly inside `b` is decoded in
 * place; one split across reads is copied first. */
static int load_on_body_sse(struct load_slot *s, struct span b)
{

    while (b.len > 0) {
        size_t used;
        int r = sse_scan(&s->sse, b, &used);
        struct span part = span_make(b.p, used);

        if (r == SPAN_OK && s->ev_len == 0) {
            load_slot_sse_event(s, part);
        } else {
            if (load_buf_add(&s->ev, &s->ev_len, &s->ev_cap, LOAD_EVENT_MAX_BYTES, part) < 0) {
                s->body_err = LOAD_EPROTOCOL;
                return -1;
            }
            if (r == SPAN_OK) {
                load_slot_sse_event(s, span_make(s->ev, s->ev_len));
                s->ev_len = 0;
            }
        }
        if (s->body_err != LOAD_ENONE)
            return -1;
        b.p += used;
        b.len -= used;
    }
    return 0;
}

/* h1 body callback: SSE is consumed as it arrives, anything else kept whole. */
static int load_on_body(void *ud, struct span b)
{
    struct load_slot *s = ud;

    if (s->is_sse)
        return load_on_body_sse(s, b);
    if (load_buf_add(&s->body, &s->body_len, &s->body_cap, LOAD_BODY_MAX_BYTES, b) < 0) {
        s->body_err = LOAD_EPROTOCOL;
        return -1;
    }
    return 0;
}

/* Whether an SSE body whose framing ended had its API's end: the final event
 * of a Responses or Messages stream; [DONE] for chat and completions under
 * /v1/; nothing for other routes (llama.cpp's native stream). */
static bool load_slot_stream_ended(const struct load_slot *s, const struct load_opts *o)
{
    if (o->api == LOAD_API_RESPONSES || o->api == LOAD_API_MESSAGES)
        return s->saw_end;
    return !o->openai_route || s->saw_done;
}

/* The response message ended (framing complete, or EOF-delimited at EOF). */
static void load_slot_complete(struct load_slot *s, bool reusable)
{
    const struct load_opts *o = load_run_opts(s->run);
    enum load_err err = LOAD_ENONE;

    s->reusable = reusable && s->keep_alive;
    if (s->status < 200 || s->status >= 300) {
        err = LOAD_EHTTP_STATUS;
    } else if (s->is_sse) {
        if (s->saw_error_event)
            err = LOAD_EUPSTREAM_ERROR_EVENT;
        else if (!load_slot_stream_ended(s, o))
            err = LOAD_EINCOMPLETE;
    } else if (s->body_len > 0) {
        struct json_resp jr;

        if (json_resp_parse(span_make(s->body, s->body_len), load_run_toks(s->run), &jr) == 0 &&
            jr.valid) {
            load_slot_note(s, &jr, false);
            if (jr.is_error)
                err = LOAD_EUPSTREAM_ERROR_EVENT;
        }
    }
    load_slot_finish(s, err);
}

/* Feeds buffered body bytes to h1 without copying (one evbuffer chunk at a
 * time); completes or fails the request when the message ends. */
static void load_slot_feed_body(struct load_slot *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);

    for (;;) {
        struct evbuffer_iovec v;
        struct span sp = span_make(NULL, 0);
        size_t used;
        enum h1_result r;

        if (evbuffer_peek(in, -1, NULL, &v, 1) > 0)
            sp = span_make(v.iov_base, v.iov_len);
        r = h1_execute(&s->h1, sp, &used);
        if (used)
            evbuffer_drain(in, used);
        if (r == H1_DONE) {
            /* Bytes after the message: the server is confused; don't reuse. */
            load_slot_complete(s, evbuffer_get_length(in) == 0);
            return;
        }
        if (r == H1_ERROR) {
            s->reusable = false;
            load_slot_finish(s, s->body_err != LOAD_ENONE ? s->body_err : LOAD_EPROTOCOL);
            return;
        }
        if (sp.len == 0)
            return; /* H1_AGAIN with everything consumed */
    }
}

static bool load_is_sse(const struct h1_msg *m)
{
    const struct h1_header *h = h1_header_find(m, "content-type");
    static const char want[] = "text/event-stream";
    struct span v;

    if (h == NULL)
        return false;
    v = h->value;
    return v.len >= sizeof(want) - 1 && span_ieq(span_make(v.p, sizeof(want) - 1), want);
}

static void load_on_read_head(struct bufferevent *bev, void *arg)
{
    struct load_slot *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    s->t_read_us = clk_now_us();
    if (evbuffer_get_length(in) == 0)
        return;
    s->got_bytes = true;
    s->t_last_us = s->t_read_us;
    if (s->state == LOAD_SLOT_SENDING) {
        /* Answered before our write callback ran: the request was out. */
        s->t_send_us = s->t_read_us;
        load_slot_set_state(s, LOAD_SLOT_HEAD);
    }
    for (;;) {
        size_t len = evbuffer_get_length(in), look, hl;
        const char *p;
        enum h1_result r;

        if (len == 0)
            return;
        look = len < LOAD_HEAD_MAX_BYTES ? len : LOAD_HEAD_MAX_BYTES;
        p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        /* the head so far, from its first byte: h1 parses only what is new */
        r = h1_execute(&s->h1, span_make(p, look), &hl);
        if (r == H1_AGAIN)
            return;
        if (r != H1_HEAD || s->h1.msg.status == 101) {
            load_slot_finish(s, LOAD_EPROTOCOL);
            return;
        }
        s->status = s->h1.msg.status;
        s->keep_alive = s->h1.msg.keep_alive;
        s->is_sse = load_is_sse(&s->h1.msg);
        evbuffer_drain(in, hl); /* the head's spans die here; copied what we need */
        if (s->status >= 100 && s->status < 200) {
            /* Interim response (100 Continue, 103 Early Hints): skip it. */
            h1_reset(&s->h1);
            s->status = 0;
            continue;
        }
        load_slot_set_state(s, LOAD_SLOT_BODY);
        bufferevent_setcb(bev, load_on_read_body, load_on_write, load_on_event, s);
        load_slot_feed_body(s);
        return;
    }
}

static void load_on_read_body(struct bufferevent *bev, void *arg)
{
    struct load_slot *s = arg;

    s->t_read_us = clk_now_us();
    if (evbuffer_get_length(bufferevent_get_input(bev)) == 0)
        return;
    s->t_last_us = s->t_read_us;
    load_slot_feed_body(s);
}

static void load_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct load_slot *s = arg;

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        load_slot_set_state(s, LOAD_SLOT_SENDING);
        return;
    }
    switch (s->state) {
    case LOAD_SLOT_CONNECTING: load_slot_finish(s, LOAD_ECONNECT); return;
    case LOAD_SLOT_SENDING:
    case LOAD_SLOT_HEAD:
        if (!load_slot_retry(s))
            load_slot_finish(s, LOAD_ERESET);
        return;
    case LOAD_SLOT_BODY:
        if (what & BEV_EVENT_EOF) {
            /* Bodies without a length end here; others were cut short. */
            if (h1_finish(&s->h1) == H1_DONE)
                load_slot_complete(s, false);
            else
                load_slot_finish(s, LOAD_EINCOMPLETE);
        } else {
            load_slot_finish(s, LOAD_ERESET);
        }
        return;
    default: return;
    }
}

/* An idle kept-alive connection: any byte or close ends it. */
static void load_on_read_idle(struct bufferevent *bev, void *arg)
{
    struct load_slot *s = arg;

    (void)bev;
    load_slot_drop_conn(s);
}

static void load_on_event_idle(struct bufferevent *bev, short what, void *arg)
{
    struct load_slot *s = arg;

    (void)bev;
    (void)what;
    load_slot_drop_conn(s);
}
