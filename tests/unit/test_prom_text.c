/* Unit tests for prom_text: every fixture /metrics body parsed whole, byte by byte
 * and at every split point gives the same samples; exact values of
 * representative samples; each format quirk on its own; errors with lines. */
#include "pitot/format/prom_text.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"

/* ---- fixtures ------------------------------------------------------------ */

static struct fx_body bodies[] = {
    FX_METRICS_BODIES,
};

#define NBODIES (sizeof(bodies) / sizeof(bodies[0]))

static int bodies_setup(void **state)
{
    fx_bodies_load(bodies, NBODIES);
    (void)state;
    return 0;
}

static int bodies_teardown(void **state)
{
    fx_bodies_release(bodies, NBODIES);
    (void)state;
    return 0;
}

/* ---- samples as text ---------------------------------------------------- */

/* Every sample of a run, one line each: name{l="v",...} value [ts] type @line,
 * label values re-escaped so that the text is unambiguous. */
struct rec {
    char *p; /* owned */
    size_t len, cap;
    size_t n;       /* samples */
    int stop_after; /* > 0: the callback stops after this many */
};

static void rec_put(struct rec *r, const char *s, size_t n)
{
    if (r->len + n + 1 > r->cap) {
        r->cap = (r->len + n + 1) * 2;
        r->p = realloc(r->p, r->cap);
        assert_non_null(r->p);
    }
    memcpy(r->p + r->len, s, n);
    r->len += n;
    r->p[r->len] = '\0';
}

static void rec_str(struct rec *r, const char *s)
{
    rec_put(r, s, strlen(s));
}

static int rec_sample(void *ud, const struct prom_sample *s)
{
    struct rec *r = ud;
    char num[128];
    size_t i, k;

    assert_true(s->nlabels <= PROM_LABELS_MAX);
    rec_put(r, s->name.p, s->name.len);
    if (s->nlabels > 0) {
        rec_str(r, "{");
        for (i = 0; i < s->nlabels; i++) {
            rec_put(r, s->labels[i].name.p, s->labels[i].name.len);
            rec_str(r, "=\"");
            for (k = 0; k < s->labels[i].value.len; k++) {
                char c = s->labels[i].value.p[k];

                if (c == '\n')
                    rec_str(r, "\\n");
                else if (c == '\\' || c == '"')
                    rec_put(r, (const char[]){ '\\', c }, 2);
                else
                    rec_put(r, &c, 1);
            }
            rec_str(r, i + 1 < s->nlabels ? "\"," : "\"}");
        }
    }
    snprintf(num, sizeof(num), " %.17g", s->value);
    rec_str(r, num);
    if (s->has_timestamp) {
        snprintf(num, sizeof(num), " %.17g", s->timestamp);
        rec_str(r, num);
    }
    snprintf(num, sizeof(num), " %s @%u\n", prom_type_name(s->type), s->line);
    rec_str(r, num);
    r->n++;
    return r->stop_after > 0 && r->n >= (size_t)r->stop_after;
}

static void rec_free(struct rec *r)
{
    free(r->p);
    memset(r, 0, sizeof(*r));
}

/* Parses text whole; returns the result, the samples in r (caller frees). */
static int run(const char *text, size_t len, struct rec *r, struct prom_parser *p)
{
    memset(r, 0, sizeof(*r));
    rec_str(r, "");
    return prom_parse(p, span_make(text, len), rec_sample, r);
}

static struct prom_parser parser; /* 17 KiB: kept off the test stack */

/* Asserts that text parses whole to exactly `want` (sample lines as above). */
static void expect_samples(const char *text, const char *want)
{
    struct rec r;

    assert_int_equal(run(text, strlen(text), &r, &parser), SPAN_OK);
    assert_string_equal(r.p, want);
    rec_free(&r);
}

/* Asserts that text fails at line `line` with a reason containing `why`, both
 * whole and byte by byte. */
static void expect_error(const char *text, unsigned line, const char *why)
{
    struct rec r;
    size_t i, len = strlen(text);
    int res = SPAN_AGAIN;

    assert_int_equal(run(text, len, &r, &parser), SPAN_ERR);
    assert_non_null(parser.err);
    if (strstr(parser.err, why) == NULL)
        fail_msg("error \"%s\", expected \"%s\"", parser.err, why);
    assert_int_equal(parser.err_line, line);
    rec_free(&r);

    memset(&r, 0, sizeof(r));
    prom_init(&parser, rec_sample, &r);
    for (i = 0; i < len && res != SPAN_ERR; i++)
        res = prom_feed(&parser, span_make(text + i, 1));
    if (res != SPAN_ERR)
        res = prom_finish(&parser);
    assert_int_equal(res, SPAN_ERR);
    assert_int_equal(parser.err_line, line);
    assert_non_null(strstr(parser.err, why));
    rec_free(&r);
}

/* ---- every fixture whole and at every split ----------------------------- */

/* Lines that hold a sample: not blank, not a comment. */
static size_t count_sample_lines(const char *p, size_t len)
{
    size_t i = 0, n = 0;

    while (i < len) {
        size_t j = i;

        while (j < len && (p[j] == ' ' || p[j] == '\t'))
            j++;
        if (j < len && p[j] != '#' && p[j] != '\n' && p[j] != '\r')
            n++;
        while (i < len && p[i] != '\n')
            i++;
        i++;
    }
    return n;
}

static void test_fixtures_whole(void **state)
{
    size_t i;

    for (i = 0; i < NBODIES; i++) {
        struct rec r;

        if (run(bodies[i].p, bodies[i].len, &r, &parser) != SPAN_OK)
            fail_msg("%s: line %u: %s", bodies[i].name, parser.err_line, parser.err);
        assert_false(parser.eof);
        assert_true(r.n > 10);
        assert_int_equal(r.n, count_sample_lines(bodies[i].p, bodies[i].len));
        rec_free(&r);
    }
    (void)state;
}

/* Feeds b in pieces of the given sizes (cycled; 0 = the rest at once). */
static void run_pieces(const struct fx_body *b, const size_t *sizes, size_t nsizes, struct rec *r)
{
    size_t off = 0, k = 0;
    int res = SPAN_AGAIN;

    memset(r, 0, sizeof(*r));
    rec_str(r, "");
    prom_init(&parser, rec_sample, r);
    while (off < b->len) {
        size_t n = sizes[k++ % nsizes];

        if (n == 0 || n > b->len - off)
            n = b->len - off;
        res = prom_feed(&parser, span_make(b->p + off, n));
        assert_int_equal(res, SPAN_AGAIN);
        off += n;
    }
    assert_int_equal(prom_finish(&parser), SPAN_OK);
}

/* Byte by byte, in uneven pieces, and whole-then-rest at spread split points:
 * the very same sample text. */
static void test_fixtures_pieces(void **state)
{
    static const size_t one[] = { 1 }, uneven[] = { 7, 1, 300, 2, 8191, 13, 4096 };
    size_t i, k;

    for (i = 0; i < NBODIES; i++) {
        const struct fx_body *b = &bodies[i];
        struct rec whole, r;

        assert_int_equal(run(b->p, b->len, &whole, &parser), SPAN_OK);
        run_pieces(b, one, 1, &r);
        assert_string_equal(r.p, whole.p);
        rec_free(&r);
        run_pieces(b, uneven, 7, &r);
        assert_string_equal(r.p, whole.p);
        rec_free(&r);
        for (k = 1; k < 64; k++) {
            size_t sizes[2] = { b->len * k / 64, 0 };

            if (sizes[0] == 0)
                continue;
            run_pieces(b, sizes, 2, &r);
            assert_string_equal(r.p, whole.p);
            rec_free(&r);
        }
        rec_free(&whole);
    }
    (void)state;
}

/* Parser state that decides everything after a line boundary. */
static void assert_same_state(const struct prom_parser *a, const struct prom_parser *b)
{
    assert_int_equal(a->state, b->state);
    assert_int_equal(a->line, b->line);
    assert_int_equal(a->eof, b->eof);
    assert_ptr_equal(a->err, b->err);
    assert_int_equal(a->family_type, b->family_type);
    assert_int_equal(a->family_len, b->family_len);
    assert_memory_equal(a->family, b->family, a->family_len);
    assert_int_equal(a->buf_len, b->buf_len);
}

/* Every split point: a split inside line L only touches line L, so each split
 * k is checked from a copy of the state before L (the struct holds no pointer
 * into itself): feeding [start of L, k) then [k, end of L] must give the same
 * samples and the same state as feeding the line at once; that state, being
 * identical, then parses the rest identically. The line-at-a-time run must
 * give the whole-body samples. */
static void test_fixtures_every_split(void **state)
{
    static struct prom_parser at_line, next, t;
    size_t i;

    for (i = 0; i < NBODIES; i++) {
        const struct fx_body *b = &bodies[i];
        struct rec whole, lines, want, got;
        size_t start = 0, splits = 0, nlines = 0;

        assert_int_equal(run(b->p, b->len, &whole, &parser), SPAN_OK);
        memset(&lines, 0, sizeof(lines));
        rec_str(&lines, "");
        prom_init(&at_line, rec_sample, NULL);
        while (start < b->len) {
            const char *nl = memchr(b->p + start, '\n', b->len - start);
            size_t end = nl != NULL ? (size_t)(nl - b->p) + 1 : b->len, k;

            memset(&want, 0, sizeof(want));
            rec_str(&want, "");
            next = at_line;
            next.ud = &want;
            assert_int_equal(prom_feed(&next, span_make(b->p + start, end - start)), SPAN_AGAIN);
            if (nl == NULL)
                assert_int_equal(prom_finish(&next), SPAN_OK);
            for (k = start + 1; k < end; k++) {
                memset(&got, 0, sizeof(got));
                rec_str(&got, "");
                t = at_line;
                t.ud = &got;
                assert_int_equal(prom_feed(&t, span_make(b->p + start, k - start)), SPAN_AGAIN);
                assert_int_equal(t.buf_len, k - start);
                assert_int_equal(prom_feed(&t, span_make(b->p + k, end - k)), SPAN_AGAIN);
                if (nl == NULL)
                    assert_int_equal(prom_finish(&t), SPAN_OK);
                assert_string_equal(got.p, want.p);
                assert_same_state(&t, &next);
                rec_free(&got);
                splits++;
            }
            rec_str(&lines, want.p);
            rec_free(&want);
            at_line = next;
            start = end;
            nlines++;
        }
        assert_string_equal(lines.p, whole.p);
        assert_int_equal(splits, b->len - nlines); /* every byte boundary inside a line */
        rec_free(&lines);
        rec_free(&whole);
    }
    (void)state;
}

/* ---- exact values -------------------------------------------------------- */

/* Finds the first sample named `name` (with label lk="lv" when lk is set). */
struct find {
    const char *name, *lk, *lv;
    bool found;
    struct prom_sample s; /* spans dead after the parse; values kept */
    size_t nlabels;
    char label_text[512];
};

static int find_sample(void *ud, const struct prom_sample *s)
{
    struct find *f = ud;
    size_t i;

    if (f->found || !span_eq(s->name, f->name))
        return 0;
    if (f->lk != NULL) {
        struct span v = prom_sample_label(s, f->lk);

        if (v.p == NULL || !span_eq(v, f->lv))
            return 0;
    }
    f->found = true;
    f->s = *s;
    f->nlabels = s->nlabels;
    f->label_text[0] = '\0';
    for (i = 0; i < s->nlabels; i++) {
        size_t n = strlen(f->label_text);

        snprintf(f->label_text + n, sizeof(f->label_text) - n, "%.*s=%.*s;",
                 (int)s->labels[i].name.len, s->labels[i].name.p, (int)s->labels[i].value.len,
                 s->labels[i].value.p);
    }
    return 0;
}

static struct find find_in(const char *body_name, const char *name, const char *lk, const char *lv)
{
    const struct fx_body *b = fx_bodies_find(bodies, NBODIES, body_name);
    struct find f;

    memset(&f, 0, sizeof(f));
    f.name = name;
    f.lk = lk;
    f.lv = lv;
    assert_int_equal(prom_parse(&parser, span_make(b->p, b->len), find_sample, &f), SPAN_OK);
    if (!f.found)
        fail_msg("%s: no sample %s", body_name, name);
    return f;
}

static double value_in(const char *body_name, const char *name)
{
    return find_in(body_name, name, NULL, NULL).s.value;
}

static void test_vllm_values(void **state)
{
    struct find f;

    assert_true(value_in("vllm/metrics.txt", "vllm:num_requests_running") == 3.0);
    assert_true(value_in("vllm/metrics.txt", "vllm:num_requests_waiting") == 5.0);
    assert_true(value_in("vllm/metrics.txt", "vllm:kv_cache_usage_perc") == 0.87);
    /* prometheus_client's 3-digit exponent */
    assert_true(value_in("vllm/metrics.txt", "process_virtual_memory_bytes") == 52361908224.0);
    assert_true(value_in("vllm/metrics.txt", "vllm:prompt_tokens_total") == 9775237.0);
    f = find_in("vllm/metrics.txt", "vllm:num_requests_running", NULL, NULL);
    assert_int_equal(f.s.type, PROM_TYPE_GAUGE);
    assert_string_equal(f.label_text, "engine=0;model_name=meta-llama/Llama-3.3-70B-Instruct;");
    assert_int_equal(f.s.line, 39);
    assert_false(f.s.has_timestamp);
    /* _total counter, its separate _created gauge family */
    f = find_in("vllm/metrics.txt", "vllm:prompt_tokens_total", NULL, NULL);
    assert_int_equal(f.s.type, PROM_TYPE_COUNTER);
    f = find_in("vllm/metrics.txt", "vllm:prompt_tokens_created", NULL, NULL);
    assert_int_equal(f.s.type, PROM_TYPE_GAUGE);
    assert_true(f.s.value == 1.786941182504881e+09);
    /* histogram whose family name ends in _total */
    f = find_in("vllm/metrics.txt", "vllm:iteration_tokens_total_bucket", "le", "+Inf");
    assert_int_equal(f.s.type, PROM_TYPE_HISTOGRAM);
    assert_true(f.s.value == value_in("vllm/metrics.txt", "vllm:iteration_tokens_total_count"));
    f = find_in("vllm/metrics.txt", "vllm:iteration_tokens_total_bucket", NULL, NULL);
    assert_string_equal(f.label_text,
                        "engine=0;le=1.0;model_name=meta-llama/Llama-3.3-70B-Instruct;");
    assert_true(f.s.value == 73.0);
    (void)state;
}

static void test_tgi_values(void **state)
{
    struct find f;

    assert_true(value_in("tgi/metrics.txt", "tgi_queue_size") == 5.0);
    assert_true(value_in("tgi/metrics.txt", "tgi_batch_current_size") == 3.0);
    assert_true(value_in("tgi/metrics.txt", "tgi_batch_current_max_tokens") == 24556.0);
    assert_true(value_in("tgi/metrics.txt", "tgi_batch_max_total_tokens") == 28224.0);
    f = find_in("tgi/metrics.txt", "tgi_batch_inference_success", "method", "decode");
    assert_true(f.s.value == 63474.0);
    assert_int_equal(f.s.type, PROM_TYPE_COUNTER);
    assert_int_equal(f.s.line, 4);
    f = find_in("tgi/metrics.txt", "tgi_request_queue_duration_bucket", "le",
                "0.00015000000000000001");
    assert_int_equal(f.s.type, PROM_TYPE_HISTOGRAM);
    assert_true(f.s.value == 0.0);
    f = find_in("tgi/metrics.txt", "tgi_request_skipped_tokens", "quantile", "0.999");
    assert_int_equal(f.s.type, PROM_TYPE_SUMMARY);
    (void)state;
}

static void test_sglang_values(void **state)
{
    struct find f;

    assert_true(value_in("sglang/metrics.txt", "sglang:num_running_reqs") == 3.0);
    assert_true(value_in("sglang/metrics.txt", "sglang:num_queue_reqs") == 5.0);
    assert_true(value_in("sglang/metrics.txt", "sglang:token_usage") == 0.87);
    assert_true(value_in("sglang/metrics.txt", "sglang:prompt_tokens_total") == 13959590.0);
    f = find_in("sglang/metrics.txt", "sglang:num_retracted_reqs", NULL, NULL);
    assert_string_equal(f.label_text, "engine_type=unified;model_name=Qwen/Qwen2.5-32B-Instruct;"
                                      "moe_ep_rank=0;pid=1873;pp_rank=0;tp_rank=0;");
    assert_true(f.s.value == 0.0);
    assert_int_equal(f.s.line, 129);
    (void)state;
}

static void test_llamacpp_values(void **state)
{
    const char *busy = "llama.cpp/metrics-busy.http", *idle = "llama.cpp/metrics-idle-fresh.http";
    struct find f;

    assert_true(value_in(busy, "llamacpp:requests_processing") == 2.0);
    assert_true(value_in(busy, "llamacpp:requests_deferred") == 2.0);
    assert_true(value_in(busy, "llamacpp:prompt_seconds_total") == 1.02365);
    assert_true(value_in(busy, "llamacpp:prompt_tokens_total") == 151.0);
    assert_true(value_in(idle, "llamacpp:requests_processing") == 0.0);
    assert_true(value_in(idle, "llamacpp:requests_deferred") == 0.0);
    f = find_in(busy, "llamacpp:n_busy_slots_per_decode", NULL, NULL);
    assert_true(f.s.value == 1.03256);
    assert_int_equal(f.s.type, PROM_TYPE_GAUGE);
    assert_int_equal(f.nlabels, 0);
    (void)state;
}

/* ---- quirks, one by one -------------------------------------------------- */

static void test_names_with_colons(void **state)
{
    expect_samples("a:b:c 1\n:lead 2\nx_1:y 3\n", "a:b:c 1  @1\n:lead 2  @2\nx_1:y 3  @3\n");
    (void)state;
}

static void test_total_help_type(void **state)
{
    expect_samples("# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n",
                   "x_total 3 counter @3\n");
    /* OpenMetrics names the family without _total */
    expect_samples("# TYPE x counter\nx_total 3\nx_created 1.7e9\n# EOF\n",
                   "x_total 3 counter @2\nx_created 1700000000 counter @3\n");
    (void)state;
}

static void test_created_family(void **state)
{
    expect_samples("# TYPE x_total counter\nx_total 1.0\n"
                   "# HELP x_created Things.\n# TYPE x_created gauge\n"
                   "x_created{a=\"b\"} 1.786941182504881e+09\n",
                   "x_total 1 counter @2\nx_created{a=\"b\"} 1786941182.5048809 gauge @5\n");
    (void)state;
}

static void test_exponents(void **state)
{
    expect_samples("a 5.2361908224e+010\nb 9.775237e+06\nc 1.23457e+06\nd 1E-3\ne 2e0\n"
                   "f .5\ng 5.\nh -0.25\ni +7\n",
                   "a 52361908224  @1\nb 9775237  @2\nc 1234570  @3\nd 0.001  @4\ne 2  @5\n"
                   "f 0.5  @6\ng 5  @7\nh -0.25  @8\ni 7  @9\n");
    (void)state;
}

static void test_le_inf(void **state)
{
    expect_samples("# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 4\n"
                   "h_sum 2.5\nh_count 4\n",
                   "h_bucket{le=\"0.5\"} 1 histogram @2\nh_bucket{le=\"+Inf\"} 4 histogram @3\n"
                   "h_sum 2.5 histogram @4\nh_count 4 histogram @5\n");
    (void)state;
}

static void test_integers(void **state)
{
    expect_samples("tgi_queue_size 5\nbig 18446744073709551616\nz 0\n",
                   "tgi_queue_size 5  @1\nbig 1.8446744073709552e+19  @2\nz 0  @3\n");
    (void)state;
}

static void test_blank_lines(void **state)
{
    expect_samples("\n\na 1\n\n  \n\t\nb 2\n\n", "a 1  @3\nb 2  @7\n");
    (void)state;
}

static void test_histogram_total(void **state)
{
    expect_samples("# TYPE vllm:iteration_tokens_total histogram\n"
                   "vllm:iteration_tokens_total_bucket{le=\"1.0\"} 73.0\n"
                   "vllm:iteration_tokens_total_sum 5\n"
                   "vllm:iteration_tokens_total_count 9\n"
                   "vllm:iteration_tokens_totalx 1\n",
                   "vllm:iteration_tokens_total_bucket{le=\"1.0\"} 73 histogram @2\n"
                   "vllm:iteration_tokens_total_sum 5 histogram @3\n"
                   "vllm:iteration_tokens_total_count 9 histogram @4\n"
                   "vllm:iteration_tokens_totalx 1  @5\n");
    (void)state;
}

static void test_label_order_and_pid(void **state)
{
    struct find f;
    const char *text = "m{pid=\"1873\",tp_rank=\"0\"} 1\nm{tp_rank=\"1\",pid=\"1874\"} 2\n";

    expect_samples(text,
                   "m{pid=\"1873\",tp_rank=\"0\"} 1  @1\nm{tp_rank=\"1\",pid=\"1874\"} 2  @2\n");
    memset(&f, 0, sizeof(f));
    f.name = "m";
    f.lk = "pid";
    f.lv = "1874";
    assert_int_equal(prom_parse(&parser, span_cstr(text), find_sample, &f), SPAN_OK);
    assert_true(f.found);
    assert_true(f.s.value == 2.0);
    (void)state;
}

static void test_special_values(void **state)
{
    expect_samples("a NaN\nb +Inf\nc -Inf\nd Inf\ne nan\nf -infinity\n",
                   "a nan  @1\nb inf  @2\nc -inf  @3\nd inf  @4\ne nan  @5\nf -inf  @6\n");
    (void)state;
}

static void test_escaped_label_values(void **state)
{
    struct find f;
    const char *text = "m{a=\"x\\\\y\\\"z\\nw\",b=\"plain\",c=\"\\t\"} 1\n";

    /* re-escaped by the recorder: \\ \" \n; an unknown \t is kept as written */
    expect_samples(text, "m{a=\"x\\\\y\\\"z\\nw\",b=\"plain\",c=\"\\\\t\"} 1  @1\n");
    memset(&f, 0, sizeof(f));
    f.name = "m";
    assert_int_equal(prom_parse(&parser, span_cstr(text), find_sample, &f), SPAN_OK);
    assert_string_equal(f.label_text, "a=x\\y\"z\nw;b=plain;c=\\t;");
    /* a quote or brace inside a value is data */
    expect_samples("m{a=\"},{=\\\"\"} 3\n", "m{a=\"},{=\\\"\"} 3  @1\n");
    (void)state;
}

static void test_eof(void **state)
{
    struct rec r;
    const char *text = "# TYPE a gauge\na 1\n# EOF\n";

    memset(&r, 0, sizeof(r));
    prom_init(&parser, rec_sample, &r);
    assert_int_equal(prom_feed(&parser, span_cstr(text)), SPAN_OK);
    assert_true(parser.eof);
    assert_int_equal(prom_feed(&parser, span_cstr("\n \r\n")), SPAN_OK);
    assert_int_equal(prom_finish(&parser), SPAN_OK);
    assert_int_equal(r.n, 1);
    rec_free(&r);
    /* without a final LF */
    expect_samples("a 1\n# EOF", "a 1  @1\n");
    expect_error("a 1\n# EOF\n\nb 2\n", 4, "data after # EOF");
    /* 0.0.4 has no EOF: a body without one is complete at its end */
    assert_int_equal(run("a 1\n", 4, &r, &parser), SPAN_OK);
    assert_false(parser.eof);
    rec_free(&r);
    (void)state;
}

static void test_crlf_and_blanks(void **state)
{
    expect_samples("# TYPE a gauge\r\na 1\r\nb{c=\"d\"} 2 \t \r\n\r\n",
                   "a 1 gauge @2\nb{c=\"d\"} 2  @3\n");
    expect_samples("  a 1\n\tb { c = \"d\" , e=\"f\" , } 2   123\n",
                   "a 1  @1\nb{c=\"d\",e=\"f\"} 2 123  @2\n");
    expect_samples("m{} 1\nn{}2\n", "m 1  @1\nn 2  @2\n");
    (void)state;
}

static void test_timestamps_and_exemplars(void **state)
{
    expect_samples("a 1 1700000000000\nb 2 -5\nc 3 1.7e9\n",
                   "a 1 1700000000000  @1\nb 2 -5  @2\nc 3 1700000000  @3\n");
    expect_samples(
        "h_bucket{le=\"1\"} 3 # {trace_id=\"x\"} 0.5 123\nh_count 3 1700 # {a=\"b\"} 1\n",
        "h_bucket{le=\"1\"} 3  @1\nh_count 3 1700  @2\n");
    (void)state;
}

static void test_type_scope(void **state)
{
    /* a TYPE line applies to its family only; comments do not matter */
    expect_samples(
        "# TYPE a gauge\n# a comment\n#TYPE b summary\na 1\nab 2\nb{quantile=\"0.5\"} 3\n"
        "b_sum 4\nb_bucket 5\n",
        "a 1  @4\nab 2  @5\nb{quantile=\"0.5\"} 3 summary @6\nb_sum 4 summary @7\n"
        "b_bucket 5 summary @8\n");
    expect_samples("# TYPE u untyped\nu 1\n# TYPE k unknown\nk 2\n# TYPE i info\ni_info 3\n"
                   "# TYPE s stateset\ns{s=\"a\"} 1\n# TYPE g gaugehistogram\ng_gsum 4\n",
                   "u 1 untyped @2\nk 2 untyped @4\ni_info 3 info @6\ns{s=\"a\"} 1 stateset @8\n"
                   "g_gsum 4 gaugehistogram @10\n");
    (void)state;
}

static void test_callback_stop(void **state)
{
    struct rec r;

    memset(&r, 0, sizeof(r));
    r.stop_after = 2;
    prom_init(&parser, rec_sample, &r);
    assert_int_equal(prom_feed(&parser, span_cstr("a 1\nb 2\nc 3\n")), SPAN_OK);
    assert_int_equal(prom_feed(&parser, span_cstr("garbage {{{\n")), SPAN_OK);
    assert_int_equal(prom_finish(&parser), SPAN_OK);
    assert_int_equal(r.n, 2);
    rec_free(&r);
    (void)state;
}

static void test_last_line_without_lf(void **state)
{
    struct rec r;

    memset(&r, 0, sizeof(r));
    rec_str(&r, "");
    prom_init(&parser, rec_sample, &r);
    assert_int_equal(prom_feed(&parser, span_cstr("a 1\nb")), SPAN_AGAIN);
    assert_int_equal(prom_feed(&parser, span_cstr(" 2")), SPAN_AGAIN);
    assert_string_equal(r.p, "a 1  @1\n");
    assert_int_equal(prom_finish(&parser), SPAN_OK);
    assert_string_equal(r.p, "a 1  @1\nb 2  @2\n");
    /* nothing may follow the end */
    assert_int_equal(prom_feed(&parser, span_cstr("c 3\n")), SPAN_ERR);
    rec_free(&r);
    (void)state;
}

/* ---- errors ------------------------------------------------------------- */

static void test_error_values(void **state)
{
    expect_error("a 1\nb 1x\n", 2, "invalid sample value");
    expect_error("a 1\n\nb 0x10\n", 3, "invalid sample value");
    expect_error("a\n", 1, "sample without a value");
    expect_error("a{b=\"c\"}\n", 1, "sample without a value");
    expect_error("a 1e\n", 1, "invalid sample value");
    expect_error("a +NaN\n", 1, "invalid sample value");
    expect_error("a 1 2 3\n", 1, "text after the timestamp");
    expect_error("a 1 NaN\n", 1, "invalid timestamp");
    expect_error("a 1 12ab\n", 1, "invalid timestamp");
    (void)state;
}

static void test_error_labels(void **state)
{
    expect_error("a 1\n\nm{a=\"b 1\n", 3, "unterminated label value");
    expect_error("m{a=\"b\\\"} 1\n", 1, "unterminated label value");
    expect_error("m{a=\"b\" 1\n", 1, "expected ',' or '}'");
    expect_error("m{a=\"b\"", 1, "unterminated label set");
    expect_error("m{a=b} 1\n", 1, "not in double quotes");
    expect_error("m{1a=\"b\"} 1\n", 1, "invalid label name");
    expect_error("m{a:b=\"c\"} 1\n", 1, "expected '='");
    expect_error("m{a} 1\n", 1, "expected '='");
    expect_error("m{,} 1\n", 1, "invalid label name");
    (void)state;
}

static void test_error_names_and_types(void **state)
{
    expect_error("x 1\n1abc 2\n", 2, "invalid metric name");
    expect_error("a-b 2\n", 1, "invalid metric name");
    expect_error("# TYPE a foo\n", 1, "unknown metric type");
    expect_error("# TYPE a\n", 1, "TYPE line without a type");
    expect_error("# TYPE\n", 1, "TYPE line without a metric name");
    expect_error("# TYPE 9a gauge\n", 1, "invalid metric name in TYPE");
    expect_error("# TYPE a gauge extra\n", 1, "text after the type");
    (void)state;
}

static void test_error_too_many_labels(void **state)
{
    char text[1024];
    size_t n = 0, i;

    n += (size_t)snprintf(text + n, sizeof(text) - n, "m{");
    for (i = 0; i < PROM_LABELS_MAX; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "l%zu=\"%zu\",", i, i);
    snprintf(text + n, sizeof(text) - n, "} 1\n");
    {
        struct rec r;

        assert_int_equal(run(text, strlen(text), &r, &parser), SPAN_OK);
        assert_int_equal(r.n, 1);
        rec_free(&r);
    }
    snprintf(text + n, sizeof(text) - n, "x=\"y\"} 1\n");
    expect_error(text, 1, "more than 32 labels");
    (void)state;
}

static void test_error_line_too_long(void **state)
{
    static char text[3 * PROM_LINE_MAX];
    struct rec r;
    size_t n;

    /* exactly PROM_LINE_MAX bytes before the LF (CR included): accepted */
    n = (size_t)snprintf(text, sizeof(text), "a 1\n");
    memset(text + n, ' ', PROM_LINE_MAX);
    memcpy(text + n, "b 2", 3);
    text[n + PROM_LINE_MAX - 1] = '\r';
    memcpy(text + n + PROM_LINE_MAX, "\nc 3\n", 6);
    assert_int_equal(run(text, strlen(text), &r, &parser), SPAN_OK);
    assert_string_equal(r.p, "a 1  @1\nb 2  @2\nc 3  @3\n");
    rec_free(&r);
    /* one more: an error on that line, whole, byte by byte or in two halves */
    text[n + PROM_LINE_MAX - 1] = ' ';
    memcpy(text + n + PROM_LINE_MAX, " \nc 3\n", 7);
    expect_error(text, 2, "line longer than 8192 bytes");
    memset(&r, 0, sizeof(r));
    prom_init(&parser, rec_sample, &r);
    assert_int_equal(prom_feed(&parser, span_make(text, n + 5000)), SPAN_AGAIN);
    assert_int_equal(prom_feed(&parser, span_make(text + n + 5000, 5000)), SPAN_ERR);
    assert_int_equal(parser.err_line, 2);
    /* dead for good */
    assert_int_equal(prom_feed(&parser, span_cstr("d 4\n")), SPAN_ERR);
    assert_int_equal(prom_finish(&parser), SPAN_ERR);
    assert_int_equal(r.n, 1);
    rec_free(&r);
    /* a last line without LF counts the same */
    text[n + PROM_LINE_MAX + 1] = '\0';
    expect_error(text, 2, "line longer than 8192 bytes");
    (void)state;
}

static void test_value_parse(void **state)
{
    double v;

    assert_true(prom_value_parse(span_cstr("0.87"), &v) && v == 0.87);
    assert_true(prom_value_parse(span_cstr("-1e-3"), &v) && v == -0.001);
    assert_true(prom_value_parse(span_cstr("INF"), &v) && isinf(v) && v > 0);
    assert_false(prom_value_parse(span_cstr(""), &v));
    assert_false(prom_value_parse(span_cstr("."), &v));
    assert_false(prom_value_parse(span_cstr("1.2.3"), &v));
    assert_false(prom_value_parse(span_cstr("0x1p3"), &v));
    assert_false(prom_value_parse(span_cstr("nan(1)"), &v));
    assert_false(prom_value_parse(span_cstr("--1"), &v));
    assert_false(prom_value_parse(span_cstr("1 "), &v));
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_whole),
        cmocka_unit_test(test_fixtures_pieces),
        cmocka_unit_test(test_fixtures_every_split),
        cmocka_unit_test(test_vllm_values),
        cmocka_unit_test(test_tgi_values),
        cmocka_unit_test(test_sglang_values),
        cmocka_unit_test(test_llamacpp_values),
        cmocka_unit_test(test_names_with_colons),
        cmocka_unit_test(test_total_help_type),
        cmocka_unit_test(test_created_family),
        cmocka_unit_test(test_exponents),
        cmocka_unit_test(test_le_inf),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_blank_lines),
        cmocka_unit_test(test_histogram_total),
        cmocka_unit_test(test_label_order_and_pid),
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_escaped_label_values),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_crlf_and_blanks),
        cmocka_unit_test(test_timestamps_and_exemplars),
        cmocka_unit_test(test_type_scope),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_last_line_without_lf),
        cmocka_unit_test(test_error_values),
        cmocka_unit_test(test_error_labels),
        cmocka_unit_test(test_error_names_and_types),
        cmocka_unit_test(test_error_too_many_labels),
        cmocka_unit_test(test_error_line_too_long),
        cmocka_unit_test(test_value_parse),
    };

    return cmocka_run_group_tests_name("prom", tests, bodies_setup, bodies_teardown);
}
