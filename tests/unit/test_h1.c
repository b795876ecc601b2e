/* Unit tests for h1: heads, bodies in every split, pipelining, smuggling checks. */
#include "pitot/h1.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

struct sink {
    char buf[4096];
    size_t len;
};

static int sink_body(void *ud, struct span b)
{
    struct sink *s = ud;

    assert_true(s->len + b.len <= sizeof(s->buf));
    memcpy(s->buf + s->len, b.p, b.len);
    s->len += b.len;
    return 0;
}

/* Parses one whole message given as a head plus body cut at `split`. */
static enum h1_result parse_all(struct h1_parser *p, const char *msg, size_t split, size_t *used)
{
    struct span in = span_cstr(msg);
    size_t hl = h1_head_len(in), c, off;
    enum h1_result r;

    assert_true(hl > 0);
    r = h1_execute(p, in, &c);
    if (r != H1_HEAD)
        return r;
    assert_int_equal(c, hl);
    off = c;
    while (off < in.len || p->done_pending) {
        size_t end = off < split && split < in.len ? split : in.len;
        r = h1_execute(p, span_make(in.p + off, end - off), &c);
        off += c;
        if (r != H1_AGAIN)
            break;
    }
    *used = off;
    return r;
}

static void test_request_content_length(void **state)
{
    const char *req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 11\r\nX-A:  spaced  \r\n\r\nhello worldGET";
    struct sink s = { .len = 0 };
    struct h1_parser p;
    size_t split, used;

    for (split = 0; split < strlen(req); split++) {
        s.len = 0;
        h1_init(&p, H1_REQUEST, NULL, sink_body, &s);
        assert_int_equal(parse_all(&p, req, split, &used), H1_DONE);
        assert_int_equal(s.len, 11);
        assert_memory_equal(s.buf, "hello world", 11);
        assert_int_equal(used, strlen(req) - 3); /* pipelined "GET" left over */
    }
    h1_init(&p, H1_REQUEST, NULL, sink_body, &s);
    assert_int_equal(parse_all(&p, req, 0, &used), H1_DONE);
    (void)state;
}

static void test_request_head_fields(void **state)
{
    const char *req = "GET /metrics?x=1 HTTP/1.1\r\nHost: a.b\r\nConnection: close, X-Drop\r\n"
                      "X-Drop: 1\r\n\r\n";
    struct h1_parser p;
    size_t c;

    h1_init(&p, H1_REQUEST, NULL, NULL, NULL);
    assert_int_equal(h1_execute(&p, span_cstr(req), &c), H1_HEAD);
    assert_true(span_eq(p.msg.method, "GET"));
    assert_true(span_eq(p.msg.url, "/metrics?x=1"));
    assert_true(span_eq(p.msg.host, "a.b"));
    assert_int_equal(p.msg.nheaders, 3);
    assert_false(p.msg.keep_alive);
    assert_true(h1_is_hop_by_hop(&p.msg, span_cstr("X-Drop")));
    assert_true(h1_is_hop_by_hop(&p.msg, span_cstr("keep-alive")));
    assert_false(h1_is_hop_by_hop(&p.msg, span_cstr("host")));
    assert_int_equal(h1_execute(&p, span_make(req + c, 0), &c), H1_DONE);
    (void)state;
}

static void test_request_chunked_body(void **state)
{
    const char *req = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
    struct sink s = { .len = 0 };
    struct h1_parser p;
    size_t split, used;

    for (split = 0; split < strlen(req); split++) {
        s.len = 0;
        h1_init(&p, H1_REQUEST, NULL, sink_body, &s);
        assert_int_equal(parse_all(&p, req, split, &used), H1_DONE);
        assert_int_equal(s.len, 11);
        assert_memory_equal(s.buf, "hello world", 11);
        assert_int_equal(used, strlen(req));
    }
    (void)state;
}

/* sizeof, not strlen: some inputs carry a NUL byte. */
#define reject(lit) reject_n(lit, sizeof(lit) - 1)

static enum pitot_err reject_n(const char *req, size_t n)
{
    struct h1_parser p;
    size_t c;
    enum h1_result r;

    h1_init(&p, H1_REQUEST, NULL, NULL, NULL);
    r = h1_execute(&p, span_make(req, n), &c);
    if (r == H1_HEAD)
        r = h1_execute(&p, span_make(req + c, n - c), &c);
    assert_int_equal(r, H1_ERROR);
    return p.err;
}

static void test_request_smuggling_rejected(void **state)
{
    assert_int_equal(
        reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
        PITOT_EBAD_REQUEST);
    assert_int_equal(reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: "
                            "chunked\r\n\r\n"),
                     PITOT_EBAD_REQUEST);
    assert_int_equal(
        reject("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        PITOT_ENOT_IMPLEMENTED);
    assert_int_equal(reject("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET / HTTP/1.1\r\nX: a\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n"),
                     PITOT_EEXPECTATION);
    assert_int_equal(reject("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), PITOT_EBAD_VERSION);
    assert_int_equal(reject("GARBAGE\r\n\r\n"), PITOT_EBAD_REQUEST);
    (void)state;
}

static void test_limits(void **state)
{
    struct h1_limits lim = { .max_headers = 2, .max_uri_bytes = 8 };
    struct h1_parser p;
    size_t c;

    h1_init(&p, H1_REQUEST, &lim, NULL, NULL);
    assert_int_equal(
        h1_execute(&p, span_cstr("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n"), &c),
        H1_ERROR);
    assert_int_equal(p.err, PITOT_EHEADER_TOO_LARGE);
    h1_init(&p, H1_REQUEST, &lim, NULL, NULL);
    assert_int_equal(h1_execute(&p, span_cstr("GET /123456789 HTTP/1.1\r\nHost: h\r\n\r\n"), &c),
                     H1_ERROR);
    assert_int_equal(p.err, PITOT_EURI_TOO_LONG);
    (void)state;
}

static void test_response_chunked_sse(void **state)
{
    const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                       "Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5, max=100\r\n\r\n"
                       "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";
    struct sink s = { .len = 0 };
    struct h1_parser p;
    size_t split, used;

    for (split = 0; split < strlen(resp); split++) {
        s.len = 0;
        h1_init(&p, H1_RESPONSE, NULL, sink_body, &s);
        assert_int_equal(parse_all(&p, resp, split, &used), H1_DONE);
        assert_int_equal(p.msg.status, 200);
        assert_true(p.msg.chunked);
        assert_int_equal(s.len, 14);
        assert_memory_equal(s.buf, "data: [DONE]\n\n", 14);
    }
    (void)state;
}

static void test_response_eof_delimited_and_head(void **state)
{
    const char *resp = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc";
    const char *head_resp = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    struct sink s = { .len = 0 };
    struct h1_parser p;
    size_t c, hl;

    h1_init(&p, H1_RESPONSE, NULL, sink_body, &s);
    hl = h1_head_len(span_cstr(resp));
    assert_int_equal(h1_execute(&p, span_cstr(resp), &c), H1_HEAD);
    assert_int_equal(c, hl);
    assert_int_equal(h1_execute(&p, span_make(resp + c, 3), &c), H1_AGAIN);
    assert_int_equal(h1_finish(&p), H1_DONE);
    assert_int_equal(s.len, 3);

    h1_init(&p, H1_RESPONSE, NULL, sink_body, &s);
    h1_expect_no_body(&p);
    assert_int_equal(h1_execute(&p, span_cstr(head_resp), &c), H1_HEAD);
    assert_int_equal(p.msg.content_length, 10);
    assert_int_equal(h1_execute(&p, span_make(head_resp + c, 0), &c), H1_DONE);

    /* Cut short: a Content-Length body that never completes. */
    h1_init(&p, H1_RESPONSE, NULL, sink_body, &s);
    assert_int_equal(h1_execute(&p, span_cstr(head_resp), &c), H1_HEAD);
    assert_int_equal(h1_finish(&p), H1_ERROR);
    assert_int_equal(p.err, PITOT_EUPSTREAM_PROTOCOL);
    (void)state;
}

static void test_head_len(void **state)
{
    assert_int_equal(h1_head_len(span_cstr("GET / HTTP/1.1\r\nHost: a\r\n")), 0);
    assert_int_equal(h1_head_len(span_cstr("GET / HTTP/1.1\r\n\r\nX")), 18);
    assert_int_equal(h1_head_len(span_cstr("GET / HTTP/1.1\n\nX")), 16);
    (void)state;
}

static void test_keepalive_sequence(void **state)
{
    const char *two = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    struct h1_parser p;
    size_t c, off = 0;

    h1_init(&p, H1_REQUEST, NULL, NULL, NULL);
    assert_int_equal(h1_execute(&p, span_cstr(two), &c), H1_HEAD);
    assert_true(span_eq(p.msg.url, "/a"));
    assert_true(p.msg.keep_alive);
    off += c;
    assert_int_equal(h1_execute(&p, span_make(two + off, strlen(two) - off), &c), H1_DONE);
    off += c;
    h1_reset(&p);
    assert_int_equal(h1_execute(&p, span_make(two + off, strlen(two) - off), &c), H1_HEAD);
    assert_true(span_eq(p.msg.url, "/b"));
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_content_length),
        cmocka_unit_test(test_request_head_fields),
        cmocka_unit_test(test_request_chunked_body),
        cmocka_unit_test(test_request_smuggling_rejected),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_response_chunked_sse),
        cmocka_unit_test(test_response_eof_delimited_and_head),
        cmocka_unit_test(test_head_len),
        cmocka_unit_test(test_keepalive_sequence),
    };

    return cmocka_run_group_tests_name("h1", tests, NULL, NULL);
}
