/* sim_vllm: the vLLM (V1 engine, OpenAI API server under uvicorn) dialect as
 * given by tests/fixtures/vllm: /metrics through prometheus_client with
 * _created families, chat streams with a role chunk and "data: " events,
 * {"error":{...}} error bodies, /v1/models with max_model_len. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/util/clock.h"

#define VL_VERSION "0.26.0"
#define VL_FINGERPRINT "vllm-" VL_VERSION "-5c3d1e7a" /* vllm-<ver>[-tpN]-<hash8> */
#define VL_JSON "application/json"

static const struct sim_oai vl_oai = { VL_FINGERPRINT };

/* The routes, also the handler label of http_requests_total. */
enum vl_route {
    VL_R_CHAT,
    VL_R_CMPL,
    VL_R_MODELS,
    VL_R_HEALTH,
    VL_R_METRICS,
    VL_R_VERSION,
    VL_R_RESPONSES,
    VL_R_MESSAGES,
    VL_R_COUNT_TOKENS,
    VL_R_N,
};

static const struct vl_route_def {
    const char *method;
    const char *path;
    bool counted; /* vLLM's instrumentator skips /metrics, /health, /version */
} vl_routes[VL_R_N] = {
    [VL_R_CHAT] = { "POST", "/v1/chat/completions", true },
    [VL_R_CMPL] = { "POST", "/v1/completions", true },
    [VL_R_MODELS] = { "GET", "/v1/models", true },
    [VL_R_HEALTH] = { "GET", "/health", false },
    [VL_R_METRICS] = { "GET", "/metrics", false },
    [VL_R_VERSION] = { "GET", "/version", false },
    [VL_R_RESPONSES] = { "POST", "/v1/responses", true },
    [VL_R_MESSAGES] = { "POST", "/v1/messages", true },
    [VL_R_COUNT_TOKENS] = { "POST", "/v1/messages/count_tokens", true },
};

/* The Responses and Messages layouts (llama.cpp's, no vLLM capture exists):
 * no timings; response.incomplete when max_output_tokens cut the answer. */
static const struct sim_api_style vl_api_style = { NULL, true };

/* Histograms in the fixture's order: X(field, name, help, bounds). */
#define VL_HISTS(X)                                                                                \
    X(prompt, "request_prompt_tokens", "Number of prefill tokens processed.", tok)                 \
    X(gen, "request_generation_tokens", "Number of generation tokens processed.", tok)             \
    X(iter, "iteration_tokens_total", "Histogram of number of tokens per engine_step.", iter)      \
    X(max_gen, "request_max_num_generation_tokens",                                                \
      "Histogram of maximum number of requested generation tokens.", tok)                          \
    X(n, "request_params_n", "Histogram of the n request parameter.", n)                           \
    X(max_tokens, "request_params_max_tokens", "Histogram of the max_tokens request parameter.",   \
      tok)                                                                                         \
    X(ttft, "time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttft)   \
    X(itl, "inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itl)     \
    X(tpot, "request_time_per_output_token_seconds",                                               \
      "Histogram of time_per_output_token_seconds per request.", itl)                              \
    X(e2e, "e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", lat)     \
    X(queue, "request_queue_time_seconds",                                                         \
      "Histogram of time spent in WAITING phase for request.", lat)                                \
    X(infer, "request_inference_time_seconds",                                                     \
      "Histogram of time spent in RUNNING phase for request.", lat)                                \
    X(prefill, "request_prefill_time_seconds",                                                     \
      "Histogram of time spent in PREFILL phase for request.", lat)                                \
    X(decode, "request_decode_time_seconds",                                                       \
      "Histogram of time spent in DECODE phase for request.", lat)                                 \
    X(kv, "request_prefill_kv_computed_tokens",                                                    \
      "Histogram of new KV tokens computed during prefill (excluding cached tokens).", tok)

struct vl_state {
#define VL_HIST_FIELD(f, name, help, b) struct sim_hist f;
    VL_HISTS(VL_HIST_FIELD)
#undef VL_HIST_FIELD
    uint64_t http[VL_R_N][6]; /* responses per route and status class (1xx..5xx) */
};

static const double vl_b_iter[] = {
    1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384
};
static const double vl_b_n[] = { 1, 2, 5, 10, 20 };
static const double vl_b_ttft[] = { 0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                    0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                    20.0,  40.0,  80.0, 160.0, 640.0, 2560.0 };
static const double vl_b_itl[] = { 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                   0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0 };
static const double vl_b_lat[] = { 0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                   5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                   60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0 };

static struct vl_state *vl_st(const struct sim_srv *s)
{
    return s->fstate;
}

/* ---- responses ---- */

static void vl_reply(struct sim_conn *c, int route, int status, const char *ctype,
                     struct evbuffer *body)
{
    struct vl_state *st = vl_st(sim_conn_srv(c));

    if (route >= 0 && status >= 100 && status < 600)
        st->http[route][status / 100]++;
    sim_uvicorn_reply(c, status, ctype, body);
}

static void vl_reply_str(struct sim_conn *c, int route, int status, const char *body)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add(b, body, strlen(body));
    vl_reply(c, route, status, VL_JSON, b);
    evbuffer_free(b);
}

static const char *vl_error_type(int status)
{
    switch (status) {
    case 400: return "BadRequestError";
    case 401: return "UnauthorizedError";
    case 404: return "NotFoundError";
    case 429: return "TooManyRequestsError";
    case 501: return "NotImplementedError";
    case 503: return "ServiceUnavailableError";
    default: return status >= 500 ? "InternalServerError" : "BadRequestError";
    }
}

/* ErrorResponse(error=ErrorInfo(message, type, param, code)), compact JSON. */
static void vl_error(struct sim_conn *c, int route, int status, const char *type,
                     const char *message)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add_printf(b, "{\"error\":{\"message\":");
    sim_json_str(b, message, strlen(message));
    evbuffer_add_printf(b, ",\"type\":\"%s\",\"param\":null,\"code\":%d}}",
                        type ? type : vl_error_type(status), status);
    vl_reply(c, route, status, VL_JSON, b);
    evbuffer_free(b);
}

static int vl_route_of(const struct sim_http *h, bool *path_known)
{
    int i;

    *path_known = false;
    for (i = 0; i < VL_R_N; i++) {
        if (!span_eq(h->path, vl_routes[i].path))
            continue;
        *path_known = true;
        if (span_eq(h->method, vl_routes[i].method))
            return i;
    }
    return -1;
}

static void vl_loading(struct sim_conn *c, const struct sim_http *h)
{
    bool known;
    int route = vl_route_of(h, &known);

    if (route == VL_R_CHAT || route == VL_R_CMPL || route == VL_R_RESPONSES ||
        route == VL_R_MESSAGES)
        sim_conn_srv(c)->stats.requests++;
    vl_error(c, -1, 503, NULL, "The model is still loading; the server is not ready.");
}

/* Validation errors come from FastAPI's RequestValidationError handler: the
 * pydantic error list as text, type "Bad Request". Answers a body that
 * sim_gen_parse or sim_api_parse refused before its context check (field:
 * the body's required member) and returns true; false for SIM_GEN_OK and
 * SIM_GEN_ECONTEXT, which each route answers its own way. */
static bool vl_invalid(struct sim_conn *c, int route, enum sim_gen_err rc, const char *field)
{
    char emsg[640];

    switch (rc) {
    case SIM_GEN_EJSON:
        vl_error(c, route, 400, "Bad Request",
                 "[{'type': 'json_invalid', 'loc': ('body', 0), 'msg': 'JSON decode error', "
                 "'input': {}, 'ctx': {'error': 'Expecting value'}}]");
        return true;
    case SIM_GEN_ENOTOBJ:
        vl_error(
            c, route, 400, "Bad Request",
            "[{'type': 'model_attributes_type', 'loc': ('body',), 'msg': 'Input should be a valid "
            "dictionary or object to extract fields from', 'input': None}]");
        return true;
    case SIM_GEN_EMISSING:
        snprintf(emsg, sizeof(emsg),
                 "[{'type': 'missing', 'loc': ('body', '%s'), 'msg': 'Field required', "
                 "'input': {}}]",
                 field);
        vl_error(c, route, 400, "Bad Request", emsg);
        return true;
    case SIM_GEN_ETYPE:
        snprintf(emsg, sizeof(emsg),
                 "[{'type': 'list_type', 'loc': ('body', '%s'), 'msg': 'Input should be a valid "
                 "list', 'input': None}]",
                 field);
        vl_error(c, route, 400, "Bad Request", emsg);
        return true;
    default: return false;
    }
}

/* ---- generation ---- */

static void vl_generate(struct sim_conn *c, const struct sim_http *h, int route)
{
    struct sim_srv *s = sim_conn_srv(c);
    enum sim_ep ep = route == VL_R_CHAT ? SIM_EP_CHAT : SIM_EP_COMPLETIONS;
    const char *field = ep == SIM_EP_CHAT ? "messages" : "prompt";
    struct sim_gen g;
    struct sim_req *r;
    char msg[512], emsg[640];
    enum sim_gen_err rc;

    s->stats.requests++;
    if (s->conf.fail_status) {
        vl_error(c, route, s->conf.fail_status, NULL,
                 "simulated failure (pitot-sim --fail-status)");
        return;
    }
    rc = sim_gen_parse(s, h->body, ep, &g, msg, sizeof(msg));
    if (vl_invalid(c, route, rc, field))
        return;
    switch (rc) {
    default: break; /* SIM_GEN_OK: vl_invalid answered the others */
    case SIM_GEN_ECONTEXT:
        if (g.prompt_tokens >= s->conf.ctx_tokens)
            snprintf(emsg, sizeof(emsg),
                     "This model's maximum context length is %lld tokens. However, your "
                     "request has %lld input tokens. Please reduce the length of the "
                     "input messages.",
                     (long long)s->conf.ctx_tokens, (long long)g.prompt_tokens);
        else
            snprintf(emsg, sizeof(emsg),
                     "'max_tokens' or 'max_completion_tokens' is too large: %lld. This "
                     "model's maximum context length is %lld tokens and your request "
                     "has %lld input tokens (%lld > %lld - %lld).",
                     (long long)g.max_tokens, (long long)s->conf.ctx_tokens,
                     (long long)g.prompt_tokens, (long long)g.max_tokens,
                     (long long)s->conf.ctx_tokens, (long long)g.prompt_tokens);
        vl_error(c, route, 400, "BadRequestError", emsg);
        return;
    }
    r = sim_gen_new(c, &g);
    if (r == NULL) {
        vl_error(c, route, 500, NULL, "out of memory");
        return;
    }
    r->route = route;
    /* random_uuid(): 16 hex digits */
    {
        size_t n =
            (size_t)snprintf(r->id, sizeof(r->id), "%s", ep == SIM_EP_CHAT ? "chatcmpl-" : "cmpl-");
        sim_rng_hex(r->seed, r->id + n, 16);
        r->id[n + 16] = '\0';
    }
    sim_gen_submit(r);
}

/* POST /v1/responses, /v1/messages: chat requests answered in those APIs'
 * layouts (sim_apis.c), validated as vl_generate does. */
static void vl_api(struct sim_conn *c, const struct sim_http *h, int route, enum sim_api api)
{
    struct sim_srv *s = sim_conn_srv(c);
    const char *field = sim_api_field(api);
    bool count = route == VL_R_COUNT_TOKENS; /* not a generation */
    struct sim_gen g;
    struct sim_req *r;
    char msg[512], emsg[640];
    enum sim_gen_err rc;
    size_t n;

    if (!count)
        s->stats.requests++;
    if (!count && s->conf.fail_status) {
        vl_error(c, route, s->conf.fail_status, NULL,
                 "simulated failure (pitot-sim --fail-status)");
        return;
    }
    rc = sim_api_parse(s, h->body, api, &g, msg, sizeof(msg));
    if (vl_invalid(c, route, rc, field))
        return;
    switch (rc) {
    default: break; /* SIM_GEN_OK: vl_invalid answered the others */
    case SIM_GEN_ECONTEXT:
        if (count)
            break;
        snprintf(emsg, sizeof(emsg),
                 "This model's maximum context length is %lld tokens. However, your request has "
                 "%lld input tokens and asks for %lld output tokens.",
                 (long long)s->conf.ctx_tokens, (long long)g.prompt_tokens,
                 (long long)g.max_tokens);
        vl_error(c, route, 400, "BadRequestError", emsg);
        return;
    }
    if (count) {
        struct evbuffer *b = evbuffer_new();
        if (b == NULL) {
            sim_conn_close_after_flush(c);
            return;
        }
        sim_api_count_body(b, &g);
        vl_reply(c, route, 200, VL_JSON, b);
        evbuffer_free(b);
        return;
    }
    r = sim_gen_new(c, &g);
    if (r == NULL) {
        vl_error(c, route, 500, NULL, "out of memory");
        return;
    }
    r->route = route;
    /* random_uuid(): 16 hex digits */
    n = (size_t)snprintf(r->id, sizeof(r->id), "%s",
                         api == SIM_API_RESPONSES ? "resp_" : "chatcmpl-");
    sim_rng_hex(r->seed, r->id + n, 16);
    r->id[n + 16] = '\0';
    sim_gen_submit(r);
}

static void vl_stream_head(struct sim_req *r, struct evbuffer *out)
{
    sim_uvicorn_head(r->conn, out, 200, NULL, -1);
}

static void vl_stream_token(struct sim_req *r, struct evbuffer *o, int64_t i, struct span tok)
{
    if (r->api != SIM_API_OWN) {
        sim_api_stream_token(o, r, i, tok);
    } else if (r->ep == SIM_EP_CHAT) {
        if (i == 0) {
            /* The role chunk is its own event, written just before the first
             * token: vLLM sends it once the first output arrives. */
            struct evbuffer *role = evbuffer_new();
            if (role) {
                sim_oai_chat_role(role, r, &vl_oai);
                sim_conn_chunk(r->conn, role);
                evbuffer_free(role);
            }
        }
        sim_oai_chat_token(o, r, &vl_oai, i, tok);
    } else {
        sim_oai_cmpl_token(o, r, &vl_oai, i, tok);
    }
}

static void vl_stream_end(struct sim_req *r)
{
    struct evbuffer *o = evbuffer_new();

    if (o == NULL)
        return;
    if (r->api != SIM_API_OWN) {
        /* the closing events in one chunk; no [DONE] */
        sim_api_stream_end(o, r, &vl_api_style);
        sim_conn_chunk(r->conn, o);
    } else {
        sim_oai_usage_chunk(o, r, &vl_oai);
        if (evbuffer_get_length(o))
            sim_conn_chunk(r->conn, o);
        evbuffer_add_printf(o, "data: [DONE]\n\n");
        sim_conn_chunk(r->conn, o);
    }
    evbuffer_free(o);
    vl_st(r->srv)->http[r->route][2]++;
}

static void vl_body_end(struct sim_req *r)
{
    struct evbuffer *o = evbuffer_new();

    if (o == NULL) {
        sim_conn_close_after_flush(r->conn);
        return;
    }
    if (r->api != SIM_API_OWN)
        sim_api_body(o, r, &vl_api_style);
    else if (r->ep == SIM_EP_CHAT)
        sim_oai_chat_body(o, r, &vl_oai);
    else
        sim_oai_cmpl_body(o, r, &vl_oai);
    vl_reply(r->conn, r->route, 200, VL_JSON, o);
    evbuffer_free(o);
}

/* ---- other routes ---- */

static void vl_models(struct sim_conn *c)
{
    struct sim_srv *s = sim_conn_srv(c);
    struct evbuffer *b = evbuffer_new();
    const char *m = s->conf.model;
    char perm[17];

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    sim_rng_hex(s->conf.seed ^ s->start_wall_us, perm, 16);
    perm[16] = '\0';
    evbuffer_add_printf(b, "{\"object\":\"list\",\"data\":[{\"id\":");
    sim_json_str(b, m, strlen(m));
    evbuffer_add_printf(b, ",\"object\":\"model\",\"created\":%llu,\"owned_by\":\"vllm\",\"root\":",
                        (unsigned long long)(clk_wall_us() / 1000000));
    sim_json_str(b, m, strlen(m));
    evbuffer_add_printf(
        b,
        ",\"parent\":null,\"max_model_len\":%lld,\"permission\":[{\"id\":\"modelperm-%s\","
        "\"object\":\"model_permission\",\"created\":%llu,\"allow_create_engine\":false,"
        "\"allow_sampling\":true,\"allow_logprobs\":true,\"allow_search_indices\":false,"
        "\"allow_view\":true,\"allow_fine_tuning\":false,\"organization\":\"*\","
        "\"group\":null,\"is_blocking\":false}]}]}",
        (long long)s->conf.ctx_tokens, perm, (unsigned long long)(clk_wall_us() / 1000000));
    vl_reply(c, VL_R_MODELS, 200, VL_JSON, b);
    evbuffer_free(b);
}

/* ---- /metrics ---- */

/* The label set every vllm: family carries (engine, model_name). */
static void vl_labels(struct sim_labels *ls, const struct sim_srv *s)
{
    memset(ls, 0, sizeof(*ls));
    sim_labels_add(ls, "engine", "0");
    sim_labels_add(ls, "model_name", s->conf.model);
}

/* prometheus_client stamps each child with its creation time: the start of
 * the process plus a little, distinct per series. */
static double vl_created(const struct sim_srv *s, int *k)
{
    return (double)s->start_wall_us / 1e6 + 0.75 + 0.000183 * (double)(*k)++;
}

/* A counter family NAME_total and its NAME_created gauge family: one sample
 * per value of extra (or one plain sample when extra is NULL). */
static void vl_counter(struct sim_prom *p, const struct sim_srv *s, int *k, const char *base,
                       const char *help, const char *extra, const char *const *vals,
                       const double *v, int n)
{
    char total[128], created[128];
    struct sim_labels ls;
    int i;

    snprintf(total, sizeof(total), "%s_total", base);
    snprintf(created, sizeof(created), "%s_created", base);
    sim_prom_family(p, total, "counter", help);
    for (i = 0; i < n; i++) {
        vl_labels(&ls, s);
        if (extra)
            sim_labels_add(&ls, extra, vals[i]);
        sim_prom_sample(p, total, "", &ls, v[i]);
    }
    sim_prom_family(p, created, "gauge", help);
    for (i = 0; i < n; i++) {
        vl_labels(&ls, s);
        if (extra)
            sim_labels_add(&ls, extra, vals[i]);
        sim_prom_sample(p, created, "", &ls, vl_created(s, k));
    }
}

static void vl_counter1(struct sim_prom *p, const struct sim_srv *s, int *k, const char *base,
                        const char *help, double v)
{
    vl_counter(p, s, k, base, help, NULL, NULL, &v, 1);
}

static void vl_gauge(struct sim_prom *p, const struct sim_srv *s, const char *name,
                     const char *help, const char *extra, const char *const *vals, const double *v,
                     int n)
{
    struct sim_labels ls;
    int i;

    sim_prom_family(p, name, "gauge", help);
    for (i = 0; i < n; i++) {
        vl_labels(&ls, s);
        if (extra)
            sim_labels_add(&ls, extra, vals[i]);
        sim_prom_sample(p, name, "", &ls, v[i]);
    }
}

static void vl_hist(struct sim_prom *p, const struct sim_srv *s, int *k, const char *name,
                    const char *help, const struct sim_hist *h)
{
    char created[128];
    struct sim_labels ls;

    vl_labels(&ls, s);
    snprintf(created, sizeof(created), "%s_created", name);
    sim_prom_family(p, name, "histogram", help);
    sim_prom_hist(p, name, &ls, h);
    sim_prom_family(p, created, "gauge", help);
    sim_prom_sample(p, created, "", &ls, vl_created(s, k));
}

/* The process and Python collectors: the fixture's figures, kept constant
 * but for the start time. */
static void vl_process(struct sim_prom *p, const struct sim_srv *s)
{
    static const char *const gen[] = { "0", "1", "2" };
    static const double collected[] = { 48213, 11890, 2317 }, zero[] = { 0, 0, 0 },
                        collections[] = { 5071, 460, 23 };
    static const struct {
        const char *name, *type, *help;
        const double *v;
    } gc[] = {
        { "python_gc_objects_collected_total", "counter", "Objects collected during gc",
          collected },
        { "python_gc_objects_uncollectable_total", "counter",
          "Uncollectable objects found during GC", zero },
        { "python_gc_collections_total", "counter", "Number of times this generation was collected",
          collections },
    };
    struct sim_labels ls;
    size_t i;
    int g;

    for (i = 0; i < sizeof(gc) / sizeof(gc[0]); i++) {
        sim_prom_family(p, gc[i].name, gc[i].type, gc[i].help);
        for (g = 0; g < 3; g++) {
            memset(&ls, 0, sizeof(ls));
            sim_labels_add(&ls, "generation", gen[g]);
            sim_prom_sample(p, gc[i].name, "", &ls, gc[i].v[g]);
        }
    }
    memset(&ls, 0, sizeof(ls));
    sim_labels_add(&ls, "implementation", "CPython");
    sim_labels_add(&ls, "major", "3");
    sim_labels_add(&ls, "minor", "12");
    sim_labels_add(&ls, "patchlevel", "11");
    sim_labels_add(&ls, "version", "3.12.11");
    sim_prom_family(p, "python_info", "gauge", "Python platform information");
    sim_prom_sample(p, "python_info", "", &ls, 1.0);
    sim_prom_family(p, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    sim_prom_sample(p, "process_virtual_memory_bytes", "", NULL, 52361908224.0);
    sim_prom_family(p, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    sim_prom_sample(p, "process_resident_memory_bytes", "", NULL, 3719852032.0);
    sim_prom_family(p, "process_start_time_seconds", "gauge",
                    "Start time of the process since unix epoch in seconds.");
    /* /proc's start time: clock ticks, so two decimals */
    sim_prom_sample(p, "process_start_time_seconds", "", NULL,
                    (double)(s->start_wall_us / 10000) / 100.0);
    sim_prom_family(p, "process_cpu_seconds_total", "counter",
                    "Total user and system CPU time spent in seconds.");
    sim_prom_sample(p, "process_cpu_seconds_total", "", NULL, 4127.38);
    sim_prom_family(p, "process_open_fds", "gauge", "Number of open file descriptors.");
    sim_prom_sample(p, "process_open_fds", "", NULL, 214.0);
    sim_prom_family(p, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    sim_prom_sample(p, "process_max_fds", "", NULL, 1048576.0);
}

static void vl_metrics(struct sim_conn *c)
{
    struct sim_srv *s = sim_conn_srv(c);
    struct vl_state *st = vl_st(s);
    struct evbuffer *b = evbuffer_new();
    struct sim_prom p;
    struct sim_labels ls;
    char name[128];
    int k = 0, i, cls;

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    p.out = b;
    p.style = SIM_PROM_PY;
    vl_process(&p, s);
    {
        static const char *const reasons[] = { "capacity", "deferred" };
        static const char *const sleep[] = { "awake", "weights_offloaded", "discard_all" };
        static const double awake[] = { 1, 0, 0 };
        double running = s->busy, waiting = s->queued, by_reason[2] = { (double)s->queued, 0 };
        double kv = (double)sim_sched_tokens_in_use(s) /
                    ((double)s->conf.slots * (double)s->conf.ctx_tokens);

        vl_gauge(&p, s, "vllm:num_requests_running",
                 "Number of requests in model execution batches.", NULL, NULL, &running, 1);
        vl_gauge(&p, s, "vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                 NULL, NULL, &waiting, 1);
        vl_gauge(
            &p, s, "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for "
            "scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV "
            "transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
            "reason", reasons, by_reason, 2);
        vl_gauge(
            &p, s, "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is "
            "awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level "
            "2.",
            "sleep_state", sleep, awake, 3);
        vl_gauge(&p, s, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                 NULL, NULL, &kv, 1);
    }
    {
        static const char *const sources[] = { "local_compute", "local_cache_hit",
                                               "external_kv_transfer" };
        static const char *const finished[] = { "stop", "length", "abort", "error", "repetition" };
        double prompt = (double)s->ctr.prompt_tokens;
        double by_source[3] = { prompt, 0, 0 };
        double success[5] = { 0, (double)s->stats.completed, (double)s->stats.cancelled,
                              (double)s->stats.died, 0 };

        vl_counter1(&p, s, &k, "vllm:prefix_cache_queries",
                    "Prefix cache queries, in terms of number of queried tokens.", prompt);
        vl_counter1(&p, s, &k, "vllm:prefix_cache_hits",
                    "Prefix cache hits, in terms of number of cached tokens.", 0);
        vl_counter1(
            &p, s, &k, "vllm:external_prefix_cache_queries",
            "External prefix cache queries from KV connector cross-instance cache sharing, in "
            "terms of number of queried tokens.",
            0);
        vl_counter1(
            &p, s, &k, "vllm:external_prefix_cache_hits",
            "External prefix cache hits from KV connector cross-instance cache sharing, in terms "
            "of number of cached tokens.",
            0);
        vl_counter1(&p, s, &k, "vllm:mm_cache_queries",
                    "Multi-modal cache queries, in terms of number of queried items.", 0);
        vl_counter1(&p, s, &k, "vllm:mm_cache_hits",
                    "Multi-modal cache hits, in terms of number of cached items.", 0);
        vl_counter1(&p, s, &k, "vllm:num_preemptions",
                    "Cumulative number of preemption from the engine.", 0);
        vl_counter1(&p, s, &k, "vllm:prompt_tokens", "Number of prefill tokens processed.", prompt);
        vl_counter(&p, s, &k, "vllm:prompt_tokens_by_source", "Number of prompt tokens by source.",
                   "source", sources, by_source, 3);
        vl_counter1(&p, s, &k, "vllm:prompt_tokens_cached",
                    "Number of cached prompt tokens (local + external).", 0);
        vl_counter1(&p, s, &k, "vllm:generation_tokens", "Number of generation tokens processed.",
                    (double)s->stats.tokens_sent);
        vl_counter(&p, s, &k, "vllm:request_success", "Count of successfully processed requests.",
                   "finished_reason", finished, success, 5);
    }
#define VL_HIST_ROW(f, n, help, b)                                                                 \
    snprintf(name, sizeof(name), "vllm:%s", n);                                                    \
    vl_hist(&p, s, &k, name, help, &st->f);
    VL_HISTS(VL_HIST_ROW)
#undef VL_HIST_ROW
    /* prometheus-fastapi-instrumentator: children appear once used. */
    for (cls = 0; cls < 2; cls++) {
        const char *fam = cls ? "http_requests_created" : "http_requests_total";
        sim_prom_family(&p, fam, cls ? "gauge" : "counter",
                        "Total number of requests by method, status and handler.");
        for (i = 0; i < VL_R_N; i++) {
            int sc;
            for (sc = 1; sc < 6; sc++) {
                char status[16];
                if (!vl_routes[i].counted || st->http[i][sc] == 0)
                    continue;
                snprintf(status, sizeof(status), "%dxx", sc);
                memset(&ls, 0, sizeof(ls));
                sim_labels_add(&ls, "handler", vl_routes[i].path);
                sim_labels_add(&ls, "method", vl_routes[i].method);
                sim_labels_add(&ls, "status", status);
                sim_prom_sample(&p, fam, "", &ls,
                                cls ? vl_created(s, &k) : (double)st->http[i][sc]);
            }
        }
    }
    sim_uvicorn_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", b);
    evbuffer_free(b);
}

/* ---- routing ---- */

static void vl_route(struct sim_conn *c, const struct sim_http *h)
{
    bool known;
    int route = vl_route_of(h, &known);

    switch (route) {
    case VL_R_CHAT:
    case VL_R_CMPL: vl_generate(c, h, route); return;
    case VL_R_RESPONSES: vl_api(c, h, route, SIM_API_RESPONSES); return;
    case VL_R_MESSAGES:
    case VL_R_COUNT_TOKENS: vl_api(c, h, route, SIM_API_MESSAGES); return;
    case VL_R_MODELS: vl_models(c); return;
    case VL_R_HEALTH: vl_reply(c, route, 200, NULL, NULL); return;
    case VL_R_METRICS: vl_metrics(c); return;
    case VL_R_VERSION: vl_reply_str(c, route, 200, "{\"version\":\"" VL_VERSION "\"}"); return;
    default:
        /* FastAPI's own answers */
        if (known)
            vl_reply_str(c, -1, 405, "{\"detail\":\"Method Not Allowed\"}");
        else
            vl_reply_str(c, -1, 404, "{\"detail\":\"Not Found\"}");
    }
}

/* ---- state ---- */

/* vLLM's build_1_2_5_buckets(max_model_len): 1, 2, 5, 10, 20, ... up to it. */
static size_t vl_125(double *out, size_t cap, int64_t max)
{
    static const int m[] = { 1, 2, 5 };
    size_t n = 0;
    double e;
    int i;

    for (e = 1; n < cap; e *= 10) {
        for (i = 0; i < 3 && n < cap; i++) {
            if (m[i] * e > (double)max)
                return n;
            out[n++] = m[i] * e;
        }
    }
    return n;
}

static void vl_release(struct sim_srv *s)
{
    struct vl_state *st = s->fstate;

    if (st == NULL)
        return;
#define VL_HIST_FREE(f, name, help, b) sim_hist_release(&st->f);
    VL_HISTS(VL_HIST_FREE)
#undef VL_HIST_FREE
    free(st);
    s->fstate = NULL;
}

static int vl_init(struct sim_srv *s)
{
    struct vl_state *st = calloc(1, sizeof(*st));
    double tok[40];
    size_t ntok = vl_125(tok, 40, s->conf.ctx_tokens);
    int rc = 0;

    if (st == NULL)
        return -1;
    s->fstate = st;
#define VL_BOUNDS_tok tok, ntok
#define VL_BOUNDS_iter vl_b_iter, sizeof(vl_b_iter) / sizeof(vl_b_iter[0])
#define VL_BOUNDS_n vl_b_n, sizeof(vl_b_n) / sizeof(vl_b_n[0])
#define VL_BOUNDS_ttft vl_b_ttft, sizeof(vl_b_ttft) / sizeof(vl_b_ttft[0])
#define VL_BOUNDS_itl vl_b_itl, sizeof(vl_b_itl) / sizeof(vl_b_itl[0])
#define VL_BOUNDS_lat vl_b_lat, sizeof(vl_b_lat) / sizeof(vl_b_lat[0])
#define VL_HIST_INIT(f, name, help, b) rc |= sim_hist_init(&st->f, VL_BOUNDS_##b);
    VL_HISTS(VL_HIST_INIT)
#undef VL_HIST_INIT
    if (rc != 0) {
        vl_release(s);
        return -1;
    }
    return 0;
}

/* What vLLM's stat loggers record, from the scheduler's events. */
static void vl_observe(struct sim_req *r, enum sim_obs ev, uint64_t now)
{
    struct vl_state *st = vl_st(r->srv);

    switch (ev) {
    case SIM_OBS_FIRST:
        sim_hist_observe(&st->iter, (double)r->prompt_tokens); /* the prefill step */
        sim_hist_observe(&st->ttft, (double)(now - r->t_arrive_us) / 1e6);
        break;
    case SIM_OBS_TOKEN:
        if (r->n_sent > 0) {
            sim_hist_observe(&st->iter, 1.0);
            sim_hist_observe(&st->itl, (double)(now - r->t_last_us) / 1e6);
        }
        break;
    case SIM_OBS_FINISH:
        sim_hist_observe(&st->prompt, (double)r->prompt_tokens);
        sim_hist_observe(&st->gen, (double)r->n_sent);
        sim_hist_observe(&st->max_gen, (double)r->n_max);
        sim_hist_observe(&st->n, 1.0);
        if (r->max_tokens >= 0)
            sim_hist_observe(&st->max_tokens, (double)r->max_tokens);
        if (r->n_sent > 1)
            sim_hist_observe(&st->tpot, (double)(r->t_last_us - r->t_first_us) / 1e6 /
                                            (double)(r->n_sent - 1));
        sim_hist_observe(&st->e2e, (double)(r->t_last_us - r->t_arrive_us) / 1e6);
        sim_hist_observe(&st->queue, (double)(r->t_slot_us - r->t_arrive_us) / 1e6);
        sim_hist_observe(&st->infer, (double)(r->t_last_us - r->t_slot_us) / 1e6);
        sim_hist_observe(&st->prefill, (double)(r->t_first_us - r->t_slot_us) / 1e6);
        sim_hist_observe(&st->decode, (double)(r->t_last_us - r->t_first_us) / 1e6);
        sim_hist_observe(&st->kv, (double)r->prompt_tokens);
        break;
    case SIM_OBS_START:
    case SIM_OBS_CANCEL:
    case SIM_OBS_DIE: break;
    }
}

const struct sim_flavor sim_flavor_vllm = {
    .name = "vllm",
    .default_model = "meta-llama/Llama-3.3-70B-Instruct",
    .ping_ms = -1,      /* no SSE comments */
    .keepalive_max = 0, /* uvicorn: no limit, 5 s idle */
    .close_after_stream = false,
    .route = vl_route,
    .loading = vl_loading,
    .stream_head = vl_stream_head,
    .stream_token = vl_stream_token,
    .stream_end = vl_stream_end,
    .body_end = vl_body_end,
    .init = vl_init,
    .release = vl_release,
    .observe = vl_observe,
};
