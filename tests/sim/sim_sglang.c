/* sim_sglang: the SGLang server dialect: /metrics as tests/fixtures/sglang
 * gives it (prometheus_client in multiprocess mode: no _created, _sum first,
 * pid on "all"-mode gauges, scheduler and tokenizer label sets), and the
 * OpenAI routes with SGLang's flat error body. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pitot/util/clock.h"

#define SG_JSON "application/json"

/* There is no recorded SGLang stream: its /v1/chat/completions stream is
 * OpenAI-style, so the simulator writes vLLM's chunk layout (sim_openai.c)
 * with SGLang's model naming (the Hugging Face id) and ids, and without
 * "system_fingerprint". */
static const struct sim_oai sg_oai = { NULL };

enum sg_route {
    SG_R_CHAT,
    SG_R_CMPL,
    SG_R_MODELS,
    SG_R_MODEL_INFO,
    SG_R_HEALTH,
    SG_R_HEALTH_GENERATE,
    SG_R_METRICS,
    SG_R_N,
};

static const struct {
    const char *method;
    const char *path;
} sg_routes[SG_R_N] = {
    [SG_R_CHAT] = { "POST", "/v1/chat/completions" },
    [SG_R_CMPL] = { "POST", "/v1/completions" },
    [SG_R_MODELS] = { "GET", "/v1/models" },
    [SG_R_MODEL_INFO] = { "GET", "/get_model_info" },
    [SG_R_HEALTH] = { "GET", "/health" },
    [SG_R_HEALTH_GENERATE] = { "GET", "/health_generate" },
    [SG_R_METRICS] = { "GET", "/metrics" },
};

struct sg_state {
    struct sim_hist ttft;        /* tokenizer: time to first token */
    struct sim_hist itl;         /* tokenizer: inter-token latency */
    struct sim_hist e2e;         /* tokenizer: request latency */
    struct sim_hist retractions; /* tokenizer: retractions per request (always 0) */
    struct sim_hist queue;       /* scheduler: queueing time */
    uint64_t prompt_tokens;      /* of finished requests (the tokenizer counts then) */
    uint64_t gen_tokens;
};

static const double sg_b_ttft[] = { 0.1, 0.2,  0.4,  0.6,  0.8,  1.0,  2.0,   4.0,   6.0,
                                    8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0, 400.0 };
static const double sg_b_itl[] = { 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025,
                                   0.03,  0.035, 0.04,  0.06,  0.08, 0.1,   0.2,  0.4,
                                   0.6,   0.8,   1.0,   2.0,   4.0,  6.0,   8.0 };
static const double sg_b_e2e[] = { 0.1,   0.2,   0.4,   0.6,    0.8,    1.0,   2.0,  4.0,
                                   6.0,   8.0,   10.0,  20.0,   40.0,   60.0,  80.0, 100.0,
                                   200.0, 400.0, 600.0, 1200.0, 1800.0, 2400.0 };
static const double sg_b_retr[] = { 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,
                                    10, 15, 20, 25, 30, 40, 50, 75, 100 };
static const double sg_b_queue[] = { 0.0,    0.1,    0.2,    0.5,   1.0,    2.0,    3.0,    4.0,
                                     5.0,    10.0,   15.0,   20.0,  30.0,   40.0,   50.0,   60.0,
                                     70.0,   80.0,   90.0,   100.0, 200.0,  300.0,  400.0,  500.0,
                                     600.0,  700.0,  800.0,  900.0, 1000.0, 1200.0, 1400.0, 1600.0,
                                     1800.0, 2000.0, 2500.0, 3000.0 };

static struct sg_state *sg_st(const struct sim_srv *s)
{
    return s->fstate;
}

/* ---- responses ---- */

static void sg_reply_str(struct sim_conn *c, int status, const char *body)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add(b, body, strlen(body));
    sim_uvicorn_reply(c, status, SG_JSON, b);
    evbuffer_free(b);
}

/* ErrorResponse: {"object":"error","message","type","param","code"}. */
static void sg_error(struct sim_conn *c, int status, const char *type, const char *message)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add_printf(b, "{\"object\":\"error\",\"message\":");
    sim_json_str(b, message, strlen(message));
    evbuffer_add_printf(b, ",\"type\":\"%s\",\"param\":null,\"code\":%d}", type, status);
    sim_uvicorn_reply(c, status, SG_JSON, b);
    evbuffer_free(b);
}

static int sg_route_of(const struct sim_http *h, bool *known)
{
    int i;

    *known = false;
    for (i = 0; i < SG_R_N; i++) {
        if (!span_eq(h->path, sg_routes[i].path))
            continue;
        *known = true;
        if (span_eq(h->method, sg_routes[i].method))
            return i;
    }
    return -1;
}

static void sg_loading(struct sim_conn *c, const struct sim_http *h)
{
    bool known;
    int route = sg_route_of(h, &known);

    if (route == SG_R_CHAT || route == SG_R_CMPL)
        sim_conn_srv(c)->stats.requests++;
    sg_error(c, 503, "Service Unavailable", "The server is not ready: the model is still loading.");
}

/* ---- generation ---- */

static void sg_generate(struct sim_conn *c, const struct sim_http *h, int route)
{
    struct sim_srv *s = sim_conn_srv(c);
    enum sim_ep ep = route == SG_R_CHAT ? SIM_EP_CHAT : SIM_EP_COMPLETIONS;
    struct sim_gen g;
    struct sim_req *r;
    char msg[512];

    s->stats.requests++;
    if (s->conf.fail_status) {
        sg_error(c, s->conf.fail_status,
                 s->conf.fail_status >= 500 ? "InternalServerError" : "BadRequest",
                 "simulated failure (pitot-sim --fail-status)");
        return;
    }
    /* FastAPI's RequestValidationError, through SGLang's handler: the pydantic
     * errors as text, type "Bad Request". */
    switch (sim_gen_parse(s, h->body, ep, &g, msg, sizeof(msg))) {
    case SIM_GEN_OK: break;
    case SIM_GEN_EJSON:
        sg_error(c, 400, "Bad Request",
                 "[{'type': 'json_invalid', 'loc': ('body', 0), 'msg': 'JSON decode error', "
                 "'input': {}, "
                 "'ctx': {'error': 'Expecting value'}}]");
        return;
    case SIM_GEN_ENOTOBJ:
        sg_error(
            c, 400, "Bad Request",
            "[{'type': 'model_attributes_type', 'loc': ('body',), 'msg': 'Input should be a valid "
            "dictionary or object to extract fields from', 'input': None}]");
        return;
    case SIM_GEN_EMISSING:
        snprintf(msg, sizeof(msg),
                 "[{'type': 'missing', 'loc': ('body', '%s'), 'msg': 'Field required', "
                 "'input': {}}]",
                 ep == SIM_EP_CHAT ? "messages" : "prompt");
        sg_error(c, 400, "Bad Request", msg);
        return;
    case SIM_GEN_ETYPE:
        sg_error(c, 400, "Bad Request",
                 "[{'type': 'list_type', 'loc': ('body', 'messages'), 'msg': 'Input should be a "
                 "valid list', "
                 "'input': None}]");
        return;
    case SIM_GEN_ECONTEXT: {
        long long asked = g.max_tokens > 0 ? (long long)g.max_tokens : 0;
        snprintf(msg, sizeof(msg),
                 "Requested token count exceeds the model's maximum context length of %lld "
                 "tokens. You requested a total of %lld tokens: %lld tokens from the input "
                 "messages and %lld tokens for the completion. Please reduce the number of "
                 "tokens in the input messages or the completion to fit within the limit.",
                 (long long)s->conf.ctx_tokens, (long long)g.prompt_tokens + asked,
                 (long long)g.prompt_tokens, asked);
        sg_error(c, 400, "BadRequest", msg);
        return;
    }
    }
    r = sim_gen_new(c, &g);
    if (r == NULL) {
        sg_error(c, 500, "InternalServerError", "out of memory");
        return;
    }
    r->route = route;
    /* the request id: uuid4().hex */
    sim_rng_hex(r->seed, r->id, 32);
    r->id[32] = '\0';
    sim_gen_submit(r);
}

static void sg_stream_head(struct sim_req *r, struct evbuffer *out)
{
    sim_uvicorn_head(r->conn, out, 200, NULL, -1);
}

static void sg_stream_token(struct sim_req *r, struct evbuffer *o, int64_t i, struct span tok)
{
    if (r->ep == SIM_EP_CHAT) {
        if (i == 0) {
            struct evbuffer *role = evbuffer_new();
            if (role) {
                sim_oai_chat_role(role, r, &sg_oai);
                sim_conn_chunk(r->conn, role);
                evbuffer_free(role);
            }
        }
        sim_oai_chat_token(o, r, &sg_oai, i, tok);
    } else {
        sim_oai_cmpl_token(o, r, &sg_oai, i, tok);
    }
}

static void sg_stream_end(struct sim_req *r)
{
    struct evbuffer *o = evbuffer_new();

    if (o == NULL)
        return;
    sim_oai_usage_chunk(o, r, &sg_oai);
    if (evbuffer_get_length(o))
        sim_conn_chunk(r->conn, o);
    evbuffer_add_printf(o, "data: [DONE]\n\n");
    sim_conn_chunk(r->conn, o);
    evbuffer_free(o);
}

static void sg_body_end(struct sim_req *r)
{
    struct evbuffer *o = evbuffer_new();

    if (o == NULL) {
        sim_conn_close_after_flush(r->conn);
        return;
    }
    if (r->ep == SIM_EP_CHAT)
        sim_oai_chat_body(o, r, &sg_oai);
    else
        sim_oai_cmpl_body(o, r, &sg_oai);
    sim_uvicorn_reply(r->conn, 200, SG_JSON, o);
    evbuffer_free(o);
}

/* ---- other routes ---- */

static void sg_models(struct sim_conn *c)
{
    struct sim_srv *s = sim_conn_srv(c);
    struct evbuffer *b = evbuffer_new();
    const char *m = s->conf.model;

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add_printf(b, "{\"object\":\"list\",\"data\":[{\"id\":");
    sim_json_str(b, m, strlen(m));
    evbuffer_add_printf(b,
                        ",\"object\":\"model\",\"created\":%llu,\"owned_by\":\"sglang\",\"root\":",
                        (unsigned long long)(clk_wall_us() / 1000000));
    sim_json_str(b, m, strlen(m));
    evbuffer_add_printf(b, ",\"parent\":null,\"max_model_len\":%lld}]}",
                        (long long)s->conf.ctx_tokens);
    sim_uvicorn_reply(c, 200, SG_JSON, b);
    evbuffer_free(b);
}

static void sg_model_info(struct sim_conn *c)
{
    const char *m = sim_conn_srv(c)->conf.model;
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add_printf(b, "{\"model_path\":");
    sim_json_str(b, m, strlen(m));
    evbuffer_add_printf(b, ",\"tokenizer_path\":");
    sim_json_str(b, m, strlen(m));
    evbuffer_add_printf(b, ",\"is_generation\":true}");
    sim_uvicorn_reply(c, 200, SG_JSON, b);
    evbuffer_free(b);
}

/* ---- /metrics ---- */

/* The tokenizer manager's labels: model_name only. */
static void sg_tok_labels(struct sim_labels *ls, const struct sim_srv *s)
{
    memset(ls, 0, sizeof(*ls));
    sim_labels_add(ls, "model_name", s->conf.model);
}

/* The scheduler's labels (single engine, no parallelism). */
static void sg_sched_labels(struct sim_labels *ls, const struct sim_srv *s)
{
    memset(ls, 0, sizeof(*ls));
    sim_labels_add(ls, "engine_type", "unified");
    sim_labels_add(ls, "model_name", s->conf.model);
    sim_labels_add(ls, "moe_ep_rank", "0");
    sim_labels_add(ls, "pp_rank", "0");
    sim_labels_add(ls, "tp_rank", "0");
}

static void sg_one(struct sim_prom *p, const char *name, const char *type, const char *help,
                   const struct sim_labels *ls, double v)
{
    sim_prom_family(p, name, type, help);
    sim_prom_sample(p, name, "", ls, v);
}

/* One family with a "mode"-like label over several values. */
static void sg_modes(struct sim_prom *p, const struct sim_srv *s, const char *name,
                     const char *help, const char *k, const char *const *vals, const double *v,
                     int n)
{
    struct sim_labels ls;
    int i;

    sim_prom_family(p, name, "counter", help);
    for (i = 0; i < n; i++) {
        sg_sched_labels(&ls, s);
        sim_labels_add(&ls, k, vals[i]);
        sim_prom_sample(p, name, "", &ls, v[i]);
    }
}

static void sg_metrics(struct sim_conn *c)
{
    static const char *const prefill_modes[] = { "prefill_compute", "prefill_cache", "decode" };
    static const char *const graph_modes[] = { "decode_cuda_graph", "decode_none" };
    struct sim_srv *s = sim_conn_srv(c);
    struct sg_state *st = sg_st(s);
    struct evbuffer *b = evbuffer_new();
    struct sim_prom p;
    struct sim_labels tl, sl;
    double max_total = (double)s->conf.slots * (double)s->conf.ctx_tokens;
    double used = (double)sim_sched_tokens_in_use(s), decoding = 0, decode_lens = 0, v[3];
    char pid[24], pages[32];
    int i;

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    for (i = 0; i < s->conf.slots; i++) {
        const struct sim_req *r = s->slots[i].req;
        if (r && r->state == SIM_REQ_DECODE) {
            decoding++;
            decode_lens += (double)(r->prompt_tokens + r->n_sent);
        }
    }
    p.out = b;
    p.style = SIM_PROM_PY_MP;
    sg_tok_labels(&tl, s);
    sg_sched_labels(&sl, s);
    sg_one(&p, "sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.", &tl,
           (double)st->prompt_tokens);
    sg_one(&p, "sglang:generation_tokens_total", "counter",
           "Number of generation tokens processed.", &tl, (double)st->gen_tokens);
    {
        struct sim_labels cl = tl;
        sim_labels_add(&cl, "cache_source", "device");
        sg_one(&p, "sglang:cached_tokens_total", "counter",
               "Number of cached prompt tokens by source (device/host/storage).", &cl, 0);
    }
    sg_one(&p, "sglang:num_requests_total", "counter", "Number of requests processed.", &tl,
           (double)s->stats.completed);
    sg_one(&p, "sglang:num_aborted_requests_total", "counter", "Number of requests aborted.", &tl,
           (double)(s->stats.cancelled + s->stats.died));
    v[0] = (double)s->ctr.prompt_tokens;
    v[1] = 0;
    v[2] = (double)s->stats.tokens_sent;
    sg_modes(
        &p, s, "sglang:realtime_tokens_total",
        "Total number of tokens processed (updated on each log interval). mode: prefill_compute, "
        "prefill_cache, decode.",
        "mode", prefill_modes, v, 3);
    v[0] = (double)s->ctr.n_decode;
    v[1] = 0;
    sg_modes(&p, s, "sglang:cuda_graph_passes_total",
             "Total number of forward passes categorized by CUDA graph.", "mode", graph_modes, v,
             2);
    sg_one(&p, "sglang:num_retracted_requests_total", "counter",
           "Total number of retracted requests.", &sl, 0);
    sg_one(&p, "sglang:num_retracted_input_tokens_total", "counter",
           "Total number of retracted input tokens.", &sl, 0);
    sg_one(&p, "sglang:num_retracted_output_tokens_total", "counter",
           "Total number of retracted output tokens.", &sl, 0);
    {
        /* the scheduler's gauges, in the collector's order */
        const struct {
            const char *name, *help;
            double v;
        } g[] = {
            { "sglang:num_running_reqs", "The number of running requests.", (double)s->busy },
            { "sglang:num_used_tokens", "The number of used tokens.", used },
            { "sglang:token_usage", "The token usage.", used / max_total },
            { "sglang:pending_prealloc_token_usage",
              "The token usage for pending preallocated tokens (not preallocated yet).", 0 },
            { "sglang:swa_token_usage", "The token usage for SWA layers.", 0 },
            { "sglang:mamba_usage", "The token usage for Mamba layers.", 0 },
            { "sglang:decode_sum_seq_lens", "The sum of all sequence lengths in decode.",
              decode_lens },
            { "sglang:gen_throughput", "The generation throughput (token/s).",
              decoding * s->conf.decode_tps },
            { "sglang:num_queue_reqs", "The number of requests in the waiting queue.",
              (double)s->queued },
            { "sglang:num_grammar_queue_reqs",
              "The number of requests in the grammar waiting queue.", 0 },
            { "sglang:num_running_reqs_offline_batch",
              "The number of running low-priority offline batch requests(label is 'batch').", 0 },
            { "sglang:cache_hit_rate", "The prefix cache hit rate.", 0 },
            { "sglang:max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.",
              max_total },
            { "sglang:spec_accept_length", "The average acceptance length of speculative decoding.",
              0 },
            { "sglang:spec_accept_rate",
              "The average acceptance rate of speculative decoding (`accepted tokens / total draft "
              "tokens` in "
              "batch).",
              0 },
            { "sglang:num_prefill_prealloc_queue_reqs",
              "The number of requests in the prefill prealloc queue.", 0 },
            { "sglang:num_prefill_inflight_queue_reqs",
              "The number of requests in the prefill inflight queue.", 0 },
            { "sglang:num_decode_prealloc_queue_reqs",
              "The number of requests in the decode prealloc queue.", 0 },
            { "sglang:num_decode_transfer_queue_reqs",
              "The number of requests in the decode transfer queue.", 0 },
            { "sglang:kv_transfer_speed_gb_s", "The transfer speed of the KV cache in GB/s.", 0 },
            { "sglang:kv_transfer_latency_ms", "The transfer latency of the KV cache in ms.", 0 },
            { "sglang:kv_transfer_bootstrap_ms", "The bootstrap time of the KV transfer in ms.",
              0 },
            { "sglang:kv_transfer_alloc_ms",
              "The allocation waiting time of the KV transfer in ms.", 0 },
            { "sglang:kv_transfer_total_mb",
              "The total number of tokens transferred in the KV cache.", 0 },
            { "sglang:utilization", "The utilization.", 0 },
            { "sglang:engine_startup_time", "The time taken for the engine to start up.", 96.42 },
            { "sglang:engine_load_weights_time", "The time taken for the engine to load weights.",
              41.27 },
            { "sglang:new_token_ratio", "The new token ratio.", 0.5891 },
            { "sglang:is_cuda_graph", "Whether the batch is using CUDA graph.", 1.0 },
            { "sglang:num_unique_running_routing_keys",
              "Number of unique routing keys in running batch.", 0 },
        };
        size_t k;

        for (k = 0; k < sizeof(g) / sizeof(g[0]); k++)
            sg_one(&p, g[k].name, "gauge", g[k].help, &sl, g[k].v);
    }
    {
        struct sim_labels cl;
        memset(&cl, 0, sizeof(cl));
        snprintf(pages, sizeof(pages), "%.0f", max_total);
        sim_labels_add(&cl, "num_pages", pages);
        sim_labels_add(&cl, "page_size", "1");
        sg_one(&p, "sglang:cache_config_info", "gauge", "Cache configuration information.", &cl,
               1.0);
    }
    {
        /* gauges left on multiprocess_mode "all" get the writer's pid */
        struct sim_labels pl = sl;
        snprintf(pid, sizeof(pid), "%ld", (long)getpid());
        sim_labels_add(&pl, "pid", pid);
        sg_one(&p, "sglang:num_retracted_reqs", "gauge", "The number of retracted requests.", &pl,
               0);
        sg_one(&p, "sglang:num_paused_reqs", "gauge",
               "The number of paused requests by async weight sync.", &pl, 0);
    }
    sim_prom_family(&p, "sglang:time_to_first_token_seconds", "histogram",
                    "Histogram of time to first token in seconds.");
    sim_prom_hist(&p, "sglang:time_to_first_token_seconds", &tl, &st->ttft);
    sim_prom_family(&p, "sglang:inter_token_latency_seconds", "histogram",
                    "Histogram of inter-token latency in seconds.");
    sim_prom_hist(&p, "sglang:inter_token_latency_seconds", &tl, &st->itl);
    sim_prom_family(&p, "sglang:e2e_request_latency_seconds", "histogram",
                    "Histogram of End-to-end request latency in seconds");
    sim_prom_hist(&p, "sglang:e2e_request_latency_seconds", &tl, &st->e2e);
    sim_prom_family(&p, "sglang:num_retractions", "histogram",
                    "Histogram of retraction counts per request.");
    sim_prom_hist(&p, "sglang:num_retractions", &tl, &st->retractions);
    sim_prom_family(&p, "sglang:queue_time_seconds", "histogram",
                    "Histogram of queueing time in seconds.");
    sim_prom_hist(&p, "sglang:queue_time_seconds", &sl, &st->queue);
    sim_uvicorn_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", b);
    evbuffer_free(b);
}

/* ---- routing ---- */

static void sg_route(struct sim_conn *c, const struct sim_http *h)
{
    bool known;
    int route = sg_route_of(h, &known);

    switch (route) {
    case SG_R_CHAT:
    case SG_R_CMPL: sg_generate(c, h, route); return;
    case SG_R_MODELS: sg_models(c); return;
    case SG_R_MODEL_INFO: sg_model_info(c); return;
    case SG_R_HEALTH:
    case SG_R_HEALTH_GENERATE: sim_uvicorn_reply(c, 200, NULL, NULL); return;
    case SG_R_METRICS: sg_metrics(c); return;
    default:
        if (known)
            sg_reply_str(c, 405, "{\"detail\":\"Method Not Allowed\"}");
        else
            sg_reply_str(c, 404, "{\"detail\":\"Not Found\"}");
    }
}

/* ---- state ---- */

static void sg_release(struct sim_srv *s)
{
    struct sg_state *st = s->fstate;

    if (st == NULL)
        return;
    sim_hist_release(&st->ttft);
    sim_hist_release(&st->itl);
    sim_hist_release(&st->e2e);
    sim_hist_release(&st->retractions);
    sim_hist_release(&st->queue);
    free(st);
    s->fstate = NULL;
}

#define SG_N(a) (sizeof(a) / sizeof((a)[0]))

static int sg_init(struct sim_srv *s)
{
    struct sg_state *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return -1;
    s->fstate = st;
    if (sim_hist_init(&st->ttft, sg_b_ttft, SG_N(sg_b_ttft)) != 0 ||
        sim_hist_init(&st->itl, sg_b_itl, SG_N(sg_b_itl)) != 0 ||
        sim_hist_init(&st->e2e, sg_b_e2e, SG_N(sg_b_e2e)) != 0 ||
        sim_hist_init(&st->retractions, sg_b_retr, SG_N(sg_b_retr)) != 0 ||
        sim_hist_init(&st->queue, sg_b_queue, SG_N(sg_b_queue)) != 0) {
        sg_release(s);
        return -1;
    }
    return 0;
}

static void sg_observe(struct sim_req *r, enum sim_obs ev, uint64_t now)
{
    struct sg_state *st = sg_st(r->srv);

    switch (ev) {
    case SIM_OBS_START:
        sim_hist_observe(&st->queue, (double)(r->t_slot_us - r->t_arrive_us) / 1e6);
        break;
    case SIM_OBS_FIRST: sim_hist_observe(&st->ttft, (double)(now - r->t_arrive_us) / 1e6); break;
    case SIM_OBS_TOKEN:
        if (r->n_sent > 0)
            sim_hist_observe(&st->itl, (double)(now - r->t_last_us) / 1e6);
        break;
    case SIM_OBS_FINISH:
        sim_hist_observe(&st->e2e, (double)(r->t_last_us - r->t_arrive_us) / 1e6);
        sim_hist_observe(&st->retractions, 0);
        st->prompt_tokens += (uint64_t)r->prompt_tokens;
        st->gen_tokens += (uint64_t)r->n_sent;
        break;
    case SIM_OBS_CANCEL:
    case SIM_OBS_DIE: break;
    }
}

const struct sim_flavor sim_flavor_sglang = {
    .name = "sglang",
    .default_model = "Qwen/Qwen2.5-32B-Instruct",
    .ping_ms = -1,
    .keepalive_max = 0,
    .close_after_stream = false,
    .route = sg_route,
    .loading = sg_loading,
    .stream_head = sg_stream_head,
    .stream_token = sg_stream_token,
    .stream_end = sg_stream_end,
    .body_end = sg_body_end,
    .init = sg_init,
    .release = sg_release,
    .observe = sg_observe,
};
