/* Unit tests for http1: heads, bodies in every split, pipelining, smuggling checks. */
#include "pitot/format/http1.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
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

/* A copy of s[0..n) in an allocation of exactly n bytes, so that ASan sees
 * any use of it after the call it was passed to. */
static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n ? n : 1);

    assert_non_null(d);
    memcpy(d, s, n);
    return d;
}

/* Feeds one message the way a connection does: the head as the bytes so
 * far, from the first, growing `step` bytes a read; then the body in pieces
 * of `step` bytes. Every call gets its own allocation, freed after it: no
 * parser state may point into an earlier one. *used: bytes of `msg` taken. */
static enum h1_result feed(struct h1_parser *p, const char *msg, size_t n, size_t step,
                           size_t *used)
{
    size_t have = 0, off = 0, c;
    enum h1_result r = H1_AGAIN;

    while (r == H1_AGAIN) {
        char *copy;

        have = have + step < n ? have + step : n;
        copy = dup_n(msg, have);
        r = h1_execute(p, span_make(copy, have), &c);
        free(copy);
        if (r == H1_AGAIN) {
            assert_int_equal(c, 0);
            if (have == n)
                break;
        }
    }
    if (r != H1_HEAD) {
        *used = 0;
        return r;
    }
    off = c;
    for (;;) {
        size_t len = n - off < step ? n - off : step;
        char *copy = dup_n(msg + off, len);

        r = h1_execute(p, span_make(copy, len), &c);
        free(copy);
        assert_true(c <= len);
        off += c;
        if (r != H1_AGAIN || (off == n && !p->done_pending))
            break;
    }
    *used = off;
    return r;
}

/* Parses one whole message given as a head plus body cut at `split`. */
static enum h1_result parse_all(struct h1_parser *p, const char *msg, size_t split, size_t *used)
{
    struct span in = span_cstr(msg);
    size_t c, off;
    enum h1_result r;

    r = h1_execute(p, in, &c);
    if (r != H1_HEAD)
        return r;
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
    /* llhttp's strict mode: what lenient parsing let through */
    assert_int_equal(reject("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5\r\nhelloXX0\r\n\r\n"),
                     PITOT_EBAD_REQUEST);
    assert_int_equal(reject("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5\rhello\r\n0\r\n\r\n"),
                     PITOT_EBAD_REQUEST);
    assert_int_equal(reject("POST / HTTP/1.1\r\nHost: h\r\nX Content-Length: 35\r\n\r\n"),
                     PITOT_EBAD_REQUEST);
    assert_int_equal(reject("POST / HTTP/1.1\r\nHost: h\r\nTransfer Encoding: chunked\r\n\r\n"),
                     PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET / HTTP/1.1\nHost: h\n\n"), PITOT_EBAD_REQUEST);
    /* obs-fold, also with an empty first line; empty field names */
    assert_int_equal(reject("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"),
                     PITOT_EBAD_REQUEST);
    assert_int_equal(reject("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n 5\r\n\r\n"),
                     PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET / HTTP/1.1\r\nHost:\r\n\th\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET / HTTP/1.1\r\nHost: h\r\n:\r\n\r\n"), PITOT_EBAD_REQUEST);
    /* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 */
    assert_int_equal(
        reject("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        PITOT_EBAD_REQUEST);
    /* request targets and lines */
    assert_int_equal(reject("CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"),
                     PITOT_EMETHOD_NOT_ALLOWED);
    assert_int_equal(reject("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET ftp://x/ HTTP/1.1\r\nHost: h\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET http://u@x/ HTTP/1.1\r\nHost: h\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET http:///v1 HTTP/1.1\r\nHost: h\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET http://x?q HTTP/1.1\r\nHost: h\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), PITOT_EBAD_REQUEST);
    assert_int_equal(reject("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), PITOT_EBAD_REQUEST);
    (void)state;
}

/* Bytes that can no longer become a request are refused as they arrive,
 * before any blank line: nothing waits for a timeout. */
static void test_early_reject(void **state)
{
    static const char *const partial[] = {
        "GET /\r\n",                             /* HTTP/0.9: no version */
        "GET /v1/models\r\n",                    /* the same */
        "GET / HTTP/1.1\r",                      /* not yet: */
        "POST / HTTP/1.1\r\nHost: h\r\nX: a\rb", /* bare CR */
        "POST / HTTP/1.1\r\nHost: h\r\nX Y: 1",  /* blank in a field name */
        "POST / HTTP/1.1\r\nHost: h\r\n x",      /* obs-fold */
        "POST / HTTP/1.1\r\nHost: h\r\n:",       /* empty field name */
        "GET  /",                                /* extra space */
        "CONNECT ",                              /* a tunnel */
    };
    struct h1_parser p;
    size_t i, c;

    for (i = 0; i < sizeof(partial) / sizeof(partial[0]); i++) {
        enum h1_result want = i == 2 ? H1_AGAIN : H1_ERROR;
        h1_init(&p, H1_REQUEST, NULL, NULL, NULL);
        if (h1_execute(&p, span_cstr(partial[i]), &c) != want)
            fail_msg("\"%s\" not %s", partial[i], want == H1_AGAIN ? "waited for" : "refused");
    }
    /* a head past max_head_bytes is refused once it gets there */
    {
        struct h1_limits lim = { H1_MAX_HEADERS, 8192, 64 };
        char big[200];
        memset(big, 'a', sizeof(big));
        memcpy(big, "GET / HTTP/1.1\r\nHost: h\r\nX: ", 28);
        h1_init(&p, H1_REQUEST, &lim, NULL, NULL);
        assert_int_equal(h1_execute(&p, span_make(big, 63), &c), H1_AGAIN);
        assert_int_equal(h1_execute(&p, span_make(big, sizeof(big)), &c), H1_ERROR);
        assert_int_equal(p.err, PITOT_EHEADER_TOO_LARGE);
    }
    (void)state;
}

/* An absolute-form target reaches the caller as origin-form, its authority
 * as the host (RFC 9112 3.2.2). */
static void test_absolute_form(void **state)
{
    const char *req = "GET http://Example.com:8080/v1/models?x=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    struct h1_parser p;
    size_t c;

    h1_init(&p, H1_REQUEST, NULL, NULL, NULL);
    assert_int_equal(h1_execute(&p, span_cstr(req), &c), H1_HEAD);
    assert_true(span_eq(p.msg.url, "/v1/models?x=1"));
    assert_true(span_eq(p.msg.host, "Example.com:8080"));
    h1_init(&p, H1_REQUEST, NULL, NULL, NULL);
    assert_int_equal(h1_execute(&p, span_cstr("POST HTTPS://h/ HTTP/1.1\r\nHost: h\r\n\r\n"), &c),
                     H1_HEAD);
    assert_true(span_eq(p.msg.url, "/"));
    (void)state;
}

/* Chunk extensions and trailer fields count against max_head_bytes; trailers
 * split over reads are checked and dropped without being kept. */
static void test_body_metadata_bounded(void **state)
{
    struct h1_limits lim = { H1_MAX_HEADERS, 8192, 256 };
    const char *head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    char ext[64];
    struct h1_parser p;
    size_t c, i;
    enum h1_result r = H1_AGAIN;

    h1_init(&p, H1_REQUEST, &lim, NULL, NULL);
    assert_int_equal(h1_execute(&p, span_cstr(head), &c), H1_HEAD);
    assert_int_equal(h1_execute(&p, span_cstr("5;name="), &c), H1_AGAIN);
    memset(ext, 'v', sizeof(ext));
    for (i = 0; i < 100 && r == H1_AGAIN; i++)
        r = h1_execute(&p, span_make(ext, sizeof(ext)), &c);
    assert_int_equal(r, H1_ERROR);
    assert_int_equal(p.err, PITOT_EHEADER_TOO_LARGE);
    assert_true(i * sizeof(ext) <= 256 + sizeof(ext));

    h1_init(&p, H1_REQUEST, &lim, NULL, NULL);
    assert_int_equal(h1_execute(&p, span_cstr(head), &c), H1_HEAD);
    assert_int_equal(h1_execute(&p, span_cstr("0\r\nX-T: "), &c), H1_AGAIN);
    r = H1_AGAIN;
    for (i = 0; i < 100 && r == H1_AGAIN; i++)
        r = h1_execute(&p, span_make(ext, sizeof(ext)), &c);
    assert_int_equal(r, H1_ERROR);
    assert_int_equal(p.err, PITOT_EHEADER_TOO_LARGE);

    /* control bytes in a trailer value, in a later piece */
    h1_init(&p, H1_REQUEST, &lim, NULL, NULL);
    assert_int_equal(h1_execute(&p, span_cstr(head), &c), H1_HEAD);
    assert_int_equal(h1_execute(&p, span_cstr("0\r\nX-T: ab"), &c), H1_AGAIN);
    assert_int_equal(h1_execute(&p, span_make("c\0d\r\n\r\n", 7), &c), H1_ERROR);
    (void)state;
}

/* Responses: the framing rules hold for backends too. */
static void test_response_framing_faults(void **state)
{
    struct sink s = { .len = 0 };
    struct h1_parser p;
    size_t c;

    h1_init(&p, H1_RESPONSE, NULL, sink_body, &s);
    assert_int_equal(h1_execute(&p,
                                span_cstr("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                          "5\r\nhello\r\n0\r\n\r\n"),
                                &c),
                     H1_ERROR);
    assert_int_equal(p.err, PITOT_EUPSTREAM_PROTOCOL);
    /* a coding pitot would lose when it re-frames the body */
    h1_init(&p, H1_RESPONSE, NULL, sink_body, &s);
    assert_int_equal(
        h1_execute(&p, span_cstr("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
                   &c),
        H1_ERROR);
    assert_int_equal(p.err, PITOT_EUPSTREAM_PROTOCOL);
    h1_init(&p, H1_RESPONSE, NULL, sink_body, &s);
    assert_int_equal(
        h1_execute(
            &p, span_cstr("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"), &c),
        H1_ERROR);
    /* Connection may not revoke the framing or the Host */
    h1_init(&p, H1_RESPONSE, NULL, sink_body, &s);
    assert_int_equal(h1_execute(&p,
                                span_cstr("HTTP/1.1 200 OK\r\nConnection: Content-Length, X-A\r\n"
                                          "Content-Length: 2\r\nX-A: 1\r\n\r\nok"),
                                &c),
                     H1_HEAD);
    assert_false(h1_is_hop_by_hop(&p.msg, span_cstr("Content-Length")));
    assert_false(h1_is_hop_by_hop(&p.msg, span_cstr("host")));
    assert_true(h1_is_hop_by_hop(&p.msg, span_cstr("x-a")));
    assert_int_equal(p.msg.content_length, 2);
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
    hl = strlen(resp) - 3;
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

/* Every split of the head and the body, each piece its own allocation:
 * the same message, fields and body, whatever the reads. */
static void test_any_split(void **state)
{
    static const char *const msgs[] = {
        "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\nX-Trailer: aaaaaaaabbbbbbbb\r\n\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nHost: example\r\nContent-Type: application/json\r\n"
        "X-Long-Header-Name-To-Split: some value with spaces\r\nContent-Length: 5\r\n\r\nhello",
        "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;n1;n2;name=value\r\nhello\r\n0\r\nA: 1\r\nB: 2\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n",
    };
    struct sink s;
    struct h1_parser p;
    size_t i, step, used;

    for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        size_t n = strlen(msgs[i]);
        for (step = 1; step <= n; step++) {
            s.len = 0;
            h1_init(&p, H1_REQUEST, NULL, sink_body, &s);
            if (feed(&p, msgs[i], n, step, &used) != H1_DONE)
                fail_msg("message %zu, step %zu: %s", i, step, p.reason ? p.reason : "?");
            assert_int_equal(used, n);
            assert_int_equal(s.len, i == 3 ? 0 : 5);
            assert_memory_equal(s.buf, "hello", s.len);
        }
    }
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

/* Checks every field of the head in `buf` as h1 reported it. */
static void check_table(const struct h1_msg *m, const char *buf)
{
    static const char *const want[][2] = {
        { "Host", "a.b" },       { "X-Empty", "" }, { "X-Blanks", "x y" },
        { "X-Colon", "a:b::c" }, { "X-Tab", "t" },  { "Content-Length", "0" },
        { "X-Last", "end" },
    };
    unsigned i;

    assert_int_equal(m->nheaders, sizeof(want) / sizeof(want[0]));
    for (i = 0; i < m->nheaders; i++) {
        assert_true(span_eq(m->headers[i].name, want[i][0]));
        assert_true(span_eq(m->headers[i].value, want[i][1]));
        /* spans into the bytes of the call that completed the head */
        assert_true(m->headers[i].name.p > buf);
    }
    assert_true(h1_header_find(m, "x-colon") == &m->headers[3]);
    assert_true(span_eq(m->host, "a.b"));
}

/* The header table is made when the head completes, from the head's bytes:
 * every field in order, blanks trimmed, empty values, colons in values; the
 * same however the head arrives, and while another connection's head
 * completes on the same thread in between. */
static void test_header_table(void **state)
{
    const char *req = "GET /x HTTP/1.1\r\nHost: a.b\r\nX-Empty:\r\nX-Blanks:  x y \t\r\n"
                      "X-Colon: a:b::c\r\nX-Tab:\tt\r\nContent-Length: 0\r\nX-Last: end\r\n\r\n";
    const char *other = "GET /y HTTP/1.1\r\nHost: other\r\nX-Other: 1\r\n\r\n";
    size_t n = strlen(req), step;

    for (step = 1; step <= n; step++) {
        struct h1_parser p, q;
        enum h1_result r = H1_AGAIN;
        size_t have = 0, c;
        char *copy = NULL;

        h1_init(&p, H1_REQUEST, NULL, NULL, NULL);
        while (r == H1_AGAIN && have < n) {
            free(copy);
            have = have + step < n ? have + step : n;
            copy = dup_n(req, have);
            r = h1_execute(&p, span_make(copy, have), &c);
            if (r == H1_AGAIN && have == n / 2) {
                /* another head completes on this thread meanwhile */
                h1_init(&q, H1_REQUEST, NULL, NULL, NULL);
                assert_int_equal(h1_execute(&q, span_cstr(other), &c), H1_HEAD);
                assert_int_equal(q.msg.nheaders, 2);
                assert_true(span_eq(q.msg.headers[1].value, "1"));
            }
        }
        assert_int_equal(r, H1_HEAD);
        assert_int_equal(c, n);
        check_table(&p.msg, copy);
        free(copy);
    }
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_content_length),
        cmocka_unit_test(test_request_head_fields),
        cmocka_unit_test(test_header_table),
        cmocka_unit_test(test_request_chunked_body),
        cmocka_unit_test(test_request_smuggling_rejected),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_response_chunked_sse),
        cmocka_unit_test(test_response_eof_delimited_and_head),
        cmocka_unit_test(test_any_split),
        cmocka_unit_test(test_early_reject),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_body_metadata_bounded),
        cmocka_unit_test(test_response_framing_faults),
        cmocka_unit_test(test_keepalive_sequence),
    };

    return cmocka_run_group_tests_name("h1", tests, NULL, NULL);
}
