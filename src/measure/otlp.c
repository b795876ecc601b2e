/* otlp: the span ring, the OTLP/HTTP JSON encoder and the exporter that
 * POSTs batches to the collector over fetch, one at a time. */
#include "pitot/measure/otlp.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "pitot/format/flavor.h"
#include "pitot/io/fetch.h"
#include "pitot/measure/metrics.h"
#include "pitot/util/span.h"
#include "pitot/util/version.h"

#define OTLP_REPLY_MAX 65536 /* a collector's answer body we read (and ignore) */

/* ---- ring -------------------------------------------------------------- */

int otlp_ring_init(struct otlp_ring *r, size_t cap)
{
    memset(r, 0, sizeof(*r));
    if (cap == 0 || (r->slot = calloc(cap, sizeof(*r->slot))) == NULL)
        return -PITOT_ENOMEM;
    r->cap = cap;
    return 0;
}

void otlp_ring_release(struct otlp_ring *r)
{
    free(r->slot);
    memset(r, 0, sizeof(*r));
}

bool otlp_ring_push(struct otlp_ring *r, const struct otlp_span *s)
{
    if (r->count == r->cap)
        return false;
    r->slot[(r->head + r->count) % r->cap] = *s;
    r->count++;
    return true;
}

const struct otlp_span *otlp_ring_at(const struct otlp_ring *r, size_t i)
{
    return i < r->count ? &r->slot[(r->head + i) % r->cap] : NULL;
}

void otlp_ring_pop(struct otlp_ring *r, size_t n)
{
    if (n > r->count)
        n = r->count;
    r->head = (r->head + n) % r->cap;
    r->count -= n;
}

/* ---- encoder ----------------------------------------------------------- */

/* Appends to out[0..cap); once something did not fit, nothing more is
 * written and `over` stays set. */
struct otlp_w {
    char *p;
    size_t len, cap;
    bool over;
};

static void w_raw(struct otlp_w *w, const char *s, size_t n)
{
    if (w->over || n > w->cap - w->len) {
        w->over = true;
        return;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void w_lit(struct otlp_w *w, const char *s)
{
    w_raw(w, s, strlen(s));
}

static void w_u64(struct otlp_w *w, uint64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%" PRIu64, v);

    w_raw(w, b, (size_t)n);
}

/* "s", escaped. */
static void w_str(struct otlp_w *w, const char *s)
{
    size_t len = strlen(s);

    /* 6 bytes per input byte at most (json_str_encode) and the quotes */
    if (w->over || w->cap - w->len < 6 * len + 2) {
        w->over = true;
        return;
    }
    w->p[w->len++] = '"';
    w->len += json_str_encode(span_make(s, len), w->p + w->len, w->cap - w->len);
    w->p[w->len++] = '"';
}

/* "key":"<ns>" from microseconds. */
static void w_nanos(struct otlp_w *w, const char *key, uint64_t us)
{
    w_lit(w, key);
    w_raw(w, "\"", 1);
    w_u64(w, us * 1000u);
    w_raw(w, "\"", 1);
}

/* The opening of one attribute: ,{"key":"K","value":{ */
static void w_key(struct otlp_w *w, bool *first, const char *key)
{
    w_lit(w, *first ? "{\"key\":" : ",{\"key\":");
    *first = false;
    w_str(w, key);
    w_lit(w, ",\"value\":{");
}

static void w_attr_str(struct otlp_w *w, bool *first, const char *key, const char *v)
{
    w_key(w, first, key);
    w_lit(w, "\"stringValue\":");
    w_str(w, v);
    w_lit(w, "}}");
}

/* int64 goes as a decimal string in the protobuf JSON mapping. */
static void w_attr_int(struct otlp_w *w, bool *first, const char *key, int64_t v)
{
    char b[24];

    snprintf(b, sizeof(b), "%" PRId64, v);
    w_key(w, first, key);
    w_lit(w, "\"intValue\":\"");
    w_lit(w, b);
    w_lit(w, "\"}}");
}

/* Seconds from microseconds, exactly: 0.000123 (a JSON number). */
static void w_attr_secs(struct otlp_w *w, bool *first, const char *key, uint64_t us)
{
    char b[32];

    snprintf(b, sizeof(b), "%" PRIu64 ".%06" PRIu64, us / 1000000u, us % 1000000u);
    w_key(w, first, key);
    w_lit(w, "\"doubleValue\":");
    w_lit(w, b);
    w_lit(w, "}}");
}

/* A string array of one value. */
static void w_attr_str1(struct otlp_w *w, bool *first, const char *key, const char *v)
{
    w_key(w, first, key);
    w_lit(w, "\"arrayValue\":{\"values\":[{\"stringValue\":");
    w_str(w, v);
    w_lit(w, "}]}}}");
}

/* The error class of a failed span (error.type), NULL on success: pitot's
 * own kind, else the HTTP status of a 4xx/5xx answer (a CLIENT span fails on
 * both, per the HTTP conventions). */
static const char *otlp_error_type(const struct otlp_span *s, char *buf, size_t cap)
{
    if (s->error != PITOT_EOK)
        return err_label(s->error);
    if (s->status >= 400) {
        snprintf(buf, cap, "%d", s->status);
        return buf;
    }
    return NULL;
}

static void otlp_encode_attrs(struct otlp_w *w, const struct cfg *c, const struct otlp_span *s,
                              const char *error_type)
{
    bool first = true;

    w_lit(w, ",\"attributes\":[");
    if (s->op != MET_OTEL_OP_NONE) {
        w_attr_str(w, &first, "gen_ai.operation.name", met_otel_op_label(s->op));
        if (s->flavor != CFG_FLAVOR_AUTO)
            w_attr_str(w, &first, "gen_ai.provider.name", flv_name(s->flavor));
        if (s->request_model[0])
            w_attr_str(w, &first, "gen_ai.request.model", s->request_model);
        if (s->response_model[0])
            w_attr_str(w, &first, "gen_ai.response.model", s->response_model);
        if (s->input_tokens >= 0)
            w_attr_int(w, &first, "gen_ai.usage.input_tokens", s->input_tokens);
        if (s->output_tokens >= 0)
            w_attr_int(w, &first, "gen_ai.usage.output_tokens", s->output_tokens);
        if (s->cached_tokens >= 0)
            w_attr_int(w, &first, "gen_ai.usage.cache_read.input_tokens", s->cached_tokens);
        if (s->finish != JSON_FINISH_NONE)
            w_attr_str1(w, &first, "gen_ai.response.finish_reasons", json_finish_label(s->finish));
        if (s->ttft_us >= 0)
            w_attr_secs(w, &first, "gen_ai.response.time_to_first_chunk", (uint64_t)s->ttft_us);
    }
    if (s->server_port != 0) {
        w_attr_str(w, &first, "server.address", s->server_address);
        w_attr_int(w, &first, "server.port", s->server_port);
    }
    w_attr_str(w, &first, "http.request.method", s->method);
    if (s->status > 0)
        w_attr_int(w, &first, "http.response.status_code", s->status);
    if (error_type != NULL)
        w_attr_str(w, &first, "error.type", error_type);
    if (s->tier[0] != '\0')
        w_attr_str(w, &first, "pitot.tier", s->tier);
    w_attr_str(w, &first, "pitot.request_id", s->request_id);
    w_raw(w, "]", 1);
}

/* One span object. */
static void otlp_encode_span(struct otlp_w *w, const struct cfg *c, const struct otlp_span *s)
{
    char ebuf[16], name[sizeof("text_completion ") + CFG_NAME_MAX];
    const char *et = otlp_error_type(s, ebuf, sizeof(ebuf));

    w_lit(w, "{\"traceId\":");
    w_str(w, s->trace_id);
    w_lit(w, ",\"spanId\":");
    w_str(w, s->span_id);
    if (s->parent_id[0]) {
        w_lit(w, ",\"parentSpanId\":");
        w_str(w, s->parent_id);
    }
    /* {gen_ai.operation.name} {gen_ai.request.model}; HTTP spans: {method} */
    if (s->op == MET_OTEL_OP_NONE)
        snprintf(name, sizeof(name), "%s", s->method);
    else if (s->request_model[0])
        snprintf(name, sizeof(name), "%s %s", met_otel_op_label(s->op), s->request_model);
    else
        snprintf(name, sizeof(name), "%s", met_otel_op_label(s->op));
    w_lit(w, ",\"name\":");
    w_str(w, name);
    w_lit(w, ",\"kind\":3"); /* CLIENT */
    w_nanos(w, ",\"startTimeUnixNano\":", s->start_us);
    w_nanos(w, ",\"endTimeUnixNano\":", s->end_us);
    otlp_encode_attrs(w, c, s, et);
    if (s->ttft_us >= 0) {
        w_nanos(w, ",\"events\":[{\"timeUnixNano\":", s->start_us + (uint64_t)s->ttft_us);
        w_lit(w, ",\"name\":\"" OTLP_FIRST_TOKEN_EVENT "\"}]");
    }
    if (et != NULL) {
        w_lit(w, ",\"status\":{\"code\":2,\"message\":"); /* STATUS_CODE_ERROR */
        w_str(w, s->error != PITOT_EOK ? err_message(s->error) : err_reason_phrase(s->status));
        w_raw(w, "}", 1);
    }
    w_raw(w, "}", 1);
}

size_t otlp_encode(const struct cfg *c, const struct otlp_ring *r, size_t n, char *out, size_t cap)
{
    struct otlp_w w = { out, 0, cap, false };
    bool first = true;
    size_t i;

    w_lit(&w, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    w_attr_str(&w, &first, "service.name", c->otel_service_name);
    w_attr_str(&w, &first, "service.version", PITOT_VERSION);
    w_lit(&w, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"pitot\",\"version\":\"" PITOT_VERSION
              "\"},\"spans\":[");
    for (i = 0; i < n && i < r->count; i++) {
        if (i > 0)
            w_raw(&w, ",", 1);
        otlp_encode_span(&w, c, otlp_ring_at(r, i));
    }
    w_lit(&w, "]}]}]}");
    return w.over ? 0 : w.len;
}

/* ---- exporter ---------------------------------------------------------- */

struct otlp {
    pthread_mutex_t lock;     /* ring (head, count), busy, and the span counters:
                                 every loop adds, the exporter's loop takes */
    bool busy;                /* an export is on the wire */
    struct event_base *base;  /* borrowed */
    const struct cfg *cfg;    /* borrowed */
    struct met_registry *met; /* borrowed */
    struct tls_client *tls;   /* borrowed: NULL for an http:// collector */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char authority[CFG_HOST_MAX + 8]; /* Host header: host:port, [v6]:port */
    struct otlp_ring ring;
    struct event *timer;    /* owned: every interval, persistent */
    struct event *kick;     /* owned: a full batch is waiting */
    struct fetch *inflight; /* owned: the export on the wire, NULL when none */
    size_t inflight_n;      /* spans in it */
    char *buf;              /* owned: the encoded batch, sent by reference */
    size_t buf_cap;
};

static void otlp_export(struct otlp *o);

/* The collector answered, failed or timed out: the batch is settled. */
static void otlp_done_cb(void *ud, enum fetch_result res, int status, struct span body)
{
    struct otlp *o = ud;
    bool full;

    pthread_mutex_lock(&o->lock);
    if (res == FETCH_OK && status >= 200 && status < 300)
        met_add_spans_exported(o->met, o->inflight_n);
    else
        met_add_spans_dropped(o->met, MET_TRACE_DROP_EXPORT_FAILED, o->inflight_n);
    o->busy = false;
    full = o->ring.count >= o->cfg->otel_batch_size;
    pthread_mutex_unlock(&o->lock);
    o->inflight = NULL; /* fetch frees itself when we return */
    o->inflight_n = 0;
    /* a full batch waiting goes now; a partial one waits for the timer */
    if (full)
        event_active(o->kick, EV_TIMEOUT, 1);
}

/* Encodes the oldest batch and sends it; the ring has room again at once. */
static void otlp_export(struct otlp *o)
{
    size_t n, len;

    pthread_mutex_lock(&o->lock);
    n = o->ring.count < o->cfg->otel_batch_size ? o->ring.count : o->cfg->otel_batch_size;
    if (o->busy || n == 0) {
        pthread_mutex_unlock(&o->lock);
        return;
    }
    o->busy = true;
    pthread_mutex_unlock(&o->lock);
    /* the n oldest, read without the lock: other loops only write past them */
    len = otlp_encode(o->cfg, &o->ring, n, o->buf, o->buf_cap);
    pthread_mutex_lock(&o->lock);
    otlp_ring_pop(&o->ring, n);
    pthread_mutex_unlock(&o->lock);
    if (len > 0)
        o->inflight =
            fetch_post(o->base, o->tls, (const struct sockaddr *)&o->addr, o->addrlen, o->authority,
                       o->cfg->otel_trace_path, "application/json", o->buf, len,
                       o->cfg->otel_trace_timeout_ms, OTLP_REPLY_MAX, otlp_done_cb, o);
    if (o->inflight == NULL) {
        pthread_mutex_lock(&o->lock);
        met_add_spans_dropped(o->met, MET_TRACE_DROP_EXPORT_FAILED, n);
        o->busy = false;
        pthread_mutex_unlock(&o->lock);
        return;
    }
    o->inflight_n = n;
}

static void otlp_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    otlp_export(arg);
}

struct otlp *otlp_new(struct event_base *base, const struct cfg *c, struct met_registry *met,
                      struct tls_client *tls, const struct sockaddr *sa, socklen_t salen)
{
    struct otlp *o = calloc(1, sizeof(*o));
    unsigned ms = c->otel_trace_interval_ms;
    struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

    if (o == NULL)
        return NULL;
    pthread_mutex_init(&o->lock, NULL);
    o->base = base;
    o->cfg = c;
    o->met = met;
    o->tls = tls;
    if (salen > sizeof(o->addr) || c->otel_batch_size == 0 ||
        otlp_ring_init(&o->ring, c->otel_queue_size) != 0) {
        otlp_free(o);
        return NULL;
    }
    memcpy(&o->addr, sa, salen);
    o->addrlen = salen;
    snprintf(o->authority, sizeof(o->authority),
             strchr(c->otel_trace_host, ':') ? "[%s]:%u" : "%s:%u", c->otel_trace_host,
             (unsigned)c->otel_trace_port);
    o->buf_cap = otlp_encode_cap(c->otel_batch_size);
    o->buf = malloc(o->buf_cap);
    o->timer = event_new(base, -1, EV_PERSIST, otlp_tick_cb, o);
    o->kick = event_new(base, -1, 0, otlp_tick_cb, o);
    if (o->buf == NULL || o->timer == NULL || o->kick == NULL || evtimer_add(o->timer, &tv) != 0) {
        otlp_free(o);
        return NULL;
    }
    return o;
}

void otlp_free(struct otlp *o)
{
    if (o == NULL)
        return;
    fetch_cancel(o->inflight);
    if (o->timer)
        event_free(o->timer);
    if (o->kick)
        event_free(o->kick);
    otlp_ring_release(&o->ring);
    free(o->buf);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

void otlp_add(struct otlp *o, const struct otlp_span *s)
{
    bool kick = false;

    pthread_mutex_lock(&o->lock);
    if (!otlp_ring_push(&o->ring, s))
        met_add_spans_dropped(o->met, MET_TRACE_DROP_QUEUE_FULL, 1);
    else
        kick = o->ring.count >= o->cfg->otel_batch_size && !o->busy;
    pthread_mutex_unlock(&o->lock);
    if (kick) /* the exporter's loop, maybe another thread's */
        event_active(o->kick, EV_TIMEOUT, 1);
}

size_t otlp_queued(struct otlp *o)
{
    size_t n;

    pthread_mutex_lock(&o->lock);
    n = o->ring.count;
    pthread_mutex_unlock(&o->lock);
    return n;
}
