/* relay: one request through a backend. The response is relayed as it comes:
 * SSE event by event (each event leaves in its own chunk the moment its blank
 * line arrives, and is timestamped then), other bodies byte range by byte
 * range. A partial event is staged only until its end arrives. */
#include "pitot/serve/relay.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "pitot/format/api.h"
#include "pitot/measure/access_log.h"
#include "pitot/route/balancer.h"
#include "pitot/format/config.h"
#include "pitot/util/clock.h"
#include "pitot/serve/reply.h"
#include "pitot/format/json.h"
#include "pitot/measure/metrics.h"
#include "pitot/measure/meter.h"
#include "pitot/route/queue.h"
#include "pitot/route/ratelimit.h"
#include "pitot/route/ratelimit_redis.h"
#include "pitot/route/router.h"
#include "pitot/measure/otlp.h"
#include "pitot/format/sse.h"
#include "pitot/route/tier.h"
#include "pitot/io/upstream.h"
#include "pitot/serve/loop.h"
#include "pitot/util/sock.h"

#define RELAY_PATH_LOG_MAX 512
#define RELAY_STAGE_MIN 4096
#define RELAY_MAX_INTERIM 8 /* 1xx responses before the final one; more is an attack */

enum relay_state {
    RELAY_ST_BODY,    /* reading the client's request body */
    RELAY_ST_QUEUED,  /* every eligible backend is saturated: held in the overload queue */
    RELAY_ST_CONNECT, /* connecting to the backend */
    RELAY_ST_WAIT,    /* request sent, waiting for the response head */
    RELAY_ST_STREAM,  /* relaying the response body */
    RELAY_ST_FLUSH,   /* response complete, client output draining (transient) */
    RELAY_ST_DONE,    /* accounted; the front frees us */
};

struct relay {
    struct relay_client client; /* the client's connection, and our owner to tell */
    struct loop *lp;            /* borrowed */
    const struct cfg *cfg;      /* held: the loop's configuration when the request began */
    struct bal_backend *be;     /* borrowed, NULL until chosen */
    struct bufferevent *ubev;   /* owned while connected */
    struct evbuffer *req;       /* owned: upstream request head, without Host and framing */
    struct evbuffer *wire;      /* owned: the request as sent to the chosen backend */
    struct queue_entry *queued; /* borrowed: our place in the overload queue */
    struct evbuffer *body;      /* owned: request body as received */
    struct evbuffer *jbody;     /* owned: non-streamed JSON response kept for analysis */
    struct evbuffer *head_out;  /* owned: the response head for a plain TCP client, held
                                   within the read that brought it so that what follows in
                                   the same read leaves with it (relay_head_out) */
    char *stage;                /* owned: bytes of a partial SSE event */
    char *held;                 /* owned: a finish event held for the usage chunk */
    size_t held_len, held_cap;
    size_t stage_len, stage_cap;
    struct event *up_rd; /* owned: reads a plain backend's event stream (relay_up_direct_begin) */
    struct event *timer_ev; /* owned: WAIT: the response head's deadline
                               (upstream.header_timeout); STREAM: the stall limit */
    struct h1_parser up;    /* response parser */
    struct sse_scanner scan;
    struct meter meter;
    enum relay_state st;
    enum pitot_err outcome;
    uint64_t t0_us, wall_us;
    int status; /* status sent to the client, 0 until then */
    int64_t req_max_tokens;
    unsigned series;
    bool series_set;
    unsigned tier;                /* index into cfg->tiers */
    int key;                      /* index into cfg->keys of its API key; -1 none */
    bool rl_on;                   /* its tier or key has limits: checked, and the
                                     x-ratelimit-* headers go with the answer */
    bool rl_admitted;             /* rl_admit let it in: settled at the end */
    bool rl_by_redis;             /* ... Redis did (rl_redis_admit): settled there */
    unsigned rl_share;            /* the share of the budget it was admitted under (1:
                                     all; ratelimit.replicas while Redis does not answer) */
    struct rl_redis_req *rl_req;  /* the admission Redis has not answered yet */
    char rl_id[RELAY_ID_MAX + 1]; /* its name in Redis's running set: pitot's own, not
                                     the client's X-Request-Id (which may repeat) */
    uint64_t rl_reserved;         /* the tokens it reserved (rl_estimate) */
    uint64_t rl_retry_us;         /* refused: until the limit would let it in */
    struct rl_view rl_view;       /* what the headers say */
    enum api_kind api;            /* the API the request's path speaks */
    uint64_t affinity;            /* session key hash, 0: none */
    bool tried[CFG_MAX_BACKENDS]; /* backends that failed this request */
    unsigned model;               /* metric model index */
    bool reused, retried;         /* pooled upstream connection; retried once */
    enum pitot_err retry_err;     /* a try failed before the answer began: what the
                                     client gets if no other backend can take it */
    unsigned interim;             /* 1xx responses the backend sent before its answer */
    unsigned be_gen;              /* be's address generation when it was chosen */
    const struct cfg *be_table;   /* held: the configuration be was chosen under,
                                     whose backends[be->idx] is be's (relay_be_cfg) */
    enum cfg_flavor flavor;       /* be's flavor when it was chosen */
    bool client_keep;             /* the client allows another request */
    bool client_http10;
    bool is_head;
    bool req_stream;  /* the request asked for a stream */
    bool strip_usage; /* pitot asked for usage: drop the usage-only chunk */
    bool sse;         /* response is text/event-stream */
    bool json;        /* response is application/json */
    bool chunked_out; /* client framing: chunked */
    bool eof_out;     /* client framing: close-delimited */
    bool passthrough; /* an oversize SSE event is being relayed raw */
    bool paused;      /* backend reads off: client output is full */
    bool up_direct;   /* the backend's stream is read by up_rd, not its bufferevent */
    bool blocked;     /* the client's socket took less than it was given; until its
                         output drains, what comes goes behind it */
    bool up_keep;     /* the backend allows reuse */
    bool jbody_over;  /* JSON body larger than we analyse */
    bool json_api;    /* a POST to an API whose body must be one JSON object */
    bool json_ok;     /* ... and it is: a 500 to it is the backend's fault */
    bool reply_whole; /* pitot answered itself, the request read in full: the
                         connection may serve another one */
    size_t in_flight_counted;
    char id[RELAY_ID_MAX + 1];
    char method[16];
    char path[RELAY_PATH_LOG_MAX + 1];
    char req_model[CFG_NAME_MAX];
    char served_model[CFG_NAME_MAX]; /* the chosen backend's name for the request's
                                        model (bal_req.served); "" */
    /* tracing: pitot's span (see relay_trace_headers) */
    char trace_id[33];             /* the trace the backend was told of */
    char span_id[17];              /* pitot's span, the backend's parent */
    char parent_id[17];            /* the client's span; "" without a valid traceparent */
    char resp_model[CFG_NAME_MAX]; /* the backend's "model", decoded; "" unknown */
    struct relay *next_retired;    /* borrowed link in worker.retired */
};

/* Room for the rate-limit headers of one answer. */
#define RELAY_RL_HEADERS_MAX 512

/* The chosen backend's configuration: from the table it was chosen under
 * (a reload may have put another backend in its slot since). */
static inline const struct cfg_backend *relay_be_cfg(const struct relay *r)
{
    return &r->be_table->backends[r->be->idx];
}

static void relay_fail(struct relay *r, enum pitot_err e);
static void relay_up_direct_end(struct relay *r);
static void relay_finish(struct relay *r, enum pitot_err outcome);
static int relay_on_body(void *ud, struct span b);

static void relay_set_state(struct relay *r, enum relay_state st)
{
    static const unsigned char legal[][7] = {
        /*                 BODY QUED CONN WAIT STRM FLSH DONE */
        [RELAY_ST_BODY] = { 0, 1, 1, 1, 0, 0, 1 }, /* WAIT: pooled connection */
        [RELAY_ST_QUEUED] = { 0, 0, 1, 1, 0, 0, 1 },
        [RELAY_ST_CONNECT] = { 0, 1, 1, 1, 0, 0, 1 }, /* retry elsewhere */
        [RELAY_ST_WAIT] = { 0, 1, 1, 1, 1, 0, 1 },
        [RELAY_ST_STREAM] = { 0, 0, 0, 0, 0, 1, 1 },
        [RELAY_ST_FLUSH] = { 0, 0, 0, 0, 0, 0, 1 },
        [RELAY_ST_DONE] = { 0, 0, 0, 0, 0, 0, 0 },
    };

    assert(legal[r->st][st]);
    (void)legal;
    r->st = st;
}

static struct evbuffer *relay_client_out(struct relay *r)
{
    return bufferevent_get_output(r->client.bev);
}

/* Answers with pitot's own error for e, before any byte of a backend's answer
 * went out, in the shape of the request's API, with its X-Request-Id and, for
 * "come back later" (overloaded, no healthy backend, shutting down), a
 * Retry-After: a whole reply, so the connection may go on when the request
 * and the loop allow it (as its head then says). */
/* snprintf's return n at offset at of a buffer of cap bytes: the new
 * offset, never past the end. */
static size_t relay_fit(size_t cap, size_t at, int n)
{
    if (n < 0)
        return at;
    return at + (size_t)n < cap ? at + (size_t)n : (cap ? cap - 1 : 0);
}

/* A duration as OpenAI's x-ratelimit-reset-* say it: "20ms", "1s", "1.5s",
 * "6m0s", "1h2m3s". */
static void relay_rl_dur(uint64_t us, char *out, size_t cap)
{
    uint64_t ms = (us + 999) / 1000, s = ms / 1000;

    if (ms < 1000)
        snprintf(out, cap, "%llums", (unsigned long long)ms);
    else if (s < 60 && ms % 1000)
        snprintf(out, cap, "%llu.%03llus", (unsigned long long)s, (unsigned long long)(ms % 1000));
    else if (s < 60)
        snprintf(out, cap, "%llus", (unsigned long long)s);
    else if (s < 3600)
        snprintf(out, cap, "%llum%llus", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
    else
        snprintf(out, cap, "%lluh%llum%llus", (unsigned long long)(s / 3600),
                 (unsigned long long)(s / 60 % 60), (unsigned long long)(s % 60));
    if (ms < 1000 || s >= 60 || ms % 1000 == 0)
        return;
    /* "1.500s" -> "1.5s" */
    {
        size_t n = strlen(out);
        while (n > 2 && out[n - 2] == '0') {
            out[n - 2] = 's';
            out[--n] = '\0';
        }
    }
}

/* A time as Anthropic's anthropic-ratelimit-*-reset say it: RFC 3339, UTC. */
static void relay_rl_time(uint64_t wall_us, char *out, size_t cap)
{
    time_t t = (time_t)(wall_us / 1000000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The rate-limit headers of r (rl_on) into buf[0..cap): OpenAI's
 * x-ratelimit-{limit,remaining,reset}-{requests,tokens}, or on the Messages
 * API Anthropic's anthropic-ratelimit-{requests,tokens}-{limit,remaining,
 * reset}; a limit that is not set has none. Returns the length. */
static size_t relay_rl_headers(const struct relay *r, char *buf, size_t cap)
{
    const struct rl_view *v = &r->rl_view;
    const char *what[2] = { "requests", "tokens" };
    unsigned long long lim[2] = { v->limit_requests, v->limit_tokens };
    unsigned long long left[2] = { v->remaining_requests, v->remaining_tokens };
    uint64_t reset[2] = { v->reset_requests_us, v->reset_tokens_us };
    char when[40];
    size_t n = 0;
    int k;

    if (!r->rl_on || cap == 0)
        return 0;
    buf[0] = '\0';
    for (k = 0; k < 2; k++) {
        if (lim[k] == 0)
            continue;
        bool anthropic = r->api == API_MESSAGES;

        if (anthropic)
            relay_rl_time(clk_wall_us() + reset[k], when, sizeof(when));
        else
            relay_rl_dur(reset[k], when, sizeof(when));
        n = relay_fit(cap, n,
                      snprintf(buf + n, cap - n,
                               anthropic ? "anthropic-ratelimit-%s-limit: %llu\r\n"
                                           "anthropic-ratelimit-%s-remaining: %llu\r\n"
                                           "anthropic-ratelimit-%s-reset: %s\r\n"
                                         : "x-ratelimit-limit-%s: %llu\r\n"
                                           "x-ratelimit-remaining-%s: %llu\r\n"
                                           "x-ratelimit-reset-%s: %s\r\n",
                               what[k], lim[k], what[k], left[k], what[k], when));
    }
    return n;
}

static void relay_reply_error(struct relay *r, enum pitot_err e)
{
    bool close = !r->client_keep || !loop_keepalive(r->lp);
    char hdr[RELAY_ID_MAX + RELAY_RL_HEADERS_MAX + 96];
    size_t n = 0;

    unsigned long long retry = 0; /* Retry-After, whole seconds; 0: none */

    if (e == PITOT_EOVERLOADED || e == PITOT_ENO_BACKEND || e == PITOT_ESHUTDOWN)
        retry = queue_retry_after(r->lp->queue, clk_now_us());
    else if (err_status(e) == 429 || e == PITOT_ERATE_UNAVAILABLE) /* at least one */
        retry = r->rl_retry_us > 1000000 ? (r->rl_retry_us + 999999) / 1000000 : 1;
    if (retry)
        n = relay_fit(sizeof(hdr), 0, snprintf(hdr, sizeof(hdr), "Retry-After: %llu\r\n", retry));
    n += relay_rl_headers(r, hdr + n, sizeof(hdr) - n);
    snprintf(hdr + n, sizeof(hdr) - n, "X-Request-Id: %s\r\n", r->id);
    r->status = api_err_status(r->api, e);
    reply_error_api(relay_client_out(r), r->api, e, r->is_head, close, hdr);
    r->client_keep = !close;
    r->reply_whole = true;
}

/* X-Request-Id values are echoed into headers and logs: visible ASCII only. */
static bool relay_id_ok(struct span v)
{
    size_t i;

    if (v.len == 0 || v.len > RELAY_ID_MAX)
        return false;
    for (i = 0; i < v.len; i++)
        if ((unsigned char)v.p[i] <= 0x20 || (unsigned char)v.p[i] >= 0x7f || v.p[i] == '"' ||
            v.p[i] == '\\')
            return false;
    return true;
}

/* FNV-1a: session keys only pick a backend, they need no secrecy. */
static uint64_t relay_hash(struct span s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;

    for (i = 0; i < s.len; i++) {
        h ^= (unsigned char)s.p[i];
        h *= 0x100000001b3ull;
    }
    return h ? h : 1;
}

/* n lower-case hex digits at p; *nonzero: not all '0'. */
static bool relay_hex(const char *p, size_t n, bool *nonzero)
{
    size_t i;

    *nonzero = false;
    for (i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        *nonzero |= c != '0';
    }
    return true;
}

/* W3C traceparent "VV-TRACEID32-PARENTID16-FF": the trace id and flags of a
 * valid one (version ff is invalid; later versions may append fields). */
static bool relay_traceparent(struct span v, struct span *trace, struct span *flags)
{
    bool nz, trace_nz, parent_nz;

    if (v.len < 55 || v.p[2] != '-' || v.p[35] != '-' || v.p[52] != '-')
        return false;
    if (!relay_hex(v.p, 2, &nz) || span_eq(span_make(v.p, 2), "ff"))
        return false;
    /* version 00 is exactly 55 bytes; later versions may append "-..." */
    if (v.len > 55 && (!nz || v.p[55] != '-'))
        return false;
    if (!relay_hex(v.p + 3, 32, &trace_nz) || !relay_hex(v.p + 36, 16, &parent_nz) ||
        !relay_hex(v.p + 53, 2, &nz) || !trace_nz || !parent_nz)
        return false;
    *trace = span_make(v.p + 3, 32);
    *flags = span_make(v.p + 53, 2);
    return true;
}

/* pitot is a hop of the trace: the backend gets the client's trace id (or a
 * new trace) with pitot's own span id as its parent. */
static void relay_trace_headers(struct relay *r, const struct h1_msg *m)
{
    const struct h1_header *tp = h1_header_find(m, "traceparent");
    const struct h1_header *ts = h1_header_find(m, "tracestate");
    struct span trace, flags;
    char id[33], span_id[33];

    loop_request_id(r->lp, span_id);
    memcpy(r->span_id, span_id, 16);
    if (tp && relay_traceparent(tp->value, &trace, &flags)) {
        evbuffer_add_printf(r->req, "traceparent: 00-%.32s-%.16s-%.2s\r\n", trace.p, span_id,
                            flags.p);
        if (ts)
            evbuffer_add_printf(r->req, "tracestate: %.*s\r\n", (int)ts->value.len, ts->value.p);
        memcpy(r->trace_id, trace.p, 32);
        memcpy(r->parent_id, tp->value.p + 36, 16); /* its parent-id field: the client's span */
        return;
    }
    /* absent or invalid: a new trace, and the old tracestate goes with it */
    loop_request_id(r->lp, id);
    evbuffer_add_printf(r->req, "traceparent: 00-%s-%.16s-01\r\n", id, span_id);
    memcpy(r->trace_id, id, 32);
}

static void relay_copy(char *dst, size_t cap, struct span s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;

    memcpy(dst, s.p, n);
    dst[n] = '\0';
}

void relay_request_id(struct loop *lp, const struct h1_msg *m, char out[RELAY_ID_MAX + 1])
{
    const struct h1_header *rid = h1_header_find(m, "x-request-id");

    if (rid && relay_id_ok(rid->value))
        relay_copy(out, RELAY_ID_MAX + 1, rid->value);
    else
        loop_request_id(lp, out);
}

struct relay *relay_new(struct loop *lp, const struct relay_client *client, const struct h1_msg *m,
                        uint64_t t0_us, unsigned tier, int key)
{
    const struct h1_header *xff = NULL;
    struct relay *r = calloc(1, sizeof(*r));
    unsigned i;

    if (r == NULL)
        return NULL;
    r->client = *client;
    r->lp = lp;
    r->cfg = cfg_hold(lp->cfg); /* the request keeps the configuration it began under */
    r->t0_us = t0_us;
    r->wall_us = clk_wall_us();
    r->req = evbuffer_new();
    r->body = evbuffer_new();
    if (r->req == NULL || r->body == NULL) {
        relay_free(r);
        return NULL;
    }
    r->req_max_tokens = -1;
    r->client_keep = m->keep_alive;
    r->client_http10 = m->http_minor == 0;
    r->is_head = span_eq(m->method, "HEAD");
    relay_copy(r->method, sizeof(r->method), m->method);
    relay_copy(r->path, sizeof(r->path), m->url);
    r->api = api_of_path(r->path);
    relay_request_id(lp, m, r->id);
    /* measured from t0 even when refused before relay_start() */
    meter_init(&r->meter, t0_us, (uint64_t)r->cfg->stall_ms * 1000, -1, lp->refusals);
    r->tier = tier;
    r->key = key;
    if (r->cfg->affinity == CFG_AFFINITY_HEADER) {
        const struct h1_header *ah = h1_header_find(m, r->cfg->affinity_header);
        if (ah && ah->value.len)
            r->affinity = relay_hash(ah->value);
    }

    /* Fresh framing: request line, our Host, the client's end-to-end headers. */
    evbuffer_add_printf(r->req, "%.*s %.*s HTTP/1.1\r\n", (int)m->method.len, m->method.p,
                        (int)m->url.len, m->url.p);
    for (i = 0; i < m->nheaders; i++) {
        const struct h1_header *h = &m->headers[i];
        if (h1_is_hop_by_hop(m, h->name) || span_ieq(h->name, "host") ||
            span_ieq(h->name, "content-length") || span_ieq(h->name, "expect") ||
            span_ieq(h->name, "x-request-id") || span_ieq(h->name, "traceparent") ||
            span_ieq(h->name, "tracestate"))
            continue;
        if (span_ieq(h->name, "x-forwarded-for")) {
            xff = h;
            continue;
        }
        evbuffer_add_printf(r->req, "%.*s: %.*s\r\n", (int)h->name.len, h->name.p,
                            (int)h->value.len, h->value.p);
    }
    if (xff)
        evbuffer_add_printf(r->req, "X-Forwarded-For: %.*s, %s\r\n", (int)xff->value.len,
                            xff->value.p, client->peer);
    else
        evbuffer_add_printf(r->req, "X-Forwarded-For: %s\r\n", client->peer);
    evbuffer_add_printf(r->req, "X-Request-Id: %s\r\n", r->id);
    relay_trace_headers(r, m);
    r->st = RELAY_ST_BODY;
    return r;
}

int relay_body(struct relay *r, struct span b)
{
    if (evbuffer_get_length(r->body) + b.len > r->cfg->max_body_bytes)
        return -PITOT_EBODY_TOO_LARGE;
    if (evbuffer_add(r->body, b.p, b.len) != 0)
        return -PITOT_ENOMEM;
    return 0;
}

/* The end of an admitted request (once): its reservation becomes what the
 * backend said it used (prompt + completion); nothing when no backend
 * answered; the reservation when the tokens are unknown (-1). */
static void relay_rl_settle(struct relay *r, int64_t prompt, int64_t completion)
{
    struct loop *lp = r->lp;
    uint64_t used = r->rl_reserved;

    if (!r->rl_admitted)
        return;
    r->rl_admitted = false;
    if (!r->be || r->status == 0)
        used = 0;
    else if (prompt >= 0 && completion >= 0)
        used = (uint64_t)prompt + (uint64_t)completion;
    if (r->rl_by_redis)
        rl_redis_settle(lp->rl_redis, r->cfg, r->tier, r->key, r->rl_reserved, used, r->rl_id);
    else
        rl_settle_share(lp->ratelimit, r->cfg, r->tier, r->key, clk_now_us(), r->rl_reserved, used,
                        r->rl_share);
}

void relay_free(struct relay *r)
{
    if (r == NULL)
        return;
    /* retired without its accounting (a connection closed under it): its
     * admission still ends, or its running slot would count forever */
    relay_rl_settle(r, -1, -1);
    if (r->be && r->in_flight_counted) {
        router_done(r->lp->rt, r->be, 0);
        met_gauge_add(r->lp->met, MET_IN_FLIGHT, r->be->idx, -1);
    }
    if (r->queued)
        queue_remove(r->lp->queue, r->queued, true, MET_SHED_CLIENT_GONE);
    if (r->rl_req) /* gone before Redis answered: it settles the admission itself */
        rl_redis_cancel(r->rl_req);
    if (r->up_rd)
        event_free(r->up_rd); /* before the socket closes */
    if (r->ubev)
        bufferevent_free(r->ubev);
    if (r->req)
        evbuffer_free(r->req);
    if (r->wire)
        evbuffer_free(r->wire);
    if (r->body)
        evbuffer_free(r->body);
    if (r->jbody)
        evbuffer_free(r->jbody);
    if (r->head_out)
        evbuffer_free(r->head_out);
    if (r->timer_ev)
        event_free(r->timer_ev);
    free(r->stage);
    free(r->held);
    cfg_drop(r->be_table);
    cfg_drop(r->cfg);
    free(r);
}

void relay_retire(struct relay *r)
{
    struct loop *lp = r->lp;

    if (r->queued) {
        queue_remove(lp->queue, r->queued, true, MET_SHED_CLIENT_GONE);
        r->queued = NULL;
    }
    /* Nothing may call back into a retired relay: drop its I/O now. */
    if (r->ubev) {
        relay_up_direct_end(r); /* its reader goes before the socket closes */
        bufferevent_free(r->ubev);
        r->ubev = NULL;
    }
    if (r->timer_ev)
        event_del(r->timer_ev);
    r->client.bev = NULL;
    r->client.done = NULL;
    r->next_retired = lp->retired;
    lp->retired = r;
    event_active(lp->reap_ev, EV_TIMEOUT, 0);
}

void relay_reap(struct loop *lp)
{
    while (lp->retired) {
        struct relay *r = lp->retired;
        lp->retired = r->next_retired;
        relay_free(r);
    }
}

/* ---- request side ------------------------------------------------------ */

static bool relay_path_is(const struct relay *r, const char *path)
{
    size_t n = strlen(path);

    return strncmp(r->path, path, n) == 0 && (r->path[n] == '\0' || r->path[n] == '?');
}

struct relay_affinity {
    uint64_t h;
    unsigned seen[3];
    unsigned max;
};

static void relay_affinity_cb(void *ud, size_t path, struct span raw, bool is_string)
{
    struct relay_affinity *a = ud;
    size_t i;

    if (path >= 3 || a->seen[path]++ >= a->max)
        return;
    a->h ^= path + 1;
    for (i = 0; i < raw.len; i++) {
        a->h ^= (unsigned char)raw.p[i];
        a->h *= 0x100000001b3ull;
    }
}

/* The session key from the body: the "user" field, or the first messages. */
static void relay_affinity_body(struct relay *r, struct span body)
{
    static const char *const user[] = { "user" };
    static const char *const prefix[] = { "messages[].role", "messages[].content",
                                          "messages[].content[].text" };
    const struct cfg *c = r->cfg;
    struct relay_affinity a = { 0xcbf29ce484222325ull, { 0, 0, 0 }, 1 };
    int n;

    if (c->affinity == CFG_AFFINITY_USER) {
        n = json_paths_visit(body, &r->lp->toks, user, 1, relay_affinity_cb, &a);
    } else if (c->affinity == CFG_AFFINITY_PREFIX) {
        a.max = c->affinity_prefix_messages;
        n = json_paths_visit(body, &r->lp->toks, prefix, 3, relay_affinity_cb, &a);
    } else {
        return;
    }
    if (n > 0)
        r->affinity = a.h ? a.h : 1;
}

/* The POST endpoints whose body must be one JSON object: OpenAI's, Anthropic's,
 * llama-server's own (server.cpp's routes), vLLM's, TGI's and SGLang's.
 * llama-server answers a body it cannot parse with 500 "parse error". */
static const char *const relay_json_paths[] = {
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/rerank",
    "/v1/reranking",
    "/v1/score",
    "/v2/rerank",
    "/chat/completions",
    "/completions",
    "/completion",
    "/embeddings",
    "/embedding",
    "/infill",
    "/rerank",
    "/reranking",
    "/score",
    "/tokenize",
    "/detokenize",
    "/apply-template",
    "/api/chat",
    "/generate",
    "/generate_stream",
    "/pooling",
    "/classify",
};

static bool relay_json_api(const struct relay *r)
{
    size_t i;

    if (strcmp(r->method, "POST") != 0)
        return false;
    for (i = 0; i < sizeof(relay_json_paths) / sizeof(relay_json_paths[0]); i++)
        if (relay_path_is(r, relay_json_paths[i]))
            return true;
    return false;
}

/* Reads model, stream and max_tokens from a JSON body and, when configured,
 * asks the backend for usage the client did not ask for. The same parse
 * judges the body of a JSON API request: returns -PITOT_EINVALID_JSON when it
 * is empty or not exactly one JSON object (then nothing may reach a backend),
 * else 0. */
static int relay_inspect_body(struct relay *r)
{
    struct loop *lp = r->lp;
    size_t len = evbuffer_get_length(r->body);
    struct json_req jr;
    struct span body;
    char *nb;
    long nlen;
    int rc;

    r->json_api = relay_json_api(r);
    if (len == 0)
        return r->json_api ? -PITOT_EINVALID_JSON : 0;
    body = span_make((const char *)evbuffer_pullup(r->body, -1), len);
    rc = json_req_parse(body, &lp->toks, &jr);
    if (!jr.well_formed) /* elsewhere not ours to judge: forwarded untouched */
        return r->json_api ? -PITOT_EINVALID_JSON : 0;
    r->json_ok = r->json_api;
    if (rc != 0)
        return 0; /* more tokens than pitot reads: forwarded untouched */
    r->req_stream = jr.stream;
    r->req_max_tokens = jr.max_tokens;
    if (jr.model.len && jr.model.len < sizeof(r->req_model))
        relay_copy(r->req_model, sizeof(r->req_model), jr.model);
    relay_affinity_body(r, body);
    if (!r->cfg->usage_injection || !jr.stream || jr.include_usage)
        return 0;
    if (!relay_path_is(r, "/v1/chat/completions") && !relay_path_is(r, "/v1/completions"))
        return 0;
    nb = malloc(len + 64);
    if (nb == NULL)
        return 0;
    nlen = json_req_add_include_usage(body, &lp->toks, nb, len + 64);
    if (nlen > 0) {
        evbuffer_drain(r->body, len);
        evbuffer_add(r->body, nb, (size_t)nlen);
        r->strip_usage = true;
    }
    free(nb);
    return 0;
}

static void relay_up_read_cb(struct bufferevent *bev, void *arg);
static void relay_up_event_cb(struct bufferevent *bev, short what, void *arg);

static void relay_timeouts(struct relay *r, unsigned read_ms, unsigned write_ms)
{
    struct timeval rt = { read_ms / 1000, (long)(read_ms % 1000) * 1000 };
    struct timeval wt = { write_ms / 1000, (long)(write_ms % 1000) * 1000 };

    bufferevent_set_timeouts(r->ubev, read_ms ? &rt : NULL, write_ms ? &wt : NULL);
}

static void relay_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay *r = arg;

    if (r->st != RELAY_ST_STREAM) {
        /* WAIT: upstream.header_timeout passed since the request went out */
        relay_fail(r, PITOT_EUPSTREAM_TIMEOUT);
        return;
    }
    r->meter.stalls++; /* the gap in progress passed the hard limit */
    relay_fail(r, PITOT_ESTALL_TIMEOUT);
}

/* (Re)arms the relay's one timer: what it ends depends on the state when it
 * fires (relay_timer_cb). */
static void relay_timer_arm(struct relay *r, unsigned ms)
{
    struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

    if (r->timer_ev == NULL)
        r->timer_ev = evtimer_new(r->lp->base, relay_timer_cb, r);
    if (r->timer_ev)
        evtimer_add(r->timer_ev, &tv);
}

/* The request is on its way to the backend (connected, or a pooled
 * connection): from now on the final response head must be complete within
 * upstream.header_timeout, however the backend paces its bytes. A read
 * timeout would restart with every byte; the deadline is a timer of its own.
 * write_ms bounds each gap while the request is written. */
static void relay_wait_begin(struct relay *r, unsigned write_ms)
{
    relay_set_state(r, RELAY_ST_WAIT);
    relay_timeouts(r, 0, write_ms);
    relay_timer_arm(r, r->cfg->upstream_header_timeout_ms);
}

/* Pieces of a request written in one go; more go through the bufferevent */
#define RELAY_SEND_PIECES 8

/* The pieces v[0..n) less their first `done` bytes, into out. */
static void relay_add_rest(struct evbuffer *out, const struct iovec *v, int n, size_t done)
{
    int i;

    for (i = 0; i < n; i++) {
        if (done >= v[i].iov_len) {
            done -= v[i].iov_len;
            continue;
        }
        evbuffer_add(out, (const char *)v[i].iov_base + done, v[i].iov_len - done);
        done = 0;
    }
}

/* A pooled plain connection: the request goes to the socket at once, so a
 * backend that takes it costs one write and no change of the loop's
 * interest; what it does not take goes into out, which the bufferevent
 * writes. wire stays whole for a retry. True when all of it went out. */
static bool relay_send_now(struct relay *r, struct evbuffer *out)
{
    struct evbuffer_iovec v[RELAY_SEND_PIECES];
    size_t len = evbuffer_get_length(r->wire), sent = 0;
    int n = evbuffer_peek(r->wire, -1, NULL, v, RELAY_SEND_PIECES);

    if (evbuffer_get_length(out) == 0 && n <= RELAY_SEND_PIECES)
        sent = sock_send_now(bufferevent_getfd(r->ubev), v, n);
    if (sent == len)
        return true;
    if (sent == 0)
        evbuffer_add_buffer_reference(out, r->wire);
    else /* the rest, copied (rare: the socket's buffer was nearly full) */
        relay_add_rest(out, v, n, sent);
    return false;
}

/* Connects (or reuses) and writes the request; the request buffer is kept
 * so that a pooled connection the backend had just closed can be retried. */
static void relay_send(struct relay *r)
{
    struct loop *lp = r->lp;
    struct evbuffer *out;
    struct h1_limits lim = { H1_MAX_HEADERS, r->cfg->max_uri_bytes, r->cfg->max_header_bytes };

    if (r->timer_ev) /* a deadline of an earlier try */
        event_del(r->timer_ev);
    r->interim = 0;
    if (r->retried) {
        r->ubev = upstream_conn_new(lp->upstream, r->be->idx);
        r->reused = false;
    } else {
        r->ubev = upstream_conn_get(lp->upstream, r->be->idx, r->be_gen, &r->reused);
    }
    if (r->ubev == NULL) {
        relay_fail(r, PITOT_EUPSTREAM_CONNECT);
        return;
    }
    h1_init(&r->up, H1_RESPONSE, &lim, relay_on_body, r);
    if (r->is_head)
        h1_expect_no_body(&r->up);
    bufferevent_setcb(r->ubev, relay_up_read_cb, NULL, relay_up_event_cb, r);
    out = bufferevent_get_output(r->ubev);
    if (r->reused) {
        relay_wait_begin(r, r->cfg->connect_timeout_ms);
        if (relay_be_cfg(r)->https) {
            evbuffer_add_buffer_reference(out, r->wire);
        } else if (relay_send_now(r, out)) {
            bufferevent_enable(r->ubev, EV_READ);
            return;
        }
    } else {
        evbuffer_add_buffer_reference(out, r->wire);
        relay_set_state(r, RELAY_ST_CONNECT);
        /* While connecting, libevent applies the write timeout to the connect;
         * a TLS handshake then waits to read, under the same bound. */
        relay_timeouts(r, relay_be_cfg(r)->https ? r->cfg->connect_timeout_ms : 0,
                       r->cfg->connect_timeout_ms);
    }
    bufferevent_enable(r->ubev, EV_READ | EV_WRITE);
}

/* The request as this backend gets it: Host and fresh framing added. */
static int relay_wire(struct relay *r)
{
    size_t hl = evbuffer_get_length(r->req), bl = evbuffer_get_length(r->body);

    if (r->wire)
        evbuffer_free(r->wire);
    r->wire = evbuffer_new();
    if (r->wire == NULL)
        return -1;
    evbuffer_add(r->wire, evbuffer_pullup(r->req, -1), hl);
    evbuffer_add_printf(r->wire, "Host: %s\r\n", cfg_backend_authority(relay_be_cfg(r)));
    if (bl ||
        !(span_eq(span_cstr(r->method), "GET") || span_eq(span_cstr(r->method), "HEAD") ||
          span_eq(span_cstr(r->method), "DELETE") || span_eq(span_cstr(r->method), "OPTIONS")))
        evbuffer_add_printf(r->wire, "Content-Length: %zu\r\n", bl);
    evbuffer_add(r->wire, "\r\n", 2);
    if (bl)
        evbuffer_add(r->wire, evbuffer_pullup(r->body, -1), bl);
    return 0;
}

/* Sends r to be, which router_choose counted as dispatched to; gen and
 * flavor: be's address generation and flavor at that moment; table: the
 * configuration it was chosen under, held (r takes the hold). */
static void relay_dispatch(struct relay *r, struct bal_backend *be, unsigned gen,
                           enum cfg_flavor flavor, const struct cfg *table)
{
    struct loop *lp = r->lp;

    cfg_drop(r->be_table);
    r->be_table = table;
    r->be = be;
    r->be_gen = gen;
    r->flavor = flavor;
    r->series_set = false;
    r->in_flight_counted = 1;
    met_gauge_add(lp->met, MET_IN_FLIGHT, be->idx, 1);
    if (relay_wire(r) != 0) {
        relay_fail(r, PITOT_ENOMEM);
        return;
    }
    relay_send(r);
}

/* Answers a request pitot will not serve now: 503 (529 on the Messages
 * API) with Retry-After, or 404 for a model no backend serves. */
void relay_shed(struct relay *r, enum met_shed why)
{
    enum pitot_err e = why == MET_SHED_NO_MODEL ? PITOT_ENO_MODEL : PITOT_EOVERLOADED;

    r->queued = NULL; /* the queue already let go of us */
    if (why == MET_SHED_CLIENT_GONE)
        return;
    relay_refuse(r, e, false);
}

/* Chooses a backend: dispatch, hold, or refuse. Returns false only when the
 * request must keep waiting (it is, or now is, in the queue). */
static bool relay_route(struct relay *r, bool from_queue)
{
    struct loop *lp = r->lp;
    struct bal_req rq;
    struct bal_backend *be;
    enum bal_verdict v;
    enum met_shed why;
    enum cfg_flavor flavor = CFG_FLAVOR_AUTO;
    const struct cfg *table = NULL;
    unsigned gen = 0;

    rq.model = r->req_model[0] ? bal_alias(r->cfg, span_cstr(r->req_model)) : span_make(NULL, 0);
    rq.affinity = r->affinity;
    rq.tried = r->tried;
    rq.served = r->served_model;
    rq.served_cap = sizeof(r->served_model);
    v = router_choose(lp->rt, &rq, clk_now_us(), &be, &gen, &flavor, &table);
    if (v == BAL_SATURATED) {
        if (from_queue)
            return false;
        relay_set_state(r, RELAY_ST_QUEUED);
        r->queued = queue_push(lp->queue, r, r->tier, &why);
        if (r->queued == NULL) {
            met_add_shed(lp->met, r->tier, why);
            relay_shed(r, why);
        }
        return true;
    }
    if (r->queued) {
        queue_remove(lp->queue, r->queued, v == BAL_NO_MODEL, MET_SHED_NO_MODEL);
        r->queued = NULL;
    }
    switch (v) {
    case BAL_OK: relay_dispatch(r, be, gen, flavor, table); break;
    case BAL_NO_MODEL:
        if (!from_queue)
            met_add_shed(lp->met, r->tier, MET_SHED_NO_MODEL);
        relay_shed(r, MET_SHED_NO_MODEL);
        break;
    default:
        /* After a failed try, relay_fail answers with that try's failure. */
        if (r->retry_err != PITOT_EOK && !from_queue)
            break;
        relay_fail(r, r->retry_err != PITOT_EOK ? r->retry_err : PITOT_ENO_BACKEND);
        break;
    }
    return true;
}

bool relay_try_dispatch(struct relay *r)
{
    return relay_route(r, true);
}

static bool relay_queue_dispatch(void *item)
{
    return relay_try_dispatch(item);
}

static void relay_queue_shed(void *item, enum met_shed why)
{
    relay_shed(item, why);
}

const struct queue_ops relay_queue_ops = { relay_queue_dispatch, relay_queue_shed };

void relay_refuse(struct relay *r, enum pitot_err e, bool close)
{
    if (close)
        r->client_keep = false;
    relay_reply_error(r, e);
    relay_finish(r, e);
}

/* Room for GET /v1/models: every backend's every name once, escaped. */
#define RELAY_MODELS_MAX (CFG_MAX_BACKENDS * CFG_MAX_BACKEND_MODELS)

/* GET (or HEAD) /v1/models: pitot answers with the union of what the healthy
 * backends serve, in OpenAI's list shape, when it knows that: some healthy
 * backend listed its models and none serves unlisted ones. Returns false
 * (the request then goes to a backend, as any other) when it does not. */
static bool relay_models(struct relay *r)
{
    char(*names)[CFG_NAME_MAX]; /* a rare request: its own allocation */
    struct loop *lp = r->lp;
    struct evbuffer *body;
    size_t n, unlisted, i;
    char esc[6 * CFG_NAME_MAX], hdr[RELAY_ID_MAX + 32];
    long created = (long)(clk_wall_us() / 1000000);
    bool close = !r->client_keep || !loop_keepalive(lp);

    if ((strcmp(r->method, "GET") != 0 && !r->is_head) || !relay_path_is(r, "/v1/models") ||
        evbuffer_get_length(r->body) != 0)
        return false;
    names = malloc(sizeof(*names) * RELAY_MODELS_MAX);
    body = evbuffer_new();
    n = names && body ? router_models(lp->rt, clk_now_us(), names, RELAY_MODELS_MAX, &unlisted) : 0;
    if (n == 0 || unlisted > 0) {
        free(names);
        if (body)
            evbuffer_free(body);
        return false;
    }
    evbuffer_add_printf(body, "{\"object\":\"list\",\"data\":[");
    for (i = 0; i < n; i++) {
        size_t k = json_str_encode(span_cstr(names[i]), esc, sizeof(esc));
        evbuffer_add_printf(body,
                            "%s{\"id\":\"%.*s\",\"object\":\"model\",\"created\":%ld,"
                            "\"owned_by\":\"pitot\"}",
                            i ? "," : "", (int)k, esc, created);
    }
    evbuffer_add_printf(body, "]}");
    free(names);
    snprintf(hdr, sizeof(hdr), "X-Request-Id: %s\r\n", r->id);
    r->status = 200;
    reply_head(relay_client_out(r), 200, "application/json", evbuffer_get_length(body), close, hdr);
    if (!r->is_head)
        evbuffer_add_buffer(relay_client_out(r), body);
    evbuffer_free(body);
    r->client_keep = !close;
    r->reply_whole = true;
    relay_finish(r, PITOT_EOK);
    return true;
}

static bool relay_limits_set(const struct cfg_limits *l)
{
    return l->requests_per_minute || l->tokens_per_minute || l->max_concurrent || l->tokens_per_day;
}

static enum pitot_err relay_rl_err(enum rl_limit l)
{
    switch (l) {
    case RL_TOKENS: return PITOT_ERATE_TOKENS;
    case RL_TOKENS_DAY: return PITOT_ERATE_TOKENS_DAY;
    case RL_CONCURRENT: return PITOT_ERATE_CONCURRENT;
    default: return PITOT_ERATE_REQUESTS;
    }
}

/* The in-memory limits (ratelimit.h) with the share of the budget this
 * process grants alone: true when a limit refused r (answered). */
static bool relay_admit_local(struct relay *r, unsigned share)
{
    struct loop *lp = r->lp;
    bool who_key = false;
    enum rl_limit l;

    r->rl_share = share;
    l = rl_admit_share(lp->ratelimit, r->cfg, r->tier, r->key, clk_now_us(), r->rl_reserved, share,
                       &r->rl_retry_us, &r->rl_view, &who_key);
    if (l == RL_OK) {
        r->rl_admitted = true;
        return false;
    }
    relay_refuse(r, relay_rl_err(l), false);
    return true;
}

static bool relay_route(struct relay *r, bool from_queue);

/* Redis answered r's admission, or did not in time. */
static void relay_admitted(void *ud, const struct rl_redis_result *res)
{
    struct relay *r = ud;
    struct loop *lp = r->lp;

    r->rl_req = NULL;
    if (!res->answered) {
        rl_note_unanswered(lp->ratelimit);
        /* ratelimit.redis_fail: closed, 503; open, this replica's share */
        if (r->cfg->ratelimit_redis_fail == CFG_REDIS_FAIL_CLOSED) {
            r->rl_retry_us = 1000000;
            relay_refuse(r, PITOT_ERATE_UNAVAILABLE, false);
            return;
        }
        if (!relay_admit_local(r, r->cfg->ratelimit_replicas))
            relay_route(r, false);
        return;
    }
    rl_note(lp->ratelimit, r->cfg, r->tier, r->key, res->limit, res->who_key, &res->view);
    r->rl_view = res->view;
    r->rl_retry_us = res->retry_us;
    if (res->limit != RL_OK) {
        relay_refuse(r, relay_rl_err(res->limit), false);
        return;
    }
    r->rl_admitted = true;
    r->rl_by_redis = true;
    relay_route(r, false);
}

/* The rate limits of r's tier and key, before anything else learns of it:
 * in memory, or in Redis (ratelimit.redis: r waits for the answer, then goes
 * on in relay_admitted). True when r is answered (refused: 429 in the shape
 * of its API, with Retry-After and the limit's headers) or waits. */
static bool relay_admit(struct relay *r)
{
    struct loop *lp = r->lp;

    if (lp->ratelimit == NULL || !(relay_limits_set(&r->cfg->tiers[r->tier].limits) ||
                                   (r->key >= 0 && relay_limits_set(&r->cfg->keys[r->key].limits))))
        return false;
    r->rl_on = true;
    r->rl_reserved = rl_estimate(r->cfg, evbuffer_get_length(r->body), r->req_max_tokens);
    if (lp->rl_redis == NULL)
        return relay_admit_local(r, 1);
    loop_request_id(lp, r->rl_id);
    r->rl_req = rl_redis_admit(lp->rl_redis, r->cfg, r->tier, r->key, r->rl_reserved, r->rl_id,
                               relay_admitted, r);
    if (r->rl_req == NULL)
        relay_refuse(r, PITOT_ENOMEM, false);
    return true;
}

void relay_start(struct relay *r)
{
    struct loop *lp = r->lp;
    int rc = relay_inspect_body(r);

    meter_init(&r->meter, r->t0_us, (uint64_t)r->cfg->stall_ms * 1000, r->req_max_tokens,
               lp->refusals);
    if (rc < 0) {
        relay_refuse(r, (enum pitot_err) - rc, false);
        return;
    }
    if (relay_models(r) || relay_admit(r))
        return;
    relay_route(r, false);
}

/* ---- measurement ------------------------------------------------------- */

/* Fixes the metric series once the model is known (from the backend's own
 * report when there is one, else the request's name if it is a known label). */
static void relay_series(struct relay *r, struct span model)
{
    struct loop *lp = r->lp;

    if (r->series_set)
        return;
    if (model.len) {
        r->model = met_model_index(lp->met, model);
        if (lp->otlp) /* the span names the model as the backend spelled it */
            r->resp_model[json_str_decode(model, r->resp_model, sizeof(r->resp_model) - 1)] = '\0';
    } else if (r->served_model[0]) {
        r->model = met_model_index(lp->met, span_cstr(r->served_model));
    } else {
        r->model = met_model_lookup(lp->met, span_cstr(r->req_model));
    }
    r->series = met_series(lp->met, r->be ? r->be->idx : 0, r->model, r->tier, r->api);
    r->series_set = true;
}

static void relay_stall_arm(struct relay *r)
{
    relay_timer_arm(r, r->cfg->stall_timeout_ms);
}

static void relay_account(struct relay *r, const struct json_resp *jr, uint64_t now)
{
    uint64_t gap;

    if (jr->valid && jr->model.len && !r->series_set)
        relay_series(r, jr->model);
    if (!meter_event(&r->meter, jr, now, &gap))
        return;
    relay_series(r, span_make(NULL, 0));
    if (r->meter.n_out > 1)
        met_observe_us(r->lp->met, MET_ITL, r->series, gap);
    relay_stall_arm(r);
}

/* ---- response side ----------------------------------------------------- */

/* Pieces of the output sent ahead of an event in the same write: the
 * response head, or a few events a moment of back-pressure left */
#define RELAY_EMIT_QUEUED 4

/* The response head waits in head_out no longer than the read that brought
 * it (the body that came with it goes out in the same write): then it joins
 * the client's output, and the bufferevent writes it. */
static void relay_head_out(struct relay *r)
{
    if (r->head_out && evbuffer_get_length(r->head_out))
        evbuffer_add_buffer(relay_client_out(r), r->head_out);
}

/* Sends iov[0..n) (n <= 6) to the client, in order after what its output
 * and head_out hold: straight to its socket when the connection is plain TCP
 * and the socket has been taking what it gets, together with what waits
 * (the head before the first event or the body), so that an event leaves
 * when it is timed and a client that keeps up costs one write and no change
 * of the loop's interest in the socket. Whatever the socket does not take
 * (or all of it) goes into the output, which the bufferevent writes when it
 * can (and where its write timeout and errors apply). */
static void relay_emit(struct relay *r, const struct iovec *iov, int n)
{
    struct evbuffer *out = relay_client_out(r);
    size_t done = 0, queued = evbuffer_get_length(out),
           held = r->head_out ? evbuffer_get_length(r->head_out) : 0, total = queued + held;
    int i;

    if (r->client.direct && !r->blocked) {
        struct iovec v[2 * RELAY_EMIT_QUEUED + 6];
        size_t k;
        int m = queued ? evbuffer_peek(out, (ev_ssize_t)queued, NULL, v, RELAY_EMIT_QUEUED) : 0;
        int h = 0;

        if (m > RELAY_EMIT_QUEUED || n > 6)
            goto queue; /* fragmented: the bufferevent writes it */
        if (held)
            h = evbuffer_peek(r->head_out, (ev_ssize_t)held, NULL, v + m, RELAY_EMIT_QUEUED);
        if (h > RELAY_EMIT_QUEUED)
            goto queue;
        for (i = 0; i < n; i++) {
            v[m + h + i] = iov[i];
            total += iov[i].iov_len;
        }
        k = sock_send_now(bufferevent_getfd(r->client.bev), v, m + h + n);
        if (k < total)
            r->blocked = true;
        done = k > queued + held ? k - queued - held : 0;
        if (k > 0 && queued) {
            /* the bufferevent holds its output's start frozen: only its own
             * writes drain it */
            evbuffer_unfreeze(out, 1);
            evbuffer_drain(out, k < queued ? k : queued);
            evbuffer_freeze(out, 1);
        }
        if (k > queued && held)
            evbuffer_drain(r->head_out, k - queued);
    }
queue:
    relay_head_out(r);
    relay_add_rest(out, iov, n, done);
}

static void relay_write_chunk(struct relay *r, const char *p, size_t len)
{
    char hdr[24];
    struct iovec iov[3];

    if (len == 0)
        return;
    if (r->chunked_out) {
        iov[0].iov_base = hdr;
        iov[0].iov_len = (size_t)snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
        iov[1].iov_base = (void *)p;
        iov[1].iov_len = len;
        iov[2].iov_base = (void *)"\r\n";
        iov[2].iov_len = 2;
        relay_emit(r, iov, 3);
    } else {
        iov[0].iov_base = (void *)p;
        iov[0].iov_len = len;
        relay_emit(r, iov, 1);
    }
}

/* Finds the flat "timings":{...} object in a llama.cpp chunk. */
static struct span relay_find_timings(struct span data)
{
    static const char key[] = "\"timings\":{";
    const char *p = memmem(data.p, data.len, key, sizeof(key) - 1), *e;

    if (p == NULL)
        return span_make(NULL, 0);
    e = memchr(p, '}', (size_t)(data.p + data.len - p));
    return e ? span_make(p, (size_t)(e + 1 - p)) : span_make(NULL, 0);
}

/* Forwards the held finish event; `timings` (from the stripped usage chunk)
 * goes back in as its last key, where llama.cpp puts it when usage was not
 * asked for, so the client gets exactly the stream it asked for. */
static void relay_release_held(struct relay *r, struct span timings)
{
    char *end;

    if (r->held_len == 0)
        return;
    end = r->held + r->held_len;
    while (end > r->held && (end[-1] == '\n' || end[-1] == '\r'))
        end--;
    if (timings.len && end > r->held && end[-1] == '}' &&
        relay_find_timings(span_make(r->held, r->held_len)).len == 0) {
        size_t pre = (size_t)(end - 1 - r->held), total = r->held_len + 1 + timings.len;
        char hdr[24];
        struct iovec iov[6];
        int k = 0;
        if (r->chunked_out) {
            iov[k].iov_base = hdr;
            iov[k++].iov_len = (size_t)snprintf(hdr, sizeof(hdr), "%zx\r\n", total);
        }
        iov[k].iov_base = r->held;
        iov[k++].iov_len = pre;
        iov[k].iov_base = (void *)",";
        iov[k++].iov_len = 1;
        iov[k].iov_base = (void *)timings.p;
        iov[k++].iov_len = timings.len;
        iov[k].iov_base = end - 1;
        iov[k++].iov_len = r->held_len - pre;
        if (r->chunked_out) {
            iov[k].iov_base = (void *)"\r\n";
            iov[k++].iov_len = 2;
        }
        relay_emit(r, iov, k);
    } else {
        relay_write_chunk(r, r->held, r->held_len);
    }
    r->held_len = 0;
}

static bool relay_hold(struct relay *r, struct span ev)
{
    if (ev.len > r->held_cap) {
        char *np = realloc(r->held, ev.len);
        if (np == NULL)
            return false;
        r->held = np;
        r->held_cap = ev.len;
    }
    memcpy(r->held, ev.p, ev.len);
    r->held_len = ev.len;
    return true;
}

/* One complete SSE event: decide, forward, then timestamp and measure. */
static void relay_event(struct relay *r, struct span ev)
{
    struct loop *lp = r->lp;
    struct sse_event se;
    struct json_resp jr;
    uint64_t now;

    sse_event_decode(ev, lp->scratch, lp->scratch_cap, &se);
    memset(&jr, 0, sizeof(jr));
    if (se.has_data && !se.done && !se.truncated)
        json_resp_parse(se.data, &lp->toks, &jr);
    if (r->strip_usage) {
        if (jr.valid && jr.choices_empty && jr.has_usage) {
            /* The usage-only chunk pitot asked for: measured, not forwarded. */
            relay_release_held(r, relay_find_timings(se.data));
            relay_account(r, &jr, clk_now_us());
            return;
        }
        relay_release_held(r, span_make(NULL, 0));
        if (jr.valid && jr.finish != JSON_FINISH_NONE && !jr.has_output && !jr.choices_empty &&
            relay_hold(r, ev)) {
            /* A finish event without output: the usage chunk follows at once. */
            relay_account(r, &jr, clk_now_us());
            return;
        }
    }
    relay_write_chunk(r, ev.p, ev.len);
    now = clk_now_us();
    relay_account(r, &jr, now);
}

static int relay_stage_add(struct relay *r, const char *p, size_t len)
{
    size_t need = r->stage_len + len;

    if (need > r->stage_cap) {
        size_t cap = r->stage_cap ? r->stage_cap : RELAY_STAGE_MIN;
        char *np;
        while (cap < need)
            cap *= 2;
        np = realloc(r->stage, cap);
        if (np == NULL)
            return -1;
        r->stage = np;
        r->stage_cap = cap;
    }
    memcpy(r->stage + r->stage_len, p, len);
    r->stage_len += len;
    return 0;
}

/* Body bytes of an event stream, in whatever pieces TCP delivered them. An
 * event wholly inside one piece is handled in place; a split one is staged. */
static void relay_sse_bytes(struct relay *r, struct span b)
{
    size_t max_ev = r->cfg->max_event_bytes;

    while (b.len) {
        size_t n;
        int res = sse_scan(&r->scan, b, &n);
        struct span piece = span_make(b.p, n);

        b.p += n;
        b.len -= n;
        if (r->passthrough) {
            /* An event larger than we analyse is relayed as it comes. */
            relay_write_chunk(r, piece.p, piece.len);
            if (res == SPAN_OK)
                r->passthrough = false;
            continue;
        }
        if (res == SPAN_OK && r->stage_len == 0) {
            relay_event(r, piece);
            continue;
        }
        if (r->stage_len + piece.len > max_ev || relay_stage_add(r, piece.p, piece.len) != 0) {
            relay_write_chunk(r, r->stage, r->stage_len);
            relay_write_chunk(r, piece.p, piece.len);
            r->stage_len = 0;
            r->passthrough = res != SPAN_OK;
            continue;
        }
        if (res == SPAN_OK) {
            relay_event(r, span_make(r->stage, r->stage_len));
            r->stage_len = 0;
        }
    }
}

static int relay_on_body(void *ud, struct span b)
{
    struct relay *r = ud;

    if (r->sse) {
        relay_sse_bytes(r, b);
        return 0;
    }
    relay_write_chunk(r, b.p, b.len);
    if (r->json && !r->jbody_over) {
        if (evbuffer_get_length(r->jbody) + b.len > r->cfg->max_event_bytes)
            r->jbody_over = true;
        else
            evbuffer_add(r->jbody, b.p, b.len);
    }
    return 0;
}

static bool relay_ctype_is(const struct h1_msg *m, const char *type)
{
    const struct h1_header *ct = h1_header_find(m, "content-type");
    size_t n = strlen(type);

    return ct && ct->value.len >= n && span_ieq(span_make(ct->value.p, n), type) &&
           (ct->value.len == n || ct->value.p[n] == ';' || ct->value.p[n] == ' ');
}

/* What the status of its answer says of the backend, toward passive ejection
 * (bal_status_health): a 500 is its fault only for a request pitot checked. */
static void relay_judge(struct relay *r, int status)
{
    enum bal_health h = bal_status_health(status, r->json_ok);

    if (h != BAL_HEALTH_NEUTRAL &&
        router_result(r->lp->rt, r->be, h == BAL_HEALTH_FAULT, clk_now_us()))
        met_gauge_set(r->lp->met, MET_BACKEND_EJECTED, r->be->idx, 1);
}

/* ---- a plain backend's event stream ------------------------------------ */

/* Bytes read from a backend's stream at once */
#define RELAY_UP_READ 16384

static void relay_up_input(struct relay *r);
static void relay_up_rd_cb(evutil_socket_t fd, short what, void *arg);
static void relay_resp_done(struct relay *r);
static void relay_backpressure(struct relay *r);

/* Reads the backend's stream while its bytes are wanted, under
 * upstream.idle_timeout like the bufferevent's own reads. */
static void relay_up_direct_arm(struct relay *r)
{
    unsigned ms = r->cfg->upstream_idle_timeout_ms;
    struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

    event_add(r->up_rd, ms ? &tv : NULL);
}

/* An SSE stream from a plain backend is read straight from its socket into
 * the thread's scratch and parsed from there: one read() a wake-up, no
 * FIONREAD before it (libevent asks how much is readable before every
 * read) and no copy into the input buffer. Its bufferevent stays for
 * writes, errors and the pool; reading goes back to it when the stream
 * ends (relay_up_direct_end). */
static void relay_up_direct_begin(struct relay *r)
{
    if (r->up_rd == NULL && (r->up_rd = event_new(r->lp->base, bufferevent_getfd(r->ubev),
                                                  EV_READ | EV_PERSIST, relay_up_rd_cb, r)) == NULL)
        return; /* the bufferevent reads, as for any other body */
    bufferevent_disable(r->ubev, EV_READ);
    r->up_direct = true;
    if (!r->paused)
        relay_up_direct_arm(r);
}

static void relay_up_direct_end(struct relay *r)
{
    if (!r->up_direct)
        return;
    event_del(r->up_rd);
    r->up_direct = false;
}

/* After the parser took a piece of the body: false while the stream goes on,
 * true once it failed (inside a callback, or here) or ended. */
static bool relay_up_ended(struct relay *r, enum h1_result res)
{
    if (r->st != RELAY_ST_STREAM)
        return true; /* failed inside a callback */
    if (res == H1_ERROR) {
        relay_fail(r, r->up.err != PITOT_EOK ? r->up.err : PITOT_EUPSTREAM_PROTOCOL);
        return true;
    }
    if (res == H1_DONE) {
        relay_resp_done(r);
        return true;
    }
    return false;
}

/* Parses n bytes of the backend's body from p, a scratch buffer: what is left
 * after the response's end goes to the input, where the pool sees it. */
static void relay_up_bytes(struct relay *r, const char *p, size_t n)
{
    struct evbuffer *in = bufferevent_get_input(r->ubev);
    size_t used;

    if (evbuffer_get_length(in)) { /* after a pause: in order behind it */
        evbuffer_add(in, p, n);
        relay_up_input(r);
        return;
    }
    while (n) {
        enum h1_result res = h1_execute(&r->up, span_make(p, n), &used);

        p += used;
        n -= used;
        if (res == H1_DONE && n && r->st == RELAY_ST_STREAM)
            evbuffer_add(in, p, n); /* after the response: the pool sees it */
        if (relay_up_ended(r, res))
            return;
        if (used == 0)
            break;
    }
    if (n)
        evbuffer_add(in, p, n);
    relay_head_out(r);
    relay_backpressure(r);
}

static void relay_up_rd_cb(evutil_socket_t fd, short what, void *arg)
{
    static _Thread_local char buf[RELAY_UP_READ];
    struct relay *r = arg;
    ssize_t n;

    if (what & EV_TIMEOUT) {
        relay_up_event_cb(r->ubev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, r);
        return;
    }
    n = read(fd, buf, sizeof(buf));
    if (n > 0) {
        relay_up_bytes(r, buf, (size_t)n);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    relay_up_event_cb(r->ubev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), r);
}

/* The backend's head: relay it with our framing and hop-by-hop headers gone. */
static void relay_resp_head(struct relay *r)
{
    const struct h1_msg *m = &r->up.msg;
    struct evbuffer *out = relay_client_out(r);
    bool body = !r->is_head && h1_status_has_body(m->status);
    bool keep;
    unsigned i;

    r->status = m->status;
    r->up_keep = m->keep_alive;
    relay_judge(r, m->status);
    r->sse = body && relay_ctype_is(m, "text/event-stream");
    r->json = body && relay_ctype_is(m, "application/json");
    if (r->json)
        r->jbody = evbuffer_new();
    if (body && (r->sse || m->chunked || m->content_length < 0)) {
        if (r->client_http10)
            r->eof_out = true;
        else
            r->chunked_out = true;
    }
    keep = r->client_keep && !r->eof_out && loop_keepalive(r->lp);
    r->client_keep = keep;
    /* a plain TCP client whose output is empty: the head waits for what
     * follows in the same read (relay_emit, relay_head_out) */
    if (r->client.direct && evbuffer_get_length(out) == 0 &&
        (r->head_out || (r->head_out = evbuffer_new()) != NULL))
        out = r->head_out;
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", m->status, err_reason_phrase(m->status));
    for (i = 0; i < m->nheaders; i++) {
        const struct h1_header *h = &m->headers[i];
        /* the framing is pitot's own, written below from what h1 parsed */
        if (h1_is_hop_by_hop(m, h->name) || span_ieq(h->name, "x-request-id") ||
            span_ieq(h->name, "content-length"))
            continue;
        /* pitot's limits are the client's: a backend's own go */
        if (r->rl_on && (span_iprefix(h->name, "x-ratelimit-") ||
                         span_iprefix(h->name, "anthropic-ratelimit-")))
            continue;
        evbuffer_add_printf(out, "%.*s: %.*s\r\n", (int)h->name.len, h->name.p, (int)h->value.len,
                            h->value.p);
    }
    if (r->rl_on) {
        char rl[RELAY_RL_HEADERS_MAX];
        size_t n = relay_rl_headers(r, rl, sizeof(rl));
        evbuffer_add(out, rl, n);
    }
    if (r->chunked_out)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    else if (!r->eof_out && m->content_length >= 0 && m->status != 204 && m->status >= 200)
        evbuffer_add_printf(out, "Content-Length: %lld\r\n", (long long)m->content_length);
    evbuffer_add_printf(out, "X-Request-Id: %s\r\n%s\r\n", r->id,
                        keep ? "" : "Connection: close\r\n");
    sse_scan_init(&r->scan);
    relay_set_state(r, RELAY_ST_STREAM);
    /* Streams may sit in prefill or a queue: only the idle timeout applies. */
    relay_timeouts(r, r->cfg->upstream_idle_timeout_ms, r->cfg->body_timeout_ms);
    if (r->sse && !relay_be_cfg(r)->https)
        relay_up_direct_begin(r);
}

static void relay_release_upstream(struct relay *r, bool reusable)
{
    if (r->ubev == NULL)
        return;
    relay_up_direct_end(r);
    /* not when the backend's address changed (DNS) since it was opened */
    if (reusable && r->up_keep && r->be_gen == router_gen(r->lp->rt, r->be->idx))
        upstream_conn_put(r->lp->upstream, r->be->idx, r->be_gen, r->ubev);
    else
        bufferevent_free(r->ubev);
    r->ubev = NULL;
}

/* The backend finished the response cleanly. */
static void relay_resp_done(struct relay *r)
{
    relay_head_out(r);
    relay_release_held(r, span_make(NULL, 0));
    if (r->stage_len) {
        /* A stream that ended inside an event: relay what came, unjudged. */
        relay_write_chunk(r, r->stage, r->stage_len);
        r->stage_len = 0;
    }
    if (r->json && !r->jbody_over && evbuffer_get_length(r->jbody)) {
        struct json_resp jr;
        size_t n = evbuffer_get_length(r->jbody);
        memset(&jr, 0, sizeof(jr));
        if (json_resp_parse(span_make((const char *)evbuffer_pullup(r->jbody, -1), n), &r->lp->toks,
                            &jr) == 0) {
            relay_series(r, jr.model);
            meter_body(&r->meter, &jr);
        }
    }
    if (r->chunked_out) {
        struct iovec last = { (void *)"0\r\n\r\n", 5 };
        relay_emit(r, &last, 1);
    }
    relay_release_upstream(r, true);
    if (r->timer_ev)
        event_del(r->timer_ev);
    relay_set_state(r, RELAY_ST_FLUSH);
    /* E2E ends when the last byte left: wait for the output to drain. */
    bufferevent_setwatermark(r->client.bev, EV_WRITE, 0, 0);
    if (evbuffer_get_length(relay_client_out(r)) == 0)
        relay_finish(r, PITOT_EOK);
}

static void relay_backpressure(struct relay *r)
{
    size_t cap = r->cfg->stream_buffer_bytes;

    if (r->ubev && !r->paused && evbuffer_get_length(relay_client_out(r)) > cap) {
        r->paused = true;
        if (r->up_direct)
            event_del(r->up_rd);
        else
            bufferevent_disable(r->ubev, EV_READ);
        bufferevent_setwatermark(r->client.bev, EV_WRITE, cap / 2, 0);
    }
}

/* WAIT: reads the response heads the input holds. 1xx interim responses are
 * dropped (not relayed; the final one follows), at most RELAY_MAX_INTERIM of
 * them: a backend cannot hold a request with an endless row of them. Returns
 * true once the final head went to the client (the head's deadline is then
 * off), false while it is incomplete or when the relay failed. */
static bool relay_up_head(struct relay *r)
{
    struct evbuffer *in = bufferevent_get_input(r->ubev);
    size_t cap = r->cfg->max_header_bytes, hl;

    for (;;) {
        size_t len = evbuffer_get_length(in), look = len < cap ? len : cap;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        enum h1_result res;

        /* the head so far, from its first byte: h1 parses only what is new
         * and fails a head past max_header_bytes itself */
        if ((res = h1_execute(&r->up, span_make(p, look), &hl)) == H1_AGAIN)
            return false;
        if (res != H1_HEAD) {
            relay_fail(r, r->up.err != PITOT_EOK ? r->up.err : PITOT_EUPSTREAM_PROTOCOL);
            return false;
        }
        if (r->up.msg.status >= 200)
            break;
        evbuffer_drain(in, hl);
        h1_reset(&r->up);
        if (r->is_head)
            h1_expect_no_body(&r->up); /* h1_reset forgot it */
        if (++r->interim > RELAY_MAX_INTERIM) {
            relay_fail(r, PITOT_EUPSTREAM_PROTOCOL);
            return false;
        }
    }
    if (r->timer_ev)
        event_del(r->timer_ev);
    relay_resp_head(r);
    evbuffer_drain(in, hl);
    return true;
}

/* Feeds what the backend sent; returns when it is consumed, the response is
 * complete, or the relay failed (r may then be DONE but is still alive). */
static void relay_up_input(struct relay *r)
{
    struct evbuffer *in = bufferevent_get_input(r->ubev);
    size_t used;

    if (r->st == RELAY_ST_WAIT && !relay_up_head(r))
        return;
    for (;;) {
        struct evbuffer_iovec v;
        size_t avail = evbuffer_peek(in, -1, NULL, &v, 1) > 0 ? v.iov_len : 0;
        enum h1_result res = h1_execute(&r->up, span_make(avail ? v.iov_base : "", avail), &used);

        if (used)
            evbuffer_drain(in, used);
        if (relay_up_ended(r, res))
            return;
        if (avail == 0)
            break;
    }
    relay_head_out(r);
    relay_backpressure(r);
}

/* The backend closed while pitot waited for its head: do the bytes it sent
 * fail to begin a status line, "HTTP/" DIGIT "." DIGIT SP 3DIGIT (RFC 9112
 * 4), so that it sent garbage (an invalid response), not a head cut short
 * (a reset)? */
static bool relay_up_garbage(struct relay *r)
{
    static const char form[] = "HTTP/9.9 999"; /* '9': any digit */
    struct evbuffer *in = bufferevent_get_input(r->ubev);
    size_t len = evbuffer_get_length(in), n = len < sizeof(form) - 1 ? len : sizeof(form) - 1, i;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);

    for (i = 0; i < n; i++)
        if (form[i] == '9' ? p[i] < '0' || p[i] > '9' : p[i] != form[i])
            return true;
    return false;
}

static void relay_up_read_cb(struct bufferevent *bev, void *arg)
{
    struct relay *r = arg;

    if (r->st == RELAY_ST_CONNECT)
        relay_wait_begin(r, r->cfg->body_timeout_ms);
    relay_up_input(r);
}

static void relay_up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct relay *r = arg;

    if (what & BEV_EVENT_CONNECTED) {
        relay_wait_begin(r, r->cfg->body_timeout_ms);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        relay_fail(r, PITOT_EUPSTREAM_TIMEOUT);
        return;
    }
    /* EOF or error. */
    if (r->st == RELAY_ST_CONNECT) {
        relay_fail(r, PITOT_EUPSTREAM_CONNECT);
        return;
    }
    if (r->st == RELAY_ST_WAIT && r->reused && !r->retried &&
        evbuffer_get_length(bufferevent_get_input(bev)) == 0) {
        /* The backend closed a pooled connection as we reused it: nothing of
         * this request reached it, so a fresh connection may carry it. */
        r->retried = true;
        bufferevent_free(r->ubev);
        r->ubev = NULL;
        relay_send(r);
        return;
    }
    if (r->st == RELAY_ST_STREAM && (what & BEV_EVENT_EOF)) {
        /* Consume what arrived with the EOF, then let the parser judge. */
        if (evbuffer_get_length(bufferevent_get_input(bev)))
            relay_up_input(r);
        if (r->st != RELAY_ST_STREAM)
            return;
        if (h1_finish(&r->up) == H1_DONE) {
            r->up_keep = false;
            relay_resp_done(r);
            return;
        }
    }
    relay_fail(r, r->st == RELAY_ST_WAIT && relay_up_garbage(r) ? PITOT_EUPSTREAM_PROTOCOL
                                                                : PITOT_EUPSTREAM_RESET);
}

/* ---- ends -------------------------------------------------------------- */

/* The backend failed (or no backend): tell the client as well as the state of
 * the response allows, and account the request. */
static void relay_fail(struct relay *r, enum pitot_err e)
{
    if (r->st == RELAY_ST_DONE || r->st == RELAY_ST_FLUSH)
        return;
    if (r->timer_ev)
        event_del(r->timer_ev);
    if (e != PITOT_ENO_BACKEND && r->be)
        met_add_upstream_error(r->lp->met, r->be->idx, e);
    relay_release_upstream(r, false);
    if (r->be && r->status == 0 && (r->st == RELAY_ST_CONNECT || r->st == RELAY_ST_WAIT)) {
        /* The backend failed before its answer began (refused, reset, timed
         * out, an invalid or oversized head): its fault, toward ejection. */
        struct bal_backend *failed = r->be;
        router_result(r->lp->rt, failed, true, clk_now_us());
        if (e == PITOT_EUPSTREAM_CONNECT || e == PITOT_EUPSTREAM_RESET) {
            /* Nothing reached the client: another backend may serve it. */
            router_done(r->lp->rt, failed, 0);
            met_gauge_add(r->lp->met, MET_IN_FLIGHT, failed->idx, -1);
            r->in_flight_counted = 0;
            r->tried[failed->idx] = true;
            r->retried = false;
            if (r->cfg->retry) {
                r->be = NULL;
                r->retry_err = e;
                relay_route(r, false);
                if (r->be || r->queued || r->st == RELAY_ST_DONE)
                    return;
                /* nowhere else to go: the client learns how the last try
                 * failed (502), not "no healthy backend" (503) */
                r->be = failed;
            }
        }
    }
    if (r->status == 0) {
        relay_reply_error(r, e);
    } else {
        if (r->sse && !r->passthrough) {
            /* One error event, then the connection ends without the final
             * chunk: no client can take a cut stream for a complete one. */
            char ev[384];
            int n;
            relay_release_held(r, span_make(NULL, 0));
            relay_write_chunk(r, r->stage, r->stage_len);
            r->stage_len = 0;
            n = api_err_event(r->api, e, ev, sizeof(ev));
            relay_write_chunk(r, ev, (size_t)n);
        }
        r->client_keep = false;
    }
    relay_finish(r, e);
}

void relay_client_gone(struct relay *r, enum pitot_err why)
{
    if (r->st == RELAY_ST_DONE)
        return;
    if (r->queued) {
        queue_remove(r->lp->queue, r->queued, true, MET_SHED_CLIENT_GONE);
        r->queued = NULL;
    }
    /* Closing the backend connection is what makes it stop generating. */
    if (r->ubev) {
        bufferevent_free(r->ubev);
        r->ubev = NULL;
    }
    r->client_keep = false;
    relay_finish(r, r->st == RELAY_ST_FLUSH ? PITOT_EOK : why);
}

void relay_client_drained(struct relay *r)
{
    r->blocked = false;
    if (r->st == RELAY_ST_FLUSH) {
        if (evbuffer_get_length(relay_client_out(r)) == 0)
            relay_finish(r, PITOT_EOK);
        return;
    }
    if (r->paused && r->ubev) {
        r->paused = false;
        bufferevent_setwatermark(r->client.bev, EV_WRITE, 0, 0);
        if (r->up_direct)
            relay_up_direct_arm(r);
        else
            bufferevent_enable(r->ubev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_input(r->ubev)))
            relay_up_input(r);
    }
}

static const char *relay_finish_label(enum json_finish f)
{
    return f == JSON_FINISH_NONE ? NULL : json_finish_label(f);
}

_Static_assert(RELAY_ID_MAX == OTLP_ID_MAX, "X-Request-Id sizes of relay and otlp differ");

/* Hands the request's span to the exporter: a copy into its ring. */
static void relay_export_span(struct relay *r, const struct meter_result *res, uint64_t end_mono_us,
                              enum pitot_err outcome)
{
    struct loop *lp = r->lp;
    struct otlp_span s;

    memset(&s, 0, sizeof(s));
    memcpy(s.trace_id, r->trace_id, sizeof(s.trace_id));
    memcpy(s.span_id, r->span_id, sizeof(s.span_id));
    memcpy(s.parent_id, r->parent_id, sizeof(s.parent_id));
    memcpy(s.method, r->method, sizeof(s.method));
    /* the request's name as a metric label: bounded, never raw client text */
    if (r->req_model[0])
        met_model_name(lp->met, met_model_lookup(lp->met, span_cstr(r->req_model)), s.request_model,
                       sizeof(s.request_model));
    memcpy(s.response_model, r->resp_model, sizeof(s.response_model));
    memcpy(s.request_id, r->id, sizeof(s.request_id));
    s.start_us = r->wall_us;
    s.end_us = r->wall_us + (end_mono_us > r->t0_us ? end_mono_us - r->t0_us : 0);
    s.ttft_us = res->ttft_us;
    s.input_tokens = res->prompt_tokens;
    s.output_tokens = res->completion_tokens;
    s.cached_tokens = res->cached_tokens;
    s.status = r->status;
    if (r->be) {
        memcpy(s.server_address, relay_be_cfg(r)->host, sizeof(s.server_address));
        s.server_port = relay_be_cfg(r)->port;
    } else {
        s.server_address[0] = '\0';
        s.server_port = 0;
    }
    s.flavor = r->be ? r->flavor : CFG_FLAVOR_AUTO;
    s.op = met_otel_op_of_path(r->path);
    s.finish = r->meter.finish;
    s.error = outcome;
    snprintf(s.tier, sizeof(s.tier), "%s", r->cfg->tiers[r->tier].name);
    otlp_add(lp->otlp, &s);
}

/* Accounts the request once: metrics, access log, backend counters. */
static void relay_finish(struct relay *r, enum pitot_err outcome)
{
    struct loop *lp = r->lp;
    struct met_registry *met = lp->met;
    struct meter_result res;
    struct alog_rec rec;
    char model_name[CFG_NAME_MAX];
    uint64_t end = clk_now_us();

    if (r->st == RELAY_ST_DONE)
        return;
    relay_head_out(r);
    relay_set_state(r, RELAY_ST_DONE);
    r->outcome = outcome;
    if (r->timer_ev)
        event_del(r->timer_ev);
    relay_series(r, span_make(NULL, 0));
    meter_finish(&r->meter, end, &res);
    if (r->be) {
        unsigned s = r->series;
        met_add_request(met, s, r->status ? r->status : err_status(outcome));
        if (res.ttft_us >= 0)
            met_observe_us(met, MET_TTFT, s, (uint64_t)res.ttft_us);
        met_observe_us(met, MET_E2E, s, (uint64_t)res.e2e_us);
        if (res.tpot_us >= 0)
            met_observe_us(met, MET_TPOT, s, (uint64_t)res.tpot_us);
        if (res.prompt_tokens > 0)
            met_add(met, MET_PROMPT_TOKENS, s, (uint64_t)res.prompt_tokens);
        if (res.completion_tokens > 0)
            met_add(met, MET_COMPLETION_TOKENS, s, (uint64_t)res.completion_tokens);
        if (res.cached_tokens > 0)
            met_add(met, MET_CACHED_TOKENS, s, (uint64_t)res.cached_tokens);
        met_add_finish(met, s, r->meter.finish);
        if (r->meter.refusal)
            met_add(met, MET_REFUSALS, s, 1);
        if (r->meter.stalls)
            met_add(met, MET_STALLS, s, r->meter.stalls);
        if (outcome == PITOT_ECLIENT_CANCEL || outcome == PITOT_ECLIENT_TIMEOUT)
            met_add(met, MET_CLIENT_CANCELS, s, 1);
        met_add_slo(met, r->tier,
                    outcome == PITOT_EOK && r->status < 400 &&
                        tier_slo_met(&r->cfg->tiers[r->tier], res.ttft_us, res.tpot_us,
                                     res.completion_tokens));
        if (r->cfg->otel_metrics) { /* opentelemetry.metrics: the gen_ai_* histograms */
            struct met_otel_obs ob = {
                .op = met_otel_op_of_path(r->path),
                .flavor = r->flavor,
                .outcome = outcome,
                .status = r->status ? r->status : err_status(outcome),
                .e2e_us = res.e2e_us,
                .ttft_us = res.ttft_us,
                .tpot_us = res.tpot_us,
                .input_tokens = res.prompt_tokens,
                .output_tokens = res.completion_tokens,
            };
            met_observe_otel(met, s, &ob);
        }
    } else {
        met_add_local(met, r->tier, r->api, r->status ? r->status : err_status(outcome));
    }
    relay_rl_settle(r, res.prompt_tokens, res.completion_tokens);
    met_model_name(met, r->model, model_name, sizeof(model_name));
    memset(&rec, 0, sizeof(rec));
    rec.id = span_cstr(r->id);
    rec.wall_us = r->wall_us;
    rec.method = span_cstr(r->method);
    rec.path = span_cstr(r->path);
    rec.status = r->status;
    rec.backend = r->be ? relay_be_cfg(r)->name : NULL;
    rec.model = r->be || r->req_model[0] ? model_name : NULL;
    rec.tier = r->cfg->tiers[r->tier].name;
    rec.key = r->key >= 0 ? r->cfg->keys[r->key].name : NULL;
    rec.api = api_label(r->api);
    rec.stream = r->sse;
    rec.ttft_us = res.ttft_us;
    rec.itl_p50_us = res.itl_p50_us;
    rec.itl_max_us = res.itl_max_us;
    rec.tpot_us = res.tpot_us;
    rec.e2e_us = res.e2e_us;
    rec.prompt_tokens = res.prompt_tokens;
    rec.completion_tokens = res.completion_tokens;
    rec.cached_tokens = res.cached_tokens;
    rec.tokens_estimated = res.tok_src == METER_TOK_COUNTED;
    rec.finish_reason = relay_finish_label(r->meter.finish);
    rec.refusal = r->meter.refusal;
    rec.truncated = res.truncated;
    rec.stalls = r->meter.stalls;
    rec.outcome = err_outcome(outcome);
    rec.error = outcome == PITOT_EOK ? NULL : err_label(outcome);
    if (lp->alog)
        alog_write(lp->alog, &rec);
    if (lp->otlp)
        relay_export_span(r, &res, end, outcome);
    if (r->be && r->in_flight_counted) {
        /* A whole stream is the only clean speed sample: a cut one or a
         * buffered body says nothing about the time per token. */
        router_done(lp->rt, r->be,
                    outcome == PITOT_EOK && r->sse && res.tpot_us > 0 ? (uint64_t)res.tpot_us : 0);
        r->in_flight_counted = 0;
        met_gauge_add(met, MET_IN_FLIGHT, r->be->idx, -1);
        queue_note_completion(lp->queue, end);
    }
    /* Hands control back to the front, which frees us; then a held request
     * may take the capacity this one leaves. */
    r->client.done(r->client.ud, r->client_keep && (outcome == PITOT_EOK || r->reply_whole));
    queue_kick(lp->queue);
}
