/* sim_apis: the OpenAI Responses API (/v1/responses) and the Anthropic Messages
 * API (/v1/messages, /v1/messages/count_tokens) as llama-server writes them
 * (tests/fixtures/llama.cpp/apis): events, key order, ids. The llamacpp and
 * vllm flavors answer in these layouts, each with its own heads. */
#include "sim.h"

#include <string.h>

#include "pitot/util/clock.h"

#define API_ITEM_ID_LEN 36 /* "msg_" + 32 alphanumerics */

const char *sim_api_field(enum sim_api api)
{
    return api == SIM_API_RESPONSES ? "input" : "messages";
}

enum sim_gen_err sim_api_parse(const struct sim_srv *s, struct span body, enum sim_api api,
                               struct sim_gen *g, char *msg, size_t cap)
{
    struct sim_json *j;
    size_t bytes = 0;
    int v;
    enum sim_gen_err rc = sim_gen_open(body, sim_api_field(api), g, &j, &v, msg, cap);

    g->ep = SIM_EP_CHAT;
    g->api = api;
    if (rc != SIM_GEN_OK)
        return rc;
    if (api == SIM_API_RESPONSES) {
        /* input: a string, or an array of messages (content string or parts) */
        if (sim_json_type(j, v) == SIM_JSON_STRING)
            bytes = sim_json_content_bytes(j, v);
        else if (sim_json_type(j, v) == SIM_JSON_ARRAY)
            bytes = sim_json_messages_bytes(j, v);
        else
            rc = SIM_GEN_ETYPE;
        /* instructions: the system message of a chat request */
        bytes += sim_json_content_bytes(j, sim_json_find(j, 0, "instructions"));
        sim_json_int(j, sim_json_find(j, 0, "max_output_tokens"), &g->max_tokens);
    } else {
        if (sim_json_type(j, v) != SIM_JSON_ARRAY)
            rc = SIM_GEN_ETYPE;
        /* system: a string or text blocks, the chat request's system message */
        bytes = sim_json_messages_bytes(j, v) +
                sim_json_content_bytes(j, sim_json_find(j, 0, "system"));
        sim_json_int(j, sim_json_find(j, 0, "max_tokens"), &g->max_tokens);
    }
    return sim_gen_close(s, j, g, bytes, rc);
}

bool sim_api_cut(const struct sim_req *r)
{
    return r->max_tokens >= 0 && r->n_sent >= r->max_tokens;
}

/* The output item's id, "msg_" + 32 alphanumerics, stable for the request
 * (never kept: rebuilt from the seed). out gets API_ITEM_ID_LEN + 1 bytes. */
static void api_item_id(const struct sim_req *r, char *out)
{
    memcpy(out, "msg_", 4);
    sim_rng_alnum(r->seed ^ 0x6d73675f69746d31ULL, out + 4, API_ITEM_ID_LEN - 4);
    out[API_ITEM_ID_LEN] = '\0';
}

static void api_model(struct evbuffer *o, const struct sim_req *r)
{
    const char *m = r->srv->conf.model;

    sim_json_str(o, m, strlen(m));
}

/* The whole output so far as a JSON string literal, into t. */
static void api_text(struct evbuffer *t, const struct sim_req *r)
{
    struct evbuffer *raw = evbuffer_new();
    bool nl;

    if (raw == NULL) {
        evbuffer_add(t, "\"\"", 2);
        return;
    }
    sim_text_full(raw, r, &nl);
    sim_json_str(t, (const char *)evbuffer_pullup(raw, -1), evbuffer_get_length(raw));
    evbuffer_free(raw);
}

/* The simulator keeps no prompt cache (llama.cpp's "cache_n" is always 0
 * here): every prompt token is input, none read from the cache. */
static void api_messages_usage(struct evbuffer *o, const struct sim_req *r, int64_t out_tokens)
{
    evbuffer_add_printf(o,
                        "\"usage\":{\"cache_read_input_tokens\":0,\"input_tokens\":%lld,"
                        "\"output_tokens\":%lld}",
                        (long long)r->prompt_tokens, (long long)out_tokens);
}

static void api_responses_usage(struct evbuffer *o, const struct sim_req *r)
{
    evbuffer_add_printf(o,
                        "\"usage\":{\"input_tokens\":%lld,\"output_tokens\":%lld,"
                        "\"total_tokens\":%lld,\"input_tokens_details\":{\"cached_tokens\":0}}",
                        (long long)r->prompt_tokens, (long long)r->n_sent,
                        (long long)(r->prompt_tokens + r->n_sent));
}

static bool api_incomplete(const struct sim_req *r, const struct sim_api_style *st)
{
    return st->incomplete_at_limit && sim_api_cut(r);
}

/* The output_text part, whole: {"type":"output_text",...,"text":T}. */
static void api_output_text(struct evbuffer *o, const char *text, size_t tlen)
{
    evbuffer_add_printf(o, "{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],"
                           "\"text\":");
    evbuffer_add(o, text, tlen);
    evbuffer_add(o, "}", 1);
}

static void api_event(struct evbuffer *o, const char *name)
{
    evbuffer_add_printf(o, "event: %s\ndata: ", name);
}

void sim_api_stream_token(struct evbuffer *o, const struct sim_req *r, int64_t i, struct span tok)
{
    char item[API_ITEM_ID_LEN + 1];
    int k;

    if (r->api == SIM_API_MESSAGES) {
        if (i == 0) {
            api_event(o, "message_start");
            evbuffer_add_printf(o,
                                "{\"type\":\"message_start\",\"message\":{\"id\":\"%s\","
                                "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],"
                                "\"model\":",
                                r->id);
            api_model(o, r);
            evbuffer_add_printf(o, ",\"stop_reason\":null,\"stop_sequence\":null,");
            api_messages_usage(o, r, 0);
            evbuffer_add_printf(o, "}}\n\n");
            api_event(o, "content_block_start");
            evbuffer_add_printf(o, "{\"type\":\"content_block_start\",\"index\":0,"
                                   "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
        }
        api_event(o, "content_block_delta");
        evbuffer_add_printf(o, "{\"type\":\"content_block_delta\",\"index\":0,"
                               "\"delta\":{\"type\":\"text_delta\",\"text\":");
        sim_json_str(o, tok.p, tok.len);
        evbuffer_add_printf(o, "}}\n\n");
        return;
    }
    api_item_id(r, item);
    if (i == 0) {
        static const char *const opening[] = { "response.created", "response.in_progress" };
        for (k = 0; k < 2; k++) {
            api_event(o, opening[k]);
            evbuffer_add_printf(o,
                                "{\"type\":\"%s\",\"response\":{\"id\":\"%s\","
                                "\"object\":\"response\",\"status\":\"in_progress\"}}\n\n",
                                opening[k], r->id);
        }
        api_event(o, "response.output_item.added");
        evbuffer_add_printf(o,
                            "{\"type\":\"response.output_item.added\",\"item\":{\"content\":[],"
                            "\"id\":\"%s\",\"role\":\"assistant\",\"status\":\"in_progress\","
                            "\"type\":\"message\"}}\n\n",
                            item);
        api_event(o, "response.content_part.added");
        evbuffer_add_printf(o,
                            "{\"type\":\"response.content_part.added\",\"item_id\":\"%s\","
                            "\"part\":{\"type\":\"output_text\",\"text\":\"\"}}\n\n",
                            item);
    }
    api_event(o, "response.output_text.delta");
    evbuffer_add_printf(
        o, "{\"type\":\"response.output_text.delta\",\"item_id\":\"%s\",\"delta\":", item);
    sim_json_str(o, tok.p, tok.len);
    evbuffer_add_printf(o, "}\n\n");
}

/* The finished message item, in response.output_item.done's and
 * response.completed's order: type, status, id, content, role. */
static void api_item_done(struct evbuffer *o, const char *item, const char *status,
                          const char *text, size_t tlen)
{
    evbuffer_add_printf(o, "{\"type\":\"message\",\"status\":\"%s\",\"id\":\"%s\",\"content\":[",
                        status, item);
    api_output_text(o, text, tlen);
    evbuffer_add_printf(o, "],\"role\":\"assistant\"}");
}

void sim_api_stream_end(struct evbuffer *o, const struct sim_req *r, const struct sim_api_style *st)
{
    struct evbuffer *t;
    char item[API_ITEM_ID_LEN + 1];
    const char *text, *status, *final;
    size_t tlen;
    bool incomplete = api_incomplete(r, st);

    if (r->api == SIM_API_MESSAGES) {
        api_event(o, "content_block_stop");
        evbuffer_add_printf(o, "{\"type\":\"content_block_stop\",\"index\":0}\n\n");
        api_event(o, "message_delta");
        evbuffer_add_printf(o,
                            "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\","
                            "\"stop_sequence\":null},\"usage\":{\"output_tokens\":%lld}}\n\n",
                            sim_api_cut(r) ? "max_tokens" : "end_turn", (long long)r->n_sent);
        api_event(o, "message_stop");
        evbuffer_add_printf(o, "{\"type\":\"message_stop\"}\n\n");
        return;
    }
    t = evbuffer_new();
    if (t == NULL)
        return;
    api_text(t, r);
    tlen = evbuffer_get_length(t);
    text = (const char *)evbuffer_pullup(t, -1);
    api_item_id(r, item);
    status = incomplete ? "incomplete" : "completed";
    final = incomplete ? "response.incomplete" : "response.completed";

    api_event(o, "response.output_text.done");
    evbuffer_add_printf(
        o, "{\"type\":\"response.output_text.done\",\"item_id\":\"%s\",\"text\":", item);
    evbuffer_add(o, text, tlen);
    evbuffer_add_printf(o, "}\n\n");
    api_event(o, "response.content_part.done");
    evbuffer_add_printf(
        o, "{\"type\":\"response.content_part.done\",\"item_id\":\"%s\",\"part\":", item);
    api_output_text(o, text, tlen);
    evbuffer_add_printf(o, "}\n\n");
    api_event(o, "response.output_item.done");
    evbuffer_add_printf(o, "{\"type\":\"response.output_item.done\",\"item\":");
    api_item_done(o, item, status, text, tlen);
    evbuffer_add_printf(o, "}\n\n");
    api_event(o, final);
    evbuffer_add_printf(o,
                        "{\"type\":\"%s\",\"response\":{\"id\":\"%s\",\"object\":\"response\","
                        "\"created_at\":%llu,\"status\":\"%s\",",
                        final, r->id, (unsigned long long)r->created_s, status);
    if (incomplete)
        evbuffer_add_printf(o, "\"incomplete_details\":{\"reason\":\"max_output_tokens\"},");
    evbuffer_add_printf(o, "\"model\":");
    api_model(o, r);
    evbuffer_add_printf(o, ",\"output\":[");
    api_item_done(o, item, status, text, tlen);
    evbuffer_add_printf(o, "],");
    api_responses_usage(o, r);
    evbuffer_add(o, "}", 1);
    if (st->timings) {
        evbuffer_add(o, ",", 1);
        st->timings(o, r);
    }
    evbuffer_add_printf(o, "}\n\n");
    evbuffer_free(t);
}

void sim_api_body(struct evbuffer *o, const struct sim_req *r, const struct sim_api_style *st)
{
    char item[API_ITEM_ID_LEN + 1];
    bool incomplete = api_incomplete(r, st);

    if (r->api == SIM_API_MESSAGES) {
        evbuffer_add_printf(o,
                            "{\"id\":\"%s\",\"type\":\"message\",\"role\":\"assistant\","
                            "\"content\":[{\"type\":\"text\",\"text\":",
                            r->id);
        api_text(o, r);
        evbuffer_add_printf(o, "}],\"model\":");
        api_model(o, r);
        evbuffer_add_printf(o, ",\"stop_reason\":\"%s\",\"stop_sequence\":null,",
                            sim_api_cut(r) ? "max_tokens" : "end_turn");
        api_messages_usage(o, r, r->n_sent);
        evbuffer_add(o, "}", 1);
        return;
    }
    /* llama-server writes this object with its keys sorted */
    api_item_id(r, item);
    evbuffer_add_printf(o, "{\"completed_at\":%llu,\"created_at\":%llu,\"id\":\"%s\",",
                        (unsigned long long)(clk_wall_us() / 1000000),
                        (unsigned long long)r->created_s, r->id);
    if (incomplete)
        evbuffer_add_printf(o, "\"incomplete_details\":{\"reason\":\"max_output_tokens\"},");
    evbuffer_add_printf(o, "\"model\":");
    api_model(o, r);
    evbuffer_add_printf(o, ",\"object\":\"response\",\"output\":[{\"content\":[{\"type\":"
                           "\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":");
    api_text(o, r);
    evbuffer_add_printf(o,
                        "}],\"id\":\"%s\",\"role\":\"assistant\",\"status\":\"%s\","
                        "\"type\":\"message\"}],\"status\":\"%s\",",
                        item, incomplete ? "incomplete" : "completed",
                        incomplete ? "incomplete" : "completed");
    api_responses_usage(o, r);
    evbuffer_add(o, "}", 1);
}

void sim_api_count_body(struct evbuffer *o, const struct sim_gen *g)
{
    evbuffer_add_printf(o, "{\"input_tokens\":%lld}", (long long)g->prompt_tokens);
}
