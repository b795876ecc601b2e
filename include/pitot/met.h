/* met: pitot's Prometheus metrics. One X-macro list declares every metric;
 * the registry, the text exposition and the docs table are generated from it.
 * Label values come from config (backends, tiers) and a bounded table of model
 * names, never from raw client input. A registry belongs to one event loop. */
#ifndef PITOT_MET_H
#define PITOT_MET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pitot/err.h"
#include "pitot/json.h"
#include "pitot/span.h"

struct evbuffer;
struct cfg;

/* Label sets (each a fixed tuple of label names). */
#define MET_LABELS_LIST(X)                                  \
    X(BMTC, "backend,model,tier,code")                      \
    X(BMT,  "backend,model,tier")                           \
    X(BMTR, "backend,model,tier,reason")                    \
    X(BK,   "backend,kind")                                 \
    X(B,    "backend")

/* X(ID, name, type, labels, help) - names and label sets are interface. */
#define MET_LIST(X)                                                                          \
    X(REQUESTS, "pitot_requests_total", COUNTER, BMTC,                                       \
      "Requests answered, by HTTP status sent to the client")                                \
    X(TTFT, "pitot_time_to_first_token_seconds", HISTOGRAM, BMT,                              \
      "Time from the complete request head to the first output-carrying event sent")         \
    X(ITL, "pitot_inter_token_latency_seconds", HISTOGRAM, BMT,                               \
      "Gap between consecutive output-carrying events sent to the client")                   \
    X(TPOT, "pitot_time_per_output_token_seconds", HISTOGRAM, BMT,                            \
      "Per request (E2E - TTFT) / (completion_tokens - 1)")                                  \
    X(E2E, "pitot_e2e_request_latency_seconds", HISTOGRAM, BMT,                               \
      "Time from the complete request head to the last byte sent to the client")             \
    X(PROMPT_TOKENS, "pitot_prompt_tokens_total", COUNTER, BMT,                              \
      "Prompt tokens, from usage or llama.cpp timings")                                     \
    X(COMPLETION_TOKENS, "pitot_completion_tokens_total", COUNTER, BMT,                      \
      "Completion tokens, from usage or timings, else counted output events")               \
    X(CACHED_TOKENS, "pitot_cached_tokens_total", COUNTER, BMT,                              \
      "Prompt tokens served from the backend's prompt cache")                               \
    X(FINISH_REASON, "pitot_finish_reason_total", COUNTER, BMTR,                             \
      "Completed generations by finish reason")                                             \
    X(REFUSALS, "pitot_refusals_total", COUNTER, BMT,                                        \
      "Answers detected as refusals")                                                        \
    X(STALLS, "pitot_stream_stalls_total", COUNTER, BMT,                                     \
      "Gaps between output events longer than the stall threshold")                          \
    X(CLIENT_CANCELS, "pitot_client_cancels_total", COUNTER, BMT,                            \
      "Requests whose client disconnected before the response was complete")                 \
    X(UPSTREAM_ERRORS, "pitot_upstream_errors_total", COUNTER, BK,                           \
      "Backend failures by kind")                                                            \
    X(IN_FLIGHT, "pitot_requests_in_flight", GAUGE, B,                                       \
      "Requests currently being served by the backend")                                      \
    X(BACKEND_UP, "pitot_backend_up", GAUGE, B,                                              \
      "1 if the backend's last health check succeeded")

enum met_type { MET_COUNTER, MET_GAUGE, MET_HISTOGRAM };

enum met_labels {
#define MET_LABELS_ENUM(id, names) MET_L_##id,
    MET_LABELS_LIST(MET_LABELS_ENUM)
#undef MET_LABELS_ENUM
    MET_L__COUNT
};

enum met_id {
#define MET_ID_ENUM(id, name, type, labels, help) MET_##id,
    MET_LIST(MET_ID_ENUM)
#undef MET_ID_ENUM
    MET__COUNT
};

/* The model label value for names beyond the table. */
#define MET_MODEL_OTHER "other"

struct met_registry;

/* Creates a registry for c's backends, tiers, models and buckets. All memory
 * is allocated here; observing never allocates. NULL on failure. */
struct met_registry *met_registry_new(const struct cfg *c);
void met_registry_free(struct met_registry *r);

/* Model label index for a backend-reported or configured name: finds it, or
 * learns it while the table (cfg models + max_model_labels) has room, else
 * returns the index of "other". Names longer than CFG_NAME_MAX-1 or holding
 * bytes outside [A-Za-z0-9._:/@+-] are "other". Called once per request. */
unsigned met_model_index(struct met_registry *r, struct span name);

/* The same lookup without learning: a name not yet in the table (or invalid)
 * is "other". For names that come from clients (the request's "model"). */
unsigned met_model_lookup(const struct met_registry *r, struct span name);

/* Copies the label value of model index `model` into out[0..cap), always
 * NUL-terminated (cut to fit); "other" for an index not in use. */
void met_model_name(const struct met_registry *r, unsigned model, char *out, size_t cap);

/* Index of the (backend, model, tier) series, for the calls below. */
unsigned met_series(const struct met_registry *r, unsigned backend, unsigned model, unsigned tier);

/* Histogram observation in microseconds (BMT histograms). */
void met_observe_us(struct met_registry *r, enum met_id id, unsigned series, uint64_t us);

/* Counter increment on a BMT series. */
void met_add(struct met_registry *r, enum met_id id, unsigned series, uint64_t n);

/* pitot_requests_total: one request answered with `status`. Distinct codes
 * per series are bounded (24); beyond that the code label is its class "5xx". */
void met_add_request(struct met_registry *r, unsigned series, int status);

/* pitot_finish_reason_total with reason = json_finish_label(f); NONE ignored. */
void met_add_finish(struct met_registry *r, unsigned series, enum json_finish f);

/* pitot_upstream_errors_total{backend, kind=err_label(kind)}. */
void met_add_upstream_error(struct met_registry *r, unsigned backend, enum pitot_err kind);

/* Per-backend gauges (IN_FLIGHT, BACKEND_UP). */
void met_gauge_set(struct met_registry *r, enum met_id id, unsigned backend, int64_t v);
void met_gauge_add(struct met_registry *r, enum met_id id, unsigned backend, int64_t delta);

/* Appends Prometheus text format 0.0.4 for n registries built from the same
 * config (one per worker): counters and histograms with the same label values
 * are summed, IN_FLIGHT summed, BACKEND_UP taken from regs[0]. Every family
 * gets HELP and TYPE; series that were never touched are still exposed with 0
 * for per-backend gauges, and omitted for label sets that were never used.
 * Returns 0, or -1 on allocation failure. `promtool check metrics` is clean. */
int met_expose(struct met_registry *const *regs, size_t n, struct evbuffer *out);

/* Writes the metrics reference as a Markdown table (name, type, labels, help). */
void met_doc_markdown(FILE *f);

#endif
