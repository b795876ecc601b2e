/* Unit tests for meter: every fixture stream fed event by event at made-up
 * times (exact TTFT, ITL, E2E, TPOT, tokens and flags per stream), real
 * captured timings, and hand-made streams for each rule of the contract. */
#include "pitot/measure/meter.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pitot/format/json.h"
#include "pitot/measure/refusal.h"
#include "pitot/format/sse.h"

#include "fixture.h"

static struct json_toks toks;
static struct refusal_phrases *defaults; /* owned: the built-in refusal phrases */

/* ---- fixtures ---------------------------------------------------------- */

static struct fx_set fx;

static int fixtures_setup(void **state)
{
    toks.cap = JSON_TOKENS_DEFAULT;
    toks.tok = malloc(json_toks_size(toks.cap));
    defaults = refusal_phrases_new(NULL, 0);
    if (toks.tok == NULL || defaults == NULL)
        return -1;
    fx_set_load(&fx);
    (void)state;
    return 0;
}

static int fixtures_teardown(void **state)
{
    fx_set_release(&fx);
    free(toks.tok);
    refusal_phrases_free(defaults);
    (void)state;
    return 0;
}

/* ---- expected results per fixture stream -------------------------------- */

/* Made-up monotonic clock: the request head at T0, SSE event k (pings and
 * [DONE] included) at T0 + 300 ms + 20 ms * k, the last byte 5 ms after the
 * last event. Stall threshold 50 ms: only the four pings of
 * sse-ping-interval-2 stretch a gap (to 100 ms) past it. */
#define T0_US 1000000u
#define EVENT_US(k) (T0_US + 300000u + 20000u * (uint64_t)(k))
#define STALL_US 50000u

struct want {
    const char *name;
    int64_t max_tokens; /* the request's limit (from .req.http for llama.cpp) */
    size_t nev;         /* SSE events, pings and [DONE] included */
    uint64_t n_out;     /* output-carrying events */
    int64_t ttft_us, e2e_us, itl_max_us, itl_p50_us, tpot_us;
    unsigned stalls;
    enum meter_tok_src src;
    int64_t prompt, completion, cached;
    enum json_finish finish;
    bool truncated, refusal, error;
    int64_t counted; /* completion estimate when usage and timings are
                            withheld: output events, +1 after "stop"; -1 none */
};

/* TTFT is the first content (not the role-only chunk: event 1 of chat
 * streams; event 0 of native, /v1/completions and TGI generate streams).
 * TPOT = (E2E - TTFT) / (completion - 1), integer division. ITL p50 is the
 * exact median (every stream here has fewer than METER_GAPS_EXACT gaps): the one
 * 100 ms gap among 58 of 20 ms leaves it at 20 ms. */
static const struct want wants[] = {
    { "llama.cpp/chat-stream-basic.http", 16, 19, 16, 320000, 665000, 20000, 20000, 23000, 0,
      METER_TOK_TIMINGS, 61, 16, 60, JSON_FINISH_LENGTH, true, false, false, 16 },
    { "llama.cpp/chat-stream-client-abort-after-5-events.http", 500, 5, 4, 320000, 385000, 20000,
      20000, 21666, 0, METER_TOK_COUNTED, -1, 4, -1, JSON_FINISH_NONE, false, false, false, 4 },
    { "llama.cpp/chat-stream-context-full-tiny.http", 100, 23, 20, 320000, 745000, 20000, 20000,
      22368, 0, METER_TOK_TIMINGS, 2028, 20, 0, JSON_FINISH_LENGTH, true, false, false, 20 },
    { "llama.cpp/chat-stream-gap-during-other-prefill.http", 60, 64, 60, 320000, 1565000, 20000,
      20000, 21101, 0, METER_TOK_USAGE, 61, 60, 60, JSON_FINISH_LENGTH, true, false, false, 60 },
    { "llama.cpp/chat-stream-include-usage.http", 16, 20, 16, 320000, 685000, 20000, 20000, 24333,
      0, METER_TOK_USAGE, 61, 16, 60, JSON_FINISH_LENGTH, true, false, false, 16 },
    { "llama.cpp/chat-stream-length-max-tokens-3.http", 3, 6, 3, 320000, 405000, 20000, 20000,
      42500, 0, METER_TOK_TIMINGS, 61, 3, 60, JSON_FINISH_LENGTH, true, false, false, 3 },
    { "llama.cpp/chat-stream-sse-ping-interval-2.http", 60, 68, 60, 320000, 1645000, 100000, 20000,
      22457, 1, METER_TOK_USAGE, 61, 60, 0, JSON_FINISH_LENGTH, true, false, false, 60 },
    { "llama.cpp/chat-stream-stop-eos.http", 16, 4, 0, -1, 365000, -1, -1, -1, 0, METER_TOK_USAGE,
      61, 1, 60, JSON_FINISH_STOP, false, false, false, -1 },
    { "llama.cpp/chat-stream-stop-string.http", 32, 14, 10, 320000, 565000, 20000, 20000, 24500, 0,
      METER_TOK_USAGE, 61, 11, 60, JSON_FINISH_STOP, false, false, false, 11 },
    { "llama.cpp/chat-stream-timing-small.http", 64, 68, 64, 320000, 1645000, 20000, 20000, 21031,
      0, METER_TOK_USAGE, 61, 64, 0, JSON_FINISH_LENGTH, true, false, false, 64 },
    { "llama.cpp/chat-stream-timing-tiny.http", 200, 204, 200, 320000, 4365000, 20000, 20000, 20326,
      0, METER_TOK_USAGE, 61, 200, 0, JSON_FINISH_LENGTH, true, false, false, 200 },
    { "llama.cpp/apis/anthropic-messages-stream-system.http", 8, 13, 8, 340000, 545000, 20000,
      20000, 29285, 0, METER_TOK_USAGE, 60, 8, 8, JSON_FINISH_LENGTH, true, false, false, 8 },
    { "llama.cpp/apis/anthropic-messages-stream.http", 12, 17, 12, 340000, 625000, 20000, 20000,
      25909, 0, METER_TOK_USAGE, 39, 12, 38, JSON_FINISH_LENGTH, true, false, false, 12 },
    { "llama.cpp/apis/chat-stream-any-model-name.http", 4, 7, 4, 320000, 425000, 20000, 20000,
      35000, 0, METER_TOK_TIMINGS, 39, 4, 38, JSON_FINISH_LENGTH, true, false, false, 4 },
    /* llama.cpp reports "completed" at the max_output_tokens limit too: the
     * finish is stop, the limit reached makes it truncated */
    { "llama.cpp/apis/responses-stream.http", 12, 20, 12, 380000, 685000, 20000, 20000, 27727, 0,
      METER_TOK_USAGE, 39, 12, 0, JSON_FINISH_STOP, true, false, false, 12 },
    { "llama.cpp/chat-stream-timings-per-token.http", 4, 7, 4, 320000, 425000, 20000, 20000, 35000,
      0, METER_TOK_TIMINGS, 61, 4, 60, JSON_FINISH_LENGTH, true, false, false, 4 },
    { "llama.cpp/completion-native-stream.http", 16, 17, 16, 300000, 625000, 20000, 20000, 21666, 0,
      METER_TOK_TIMINGS, 5, 16, 4, JSON_FINISH_LENGTH, true, false, false, 16 },
    { "llama.cpp/v1-completions-stream-include-usage.http", 16, 18, 16, 300000, 645000, 20000,
      20000, 23000, 0, METER_TOK_USAGE, 5, 16, 4, JSON_FINISH_LENGTH, true, false, false, 16 },
    { "llama.cpp/v1-completions-stream.http", 16, 18, 16, 300000, 645000, 20000, 20000, 23000, 0,
      METER_TOK_USAGE, 5, 16, 1, JSON_FINISH_LENGTH, true, false, false, 16 },
    { "openai/stream_chat_include_usage.sse", -1, 11, 7, 320000, 505000, 20000, 20000, 26428, 0,
      METER_TOK_USAGE, 24, 8, 0, JSON_FINISH_STOP, false, false, false, 8 },
    { "openai/stream_error_midstream.sse", -1, 6, 4, 320000, 405000, 20000, 20000, 28333, 0,
      METER_TOK_COUNTED, -1, 4, -1, JSON_FINISH_NONE, false, false, true, 4 },
    { "openai/stream_refusal.sse", -1, 14, 11, 320000, 565000, 20000, 20000, 22272, 0,
      METER_TOK_COUNTED, -1, 12, -1, JSON_FINISH_STOP, false, true, false, 12 },
    { "tgi/generate_stream.sse", -1, 17, 16, 300000, 625000, 20000, 20000, 20312, 0,
      METER_TOK_USAGE, 7, 17, -1, JSON_FINISH_STOP, false, false, false, 17 },
    { "tgi/generate_stream_error.sse", -1, 4, 3, 300000, 365000, 20000, 20000, 32500, 0,
      METER_TOK_COUNTED, -1, 3, -1, JSON_FINISH_NONE, false, false, true, 3 },
    { "tgi/stream_chat.sse", -1, 19, 15, 320000, 665000, 20000, 20000, 23000, 0, METER_TOK_USAGE,
      43, 16, -1, JSON_FINISH_STOP, false, false, false, 16 },
    { "vllm/stream_chat_error_midstream.sse", -1, 7, 4, 320000, 425000, 20000, 20000, 35000, 0,
      METER_TOK_COUNTED, -1, 4, -1, JSON_FINISH_NONE, false, false, true, 4 },
    { "vllm/stream_chat_include_usage.sse", -1, 11, 7, 320000, 505000, 20000, 20000, 26428, 0,
      METER_TOK_USAGE, 49, 8, -1, JSON_FINISH_STOP, false, false, false, 8 },
    { "vllm/stream_chat_no_usage.sse", -1, 14, 12, 320000, 565000, 20000, 20000, 22272, 0,
      METER_TOK_COUNTED, -1, 12, -1, JSON_FINISH_LENGTH, true, false, false, 12 },
};

#define NWANTS (sizeof(wants) / sizeof(wants[0]))

/* Feeds a whole stream to m, event k at EVENT_US(k), checking each reported
 * gap. With `withhold`, usage and timings are hidden from mtr (a backend
 * that reports no counts). Returns the number of SSE events. */
static size_t feed_stream(struct meter *m, const struct fx_file *f, bool withhold)
{
    struct sse_scanner s;
    size_t at = 0, k = 0, c;
    uint64_t prev_out = 0;
    bool any_out = false;

    sse_scan_init(&s);
    while (at < f->len) {
        struct sse_event ev;
        struct json_resp r;
        uint64_t gap = 12345, now = EVENT_US(k);

        if (sse_scan(&s, span_make(f->body + at, f->len - at), &c) != SPAN_OK)
            fail_msg("%s: stream ends inside an event at %zu", f->name, at);
        sse_event_decode(span_make(f->body + at, c), NULL, 0, &ev);
        at += c;
        k++;
        if (!ev.has_data || ev.done)
            continue;
        assert_false(ev.truncated);
        if (json_resp_parse(ev.data, &toks, &r) != 0)
            fail_msg("%s: event %zu is not a JSON object", f->name, k - 1);
        if (withhold)
            r.has_usage = r.has_timings = false;
        if (meter_event(m, &r, now, &gap)) {
            assert_int_equal(gap, any_out ? now - prev_out : 0);
            prev_out = now;
            any_out = true;
        } else {
            assert_int_equal(gap, 12345); /* untouched */
        }
    }
    return k;
}

static void check_result(const char *name, const struct meter_result *res, const struct want *w)
{
    if (res->ttft_us != w->ttft_us || res->e2e_us != w->e2e_us ||
        res->itl_max_us != w->itl_max_us || res->itl_p50_us != w->itl_p50_us ||
        res->tpot_us != w->tpot_us)
        fail_msg("%s: ttft %lld e2e %lld itl max %lld p50 %lld tpot %lld", name,
                 (long long)res->ttft_us, (long long)res->e2e_us, (long long)res->itl_max_us,
                 (long long)res->itl_p50_us, (long long)res->tpot_us);
    if (res->tok_src != w->src || res->prompt_tokens != w->prompt ||
        res->completion_tokens != w->completion || res->cached_tokens != w->cached)
        fail_msg("%s: tokens src %d prompt %lld completion %lld cached %lld", name,
                 (int)res->tok_src, (long long)res->prompt_tokens,
                 (long long)res->completion_tokens, (long long)res->cached_tokens);
    if (res->truncated != w->truncated)
        fail_msg("%s: truncated %d", name, res->truncated);
}

/* ---- fixture tests ------------------------------------------------------ */

static void test_fixtures_covered(void **state)
{
    size_t i, j, nsse = 0;

    /* Every stream has a row and every row a stream: a new fixture fails
     * here until its expected values are written down. */
    for (i = 0; i < fx.n; i++) {
        if (!fx.f[i].sse)
            continue;
        nsse++;
        for (j = 0; j < NWANTS && strcmp(wants[j].name, fx.f[i].name) != 0; j++)
            ;
        if (j == NWANTS)
            fail_msg("fixture stream %s has no expected values", fx.f[i].name);
    }
    for (j = 0; j < NWANTS; j++)
        assert_true(fx_set_find(&fx, wants[j].name)->sse);
    assert_int_equal(nsse, NWANTS);
    (void)state;
}

static void test_fixture_max_tokens(void **state)
{
    char name[320];
    size_t j;

    /* The limits in the table are the ones the llama.cpp captures asked for. */
    for (j = 0; j < NWANTS; j++) {
        const struct want *w = &wants[j];
        const struct fx_file *req;
        struct json_req q;
        size_t n = strlen(w->name);

        if (n < 5 || strcmp(w->name + n - 5, ".http") != 0)
            continue;
        snprintf(name, sizeof(name), "%.*s.req.http", (int)(n - 5), w->name);
        req = fx_set_find(&fx, name);
        assert_true(req->request);
        assert_int_equal(json_req_parse(span_make(req->body, req->len), &toks, &q), 0);
        assert_true(q.stream);
        if (q.max_tokens != w->max_tokens)
            fail_msg("%s: request max_tokens %lld", w->name, (long long)q.max_tokens);
    }
    (void)state;
}

static void test_fixture_streams(void **state)
{
    size_t j;

    for (j = 0; j < NWANTS; j++) {
        const struct want *w = &wants[j];
        struct meter m;
        struct meter_result res;
        size_t nev;

        meter_init(&m, T0_US, STALL_US, w->max_tokens, defaults);
        nev = feed_stream(&m, fx_set_find(&fx, w->name), false);
        assert_int_equal(nev, w->nev);
        meter_finish(&m, EVENT_US(nev - 1) + 5000, &res);
        check_result(w->name, &res, w);
        if (m.n_out != w->n_out || m.stalls != w->stalls || m.finish != w->finish ||
            m.refusal != w->refusal || m.error_event != w->error)
            fail_msg("%s: n_out %llu stalls %u finish %d refusal %d error %d", w->name,
                     (unsigned long long)m.n_out, m.stalls, (int)m.finish, m.refusal,
                     m.error_event);
    }
    (void)state;
}

static void test_fixture_counted_estimate(void **state)
{
    size_t j;

    /* Without usage and timings the count of output events stands in, plus
     * the stop token after "stop": on every stream with output it then
     * equals what the server itself counted. */
    for (j = 0; j < NWANTS; j++) {
        const struct want *w = &wants[j];
        struct meter m;
        struct meter_result res;
        size_t nev;

        meter_init(&m, T0_US, STALL_US, w->max_tokens, defaults);
        nev = feed_stream(&m, fx_set_find(&fx, w->name), true);
        meter_finish(&m, EVENT_US(nev - 1) + 5000, &res);
        assert_int_equal(res.ttft_us, w->ttft_us);
        assert_int_equal(res.itl_max_us, w->itl_max_us);
        assert_int_equal(res.prompt_tokens, -1);
        assert_int_equal(res.cached_tokens, -1);
        if (res.completion_tokens != w->counted)
            fail_msg("%s: counted %lld, expected %lld", w->name, (long long)res.completion_tokens,
                     (long long)w->counted);
        assert_int_equal(res.tok_src, w->counted >= 0 ? METER_TOK_COUNTED : METER_TOK_NONE);
        if (w->n_out > 0)
            assert_int_equal(res.completion_tokens, w->completion);
        if (res.completion_tokens > 1)
            assert_int_equal(res.tpot_us, (res.e2e_us - res.ttft_us) / (res.completion_tokens - 1));
        else
            assert_int_equal(res.tpot_us, -1);
    }
    (void)state;
}

static void test_fixture_refusal_via_delta(void **state)
{
    const char *name = "openai/stream_refusal.sse";
    struct meter m;
    size_t nev;

    /* No phrase list at all: the refusal comes from delta.refusal alone. */
    meter_init(&m, T0_US, 0, -1, NULL);
    nev = feed_stream(&m, fx_set_find(&fx, name), false);
    assert_int_equal(nev, 14);
    assert_true(m.refusal);
    assert_int_equal(m.n_out, 11);
    assert_int_equal(m.stalls, 0); /* stall_us 0: no threshold */
    /* An ordinary answer is none. */
    meter_init(&m, T0_US, 0, -1, NULL);
    feed_stream(&m, fx_set_find(&fx, "vllm/stream_chat_include_usage.sse"), false);
    assert_false(m.refusal);
    (void)state;
}

/* One line of a *.events.jsonl capture. */
struct jsonl_event {
    uint64_t t_us; /* time.monotonic_ns() / 1000 */
    double since_send_ms;
    char data[8192]; /* decoded "data" string */
    size_t len;
};

static bool jsonl_next(const char **p, struct jsonl_event *e)
{
    const char *line = *p, *nl, *t, *s, *d;
    size_t i;

    if (*line == '\0')
        return false;
    nl = strchr(line, '\n');
    t = strstr(line, "\"t_ns\": ");
    s = strstr(line, "\"since_send_ms\": ");
    d = strstr(line, "\"data\": \"");
    assert_true(t != NULL && s != NULL && d != NULL && (nl == NULL || d < nl));
    e->t_us = strtoull(t + 8, NULL, 10) / 1000;
    e->since_send_ms = strtod(s + 17, NULL);
    d += 9;
    for (i = 0; d[i] != '"'; i++) {
        assert_true(d[i] != '\0' && d[i] != '\n');
        if (d[i] == '\\')
            i++;
    }
    assert_true(i < sizeof(e->data));
    e->len = json_str_decode(span_make(d, i), e->data, sizeof(e->data));
    *p = nl != NULL ? nl + 1 : line + strlen(line);
    return true;
}

/* Feeds a capture at its real arrival times (the request sent at t0). */
static void feed_capture(const char *name, struct meter *m, uint64_t *end_us)
{
    char path[1024];
    struct jsonl_event *e = malloc(sizeof(*e));
    const char *p;
    size_t len;
    char *text;
    bool first = true;

    assert_non_null(e);
    snprintf(path, sizeof(path), "llama.cpp/%s.events.jsonl", name);
    text = fx_read(path, &len);
    assert_non_null(text);
    for (p = text; jsonl_next(&p, e);) {
        struct json_resp r;
        uint64_t gap;

        if (first) {
            meter_init(m, e->t_us - (uint64_t)llround(e->since_send_ms * 1000), 10000000, -1,
                       defaults);
            first = false;
        }
        *end_us = e->t_us;
        if (span_eq(span_make(e->data, e->len), ":") ||
            span_eq(span_make(e->data, e->len), "[DONE]"))
            continue;
        assert_int_equal(json_resp_parse(span_make(e->data, e->len), &toks, &r), 0);
        meter_event(m, &r, e->t_us, &gap);
    }
    assert_false(first);
    free(text);
    free(e);
}

static void test_real_timings(void **state)
{
    struct meter m;
    struct meter_result res;
    uint64_t end = 0;

    /* Values from the capture and its summary.json: first content 320.04 ms
     * after the send, [DONE] at 1660.81 ms, content gaps 18.3..30.489 ms
     * (median 20.859 ms, exact since fewer than METER_GAPS_EXACT gaps), the
     * server's 21.338 ms per token. */
    feed_capture("chat-stream-timing-small", &m, &end);
    meter_finish(&m, end, &res);
    assert_int_equal(res.ttft_us, 320040);
    assert_in_range(res.e2e_us, 1660809, 1660811);
    assert_int_equal(res.itl_max_us, 30489);
    assert_int_equal(res.itl_p50_us, 20859);
    assert_int_equal(m.stalls, 0);
    assert_int_equal(res.completion_tokens, 64);
    /* TPOT agrees with the server's own per-token time within 1 %. */
    assert_in_range(res.tpot_us, 21338 - 213, 21338 + 213);
    assert_true(res.truncated);

    /* Stream A waits 12.863164 s while another request's prompt is
     * processed: one stall over the 10 s default. The median gap stays at
     * 20.819 ms: exact, where a P-square estimate, dragged by that one gap
     * among 59, would read 30.322 ms. */
    feed_capture("chat-stream-gap-during-other-prefill", &m, &end);
    meter_finish(&m, end, &res);
    assert_int_equal(res.ttft_us, 43343);
    assert_int_equal(res.itl_max_us, 12863164);
    assert_int_equal(res.itl_p50_us, 20819);
    assert_int_equal(m.stalls, 1);
    assert_int_equal(m.n_out, 60);
    (void)state;
}

static void test_body_nonstream(void **state)
{
    const struct fx_file *f;
    struct json_resp r;
    struct meter_result res;
    struct meter m;

    /* Chat body: usage and timings; usage wins. No timing of tokens. */
    f = fx_set_find(&fx, "llama.cpp/chat-nonstream.http");
    assert_false(f->sse);
    assert_int_equal(json_resp_parse(span_make(f->body, f->len), &toks, &r), 0);
    assert_true(r.has_output);
    meter_init(&m, T0_US, STALL_US, 16, defaults);
    meter_body(&m, &r);
    meter_finish(&m, T0_US + 350000, &res);
    assert_int_equal(m.n_out, 0);
    assert_int_equal(res.ttft_us, -1);
    assert_int_equal(res.itl_max_us, -1);
    assert_int_equal(res.itl_p50_us, -1);
    assert_int_equal(res.tpot_us, -1);
    assert_int_equal(res.e2e_us, 350000);
    assert_int_equal(res.tok_src, METER_TOK_USAGE);
    assert_int_equal(res.prompt_tokens, 61);
    assert_int_equal(res.completion_tokens, 16);
    assert_int_equal(res.cached_tokens, 60);
    assert_int_equal(m.finish, JSON_FINISH_LENGTH);
    assert_true(res.truncated);
    assert_false(m.refusal);

    /* Native /completion body: timings only, stop_type "limit". */
    f = fx_set_find(&fx, "llama.cpp/completion-native-nonstream.http");
    assert_int_equal(json_resp_parse(span_make(f->body, f->len), &toks, &r), 0);
    meter_init(&m, T0_US, STALL_US, 16, defaults);
    meter_body(&m, &r);
    meter_finish(&m, T0_US + 330000, &res);
    assert_int_equal(m.n_out, 0);
    assert_int_equal(res.ttft_us, -1);
    assert_int_equal(res.tpot_us, -1);
    assert_int_equal(res.e2e_us, 330000);
    assert_int_equal(res.tok_src, METER_TOK_TIMINGS);
    assert_int_equal(res.prompt_tokens, 5); /* prompt_n 1 + cache_n 4 */
    assert_int_equal(res.completion_tokens, 16);
    assert_int_equal(res.cached_tokens, 4);
    assert_int_equal(m.finish, JSON_FINISH_LENGTH);
    assert_true(res.truncated);
    (void)state;
}

/* ---- hand-made streams -------------------------------------------------- */

static void parse(const char *json, struct json_resp *r)
{
    if (json_resp_parse(span_cstr(json), &toks, r) != 0 || !r->valid)
        fail_msg("not a response object: %s", json);
}

/* Feeds one JSON object at now_us; returns meter_event()'s verdict. */
static bool feed(struct meter *m, const char *json, uint64_t now_us, uint64_t *gap_us)
{
    struct json_resp r;
    uint64_t gap = 0;

    parse(json, &r);
    return meter_event(m, &r, now_us, gap_us != NULL ? gap_us : &gap);
}

/* A chat chunk with delta.content (JSON-escaped text). */
static bool feed_content(struct meter *m, const char *text, uint64_t now_us, uint64_t *gap_us)
{
    char buf[1024];

    snprintf(buf, sizeof(buf),
             "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"},\"finish_reason\":null}]}",
             text);
    return feed(m, buf, now_us, gap_us);
}

#define ROLE_CHUNK                                                                                 \
    "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null},"              \
    "\"finish_reason\":null}]}"
#define FINISH_CHUNK(reason)                                                                       \
    "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"" reason "\"}]}"

static void test_ttft_skips_role_chunk(void **state)
{
    struct meter_result res;
    struct meter m;
    uint64_t gap = 99;

    meter_init(&m, 5000000, 0, -1, NULL);
    assert_false(feed(&m, ROLE_CHUNK, 5100000, &gap));
    assert_int_equal(gap, 99);
    assert_false(
        feed(&m, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"}}]}", 5150000, &gap));
    assert_true(feed_content(&m, "Hi", 5400000, &gap));
    assert_int_equal(gap, 0);
    assert_true(feed_content(&m, " there", 5430000, &gap));
    assert_int_equal(gap, 30000);
    meter_finish(&m, 5500000, &res);
    assert_int_equal(res.ttft_us, 400000);
    assert_int_equal(res.e2e_us, 500000);
    assert_int_equal(res.itl_max_us, 30000);
    assert_int_equal(res.itl_p50_us, 30000);
    assert_int_equal(res.tok_src, METER_TOK_COUNTED);
    assert_int_equal(res.completion_tokens, 2);
    assert_int_equal(res.tpot_us, 100000);

    /* A role chunk that already carries text (TGI) is the first token;
     * reasoning counts as output too. */
    meter_init(&m, 5000000, 0, -1, NULL);
    assert_true(feed(&m,
                     "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                     "\"reasoning_content\":\"Hmm\"},\"finish_reason\":null}]}",
                     5250000, &gap));
    meter_finish(&m, 5300000, &res);
    assert_int_equal(res.ttft_us, 250000);
    assert_int_equal(res.itl_max_us, -1); /* one output event: no gap */
    assert_int_equal(res.itl_p50_us, -1);
    assert_int_equal(res.tpot_us, -1); /* one token */
    (void)state;
}

static void test_no_output(void **state)
{
    struct meter_result res;
    struct meter m;

    meter_init(&m, 1000, 0, -1, NULL);
    meter_finish(&m, 1000, &res);
    assert_int_equal(res.ttft_us, -1);
    assert_int_equal(res.e2e_us, 0);
    assert_int_equal(res.itl_max_us, -1);
    assert_int_equal(res.itl_p50_us, -1);
    assert_int_equal(res.tpot_us, -1);
    assert_int_equal(res.tok_src, METER_TOK_NONE);
    assert_int_equal(res.prompt_tokens, -1);
    assert_int_equal(res.completion_tokens, -1);
    assert_int_equal(res.cached_tokens, -1);
    assert_false(res.truncated);
    /* A "stop" with nothing streamed: no estimate (no event to count). */
    assert_false(feed(&m, ROLE_CHUNK, 2000, NULL));
    assert_false(feed(&m, FINISH_CHUNK("stop"), 3000, NULL));
    meter_finish(&m, 4000, &res);
    assert_int_equal(res.tok_src, METER_TOK_NONE);
    assert_int_equal(res.completion_tokens, -1);
    assert_int_equal(m.finish, JSON_FINISH_STOP);
    (void)state;
}

/* The median is exact while every gap is kept: 512 gaps, half 3 ms then half
 * 1 ms, give 2 ms; past the cap the P-square estimate takes over and stays
 * within the data's range. */
static void test_itl_p50_exact_up_to_cap(void **state)
{
    struct meter m;
    struct meter_result res;
    uint64_t t = 0;
    int i;

    meter_init(&m, 0, 0, -1, NULL);
    feed_content(&m, "a", t, NULL);
    for (i = 0; i < METER_GAPS_EXACT; i++) {
        t += i < METER_GAPS_EXACT / 2 ? 3000 : 1000;
        feed_content(&m, "b", t, NULL);
    }
    meter_finish(&m, t, &res);
    assert_int_equal(res.itl_p50_us, 2000);
    for (i = 0; i < 100; i++) {
        t += 1000;
        feed_content(&m, "c", t, NULL);
    }
    meter_finish(&m, t, &res);
    assert_in_range(res.itl_p50_us, 1000, 3000);
    (void)state;
}

static void test_itl_max_and_p50(void **state)
{
    static const uint64_t gaps[] = { 10000, 30000, 20000, 50000, 40000 };
    struct meter_result res;
    struct meter m;
    uint64_t t = 200000, gap;
    size_t i;

    /* Five gaps: the median is exact (30 ms; the mean too, so the skewed
     * case below tells them apart). */
    meter_init(&m, 0, 0, -1, NULL);
    assert_true(feed_content(&m, "a", t, &gap));
    for (i = 0; i < 5; i++) {
        t += gaps[i];
        assert_true(feed_content(&m, "b", t, &gap));
        assert_int_equal(gap, gaps[i]);
    }
    meter_finish(&m, t, &res);
    assert_int_equal(res.itl_max_us, 50000);
    assert_int_equal(res.itl_p50_us, 30000);
    assert_int_equal(res.ttft_us, 200000);
    assert_int_equal(res.completion_tokens, 6);
    assert_int_equal(res.tpot_us, 150000 / 5);

    /* Skewed gaps: median 1 ms, mean far above it. */
    meter_init(&m, 0, 0, -1, NULL);
    t = 0;
    feed_content(&m, "a", t, NULL);
    for (i = 0; i < 5; i++) {
        t += i == 4 ? 900000 : 1000;
        feed_content(&m, "b", t, NULL);
    }
    meter_finish(&m, t, &res);
    assert_int_equal(res.itl_p50_us, 1000);
    assert_int_equal(res.itl_max_us, 900000);

    /* Two gaps: the mean of both, rounded to the nearest microsecond. */
    meter_init(&m, 0, 0, -1, NULL);
    feed_content(&m, "a", 0, NULL);
    feed_content(&m, "b", 1000, NULL);
    feed_content(&m, "c", 3001, NULL);
    meter_finish(&m, 3001, &res);
    assert_int_equal(res.itl_p50_us, 1501); /* 1500.5 */
    assert_int_equal(res.itl_max_us, 2001);

    /* A clock that stepped back gives a zero gap, not a huge one. */
    meter_init(&m, 0, 0, -1, NULL);
    feed_content(&m, "a", 50000, NULL);
    assert_true(feed_content(&m, "b", 40000, &gap));
    assert_int_equal(gap, 0);
    (void)state;
}

static void test_stalls(void **state)
{
    struct meter m;
    uint64_t gap;

    /* Threshold 500 ms: strictly above counts. Non-output events (pings
     * relayed as keep-alive chunks, usage) in between do not split a gap. */
    meter_init(&m, 0, 500000, -1, NULL);
    feed_content(&m, "a", 1000000, NULL); /* TTFT of 1 s is no stall */
    feed_content(&m, "b", 1499999, NULL);
    feed_content(&m, "c", 1999999, NULL); /* exactly 500 ms */
    assert_int_equal(m.stalls, 0);
    feed_content(&m, "d", 2500000, NULL); /* 500.001 ms */
    assert_int_equal(m.stalls, 1);
    assert_false(
        feed(&m, "{\"choices\":[{\"index\":0,\"delta\":{}}],\"usage\":null}", 2900000, NULL));
    assert_true(feed_content(&m, "e", 4500000, &gap));
    assert_int_equal(gap, 2000000);
    assert_int_equal(m.stalls, 2);
    assert_int_equal(m.itl_max_us, 2000000);

    /* No threshold: no stalls however long the gap. */
    meter_init(&m, 0, 0, -1, NULL);
    feed_content(&m, "a", 1, NULL);
    feed_content(&m, "b", 600000000, NULL);
    assert_int_equal(m.stalls, 0);
    (void)state;
}

static void test_token_sources(void **state)
{
    struct meter_result res;
    struct meter m;

    /* Timings only: prompt = prompt_n + cache_n (llama.cpp's prompt_n is
     * the uncached part); completion = predicted_n. */
    meter_init(&m, 0, 0, -1, NULL);
    feed_content(&m, "a", 10, NULL);
    feed(&m,
         "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
         "\"timings\":{\"cache_n\":30,\"prompt_n\":12,\"predicted_n\":7}}",
         20, NULL);
    meter_finish(&m, 30, &res);
    assert_int_equal(res.tok_src, METER_TOK_TIMINGS);
    assert_int_equal(res.prompt_tokens, 42);
    assert_int_equal(res.completion_tokens, 7);
    assert_int_equal(res.cached_tokens, 30);

    /* Timings without cache_n: prompt_n alone, cached unknown. */
    meter_init(&m, 0, 0, -1, NULL);
    feed(&m, "{\"content\":\"x\",\"stop\":false,\"timings\":{\"prompt_n\":9,\"predicted_n\":1}}",
         10, NULL);
    meter_finish(&m, 30, &res);
    assert_int_equal(res.tok_src, METER_TOK_TIMINGS);
    assert_int_equal(res.prompt_tokens, 9);
    assert_int_equal(res.completion_tokens, 1);
    assert_int_equal(res.cached_tokens, -1);

    /* Usage wins over timings, whichever came last. */
    meter_init(&m, 0, 0, -1, NULL);
    feed(&m,
         "{\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":9,"
         "\"prompt_tokens_details\":{\"cached_tokens\":20}}}",
         10, NULL);
    feed(&m, "{\"choices\":[],\"timings\":{\"cache_n\":1,\"prompt_n\":2,\"predicted_n\":3}}", 20,
         NULL);
    meter_finish(&m, 30, &res);
    assert_int_equal(res.tok_src, METER_TOK_USAGE);
    assert_int_equal(res.prompt_tokens, 50);
    assert_int_equal(res.completion_tokens, 9);
    assert_int_equal(res.cached_tokens, 20);

    /* Counted: output events, +1 after "stop" only. */
    meter_init(&m, 0, 0, -1, NULL);
    feed_content(&m, "a", 10, NULL);
    feed_content(&m, "b", 20, NULL);
    feed_content(&m, "c", 30, NULL);
    meter_finish(&m, 40, &res);
    assert_int_equal(res.tok_src, METER_TOK_COUNTED);
    assert_int_equal(res.completion_tokens, 3);
    feed(&m, FINISH_CHUNK("stop"), 35, NULL);
    meter_finish(&m, 40, &res);
    assert_int_equal(res.completion_tokens, 4);
    meter_init(&m, 0, 0, -1, NULL);
    feed_content(&m, "a", 10, NULL);
    feed_content(&m, "b", 20, NULL);
    feed(&m, FINISH_CHUNK("length"), 30, NULL);
    meter_finish(&m, 40, &res);
    assert_int_equal(res.completion_tokens, 2);
    meter_init(&m, 0, 0, -1, NULL);
    feed_content(&m, "a", 10, NULL);
    feed(&m, FINISH_CHUNK("tool_calls"), 30, NULL);
    meter_finish(&m, 40, &res);
    assert_int_equal(res.completion_tokens, 1);
    (void)state;
}

static void test_last_usage_wins(void **state)
{
    struct meter_result res;
    struct meter m;
    char buf[256];
    int k;

    /* vLLM continuous_usage_stats: running totals on every chunk. */
    meter_init(&m, 0, 0, -1, NULL);
    for (k = 1; k <= 5; k++) {
        snprintf(buf, sizeof(buf),
                 "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t%d\"},"
                 "\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":12,"
                 "\"completion_tokens\":%d,\"total_tokens\":%d}}",
                 k, k, 12 + k);
        assert_true(feed(&m, buf, (uint64_t)k * 1000, NULL));
        assert_int_equal(m.usage_completion, k);
    }
    feed(&m,
         "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
         "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":6,\"total_tokens\":18}}",
         6000, NULL);
    /* usage:null afterwards changes nothing. */
    feed(&m, "{\"choices\":[],\"usage\":null}", 6500, NULL);
    meter_finish(&m, 7000, &res);
    assert_int_equal(res.tok_src, METER_TOK_USAGE);
    assert_int_equal(res.prompt_tokens, 12);
    assert_int_equal(res.completion_tokens, 6);
    assert_int_equal(res.cached_tokens, -1);
    assert_int_equal(m.n_out, 5);
    assert_int_equal(m.finish, JSON_FINISH_STOP);
    (void)state;
}

static void test_finish_and_truncation(void **state)
{
    struct meter_result res;
    struct meter m;

    /* The first finish reason stays; a later chunk cannot overwrite it. */
    meter_init(&m, 0, 0, 100, NULL);
    feed_content(&m, "a", 10, NULL);
    feed(&m, FINISH_CHUNK("length"), 20, NULL);
    feed(&m, FINISH_CHUNK("stop"), 30, NULL);
    meter_finish(&m, 40, &res);
    assert_int_equal(m.finish, JSON_FINISH_LENGTH);
    assert_true(res.truncated); /* by finish, 1 token of 100 */

    /* No finish (cut short), tokens reached the limit: truncated. */
    meter_init(&m, 0, 0, 3, NULL);
    feed_content(&m, "a", 10, NULL);
    feed_content(&m, "b", 20, NULL);
    meter_finish(&m, 40, &res);
    assert_false(res.truncated); /* 2 < 3 */
    feed_content(&m, "c", 30, NULL);
    meter_finish(&m, 40, &res);
    assert_true(res.truncated); /* 3 >= 3 */
    assert_int_equal(m.finish, JSON_FINISH_NONE);

    /* The limit is checked against usage when there is usage. */
    meter_init(&m, 0, 0, 10, NULL);
    feed_content(&m, "a", 10, NULL);
    feed(&m, "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":10}}", 20, NULL);
    meter_finish(&m, 40, &res);
    assert_true(res.truncated);
    meter_init(&m, 0, 0, 11, NULL);
    feed_content(&m, "a", 10, NULL);
    feed(&m, "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":10}}", 20, NULL);
    meter_finish(&m, 40, &res);
    assert_false(res.truncated);

    /* No limit in the request: only a "length" finish truncates. */
    meter_init(&m, 0, 0, -1, NULL);
    feed(&m, "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":100000}}", 20,
         NULL);
    meter_finish(&m, 40, &res);
    assert_false(res.truncated);

    /* TGI native finish reasons. */
    meter_init(&m, 0, 0, -1, NULL);
    feed(&m,
         "{\"index\":2,\"token\":{\"id\":2,\"text\":\"</s>\",\"special\":true},"
         "\"generated_text\":\"x\",\"details\":{\"finish_reason\":\"length\","
         "\"generated_tokens\":2,\"input_length\":4}}",
         20, NULL);
    meter_finish(&m, 40, &res);
    assert_int_equal(m.finish, JSON_FINISH_LENGTH);
    assert_true(res.truncated);
    assert_int_equal(res.completion_tokens, 2);
    assert_int_equal(res.prompt_tokens, 4);
    (void)state;
}

static void test_refusal_split_content(void **state)
{
    static const char *const only_sorry[] = { "i'm sorry, but" };
    static const char *const pieces[] = { "I", "'m sor", "ry,", " b", "ut I can", "'t help" };
    struct refusal_phrases *ph = refusal_phrases_new(only_sorry, 1);
    struct meter m;
    size_t i;

    /* The phrase only ever exists across chunk boundaries. */
    assert_non_null(ph);
    meter_init(&m, 0, 0, -1, ph);
    feed(&m, ROLE_CHUNK, 5, NULL);
    for (i = 0; i < 6; i++) {
        feed_content(&m, pieces[i], 10 * (i + 1), NULL);
        assert_int_equal(m.refusal, i >= 4); /* "... b" + "ut" completes it */
    }
    assert_int_equal(m.finish, JSON_FINISH_NONE);

    /* The same with the defaults, and a typographic apostrophe (U+2019,
     * JSON-escaped), in an upper-case answer. */
    meter_init(&m, 0, 0, -1, defaults);
    feed_content(&m, "I\\u2019M SOR", 10, NULL);
    assert_false(m.refusal);
    feed_content(&m, "RY, BUT I CAN", 20, NULL);
    assert_true(m.refusal);

    /* Without phrases, or past the 400-character window, no refusal. */
    meter_init(&m, 0, 0, -1, NULL);
    for (i = 0; i < 6; i++)
        feed_content(&m, pieces[i], 10 * (i + 1), NULL);
    assert_false(m.refusal);
    meter_init(&m, 0, 0, -1, ph);
    for (i = 0; i < REFUSAL_WINDOW_CHARS / 50; i++)
        feed_content(&m, "Lorem ipsum dolor sit amet, consectetur adipiscin.", 10 * (i + 1), NULL);
    feed_content(&m, "I'm sorry, but", 100000, NULL);
    assert_false(m.refusal);

    /* Reasoning is not the answer: a refusal considered in thought is none. */
    meter_init(&m, 0, 0, -1, ph);
    feed(&m, "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"I'm sorry, but\"}}]}",
         10, NULL);
    assert_int_equal(m.n_out, 1);
    assert_false(m.refusal);
    refusal_phrases_free(ph);
    (void)state;
}

static void test_refusal_content_filter(void **state)
{
    struct meter_result res;
    struct meter m;

    meter_init(&m, 0, 0, 50, NULL);
    feed_content(&m, "Sure", 10, NULL);
    assert_false(m.refusal);
    assert_false(feed(&m, FINISH_CHUNK("content_filter"), 20, NULL));
    meter_finish(&m, 30, &res);
    assert_true(m.refusal);
    assert_int_equal(m.finish, JSON_FINISH_CONTENT_FILTER);
    assert_false(res.truncated);
    assert_int_equal(res.completion_tokens, 1);
    (void)state;
}

static void test_error_events(void **state)
{
    struct json_resp r;
    struct meter m;
    uint64_t gap = 7;

    meter_init(&m, 0, 0, -1, NULL);
    assert_false(feed(&m, "{\"error\":null,\"choices\":[]}", 10, NULL));
    assert_false(m.error_event);
    feed_content(&m, "a", 20, NULL);
    assert_false(feed(&m, "{\"error\":{\"message\":\"boom\",\"code\":500}}", 30, &gap));
    assert_int_equal(gap, 7);
    assert_true(m.error_event);
    assert_int_equal(m.n_out, 1);

    /* A response that is not a JSON object is ignored entirely. */
    meter_init(&m, 0, 0, -1, NULL);
    assert_int_equal(json_resp_parse(span_cstr("{\"error\":"), &toks, &r), -1);
    assert_false(r.valid);
    assert_false(meter_event(&m, &r, 10, &gap));
    assert_false(m.error_event);
    assert_int_equal(m.n_out, 0);
    assert_int_equal(gap, 7);
    (void)state;
}

static void test_body_rules(void **state)
{
    struct meter_result res;
    struct json_resp r;
    struct meter m;

    /* A body's message text is matched for refusals, never counted or timed. */
    parse("{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
          "\"content\":\"I'm sorry, but no.\"},\"finish_reason\":\"stop\"}]}",
          &r);
    meter_init(&m, 100, 0, -1, defaults);
    meter_body(&m, &r);
    meter_finish(&m, 900, &res);
    assert_true(m.refusal);
    assert_int_equal(m.finish, JSON_FINISH_STOP);
    assert_int_equal(m.n_out, 0);
    assert_int_equal(res.ttft_us, -1);
    assert_int_equal(res.e2e_us, 800);
    assert_int_equal(res.tok_src, METER_TOK_NONE); /* no usage: unknown, not 1 */
    assert_int_equal(res.completion_tokens, -1);

    /* message.refusal refuses whatever the phrases. */
    parse("{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
          "\"refusal\":\"No.\"},\"finish_reason\":\"stop\"}]}",
          &r);
    meter_init(&m, 100, 0, -1, NULL);
    meter_body(&m, &r);
    assert_true(m.refusal);

    /* A plain answer is none; its usage is taken. */
    parse("{\"choices\":[{\"index\":0,\"message\":{\"content\":\"Paris.\"},"
          "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}",
          &r);
    meter_init(&m, 100, 0, 3, defaults);
    meter_body(&m, &r);
    meter_finish(&m, 900, &res);
    assert_false(m.refusal);
    assert_int_equal(res.tok_src, METER_TOK_USAGE);
    assert_int_equal(res.completion_tokens, 3);
    assert_int_equal(res.tpot_us, -1);
    (void)state;
}

static void test_init_resets(void **state)
{
    struct meter_result res;
    struct meter m;

    /* meter_init over a used (or garbage) struct leaves nothing behind. */
    memset(&m, 0xa5, sizeof(m));
    meter_init(&m, 10, 20, 30, NULL);
    assert_int_equal(m.t0_us, 10);
    assert_int_equal(m.stall_us, 20);
    assert_int_equal(m.max_tokens, 30);
    assert_int_equal(m.n_out, 0);
    assert_int_equal(m.stalls, 0);
    assert_int_equal(m.itl_max_us, 0);
    assert_int_equal(m.finish, JSON_FINISH_NONE);
    assert_false(m.refusal);
    assert_false(m.error_event);
    assert_int_equal(m.usage_prompt, -1);
    assert_int_equal(m.usage_completion, -1);
    assert_int_equal(m.usage_cached, -1);
    assert_int_equal(m.timings_prompt, -1);
    assert_int_equal(m.timings_predicted, -1);
    assert_int_equal(m.timings_cached, -1);
    meter_finish(&m, 10, &res);
    assert_int_equal(res.tok_src, METER_TOK_NONE);
    assert_int_equal(res.ttft_us, -1);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_covered),
        cmocka_unit_test(test_fixture_max_tokens),
        cmocka_unit_test(test_fixture_streams),
        cmocka_unit_test(test_fixture_counted_estimate),
        cmocka_unit_test(test_fixture_refusal_via_delta),
        cmocka_unit_test(test_real_timings),
        cmocka_unit_test(test_body_nonstream),
        cmocka_unit_test(test_ttft_skips_role_chunk),
        cmocka_unit_test(test_no_output),
        cmocka_unit_test(test_itl_max_and_p50),
        cmocka_unit_test(test_itl_p50_exact_up_to_cap),
        cmocka_unit_test(test_stalls),
        cmocka_unit_test(test_token_sources),
        cmocka_unit_test(test_last_usage_wins),
        cmocka_unit_test(test_finish_and_truncation),
        cmocka_unit_test(test_refusal_split_content),
        cmocka_unit_test(test_refusal_content_filter),
        cmocka_unit_test(test_error_events),
        cmocka_unit_test(test_body_rules),
        cmocka_unit_test(test_init_resets),
    };

    return cmocka_run_group_tests_name("mtr", tests, fixtures_setup, fixtures_teardown);
}
