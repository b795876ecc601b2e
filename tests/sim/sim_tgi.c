/* sim_tgi: the text-generation-inference router dialect (v3.3.x, axum) as
 * given by tests/fixtures/tgi: /metrics through metrics-exporter-prometheus,
 * "data:" events with no space, the role in every chat delta, "usage":null on
 * every chunk, native /generate_stream, {"error","error_type"} bodies. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/util/clock.h"
#include "pitot/util/err.h"

#define TG_VERSION "3.3.6-dev0"
#define TG_FINGERPRINT TG_VERSION "-sha-dfb3fbe" /* "{version}-{docker_label}" */
#define TG_JSON "application/json"
#define TG_TEXT "text/plain; charset=utf-8"
#define TG_VARY                                                                                    \
    "access-control-allow-origin: *\r\n"                                                           \
    "vary: origin, access-control-request-method, access-control-request-headers\r\n"

enum tg_route {
    TG_R_CHAT,
    TG_R_CMPL,
    TG_R_GENERATE,
    TG_R_GENERATE_STREAM,
    TG_R_MODELS,
    TG_R_INFO,
    TG_R_HEALTH,
    TG_R_METRICS,
    TG_R_N,
};

static const struct {
    const char *method;
    const char *path;
} tg_routes[TG_R_N] = {
    [TG_R_CHAT] = { "POST", "/v1/chat/completions" },
    [TG_R_CMPL] = { "POST", "/v1/completions" },
    [TG_R_GENERATE] = { "POST", "/generate" },
    [TG_R_GENERATE_STREAM] = { "POST", "/generate_stream" },
    [TG_R_MODELS] = { "GET", "/v1/models" },
    [TG_R_INFO] = { "GET", "/info" },
    [TG_R_HEALTH] = { "GET", "/health" },
    [TG_R_METRICS] = { "GET", "/metrics" },
};

/* Fixed costs of the steps the simulator has no reason to vary, in seconds. */
#define TG_VALIDATION_S 0.0012
#define TG_CONCAT_S 0.0013
#define TG_DECODE_PREFILL_S 0.00065
#define TG_DECODE_DECODE_S 0.00045
#define TG_FILTER_PREFILL_S 0.0001
#define TG_FILTER_DECODE_S 0.00008

/* Histograms: X(field, family, method label or NULL, bounds). The families
 * are written in the fixture's order (tg_metrics). */
#define TG_HISTS(X)                                                                                \
    X(queue, "tgi_request_queue_duration", NULL, dur)                                              \
    X(fwd_prefill, "tgi_batch_forward_duration", "prefill", dur)                                   \
    X(fwd_decode, "tgi_batch_forward_duration", "decode", dur)                                     \
    X(gen_tokens, "tgi_request_generated_tokens", NULL, gen)                                       \
    X(mean_tpt, "tgi_request_mean_time_per_token_duration", NULL, dur)                             \
    X(concat, "tgi_batch_concat_duration", "decode", dur)                                          \
    X(dec_prefill, "tgi_batch_decode_duration", "prefill", dur)                                    \
    X(dec_decode, "tgi_batch_decode_duration", "decode", dur)                                      \
    X(input_len, "tgi_request_input_length", NULL, input)                                          \
    X(filt_prefill, "tgi_batch_filter_duration", "prefill", dur)                                   \
    X(filt_decode, "tgi_batch_filter_duration", "decode", dur)                                     \
    X(validation, "tgi_request_validation_duration", NULL, dur)                                    \
    X(next_size, "tgi_batch_next_size", NULL, batch)                                               \
    X(infer, "tgi_request_inference_duration", NULL, dur)                                          \
    X(max_new, "tgi_request_max_new_tokens", NULL, gen)                                            \
    X(inf_prefill, "tgi_batch_inference_duration", "prefill", dur)                                 \
    X(inf_decode, "tgi_batch_inference_duration", "decode", dur)                                   \
    X(duration, "tgi_request_duration", NULL, dur)

struct tg_state {
#define TG_HIST_FIELD(f, fam, method, b) struct sim_hist f;
    TG_HISTS(TG_HIST_FIELD)
#undef TG_HIST_FIELD
    uint64_t prefills;      /* prefill batches run */
    uint64_t decodes;       /* decode steps run */
    uint64_t concats;       /* a request joined a running batch */
    uint64_t requests;      /* requests past JSON extraction */
    uint64_t invalid;       /* validation failures */
    uint64_t skipped_count; /* observations of tgi_request_skipped_tokens */
};

static struct tg_state *tg_st(const struct sim_srv *s)
{
    return s->fstate;
}

/* ---- responses ---- */

static void tg_head(struct sim_conn *c, struct evbuffer *out, int status, const char *ctype,
                    long long clen, const char *extra)
{
    char date[64];

    sim_http_date(date, sizeof(date));
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, err_reason_phrase(status));
    if (clen < 0)
        evbuffer_add_printf(out, "content-type: text/event-stream\r\ncache-control: no-cache\r\n");
    else if (ctype)
        evbuffer_add_printf(out, "content-type: %s\r\n", ctype);
    if (extra)
        evbuffer_add(out, extra, strlen(extra));
    evbuffer_add_printf(out, TG_VARY);
    if (clen < 0)
        evbuffer_add_printf(out, "transfer-encoding: chunked\r\n");
    else
        evbuffer_add_printf(out, "content-length: %lld\r\n", clen);
    if (sim_conn_announce_close(c))
        evbuffer_add_printf(out, "connection: close\r\n");
    evbuffer_add_printf(out, "date: %s\r\n\r\n", date);
}

static void tg_reply(struct sim_conn *c, int status, const char *ctype, struct evbuffer *body,
                     const char *extra)
{
    struct evbuffer *resp = evbuffer_new();

    if (resp == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    tg_head(c, resp, status, ctype, body ? (long long)evbuffer_get_length(body) : 0, extra);
    if (body)
        evbuffer_add_buffer(resp, body);
    sim_conn_respond(c, resp, status, false);
    evbuffer_free(resp);
}

static void tg_reply_str(struct sim_conn *c, int status, const char *ctype, const char *body)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add(b, body, strlen(body));
    tg_reply(c, status, ctype, b, NULL);
    evbuffer_free(b);
}

static const char *tg_error_type(int status)
{
    switch (status) {
    case 422: return "validation";
    case 424: return "generation";
    case 429: return "overloaded";
    case 503: return "unhealthy";
    default: return status >= 500 ? "generation" : "validation";
    }
}

/* ErrorResponse {"error","error_type"}, as TGI's handlers answer. */
static void tg_error(struct sim_conn *c, int status, const char *type, const char *message)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add_printf(b, "{\"error\":");
    sim_json_str(b, message, strlen(message));
    evbuffer_add_printf(b, ",\"error_type\":\"%s\"}", type ? type : tg_error_type(status));
    tg_reply(c, status, TG_JSON, b, NULL);
    evbuffer_free(b);
}

static int tg_route_of(const struct sim_http *h, bool *known)
{
    int i;

    *known = false;
    for (i = 0; i < TG_R_N; i++) {
        if (!span_eq(h->path, tg_routes[i].path))
            continue;
        *known = true;
        if (span_eq(h->method, tg_routes[i].method))
            return i;
    }
    return -1;
}

static bool tg_is_generation(int route)
{
    return route == TG_R_CHAT || route == TG_R_CMPL || route == TG_R_GENERATE ||
           route == TG_R_GENERATE_STREAM;
}

/* The router only listens once the shards are warm; a 503 from the health
 * check's body is the nearest thing to "loading". */
static void tg_loading(struct sim_conn *c, const struct sim_http *h)
{
    bool known;

    if (tg_is_generation(tg_route_of(h, &known)))
        sim_conn_srv(c)->stats.requests++;
    tg_error(c, 503, "healthcheck", "unhealthy");
}

/* ---- generation ---- */

/* axum's Json extractor answers before TGI's handler does: plain text. */
static void tg_rejection(struct sim_conn *c, int status, const char *what, size_t col)
{
    char msg[256];

    if (status == 400)
        snprintf(msg, sizeof(msg),
                 "Failed to parse the request body as JSON: expected value at line 1 column %zu",
                 col);
    else
        snprintf(msg, sizeof(msg),
                 "Failed to deserialize the JSON body into the target type: %s at line 1 "
                 "column %zu",
                 what, col);
    tg_reply_str(c, status, TG_TEXT, msg);
}

/* Validation of the token budget, TGI's wording (max_input = ctx - 1). */
static bool tg_validate(struct sim_conn *c, int64_t prompt, int64_t max_new)
{
    struct sim_srv *s = sim_conn_srv(c);
    int64_t ctx = s->conf.ctx_tokens;
    char msg[256];

    if (prompt > ctx - 1)
        snprintf(msg, sizeof(msg),
                 "Input validation error: `inputs` must have less than %lld tokens. Given: %lld",
                 (long long)(ctx - 1), (long long)prompt);
    else if (max_new > 0 && prompt + max_new > ctx)
        snprintf(msg, sizeof(msg),
                 "Input validation error: `inputs` tokens + `max_new_tokens` must be <= %lld. "
                 "Given: %lld `inputs` tokens and %lld `max_new_tokens`",
                 (long long)ctx, (long long)prompt, (long long)max_new);
    else
        return true;
    tg_st(s)->invalid++;
    tg_error(c, 422, "validation", msg);
    return false;
}

/* Counts a request that passed validation (what the router records then). */
static void tg_validated(struct sim_req *r)
{
    struct tg_state *st = tg_st(r->srv);

    sim_hist_observe(&st->validation, TG_VALIDATION_S);
    sim_hist_observe(&st->input_len, (double)r->prompt_tokens);
    sim_hist_observe(&st->max_new, (double)r->n_max);
}

static void tg_openai(struct sim_conn *c, const struct sim_http *h, int route)
{
    struct sim_srv *s = sim_conn_srv(c);
    enum sim_ep ep = route == TG_R_CHAT ? SIM_EP_CHAT : SIM_EP_COMPLETIONS;
    struct sim_gen g;
    struct sim_req *r;
    char msg[512];

    s->stats.requests++;
    switch (sim_gen_parse(s, h->body, ep, &g, msg, sizeof(msg))) {
    case SIM_GEN_OK:
    case SIM_GEN_ECONTEXT: break;
    case SIM_GEN_EJSON: tg_rejection(c, 400, NULL, 1); return;
    case SIM_GEN_ENOTOBJ:
        tg_rejection(c, 422, "invalid type: expected struct", h->body.len);
        return;
    case SIM_GEN_EMISSING:
        tg_rejection(c, 422,
                     ep == SIM_EP_CHAT ? "missing field `messages`" : "missing field `prompt`",
                     h->body.len);
        return;
    case SIM_GEN_ETYPE:
        tg_rejection(c, 422, "messages: invalid type: expected a sequence", h->body.len);
        return;
    }
    tg_st(s)->requests++;
    if (s->conf.fail_status) {
        tg_error(c, s->conf.fail_status, NULL, "simulated failure (pitot-sim --fail-status)");
        return;
    }
    if (!tg_validate(c, g.prompt_tokens, g.max_tokens))
        return;
    r = sim_gen_new(c, &g);
    if (r == NULL) {
        tg_error(c, 500, NULL, "out of memory");
        return;
    }
    r->route = route;
    r->id[0] = '\0'; /* TGI leaves "id" empty */
    tg_validated(r);
    sim_gen_submit(r);
}

/* POST /generate and /generate_stream: {"inputs":"...","parameters":{...}}. */
static void tg_native(struct sim_conn *c, const struct sim_http *h, int route)
{
    struct sim_srv *s = sim_conn_srv(c);
    struct sim_json *j;
    struct sim_gen g;
    struct sim_req *r;
    char msg[256];
    int inputs, params;

    s->stats.requests++;
    j = sim_json_parse(h->body, msg, sizeof(msg));
    if (j == NULL) {
        tg_rejection(c, 400, NULL, 1);
        return;
    }
    inputs = sim_json_find(j, 0, "inputs");
    if (sim_json_type(j, inputs) != SIM_JSON_STRING) {
        sim_json_free(j);
        tg_rejection(c, 422,
                     inputs < 0 ? "missing field `inputs`"
                                : "inputs: invalid type: expected a string",
                     h->body.len);
        return;
    }
    memset(&g, 0, sizeof(g));
    g.ep = SIM_EP_NATIVE;
    g.stream = route == TG_R_GENERATE_STREAM;
    g.prompt_tokens = (int64_t)((sim_json_prompt_bytes(j, inputs) + 3) / 4);
    g.max_tokens = -1;
    params = sim_json_find(j, 0, "parameters");
    sim_json_int(j, sim_json_find(j, params, "max_new_tokens"), &g.max_tokens);
    tg_st(s)->requests++;
    if (s->conf.fail_status) {
        sim_json_free(j);
        tg_error(c, s->conf.fail_status, NULL, "simulated failure (pitot-sim --fail-status)");
        return;
    }
    if (!tg_validate(c, g.prompt_tokens, g.max_tokens)) {
        sim_json_free(j);
        return;
    }
    r = sim_gen_new(c, &g);
    if (r == NULL) {
        sim_json_free(j);
        tg_error(c, 500, NULL, "out of memory");
        return;
    }
    r->details = sim_json_true(j, sim_json_find(j, params, "details"));
    sim_json_free(j);
    r->route = route;
    r->id[0] = '\0';
    tg_validated(r);
    sim_gen_submit(r);
}

/* "system_fingerprint" and what precedes "choices" in TGI's chat objects. */
static void tg_chat_head(struct evbuffer *o, const struct sim_req *r, const char *object)
{
    const char *m = r->srv->conf.model;

    evbuffer_add_printf(o, "{\"object\":\"%s\",\"id\":\"\",\"created\":%llu,\"model\":", object,
                        (unsigned long long)(clk_wall_us() / 1000000));
    sim_json_str(o, m, strlen(m));
    evbuffer_add_printf(o, ",\"system_fingerprint\":\"" TG_FINGERPRINT "\"");
}

static void tg_usage(struct evbuffer *o, const struct sim_req *r)
{
    evbuffer_add_printf(
        o, "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}",
        (long long)r->prompt_tokens, (long long)r->n_sent,
        (long long)(r->prompt_tokens + r->n_sent));
}

/* A token's log-probability: a fixed function of the token, f32-exact. */
static double tg_logprob(const struct sim_req *r, int64_t i)
{
    uint64_t st = r->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)i;

    return -(double)(1 + sim_rng_next(&st) % 1023) / 1024.0;
}

static void tg_token_obj(struct evbuffer *o, const struct sim_req *r, int64_t i)
{
    int id;
    struct span tok = sim_text_token(&r->srv->conf, r->seed, i, &id);

    evbuffer_add_printf(o, "{\"id\":%d,\"text\":", id);
    sim_json_str(o, tok.p, tok.len);
    evbuffer_add_printf(o, ",\"logprob\":");
    sim_json_num(o, tg_logprob(r, i));
    evbuffer_add_printf(o, ",\"special\":false}");
}

/* Tokens 0..n-1 of r as one JSON string. */
static void tg_text(struct evbuffer *o, const struct sim_req *r, int64_t n)
{
    struct evbuffer *t = evbuffer_new();
    int64_t i;
    int id;

    if (t == NULL) {
        evbuffer_add(o, "\"\"", 2);
        return;
    }
    for (i = 0; i < n; i++) {
        struct span tok = sim_text_token(&r->srv->conf, r->seed, i, &id);
        evbuffer_add(t, tok.p, tok.len);
    }
    sim_json_str(o, (const char *)evbuffer_pullup(t, -1), evbuffer_get_length(t));
    evbuffer_free(t);
}

static void tg_stream_head(struct sim_req *r, struct evbuffer *out)
{
    tg_head(r->conn, out, 200, NULL, -1,
            "x-compute-type: gpu+optimized\r\nx-accel-buffering: no\r\n");
    /* The OpenAI routes' streams open with axum's keep-alive comment (a
     * chunk of ":\n\n"); the native one starts with its first token. */
    if (r->ep != SIM_EP_NATIVE)
        evbuffer_add(out, "3\r\n:\n\n\r\n", 8);
}

static void tg_stream_token(struct sim_req *r, struct evbuffer *o, int64_t i, struct span tok)
{
    bool last = i + 1 >= r->n_max;

    switch (r->ep) {
    case SIM_EP_CHAT:
        evbuffer_add_printf(o, "data:");
        tg_chat_head(o, r, "chat.completion.chunk");
        evbuffer_add_printf(
            o, ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":");
        sim_json_str(o, tok.p, tok.len);
        evbuffer_add_printf(o, "},\"logprobs\":null,\"finish_reason\":%s}],\"usage\":null}\n\n",
                            last ? "\"length\"" : "null");
        break;
    case SIM_EP_COMPLETIONS: {
        const char *m = r->srv->conf.model;
        evbuffer_add_printf(o,
                            "data:{\"object\":\"text_completion\",\"id\":\"\",\"created\":%llu,"
                            "\"choices\":[{\"index\":0,\"text\":",
                            (unsigned long long)(clk_wall_us() / 1000000));
        sim_json_str(o, tok.p, tok.len);
        evbuffer_add_printf(o, ",\"logprobs\":null,\"finish_reason\":%s}],\"model\":",
                            last ? "\"length\"" : "null");
        sim_json_str(o, m, strlen(m));
        evbuffer_add_printf(o, ",\"system_fingerprint\":\"" TG_FINGERPRINT "\"}\n\n");
        break;
    }
    case SIM_EP_NATIVE:
        evbuffer_add_printf(o, "data:{\"index\":%lld,\"token\":", (long long)(i + 1));
        tg_token_obj(o, r, i);
        if (!last) {
            evbuffer_add_printf(o, ",\"generated_text\":null,\"details\":null}\n\n");
            break;
        }
        /* The last event carries the whole text, this token included. */
        evbuffer_add_printf(o, ",\"generated_text\":");
        tg_text(o, r, i + 1);
        if (r->details)
            evbuffer_add_printf(
                o,
                ",\"details\":{\"finish_reason\":\"length\",\"generated_tokens\":%lld,"
                "\"seed\":null,\"input_length\":%lld}}\n\n",
                (long long)(i + 1), (long long)r->prompt_tokens);
        else
            evbuffer_add_printf(o, ",\"details\":null}\n\n");
        break;
    }
}

static void tg_stream_end(struct sim_req *r)
{
    struct evbuffer *o = evbuffer_new();

    if (o == NULL || r->ep == SIM_EP_NATIVE) {
        /* the native stream just ends: no [DONE] */
        if (o)
            evbuffer_free(o);
        return;
    }
    if (r->ep == SIM_EP_CHAT && r->include_usage) {
        evbuffer_add_printf(o, "data:");
        tg_chat_head(o, r, "chat.completion.chunk");
        evbuffer_add_printf(o, ",\"choices\":[],");
        tg_usage(o, r);
        evbuffer_add_printf(o, "}\n\n");
        sim_conn_chunk(r->conn, o);
    }
    evbuffer_add_printf(o, "data:[DONE]\n\n");
    sim_conn_chunk(r->conn, o);
    evbuffer_free(o);
}

static void tg_body_end(struct sim_req *r)
{
    struct evbuffer *o = evbuffer_new();
    const char *m = r->srv->conf.model;
    char extra[512];
    int64_t i;

    if (o == NULL) {
        sim_conn_close_after_flush(r->conn);
        return;
    }
    extra[0] = '\0';
    switch (r->ep) {
    case SIM_EP_CHAT:
        tg_chat_head(o, r, "chat.completion");
        evbuffer_add_printf(
            o, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        tg_text(o, r, r->n_sent);
        evbuffer_add_printf(o, "},\"logprobs\":null,\"finish_reason\":\"length\"}],");
        tg_usage(o, r);
        evbuffer_add_printf(o, "}");
        break;
    case SIM_EP_COMPLETIONS:
        evbuffer_add_printf(
            o, "{\"object\":\"text_completion\",\"id\":\"\",\"created\":%llu,\"model\":",
            (unsigned long long)(clk_wall_us() / 1000000));
        sim_json_str(o, m, strlen(m));
        evbuffer_add_printf(o, ",\"system_fingerprint\":\"" TG_FINGERPRINT
                               "\",\"choices\":[{\"finish_reason\":"
                               "\"length\",\"index\":0,\"logprobs\":null,\"text\":");
        tg_text(o, r, r->n_sent);
        evbuffer_add_printf(o, "}],");
        tg_usage(o, r);
        evbuffer_add_printf(o, "}");
        break;
    case SIM_EP_NATIVE:
        evbuffer_add_printf(o, "{\"generated_text\":");
        tg_text(o, r, r->n_sent);
        if (r->details) {
            evbuffer_add_printf(
                o,
                ",\"details\":{\"finish_reason\":\"length\",\"generated_tokens\":%lld,"
                "\"seed\":null,\"prefill\":[],\"tokens\":[",
                (long long)r->n_sent);
            for (i = 0; i < r->n_sent; i++) {
                if (i)
                    evbuffer_add(o, ",", 1);
                tg_token_obj(o, r, i);
            }
            evbuffer_add_printf(o, "]}");
        }
        evbuffer_add_printf(o, "}");
        /* the router's timing headers on /generate */
        snprintf(extra, sizeof(extra),
                 "x-compute-type: gpu+optimized\r\nx-compute-time: %.6f\r\nx-total-time: %llu\r\n"
                 "x-queue-time: %llu\r\nx-inference-time: %llu\r\nx-time-per-token: %llu\r\n"
                 "x-prompt-tokens: %lld\r\nx-generated-tokens: %lld\r\n",
                 (double)(r->t_last_us - r->t_arrive_us) / 1e6,
                 (unsigned long long)((r->t_last_us - r->t_arrive_us) / 1000),
                 (unsigned long long)((r->t_slot_us - r->t_arrive_us) / 1000),
                 (unsigned long long)((r->t_last_us - r->t_slot_us) / 1000),
                 (unsigned long long)(r->n_sent ? (r->t_last_us - r->t_slot_us) / 1000 /
                                                      (uint64_t)r->n_sent
                                                : 0),
                 (long long)r->prompt_tokens, (long long)r->n_sent);
        break;
    }
    tg_reply(r->conn, 200, TG_JSON, o, extra[0] ? extra : NULL);
    evbuffer_free(o);
}

/* ---- other routes ---- */

static void tg_models(struct sim_conn *c)
{
    const char *m = sim_conn_srv(c)->conf.model;
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add_printf(b, "{\"object\":\"list\",\"data\":[{\"id\":");
    sim_json_str(b, m, strlen(m));
    evbuffer_add_printf(b, ",\"object\":\"model\",\"created\":0,\"owned_by\":");
    sim_json_str(b, m, strlen(m));
    evbuffer_add_printf(b, "}]}");
    tg_reply(c, 200, TG_JSON, b, NULL);
    evbuffer_free(b);
}

static void tg_info(struct sim_conn *c)
{
    struct sim_srv *s = sim_conn_srv(c);
    const char *m = s->conf.model;
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add_printf(b, "{\"model_id\":");
    sim_json_str(b, m, strlen(m));
    evbuffer_add_printf(
        b,
        ",\"model_sha\":null,\"model_pipeline_tag\":\"text-generation\","
        "\"max_concurrent_requests\":128,\"max_best_of\":2,\"max_stop_sequences\":4,"
        "\"max_input_tokens\":%lld,\"max_total_tokens\":%lld,\"validation_workers\":2,"
        "\"max_client_batch_size\":4,\"router\":\"text-generation-router\","
        "\"version\":\"" TG_VERSION "\",\"sha\":\"dfb3fbe\",\"docker_label\":\"sha-dfb3fbe\"}",
        (long long)(s->conf.ctx_tokens - 1), (long long)s->conf.ctx_tokens);
    tg_reply(c, 200, TG_JSON, b, NULL);
    evbuffer_free(b);
}

/* ---- /metrics ---- */

static void tg_counter(struct sim_prom *p, const char *name, const char *help, const char *k,
                       const char *const *vals, const double *v, int n)
{
    struct sim_labels ls;
    int i;

    sim_prom_family(p, name, "counter", help);
    for (i = 0; i < n; i++) {
        memset(&ls, 0, sizeof(ls));
        if (k)
            sim_labels_add(&ls, k, vals[i]);
        sim_prom_sample(p, name, "", &ls, v[i]);
    }
    sim_prom_family_end(p);
}

static void tg_gauge(struct sim_prom *p, const char *name, const char *help, double v)
{
    sim_prom_family(p, name, "gauge", help);
    sim_prom_sample(p, name, "", NULL, v);
    sim_prom_family_end(p);
}

/* One histogram family, with one series per method when method_a is set. */
static void tg_hist(struct sim_prom *p, const char *name, const char *help, const char *method_a,
                    const struct sim_hist *a, const char *method_b, const struct sim_hist *b)
{
    struct sim_labels ls;

    sim_prom_family(p, name, "histogram", help);
    memset(&ls, 0, sizeof(ls));
    if (method_a)
        sim_labels_add(&ls, "method", method_a);
    sim_prom_hist(p, name, &ls, a);
    if (b) {
        memset(&ls, 0, sizeof(ls));
        sim_labels_add(&ls, "method", method_b);
        sim_prom_hist(p, name, &ls, b);
    }
    sim_prom_family_end(p);
}

static void tg_metrics(struct sim_conn *c)
{
    static const char *const methods[] = { "prefill", "decode" };
    static const char *const chunking[] = { "chunking" };
    static const char *const validation[] = { "validation" };
    static const char *const quantiles[] = { "0", "0.5", "0.9", "0.95", "0.99", "0.999", "1" };
    struct sim_srv *s = sim_conn_srv(c);
    struct tg_state *st = tg_st(s);
    struct evbuffer *b = evbuffer_new();
    struct sim_prom p;
    struct sim_labels ls;
    double v[2];
    size_t i;

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    p.out = b;
    p.style = SIM_PROM_RS;
    /* counters, gauges, then distributions, each group in the fixture's order */
    v[0] = (double)st->prefills;
    v[1] = (double)st->decodes;
    tg_counter(&p, "tgi_batch_inference_success",
               "Number of successful inference calls per method (prefill or decode)", "method",
               methods, v, 2);
    v[0] = (double)st->requests;
    tg_counter(&p, "tgi_request_count", "Total number of requests", NULL, NULL, v, 1);
    v[0] = (double)st->concats;
    tg_counter(&p, "tgi_batch_concat", NULL, "reason", chunking, v, 1);
    v[0] = (double)st->invalid;
    tg_counter(&p, "tgi_request_failure", NULL, "err", validation, v, 1);
    v[0] = (double)st->prefills;
    v[1] = (double)st->decodes;
    tg_counter(&p, "tgi_batch_inference_count", "Inference calls per method (prefill or decode)",
               "method", methods, v, 2);
    v[0] = (double)s->stats.completed;
    tg_counter(&p, "tgi_request_success", "Number of successful requests", NULL, NULL, v, 1);
    tg_gauge(&p, "tgi_queue_size", "Current queue size", (double)s->queued);
    tg_gauge(&p, "tgi_batch_max_total_tokens", NULL,
             (double)s->conf.slots * (double)s->conf.ctx_tokens);
    tg_gauge(&p, "tgi_batch_current_size", "Current batch size", (double)s->busy);
    tg_gauge(&p, "tgi_batch_current_max_tokens", "Maximum tokens for the current batch",
             (double)sim_sched_tokens_in_use(s));
    tg_hist(&p, "tgi_request_queue_duration", "Request queue duration", NULL, &st->queue, NULL,
            NULL);
    tg_hist(&p, "tgi_batch_forward_duration",
            "Batch forward duration per method (prefill or decode)", "prefill", &st->fwd_prefill,
            "decode", &st->fwd_decode);
    tg_hist(&p, "tgi_request_generated_tokens", "Generated tokens per request", NULL,
            &st->gen_tokens, NULL, NULL);
    /* no bucket override for it: a summary, and nothing is ever speculated */
    sim_prom_family(&p, "tgi_request_skipped_tokens", "summary", "Speculated tokens per request");
    for (i = 0; i < sizeof(quantiles) / sizeof(quantiles[0]); i++) {
        memset(&ls, 0, sizeof(ls));
        sim_labels_add(&ls, "quantile", quantiles[i]);
        sim_prom_sample(&p, "tgi_request_skipped_tokens", "", &ls, 0);
    }
    sim_prom_sample(&p, "tgi_request_skipped_tokens", "_sum", NULL, 0);
    sim_prom_sample(&p, "tgi_request_skipped_tokens", "_count", NULL, (double)st->skipped_count);
    sim_prom_family_end(&p);
    tg_hist(&p, "tgi_request_mean_time_per_token_duration", "Mean time per token per request", NULL,
            &st->mean_tpt, NULL, NULL);
    tg_hist(&p, "tgi_batch_concat_duration", NULL, "decode", &st->concat, NULL, NULL);
    tg_hist(&p, "tgi_batch_decode_duration",
            "Time spent decoding a batch per method (prefill or decode)", "prefill",
            &st->dec_prefill, "decode", &st->dec_decode);
    tg_hist(&p, "tgi_request_input_length", "Input token length per request", NULL, &st->input_len,
            NULL, NULL);
    tg_hist(
        &p, "tgi_batch_filter_duration",
        "Time spent filtering batches and sending generated tokens per method (prefill or decode)",
        "prefill", &st->filt_prefill, "decode", &st->filt_decode);
    tg_hist(&p, "tgi_request_validation_duration", "Request validation duration", NULL,
            &st->validation, NULL, NULL);
    tg_hist(&p, "tgi_batch_next_size", "Batch size of the next batch", NULL, &st->next_size, NULL,
            NULL);
    tg_hist(&p, "tgi_request_inference_duration", "Request inference duration", NULL, &st->infer,
            NULL, NULL);
    tg_hist(&p, "tgi_request_max_new_tokens", "Maximum new tokens per request", NULL, &st->max_new,
            NULL, NULL);
    tg_hist(&p, "tgi_batch_inference_duration", "Batch inference duration", "prefill",
            &st->inf_prefill, "decode", &st->inf_decode);
    tg_hist(&p, "tgi_request_duration", "Request duration", NULL, &st->duration, NULL, NULL);
    tg_reply(c, 200, TG_TEXT, b, NULL);
    evbuffer_free(b);
}

/* ---- routing ---- */

static void tg_route(struct sim_conn *c, const struct sim_http *h)
{
    bool known;
    int route = tg_route_of(h, &known);

    switch (route) {
    case TG_R_CHAT:
    case TG_R_CMPL: tg_openai(c, h, route); return;
    case TG_R_GENERATE:
    case TG_R_GENERATE_STREAM: tg_native(c, h, route); return;
    case TG_R_MODELS: tg_models(c); return;
    case TG_R_INFO: tg_info(c); return;
    case TG_R_HEALTH: tg_reply(c, 200, NULL, NULL, NULL); return;
    case TG_R_METRICS: tg_metrics(c); return;
    default:
        /* axum's fallbacks: empty bodies */
        tg_reply(c, known ? 405 : 404, NULL, NULL, NULL);
    }
}

/* ---- state ---- */

static void tg_release(struct sim_srv *s)
{
    struct tg_state *st = s->fstate;

    if (st == NULL)
        return;
#define TG_HIST_FREE(f, fam, method, b) sim_hist_release(&st->f);
    TG_HISTS(TG_HIST_FREE)
#undef TG_HIST_FREE
    free(st);
    s->fstate = NULL;
}

/* The router's bucket setup: geometric durations from 0.1 ms (x1.5, 35
 * bounds), token counts in hundredths of the limits, batch sizes 1..1024. */
static int tg_init(struct sim_srv *s)
{
    struct tg_state *st = calloc(1, sizeof(*st));
    double dur[35], input[100], gen[100], batch[1024], value = 0.0001;
    double max_input = (double)(s->conf.ctx_tokens - 1), max_total = (double)s->conf.ctx_tokens;
    int rc = 0, i;

    if (st == NULL)
        return -1;
    s->fstate = st;
    for (i = 0; i < 35; i++) {
        value *= 1.5;
        dur[i] = value;
    }
    for (i = 0; i < 100; i++) {
        input[i] = (max_input / 100.0) * (double)(i + 1);
        gen[i] = (max_total / 100.0) * (double)(i + 1);
    }
    for (i = 0; i < 1024; i++)
        batch[i] = (double)(i + 1);
#define TG_HIST_INIT(f, fam, method, b) rc |= sim_hist_init(&st->f, b, sizeof(b) / sizeof(b[0]));
    TG_HISTS(TG_HIST_INIT)
#undef TG_HIST_INIT
    if (rc != 0) {
        tg_release(s);
        return -1;
    }
    return 0;
}

/* What the router and the v3 backend record, from the scheduler's events.
 * Every prefill is a batch of its own; every token a decode step. */
static void tg_observe(struct sim_req *r, enum sim_obs ev, uint64_t now)
{
    struct tg_state *st = tg_st(r->srv);
    double prefill_s, gap_s;

    switch (ev) {
    case SIM_OBS_START:
        sim_hist_observe(&st->queue, (double)(r->t_slot_us - r->t_arrive_us) / 1e6);
        sim_hist_observe(&st->next_size, 1.0);
        if (r->srv->busy > 1) {
            /* joined a running batch */
            st->concats++;
            sim_hist_observe(&st->concat, TG_CONCAT_S);
        }
        break;
    case SIM_OBS_FIRST:
        prefill_s = (double)(now - r->t_slot_us) / 1e6;
        st->prefills++;
        sim_hist_observe(&st->fwd_prefill, prefill_s);
        sim_hist_observe(&st->dec_prefill, TG_DECODE_PREFILL_S);
        sim_hist_observe(&st->filt_prefill, TG_FILTER_PREFILL_S);
        sim_hist_observe(&st->inf_prefill, prefill_s + TG_DECODE_PREFILL_S + TG_FILTER_PREFILL_S);
        break;
    case SIM_OBS_TOKEN:
        if (r->n_sent == 0)
            break; /* the first token comes out of the prefill */
        gap_s = (double)(now - r->t_last_us) / 1e6;
        st->decodes++;
        sim_hist_observe(&st->fwd_decode, gap_s);
        sim_hist_observe(&st->dec_decode, TG_DECODE_DECODE_S);
        sim_hist_observe(&st->filt_decode, TG_FILTER_DECODE_S);
        sim_hist_observe(&st->inf_decode, gap_s + TG_DECODE_DECODE_S + TG_FILTER_DECODE_S);
        break;
    case SIM_OBS_FINISH:
        sim_hist_observe(&st->gen_tokens, (double)r->n_sent);
        sim_hist_observe(&st->mean_tpt,
                         (double)(r->t_last_us - r->t_slot_us) / 1e6 / (double)r->n_sent);
        sim_hist_observe(&st->infer, (double)(r->t_last_us - r->t_slot_us) / 1e6);
        sim_hist_observe(&st->duration, (double)(r->t_last_us - r->t_arrive_us) / 1e6);
        st->skipped_count += (uint64_t)r->n_sent;
        break;
    case SIM_OBS_CANCEL:
    case SIM_OBS_DIE: break;
    }
}

const struct sim_flavor sim_flavor_tgi = {
    .name = "tgi",
    .default_model = "meta-llama/Llama-3.1-8B-Instruct",
    .ping_ms = 15000, /* axum's default KeepAlive interval */
    .keepalive_max = 0,
    .close_after_stream = false,
    .route = tg_route,
    .loading = tg_loading,
    .stream_head = tg_stream_head,
    .stream_token = tg_stream_token,
    .stream_end = tg_stream_end,
    .body_end = tg_body_end,
    .init = tg_init,
    .release = tg_release,
    .observe = tg_observe,
};
