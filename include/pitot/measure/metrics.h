/* metrics: pitot's Prometheus metrics. One X-macro list declares every metric;
 * the registry, the text exposition and the docs table are generated from it.
 * Label values come from config (backends, tiers) and a bounded table of model
 * names, never from raw client input. A registry belongs to one event loop. */
#ifndef PITOT_MEASURE_METRICS_H
#define PITOT_MEASURE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pitot/format/api.h"
#include "pitot/format/config.h"
#include "pitot/io/tls.h"
#include "pitot/util/err.h"
#include "pitot/format/json.h"
#include "pitot/util/span.h"

struct evbuffer;

/* Label sets (each a fixed tuple of label names). */
/* clang-format off */
#define MET_LABELS_LIST(X)                                  \
    X(BMTC, "backend,model,tier,api,code")                  \
    X(BMT,  "backend,model,tier,api")                       \
    X(BMTR, "backend,model,tier,api,reason")                \
    X(BK,   "backend,kind")                                 \
    X(B,    "backend")                                      \
    X(BR,   "backend,result")                               \
    X(T,    "tier")                                         \
    X(TR,   "tier,reason")                                  \
    X(TM,   "tier,met")                                     \
    X(NONE, "")                                             \
    X(R,    "reason")                                       \
    X(W,    "worker")

/* X(ID, name, type, labels, help) - names and label sets are interface. */
#define MET_LIST(X)                                                                          \
    X(REQUESTS, "pitot_requests_total", COUNTER, BMTC,                                       \
      "Requests answered, by HTTP status sent to the client (pitot's own answers: empty backend)")                                \
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
      "1 if the backend's last health check succeeded")                                      \
    X(BACKEND_RUNNING, "pitot_backend_requests_running", GAUGE, B,                           \
      "Requests the backend reported running at its last metrics scrape")                    \
    X(BACKEND_WAITING, "pitot_backend_requests_waiting", GAUGE, B,                           \
      "Requests the backend reported queued at its last metrics scrape")                     \
    X(BACKEND_CACHE, "pitot_backend_cache_usage_ratio", GAUGE, B,                            \
      "KV cache usage 0-1 the backend reported at its last scrape; absent if it reports none") \
    X(BACKEND_SCRAPE_AGE, "pitot_backend_scrape_age_seconds", GAUGE, B,                      \
      "Seconds since the backend's last successful metrics scrape; absent before the first")  \
    X(BACKEND_SCRAPES, "pitot_backend_scrapes_total", COUNTER, BR,                           \
      "Metrics scrapes of the backend by result")                                            \
    X(BACKEND_EJECTED, "pitot_backend_ejected", GAUGE, B,                                    \
      "1 while the backend is passively ejected after consecutive failures")                 \
    X(QUEUE_DEPTH, "pitot_queue_depth", GAUGE, T,                                            \
      "Requests held in pitot's overload queue now")                                         \
    X(QUEUE_WAIT, "pitot_queue_wait_seconds", HISTOGRAM, T,                                  \
      "Time a request spent in the overload queue, observed when it left it")                \
    X(SHED, "pitot_shed_total", COUNTER, TR,                                                 \
      "Requests shed before reaching a backend, by reason")                                  \
    X(SLO_REQUESTS, "pitot_slo_requests_total", COUNTER, TM,                                 \
      "Requests measured against the tier's SLO; met is true if TTFT and TPOT targets held") \
    X(TRACE_SPANS_EXPORTED, "pitot_trace_spans_exported_total", COUNTER, NONE,               \
      "Spans the OTLP collector accepted (2xx)")                                            \
    X(TRACE_SPANS_DROPPED, "pitot_trace_spans_dropped_total", COUNTER, R,                    \
      "Spans never exported: the export queue was full, or their export failed")             \
    X(TLS_HANDSHAKE_FAILURES, "pitot_tls_handshake_failures_total", COUNTER, R,              \
      "TLS handshakes of clients on the listener that failed, by reason")                   \
    X(CONNECTIONS, "pitot_connections_accepted_total", COUNTER, W,                            \
      "Client connections accepted, by the worker (event loop) that took them")
/* clang-format on */

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

/* pitot_backend_scrapes_total{result}: X(ID, label value). */
#define MET_SCRAPE_LIST(X)                                                                         \
    X(OK, "ok")                   /* parsed and applied */                                         \
    X(ERROR, "error")             /* connect failure, reset or non-200 status */                   \
    X(TIMEOUT, "timeout")         /* no complete answer within scrape_timeout */                   \
    X(PARSE_ERROR, "parse_error") /* answered, but not metrics pitot understands */

enum met_scrape {
#define MET_SCRAPE_ENUM(id, label) MET_SCRAPE_##id,
    MET_SCRAPE_LIST(MET_SCRAPE_ENUM)
#undef MET_SCRAPE_ENUM
        MET_SCRAPE__COUNT
};

/* pitot_shed_total{reason}: X(ID, label value). */
#define MET_SHED_LIST(X)                                                                           \
    X(QUEUE_FULL, "queue_full")   /* tier's or overall queue limit reached on arrival */           \
    X(MAX_WAIT, "max_wait")       /* held longer than the tier's max_wait */                       \
    X(EVICTED, "evicted")         /* displaced by a request of a higher tier */                    \
    X(CLIENT_GONE, "client_gone") /* the client left while queued */                               \
    X(NO_MODEL, "no_model")       /* no backend serves the requested model */

enum met_shed {
#define MET_SHED_ENUM(id, label) MET_SHED_##id,
    MET_SHED_LIST(MET_SHED_ENUM)
#undef MET_SHED_ENUM
        MET_SHED__COUNT
};

/* pitot_trace_spans_dropped_total{reason}: X(ID, label value). */
#define MET_TRACE_DROP_LIST(X)                                                                     \
    X(QUEUE_FULL, "queue_full")       /* the export queue had no room for the span */              \
    X(EXPORT_FAILED, "export_failed") /* in a batch the collector refused or never answered */

enum met_trace_drop {
#define MET_TRACE_DROP_ENUM(id, label) MET_TRACE_DROP_##id,
    MET_TRACE_DROP_LIST(MET_TRACE_DROP_ENUM)
#undef MET_TRACE_DROP_ENUM
        MET_TRACE_DROP__COUNT
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

/* The api label's values (api_label()): every per-request family is kept
 * per (backend, model, tier, api). */
#define MET_NAPI API__COUNT

/* Index of the (backend, model, tier, api) series, for the calls below. */
unsigned met_series(const struct met_registry *r, unsigned backend, unsigned model, unsigned tier,
                    unsigned api);

/* Histogram observation in microseconds (BMT histograms). */
void met_observe_us(struct met_registry *r, enum met_id id, unsigned series, uint64_t us);

/* Counter increment on a BMT series. */
void met_add(struct met_registry *r, enum met_id id, unsigned series, uint64_t n);

/* pitot_requests_total: one request answered with `status`. Distinct codes
 * per series are bounded (24); beyond that the code label is its class "5xx". */
void met_add_request(struct met_registry *r, unsigned series, int status);

/* pitot_requests_total: one answer pitot gave itself (a refusal, a shed, no
 * backend, ...) with `status`, on the series of backend "" and model "" of
 * (tier, api); only this counter has it. */
void met_add_local(struct met_registry *r, unsigned tier, unsigned api, int status);

/* pitot_finish_reason_total with reason = json_finish_label(f); NONE ignored. */
void met_add_finish(struct met_registry *r, unsigned series, enum json_finish f);

/* pitot_upstream_errors_total{backend, kind=err_label(kind)}. */
void met_add_upstream_error(struct met_registry *r, unsigned backend, enum pitot_err kind);

/* Per-backend integer gauges (IN_FLIGHT, BACKEND_UP, BACKEND_EJECTED); any
 * other id or a backend out of range is ignored. Always exposed, 0 until set. */
void met_gauge_set(struct met_registry *r, enum met_id id, unsigned backend, int64_t v);
void met_gauge_add(struct met_registry *r, enum met_id id, unsigned backend, int64_t delta);

/* Per-backend float gauges from the backend's own metrics (BACKEND_RUNNING,
 * BACKEND_WAITING, BACKEND_CACHE); any other id or a backend out of range is
 * ignored. The series is absent until set. A NaN or infinite v means "not
 * known" and clears it. v is exposed as given (no clamping of the cache ratio
 * to 0-1), in the shortest form that reads back exactly: "0.87", "3", "1e+06". */
void met_gauge_set_f(struct met_registry *r, enum met_id id, unsigned backend, double v);

/* Makes a float gauge's series (above), or BACKEND_SCRAPE_AGE's, absent again,
 * e.g. the cache ratio once the backend's flavor is known to have none. Any
 * other id or a backend out of range is ignored. */
void met_gauge_clear(struct met_registry *r, enum met_id id, unsigned backend);

/* Records the last successful scrape of `backend` at mono_us (a clk_now_us()
 * reading). pitot_backend_scrape_age_seconds is then computed by met_expose as
 * its own clk_now_us() minus mono_us (0 for a time in the future); absent
 * until the first call. Out-of-range backend ignored. */
void met_backend_scraped(struct met_registry *r, unsigned backend, uint64_t mono_us);

/* Marks backend `backend` as having an address (true) or not (false: a DNS
 * slot with none, a spare slot, a backend a reload removed once its requests
 * ended). The exposition follows the first registry's marks (the one the
 * router keeps): a backend without one is left out, its values kept for when
 * it has one again. At creation, DNS-named backends and spare slots have
 * none. */
void met_backend_active(struct met_registry *r, unsigned backend, bool active);

/* Tier slot `tier` holds a configured tier named `name` (live) or none (a
 * spare slot, a tier a reload removed): the exposition leaves its series
 * out, following the first registry's marks. A name changes only in a slot
 * no tier had before (its series are empty). */
void met_tier_set(struct met_registry *r, unsigned tier, const char *name, bool live);

/* Slot `backend` starts over for another backend (a reload put a new name
 * there): its label becomes cb's name and every value of its series goes
 * (counters, histograms, gauges, scrapes, the OpenTelemetry families'
 * server address). Only while it is inactive and nothing runs on it. */
void met_backend_reset(struct met_registry *r, unsigned backend, const struct cfg_backend *cb);

/* pitot_backend_scrapes_total{backend, result=met_scrape_label(res)}; out of
 * range arguments ignored. */
void met_add_scrape(struct met_registry *r, unsigned backend, enum met_scrape res);

/* Per-tier integer gauge (QUEUE_DEPTH): adds delta. Tier indexes are those of
 * cfg->tiers (0 is "default"); any other id or a tier out of range is ignored.
 * Every tier's series is always exposed, 0 until changed. */
void met_tier_gauge_add(struct met_registry *r, enum met_id id, unsigned tier, int64_t delta);

/* Per-tier histogram observation in microseconds (QUEUE_WAIT: once per
 * request leaving the queue, dispatched, shed or abandoned). Any other id or a
 * tier out of range is ignored. A tier's series appears at its first one. */
void met_observe_tier_us(struct met_registry *r, enum met_id id, unsigned tier, uint64_t us);

/* pitot_shed_total{tier, reason=met_shed_label(why)}. Out of range ignored.
 * Once a tier has shed anything, all its reasons are exposed (0 included). */
void met_add_shed(struct met_registry *r, unsigned tier, enum met_shed why);

/* pitot_slo_requests_total{tier, met="true"|"false"}: met is true when both
 * the tier's TTFT and TPOT targets held (the caller decides). Out-of-range
 * tier ignored. Once a tier has one, both met values are exposed. */
void met_add_slo(struct met_registry *r, unsigned tier, bool met);

/* pitot_trace_spans_exported_total += n / pitot_trace_spans_dropped_total
 * {reason=why} += n. Out-of-range why ignored. Both families are always
 * exposed (dropped with every reason), 0 until counted. */
void met_add_spans_exported(struct met_registry *r, uint64_t n);

/* pitot_connections_accepted_total{worker} += 1, worker being the index of r
 * in the registries met_expose gets. */
void met_add_connection(struct met_registry *r);
void met_add_spans_dropped(struct met_registry *r, enum met_trace_drop why, uint64_t n);

/* pitot_tls_handshake_failures_total{reason=tls_fail_label(why)} += 1.
 * Out-of-range why ignored. Always exposed with every reason, 0 until
 * counted, summed over registries. */
void met_add_tls_failure(struct met_registry *r, enum tls_fail why);

/* Label values of the enums above; "unknown" out of range. */
const char *met_scrape_label(enum met_scrape res);
const char *met_shed_label(enum met_shed why);

/* Appends Prometheus text format 0.0.4 for n registries built from the same
 * config (one per worker). Merging: counters and histograms with the same
 * label values are summed, and so are IN_FLIGHT and QUEUE_DEPTH; BACKEND_UP and
 * everything scrape-derived (RUNNING, WAITING, CACHE, SCRAPE_AGE) come from
 * regs[0], the loop that runs health checks and scrapes; BACKEND_EJECTED is
 * the maximum (1 if any registry has the backend ejected). Every family gets
 * HELP and TYPE even without series. Present: per-backend integer gauges and
 * QUEUE_DEPTH for every backend/tier; float gauges and SCRAPE_AGE once set and
 * not cleared; other series once touched. For scrapes, shed and SLO a touched
 * backend/tier shows every value of its last label, 0 included. Reads the
 * monotonic clock once, for SCRAPE_AGE. Returns 0, or -1 on allocation
 * failure or registries of different shapes. `promtool check metrics` is clean. */
int met_expose(struct met_registry *const *regs, size_t n, struct evbuffer *out);

/* Appends pitot_build_info{version} and the process_* families the Prometheus
 * client libraries expose, named, typed and described as client_golang does
 * (process_cpu_seconds_total, process_max_fds, process_open_fds,
 * process_resident_memory_bytes, process_start_time_seconds,
 * process_virtual_memory_bytes), read from the kernel now: no cost between
 * scrapes, no allocation. A family whose source cannot be read (no /proc) is
 * left out, never an error. Apart from met_expose because it is the process's,
 * not a registry's, and changes from one call to the next. Returns 0, or -1
 * when an evbuffer append failed. */
int met_expose_process(struct evbuffer *out);

/* A configuration reload ended (ok: applied), at Unix time wall_ms; the
 * configuration in force was loaded at start at wall_ms. For
 * pitot_config_reloads_total{result} and
 * pitot_config_last_reload_success_timestamp_seconds, as Prometheus names
 * its own. Any thread. */
void met_note_reload(bool ok, uint64_t wall_ms);
void met_note_start(uint64_t wall_ms);

/* Reloads so far that succeeded (ok) or failed. */
uint64_t met_reload_count(bool ok);

/* What /proc/<pid>/stat says (proc(5)), in the kernel's units. */
struct met_proc_stat {
    uint64_t starttime_ticks; /* field 22: start, clock ticks after boot */
    uint64_t vsize_bytes;     /* field 23: virtual memory size, bytes */
    uint64_t rss_pages;       /* field 24: resident set, pages */
};

/* Parses the text of /proc/<pid>/stat into st (untouched on failure). The
 * command name (field 2) may hold spaces and parentheses, so fields are
 * counted from the last ')'. Returns 0, or -1 when the text is malformed or
 * ends before field 25. */
int met_proc_stat_parse(struct span text, struct met_proc_stat *st);

/* ---- totals, for the status page ------------------------------------------
 * Read from n registries of the same config (one per worker), summed, off the
 * request path: a status sampler calls them once a second. */

/* One backend's totals since start. */
struct met_backend_totals {
    uint64_t requests;                  /* pitot_requests_total on its series, any code */
    uint64_t errors;                    /* of them 5xx */
    uint64_t ttft[CFG_MAX_BUCKETS + 1]; /* TTFT histogram, non-cumulative, bounds of
                                           met_bounds_us; the last above them all */
};

/* One tier's totals since start (queue_depth: now). */
struct met_tier_totals {
    int64_t queue_depth; /* pitot_queue_depth summed */
    uint64_t shed;       /* pitot_shed_total, every reason */
    uint64_t slo_met;    /* pitot_slo_requests_total{met="true"} */
    uint64_t slo_total;  /* pitot_slo_requests_total, both */
};

/* Totals of backend (out of range: zeros) and of tier (the same). */
void met_totals_backend(struct met_registry *const *regs, size_t n, unsigned backend,
                        struct met_backend_totals *t);
void met_totals_tier(struct met_registry *const *regs, size_t n, unsigned tier,
                     struct met_tier_totals *t);

/* The histogram bucket bounds in microseconds, ascending, into *bound_us
 * (borrowed from r); returns how many. */
unsigned met_bounds_us(const struct met_registry *r, const uint64_t **bound_us);

/* The process's resident memory and open descriptors, from /proc now; -1
 * each when it cannot be read. No allocation. */
struct met_process_now {
    int64_t rss_bytes;
    int64_t open_fds;
};
void met_process_read(struct met_process_now *p);

/* Writes the metrics reference as a Markdown table (name, type, labels, help):
 * pitot's families, then the OpenTelemetry ones below, marked as such. */
void met_doc_markdown(FILE *f);

/* ---- OpenTelemetry GenAI families (opentelemetry.metrics: true) -------------
 * The histograms of the OpenTelemetry semantic conventions for generative AI
 * (gen-ai-metrics.md), named and labelled as a Prometheus exporter renders the
 * instruments (dots become underscores, the unit "s" a _seconds suffix, the
 * annotation {token} nothing), with the conventions' bucket boundaries. Only
 * registries made from a config with otel_metrics have them; without it the
 * exposition is exactly pitot's families above. Series are per (backend,
 * model, tier) like pitot's, times the operation. */

/* The attributes every OTel family has, then each family's own last one. */
#define MET_OTEL_LABELS                                                                            \
    "gen_ai_operation_name,gen_ai_provider_name,gen_ai_request_model,server_address,"              \
    "server_port,tier"

/* clang-format off */
/* X(ID, name, instrument, labels, help) - names and label sets are interface. */
#define MET_OTEL_LIST(X)                                                                           \
    X(DURATION, "gen_ai_client_operation_duration_seconds", "gen_ai.client.operation.duration",    \
      MET_OTEL_LABELS ",error_type",                                                               \
      "GenAI operation duration: pitot's E2E, every request a backend took; "                      \
      "error_type on failed ones")                                                                 \
    X(TOKENS, "gen_ai_client_token_usage", "gen_ai.client.token.usage",                            \
      MET_OTEL_LABELS ",gen_ai_token_type",                                                        \
      "Number of input and output tokens used, per request where known")                           \
    X(TTFT, "gen_ai_server_time_to_first_token_seconds", "gen_ai.server.time_to_first_token",      \
      MET_OTEL_LABELS,                                                                             \
      "Time to generate first token for successful streamed responses: pitot's TTFT")              \
    X(TPOT, "gen_ai_server_time_per_output_token_seconds", "gen_ai.server.time_per_output_token",  \
      MET_OTEL_LABELS,                                                                             \
      "Time per output token after the first for successful streamed responses: pitot's TPOT")
/* clang-format on */

enum met_otel_id {
#define MET_OTEL_ID_ENUM(id, name, instrument, labels, help) MET_OTEL_##id,
    MET_OTEL_LIST(MET_OTEL_ID_ENUM)
#undef MET_OTEL_ID_ENUM
        MET_OTEL__COUNT
};

/* gen_ai_operation_name: X(ID, value), the conventions' well-known values. */
#define MET_OTEL_OP_LIST(X)                                                                        \
    X(CHAT, "chat")                       /* chat completions */                                   \
    X(TEXT_COMPLETION, "text_completion") /* (legacy) text completions, generate */                \
    X(EMBEDDINGS, "embeddings")           /* embeddings */

enum met_otel_op {
    MET_OTEL_OP_NONE = 0, /* not a GenAI operation pitot can name: not recorded */
#define MET_OTEL_OP_ENUM(id, value) MET_OTEL_OP_##id,
    MET_OTEL_OP_LIST(MET_OTEL_OP_ENUM)
#undef MET_OTEL_OP_ENUM
        MET_OTEL_OP__COUNT
};

/* error_type values kept apart per (backend, model, tier, operation); more
 * distinct ones count as "_OTHER", the conventions' fallback value. */
#define MET_OTEL_ERRORS_MAX 4

/* The operation of a request target (path, optionally "?query"), from its
 * API (api_of_path()): chat, responses and messages are CHAT, completions
 * TEXT_COMPLETION, embeddings EMBEDDINGS, anything else NONE. */
enum met_otel_op met_otel_op_of_path(const char *path);

/* Label values: the operation's ("" for NONE or out of range), and the
 * gen_ai_provider_name of a backend flavor: its flv_name() spelling
 * ("llamacpp", "vllm", "tgi", "sglang", "openai"), "openai" for AUTO (not
 * yet identified: an OpenAI-compatible server). */
const char *met_otel_op_label(enum met_otel_op op);
const char *met_otel_provider_label(enum cfg_flavor f);

/* One finished request, as relay_finish() measured it. */
struct met_otel_obs {
    enum met_otel_op op;    /* NONE: nothing is recorded */
    enum cfg_flavor flavor; /* the backend's now, for gen_ai_provider_name */
    enum pitot_err outcome; /* PITOT_EOK or how pitot saw the request fail */
    int status;             /* HTTP status sent to the client, 0 if none */
    int64_t e2e_us;         /* operation duration; < 0 not recorded */
    int64_t ttft_us;        /* -1 when there was no first token */
    int64_t tpot_us;        /* -1 when not measured */
    int64_t input_tokens;   /* -1 when not known */
    int64_t output_tokens;  /* -1 when not known */
};

/* Records one request on series `series` (met_series()) when the registry has
 * the OTel families; else, or for op NONE or a series out of range, nothing.
 * error_type is err_label(outcome) when outcome is not PITOT_EOK, else the
 * status as a number ("500") when it is 400 or more; with an error_type only
 * the duration and the tokens are recorded (TTFT and TPOT are "for successful
 * responses"). Tokens: one observation per known count, gen_ai_token_type
 * "input" / "output". The backend's provider label follows o->flavor (the
 * last one recorded). Never allocates. */
void met_observe_otel(struct met_registry *r, unsigned series, const struct met_otel_obs *o);

#endif
