/* Unit tests for sse: every fixture stream scanned whole, at every two-piece
 * split and byte by byte gives the same events; decoding of real and
 * hand-made events (pings, [DONE], CR/CRLF, multi-line data, truncation). */
#include "pitot/format/sse.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pitot/format/json.h"

#include "fixture.h"

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

/* The SSE stream named "dir/file": a .sse file or a text/event-stream capture. */
static const struct fx_file *stream_named(const char *name)
{
    const struct fx_file *st = fx_set_find(&fx, name);

    assert_true(st->sse);
    return st;
}

/* ---- scanning helpers --------------------------------------------------- */

#define MAX_EVENTS 512

/* Event boundaries found in one stream: event i is [end[i-1], end[i]). */
struct cuts {
    size_t end[MAX_EVENTS];
    size_t n;
};

/* Feeds p[0..len) in pieces; piece k is [at[k-1], at[k]). Records every event
 * end. Returns the bytes pending after the last event. */
static size_t scan_pieces(const char *p, size_t len, const size_t *at, size_t nat, struct cuts *out)
{
    struct sse_scanner s;
    size_t from = 0, k;

    sse_scan_init(&s);
    out->n = 0;
    for (k = 0; k <= nat; k++) {
        size_t to = k < nat ? at[k] : len;

        while (from < to) {
            size_t c = 0;
            int r = sse_scan(&s, span_make(p + from, to - from), &c);

            if (r == SPAN_OK) {
                assert_true(c > 0 && c <= to - from);
                from += c;
                assert_true(out->n < MAX_EVENTS);
                out->end[out->n++] = from;
                assert_int_equal(sse_scan_pending(&s), 0);
            } else {
                assert_int_equal(r, SPAN_AGAIN);
                assert_int_equal(c, to - from);
                from = to;
                /* Pending: everything since the last event ended. */
                assert_int_equal(sse_scan_pending(&s),
                                 to - (out->n > 0 ? out->end[out->n - 1] : 0));
            }
        }
    }
    return len - (out->n > 0 ? out->end[out->n - 1] : 0);
}

static void assert_same_cuts(const struct cuts *a, const struct cuts *b, const char *what,
                             size_t where)
{
    size_t i;

    if (a->n != b->n)
        fail_msg("%s at %zu: %zu events, expected %zu", what, where, a->n, b->n);
    for (i = 0; i < a->n; i++) {
        if (a->end[i] != b->end[i])
            fail_msg("%s at %zu: event %zu ends at %zu, expected %zu", what, where, i, a->end[i],
                     b->end[i]);
    }
}

static bool same_state(const struct sse_scanner *a, const struct sse_scanner *b)
{
    return a->state == b->state && a->event_bytes == b->event_bytes;
}

/* Every two-piece split. The scanner is a deterministic byte machine, so a
 * split can only matter for the event it falls in: each split resumes from
 * the reference state where that event starts, feeds the two pieces, and
 * must end that event at the same byte in the same state as the whole scan
 * (from there on the runs are identical). Linear in events, not quadratic. */
static void check_two_piece_splits(const char *name, const char *p, size_t len,
                                   const struct cuts *ref, const struct sse_scanner *after)
{
    struct sse_scanner init;
    size_t split, k = 0;

    sse_scan_init(&init);
    for (split = 1; split < len; split++) {
        struct sse_scanner s;
        size_t from, to, c;
        int r;

        while (k < ref->n && ref->end[k] < split)
            k++;
        from = k > 0 ? ref->end[k - 1] : 0;
        to = k < ref->n ? ref->end[k] : len;
        s = k > 0 ? after[k - 1] : init;
        r = sse_scan(&s, span_make(p + from, split - from), &c);
        if (k < ref->n && split == to) {
            if (r != SPAN_OK || c != split - from)
                fail_msg("%s split %zu: event %zu not ended in the first piece", name, split, k);
        } else {
            if (r != SPAN_AGAIN || c != split - from)
                fail_msg("%s split %zu: event %zu ended early", name, split, k);
            r = sse_scan(&s, span_make(p + split, len - split), &c);
            if (k < ref->n ? r != SPAN_OK || c != to - split : r != SPAN_AGAIN)
                fail_msg("%s split %zu: event %zu ends elsewhere", name, split, k);
        }
        if (!same_state(&s, &after[k]))
            fail_msg("%s split %zu: state differs after event %zu", name, split, k);
    }
}

/* Whole, every two-piece split, byte by byte and a mixed split pattern. */
static void check_split_invariance(const char *name, const char *p, size_t len, struct cuts *ref)
{
    static struct sse_scanner after[MAX_EVENTS + 1];
    static struct cuts got;
    static size_t at[1 << 17];
    struct sse_scanner s;
    size_t pending, i, n, c;

    pending = scan_pieces(p, len, NULL, 0, ref);
    /* The state after each event, and after the pending tail. */
    sse_scan_init(&s);
    for (i = 0, n = 0; i < len; i += c) {
        if (sse_scan(&s, span_make(p + i, len - i), &c) == SPAN_OK)
            after[n++] = s;
    }
    assert_int_equal(n, ref->n);
    after[n] = s;
    check_two_piece_splits(name, p, len, ref, after);

    assert_true(len <= sizeof(at) / sizeof(at[0]));
    for (i = 1; i < len; i++)
        at[i - 1] = i;
    assert_int_equal(scan_pieces(p, len, at, len > 0 ? len - 1 : 0, &got), pending);
    assert_same_cuts(&got, ref, name, 1);
    /* Pieces of 1..13 bytes, cycling. */
    for (i = 0, n = 0; i < len; n++) {
        i += 1 + n % 13;
        if (i < len)
            at[n] = i;
        else
            break;
    }
    assert_int_equal(scan_pieces(p, len, at, n, &got), pending);
    assert_same_cuts(&got, ref, name, 13);
}

/* Small streams: also the plain way, every split from the first byte. */
static void check_split_invariance_naive(const char *name, const char *p, size_t len)
{
    static struct cuts ref, got;
    size_t pending, split;

    pending = scan_pieces(p, len, NULL, 0, &ref);
    for (split = 1; split < len; split++) {
        assert_int_equal(scan_pieces(p, len, &split, 1, &got), pending);
        assert_same_cuts(&got, &ref, name, split);
    }
}

/* ---- fixture tests ------------------------------------------------------ */

static void test_fixtures_found(void **state)
{
    size_t i, n_sse = 0, n_http = 0;

    for (i = 0; i < fx.n; i++) {
        const struct fx_file *st = &fx.f[i];

        if (!st->sse)
            continue;
        if (!st->http) {
            n_sse++;
            continue;
        }
        /* llama.cpp streams: 200, chunked. */
        assert_int_equal(st->status, 200);
        assert_true(st->chunked);
        n_http++;
    }
    /* 8 .sse files and 15 llama.cpp streams at the time of writing: fail
     * loudly rather than pass on an empty or moved directory. */
    assert_true(n_sse >= 8);
    assert_true(n_http >= 15);
    stream_named("llama.cpp/chat-stream-sse-ping-interval-2.http");
    stream_named("tgi/stream_chat.sse");
    (void)state;
}

static void test_fixture_splits(void **state)
{
    static struct cuts ref;
    size_t i;

    for (i = 0; i < fx.n; i++) {
        const struct fx_file *st = &fx.f[i];
        size_t sum = 0, k;

        if (!st->sse)
            continue;

        check_split_invariance(st->name, st->body, st->len, &ref);
        if (st->len <= 4096)
            check_split_invariance_naive(st->name, st->body, st->len);
        /* Every fixture ends on a complete event; events tile the body. */
        assert_true(ref.n > 0);
        assert_int_equal(ref.end[ref.n - 1], st->len);
        for (k = 0; k < ref.n; k++) {
            size_t start = k > 0 ? ref.end[k - 1] : 0;

            assert_true(ref.end[k] > start);
            sum += ref.end[k] - start;
            /* Each event ends in a blank line. */
            assert_true(ref.end[k] - start >= 2);
            assert_memory_equal(st->body + ref.end[k] - 2, "\n\n", 2);
        }
        assert_int_equal(sum, st->len);
    }
    (void)state;
}

/* Counts lines of the body starting with prefix (exact line when whole). */
static size_t count_lines(const struct fx_file *st, const char *prefix, bool whole)
{
    size_t i = 0, n = 0, pl = strlen(prefix);

    while (i < st->len) {
        const char *line = st->body + i;
        const char *nl = memchr(line, '\n', st->len - i);
        size_t ll = nl != NULL ? (size_t)(nl - line) : st->len - i;

        if (whole ? ll == pl && memcmp(line, prefix, pl) == 0
                  : ll >= pl && memcmp(line, prefix, pl) == 0)
            n++;
        i += ll + 1;
    }
    return n;
}

static void test_fixture_decode(void **state)
{
    static struct cuts ref;
    char scratch[64];
    size_t i, k;

    for (i = 0; i < fx.n; i++) {
        const struct fx_file *st = &fx.f[i];
        size_t ndata = 0, npings = 0, ndone = 0;
        bool last_done = false;
        /* the Responses and Messages streams name every event after its type */
        bool named = strstr(st->name, "/apis/responses") != NULL ||
                     strstr(st->name, "/apis/anthropic") != NULL;

        if (!st->sse)
            continue;

        scan_pieces(st->body, st->len, NULL, 0, &ref);
        for (k = 0; k < ref.n; k++) {
            size_t start = k > 0 ? ref.end[k - 1] : 0;
            struct sse_event ev;

            sse_event_decode(span_make(st->body + start, ref.end[k] - start), scratch,
                             sizeof(scratch), &ev);
            /* One data line per event in every fixture: borrowed, never truncated. */
            assert_false(ev.truncated);
            if (named) {
                char type[96];
                assert_true(ev.name.len > 0 && ev.name.len < 64);
                snprintf(type, sizeof(type), "{\"type\":\"%.*s\"", (int)ev.name.len, ev.name.p);
                assert_memory_equal(ev.data.p, type, strlen(type));
            } else {
                assert_int_equal(ev.name.len, 0);
            }
            assert_true(ev.has_data != ev.comment_only);
            if (ev.has_data) {
                ndata++;
                assert_true(ev.data.p > st->body + start && ev.data.p < st->body + ref.end[k]);
                assert_true(ev.data.len > 0);
                assert_true(ev.data.p[0] == '{' || ev.done);
                assert_int_equal(ev.data.p[ev.data.len], '\n');
            } else {
                npings++;
                assert_int_equal(ev.data.len, 0);
            }
            if (ev.done)
                ndone++;
            last_done = ev.done;
        }
        assert_int_equal(ndata, count_lines(st, "data:", false));
        assert_int_equal(npings, count_lines(st, ":", true));
        /* [DONE] ends the OpenAI-style routes only, and only at the end. */
        assert_true(ndone <= 1);
        assert_true(ndone == 0 || last_done);
        if (strstr(st->name, "generate_stream") != NULL ||
            strstr(st->name, "completion-native") != NULL ||
            strstr(st->name, "client-abort") != NULL ||
            strstr(st->name, "openai/stream_error") != NULL || named)
            assert_int_equal(ndone, 0);
        else
            assert_int_equal(ndone, 1);
    }
    (void)state;
}

/* Raw bytes of the JSON string value of "key" in a one-line object. */
static struct span jsonl_str(const char *line, const char *key)
{
    char pat[64];
    const char *p, *q;

    snprintf(pat, sizeof(pat), "\"%s\": \"", key);
    p = strstr(line, pat);
    assert_non_null(p);
    p += strlen(pat);
    for (q = p; *q != '"'; q++) {
        assert_true(*q != '\0');
        if (*q == '\\')
            q++;
    }
    return span_make(p, (size_t)(q - p));
}

/* The recorder's events.jsonl lists each event's payload: the scanner and
 * decoder must find the same events with the same data. */
static void test_fixture_matches_recorder(void **state)
{
    static const char *const names[] = {
        "chat-stream-gap-during-other-prefill",
        "chat-stream-sse-ping-interval-2",
        "chat-stream-timing-small",
        "chat-stream-timing-tiny",
    };
    static struct cuts ref;
    static char decoded[8192];
    char path[1024], name[256], scratch[16];
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const struct fx_file *st;
        size_t jl_len, k = 0, npings = 0;
        char *jl, *line, *save = NULL;

        snprintf(name, sizeof(name), "llama.cpp/%s.http", names[i]);
        st = stream_named(name);
        snprintf(path, sizeof(path), "llama.cpp/%s.events.jsonl", names[i]);
        jl = fx_read(path, &jl_len);
        assert_non_null(jl);
        scan_pieces(st->body, st->len, NULL, 0, &ref);
        for (line = strtok_r(jl, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
            struct span want = jsonl_str(line, "data");
            size_t start, dl;
            struct sse_event ev;

            assert_true(k < ref.n);
            start = k > 0 ? ref.end[k - 1] : 0;
            sse_event_decode(span_make(st->body + start, ref.end[k] - start), scratch,
                             sizeof(scratch), &ev);
            dl = json_str_decode(want, decoded, sizeof(decoded));
            assert_true(dl < sizeof(decoded));
            if (dl == 1 && decoded[0] == ':') {
                assert_true(ev.comment_only);
                npings++;
            } else {
                assert_true(ev.has_data);
                assert_int_equal(ev.data.len, dl);
                assert_memory_equal(ev.data.p, decoded, dl);
            }
            k++;
        }
        assert_int_equal(k, ref.n);
        if (strcmp(names[i], "chat-stream-sse-ping-interval-2") == 0)
            assert_int_equal(npings, 4); /* summary.json: a_ping_comments */
        else
            assert_int_equal(npings, 0);
        free(jl);
    }
    (void)state;
}

static void test_fixture_tgi_shapes(void **state)
{
    const struct fx_file *chat = stream_named("tgi/stream_chat.sse");
    const struct fx_file *gen = stream_named("tgi/generate_stream.sse");
    struct sse_scanner s;
    struct sse_event ev;
    size_t c;

    /* TGI's axum keep-alive ":" comes first, then "data:{" with no space. */
    sse_scan_init(&s);
    assert_int_equal(sse_scan(&s, span_make(chat->body, chat->len), &c), SPAN_OK);
    assert_int_equal(c, 3);
    sse_event_decode(span_make(chat->body, c), NULL, 0, &ev);
    assert_true(ev.comment_only);
    assert_false(ev.has_data);
    assert_false(ev.done);

    sse_scan_init(&s);
    assert_int_equal(sse_scan(&s, span_make(gen->body, gen->len), &c), SPAN_OK);
    sse_event_decode(span_make(gen->body, c), NULL, 0, &ev);
    assert_true(ev.has_data);
    assert_true(ev.data.p == gen->body + 5);
    assert_int_equal(ev.data.len, c - 7);
    assert_memory_equal(ev.data.p, "{\"index\":1,", 11);
    (void)state;
}

/* ---- hand-made streams -------------------------------------------------- */

struct want_event {
    const char *data; /* NULL: no data line */
    bool comment_only;
    bool done;
    const char *name; /* NULL: no event field */
};

/* Scans `text` at every split and byte by byte, then decodes each event. */
static void check_stream(const char *text, size_t len, const struct want_event *want, size_t nwant,
                         size_t pending, bool partial)
{
    static struct cuts ref;
    struct sse_scanner s;
    char scratch[256];
    size_t k, c;

    check_split_invariance("handmade", text, len, &ref);
    check_split_invariance_naive("handmade", text, len);
    assert_int_equal(ref.n, nwant);
    assert_int_equal(len - (ref.n > 0 ? ref.end[ref.n - 1] : 0), pending);
    /* What is left once the last event is out: pending bytes, and whether
     * they are an unfinished event. */
    sse_scan_init(&s);
    for (k = 0; k < len; k += c) {
        if (sse_scan(&s, span_make(text + k, len - k), &c) == SPAN_AGAIN)
            assert_int_equal(k + c, len);
    }
    assert_int_equal(sse_scan_pending(&s), pending);
    assert_int_equal(sse_scan_partial(&s), partial);
    for (k = 0; k < ref.n; k++) {
        size_t start = k > 0 ? ref.end[k - 1] : 0;
        struct sse_event ev;

        sse_event_decode(span_make(text + start, ref.end[k] - start), scratch, sizeof(scratch),
                         &ev);
        assert_int_equal(ev.comment_only, want[k].comment_only);
        assert_int_equal(ev.done, want[k].done);
        assert_false(ev.truncated);
        if (want[k].data == NULL) {
            assert_false(ev.has_data);
        } else {
            assert_true(ev.has_data);
            assert_int_equal(ev.data.len, strlen(want[k].data));
            assert_memory_equal(ev.data.p, want[k].data, ev.data.len);
        }
        if (want[k].name == NULL) {
            assert_int_equal(ev.name.len, 0);
        } else {
            assert_int_equal(ev.name.len, strlen(want[k].name));
            assert_memory_equal(ev.name.p, want[k].name, ev.name.len);
        }
    }
}

/* CHECK_STREAM(text, pending bytes, pending is an unfinished event, events...) */
#define CHECK_STREAM(lit, pending, partial, ...)                                                   \
    do {                                                                                           \
        static const struct want_event w_[] = { __VA_ARGS__ };                                     \
        check_stream(lit, sizeof(lit) - 1, w_, sizeof(w_) / sizeof(w_[0]), pending, partial);      \
    } while (0)

static void test_line_endings(void **state)
{
    /* LF, CRLF, lone CR and a mix; the CR LF of a blank line counts once. */
    CHECK_STREAM("data: a\n\ndata: b\n\n", 0, false, { "a", false, false, NULL },
                 { "b", false, false, NULL });
    CHECK_STREAM("data: a\r\n\r\ndata: b\r\n\r\n", 1, false, { "a", false, false, NULL },
                 { "b", false, false, NULL });
    CHECK_STREAM("data: a\r\rdata: b\r\r", 0, false, { "a", false, false, NULL },
                 { "b", false, false, NULL });
    CHECK_STREAM("data: a\r\ndata: b\r\rdata: c\n\r\n:\r\n\r\ndata: [DONE]\r\n\r\n", 1, false,
                 { "a\nb", false, false, NULL }, { "c", false, false, NULL },
                 { NULL, true, false, NULL }, { "[DONE]", false, true, NULL });
    /* A blank CR LF right after a CR-ended event is an empty event of its own. */
    CHECK_STREAM("data: a\r\r\r\ndata: b\n\n", 0, false, { "a", false, false, NULL },
                 { NULL, false, false, NULL }, { "b", false, false, NULL });
    /* An incomplete last event stays pending. */
    CHECK_STREAM("data: a\n\ndata: b\n", 8, true, { "a", false, false, NULL });
    CHECK_STREAM("data: a\n\n:", 1, true, { "a", false, false, NULL });
    CHECK_STREAM("data: a\r\rd", 1, true, { "a", false, false, NULL });
    CHECK_STREAM("data: a\r\r\nd", 2, true, { "a", false, false, NULL });
    CHECK_STREAM("data: a\r\n\r\ndata: b\r\n\r", 0, false, { "a", false, false, NULL },
                 { "b", false, false, NULL });
    (void)state;
}

static void test_crlf_split_counts_once(void **state)
{
    const char *t = "data: x\r\n\r\ndata: y\r\n\r\n";
    struct sse_scanner s;
    struct sse_event ev;
    size_t c;

    /* The event ends at the CR of its blank line; the LF that completes it
     * opens the next event and decodes as nothing. */
    sse_scan_init(&s);
    assert_int_equal(sse_scan(&s, span_make(t, 10), &c), SPAN_OK);
    assert_int_equal(c, 10);
    assert_int_equal(sse_scan(&s, span_make(t + 10, 1), &c), SPAN_AGAIN);
    assert_int_equal(c, 1);
    assert_int_equal(sse_scan_pending(&s), 1);
    assert_int_equal(sse_scan(&s, span_make(t + 11, strlen(t) - 11), &c), SPAN_OK);
    assert_int_equal(c, 10);
    sse_event_decode(span_make(t + 10, 11), NULL, 0, &ev);
    assert_true(ev.has_data);
    assert_true(span_eq(ev.data, "y"));
    (void)state;
}

static void test_empty_events_and_pending(void **state)
{
    struct sse_scanner s;
    struct sse_event ev;
    size_t c;

    /* A stray blank line first is an empty event, as in the SSE spec. */
    CHECK_STREAM("\ndata: a\n\n\n", 0, false, { NULL, false, false, NULL },
                 { "a", false, false, NULL }, { NULL, false, false, NULL });
    CHECK_STREAM("\r\n\r\n", 1, false, { NULL, false, false, NULL }, { NULL, false, false, NULL });
    sse_scan_init(&s);
    assert_int_equal(sse_scan(&s, span_cstr("data: abc"), &c), SPAN_AGAIN);
    assert_int_equal(c, 9);
    assert_int_equal(sse_scan_pending(&s), 9);
    assert_int_equal(sse_scan(&s, span_cstr("\n"), &c), SPAN_AGAIN);
    assert_int_equal(sse_scan_pending(&s), 10);
    assert_int_equal(sse_scan(&s, span_cstr("\ndata: d"), &c), SPAN_OK);
    assert_int_equal(c, 1);
    assert_int_equal(sse_scan_pending(&s), 0);
    assert_int_equal(sse_scan(&s, span_make("", 0), &c), SPAN_AGAIN);
    assert_int_equal(c, 0);
    sse_event_decode(span_make("", 0), NULL, 0, &ev);
    assert_false(ev.has_data);
    assert_false(ev.comment_only);
    (void)state;
}

static void test_fields(void **state)
{
    /* One optional space only; no colon means an empty value; id/retry and
     * unknown fields ignored; event: kept; comments beside data do not make
     * a ping. */
    CHECK_STREAM("data:x\n\n", 0, false, { "x", false, false, NULL });
    CHECK_STREAM("data:  x\n\n", 0, false, { " x", false, false, NULL });
    CHECK_STREAM("data\n\n", 0, false, { "", false, false, NULL });
    CHECK_STREAM("data:[DONE]\n\n", 0, false, { "[DONE]", false, true, NULL });
    CHECK_STREAM("data: [DONE] \n\n", 0, false, { "[DONE] ", false, false, NULL });
    CHECK_STREAM("id: 7\nretry: 100\nfoo: bar\ndata: {}\n\n", 0, false,
                 { "{}", false, false, NULL });
    CHECK_STREAM("event: error\ndata: {\"error\":1}\n\n", 0, false,
                 { "{\"error\":1}", false, false, "error" });
    CHECK_STREAM(": ping\ndata: a\n\n", 0, false, { "a", false, false, NULL });
    CHECK_STREAM(":\n:more\n\n", 0, false, { NULL, true, false, NULL });
    CHECK_STREAM("id: 1\n\n", 0, false, { NULL, false, false, NULL });
    CHECK_STREAM("event:message\n\n", 0, false, { NULL, false, false, "message" });
    CHECK_STREAM("Data: x\n\n", 0, false, { NULL, false, false, NULL });
    CHECK_STREAM("data: a\ndata:\ndata: b\n\n", 0, false, { "a\n\nb", false, false, NULL });
    CHECK_STREAM("data: [DONE]\ndata: more\n\n", 0, false, { "[DONE]\nmore", false, false, NULL });
    (void)state;
}

static void test_multiline_truncation(void **state)
{
    const char *t = "data: 0123\ndata: 4567\ndata: 89\n\n";
    struct sse_event ev;
    char scratch[16];

    /* Joined exactly: 4 + 1 + 4 + 1 + 2 = 12 bytes. */
    sse_event_decode(span_cstr(t), scratch, 12, &ev);
    assert_false(ev.truncated);
    assert_true(ev.data.p == scratch);
    assert_true(span_eq(ev.data, "0123\n4567\n89"));
    /* One byte short. */
    sse_event_decode(span_cstr(t), scratch, 11, &ev);
    assert_true(ev.truncated);
    assert_true(span_eq(ev.data, "0123\n4567\n8"));
    /* Cut on the separator and before it. */
    sse_event_decode(span_cstr(t), scratch, 5, &ev);
    assert_true(ev.truncated);
    assert_true(span_eq(ev.data, "0123\n"));
    sse_event_decode(span_cstr(t), scratch, 3, &ev);
    assert_true(ev.truncated);
    assert_true(span_eq(ev.data, "012"));
    /* No scratch at all. */
    sse_event_decode(span_cstr(t), NULL, 0, &ev);
    assert_true(ev.truncated);
    assert_true(ev.has_data);
    assert_int_equal(ev.data.len, 0);
    /* A truncated "[DONE]" prefix is not done. */
    sse_event_decode(span_cstr("data: [DO\ndata: NE]\n\n"), scratch, 4, &ev);
    assert_false(ev.done);
    /* A single line is borrowed and needs no scratch. */
    sse_event_decode(span_cstr("data: 0123456789abcdefXYZ\n\n"), NULL, 0, &ev);
    assert_false(ev.truncated);
    assert_true(span_eq(ev.data, "0123456789abcdefXYZ"));
    (void)state;
}

static void test_decode_tolerates_missing_terminator(void **state)
{
    struct sse_event ev;

    /* Bytes that never reached a blank line (a stream cut short). */
    sse_event_decode(span_cstr("data: abc"), NULL, 0, &ev);
    assert_true(ev.has_data);
    assert_true(span_eq(ev.data, "abc"));
    sse_event_decode(span_cstr("data: abc\r"), NULL, 0, &ev);
    assert_true(span_eq(ev.data, "abc"));
    sse_event_decode(span_cstr(":"), NULL, 0, &ev);
    assert_true(ev.comment_only);
    sse_event_decode(span_cstr("\n"), NULL, 0, &ev);
    assert_false(ev.has_data);
    assert_false(ev.comment_only);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_found),
        cmocka_unit_test(test_fixture_splits),
        cmocka_unit_test(test_fixture_decode),
        cmocka_unit_test(test_fixture_matches_recorder),
        cmocka_unit_test(test_fixture_tgi_shapes),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_crlf_split_counts_once),
        cmocka_unit_test(test_empty_events_and_pending),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_multiline_truncation),
        cmocka_unit_test(test_decode_tolerates_missing_terminator),
    };

    return cmocka_run_group_tests_name("sse", tests, fixtures_setup, fixtures_teardown);
}
