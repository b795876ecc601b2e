/* Unit tests for otlp: operations from paths, the ring (bounded, FIFO across
 * the wrap, drops counted by the exporter), and the OTLP JSON encoder (exact
 * bytes, batch order, escaping of hostile model names, errors, the size
 * bound the encode buffer relies on). No network: the exporter's loop is
 * never run. */
#include "pitot/measure/otlp.h"

#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "pitot/format/json.h"
#include "pitot/measure/metrics.h"
#include "pitot/util/version.h"

static struct cfg *test_cfg(void)
{
    static struct cfg c;
    char err[256];

    cfg_init(&c);
    assert_int_equal(cfg_backend_add(&c, "http://10.0.0.7:8081", "gpu-a", err, sizeof(err)), 0);
    assert_int_equal(cfg_backend_add(&c, "http://[::1]:9000", "gpu-b", err, sizeof(err)), 0);
    strcpy(c.tiers[1].name, "premium");
    c.ntiers = 2;
    return &c;
}

/* A span as relay fills it for a streamed chat answer. */
static void chat_span(struct otlp_span *s, const char *span_id)
{
    memset(s, 0, sizeof(*s));
    strcpy(s->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    strcpy(s->span_id, span_id);
    strcpy(s->parent_id, "00f067aa0ba902b7");
    strcpy(s->method, "POST");
    strcpy(s->request_model, "small");
    strcpy(s->response_model, "small");
    strcpy(s->request_id, "req-1");
    s->start_us = 1700000000123456u;
    s->end_us = 1700000001123456u;
    s->ttft_us = 250000;
    s->input_tokens = 12;
    s->output_tokens = 34;
    s->cached_tokens = -1;
    s->status = 200;
    strcpy(s->server_address, "10.0.0.7");
    s->server_port = 8081;
    s->op = MET_OTEL_OP_CHAT;
    s->flavor = CFG_FLAVOR_LLAMACPP;
    s->finish = JSON_FINISH_STOP;
    s->error = PITOT_EOK;
    strcpy(s->tier, "premium");
}

/* Encodes the n oldest spans of r into a NUL-terminated string (caller frees). */
static char *encode(const struct cfg *c, const struct otlp_ring *r, size_t n)
{
    size_t cap = otlp_encode_cap(n), len;
    char *out = malloc(cap + 1);

    assert_non_null(out);
    len = otlp_encode(c, r, n, out, cap);
    assert_true(len > 0 && len <= cap);
    out[len] = '\0';
    return out;
}

struct visit {
    char vals[32][512]; /* decoded */
    size_t n;
};

static void visit_cb(void *ud, size_t path, struct span raw, bool is_string)
{
    struct visit *v = ud;
    size_t len;

    if (v->n >= 32)
        return;
    len = is_string ? json_str_decode(raw, v->vals[v->n], sizeof(v->vals[0]) - 1) : raw.len;
    if (!is_string)
        memcpy(v->vals[v->n], raw.p, raw.len);
    v->vals[v->n][len] = '\0';
    v->n++;
}

/* The values at `path` in doc (strict JSON, else the test fails). */
static void values(const char *doc, const char *path, struct visit *v)
{
    static char tokbuf[1 << 20];
    struct json_toks toks = { tokbuf, sizeof(tokbuf) / json_toks_size(1) };
    const char *paths[] = { path };

    memset(v, 0, sizeof(*v));
    assert_true(json_paths_visit(span_cstr(doc), &toks, paths, 1, visit_cb, v) >= 0);
}

/* ---- paths ------------------------------------------------------------- */

static void test_op_from_path(void **state)
{
    assert_int_equal(met_otel_op_of_path("/v1/chat/completions"), MET_OTEL_OP_CHAT);
    assert_int_equal(met_otel_op_of_path("/v1/chat/completions?x=1"), MET_OTEL_OP_CHAT);
    assert_int_equal(met_otel_op_of_path("/chat/completions"), MET_OTEL_OP_CHAT);
    assert_int_equal(met_otel_op_of_path("/v1/completions"), MET_OTEL_OP_TEXT_COMPLETION);
    assert_int_equal(met_otel_op_of_path("/completion"), MET_OTEL_OP_TEXT_COMPLETION);
    assert_int_equal(met_otel_op_of_path("/generate_stream"), MET_OTEL_OP_TEXT_COMPLETION);
    assert_int_equal(met_otel_op_of_path("/v1/embeddings"), MET_OTEL_OP_EMBEDDINGS);
    assert_int_equal(met_otel_op_of_path("/embedding"), MET_OTEL_OP_EMBEDDINGS);
    assert_int_equal(met_otel_op_of_path("/v1/models"), MET_OTEL_OP_NONE);
    assert_int_equal(met_otel_op_of_path("/v1/chat/completionsX"), MET_OTEL_OP_NONE);
    assert_int_equal(met_otel_op_of_path("/v1/completions/x"), MET_OTEL_OP_NONE);
    assert_int_equal(met_otel_op_of_path(""), MET_OTEL_OP_NONE);
    assert_string_equal(met_otel_op_label(MET_OTEL_OP_CHAT), "chat");
    assert_string_equal(met_otel_op_label(MET_OTEL_OP_TEXT_COMPLETION), "text_completion");
    assert_string_equal(met_otel_op_label(MET_OTEL_OP_EMBEDDINGS), "embeddings");
    assert_string_equal(met_otel_op_label(MET_OTEL_OP_NONE), "");
    (void)state;
}

/* ---- ring -------------------------------------------------------------- */

static void test_ring_bounded_fifo(void **state)
{
    struct otlp_ring r;
    struct otlp_span s;
    char id[17];
    int i;

    assert_int_equal(otlp_ring_init(&r, 0), -PITOT_ENOMEM);
    assert_int_equal(otlp_ring_init(&r, 4), 0);
    assert_null(otlp_ring_at(&r, 0));
    for (i = 0; i < 4; i++) {
        snprintf(id, sizeof(id), "%016d", i);
        chat_span(&s, id);
        assert_true(otlp_ring_push(&r, &s));
    }
    chat_span(&s, "ffffffffffffffff");
    assert_false(otlp_ring_push(&r, &s)); /* full: not stored */
    assert_int_equal(r.count, 4);
    assert_string_equal(otlp_ring_at(&r, 0)->span_id, "0000000000000000");
    assert_string_equal(otlp_ring_at(&r, 3)->span_id, "0000000000000003");
    assert_null(otlp_ring_at(&r, 4));

    /* the oldest leave first; new ones wrap around behind the rest */
    otlp_ring_pop(&r, 3);
    assert_int_equal(r.count, 1);
    for (i = 4; i < 7; i++) {
        snprintf(id, sizeof(id), "%016d", i);
        chat_span(&s, id);
        assert_true(otlp_ring_push(&r, &s));
    }
    assert_false(otlp_ring_push(&r, &s));
    for (i = 0; i < 4; i++) {
        snprintf(id, sizeof(id), "%016d", i + 3);
        assert_string_equal(otlp_ring_at(&r, (size_t)i)->span_id, id);
    }
    otlp_ring_pop(&r, 10); /* more than held: empties it */
    assert_int_equal(r.count, 0);
    assert_null(otlp_ring_at(&r, 0));
    assert_true(otlp_ring_push(&r, &s));
    assert_string_equal(otlp_ring_at(&r, 0)->span_id, "0000000000000006");
    otlp_ring_release(&r);
    (void)state;
}

static char *expose(struct met_registry *m)
{
    struct evbuffer *b = evbuffer_new();
    size_t len;
    char *t;

    assert_non_null(b);
    assert_int_equal(met_expose(&m, 1, b), 0);
    len = evbuffer_get_length(b);
    t = calloc(1, len + 1);
    assert_non_null(t);
    evbuffer_remove(b, t, len);
    evbuffer_free(b);
    return t;
}

/* A full queue drops the new span and counts it; nothing is sent while the
 * loop does not run (otlp_add does no I/O). */
static void test_exporter_counts_queue_full(void **state)
{
    struct cfg *c = test_cfg();
    struct event_base *base = event_base_new();
    struct met_registry *m;
    struct sockaddr_in sa;
    struct otlp *o;
    struct otlp_span s;
    char *t;
    int i;

    assert_non_null(base);
    c->otel_queue_size = 3;
    c->otel_batch_size = 2;
    m = met_registry_new(c);
    assert_non_null(m);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(9);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    o = otlp_new(base, c, m, NULL, (struct sockaddr *)&sa, sizeof(sa));
    assert_non_null(o);
    t = expose(m);
    assert_non_null(strstr(t, "\npitot_trace_spans_exported_total 0\n"));
    assert_non_null(strstr(t, "\npitot_trace_spans_dropped_total{reason=\"queue_full\"} 0\n"));
    assert_non_null(strstr(t, "\npitot_trace_spans_dropped_total{reason=\"export_failed\"} 0\n"));
    free(t);
    chat_span(&s, "0000000000000001");
    for (i = 0; i < 5; i++)
        otlp_add(o, &s);
    assert_int_equal(otlp_queued(o), 3);
    t = expose(m);
    assert_non_null(strstr(t, "\npitot_trace_spans_dropped_total{reason=\"queue_full\"} 2\n"));
    assert_non_null(strstr(t, "\npitot_trace_spans_dropped_total{reason=\"export_failed\"} 0\n"));
    assert_non_null(strstr(t, "\npitot_trace_spans_exported_total 0\n"));
    free(t);
    otlp_free(o);
    met_registry_free(m);
    event_base_free(base);
    (void)state;
}

/* ---- encoder ----------------------------------------------------------- */

static void test_encode_exact(void **state)
{
    static const char want[] =
        "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
        "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"pitot-test\"}},"
        "{\"key\":\"service.version\",\"value\":{\"stringValue\":\"" PITOT_VERSION "\"}}]},"
        "\"scopeSpans\":[{\"scope\":{\"name\":\"pitot\",\"version\":\"" PITOT_VERSION "\"},"
        "\"spans\":[{\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
        "\"spanId\":\"a1b2c3d4e5f60718\",\"parentSpanId\":\"00f067aa0ba902b7\","
        "\"name\":\"chat small\",\"kind\":3,"
        "\"startTimeUnixNano\":\"1700000000123456000\","
        "\"endTimeUnixNano\":\"1700000001123456000\",\"attributes\":["
        "{\"key\":\"gen_ai.operation.name\",\"value\":{\"stringValue\":\"chat\"}},"
        "{\"key\":\"gen_ai.provider.name\",\"value\":{\"stringValue\":\"llamacpp\"}},"
        "{\"key\":\"gen_ai.request.model\",\"value\":{\"stringValue\":\"small\"}},"
        "{\"key\":\"gen_ai.response.model\",\"value\":{\"stringValue\":\"small\"}},"
        "{\"key\":\"gen_ai.usage.input_tokens\",\"value\":{\"intValue\":\"12\"}},"
        "{\"key\":\"gen_ai.usage.output_tokens\",\"value\":{\"intValue\":\"34\"}},"
        "{\"key\":\"gen_ai.response.finish_reasons\",\"value\":{\"arrayValue\":{\"values\":"
        "[{\"stringValue\":\"stop\"}]}}},"
        "{\"key\":\"gen_ai.response.time_to_first_chunk\",\"value\":{\"doubleValue\":0.250000}},"
        "{\"key\":\"server.address\",\"value\":{\"stringValue\":\"10.0.0.7\"}},"
        "{\"key\":\"server.port\",\"value\":{\"intValue\":\"8081\"}},"
        "{\"key\":\"http.request.method\",\"value\":{\"stringValue\":\"POST\"}},"
        "{\"key\":\"http.response.status_code\",\"value\":{\"intValue\":\"200\"}},"
        "{\"key\":\"pitot.tier\",\"value\":{\"stringValue\":\"premium\"}},"
        "{\"key\":\"pitot.request_id\",\"value\":{\"stringValue\":\"req-1\"}}],"
        "\"events\":[{\"timeUnixNano\":\"1700000000373456000\","
        "\"name\":\"pitot.first_token\"}]}]}]}]}";
    struct cfg *c = test_cfg();
    struct otlp_ring r;
    struct otlp_span s;
    char *out;

    strcpy(c->otel_service_name, "pitot-test");
    assert_int_equal(otlp_ring_init(&r, 2), 0);
    chat_span(&s, "a1b2c3d4e5f60718");
    assert_true(otlp_ring_push(&r, &s));
    out = encode(c, &r, 1);
    assert_string_equal(out, want);
    /* a buffer one byte short is refused whole, never cut */
    assert_int_equal(otlp_encode(c, &r, 1, out, strlen(want) - 1), 0);
    free(out);
    otlp_ring_release(&r);
    (void)state;
}

/* The n oldest, in order; the rest stays for the next batch. */
static void test_encode_batch_order(void **state)
{
    struct cfg *c = test_cfg();
    struct otlp_ring r;
    struct otlp_span s;
    struct visit v;
    char *out;

    assert_int_equal(otlp_ring_init(&r, 4), 0);
    chat_span(&s, "0000000000000001");
    otlp_ring_push(&r, &s);
    chat_span(&s, "0000000000000002");
    otlp_ring_push(&r, &s);
    chat_span(&s, "0000000000000003");
    otlp_ring_push(&r, &s);
    out = encode(c, &r, 2);
    values(out, "resourceSpans[].scopeSpans[].spans[].spanId", &v);
    assert_int_equal(v.n, 2);
    assert_string_equal(v.vals[0], "0000000000000001");
    assert_string_equal(v.vals[1], "0000000000000002");
    free(out);
    assert_int_equal(r.count, 3); /* encoding does not take them */
    otlp_ring_pop(&r, 2);
    out = encode(c, &r, 1);
    values(out, "resourceSpans[].scopeSpans[].spans[].spanId", &v);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.vals[0], "0000000000000003");
    free(out);
    otlp_ring_release(&r);
    (void)state;
}

/* Model names come from backends: quotes, backslashes, control bytes and
 * invalid UTF-8 come back out of a strict JSON parser as sent (invalid
 * bytes as U+FFFD). */
static void test_encode_escaping(void **state)
{
    static const char model[] = "we\"ird\\mo\x01"
                                "del\n\t\x7f\xc3\xa9\xff!";
    static const char back[] = "we\"ird\\mo\x01"
                               "del\n\t\x7f\xc3\xa9\xef\xbf\xbd!";
    struct cfg *c = test_cfg();
    struct otlp_ring r;
    struct otlp_span s;
    struct visit v;
    char *out;
    size_t i;

    strcpy(c->otel_service_name, "svc \"q\" \\ \xe2\x82\xac");
    assert_int_equal(otlp_ring_init(&r, 1), 0);
    chat_span(&s, "0000000000000001");
    strcpy(s.response_model, model);
    strcpy(s.request_model, "other");
    otlp_ring_push(&r, &s);
    out = encode(c, &r, 1);
    for (i = 0; out[i]; i++)
        assert_true((unsigned char)out[i] >= 0x20); /* no raw control byte */
    assert_non_null(strstr(out, "\"we\\\"ird\\\\mo\\u0001del\\u000a\\u0009\\u007f\xc3\xa9"
                                "\\ufffd!\""));
    values(out, "resourceSpans[].scopeSpans[].spans[].attributes[].value.stringValue", &v);
    for (i = 0; i < v.n && strcmp(v.vals[i], back) != 0; i++)
        ;
    assert_true(i < v.n);
    values(out, "resourceSpans[].resource.attributes[].value.stringValue", &v);
    assert_string_equal(v.vals[0], "svc \"q\" \\ \xe2\x82\xac");
    values(out, "resourceSpans[].scopeSpans[].spans[].name", &v);
    assert_string_equal(v.vals[0], "chat other");
    free(out);
    otlp_ring_release(&r);
    (void)state;
}

/* Failures: status ERROR with pitot's message, error.type its label; a
 * backend's 4xx/5xx answer relayed as is: error.type is the status. No first
 * token, no event; no backend, no server.*; no traceparent, no parent. */
static void test_encode_errors(void **state)
{
    struct cfg *c = test_cfg();
    struct otlp_ring r;
    struct otlp_span s;
    struct visit v;
    char *out;

    assert_int_equal(otlp_ring_init(&r, 4), 0);
    chat_span(&s, "0000000000000001");
    s.error = PITOT_EOVERLOADED;
    s.status = 503;
    s.server_address[0] = '\0';
    s.server_port = 0;
    s.ttft_us = -1;
    s.input_tokens = s.output_tokens = -1;
    s.finish = JSON_FINISH_NONE;
    s.flavor = CFG_FLAVOR_AUTO;
    s.response_model[0] = '\0';
    s.parent_id[0] = '\0';
    otlp_ring_push(&r, &s);
    chat_span(&s, "0000000000000002");
    s.status = 404;
    strcpy(s.server_address, "::1");
    s.server_port = 9000;
    s.op = MET_OTEL_OP_NONE;
    strcpy(s.method, "GET");
    otlp_ring_push(&r, &s);
    out = encode(c, &r, 2);
    assert_non_null(strstr(out, ",\"status\":{\"code\":2,\"message\":\"all backends are busy, "
                                "retry later\"}}"));
    assert_non_null(
        strstr(out, "{\"key\":\"error.type\",\"value\":{\"stringValue\":\"overloaded\"}}"));
    assert_non_null(strstr(out, "{\"key\":\"error.type\",\"value\":{\"stringValue\":\"404\"}}"));
    assert_non_null(strstr(out, ",\"status\":{\"code\":2,\"message\":\"Not Found\"}}"));
    values(out, "resourceSpans[].scopeSpans[].spans[].name", &v);
    assert_int_equal(v.n, 2);
    assert_string_equal(v.vals[0], "chat small");
    assert_string_equal(v.vals[1], "GET"); /* not a GenAI call: no gen_ai.* */
    values(out, "resourceSpans[].scopeSpans[].spans[].parentSpanId", &v);
    assert_int_equal(v.n, 1);
    values(out, "resourceSpans[].scopeSpans[].spans[].events[].name", &v);
    assert_int_equal(v.n, 1); /* the second span's; the first had no token */
    values(out, "resourceSpans[].scopeSpans[].spans[].attributes[].key", &v);
    /* first: operation and request model (nothing else known), method, status,
     * error, tier, id; second: server address and port, method, status, error,
     * tier, id */
    assert_int_equal(v.n, 7 + 7);
    free(out);
    otlp_ring_release(&r);
    (void)state;
}

/* Every field at its longest and worst (each byte escaped to 6): one span
 * still fits OTLP_SPAN_JSON_MAX, which sizes the encode buffer. */
static void test_encode_size_bound(void **state)
{
    struct cfg *c = test_cfg();
    struct otlp_ring r;
    struct otlp_span s;
    char *out;
    size_t len1, len3, n = 3;

    memset(c->otel_service_name, '\x01', CFG_OTLP_SERVICE_MAX - 1);
    assert_int_equal(otlp_ring_init(&r, n), 0);
    chat_span(&s, "ffffffffffffffff");
    memset(s.server_address, 'h', sizeof(s.server_address) - 1);
    s.server_address[sizeof(s.server_address) - 1] = '\0';
    s.server_port = 65535;
    s.op = MET_OTEL_OP_TEXT_COMPLETION;
    memset(s.tier, 't', sizeof(s.tier) - 1);
    memset(s.request_model, '\x02', sizeof(s.request_model) - 1);
    memset(s.response_model, '\x03', sizeof(s.response_model) - 1);
    memset(s.method, 'M', sizeof(s.method) - 1);
    memset(s.request_id, '~', sizeof(s.request_id) - 1);
    s.start_us = s.end_us = UINT64_MAX / 1000;
    s.ttft_us = INT64_MAX / 2;
    s.input_tokens = s.output_tokens = s.cached_tokens = INT64_MAX;
    s.status = 599;
    s.error = PITOT_EUPSTREAM_TOO_LARGE;
    s.finish = JSON_FINISH_CONTENT_FILTER;
    while (otlp_ring_push(&r, &s))
        ;
    out = malloc(otlp_encode_cap(n));
    assert_non_null(out);
    len3 = otlp_encode(c, &r, n, out, otlp_encode_cap(n));
    len1 = otlp_encode(c, &r, 1, out, otlp_encode_cap(1));
    assert_true(len1 > 0 && len3 > len1);
    assert_true((len3 - len1) / 2 < OTLP_SPAN_JSON_MAX); /* a span and its comma */
    assert_true(len1 - (len3 - len1) / 2 < OTLP_ENVELOPE_JSON_MAX);
    print_message("worst-case span: %zu bytes (bound %d), envelope %zu (bound %d)\n",
                  (len3 - len1) / 2, OTLP_SPAN_JSON_MAX, len1 - (len3 - len1) / 2,
                  OTLP_ENVELOPE_JSON_MAX);
    free(out);
    otlp_ring_release(&r);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_from_path),
        cmocka_unit_test(test_ring_bounded_fifo),
        cmocka_unit_test(test_exporter_counts_queue_full),
        cmocka_unit_test(test_encode_exact),
        cmocka_unit_test(test_encode_batch_order),
        cmocka_unit_test(test_encode_escaping),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_encode_size_bound),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
