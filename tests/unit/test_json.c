/* Unit tests for json: every event of every fixture stream and the fixture
 * bodies and requests, exact fields of representative events, the
 * include_usage rewrite checked by re-parsing, and string decoding. */
#include "pitot/format/json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define JSMN_STATIC
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include "pitot/format/sse.h"

#include "fixture.h"

static jsmntok_t tokbuf[JSON_TOKENS_DEFAULT];
static struct json_toks toks = { tokbuf, JSON_TOKENS_DEFAULT };

/* ---- fixtures ---------------------------------------------------------- */

static struct fx_set fx;

static int fixtures_setup(void **state)
{
    fx_set_load(&fx);
    (void)state;
    return 0;
}

static int fixtures_teardown(void **state)
{
    fx_set_release(&fx);
    (void)state;
    return 0;
}

/* ---- events of a stream ------------------------------------------------- */

#define MAX_EVENTS 256

/* The data of each event of a stream (pings and [DONE] included, as len 0
 * and "[DONE]"). */
struct events {
    struct span data[MAX_EVENTS];
    bool ping[MAX_EVENTS];
    size_t n;
};

static void split_events(const struct fx_file *f, struct events *ev)
{
    struct sse_scanner s;
    size_t off = 0, c;

    sse_scan_init(&s);
    ev->n = 0;
    while (off < f->len && sse_scan(&s, span_make(f->body + off, f->len - off), &c) == SPAN_OK) {
        struct sse_event e;

        sse_event_decode(span_make(f->body + off, c), NULL, 0, &e);
        assert_false(e.truncated);
        assert_true(ev->n < MAX_EVENTS);
        ev->data[ev->n] = e.data;
        ev->ping[ev->n] = e.comment_only;
        ev->n++;
        off += c;
    }
    assert_int_equal(off, f->len);
}

static struct json_resp parse_ok(struct span data)
{
    struct json_resp r;

    assert_int_equal(json_resp_parse(data, &toks, &r), 0);
    assert_true(r.valid);
    return r;
}

/* Parses event i of the named stream. */
static struct json_resp event_of(const char *name, size_t i)
{
    static struct events ev;

    split_events(fx_set_find(&fx, name), &ev);
    assert_true(i < ev.n);
    return parse_ok(ev.data[i]);
}

static void assert_span(struct span s, const char *lit)
{
    if (!span_eq(s, lit))
        fail_msg("got \"%.*s\", expected \"%s\"", (int)s.len, s.p != NULL ? s.p : "", lit);
}

/* ---- every event of every stream ---------------------------------------- */

struct expect {
    const char *name;
    unsigned outputs;        /* events with output */
    enum json_finish finish; /* the stream's finish reason */
    long long tokens;        /* last usage completion_tokens, else last
                                  timings predicted_n, else -1 */
    unsigned errors;         /* error events */
};

/* From the fixture files themselves (see the READMEs). */
static const struct expect expects[] = {
    { "llama.cpp/chat-stream-basic.http", 16, JSON_FINISH_LENGTH, 16, 0 },
    { "llama.cpp/chat-stream-client-abort-after-5-events.http", 4, JSON_FINISH_NONE, -1, 0 },
    { "llama.cpp/chat-stream-context-full-tiny.http", 20, JSON_FINISH_LENGTH, 20, 0 },
    { "llama.cpp/chat-stream-gap-during-other-prefill.http", 60, JSON_FINISH_LENGTH, 60, 0 },
    { "llama.cpp/chat-stream-include-usage.http", 16, JSON_FINISH_LENGTH, 16, 0 },
    { "llama.cpp/chat-stream-length-max-tokens-3.http", 3, JSON_FINISH_LENGTH, 3, 0 },
    { "llama.cpp/chat-stream-sse-ping-interval-2.http", 60, JSON_FINISH_LENGTH, 60, 0 },
    { "llama.cpp/chat-stream-stop-eos.http", 0, JSON_FINISH_STOP, 1, 0 },
    { "llama.cpp/chat-stream-stop-string.http", 10, JSON_FINISH_STOP, 11, 0 },
    { "llama.cpp/chat-stream-timing-small.http", 64, JSON_FINISH_LENGTH, 64, 0 },
    { "llama.cpp/chat-stream-timing-tiny.http", 200, JSON_FINISH_LENGTH, 200, 0 },
    { "llama.cpp/apis/anthropic-messages-stream-system.http", 8, JSON_FINISH_LENGTH, 8, 0 },
    { "llama.cpp/apis/anthropic-messages-stream.http", 12, JSON_FINISH_LENGTH, 12, 0 },
    { "llama.cpp/apis/chat-stream-any-model-name.http", 4, JSON_FINISH_LENGTH, 4, 0 },
    { "llama.cpp/apis/responses-stream.http", 12, JSON_FINISH_STOP, 12, 0 },
    { "llama.cpp/chat-stream-timings-per-token.http", 4, JSON_FINISH_LENGTH, 4, 0 },
    { "llama.cpp/completion-native-stream.http", 16, JSON_FINISH_LENGTH, 16, 0 },
    { "llama.cpp/v1-completions-stream-include-usage.http", 16, JSON_FINISH_LENGTH, 16, 0 },
    { "llama.cpp/v1-completions-stream.http", 16, JSON_FINISH_LENGTH, 16, 0 },
    { "openai/stream_chat_include_usage.sse", 7, JSON_FINISH_STOP, 8, 0 },
    { "openai/stream_error_midstream.sse", 4, JSON_FINISH_NONE, -1, 1 },
    { "openai/stream_refusal.sse", 11, JSON_FINISH_STOP, -1, 0 },
    { "tgi/generate_stream.sse", 16, JSON_FINISH_STOP, 17, 0 },
    { "tgi/generate_stream_error.sse", 3, JSON_FINISH_NONE, -1, 1 },
    { "tgi/stream_chat.sse", 15, JSON_FINISH_STOP, 16, 0 },
    { "vllm/stream_chat_error_midstream.sse", 4, JSON_FINISH_NONE, -1, 1 },
    { "vllm/stream_chat_include_usage.sse", 7, JSON_FINISH_STOP, 8, 0 },
    { "vllm/stream_chat_no_usage.sse", 12, JSON_FINISH_LENGTH, -1, 0 },
};

static const struct expect *expect_for(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(expects) / sizeof(expects[0]); i++) {
        if (strcmp(expects[i].name, name) == 0)
            return &expects[i];
    }
    return NULL;
}

static void test_every_fixture_event(void **state)
{
    static struct events ev;
    size_t i, k, nstreams = 0;

    for (i = 0; i < fx.n; i++) {
        const struct fx_file *f = &fx.f[i];
        const struct expect *x;
        unsigned outputs = 0, errors = 0, finishes = 0;
        enum json_finish finish = JSON_FINISH_NONE;
        long long usage_tokens = -1, predicted = -1;

        if (!f->sse)
            continue;
        x = expect_for(f->name);
        if (x == NULL)
            fail_msg("no expectations for fixture stream %s", f->name);
        nstreams++;
        split_events(f, &ev);
        for (k = 0; k < ev.n; k++) {
            struct json_resp r;

            if (ev.ping[k] || span_eq(ev.data[k], "[DONE]"))
                continue;
            r = parse_ok(ev.data[k]);
            if (r.has_output) {
                outputs++;
                assert_false(r.is_error);
            }
            /* Output text is set exactly when a non-reasoning output is. */
            if (r.text.len > 0)
                assert_true(r.has_output);
            if (r.is_error)
                errors++;
            if (r.finish != JSON_FINISH_NONE) {
                finishes++;
                finish = r.finish;
            }
            if (r.has_usage)
                usage_tokens = r.completion_tokens;
            if (r.has_timings)
                predicted = r.timings_predicted_n;
            if (r.choices_empty)
                assert_true(r.has_usage); /* the usage-only chunk */
        }
        assert_int_equal(outputs, x->outputs);
        assert_int_equal(errors, x->errors);
        assert_int_equal(finish, x->finish);
        assert_true(finishes <= 1);
        assert_int_equal(usage_tokens >= 0 ? usage_tokens : predicted, x->tokens);
        /* Counted tokens agree with the server's count: the EOS or stop-string
         * token behind a "stop" is counted but never streamed as text (but
         * llama.cpp's Responses API says "completed" at its limit too). */
        if (x->tokens >= 0 && strstr(f->name, "/apis/responses") == NULL)
            assert_int_equal(x->tokens, outputs + (finish == JSON_FINISH_STOP ? 1 : 0));
        if (usage_tokens >= 0 && predicted >= 0)
            assert_int_equal(usage_tokens, predicted);
    }
    assert_int_equal(nstreams, sizeof(expects) / sizeof(expects[0]));
    (void)state;
}

/* ---- representative events ---------------------------------------------- */

static void test_llamacpp_chat_events(void **state)
{
    const char *f = "llama.cpp/chat-stream-include-usage.http";
    struct json_resp r;

    /* The role-only first chunk is not output. */
    r = event_of(f, 0);
    assert_false(r.has_output);
    assert_int_equal(r.text.len, 0);
    assert_int_equal(r.finish, JSON_FINISH_NONE);
    assert_false(r.has_usage);
    assert_false(r.choices_empty);
    assert_false(r.is_error);
    assert_false(r.has_timings);
    assert_span(r.model, "small");
    assert_int_equal(r.prompt_tokens, -1);
    assert_int_equal(r.timings_prompt_n, -1);

    r = event_of(f, 1);
    assert_true(r.has_output);
    assert_false(r.has_refusal);
    assert_span(r.text, "LOCK");

    /* The finish chunk: empty delta, no timings (they moved to the usage chunk). */
    r = event_of(f, 17);
    assert_false(r.has_output);
    assert_int_equal(r.finish, JSON_FINISH_LENGTH);
    assert_false(r.has_timings);
    assert_false(r.has_usage);

    r = event_of(f, 18);
    assert_true(r.choices_empty);
    assert_true(r.has_usage);
    assert_int_equal(r.prompt_tokens, 61);
    assert_int_equal(r.completion_tokens, 16);
    assert_int_equal(r.cached_tokens, 60);
    assert_true(r.has_timings);
    assert_int_equal(r.timings_prompt_n, 1);
    assert_int_equal(r.timings_predicted_n, 16);
    assert_int_equal(r.timings_cache_n, 60);
    assert_int_equal(r.finish, JSON_FINISH_NONE);
    assert_false(r.has_output);

    /* Without include_usage, timings sit on the finish chunk. */
    r = event_of("llama.cpp/chat-stream-basic.http", 17);
    assert_int_equal(r.finish, JSON_FINISH_LENGTH);
    assert_false(r.has_usage);
    assert_true(r.has_timings);
    assert_int_equal(r.timings_predicted_n, 16);

    /* A stop string: timings on the last content chunk, finish "stop". */
    r = event_of("llama.cpp/chat-stream-stop-string.http", 10);
    assert_true(r.has_output);
    assert_span(r.text, " ");
    assert_true(r.has_timings);
    assert_int_equal(r.timings_predicted_n, 11);
    r = event_of("llama.cpp/chat-stream-stop-string.http", 11);
    assert_int_equal(r.finish, JSON_FINISH_STOP);

    /* A fresh replica: nothing cached. */
    r = event_of("llama.cpp/chat-stream-timing-small.http", 66);
    assert_int_equal(r.cached_tokens, 0);
    assert_int_equal(r.prompt_tokens, 61);
    assert_int_equal(r.timings_prompt_n, 61);
    assert_int_equal(r.timings_cache_n, 0);
    (void)state;
}

static void test_llamacpp_completions_and_native(void **state)
{
    struct json_resp r;

    /* /v1/completions: choices[].text, usage on the finish chunk. */
    r = event_of("llama.cpp/v1-completions-stream.http", 0);
    assert_true(r.has_output);
    assert_true(r.text.len > 0);
    r = event_of("llama.cpp/v1-completions-stream.http", 16);
    assert_false(r.has_output);
    assert_int_equal(r.finish, JSON_FINISH_LENGTH);
    assert_true(r.has_usage);
    assert_false(r.choices_empty);
    assert_int_equal(r.prompt_tokens, 5);
    assert_int_equal(r.completion_tokens, 16);
    assert_int_equal(r.cached_tokens, 1);
    assert_int_equal(r.timings_prompt_n, 4);

    /* Native /completion: top-level content; the stop chunk carries stop_type. */
    r = event_of("llama.cpp/completion-native-stream.http", 0);
    assert_true(r.has_output);
    assert_span(r.text, "quelle");
    assert_int_equal(r.finish, JSON_FINISH_NONE);
    assert_int_equal(r.model.len, 0);
    r = event_of("llama.cpp/completion-native-stream.http", 16);
    assert_false(r.has_output);
    assert_int_equal(r.text.len, 0);
    assert_int_equal(r.finish, JSON_FINISH_LENGTH); /* stop_type "limit" */
    assert_span(r.model, "small");
    assert_false(r.has_usage);
    assert_true(r.has_timings);
    assert_int_equal(r.timings_prompt_n, 1);
    assert_int_equal(r.timings_predicted_n, 16);
    assert_int_equal(r.timings_cache_n, 4);
    (void)state;
}

static void test_nonstream_bodies(void **state)
{
    const struct fx_file *chat = fx_set_find(&fx, "llama.cpp/chat-nonstream.http");
    const struct fx_file *native = fx_set_find(&fx, "llama.cpp/completion-native-nonstream.http");
    struct json_resp r;

    assert_false(chat->sse);
    r = parse_ok(span_make(chat->body, chat->len));
    assert_true(r.has_output);
    assert_true(r.text.len > 14);
    assert_memory_equal(r.text.p, "zej securedDAY", 14);
    assert_int_equal(r.finish, JSON_FINISH_LENGTH);
    assert_true(r.has_usage);
    assert_int_equal(r.prompt_tokens, 61);
    assert_int_equal(r.completion_tokens, 16);
    assert_int_equal(r.cached_tokens, 60);
    assert_int_equal(r.timings_predicted_n, 16);
    assert_span(r.model, "small");

    r = parse_ok(span_make(native->body, native->len));
    assert_true(r.has_output);
    assert_true(r.text.len > 11);
    assert_memory_equal(r.text.p, "hellichkeit", 11);
    assert_int_equal(r.finish, JSON_FINISH_LENGTH);
    assert_false(r.has_usage);
    assert_int_equal(r.timings_prompt_n, 1);
    assert_int_equal(r.timings_predicted_n, 16);
    assert_int_equal(r.timings_cache_n, 4);
    (void)state;
}

static struct json_resp lit_ok(const char *s)
{
    return parse_ok(span_cstr(s));
}

/* The Responses and Messages APIs as llama-server serves them (captures) and
 * as their specifications give the rest. */
static void test_api_captures(void **state)
{
    const char *rs = "llama.cpp/apis/responses-stream.http";
    const char *ms = "llama.cpp/apis/anthropic-messages-stream.http";
    const struct fx_file *rb = fx_set_find(&fx, "llama.cpp/apis/responses-nonstream.http");
    const struct fx_file *mb = fx_set_find(&fx, "llama.cpp/apis/anthropic-messages-nonstream.http");
    const struct fx_file *ct = fx_set_find(&fx, "llama.cpp/apis/anthropic-count-tokens.http");
    struct json_resp r;
    size_t i;

    /* Responses: the four events before the first delta carry nothing. */
    for (i = 0; i < 4; i++) {
        r = event_of(rs, i);
        assert_false(r.has_output);
        assert_false(r.has_usage);
        assert_int_equal(r.finish, JSON_FINISH_NONE);
    }
    r = event_of(rs, 4);
    assert_true(r.has_output);
    assert_span(r.text, " confirmed");
    r = event_of(rs, 16); /* response.output_text.done: the whole text, no output */
    assert_false(r.has_output);
    r = event_of(rs, 19); /* response.completed */
    assert_false(r.has_output);
    assert_int_equal(r.finish, JSON_FINISH_STOP);
    assert_int_equal(r.prompt_tokens, 39);
    assert_int_equal(r.completion_tokens, 12);
    assert_int_equal(r.cached_tokens, 0);
    assert_true(r.has_timings);
    assert_int_equal(r.timings_predicted_n, 12);
    assert_span(r.model, "tiny");

    /* Messages: the prompt is input_tokens + cache_read_input_tokens. */
    r = event_of(ms, 0);
    assert_false(r.has_output);
    assert_true(r.has_usage);
    assert_int_equal(r.prompt_tokens, 39);
    assert_int_equal(r.cached_tokens, 38);
    assert_int_equal(r.completion_tokens, -1); /* a placeholder there */
    assert_span(r.model, "tiny");
    r = event_of(ms, 1); /* content_block_start */
    assert_false(r.has_output);
    r = event_of(ms, 2);
    assert_true(r.has_output);
    assert_span(r.text, " confirmed");
    r = event_of(ms, 15); /* message_delta */
    assert_int_equal(r.finish, JSON_FINISH_LENGTH);
    assert_int_equal(r.completion_tokens, 12);
    assert_int_equal(r.prompt_tokens, -1);
    r = event_of(ms, 16); /* message_stop */
    assert_false(r.has_output || r.has_usage || r.is_error);

    r = parse_ok(span_make(rb->body, rb->len));
    assert_true(r.has_output);
    assert_memory_equal(r.text.p, " Charles", 8);
    assert_int_equal(r.finish, JSON_FINISH_STOP);
    assert_int_equal(r.prompt_tokens, 39);
    assert_int_equal(r.completion_tokens, 12);
    assert_int_equal(r.cached_tokens, 38);
    r = parse_ok(span_make(mb->body, mb->len));
    assert_true(r.has_output);
    assert_memory_equal(r.text.p, "CDieniaasc", 10);
    assert_int_equal(r.finish, JSON_FINISH_LENGTH);
    assert_int_equal(r.prompt_tokens, 39);
    assert_int_equal(r.completion_tokens, 12);
    assert_int_equal(r.cached_tokens, 38);
    /* count_tokens answers a count, not a use of the model */
    r = parse_ok(span_make(ct->body, ct->len));
    assert_false(r.has_usage || r.has_output);
    (void)state;
}

static void test_api_events(void **state)
{
    struct json_resp r;

    /* output of every kind, text only for what a refusal may be in */
    r = lit_ok("{\"type\":\"response.reasoning_text.delta\",\"delta\":\"hm\"}");
    assert_true(r.has_output);
    assert_int_equal(r.text.len, 0);
    r = lit_ok("{\"type\":\"response.function_call_arguments.delta\",\"delta\":\"{\\\"a\"}");
    assert_true(r.has_output);
    r = lit_ok("{\"type\":\"response.refusal.delta\",\"delta\":\"No.\"}");
    assert_true(r.has_output && r.has_refusal);
    assert_span(r.text, "No.");
    r = lit_ok("{\"type\":\"response.output_text.delta\",\"delta\":\"\"}");
    assert_false(r.has_output);
    r = lit_ok("{\"type\":\"content_block_delta\",\"index\":0,"
               "\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"so\"}}");
    assert_true(r.has_output);
    assert_int_equal(r.text.len, 0);
    r = lit_ok("{\"type\":\"content_block_delta\",\"index\":1,"
               "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"c\"}}");
    assert_true(r.has_output);
    r = lit_ok("{\"type\":\"content_block_delta\",\"index\":1,"
               "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}");
    assert_false(r.has_output);
    r = lit_ok("{\"type\":\"content_block_delta\",\"index\":0,"
               "\"delta\":{\"type\":\"signature_delta\",\"signature\":\"x\"}}");
    assert_false(r.has_output);

    /* finish reasons */
    r = lit_ok("{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
               "\"usage\":{\"output_tokens\":5}}");
    assert_int_equal(r.finish, JSON_FINISH_STOP);
    assert_int_equal(r.completion_tokens, 5);
    r = lit_ok("{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"}}");
    assert_int_equal(r.finish, JSON_FINISH_TOOL_CALLS);
    r = lit_ok("{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"stop_sequence\"}}");
    assert_int_equal(r.finish, JSON_FINISH_STOP);
    r = lit_ok("{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"refusal\"}}");
    assert_int_equal(r.finish, JSON_FINISH_CONTENT_FILTER);
    r = lit_ok("{\"type\":\"response.incomplete\",\"response\":{\"status\":\"incomplete\","
               "\"incomplete_details\":{\"reason\":\"max_output_tokens\"},"
               "\"usage\":{\"input_tokens\":9,\"output_tokens\":4,"
               "\"input_tokens_details\":{\"cached_tokens\":3}}}}");
    assert_int_equal(r.finish, JSON_FINISH_LENGTH);
    assert_int_equal(r.prompt_tokens, 9); /* Responses: input_tokens counts the cached */
    assert_int_equal(r.cached_tokens, 3);
    assert_int_equal(r.completion_tokens, 4);
    r = lit_ok("{\"type\":\"response.completed\",\"response\":{\"status\":\"completed\","
               "\"output\":[{\"type\":\"function_call\",\"arguments\":\"{}\"}]}}");
    assert_int_equal(r.finish, JSON_FINISH_TOOL_CALLS);
    assert_false(r.has_output); /* its arguments were streamed as deltas */
    r = lit_ok("{\"type\":\"response.failed\",\"response\":{\"status\":\"failed\","
               "\"error\":{\"code\":\"server_error\",\"message\":\"x\"}}}");
    assert_int_equal(r.finish, JSON_FINISH_ERROR);
    assert_true(r.is_error);
    r = lit_ok("{\"type\":\"error\",\"code\":\"x\",\"message\":\"y\",\"param\":null}");
    assert_true(r.is_error);
    r = lit_ok("{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"y\"}}");
    assert_true(r.is_error);

    /* Anthropic's usage with cache creation: every part is prompt */
    r = lit_ok("{\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":"
               "{\"input_tokens\":2,\"cache_creation_input_tokens\":5,"
               "\"cache_read_input_tokens\":7,\"output_tokens\":1}}}");
    assert_int_equal(r.prompt_tokens, 14);
    assert_int_equal(r.cached_tokens, 7);
    assert_int_equal(r.completion_tokens, -1);
    assert_span(r.model, "m");
    /* a whole Messages answer with a tool call and thinking, and a whole
     * Responses answer that refused */
    r = lit_ok("{\"type\":\"message\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"t\"},"
               "{\"type\":\"tool_use\",\"id\":\"x\",\"name\":\"f\",\"input\":{}}],"
               "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":3,\"output_tokens\":8}}");
    assert_true(r.has_output);
    assert_int_equal(r.text.len, 0);
    assert_int_equal(r.finish, JSON_FINISH_TOOL_CALLS);
    assert_int_equal(r.prompt_tokens, 3);
    assert_int_equal(r.completion_tokens, 8);
    r = lit_ok("{\"object\":\"response\",\"status\":\"completed\",\"output\":[{\"type\":"
               "\"message\",\"content\":[{\"type\":\"refusal\",\"refusal\":\"I can't.\"}]}]}");
    assert_true(r.has_output && r.has_refusal);
    assert_span(r.text, "I can't.");
    /* a chat chunk's own "type"-less shape is untouched by all this */
    r = lit_ok(
        "{\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}");
    assert_true(r.has_output);
    (void)state;
}

/* Every JSON error response in the llama.cpp captures is seen as an error. */
static void test_error_bodies(void **state)
{
    size_t i, n = 0;

    for (i = 0; i < fx.n; i++) {
        const struct fx_file *f = &fx.f[i];
        struct json_resp r;

        if (f->request || f->sse || f->status < 400)
            continue;
        r = parse_ok(span_make(f->body, f->len));
        assert_true(r.is_error);
        assert_false(r.has_output);
        n++;
    }
    assert_true(n >= 9);
    (void)state;
}

static void test_tgi_events(void **state)
{
    const char *gen = "tgi/generate_stream.sse", *chat = "tgi/stream_chat.sse";
    struct json_resp r;

    r = event_of(gen, 0);
    assert_true(r.has_output);
    assert_span(r.text, " Deep");
    assert_false(r.has_usage);
    assert_int_equal(r.finish, JSON_FINISH_NONE);
    /* The special EOS token is not output; its details carry the counts. */
    r = event_of(gen, 16);
    assert_false(r.has_output);
    assert_int_equal(r.text.len, 0);
    assert_int_equal(r.finish, JSON_FINISH_STOP);
    assert_true(r.has_usage);
    assert_int_equal(r.completion_tokens, 17);
    assert_int_equal(r.prompt_tokens, 7);
    assert_int_equal(r.cached_tokens, -1);
    r = event_of("tgi/generate_stream_error.sse", 3);
    assert_true(r.is_error);
    assert_false(r.has_output);

    /* Chat: ping first; every delta repeats the role. */
    r = event_of(chat, 1);
    assert_true(r.has_output);
    assert_span(r.text, "Deep");
    assert_span(r.model, "meta-llama/Llama-3.1-8B-Instruct");
    r = event_of(chat, 16);
    assert_false(r.has_output);
    assert_int_equal(r.finish, JSON_FINISH_STOP);
    assert_false(r.has_usage); /* "usage":null */
    r = event_of(chat, 17);
    assert_true(r.choices_empty);
    assert_true(r.has_usage);
    assert_int_equal(r.prompt_tokens, 43);
    assert_int_equal(r.completion_tokens, 16);
    assert_int_equal(r.cached_tokens, -1);
    (void)state;
}

static void test_vllm_openai_events(void **state)
{
    struct json_resp r;

    /* vLLM role chunk has content "": not output. */
    r = event_of("vllm/stream_chat_include_usage.sse", 0);
    assert_false(r.has_output);
    assert_span(r.model, "meta-llama/Llama-3.3-70B-Instruct");
    r = event_of("vllm/stream_chat_include_usage.sse", 8);
    assert_false(r.has_output);
    assert_int_equal(r.finish, JSON_FINISH_STOP);
    r = event_of("vllm/stream_chat_include_usage.sse", 9);
    assert_true(r.choices_empty);
    assert_int_equal(r.prompt_tokens, 49);
    assert_int_equal(r.completion_tokens, 8);
    assert_int_equal(r.cached_tokens, -1);
    /* finish_reason "length" on the last content chunk. */
    r = event_of("vllm/stream_chat_no_usage.sse", 12);
    assert_true(r.has_output);
    assert_span(r.text, " 5");
    assert_int_equal(r.finish, JSON_FINISH_LENGTH);
    r = event_of("vllm/stream_chat_error_midstream.sse", 5);
    assert_true(r.is_error);
    assert_false(r.has_output);
    assert_int_equal(r.model.len, 0);

    r = event_of("openai/stream_chat_include_usage.sse", 0);
    assert_false(r.has_output);
    assert_false(r.has_refusal);
    r = event_of("openai/stream_chat_include_usage.sse", 8);
    assert_int_equal(r.finish, JSON_FINISH_STOP);
    assert_false(r.has_output);
    assert_false(r.has_usage);
    r = event_of("openai/stream_chat_include_usage.sse", 9);
    assert_true(r.choices_empty);
    assert_int_equal(r.prompt_tokens, 24);
    assert_int_equal(r.completion_tokens, 8);
    assert_int_equal(r.cached_tokens, 0);
    r = event_of("openai/stream_error_midstream.sse", 5);
    assert_true(r.is_error);

    /* Refusal: the role chunk's refusal "" is nothing; then refusal text. */
    r = event_of("openai/stream_refusal.sse", 0);
    assert_false(r.has_output);
    assert_false(r.has_refusal);
    r = event_of("openai/stream_refusal.sse", 1);
    assert_true(r.has_output);
    assert_true(r.has_refusal);
    assert_span(r.text, "I'm");
    r = event_of("openai/stream_refusal.sse", 6);
    assert_span(r.text, " can't");
    (void)state;
}

/* ---- hand-made responses ------------------------------------------------ */

static struct json_resp parse_lit(const char *s)
{
    return parse_ok(span_cstr(s));
}

static void test_output_kinds(void **state)
{
    struct json_resp r;

    r = parse_lit("{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
                  "{\"arguments\":\"{\\\"a\\\"\"}}]}}]}");
    assert_true(r.has_output);
    assert_int_equal(r.text.len, 0);
    r = parse_lit("{\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}");
    assert_false(r.has_output);
    r = parse_lit("{\"choices\":[{\"delta\":{\"reasoning_content\":\"hmm\",\"content\":null}}]}");
    assert_true(r.has_output);
    assert_int_equal(r.text.len, 0); /* reasoning is never refusal text */
    r = parse_lit("{\"choices\":[{\"delta\":{\"reasoning\":\"hmm\"}}]}");
    assert_true(r.has_output);
    r = parse_lit("{\"choices\":[{\"delta\":{\"reasoning_content\":\"\"}}]}");
    assert_false(r.has_output);
    /* Refusal wins over content; text stays JSON-escaped. */
    r = parse_lit("{\"choices\":[{\"delta\":{\"content\":\"a\",\"refusal\":\"I\\u2019m\"}}]}");
    assert_true(r.has_refusal);
    assert_span(r.text, "I\\u2019m");
    r = parse_lit("{\"choices\":[{\"delta\":{\"content\":\"say \\\"hi\\\"\"}}]}");
    assert_span(r.text, "say \\\"hi\\\"");
    /* Non-streaming message.refusal. */
    r = parse_lit("{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":null,"
                  "\"refusal\":\"No.\"},\"finish_reason\":\"stop\"}]}");
    assert_true(r.has_output);
    assert_true(r.has_refusal);
    assert_span(r.text, "No.");
    assert_int_equal(r.finish, JSON_FINISH_STOP);
    /* Only the first choice gives text; any choice gives output. */
    r = parse_lit(
        "{\"choices\":[{\"index\":0,\"delta\":{}},{\"index\":1,\"delta\":{\"content\":\"x\"}}]}");
    assert_true(r.has_output);
    assert_int_equal(r.text.len, 0);
    r = parse_lit("{\"choices\":[{\"text\":\"t\",\"index\":0},{\"text\":\"u\",\"index\":1}]}");
    assert_span(r.text, "t");
    /* TGI token: special, absent special, empty text. */
    r = parse_lit("{\"token\":{\"text\":\"x\",\"special\":true}}");
    assert_false(r.has_output);
    r = parse_lit("{\"token\":{\"text\":\"x\"}}");
    assert_true(r.has_output);
    assert_span(r.text, "x");
    r = parse_lit("{\"token\":{\"text\":\"\",\"special\":false}}");
    assert_false(r.has_output);
    /* Native content: "" and null are not output. */
    r = parse_lit("{\"content\":\"\",\"stop\":false}");
    assert_false(r.has_output);
    r = parse_lit("{\"content\":null}");
    assert_false(r.has_output);
    /* Keys under other objects do not count. */
    r = parse_lit("{\"x\":{\"content\":\"a\",\"error\":{},\"usage\":{\"prompt_tokens\":1}},"
                  "\"y\":[{\"choices\":[{\"text\":\"b\"}]}]}");
    assert_false(r.has_output);
    assert_false(r.is_error);
    assert_false(r.has_usage);
    (void)state;
}

static void test_finish_reasons(void **state)
{
    static const struct {
        const char *json;
        enum json_finish f;
    } cases[] = {
        { "{\"choices\":[{\"finish_reason\":\"stop\"}]}", JSON_FINISH_STOP },
        { "{\"choices\":[{\"finish_reason\":\"length\"}]}", JSON_FINISH_LENGTH },
        { "{\"choices\":[{\"finish_reason\":\"tool_calls\"}]}", JSON_FINISH_TOOL_CALLS },
        { "{\"choices\":[{\"finish_reason\":\"function_call\"}]}", JSON_FINISH_TOOL_CALLS },
        { "{\"choices\":[{\"finish_reason\":\"content_filter\"}]}", JSON_FINISH_CONTENT_FILTER },
        { "{\"choices\":[{\"finish_reason\":\"error\"}]}", JSON_FINISH_ERROR },
        { "{\"choices\":[{\"finish_reason\":\"eos_token\"}]}", JSON_FINISH_STOP },
        { "{\"choices\":[{\"finish_reason\":\"stop_sequence\"}]}", JSON_FINISH_STOP },
        { "{\"choices\":[{\"finish_reason\":\"abort\"}]}", JSON_FINISH_OTHER },
        { "{\"choices\":[{\"finish_reason\":null}]}", JSON_FINISH_NONE },
        { "{\"choices\":[{\"finish_reason\":\"\"}]}", JSON_FINISH_NONE },
        { "{\"choices\":[{\"finish_reason\":null},{\"finish_reason\":\"length\"}]}",
          JSON_FINISH_LENGTH },
        { "{\"choices\":[{\"finish_reason\":\"stop\"},{\"finish_reason\":\"length\"}]}",
          JSON_FINISH_STOP },
        { "{\"stop\":true,\"stop_type\":\"limit\"}", JSON_FINISH_LENGTH },
        { "{\"stop_type\":\"eos\",\"stop\":true}", JSON_FINISH_STOP },
        { "{\"stop\":true,\"stop_type\":\"word\"}", JSON_FINISH_STOP },
        { "{\"stop\":true,\"stop_type\":\"none\"}", JSON_FINISH_OTHER },
        { "{\"stop\":true}", JSON_FINISH_OTHER },
        { "{\"stop\":false,\"stop_type\":\"limit\"}", JSON_FINISH_NONE },
        { "{\"details\":{\"finish_reason\":\"length\",\"generated_tokens\":3}}",
          JSON_FINISH_LENGTH },
        { "{\"details\":{\"finish_reason\":\"eos_token\"}}", JSON_FINISH_STOP },
        { "{\"details\":{\"finish_reason\":\"stop_sequence\"}}", JSON_FINISH_STOP },
        { "{\"details\":null}", JSON_FINISH_NONE },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct json_resp r = parse_lit(cases[i].json);

        if (r.finish != cases[i].f)
            fail_msg("%s: finish %d, expected %d", cases[i].json, r.finish, cases[i].f);
    }
    assert_string_equal(json_finish_label(JSON_FINISH_NONE), "");
    assert_string_equal(json_finish_label(JSON_FINISH_STOP), "stop");
    assert_string_equal(json_finish_label(JSON_FINISH_LENGTH), "length");
    assert_string_equal(json_finish_label(JSON_FINISH_TOOL_CALLS), "tool_calls");
    assert_string_equal(json_finish_label(JSON_FINISH_CONTENT_FILTER), "content_filter");
    assert_string_equal(json_finish_label(JSON_FINISH_ERROR), "error");
    assert_string_equal(json_finish_label(JSON_FINISH_OTHER), "other");
    (void)state;
}

static void test_usage_timings_errors(void **state)
{
    struct json_resp r;

    r = parse_lit("{\"usage\":null,\"choices\":[]}");
    assert_false(r.has_usage);
    assert_true(r.choices_empty);
    r = parse_lit("{\"usage\":{\"completion_tokens\":5}}");
    assert_true(r.has_usage);
    assert_int_equal(r.prompt_tokens, -1);
    assert_int_equal(r.completion_tokens, 5);
    assert_int_equal(r.cached_tokens, -1);
    r = parse_lit("{\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":-2,"
                  "\"prompt_tokens_details\":null}}");
    assert_int_equal(r.prompt_tokens, 7);
    assert_int_equal(r.completion_tokens, -1);
    assert_int_equal(r.cached_tokens, -1);
    r = parse_lit("{\"usage\":{\"completion_tokens\":1,\"completion_tokens\":2}}");
    assert_int_equal(r.completion_tokens, 2);
    r = parse_lit("{\"usage\":{}}");
    assert_false(r.has_usage);
    r = parse_lit("{\"timings\":{\"prompt_n\":12.0,\"predicted_n\":3,\"cache_n\":\"x\"}}");
    assert_true(r.has_timings);
    assert_int_equal(r.timings_prompt_n, 12);
    assert_int_equal(r.timings_predicted_n, 3);
    assert_int_equal(r.timings_cache_n, -1);
    r = parse_lit("{\"timings\":{\"prompt_n\":1e3,\"predicted_n\":99999999999999999999}}");
    assert_int_equal(r.timings_prompt_n, -1);
    assert_int_equal(r.timings_predicted_n, -1);
    /* A usage object beats TGI details whichever comes first. */
    r = parse_lit("{\"details\":{\"generated_tokens\":4},\"usage\":{\"completion_tokens\":5}}");
    assert_int_equal(r.completion_tokens, 5);
    r = parse_lit("{\"usage\":{\"completion_tokens\":5},\"details\":{\"generated_tokens\":4}}");
    assert_int_equal(r.completion_tokens, 5);
    r = parse_lit("{\"error\":\"boom\",\"error_type\":\"generation\"}");
    assert_true(r.is_error);
    r = parse_lit("{\"error\":{\"message\":\"x\"}}");
    assert_true(r.is_error);
    r = parse_lit("{\"error\":null}");
    assert_false(r.is_error);
    r = parse_lit("{\"model\":null}");
    assert_int_equal(r.model.len, 0);
    r = parse_lit("{\"model\":\"a\\/b\"}");
    assert_span(r.model, "a\\/b");
    (void)state;
}

static void test_not_objects(void **state)
{
#define BAD(lit)                                                                                   \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }
    static const struct {
        const char *p;
        size_t len; /* some hold a NUL */
    } bad[] = {
        BAD(""),
        BAD(" "),
        BAD("[]"),
        BAD("[{\"choices\":[]}]"),
        BAD("\"x\""),
        BAD("null"),
        BAD("1"),
        BAD("{"),
        BAD("{\"a\":"),
        BAD("{\"a\":1"),
        BAD("{} {}"),
        BAD("{}x"),
        BAD(":{}"),
        BAD(",{}"),
        BAD("{}\0"),
        BAD("{\"a\":\"x\0\"}"),
        BAD("{\"a\":[}"),
        BAD("}"),
        BAD("{\"a\":\"\\q\"}"),
        BAD("x{}"),
        BAD("{\"a\" \"b\"}"),
        BAD("{\"a\":1 2}"),
        BAD("{a:1}"),
        BAD("{\"a\" 1}"),
        BAD("{\"a\":1:2}"),
        BAD("{\"a\":[\"k\":1]}"),
        BAD("{\"a\":tru}"),
        BAD("{\"a\":nulls}"),
        BAD("{\"a\":x1}"),
        BAD("{\"a\":1x}"),
        BAD("{\"a\"}"),
        BAD("{\"a\":{\"b\"}}"),
        BAD("{\"mol\":\"gris\"::}"),
        BAD("{\"a\":1,}"),
        BAD("{,\"a\":1}"),
        BAD("{\"a\":[1,]}"),
        BAD("{\"a\":[,1]}"),
        BAD("{\"a\":01}"),
        BAD("{\"a\":1.}"),
        BAD("{\"a\":-}"),
        BAD("{\"a\":1e}"),
        BAD("{\"a\":\"\n\"}"),
        BAD("{\"a\":\"\\u12x4\"}"),
        BAD("{\"a\":[}]}"),
        BAD("{\"a\":nan}"),
        BAD("{'a':1}"),
    };
#undef BAD
    struct json_resp r;
    struct json_req q;
    struct json_toks small = { tokbuf, 3 }, none = { NULL, 8 };
    char out[64];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct span s = span_make(bad[i].p, bad[i].len);

        if (json_resp_parse(s, &toks, &r) != -1)
            fail_msg("accepted \"%s\"", bad[i].p);
        assert_false(r.valid);
        assert_int_equal(r.prompt_tokens, -1);
        assert_int_equal(json_req_parse(s, &toks, &q), -1);
        assert_false(q.valid);
        assert_false(q.well_formed);
        assert_int_equal(q.max_tokens, -1);
        assert_int_equal(json_req_add_include_usage(s, &toks, out, sizeof(out)), -1);
    }
    /* Every kind of value; Python's NaN and Infinity, which backends emit. */
    assert_int_equal(json_resp_parse(span_cstr("{\"a\":[0,-2.5e+3,1E2,true,false,null,\"\\u00e9\","
                                               "{},[[]],NaN,-Infinity]}"),
                                     &toks, &r),
                     0);
    /* Nesting up to 512 levels. */
    {
        static char deep[1100];
        size_t d;

        for (d = 1; d <= 2; d++) {
            size_t levels = d == 1 ? 511 : 512, k, n = 0;

            deep[n++] = '{';
            memcpy(deep + n, "\"a\":", 4);
            n += 4;
            for (k = 0; k < levels; k++)
                deep[n++] = '[';
            for (k = 0; k < levels; k++)
                deep[n++] = ']';
            deep[n++] = '}';
            assert_int_equal(json_resp_parse(span_make(deep, n), &toks, &r), d == 1 ? 0 : -1);
        }
    }
    /* Blanks around the object are fine. */
    assert_int_equal(json_resp_parse(span_cstr(" \r\n{}\n"), &toks, &r), 0);
    assert_true(r.valid);
    /* Too many tokens for the caller's storage. */
    assert_int_equal(json_resp_parse(span_cstr("{\"a\":[1,2]}"), &small, &r), -1);
    assert_false(r.valid);
    assert_int_equal(json_resp_parse(span_cstr("{\"a\":1}"), &small, &r), 0);
    /* ... which a request body survives as well-formed, not as invalid */
    assert_int_equal(json_req_parse(span_cstr("{\"a\":[1,2]}"), &small, &q), -1);
    assert_true(q.well_formed);
    assert_false(q.valid);
    assert_int_equal(json_req_parse(span_cstr("{\"a\":[1,2]"), &small, &q), -1);
    assert_false(q.well_formed);
    assert_int_equal(json_req_parse(span_cstr("{\"a\":1}"), &small, &q), 0);
    assert_true(q.well_formed && q.valid);
    assert_int_equal(json_resp_parse(span_cstr("{}"), &none, &r), -1);
    assert_int_equal(json_toks_size(3), 3 * sizeof(jsmntok_t));
    (void)state;
}

/* ---- requests ----------------------------------------------------------- */

/* The integer after `"key": ` in a fixture body, or -1. */
static long long body_int(const struct fx_file *f, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    p = strstr(f->body, pat);
    return p != NULL ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static void test_req_fixtures(void **state)
{
    size_t i, nparsed = 0;
    struct json_req q;

    for (i = 0; i < fx.n; i++) {
        const struct fx_file *f = &fx.f[i];
        long long want_max;

        if (!f->request || f->len == 0)
            continue;
        if (strstr(f->name, "invalid-json") != NULL) {
            assert_int_equal(json_req_parse(span_make(f->body, f->len), &toks, &q), -1);
            continue;
        }
        assert_int_equal(json_req_parse(span_make(f->body, f->len), &toks, &q), 0);
        nparsed++;
        assert_true(q.valid);
        assert_int_equal(q.stream, strstr(f->body, "\"stream\": true") != NULL);
        assert_int_equal(q.include_usage, strstr(f->body, "\"include_usage\": true") != NULL);
        assert_int_equal(q.has_include_usage, q.include_usage);
        want_max = body_int(f, "max_tokens");
        if (want_max < 0)
            want_max = body_int(f, "n_predict");
        if (want_max < 0)
            want_max = body_int(f, "max_output_tokens");
        assert_int_equal(q.max_tokens, want_max);
        if (strstr(f->body, "\"model\": \"small\"") != NULL)
            assert_span(q.model, "small");
        else if (strstr(f->body, "\"model\": \"tiny\"") != NULL)
            assert_span(q.model, "tiny");
        else if (strstr(f->body, "\"model\": \"gpt-4o-mini\"") != NULL)
            assert_span(q.model, "gpt-4o-mini");
        else
            assert_int_equal(q.model.len, 0);
    }
    assert_true(nparsed >= 20);

    json_req_parse(span_make(fx_set_find(&fx, "llama.cpp/chat-stream-include-usage.req.http")->body,
                             fx_set_find(&fx, "llama.cpp/chat-stream-include-usage.req.http")->len),
                   &toks, &q);
    assert_true(q.stream && q.include_usage && q.has_include_usage);
    assert_int_equal(q.max_tokens, 16);
    json_req_parse(span_make(fx_set_find(&fx, "llama.cpp/completion-native-stream.req.http")->body,
                             fx_set_find(&fx, "llama.cpp/completion-native-stream.req.http")->len),
                   &toks, &q);
    assert_true(q.stream);
    assert_int_equal(q.max_tokens, 16); /* n_predict */
    assert_int_equal(q.model.len, 0);
    (void)state;
}

static struct json_req req_lit(const char *s)
{
    struct json_req q;

    assert_int_equal(json_req_parse(span_cstr(s), &toks, &q), 0);
    assert_true(q.valid);
    return q;
}

static void test_req_fields(void **state)
{
    struct json_req q;

    q = req_lit("{}");
    assert_false(q.stream);
    assert_false(q.has_include_usage);
    assert_int_equal(q.max_tokens, -1);
    assert_int_equal(q.model.len, 0);
    q = req_lit("{\"max_completion_tokens\":9,\"max_tokens\":7}");
    assert_int_equal(q.max_tokens, 7);
    q = req_lit("{\"max_tokens\":null,\"max_completion_tokens\":9}");
    assert_int_equal(q.max_tokens, 9);
    q = req_lit("{\"n_predict\":-1}");
    assert_int_equal(q.max_tokens, -1);
    q = req_lit("{\"n_predict\":32,\"max_completion_tokens\":8}");
    assert_int_equal(q.max_tokens, 8);
    q = req_lit("{\"stream\":\"true\"}");
    assert_false(q.stream);
    q = req_lit("{\"stream\":false,\"stream\":true}");
    assert_true(q.stream);
    q = req_lit("{\"stream\":true,\"stream_options\":{\"include_usage\":false}}");
    assert_true(q.stream);
    assert_true(q.has_include_usage);
    assert_false(q.include_usage);
    q = req_lit("{\"stream_options\":{\"include_usage\":false,\"include_usage\":true}}");
    assert_true(q.include_usage);
    q = req_lit("{\"stream_options\":null}");
    assert_false(q.has_include_usage);
    q = req_lit("{\"stream_options\":{\"continuous_usage_stats\":true}}");
    assert_false(q.has_include_usage);
    q = req_lit("{\"messages\":[{\"role\":\"user\",\"content\":\"max_tokens\"}],"
                "\"model\":\"m\\\"x\",\"extra\":{\"max_tokens\":5,\"stream\":true}}");
    assert_int_equal(q.max_tokens, -1);
    assert_false(q.stream);
    assert_span(q.model, "m\\\"x");
    (void)state;
}

/* ---- include_usage rewrite ---------------------------------------------- */

/* Top-level members of a JSON object text, found with jsmn directly. */
struct members {
    struct span key[64];
    struct span val[64];
    size_t n;
};

static struct span tok_raw(const char *js, const jsmntok_t *t)
{
    int q = t->type == JSMN_STRING ? 1 : 0;

    return span_make(js + t->start - q, (size_t)(t->end - t->start + 2 * q));
}

/* Members of the object at token o (o == 0: the root). */
static void members_of(const char *js, size_t len, const char *path, struct members *m)
{
    static jsmntok_t t[4096];
    jsmn_parser p;
    int n, i, o = 0;

    jsmn_init(&p);
    n = jsmn_parse(&p, js, len, t, 4096);
    assert_true(n > 0);
    assert_int_equal(t[0].type, JSMN_OBJECT);
    if (path != NULL) {
        for (i = 1, o = -1; i < n; i++) {
            if (t[i].parent == 0 && t[i].type == JSMN_STRING &&
                span_eq(span_make(js + t[i].start, (size_t)(t[i].end - t[i].start)), path))
                o = i + 1;
        }
        assert_true(o > 0);
        assert_int_equal(t[o].type, JSMN_OBJECT);
    }
    m->n = 0;
    for (i = o + 1; i < n; i++) {
        if (t[i].parent != o)
            continue;
        assert_true(m->n < 64);
        m->key[m->n] = tok_raw(js, &t[i]);
        m->val[m->n] = tok_raw(js, &t[i + 1]);
        m->n++;
    }
}

static bool members_has(const struct members *m, struct span key, struct span val)
{
    size_t i;

    for (i = 0; i < m->n; i++) {
        if (m->key[i].len == key.len && memcmp(m->key[i].p, key.p, key.len) == 0 &&
            m->val[i].len == val.len && memcmp(m->val[i].p, val.p, val.len) == 0)
            return true;
    }
    return false;
}

/* Rewrites body, checks the result asks for usage and keeps every other
 * member (top level and inside stream_options) byte for byte. */
static void check_rewrite(struct span body, char *out, size_t cap, long *outlen)
{
    static struct members before, after, so_before, so_after;
    struct json_req q0, q;
    long n;
    size_t i;

    assert_int_equal(json_req_parse(body, &toks, &q0), 0);
    n = json_req_add_include_usage(body, &toks, out, cap);
    assert_true(n > 0);
    *outlen = n;
    assert_int_equal(json_req_parse(span_make(out, (size_t)n), &toks, &q), 0);
    assert_true(q.has_include_usage);
    assert_true(q.include_usage);
    assert_int_equal(q.stream, q0.stream);
    assert_int_equal(q.max_tokens, q0.max_tokens);
    assert_int_equal(q.model.len, q0.model.len);
    if (q0.include_usage) {
        assert_int_equal(n, body.len);
        assert_memory_equal(out, body.p, body.len);
    }
    members_of(body.p, body.len, NULL, &before);
    members_of(out, (size_t)n, NULL, &after);
    for (i = 0; i < before.n; i++) {
        if (span_eq(before.key[i], "\"stream_options\""))
            continue;
        assert_true(members_has(&after, before.key[i], before.val[i]));
    }
    assert_true(after.n == before.n || after.n == before.n + 1);
    if (after.n == before.n + 1)
        assert_false(q0.has_include_usage);
    for (i = 0; i < before.n; i++) {
        if (span_eq(before.key[i], "\"stream_options\"") && before.val[i].p[0] == '{') {
            size_t k;

            members_of(body.p, body.len, "stream_options", &so_before);
            members_of(out, (size_t)n, "stream_options", &so_after);
            for (k = 0; k < so_before.n; k++) {
                if (!span_eq(so_before.key[k], "\"include_usage\""))
                    assert_true(members_has(&so_after, so_before.key[k], so_before.val[k]));
            }
        }
    }
}

static void expect_rewrite(const char *in, const char *want)
{
    char out[512];
    long n;

    check_rewrite(span_cstr(in), out, sizeof(out), &n);
    if ((size_t)n != strlen(want) || memcmp(out, want, (size_t)n) != 0)
        fail_msg("rewrite of %s gave %.*s, expected %s", in, (int)n, out, want);
    /* Exactly enough room works; one byte less does not. */
    assert_int_equal(json_req_add_include_usage(span_cstr(in), &toks, out, (size_t)n), n);
    assert_int_equal(json_req_add_include_usage(span_cstr(in), &toks, out, (size_t)n - 1), -1);
}

static void test_include_usage_rewrite(void **state)
{
    expect_rewrite("{\"model\":\"m\",\"stream\":true}",
                   "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    expect_rewrite("{}", "{\"stream_options\":{\"include_usage\":true}}");
    expect_rewrite(" { \"a\" : [1, {\"b\":2}] }\n",
                   " { \"a\" : [1, {\"b\":2}],\"stream_options\":{\"include_usage\":true} }\n");
    expect_rewrite("{\n  \"s\": \"x\"\n}\n",
                   "{\n  \"s\": \"x\",\"stream_options\":{\"include_usage\":true}\n}\n");
    expect_rewrite("{ }", "{\"stream_options\":{\"include_usage\":true} }");
    expect_rewrite("{\"stream_options\": { } }",
                   "{\"stream_options\": {\"include_usage\":true } }");
    expect_rewrite("{\"stream_options\":{\"continuous_usage_stats\":true},\"x\":1}",
                   "{\"stream_options\":{\"continuous_usage_stats\":true,\"include_usage\":true},"
                   "\"x\":1}");
    expect_rewrite("{\"stream_options\":{}}", "{\"stream_options\":{\"include_usage\":true}}");
    expect_rewrite("{\"stream\": true, \"stream_options\": {\n  \"include_usage\" : false \n} }",
                   "{\"stream\": true, \"stream_options\": {\n  \"include_usage\" : true \n} }");
    expect_rewrite("{\"stream_options\":{\"include_usage\":true},\"s\":\"}\"}",
                   "{\"stream_options\":{\"include_usage\":true},\"s\":\"}\"}");
    expect_rewrite("{\"stream_options\":null,\"a\":1}",
                   "{\"stream_options\":{\"include_usage\":true},\"a\":1}");
    expect_rewrite("{\"stream_options\":{\"include_usage\":null}}",
                   "{\"stream_options\":{\"include_usage\":true}}");
    expect_rewrite("{\"stream_options\":{\"include_usage\":\"false\"}}",
                   "{\"stream_options\":{\"include_usage\":true}}");
    /* A nested stream_options elsewhere is not the request's. */
    expect_rewrite("{\"m\":[{\"stream_options\":{}}]}",
                   "{\"m\":[{\"stream_options\":{}}],\"stream_options\":{\"include_usage\":true}}");
    expect_rewrite("{\"stream_options\":{\"include_usage\":false,\"include_usage\":true}}",
                   "{\"stream_options\":{\"include_usage\":false,\"include_usage\":true}}");
    /* Duplicates: the last one (the one backends keep) is changed. */
    expect_rewrite("{\"stream_options\":{\"include_usage\":true},"
                   "\"stream_options\":{\"include_usage\":false}}",
                   "{\"stream_options\":{\"include_usage\":true},"
                   "\"stream_options\":{\"include_usage\":true}}");
    (void)state;
}

static void test_include_usage_fixture_requests(void **state)
{
    static char out[65536];
    size_t i, n = 0;

    for (i = 0; i < fx.n; i++) {
        const struct fx_file *f = &fx.f[i];
        struct json_req q;
        long len;

        if (!f->request || f->len == 0 ||
            json_req_parse(span_make(f->body, f->len), &toks, &q) != 0)
            continue;
        assert_true(f->len + 64 < sizeof(out));
        check_rewrite(span_make(f->body, f->len), out, sizeof(out), &len);
        if (!q.has_include_usage) {
            /* Only the new member is added, just before the closing brace. */
            assert_int_equal((size_t)len,
                             f->len + strlen(",\"stream_options\":{\"include_usage\":true}"));
            assert_memory_equal(out, f->body, f->len - 1);
        }
        n++;
    }
    assert_true(n >= 20);
    (void)state;
}

/* ---- string decoding ---------------------------------------------------- */

static void expect_decode(const char *raw, size_t cap, const char *want, size_t want_len)
{
    char out[64];
    size_t n;

    assert_true(cap <= sizeof(out));
    memset(out, 'Z', sizeof(out));
    n = json_str_decode(span_cstr(raw), out, cap);
    if (n != want_len || memcmp(out, want, n) != 0)
        fail_msg("decode \"%s\" cap %zu: got %zu bytes", raw, cap, n);
    if (n < sizeof(out))
        assert_int_equal(out[n], 'Z'); /* nothing written past the result */
}

#define DECODE(raw, cap, want) expect_decode(raw, cap, want, sizeof(want) - 1)

static void test_str_decode(void **state)
{
    DECODE("plain", 64, "plain");
    DECODE("", 64, "");
    DECODE("a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti", 64, "a\"b\\c/d\be\ff\ng\rh\ti");
    DECODE("\\u0041\\u00e9\\u20AC", 64, "A\xC3\xA9\xE2\x82\xAC");
    DECODE("\\ud83d\\ude00!", 64, "\xF0\x9F\x98\x80!");
    DECODE("\\u2019", 64, "\xE2\x80\x99");
    DECODE("\\u0000x", 64, "\0x");
    /* Lone surrogates become U+FFFD. */
    DECODE("\\ud83dx", 64, "\xEF\xBF\xBDx");
    DECODE("\\ude00", 64, "\xEF\xBF\xBD");
    DECODE("\\ud83d\\u0041", 64,
           "\xEF\xBF\xBD"
           "A");
    DECODE("\\ud83d\\ud83d\\ude00", 64, "\xEF\xBF\xBD\xF0\x9F\x98\x80");
    /* Invalid escapes are copied literally. */
    DECODE("\\x", 64, "\\x");
    DECODE("\\u12G4", 64, "\\u12G4");
    DECODE("\\u12", 64, "\\u12");
    DECODE("end\\", 64, "end\\");
    /* Raw UTF-8 passes through. */
    DECODE("caf\xC3\xA9 \xF0\x9F\x98\x80", 64, "caf\xC3\xA9 \xF0\x9F\x98\x80");
    /* cap never splits a sequence, escaped or raw. */
    DECODE("ab", 1, "a");
    DECODE("\\n", 0, "");
    DECODE("a\xC3\xA9", 2, "a");
    DECODE("a\xC3\xA9", 3, "a\xC3\xA9");
    DECODE("\\u20ac", 2, "");
    DECODE("x\\ud83d\\ude00", 4, "x");
    DECODE("x\\ud83d\\ude00", 5, "x\xF0\x9F\x98\x80");
    DECODE("\xF0\x9F\x98\x80", 3, "");
    (void)state;
}

/* ---- string encoding ---------------------------------------------------- */

static void expect_encode(const char *in, size_t in_len, size_t cap, const char *want,
                          size_t want_len)
{
    char out[96];
    size_t n;

    assert_true(cap <= sizeof(out));
    memset(out, 'Z', sizeof(out));
    n = json_str_encode(span_make(in, in_len), out, cap);
    if (n != want_len || memcmp(out, want, n) != 0)
        fail_msg("encode \"%s\" cap %zu: got %zu bytes \"%.*s\"", in, cap, n, (int)n, out);
    if (n < sizeof(out))
        assert_int_equal(out[n], 'Z'); /* nothing written past the result */
}

#define ENCODE(in, cap, want) expect_encode(in, sizeof(in) - 1, cap, want, sizeof(want) - 1)

static void test_str_encode(void **state)
{
    ENCODE("plain", 96, "plain");
    ENCODE("", 96, "");
    ENCODE("a\"b\\c/d", 96, "a\\\"b\\\\c/d");
    ENCODE("\x01\n\t\x1f\x7f", 96, "\\u0001\\u000a\\u0009\\u001f\\u007f");
    ENCODE("\0x", 96, "\\u0000x");
    /* well-formed UTF-8 passes; every other byte is U+FFFD */
    ENCODE("caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82\xAC", 96,
           "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82\xAC");
    ENCODE("\xff!", 96, "\\ufffd!");
    ENCODE("\xC3", 96, "\\ufffd");                                  /* cut short */
    ENCODE("\xC0\xAF", 96, "\\ufffd\\ufffd");                       /* overlong */
    ENCODE("\xED\xA0\x80", 96, "\\ufffd\\ufffd\\ufffd");            /* a surrogate */
    ENCODE("\xF4\x90\x80\x80", 96, "\\ufffd\\ufffd\\ufffd\\ufffd"); /* past U+10FFFF */
    ENCODE("\xF4\x8F\xBF\xBF", 96, "\xF4\x8F\xBF\xBF");             /* U+10FFFF */
    /* cap never splits a unit */
    ENCODE("ab", 1, "a");
    ENCODE("a\"", 2, "a");
    ENCODE("a\x01", 6, "a");
    ENCODE("a\xC3\xA9", 2, "a");
    ENCODE("a\xC3\xA9", 3, "a\xC3\xA9");
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_fixture_event),
        cmocka_unit_test(test_llamacpp_chat_events),
        cmocka_unit_test(test_llamacpp_completions_and_native),
        cmocka_unit_test(test_nonstream_bodies),
        cmocka_unit_test(test_api_captures),
        cmocka_unit_test(test_api_events),
        cmocka_unit_test(test_error_bodies),
        cmocka_unit_test(test_tgi_events),
        cmocka_unit_test(test_vllm_openai_events),
        cmocka_unit_test(test_output_kinds),
        cmocka_unit_test(test_finish_reasons),
        cmocka_unit_test(test_usage_timings_errors),
        cmocka_unit_test(test_not_objects),
        cmocka_unit_test(test_req_fixtures),
        cmocka_unit_test(test_req_fields),
        cmocka_unit_test(test_include_usage_rewrite),
        cmocka_unit_test(test_include_usage_fixture_requests),
        cmocka_unit_test(test_str_decode),
        cmocka_unit_test(test_str_encode),
    };

    return cmocka_run_group_tests_name("json", tests, fixtures_setup, fixtures_teardown);
}
