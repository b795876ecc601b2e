/* sim_llamacpp: the llama.cpp llama-server dialect (build b10587) as recorded in
 * tests/fixtures/llama.cpp: routes, request fields, response headers, SSE
 * event layout and JSON key order, /metrics, /slots, /props, /v1/models. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/util/clock.h"
#include "pitot/util/err.h"

#define LC_FINGERPRINT "b10587-3f545becc"
#define LC_JSON_TYPE "application/json; charset=utf-8"

/* ---- responses ---- */

static void lc_head(struct sim_conn *c, struct evbuffer *out, int status, const char *ctype,
                    long long clen, const char *extra)
{
    evbuffer_add_printf(
        out, "HTTP/1.1 %d %s\r\nServer: llama.cpp\r\nAccess-Control-Allow-Origin: %s\r\n", status,
        err_reason_phrase(status), sim_conn_origin(c));
    if (extra)
        evbuffer_add(out, extra, strlen(extra));
    if (clen < 0)
        evbuffer_add_printf(out, "X-Accel-Buffering: no\r\nContent-Type: text/event-stream\r\n"
                                 "Transfer-Encoding: chunked\r\n");
    else
        evbuffer_add_printf(out, "Content-Type: %s\r\nContent-Length: %lld\r\n", ctype, clen);
    if (status >= 400 || sim_conn_announce_close(c))
        evbuffer_add_printf(out, "Connection: close\r\n\r\n");
    else
        evbuffer_add_printf(out, "Keep-Alive: timeout=5, max=100\r\n\r\n");
}

/* A whole Content-Length response; drains body. Errors keep the socket open,
 * as llama-server does, though they say Connection: close. */
static void lc_reply(struct sim_conn *c, int status, const char *ctype, struct evbuffer *body,
                     const char *extra)
{
    struct evbuffer *resp = evbuffer_new();

    if (resp == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    lc_head(c, resp, status, ctype, (long long)evbuffer_get_length(body), extra);
    evbuffer_add_buffer(resp, body);
    sim_conn_respond(c, resp, status, false);
    evbuffer_free(resp);
}

static void lc_reply_str(struct sim_conn *c, int status, const char *body)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add(b, body, strlen(body));
    lc_reply(c, status, LC_JSON_TYPE, b, NULL);
    evbuffer_free(b);
}

static const char *lc_error_type(int status)
{
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 501: return "not_supported_error";
    case 503: return "unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* {"error":{"code":N,"message":"...","type":"..."}}: the handler-error order. */
static void lc_error(struct sim_conn *c, int status, const char *message)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add_printf(b, "{\"error\":{\"code\":%d,\"message\":", status);
    sim_json_str(b, message, strlen(message));
    evbuffer_add_printf(b, ",\"type\":\"%s\"}}", lc_error_type(status));
    lc_reply(c, status, LC_JSON_TYPE, b, NULL);
    evbuffer_free(b);
}

static void lc_not_found(struct sim_conn *c)
{
    lc_reply_str(
        c, 404,
        "{\"error\":{\"message\":\"File Not Found\",\"type\":\"not_found_error\",\"code\":404}}");
}

static bool lc_is_generation(const struct sim_http *h);

static void lc_loading(struct sim_conn *c, const struct sim_http *h)
{
    if (lc_is_generation(h))
        sim_conn_srv(c)->stats.requests++;
    lc_reply_str(
        c, 503,
        "{\"error\":{\"message\":\"Loading model\",\"type\":\"unavailable_error\",\"code\":503}}");
}

/* Sampling parameters as llama-server prints them. native adds the keys the
 * /completion final event carries; chat uses the ChatML template settings. */
static void lc_params(struct evbuffer *o, bool native, bool chat, int64_t max_tokens, bool stream,
                      bool props)
{
    evbuffer_add_printf(
        o, "{\"seed\":4294967295,\"temperature\":0.800000011920929,\"dynatemp_range\":0.0,"
           "\"dynatemp_exponent\":1.0,\"top_k\":40,\"top_p\":0.949999988079071,"
           "\"min_p\":0.05000000074505806,\"top_n_sigma\":-1.0,\"xtc_probability\":0.0,"
           "\"xtc_threshold\":0.10000000149011612,\"typical_p\":1.0,\"repeat_last_n\":64,"
           "\"repeat_penalty\":1.0,\"presence_penalty\":0.0,\"frequency_penalty\":0.0,"
           "\"dry_multiplier\":0.0,\"dry_base\":1.75,\"dry_allowed_length\":2,\"dry_penalty_last_"
           "n\":64,");
    if (native)
        evbuffer_add_printf(o, "\"dry_sequence_breakers\":[\"\\n\",\":\",\"\\\"\",\"*\"],");
    evbuffer_add_printf(o,
                        "\"mirostat\":0,\"mirostat_tau\":5.0,\"mirostat_eta\":0.10000000149011612,"
                        "\"adaptive_target\":-1.0,\"adaptive_decay\":0.8999999761581421,");
    if (native)
        evbuffer_add_printf(o, "\"stop\":[],");
    evbuffer_add_printf(o,
                        "\"max_tokens\":%lld,\"n_predict\":%lld,\"n_keep\":0,\"n_discard\":0,"
                        "\"ignore_eos\":false,\"stream\":%s,",
                        (long long)max_tokens, (long long)max_tokens, stream ? "true" : "false");
    if (native)
        evbuffer_add_printf(o, "\"logit_bias\":[],");
    evbuffer_add_printf(o, "\"n_probs\":0,\"min_keep\":0,");
    if (native)
        evbuffer_add_printf(o, "\"grammar\":\"\",\"grammar_lazy\":false,\"grammar_triggers\":[],"
                               "\"preserved_tokens\":[],");
    evbuffer_add_printf(o,
                        "\"chat_format\":\"%s\",\"reasoning_format\":\"%s\","
                        "\"reasoning_in_content\":false,\"generation_prompt\":\"%s\",",
                        chat ? "peg-native" : "Content-only", props ? "none" : "deepseek",
                        chat ? "<|im_start|>assistant\\n" : "");
    evbuffer_add_printf(
        o, "\"samplers\":[\"penalties\",\"dry\",\"top_n_sigma\",\"top_k\",\"typ_p\",\"top_p\","
           "\"min_p\",\"xtc\",\"temperature\"],\"speculative.types\":\"none\","
           "\"timings_per_token\":false,\"post_sampling_probs\":false,\"backend_sampling\":false,"
           "\"lora\":[]}");
}

static void lc_usage(struct evbuffer *o, const struct sim_req *r)
{
    evbuffer_add_printf(o,
                        "\"usage\":{\"completion_tokens\":%lld,\"prompt_tokens\":%lld,"
                        "\"total_tokens\":%lld,\"prompt_tokens_details\":{\"cached_tokens\":0}}",
                        (long long)r->n_sent, (long long)r->prompt_tokens,
                        (long long)(r->n_sent + r->prompt_tokens));
}

/* "timings": per-token figures over n-1 intervals for predicted, as the
 * captures show (the first token comes out of prompt processing). */
static void lc_timings(struct evbuffer *o, const struct sim_req *r)
{
    double pms = sim_req_prompt_ms(r), dms = sim_req_predicted_ms(r);
    double pn = (double)r->prompt_tokens, dn = (double)(r->n_sent > 1 ? r->n_sent - 1 : 0);

    evbuffer_add_printf(o, "\"timings\":{\"cache_n\":0,\"prompt_n\":%lld,\"prompt_ms\":",
                        (long long)r->prompt_tokens);
    sim_json_num(o, pms);
    evbuffer_add_printf(o, ",\"prompt_per_token_ms\":");
    sim_json_num(o, pn > 0 ? pms / pn : 0.0);
    evbuffer_add_printf(o, ",\"prompt_per_second\":");
    sim_json_num(o, pms > 0 ? pn * 1000.0 / pms : 0.0);
    evbuffer_add_printf(o, ",\"predicted_n\":%lld,\"predicted_ms\":", (long long)r->n_sent);
    sim_json_num(o, dms);
    evbuffer_add_printf(o, ",\"predicted_per_token_ms\":");
    sim_json_num(o, dn > 0 ? dms / dn : 0.0);
    evbuffer_add_printf(o, ",\"predicted_per_second\":");
    sim_json_num(o, dn > 0 && dms > 0 ? dn * 1000.0 / dms : 0.0);
    evbuffer_add_printf(o, "}");
}

static unsigned long long lc_now_s(void)
{
    return (unsigned long long)(clk_wall_us() / 1000000);
}

static void lc_model(struct evbuffer *o, const struct sim_req *r)
{
    const char *m = r->srv->conf.model;

    sim_json_str(o, m, strlen(m));
}

/* The end of every chat chunk after "choices". */
static void lc_chat_tail(struct evbuffer *o, const struct sim_req *r)
{
    evbuffer_add_printf(o, ",\"created\":%llu,\"id\":\"%s\",\"model\":", lc_now_s(), r->id);
    lc_model(o, r);
    evbuffer_add_printf(o, ",\"system_fingerprint\":\"" LC_FINGERPRINT
                           "\",\"object\":\"chat.completion.chunk\"");
}

/* The end of every text_completion object after "choices", up to "object". */
static void lc_cmpl_mid(struct evbuffer *o, const struct sim_req *r)
{
    evbuffer_add_printf(o, ",\"created\":%llu,\"model\":", lc_now_s());
    lc_model(o, r);
    evbuffer_add_printf(o, ",\"system_fingerprint\":\"" LC_FINGERPRINT
                           "\",\"object\":\"text_completion\"");
}

/* The whole output text, rebuilt from the seed, as a JSON string. */
static void lc_full_text(struct evbuffer *o, const struct sim_req *r, bool *has_nl)
{
    struct evbuffer *t = evbuffer_new();

    *has_nl = false;
    if (t == NULL)
        return;
    sim_text_full(t, r, has_nl);
    sim_json_str(o, (const char *)evbuffer_pullup(t, -1), evbuffer_get_length(t));
    evbuffer_free(t);
}

/* The native /completion final object (stream: last event; else the body). */
static void lc_native_final(struct evbuffer *o, const struct sim_req *r)
{
    bool nl = false;
    int64_t cached = r->prompt_tokens + r->n_sent - 1;

    evbuffer_add_printf(o, "{\"index\":0,\"content\":");
    if (r->stream)
        evbuffer_add_printf(o, "\"\"");
    else
        lc_full_text(o, r, &nl);
    evbuffer_add_printf(o, ",\"tokens\":[],\"id_slot\":%d,\"stop\":true,\"model\":", r->slot);
    lc_model(o, r);
    evbuffer_add_printf(
        o, ",\"tokens_predicted\":%lld,\"tokens_evaluated\":%lld,\"generation_settings\":",
        (long long)r->n_sent, (long long)r->prompt_tokens);
    lc_params(o, true, false, r->max_tokens, r->stream, false);
    evbuffer_add_printf(o, ",\"prompt\":\"<s> ");
    if (r->prompt_json)
        evbuffer_add(o, r->prompt_json, r->prompt_json_len);
    evbuffer_add_printf(o,
                        "\",\"has_new_line\":%s,\"truncated\":false,\"stop_type\":\"limit\","
                        "\"stopping_word\":\"\",\"tokens_cached\":%lld,",
                        nl ? "true" : "false", (long long)(cached > 0 ? cached : 0));
    lc_timings(o, r);
    evbuffer_add_printf(o, "}");
}

/* The Responses and Messages layouts: llama.cpp's timings in
 * response.completed, "status":"completed" even when the limit cut it. */
static const struct sim_api_style lc_api_style = { lc_timings, false };

/* ---- flavor callbacks: generation ---- */

static void lc_stream_head(struct sim_req *r, struct evbuffer *out)
{
    lc_head(r->conn, out, 200, NULL, -1, NULL);
}

static void lc_stream_token(struct sim_req *r, struct evbuffer *o, int64_t i, struct span tok)
{
    int id;

    if (r->api != SIM_API_OWN) {
        sim_api_stream_token(o, r, i, tok);
        return;
    }
    switch (r->ep) {
    case SIM_EP_CHAT:
        if (i == 0) {
            /* The first chunk carries the role delta and the first token. */
            evbuffer_add_printf(o, "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,"
                                   "\"delta\":{\"role\":\"assistant\",\"content\":null}}]");
            lc_chat_tail(o, r);
            evbuffer_add_printf(o, "}\n\n");
        }
        evbuffer_add_printf(
            o, "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":");
        sim_json_str(o, tok.p, tok.len);
        evbuffer_add_printf(o, "}}]");
        lc_chat_tail(o, r);
        evbuffer_add_printf(o, "}\n\n");
        break;
    case SIM_EP_COMPLETIONS:
        evbuffer_add_printf(o, "data: {\"choices\":[{\"text\":");
        sim_json_str(o, tok.p, tok.len);
        evbuffer_add_printf(o, ",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]");
        lc_cmpl_mid(o, r);
        evbuffer_add_printf(o, ",\"id\":\"%s\"}\n\n", r->id);
        break;
    case SIM_EP_NATIVE:
        sim_text_token(&r->srv->conf, r->seed, i, &id);
        evbuffer_add_printf(o, "data: {\"index\":0,\"content\":");
        sim_json_str(o, tok.p, tok.len);
        evbuffer_add_printf(
            o,
            ",\"tokens\":[%d],\"stop\":false,\"id_slot\":-1,\"tokens_predicted\":%lld,"
            "\"tokens_evaluated\":%lld}\n\n",
            id, (long long)(i + 1), (long long)r->prompt_tokens);
        break;
    }
}

static void lc_stream_end(struct sim_req *r)
{
    struct evbuffer *o = evbuffer_new();

    if (o == NULL)
        return;
    if (r->api != SIM_API_OWN) {
        /* all the closing events in one chunk; no [DONE] */
        sim_api_stream_end(o, r, &lc_api_style);
        sim_conn_chunk(r->conn, o);
        evbuffer_free(o);
        return;
    }
    switch (r->ep) {
    case SIM_EP_CHAT:
        evbuffer_add_printf(
            o, "data: {\"choices\":[{\"finish_reason\":\"length\",\"index\":0,\"delta\":{}}]");
        lc_chat_tail(o, r);
        if (!r->include_usage) {
            evbuffer_add_printf(o, ",");
            lc_timings(o, r);
        }
        evbuffer_add_printf(o, "}\n\n");
        if (r->include_usage) {
            evbuffer_add_printf(o, "data: {\"choices\":[]");
            lc_chat_tail(o, r);
            evbuffer_add_printf(o, ",");
            lc_usage(o, r);
            evbuffer_add_printf(o, ",");
            lc_timings(o, r);
            evbuffer_add_printf(o, "}\n\n");
        }
        sim_conn_chunk(r->conn, o);
        evbuffer_add_printf(o, "data: [DONE]\n\n");
        sim_conn_chunk(r->conn, o);
        break;
    case SIM_EP_COMPLETIONS:
        /* usage and timings always here, whatever include_usage says */
        evbuffer_add_printf(o, "data: {\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,"
                               "\"finish_reason\":\"length\"}]");
        lc_cmpl_mid(o, r);
        evbuffer_add_printf(o, ",");
        lc_usage(o, r);
        evbuffer_add_printf(o, ",\"id\":\"%s\",", r->id);
        lc_timings(o, r);
        evbuffer_add_printf(o, "}\n\n");
        sim_conn_chunk(r->conn, o);
        evbuffer_add_printf(o, "data: [DONE]\n\n");
        sim_conn_chunk(r->conn, o);
        break;
    case SIM_EP_NATIVE:
        /* no [DONE] on the native route */
        evbuffer_add_printf(o, "data: ");
        lc_native_final(o, r);
        evbuffer_add_printf(o, "\n\n");
        sim_conn_chunk(r->conn, o);
        break;
    }
    evbuffer_free(o);
}

static void lc_body_end(struct sim_req *r)
{
    struct evbuffer *o = evbuffer_new();
    bool nl;

    if (o == NULL) {
        sim_conn_close_after_flush(r->conn);
        return;
    }
    if (r->api != SIM_API_OWN) {
        sim_api_body(o, r, &lc_api_style);
        lc_reply(r->conn, 200, LC_JSON_TYPE, o, NULL);
        evbuffer_free(o);
        return;
    }
    switch (r->ep) {
    case SIM_EP_CHAT:
        evbuffer_add_printf(o, "{\"choices\":[{\"finish_reason\":\"length\",\"index\":0,"
                               "\"message\":{\"role\":\"assistant\",\"content\":");
        lc_full_text(o, r, &nl);
        evbuffer_add_printf(o, "}}],\"created\":%llu,\"model\":", lc_now_s());
        lc_model(o, r);
        evbuffer_add_printf(o, ",\"system_fingerprint\":\"" LC_FINGERPRINT
                               "\",\"object\":\"chat.completion\",");
        lc_usage(o, r);
        evbuffer_add_printf(o, ",\"id\":\"%s\",", r->id);
        lc_timings(o, r);
        evbuffer_add_printf(o, "}");
        break;
    case SIM_EP_COMPLETIONS:
        evbuffer_add_printf(o, "{\"choices\":[{\"text\":");
        lc_full_text(o, r, &nl);
        evbuffer_add_printf(o, ",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"}]");
        lc_cmpl_mid(o, r);
        evbuffer_add_printf(o, ",");
        lc_usage(o, r);
        evbuffer_add_printf(o, ",\"id\":\"%s\",", r->id);
        lc_timings(o, r);
        evbuffer_add_printf(o, "}");
        break;
    case SIM_EP_NATIVE: lc_native_final(o, r); break;
    }
    lc_reply(r->conn, 200, LC_JSON_TYPE, o, NULL);
    evbuffer_free(o);
}

/* ---- routes ---- */

/* 400 exceed_context_size_error: the prompt does not fit a slot. */
static void lc_context_error(struct sim_conn *c, int64_t prompt_tokens)
{
    const struct sim_conf *cf = &sim_conn_srv(c)->conf;
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add_printf(b,
                        "{\"error\":{\"code\":400,\"message\":\"request (%lld tokens) exceeds the "
                        "available context size (%lld tokens), try increasing it\","
                        "\"type\":\"exceed_context_size_error\",\"n_prompt_tokens\":%lld,"
                        "\"n_ctx\":%lld}}",
                        (long long)prompt_tokens, (long long)cf->ctx_tokens,
                        (long long)prompt_tokens, (long long)cf->ctx_tokens);
    lc_reply(c, 400, LC_JSON_TYPE, b, NULL);
    evbuffer_free(b);
}

/* POST /v1/chat/completions, /v1/completions, /completion. Checks in
 * llama-server's order, then hands the request to the scheduler. */
static void lc_generate(struct sim_conn *c, const struct sim_http *h, enum sim_ep ep)
{
    struct sim_srv *s = sim_conn_srv(c);
    const struct sim_conf *cf = &s->conf;
    struct sim_json *j;
    struct sim_req *r;
    char msg[256];
    size_t bytes;
    int64_t prompt_tokens, max_tokens = -1;
    int v, so;

    s->stats.requests++;
    if (cf->fail_status) {
        lc_error(c, cf->fail_status, "simulated failure (pitot-sim --fail-status)");
        return;
    }
    j = sim_json_parse(h->body, msg, sizeof(msg));
    if (j == NULL) {
        lc_error(c, 500, msg);
        return;
    }
    if (ep == SIM_EP_CHAT) {
        v = sim_json_find(j, 0, "messages");
        if (v < 0) {
            sim_json_free(j);
            lc_error(c, 400, "'messages' is required");
            return;
        }
        if (sim_json_type(j, v) != SIM_JSON_ARRAY) {
            sim_json_free(j);
            lc_error(c, 400, "Expected 'messages' to be an array");
            return;
        }
        bytes = sim_json_messages_bytes(j, v);
    } else {
        v = sim_json_find(j, 0, "prompt");
        if (v < 0) {
            sim_json_free(j);
            lc_error(c, 400, "'prompt' is required");
            return;
        }
        bytes = sim_json_prompt_bytes(j, v);
    }
    prompt_tokens = (int64_t)((bytes + 3) / 4);
    if (prompt_tokens >= cf->ctx_tokens) {
        sim_json_free(j);
        lc_context_error(c, prompt_tokens);
        return;
    }
    if (ep == SIM_EP_NATIVE) {
        if (!sim_json_int(j, sim_json_find(j, 0, "n_predict"), &max_tokens))
            sim_json_int(j, sim_json_find(j, 0, "max_tokens"), &max_tokens);
    } else {
        if (!sim_json_int(j, sim_json_find(j, 0, "max_completion_tokens"), &max_tokens) &&
            !sim_json_int(j, sim_json_find(j, 0, "max_tokens"), &max_tokens))
            sim_json_int(j, sim_json_find(j, 0, "n_predict"), &max_tokens);
    }
    r = sim_req_new(s, c);
    if (r == NULL) {
        sim_json_free(j);
        lc_error(c, 500, "out of memory");
        return;
    }
    r->ep = ep;
    r->stream = sim_json_true(j, sim_json_find(j, 0, "stream"));
    so = sim_json_find(j, 0, "stream_options");
    r->include_usage = sim_json_true(j, sim_json_find(j, so, "include_usage"));
    r->prompt_tokens = prompt_tokens;
    r->max_tokens = max_tokens < 0 ? -1 : max_tokens;
    /* No EOS ever: max_tokens, or the rest of the slot's context. */
    r->n_max = cf->ctx_tokens - prompt_tokens;
    if (max_tokens >= 0 && max_tokens < r->n_max)
        r->n_max = max_tokens;
    if (r->n_max < 1)
        r->n_max = 1;
    if (ep == SIM_EP_NATIVE && sim_json_type(j, v) == SIM_JSON_STRING) {
        struct span t = sim_json_text(j, v);
        r->prompt_json = malloc(t.len + 1);
        if (r->prompt_json) {
            memcpy(r->prompt_json, t.p, t.len);
            r->prompt_json_len = t.len;
        }
    }
    sim_json_free(j);
    sim_conn_attach(c, r);
    sim_sched_submit(r);
}

static void lc_chat(struct sim_conn *c, const struct sim_http *h)
{
    lc_generate(c, h, SIM_EP_CHAT);
}

static void lc_completions(struct sim_conn *c, const struct sim_http *h)
{
    lc_generate(c, h, SIM_EP_COMPLETIONS);
}

static void lc_native(struct sim_conn *c, const struct sim_http *h)
{
    lc_generate(c, h, SIM_EP_NATIVE);
}

/* POST /v1/responses, /v1/messages: chat requests answered in those APIs'
 * layouts (sim_apis.c); any model name is accepted and answered with
 * --model, as llama-server does. An invalid body is llama-server's 500. */
static void lc_api(struct sim_conn *c, const struct sim_http *h, enum sim_api api)
{
    struct sim_srv *s = sim_conn_srv(c);
    struct sim_gen g;
    struct sim_req *r;
    char msg[256], emsg[128];

    s->stats.requests++;
    if (s->conf.fail_status) {
        lc_error(c, s->conf.fail_status, "simulated failure (pitot-sim --fail-status)");
        return;
    }
    switch (sim_api_parse(s, h->body, api, &g, msg, sizeof(msg))) {
    case SIM_GEN_OK: break;
    case SIM_GEN_EJSON: lc_error(c, 500, msg); return;
    case SIM_GEN_ENOTOBJ:
    case SIM_GEN_EMISSING:
        snprintf(emsg, sizeof(emsg), "'%s' is required", sim_api_field(api));
        lc_error(c, 400, emsg);
        return;
    case SIM_GEN_ETYPE:
        snprintf(emsg, sizeof(emsg), "Expected '%s' to be %s", sim_api_field(api),
                 api == SIM_API_RESPONSES ? "a string or an array" : "an array");
        lc_error(c, 400, emsg);
        return;
    case SIM_GEN_ECONTEXT:
        /* llama-server refuses only a prompt that does not fit; a larger
         * limit is cut by the context */
        if (g.prompt_tokens >= s->conf.ctx_tokens) {
            lc_context_error(c, g.prompt_tokens);
            return;
        }
        break;
    }
    r = sim_gen_new(c, &g);
    if (r == NULL) {
        lc_error(c, 500, "out of memory");
        return;
    }
    if (api == SIM_API_RESPONSES) {
        /* "resp_" + 32 alphanumerics; Messages keep the chatcmpl- id */
        memcpy(r->id, "resp_", 5);
        sim_rng_alnum(r->seed, r->id + 5, 32);
        r->id[37] = '\0';
    }
    sim_gen_submit(r);
}

static void lc_responses(struct sim_conn *c, const struct sim_http *h)
{
    lc_api(c, h, SIM_API_RESPONSES);
}

static void lc_messages(struct sim_conn *c, const struct sim_http *h)
{
    lc_api(c, h, SIM_API_MESSAGES);
}

/* POST /v1/messages/count_tokens: the prompt estimate a generation would use. */
static void lc_count_tokens(struct sim_conn *c, const struct sim_http *h)
{
    struct sim_gen g;
    struct evbuffer *b;
    char msg[256];

    switch (sim_api_parse(sim_conn_srv(c), h->body, SIM_API_MESSAGES, &g, msg, sizeof(msg))) {
    case SIM_GEN_OK:
    case SIM_GEN_ECONTEXT: break;
    case SIM_GEN_EJSON: lc_error(c, 500, msg); return;
    case SIM_GEN_ENOTOBJ:
    case SIM_GEN_EMISSING: lc_error(c, 400, "'messages' is required"); return;
    case SIM_GEN_ETYPE: lc_error(c, 400, "Expected 'messages' to be an array"); return;
    }
    b = evbuffer_new();
    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    sim_api_count_body(b, &g);
    lc_reply(c, 200, LC_JSON_TYPE, b, NULL);
    evbuffer_free(b);
}

static void lc_health(struct sim_conn *c, const struct sim_http *h)
{
    (void)h;
    lc_reply_str(c, 200, "{\"status\":\"ok\"}");
}

/*  X(name, type, help, value) over const struct sim_counters *k. */
#define LC_METRICS(X)                                                                              \
    X(prompt_tokens_total, counter, "Number of prompt tokens processed, excluding cached tokens",  \
      (double)k->prompt_tokens)                                                                    \
    X(prompt_tokens_cached_total, counter, "Number of prompt tokens reused from the cache", 0.0)   \
    X(prompt_seconds_total, counter, "Total time spent processing prompts",                        \
      (double)k->prompt_us / 1e6)                                                                  \
    X(tokens_predicted_total, counter, "Number of generation tokens processed",                    \
      (double)k->predicted_tokens)                                                                 \
    X(tokens_predicted_seconds_total, counter, "Total time spent generating tokens",               \
      (double)k->predicted_us / 1e6)                                                               \
    X(n_decode_total, counter,                                                                     \
      "Total number of llama_decode() calls, excluding speculative decoding and multimodal "       \
      "decoding",                                                                                  \
      (double)k->n_decode)                                                                         \
    X(n_tokens_max, counter, "Largest observed sequence length (prompt + generation)",             \
      (double)k->n_tokens_max)                                                                     \
    X(spec_decode_num_draft_tokens_total, counter, "Speculative: Total draft tokens generated",    \
      0.0)                                                                                         \
    X(spec_decode_num_accepted_tokens_total, counter,                                              \
      "Speculative: Total draft tokens accepted by the target model", 0.0)                         \
    X(spec_decode_num_drafts_total, counter,                                                       \
      "Speculative: Total speculative decoding verification steps", 0.0)                           \
    X(prompt_tokens_seconds, gauge, "Average prompt throughput in tokens/s",                       \
      k->bucket_prompt_us ? (double)k->bucket_prompt_tokens * 1e6 / (double)k->bucket_prompt_us    \
                          : 0.0)                                                                   \
    X(predicted_tokens_seconds, gauge, "Average generation throughput in tokens/s",                \
      k->bucket_predicted_us                                                                       \
          ? (double)k->bucket_predicted_tokens * 1e6 / (double)k->bucket_predicted_us              \
          : 0.0)                                                                                   \
    X(requests_processing, gauge, "Number of requests processing", (double)s->busy)                \
    X(requests_deferred, gauge, "Number of requests deferred", (double)s->queued)                  \
    X(n_busy_slots_per_decode, gauge, "Average number of busy slots per llama_decode() call",      \
      k->n_decode ? (double)k->busy_sum / (double)k->n_decode : 0.0)

static void lc_metrics(struct sim_conn *c, const struct sim_http *h)
{
    struct sim_srv *s = sim_conn_srv(c);
    struct sim_counters *k = &s->ctr;
    struct evbuffer *b = evbuffer_new();
    char extra[64];

    (void)h;
    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    /* %g: six significant digits, as llama-server's iostream prints them. */
#define LC_METRIC_ROW(name, type, help, value)                                                     \
    evbuffer_add_printf(b,                                                                         \
                        "# HELP llamacpp:" #name " " help "\n# TYPE llamacpp:" #name " " #type     \
                        "\nllamacpp:" #name " %g\n",                                               \
                        (value));
    LC_METRICS(LC_METRIC_ROW)
#undef LC_METRIC_ROW
    /* The two throughput gauges cover the time since the previous scrape. */
    k->bucket_prompt_tokens = k->bucket_prompt_us = 0;
    k->bucket_predicted_tokens = k->bucket_predicted_us = 0;
    /* llama-server puts ggml_time_us() at start here: monotonic, not Unix. */
    snprintf(extra, sizeof(extra), "Process-Start-Time-Unix: %llu\r\n",
             (unsigned long long)s->start_us);
    lc_reply(c, 200, "text/plain; version=0.0.4", b, extra);
    evbuffer_free(b);
}

static void lc_slot(struct evbuffer *o, const struct sim_srv *s, int i)
{
    const struct sim_slot *sl = &s->slots[i];
    const struct sim_req *r = sl->req;
    int64_t decoded = r ? r->n_sent : sl->n_decoded;
    int64_t remain = sl->max_tokens >= 0 ? sl->max_tokens - decoded : -1;

    evbuffer_add_printf(o, "{\"id\":%d,\"n_ctx\":%lld,\"speculative\":false,\"is_processing\":%s",
                        i, (long long)s->conf.ctx_tokens, r ? "true" : "false");
    if (!sl->used) {
        evbuffer_add_printf(o, "}");
        return;
    }
    evbuffer_add_printf(
        o,
        ",\"id_task\":%llu,\"n_prompt_tokens\":%lld,\"n_prompt_tokens_processed\":%lld,"
        "\"n_prompt_tokens_cache\":0,\"params\":",
        (unsigned long long)sl->id_task, (long long)sl->n_prompt,
        (long long)(r && r->state == SIM_REQ_PREFILL ? 0 : sl->n_prompt));
    lc_params(o, false, sl->ep == SIM_EP_CHAT, sl->max_tokens, sl->stream, false);
    evbuffer_add_printf(o,
                        ",\"next_token\":[{\"has_next_token\":%s,\"has_new_line\":false,"
                        "\"n_remain\":%lld,\"n_decoded\":%lld}]}",
                        r ? "true" : "false", (long long)remain, (long long)decoded);
}

static void lc_slots(struct sim_conn *c, const struct sim_http *h)
{
    struct sim_srv *s = sim_conn_srv(c);
    struct evbuffer *b;
    int i;

    if (memmem(h->query.p, h->query.len, "fail_on_no_slot=1", 17) && s->busy >= s->conf.slots) {
        lc_reply_str(c, 503,
                     "{\"error\":{\"code\":503,\"message\":\"no slot available\","
                     "\"type\":\"unavailable_error\"}}");
        return;
    }
    b = evbuffer_new();
    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add(b, "[", 1);
    for (i = 0; i < s->conf.slots; i++) {
        if (i)
            evbuffer_add(b, ",", 1);
        lc_slot(b, s, i);
    }
    evbuffer_add(b, "]", 1);
    lc_reply(c, 200, LC_JSON_TYPE, b, NULL);
    evbuffer_free(b);
}

static void lc_props(struct sim_conn *c, const struct sim_http *h)
{
    struct sim_srv *s = sim_conn_srv(c);
    struct evbuffer *b = evbuffer_new();
    const char *m = s->conf.model;

    (void)h;
    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add_printf(b, "{\"default_generation_settings\":{\"params\":");
    lc_params(b, false, false, -1, false, true);
    evbuffer_add_printf(b, ",\"n_ctx\":%lld},\"total_slots\":%d,\"model_alias\":",
                        (long long)s->conf.ctx_tokens, s->conf.slots);
    sim_json_str(b, m, strlen(m));
    evbuffer_add_printf(b, ",\"model_ftype\":\"F16\",\"model_path\":\"/models/");
    {
        /* the name inside a JSON string: escape, then drop the quotes */
        struct evbuffer *t = evbuffer_new();
        if (t) {
            sim_json_str(t, m, strlen(m));
            evbuffer_add(b, (const char *)evbuffer_pullup(t, -1) + 1, evbuffer_get_length(t) - 2);
            evbuffer_free(t);
        }
    }
    evbuffer_add_printf(
        b, ".gguf\",\"modalities\":{\"vision\":false,\"video\":false,\"audio\":false},"
           "\"media_marker\":\"<__media_pitotsim__>\",\"endpoint_slots\":true,\"endpoint_props\":"
           "false,"
           "\"endpoint_metrics\":true,\"ui\":false,\"ui_settings\":{},"
           "\"chat_template\":\"{%%- for message in messages -%%}\\n  {{- '<|im_start|>' + "
           "message.role + "
           "'\\n' + message.content + '<|im_end|>\\n' -}}\\n{%%- endfor -%%}\\n{%%- if "
           "add_generation_prompt "
           "-%%}\\n  {{- '<|im_start|>assistant\\n' -}}\\n{%%- endif -%%}\","
           "\"chat_template_caps\":{\"supports_object_arguments\":false,\"supports_parallel_tool_"
           "calls\":false,"
           "\"supports_preserve_reasoning\":false,\"supports_reasoning_effort\":false,"
           "\"supports_string_content\":true,\"supports_system_role\":true,\"supports_tool_calls\":"
           "false,"
           "\"supports_tools\":false,\"supports_typed_content\":false},\"bos_token\":\"<s>\","
           "\"eos_token\":\"</s>\",\"build_info\":\"" LC_FINGERPRINT "\",\"is_sleeping\":false,"
           "\"cors_proxy_enabled\":false}");
    lc_reply(c, 200, LC_JSON_TYPE, b, NULL);
    evbuffer_free(b);
}

static void lc_models(struct sim_conn *c, const struct sim_http *h)
{
    struct sim_srv *s = sim_conn_srv(c);
    struct evbuffer *b = evbuffer_new();
    const char *m = s->conf.model;
    size_t ml = strlen(m);

    (void)h;
    if (b == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    evbuffer_add_printf(b, "{\"models\":[{\"name\":");
    sim_json_str(b, m, ml);
    evbuffer_add_printf(b, ",\"model\":");
    sim_json_str(b, m, ml);
    evbuffer_add_printf(
        b, ",\"modified_at\":\"\",\"size\":\"\",\"digest\":\"\",\"type\":\"model\","
           "\"description\":\"\",\"tags\":[\"\"],\"capabilities\":[\"completion\"],"
           "\"parameters\":\"\",\"details\":{\"parent_model\":\"\",\"format\":\"gguf\","
           "\"family\":\"\",\"families\":[\"\"],\"parameter_size\":\"\","
           "\"quantization_level\":\"\"}}],\"object\":\"list\",\"data\":[{\"id\":");
    sim_json_str(b, m, ml);
    evbuffer_add_printf(b, ",\"aliases\":[");
    sim_json_str(b, m, ml);
    evbuffer_add_printf(
        b,
        "],\"tags\":[],\"object\":\"model\",\"created\":%llu,\"owned_by\":\"llamacpp\","
        "\"meta\":{\"vocab_type\":true,\"n_vocab\":32000,\"n_ctx\":%lld,"
        "\"n_ctx_train\":4096,\"n_embd\":1024,\"n_params\":425255936,"
        "\"size\":850628608,\"ftype\":\"F16\"}}]}",
        (unsigned long long)s->start_wall_s, (long long)s->conf.ctx_tokens);
    lc_reply(c, 200, LC_JSON_TYPE, b, NULL);
    evbuffer_free(b);
}

static const struct lc_route {
    const char *method;
    const char *path;
    void (*fn)(struct sim_conn *c, const struct sim_http *h);
} lc_routes[] = {
    { "GET", "/health", lc_health },
    { "GET", "/v1/health", lc_health },
    { "GET", "/metrics", lc_metrics },
    { "GET", "/slots", lc_slots },
    { "GET", "/props", lc_props },
    { "GET", "/models", lc_models },
    { "GET", "/v1/models", lc_models },
    { "POST", "/v1/chat/completions", lc_chat },
    { "POST", "/chat/completions", lc_chat },
    { "POST", "/v1/completions", lc_completions },
    { "POST", "/completions", lc_completions },
    { "POST", "/completion", lc_native },
    { "POST", "/v1/responses", lc_responses },
    { "POST", "/v1/messages", lc_messages },
    { "POST", "/v1/messages/count_tokens", lc_count_tokens },
};

static bool lc_is_generation(const struct sim_http *h)
{
    size_t i;

    for (i = 0; i < sizeof(lc_routes) / sizeof(lc_routes[0]); i++)
        if (span_eq(h->path, lc_routes[i].path) && span_eq(h->method, lc_routes[i].method))
            return lc_routes[i].fn == lc_chat || lc_routes[i].fn == lc_completions ||
                   lc_routes[i].fn == lc_native || lc_routes[i].fn == lc_responses ||
                   lc_routes[i].fn == lc_messages;
    return false;
}

/* Unknown routes and wrong methods alike: 404, as llama-server answers. */
static void lc_route(struct sim_conn *c, const struct sim_http *h)
{
    size_t i;

    for (i = 0; i < sizeof(lc_routes) / sizeof(lc_routes[0]); i++) {
        if (span_eq(h->path, lc_routes[i].path) && span_eq(h->method, lc_routes[i].method)) {
            lc_routes[i].fn(c, h);
            return;
        }
    }
    lc_not_found(c);
}

const struct sim_flavor sim_flavor_llamacpp = {
    .name = "llamacpp",
    .default_model = "small",
    .ping_ms = 30000,
    .keepalive_max = 100,
    /* llama-server closes after every stream although it said Keep-Alive. */
    .close_after_stream = true,
    .route = lc_route,
    .loading = lc_loading,
    .stream_head = lc_stream_head,
    .stream_token = lc_stream_token,
    .stream_end = lc_stream_end,
    .body_end = lc_body_end,
};
