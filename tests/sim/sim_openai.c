/* sim_openai: what the OpenAI-compatible servers share: parsing a
 * /v1/chat/completions or /v1/completions body into a request, and the chunk
 * and body layout vLLM writes (vllm/entrypoints/openai/chat_completion, as in
 * the .sse samples in tests/fixtures/vllm), which the SGLang flavor reuses. */
#include "sim.h"

#include <stdio.h>
#include <string.h>

#include "pitot/util/err.h"

enum sim_gen_err sim_gen_open(struct span body, const char *field, struct sim_gen *g,
                              struct sim_json **jo, int *vo, char *msg, size_t cap)
{
    struct sim_json *j = sim_json_parse(body, msg, cap);

    memset(g, 0, sizeof(*g));
    g->max_tokens = -1;
    *jo = NULL;
    if (j == NULL)
        return SIM_GEN_EJSON;
    if (sim_json_type(j, 0) != SIM_JSON_OBJECT) {
        sim_json_free(j);
        return SIM_GEN_ENOTOBJ;
    }
    *vo = sim_json_find(j, 0, field);
    if (*vo < 0) {
        sim_json_free(j);
        return SIM_GEN_EMISSING;
    }
    *jo = j;
    return SIM_GEN_OK;
}

enum sim_gen_err sim_gen_close(const struct sim_srv *s, struct sim_json *j, struct sim_gen *g,
                               size_t prompt_bytes, enum sim_gen_err rc)
{
    if (rc == SIM_GEN_OK) {
        g->prompt_tokens = (int64_t)((prompt_bytes + 3) / 4);
        if (g->max_tokens < 0)
            g->max_tokens = -1;
        g->stream = sim_json_true(j, sim_json_find(j, 0, "stream"));
        if (g->prompt_tokens >= s->conf.ctx_tokens ||
            (g->max_tokens > 0 && g->prompt_tokens + g->max_tokens > s->conf.ctx_tokens))
            rc = SIM_GEN_ECONTEXT;
    }
    sim_json_free(j);
    return rc;
}

enum sim_gen_err sim_gen_parse(const struct sim_srv *s, struct span body, enum sim_ep ep,
                               struct sim_gen *g, char *msg, size_t cap)
{
    struct sim_json *j;
    int v;
    enum sim_gen_err rc =
        sim_gen_open(body, ep == SIM_EP_CHAT ? "messages" : "prompt", g, &j, &v, msg, cap);

    g->ep = ep;
    if (rc != SIM_GEN_OK)
        return rc;
    if (ep == SIM_EP_CHAT && sim_json_type(j, v) != SIM_JSON_ARRAY)
        return sim_gen_close(s, j, g, 0, SIM_GEN_ETYPE);
    if (!sim_json_int(j, sim_json_find(j, 0, "max_completion_tokens"), &g->max_tokens))
        sim_json_int(j, sim_json_find(j, 0, "max_tokens"), &g->max_tokens);
    g->include_usage =
        sim_json_true(j, sim_json_find(j, sim_json_find(j, 0, "stream_options"), "include_usage"));
    return sim_gen_close(
        s, j, g, ep == SIM_EP_CHAT ? sim_json_messages_bytes(j, v) : sim_json_prompt_bytes(j, v),
        SIM_GEN_OK);
}

struct sim_req *sim_gen_new(struct sim_conn *c, const struct sim_gen *g)
{
    struct sim_srv *s = sim_conn_srv(c);
    struct sim_req *r = sim_req_new(s, c);

    if (r == NULL)
        return NULL;
    r->ep = g->ep;
    r->api = g->api;
    r->stream = g->stream;
    r->include_usage = g->include_usage;
    r->prompt_tokens = g->prompt_tokens;
    r->max_tokens = g->max_tokens;
    /* No EOS ever: max_tokens, or the rest of the context. */
    r->n_max = s->conf.ctx_tokens - g->prompt_tokens;
    if (g->max_tokens >= 0 && g->max_tokens < r->n_max)
        r->n_max = g->max_tokens;
    if (r->n_max < 1)
        r->n_max = 1;
    return r;
}

void sim_gen_submit(struct sim_req *r)
{
    sim_conn_attach(r->conn, r);
    sim_sched_submit(r);
}

/* ---- uvicorn ---- */

void sim_uvicorn_head(struct sim_conn *c, struct evbuffer *out, int status, const char *ctype,
                      long long clen)
{
    char date[64];

    sim_http_date(date, sizeof(date));
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\ndate: %s\r\nserver: uvicorn\r\n", status,
                        err_reason_phrase(status), date);
    if (clen < 0)
        evbuffer_add_printf(out, "content-type: text/event-stream; charset=utf-8\r\n"
                                 "transfer-encoding: chunked\r\n");
    else if (ctype)
        evbuffer_add_printf(out, "content-length: %lld\r\ncontent-type: %s\r\n", clen, ctype);
    else
        evbuffer_add_printf(out, "content-length: %lld\r\n", clen);
    if (sim_conn_announce_close(c))
        evbuffer_add_printf(out, "connection: close\r\n");
    evbuffer_add(out, "\r\n", 2);
}

void sim_uvicorn_reply(struct sim_conn *c, int status, const char *ctype, struct evbuffer *body)
{
    struct evbuffer *resp = evbuffer_new();

    if (resp == NULL) {
        sim_conn_close_after_flush(c);
        return;
    }
    sim_uvicorn_head(c, resp, status, ctype, body ? (long long)evbuffer_get_length(body) : 0);
    if (body)
        evbuffer_add_buffer(resp, body);
    sim_conn_respond(c, resp, status, false);
    evbuffer_free(resp);
}

/* ---- the vLLM layout ---- */

/* {"id":..,"object":..,"created":..,"model":.., up to "choices". */
static void oai_head(struct evbuffer *o, const struct sim_req *r, const char *object)
{
    const char *m = r->srv->conf.model;

    evbuffer_add_printf(o, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%llu,\"model\":", r->id,
                        object, (unsigned long long)r->created_s);
    sim_json_str(o, m, strlen(m));
}

static void oai_fingerprint(struct evbuffer *o, const struct sim_oai *st)
{
    if (st->fingerprint)
        evbuffer_add_printf(o, ",\"system_fingerprint\":\"%s\"", st->fingerprint);
}

/* vLLM's UsageInfo field order; details only in whole responses. */
static void oai_usage(struct evbuffer *o, const struct sim_req *r, bool details)
{
    evbuffer_add_printf(
        o, "\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld,\"completion_tokens\":%lld%s}",
        (long long)r->prompt_tokens, (long long)(r->prompt_tokens + r->n_sent),
        (long long)r->n_sent, details ? ",\"prompt_tokens_details\":null" : "");
}

void sim_oai_chat_role(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st)
{
    (void)st;
    evbuffer_add_printf(o, "data: ");
    oai_head(o, r, "chat.completion.chunk");
    evbuffer_add_printf(
        o, ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
           "\"logprobs\":null,\"finish_reason\":null}],\"prompt_token_ids\":null,"
           "\"prompt_text\":null}\n\n");
}

void sim_oai_chat_token(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st,
                        int64_t i, struct span tok)
{
    bool last = i + 1 >= r->n_max;

    evbuffer_add_printf(o, "data: ");
    oai_head(o, r, "chat.completion.chunk");
    evbuffer_add_printf(o, ",\"choices\":[{\"index\":0,\"delta\":{\"content\":");
    sim_json_str(o, tok.p, tok.len);
    /* The token that ends the request carries the finish reason; without a
     * usage chunk to follow, the fingerprint too. */
    if (last)
        evbuffer_add_printf(o,
                            "},\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null,"
                            "\"token_ids\":null}]");
    else
        evbuffer_add_printf(o, "},\"logprobs\":null,\"finish_reason\":null,\"token_ids\":null}]");
    if (last && !r->include_usage)
        oai_fingerprint(o, st);
    evbuffer_add_printf(o, "}\n\n");
}

void sim_oai_cmpl_token(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st,
                        int64_t i, struct span tok)
{
    bool last = i + 1 >= r->n_max;

    (void)st;
    evbuffer_add_printf(o, "data: ");
    oai_head(o, r, "text_completion");
    evbuffer_add_printf(o, ",\"choices\":[{\"index\":0,\"text\":");
    sim_json_str(o, tok.p, tok.len);
    evbuffer_add_printf(o, ",\"logprobs\":null,\"finish_reason\":%s,\"stop_reason\":null}]}\n\n",
                        last ? "\"length\"" : "null");
}

void sim_oai_usage_chunk(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st)
{
    if (!r->include_usage)
        return;
    evbuffer_add_printf(o, "data: ");
    oai_head(o, r, r->ep == SIM_EP_CHAT ? "chat.completion.chunk" : "text_completion");
    evbuffer_add_printf(o, ",\"choices\":[],");
    oai_usage(o, r, false);
    oai_fingerprint(o, st);
    evbuffer_add_printf(o, "}\n\n");
}

/* The whole output as a JSON string. */
static void oai_text(struct evbuffer *o, const struct sim_req *r)
{
    struct evbuffer *t = evbuffer_new();
    bool nl;

    if (t == NULL) {
        evbuffer_add(o, "\"\"", 2);
        return;
    }
    sim_text_full(t, r, &nl);
    sim_json_str(o, (const char *)evbuffer_pullup(t, -1), evbuffer_get_length(t));
    evbuffer_free(t);
}

void sim_oai_chat_body(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st)
{
    oai_head(o, r, "chat.completion");
    evbuffer_add_printf(
        o, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    oai_text(o, r);
    evbuffer_add_printf(
        o, ",\"refusal\":null,\"annotations\":null,\"audio\":null,\"function_call\":null,"
           "\"tool_calls\":[],\"reasoning_content\":null},\"logprobs\":null,"
           "\"finish_reason\":\"length\",\"stop_reason\":null,\"token_ids\":null}],"
           "\"service_tier\":null");
    if (st->fingerprint)
        oai_fingerprint(o, st);
    else
        evbuffer_add_printf(o, ",\"system_fingerprint\":null");
    evbuffer_add_printf(o, ",");
    oai_usage(o, r, true);
    evbuffer_add_printf(
        o, ",\"prompt_logprobs\":null,\"prompt_token_ids\":null,\"kv_transfer_params\":null}");
}

void sim_oai_cmpl_body(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st)
{
    (void)st;
    oai_head(o, r, "text_completion");
    evbuffer_add_printf(o, ",\"choices\":[{\"index\":0,\"text\":");
    oai_text(o, r);
    evbuffer_add_printf(
        o, ",\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null,"
           "\"prompt_logprobs\":null}],\"service_tier\":null,\"system_fingerprint\":null,");
    oai_usage(o, r, true);
    evbuffer_add_printf(o, ",\"kv_transfer_params\":null}");
}
