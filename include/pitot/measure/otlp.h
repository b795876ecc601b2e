/* otlp: OTLP/HTTP span export, one span per proxied request. At request end
 * the relay copies a fixed-size record into a bounded ring: no allocation, no
 * I/O, no encoding. A timer, or a full batch, encodes up to batch_size records
 * as OTLP JSON (an ExportTraceServiceRequest in the protobuf JSON mapping)
 * into a buffer sized at startup and POSTs it to the collector, one export in
 * flight at a time. A collector that is slow or down costs dropped spans,
 * counted in pitot_trace_spans_dropped_total, never latency or memory. One
 * exporter per event loop. */
#ifndef PITOT_MEASURE_OTLP_H
#define PITOT_MEASURE_OTLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "pitot/format/config.h"
#include "pitot/util/err.h"
#include "pitot/format/json.h"
#include "pitot/measure/metrics.h"

#define OTLP_ID_MAX 128             /* X-Request-Id, as relay accepts it */
#define OTLP_SPAN_JSON_MAX 4096     /* one encoded span, whatever its fields hold */
#define OTLP_ENVELOPE_JSON_MAX 2048 /* resource, scope and brackets around the spans */
#define OTLP_FIRST_TOKEN_EVENT "pitot.first_token"

/* One finished request as the relay hands it over. Fixed size and without
 * pointers, so that it is copied into the ring as it is. Strings are
 * NUL-terminated; never prompt, output or credentials. */
struct otlp_span {
    char trace_id[33];                 /* 32 lowercase hex digits */
    char span_id[17];                  /* 16 hex: the parent id pitot sent upstream */
    char parent_id[17];                /* the client's span id; "" when it sent none */
    char method[16];                   /* HTTP request method */
    char request_model[CFG_NAME_MAX];  /* the request's model; "" when it named none */
    char response_model[CFG_NAME_MAX]; /* as the backend reported it (any bytes); "" */
    char request_id[OTLP_ID_MAX + 1];  /* X-Request-Id */
    uint64_t start_us;                 /* Unix epoch microseconds: request head complete */
    uint64_t end_us;                   /* last byte sent, or the end of the failure */
    int64_t ttft_us;                   /* first output event, after start; -1: none */
    int64_t input_tokens;              /* -1: unknown */
    int64_t output_tokens;             /* -1: unknown */
    int64_t cached_tokens;             /* -1: unknown */
    int status;                        /* HTTP status sent to the client; 0: none */
    char server_address[CFG_HOST_MAX]; /* the chosen backend's host (copied: a reload
                                          may put another in its slot); "": none */
    uint16_t server_port;              /* its port; 0: no backend chosen */
    enum met_otel_op op;               /* gen_ai.operation.name (met_otel_op_of_path); NONE: not a
                               GenAI call (/v1/models, ...), a plain HTTP client span */
    enum cfg_flavor flavor;            /* the backend's; AUTO while unknown */
    enum json_finish finish;
    enum pitot_err error;    /* PITOT_EOK: success */
    char tier[CFG_NAME_MAX]; /* the request's tier (copied: a reload may
                                remove it) */
};

/* ---- the ring: a bounded FIFO of span records -------------------------- */

struct otlp_ring {
    struct otlp_span *slot; /* owned: cap records */
    size_t cap;
    size_t head;  /* index of the oldest */
    size_t count; /* records held */
};

/* Allocates room for cap (>= 1) records. Returns 0 or -PITOT_ENOMEM. */
int otlp_ring_init(struct otlp_ring *r, size_t cap);
void otlp_ring_release(struct otlp_ring *r);

/* Copies s in as the newest record. False when the ring is full: then
 * nothing is stored (the caller counts the drop). */
bool otlp_ring_push(struct otlp_ring *r, const struct otlp_span *s);

/* The i-th oldest record (0: the oldest), NULL when i >= count. Borrowed
 * until the next pop. */
const struct otlp_span *otlp_ring_at(const struct otlp_ring *r, size_t i);

/* Removes the n oldest records (all of them when n >= count). */
void otlp_ring_pop(struct otlp_ring *r, size_t n);

/* ---- the encoder ------------------------------------------------------- */

/* Bytes otlp_encode() may need for n spans. */
static inline size_t otlp_encode_cap(size_t n)
{
    return OTLP_ENVELOPE_JSON_MAX + n * OTLP_SPAN_JSON_MAX;
}

/* Encodes the n oldest records of r (n <= count) as one OTLP/HTTP JSON
 * ExportTraceServiceRequest into out[0..cap): one resourceSpans with
 * service.name = c->otel_service_name and service.version, one scopeSpans
 * with scope {name "pitot", version}, the spans in ring order. Span kind
 * CLIENT; ids lowercase hex; times decimal strings in nanoseconds; int
 * attributes as decimal strings; strings JSON-escaped (invalid UTF-8 as
 * U+FFFD). Server address and port, tier names come from c. Nothing is
 * removed from r. Returns the length, or 0 when it may not fit in cap (strings
 * are checked at 6 bytes per byte): never with cap >= otlp_encode_cap(n). */
size_t otlp_encode(const struct cfg *c, const struct otlp_ring *r, size_t n, char *out, size_t cap);

/* ---- the exporter ------------------------------------------------------ */

struct event_base;
struct met_registry;
struct otlp;
struct tls_client;

/* An exporter on base for c's opentelemetry.traces settings, POSTing to the
 * collector's address sa (resolved by the caller, at startup: nothing is
 * resolved later), over TLS with tls (borrowed; NULL for http://), and
 * counting into met. Allocates the ring (queue_size
 * records) and the encode buffer (for batch_size spans): nothing more is
 * allocated per span; one export in flight holds one connection. NULL on
 * allocation failure. */
struct otlp *otlp_new(struct event_base *base, const struct cfg *c, struct met_registry *met,
                      struct tls_client *tls, const struct sockaddr *sa, socklen_t salen);

/* Drops what is queued or in flight (uncounted: the process is going away). */
void otlp_free(struct otlp *o);

/* Queues one span: an O(1) copy under a lock, from any loop's thread. When
 * the ring is full the span is dropped and counted (reason queue_full).
 * Reaching batch_size schedules an export on the exporter's loop, never from
 * this call. */
void otlp_add(struct otlp *o, const struct otlp_span *s);

/* Spans held in the ring now (not counting an export in flight). */
size_t otlp_queued(struct otlp *o);

#endif
