/* Unit tests for metrics: exact exposition lines, histogram buckets, status codes
 * and their overflow to classes, bounded model learning, label escaping, the
 * scrape-derived backend gauges and per-tier queue/shed/SLO families, the
 * merge of per-worker registries, promtool's verdict, and the docs table. */
#include "pitot/measure/metrics.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cmocka.h>

#include "fixture.h"
#include <event2/buffer.h>

#include "pitot/format/config.h"
#include "pitot/util/clock.h"
#include "pitot/util/version.h"

/* A config filled by hand, so the test needs only cfg.h's layout. */
static struct cfg *test_cfg(void)
{
    static const double buckets[] = { 0.001, 0.25, 1, 2.5 };
    struct cfg *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    strcpy(c->backends[0].name, "a");
    strcpy(c->backends[1].name, "b");
    c->nbackends = 2;
    strcpy(c->tiers[0].name, "default");
    strcpy(c->tiers[1].name, "batch");
    c->ntiers = 2;
    strcpy(c->models[0], "small");
    strcpy(c->models[1], "large");
    c->nmodels = 2;
    c->max_model_labels = 2;
    memcpy(c->buckets, buckets, sizeof(buckets));
    c->nbuckets = sizeof(buckets) / sizeof(buckets[0]);
    return c;
}

#define SMALL_A "backend=\"a\",model=\"small\",tier=\"default\",api=\"chat\""

static void test_histogram_and_counters(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *r = met_registry_new(c);
    unsigned m, s;
    char *t;

    assert_non_null(r);
    m = met_model_index(r, span_cstr("small"));
    assert_int_equal(m, 0);
    s = met_series(r, 0, m, 0, 0);
    assert_int_equal(s, 0);
    assert_int_equal(met_series(r, 1, 4, 1, 0),
                     ((1 * 5 + 4) * 2 + 1) * MET_NAPI); /* dense layout */
    assert_int_equal(met_series(r, 1, 4, 1, 3), ((1 * 5 + 4) * 2 + 1) * MET_NAPI + 3);

    met_observe_us(r, MET_TTFT, s, 500);     /* le 0.001 */
    met_observe_us(r, MET_TTFT, s, 1000);    /* le 0.001: bounds are inclusive */
    met_observe_us(r, MET_TTFT, s, 1001);    /* le 0.25 */
    met_observe_us(r, MET_TTFT, s, 250000);  /* le 0.25 */
    met_observe_us(r, MET_TTFT, s, 900000);  /* le 1 */
    met_observe_us(r, MET_TTFT, s, 3000000); /* +Inf only */
    met_add(r, MET_PROMPT_TOKENS, s, 17);
    met_add(r, MET_PROMPT_TOKENS, s, 5);
    met_add(r, MET_COMPLETION_TOKENS, s, 128);
    met_add_finish(r, s, JSON_FINISH_STOP);
    met_add_finish(r, s, JSON_FINISH_LENGTH);
    met_add_finish(r, s, JSON_FINISH_STOP);
    met_add_finish(r, s, JSON_FINISH_NONE); /* ignored */
    met_add_upstream_error(r, 1, PITOT_EUPSTREAM_TIMEOUT);
    met_gauge_set(r, MET_BACKEND_UP, 0, 1);
    met_gauge_add(r, MET_IN_FLIGHT, 1, 3);
    met_gauge_add(r, MET_IN_FLIGHT, 1, -1);

    t = fx_expose(&r, 1);
    assert_line(t, "# HELP pitot_time_to_first_token_seconds Time from the complete request head "
                   "to the first output-carrying event sent");
    assert_line(t, "# TYPE pitot_time_to_first_token_seconds histogram");
    assert_line(t, "pitot_time_to_first_token_seconds_bucket{" SMALL_A ",le=\"0.001\"} 2");
    assert_line(t, "pitot_time_to_first_token_seconds_bucket{" SMALL_A ",le=\"0.25\"} 4");
    assert_line(t, "pitot_time_to_first_token_seconds_bucket{" SMALL_A ",le=\"1\"} 5");
    assert_line(t, "pitot_time_to_first_token_seconds_bucket{" SMALL_A ",le=\"2.5\"} 5");
    assert_line(t, "pitot_time_to_first_token_seconds_bucket{" SMALL_A ",le=\"+Inf\"} 6");
    assert_line(t, "pitot_time_to_first_token_seconds_sum{" SMALL_A "} 4.152501");
    assert_line(t, "pitot_time_to_first_token_seconds_count{" SMALL_A "} 6");
    /* a touched series shows its other families too, at zero */
    assert_line(t, "pitot_inter_token_latency_seconds_bucket{" SMALL_A ",le=\"+Inf\"} 0");
    assert_line(t, "pitot_inter_token_latency_seconds_sum{" SMALL_A "} 0");
    assert_line(t, "pitot_refusals_total{" SMALL_A "} 0");
    assert_line(t, "pitot_prompt_tokens_total{" SMALL_A "} 22");
    assert_line(t, "pitot_completion_tokens_total{" SMALL_A "} 128");
    assert_line(t, "pitot_finish_reason_total{" SMALL_A ",reason=\"stop\"} 2");
    assert_line(t, "pitot_finish_reason_total{" SMALL_A ",reason=\"length\"} 1");
    assert_int_equal(fx_count_prefix(t, "pitot_finish_reason_total{"), 2);
    assert_line(t, "# TYPE pitot_upstream_errors_total counter");
    assert_line(t, "pitot_upstream_errors_total{backend=\"b\",kind=\"upstream_timeout\"} 1");
    assert_int_equal(fx_count_prefix(t, "pitot_upstream_errors_total{"), 1);
    /* gauges: every backend, touched or not */
    assert_line(t, "pitot_backend_up{backend=\"a\"} 1");
    assert_line(t, "pitot_backend_up{backend=\"b\"} 0");
    assert_line(t, "pitot_requests_in_flight{backend=\"a\"} 0");
    assert_line(t, "pitot_requests_in_flight{backend=\"b\"} 2");
    /* untouched tuples are absent: only a/small/default exists */
    assert_int_equal(fx_count_prefix(t, "pitot_time_to_first_token_seconds_count{"), 1);
    assert_int_equal(fx_count_prefix(t, "pitot_prompt_tokens_total{"), 1);
    assert_null(strstr(t, ",tier=\"batch\"")); /* after backend and model: a BMT series */
    assert_null(strstr(t, "model=\"large\""));
    /* no requests observed: the family has HELP and TYPE only */
    assert_line(t, "# TYPE pitot_requests_total counter");
    assert_int_equal(fx_count_prefix(t, "pitot_requests_total{"), 0);
    assert_int_equal(fx_count_prefix(t, "# HELP "), MET__COUNT);
    assert_int_equal(fx_count_prefix(t, "# TYPE "), MET__COUNT);
    free(t);
    met_registry_free(r);
    free(c);
    (void)state;
}

static void test_bucket_bounds(void **state)
{
    static const double b[] = { 0.00005, 0.0001, 0.005, 0.1, 2.5, 10, 100000, 1000000 };
    static const char *const le[] = { "5e-05", "0.0001", "0.005",  "0.1",
                                      "2.5",   "10",     "100000", "1e+06" };
    struct cfg *c = test_cfg();
    struct met_registry *r;
    char line[256];
    size_t i;
    char *t;

    memcpy(c->buckets, b, sizeof(b));
    c->nbuckets = sizeof(b) / sizeof(b[0]);
    r = met_registry_new(c);
    assert_non_null(r);
    met_observe_us(r, MET_E2E, met_series(r, 0, 0, 0, 0), 50);
    met_observe_us(r, MET_E2E, met_series(r, 0, 0, 0, 0), 51);
    t = fx_expose(&r, 1);
    for (i = 0; i < c->nbuckets; i++) {
        snprintf(line, sizeof(line), "pitot_e2e_request_latency_seconds_bucket{%s,le=\"%s\"} %d",
                 SMALL_A, le[i], i == 0 ? 1 : 2);
        assert_line(t, line);
    }
    assert_line(t, "pitot_e2e_request_latency_seconds_sum{" SMALL_A "} 0.000101");
    free(t);
    met_registry_free(r);

    /* no buckets: only +Inf */
    c->nbuckets = 0;
    r = met_registry_new(c);
    assert_non_null(r);
    met_observe_us(r, MET_TPOT, met_series(r, 0, 0, 0, 0), 2000000);
    t = fx_expose(&r, 1);
    assert_line(t, "pitot_time_per_output_token_seconds_bucket{" SMALL_A ",le=\"+Inf\"} 1");
    assert_line(t, "pitot_time_per_output_token_seconds_sum{" SMALL_A "} 2");
    assert_int_equal(fx_count_prefix(t, "pitot_time_per_output_token_seconds_bucket{"), 1);
    free(t);
    met_registry_free(r);

    /* bounds must ascend strictly, also once in microseconds, and be finite */
    c->nbuckets = 2;
    c->buckets[0] = 1.0;
    c->buckets[1] = 0.5;
    assert_null(met_registry_new(c));
    c->buckets[0] = 0.0000001;
    c->buckets[1] = 0.0000002;
    assert_null(met_registry_new(c));
    c->buckets[0] = -1;
    c->buckets[1] = 1;
    assert_null(met_registry_new(c));
    c->buckets[0] = 1;
    c->buckets[1] = INFINITY;
    assert_null(met_registry_new(c));
    free(c);
    (void)state;
}

static void test_request_codes(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *r = met_registry_new(c);
    unsigned s = met_series(r, 1, 1, 1, 0); /* b / large / batch */
    const char *p200, *p223, *p0, *p4xx, *p5xx;
    int i;
    char *t;

    met_add_request(r, s, 503);
    for (i = 0; i < 23; i++) /* 23 more distinct codes: the table is full */
        met_add_request(r, s, 200 + i);
    met_add_request(r, s, 200);
    met_add_request(r, s, 503);
    met_add_request(r, s, 504); /* beyond 24 codes: class */
    met_add_request(r, s, 404);
    met_add_request(r, s, 502);
    met_add_request(r, s, 101);
    met_add_request(r, s, 0);   /* nothing was sent */
    met_add_request(r, s, 700); /* not HTTP */
    t = fx_expose(&r, 1);
#define LBL "{backend=\"b\",model=\"large\",tier=\"batch\",api=\"chat\",code="
    assert_line(t, "pitot_requests_total" LBL "\"503\"} 2");
    assert_line(t, "pitot_requests_total" LBL "\"200\"} 2");
    assert_line(t, "pitot_requests_total" LBL "\"222\"} 1");
    assert_line(t, "pitot_requests_total" LBL "\"5xx\"} 2");
    assert_line(t, "pitot_requests_total" LBL "\"4xx\"} 1");
    assert_line(t, "pitot_requests_total" LBL "\"1xx\"} 1");
    assert_line(t, "pitot_requests_total" LBL "\"0\"} 2");
    assert_no_line(t, "pitot_requests_total" LBL "\"504\"} 1");
    assert_null(strstr(t, "code=\"223\""));
    assert_null(strstr(t, "code=\"2xx\""));
    assert_null(strstr(t, "code=\"3xx\""));
    assert_int_equal(fx_count_prefix(t, "pitot_requests_total{"), 24 + 4);
    /* stable order: "0", codes ascending, then classes */
    p0 = strstr(t, LBL "\"0\"");
    p200 = strstr(t, LBL "\"200\"");
    p223 = strstr(t, LBL "\"503\"");
    p4xx = strstr(t, LBL "\"4xx\"");
    p5xx = strstr(t, LBL "\"5xx\"");
    assert_true(p0 < p200 && p200 < p223 && p223 < p4xx && p4xx < p5xx);
#undef LBL
    free(t);
    met_registry_free(r);
    free(c);
    (void)state;
}

static void test_model_learning(void **state)
{
    static const char nul_inside[] = "ab\0cd";
    struct cfg *c = test_cfg();
    struct met_registry *r;
    char name63[64], name64[65], buf[CFG_NAME_MAX];
    unsigned other;
    char *t;

    strcpy(c->models[2], "small"); /* duplicate in config: ignored */
    c->nmodels = 3;
    other = 3 + 2; /* cfg models (the duplicate still counts) + max_model_labels */
    r = met_registry_new(c);
    assert_non_null(r);
    memset(name63, 'm', 63);
    name63[63] = '\0';
    memset(name64, 'm', 64);
    name64[64] = '\0';

    /* lookup never learns */
    assert_int_equal(met_model_lookup(r, span_cstr("large")), 1);
    assert_int_equal(met_model_lookup(r, span_cstr("Small")), other);
    assert_int_equal(met_model_lookup(r, span_cstr("bad name")), other);
    assert_int_equal(met_model_index(r, span_cstr("small")), 0);
    assert_int_equal(met_model_index(r, span_cstr("large")), 1);
    /* invalid names are "other" and are not learned */
    assert_int_equal(met_model_index(r, span_cstr("")), other);
    assert_int_equal(met_model_index(r, span_make(NULL, 0)), other);
    assert_int_equal(met_model_index(r, span_cstr("has space")), other);
    assert_int_equal(met_model_index(r, span_cstr("quote\"")), other);
    assert_int_equal(met_model_index(r, span_cstr("new\nline")), other);
    assert_int_equal(met_model_index(r, span_cstr("caf\xc3\xa9")), other);
    assert_int_equal(met_model_index(r, span_make(nul_inside, 5)), other);
    assert_int_equal(met_model_index(r, span_cstr(name64)), other);
    assert_int_equal(met_model_index(r, span_cstr("other")), other);
    assert_int_equal(met_model_index(r, span_cstr("Small")), 2); /* case matters */
    assert_int_equal(met_model_index(r, span_cstr("qwen2.5:7b")), 3);
    assert_int_equal(met_model_index(r, span_cstr(name63)), 4);
    /* full: the rest is "other", known names still resolve */
    assert_int_equal(met_model_index(r, span_cstr("org/llama-3@q4+x_y")), other);
    assert_int_equal(met_model_index(r, span_cstr("qwen2.5:7b")), 3);
    assert_int_equal(met_model_index(r, span_make("qwen2.5:7bXX", 10)), 3);
    assert_int_equal(met_model_index(r, span_cstr("qwen2.5:7")), other);
    assert_int_equal(met_model_index(r, span_cstr(name63)), 4);
    assert_int_equal(met_model_index(r, span_cstr("small")), 0);

    assert_int_equal(met_model_lookup(r, span_cstr("Small")), 2);
    assert_int_equal(met_model_lookup(r, span_cstr("qwen2.5:7b")), 3);
    assert_int_equal(met_model_lookup(r, span_cstr("org/llama-3@q4+x_y")), other);

    /* index back to label value */
    met_model_name(r, 0, buf, sizeof(buf));
    assert_string_equal(buf, "small");
    met_model_name(r, 3, buf, sizeof(buf));
    assert_string_equal(buf, "qwen2.5:7b");
    met_model_name(r, 4, buf, sizeof(buf));
    assert_string_equal(buf, name63);
    met_model_name(r, other, buf, sizeof(buf));
    assert_string_equal(buf, "other");
    met_model_name(r, other + 1, buf, sizeof(buf));
    assert_string_equal(buf, "other");
    met_model_name(r, 3, buf, 5);
    assert_string_equal(buf, "qwen");
    buf[0] = 'X';
    met_model_name(r, 3, buf, 0); /* nothing written */
    assert_int_equal(buf[0], 'X');

    met_add(r, MET_STALLS, met_series(r, 0, 3, 0, 0), 1);
    met_add(r, MET_STALLS, met_series(r, 0, other, 0, 0), 7);
    met_add(r, MET_STALLS, met_series(r, 0, 2, 1, 0), 1);
    t = fx_expose(&r, 1);
    assert_line(t, "pitot_stream_stalls_total{backend=\"a\",model=\"qwen2.5:7b\",tier=\"default\","
                   "api=\"chat\"} 1");
    assert_line(
        t,
        "pitot_stream_stalls_total{backend=\"a\",model=\"other\",tier=\"default\",api=\"chat\"} 7");
    assert_line(
        t,
        "pitot_stream_stalls_total{backend=\"a\",model=\"Small\",tier=\"batch\",api=\"chat\"} 1");
    assert_int_equal(fx_count_prefix(t, "pitot_stream_stalls_total{"), 3);
    free(t);
    met_registry_free(r);
    free(c);
    (void)state;
}

static void test_bad_arguments_ignored(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *r = met_registry_new(c);
    unsigned bad = met_series(r, 2, 0, 0, 0);
    char *t, *t0;

    t0 = fx_expose(&r, 1);
    assert_int_equal(met_series(r, 0, 5, 0, 0), bad);
    assert_int_equal(met_series(r, 0, 0, 2, 0), bad);
    met_observe_us(r, MET_TTFT, bad, 1);
    met_observe_us(r, MET_PROMPT_TOKENS, 0, 1); /* not a histogram */
    met_observe_us(r, MET__COUNT, 0, 1);
    met_add(r, MET_TTFT, 0, 1);            /* not a counter */
    met_add(r, MET_REQUESTS, 0, 1);        /* needs met_add_request */
    met_add(r, MET_UPSTREAM_ERRORS, 0, 1); /* needs met_add_upstream_error */
    met_add(r, MET_STALLS, bad, 1);
    met_add_request(r, bad, 200);
    met_add_finish(r, bad, JSON_FINISH_STOP);
    met_add_finish(r, 0, (enum json_finish)99);
    met_add_upstream_error(r, 2, PITOT_EUPSTREAM_RESET);
    met_add_upstream_error(r, 0, PITOT_E__COUNT);
    met_gauge_set(r, MET_STALLS, 0, 5); /* not a gauge */
    met_gauge_set(r, MET_BACKEND_UP, 2, 5);
    met_gauge_add(r, MET_IN_FLIGHT, 9, 5);
    met_gauge_set_f(r, MET_IN_FLIGHT, 0, 1.5); /* not a float gauge */
    met_gauge_set_f(r, MET_BACKEND_RUNNING, 2, 1);
    met_gauge_set_f(r, MET__COUNT, 0, 1);
    met_gauge_set(r, MET_BACKEND_CACHE, 0, 1); /* float: needs met_gauge_set_f */
    met_gauge_add(r, MET_BACKEND_WAITING, 0, 1);
    met_gauge_set(r, MET_QUEUE_DEPTH, 0, 1); /* per tier */
    met_gauge_clear(r, MET_BACKEND_RUNNING, 2);
    met_gauge_clear(r, MET_BACKEND_EJECTED, 0); /* integer gauges are never absent */
    met_gauge_clear(r, MET_BACKEND_SCRAPE_AGE, 2);
    met_backend_scraped(r, 2, 1);
    met_add_scrape(r, 2, MET_SCRAPE_OK);
    met_add_scrape(r, 0, MET_SCRAPE__COUNT);
    met_add_scrape(r, 0, (enum met_scrape) - 1);
    met_tier_gauge_add(r, MET_QUEUE_DEPTH, 2, 1);
    met_tier_gauge_add(r, MET_IN_FLIGHT, 0, 1); /* per backend */
    met_observe_tier_us(r, MET_QUEUE_WAIT, 2, 1);
    met_observe_tier_us(r, MET_TTFT, 0, 1);  /* a BMT histogram */
    met_observe_us(r, MET_QUEUE_WAIT, 0, 1); /* a tier histogram */
    met_add(r, MET_SHED, 0, 1);              /* needs met_add_shed */
    met_add(r, MET_SLO_REQUESTS, 0, 1);
    met_add(r, MET_BACKEND_SCRAPES, 0, 1);
    met_add_shed(r, 2, MET_SHED_QUEUE_FULL);
    met_add_shed(r, 0, MET_SHED__COUNT);
    met_add_slo(r, 2, true);
    t = fx_expose(&r, 1);
    assert_string_equal(t, t0);
    free(t);
    free(t0);
    met_registry_free(r);

    /* too many series for any sane config */
    c->max_model_labels = 1u << 30;
    assert_null(met_registry_new(c));
    met_registry_free(NULL);
    free(c);
    (void)state;
}

static void test_label_escaping(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *r;
    char *t;

    strcpy(c->backends[0].name, "q\"x\\y\nz");
    strcpy(c->tiers[1].name, "t\\");
    r = met_registry_new(c);
    assert_non_null(r);
    met_gauge_set(r, MET_BACKEND_UP, 0, 1);
    met_add(r, MET_CLIENT_CANCELS, met_series(r, 0, 1, 1, 0), 4);
    t = fx_expose(&r, 1);
    assert_line(t, "pitot_backend_up{backend=\"q\\\"x\\\\y\\nz\"} 1");
    assert_line(t, "pitot_client_cancels_total{backend=\"q\\\"x\\\\y\\nz\",model=\"large\","
                   "tier=\"t\\\\\",api=\"chat\"} 4");
    free(t);
    met_registry_free(r);
    free(c);
    (void)state;
}

static void test_merge(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *regs[2];
    unsigned s0, s1, m2a, m2b;
    char *t;

    regs[0] = met_registry_new(c);
    regs[1] = met_registry_new(c);
    assert_non_null(regs[0]);
    assert_non_null(regs[1]);
    /* each worker learns in its own order: m2 has different rows */
    assert_int_equal(met_model_index(regs[0], span_cstr("m1")), 2);
    m2a = met_model_index(regs[0], span_cstr("m2"));
    m2b = met_model_index(regs[1], span_cstr("m2"));
    assert_int_equal(m2a, 3);
    assert_int_equal(m2b, 2);
    assert_int_equal(met_model_index(regs[1], span_cstr("m3")), 3);

    s0 = met_series(regs[0], 0, m2a, 0, 0);
    s1 = met_series(regs[1], 0, m2b, 0, 0);
    met_observe_us(regs[0], MET_TTFT, s0, 1000);
    met_observe_us(regs[1], MET_TTFT, s1, 2000);
    met_observe_us(regs[1], MET_TTFT, s1, 2000000);
    met_add_request(regs[0], s0, 200);
    met_add_request(regs[1], s1, 200);
    met_add_request(regs[1], s1, 200);
    met_add_request(regs[1], s1, 500);
    met_add_finish(regs[0], s0, JSON_FINISH_TOOL_CALLS);
    met_add_finish(regs[1], s1, JSON_FINISH_TOOL_CALLS);
    met_add(regs[0], MET_CACHED_TOKENS, met_series(regs[0], 1, 2, 0, 0), 10); /* m1 only in 0 */
    met_add(regs[1], MET_CACHED_TOKENS, met_series(regs[1], 1, 3, 0, 0), 20); /* m3 only in 1 */
    met_add(regs[0], MET_CACHED_TOKENS, met_series(regs[0], 1, 4, 1, 0), 1);  /* other */
    met_add(regs[1], MET_CACHED_TOKENS, met_series(regs[1], 1, 4, 1, 0), 2);
    met_add_upstream_error(regs[0], 0, PITOT_EUPSTREAM_CONNECT);
    met_add_upstream_error(regs[1], 0, PITOT_EUPSTREAM_CONNECT);
    met_add_upstream_error(regs[1], 0, PITOT_EUPSTREAM_CONNECT);
    met_gauge_set(regs[0], MET_IN_FLIGHT, 0, 2);
    met_gauge_set(regs[1], MET_IN_FLIGHT, 0, 3);
    met_gauge_set(regs[0], MET_BACKEND_UP, 0, 1);
    met_gauge_set(regs[1], MET_BACKEND_UP, 0, 0);
    met_gauge_set(regs[0], MET_BACKEND_UP, 1, 0);
    met_gauge_set(regs[1], MET_BACKEND_UP, 1, 1);

    t = fx_expose(regs, 2);
#define M2 "backend=\"a\",model=\"m2\",tier=\"default\",api=\"chat\""
    assert_line(t, "pitot_time_to_first_token_seconds_bucket{" M2 ",le=\"0.001\"} 1");
    assert_line(t, "pitot_time_to_first_token_seconds_bucket{" M2 ",le=\"0.25\"} 2");
    assert_line(t, "pitot_time_to_first_token_seconds_bucket{" M2 ",le=\"2.5\"} 3");
    assert_line(t, "pitot_time_to_first_token_seconds_bucket{" M2 ",le=\"+Inf\"} 3");
    assert_line(t, "pitot_time_to_first_token_seconds_sum{" M2 "} 2.003");
    assert_line(t, "pitot_time_to_first_token_seconds_count{" M2 "} 3");
    assert_line(t, "pitot_requests_total{" M2 ",code=\"200\"} 3");
    assert_line(t, "pitot_requests_total{" M2 ",code=\"500\"} 1");
    assert_line(t, "pitot_finish_reason_total{" M2 ",reason=\"tool_calls\"} 2");
    /* four tuples were touched: a/m2/default, b/m1/default, b/m3/default, b/other/batch */
    assert_int_equal(fx_count_prefix(t, "pitot_time_to_first_token_seconds_count{"), 4);
#undef M2
    assert_line(
        t,
        "pitot_cached_tokens_total{backend=\"b\",model=\"m1\",tier=\"default\",api=\"chat\"} 10");
    assert_line(
        t,
        "pitot_cached_tokens_total{backend=\"b\",model=\"m3\",tier=\"default\",api=\"chat\"} 20");
    assert_line(
        t,
        "pitot_cached_tokens_total{backend=\"b\",model=\"other\",tier=\"batch\",api=\"chat\"} 3");
    assert_int_equal(fx_count_prefix(t, "pitot_cached_tokens_total{"), 4);
    assert_line(t, "pitot_upstream_errors_total{backend=\"a\",kind=\"upstream_connect\"} 3");
    assert_line(t, "pitot_requests_in_flight{backend=\"a\"} 5");
    assert_line(t, "pitot_requests_in_flight{backend=\"b\"} 0");
    assert_line(t, "pitot_backend_up{backend=\"a\"} 1");
    assert_line(t, "pitot_backend_up{backend=\"b\"} 0");
    free(t);

    /* n == 1 of the second registry alone */
    t = fx_expose(&regs[1], 1);
    assert_line(t, "pitot_requests_total{backend=\"a\",model=\"m2\",tier=\"default\",api=\"chat\","
                   "code=\"200\"} 2");
    assert_line(t, "pitot_backend_up{backend=\"b\"} 1");
    assert_null(strstr(t, "model=\"m1\""));
    free(t);
    met_registry_free(regs[0]);
    met_registry_free(regs[1]);
    free(c);
    (void)state;
}

/* The value of the first sample line starting with prefix, or NAN. */
static double sample_value(const char *text, const char *prefix)
{
    const char *p = text;

    for (;;) {
        if (strncmp(p, prefix, strlen(prefix)) == 0)
            return strtod(p + strlen(prefix), NULL);
        p = strchr(p, '\n');
        if (p == NULL || *++p == '\0')
            return NAN;
    }
}

static void test_backend_scrape_metrics(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *r = met_registry_new(c);
    uint64_t now;
    double age;
    char *t;

    assert_non_null(r);
    /* before any scrape: every family has HELP and TYPE, no scraped series */
    t = fx_expose(&r, 1);
    assert_line(t, "# HELP pitot_backend_requests_running Requests the backend reported running "
                   "at its last metrics scrape");
    assert_line(t, "# TYPE pitot_backend_requests_running gauge");
    assert_line(t, "# TYPE pitot_backend_requests_waiting gauge");
    assert_line(t, "# TYPE pitot_backend_cache_usage_ratio gauge");
    assert_line(t, "# TYPE pitot_backend_scrape_age_seconds gauge");
    assert_line(t, "# TYPE pitot_backend_scrapes_total counter");
    assert_line(t, "# TYPE pitot_backend_ejected gauge");
    assert_int_equal(fx_count_prefix(t, "pitot_backend_requests_running{"), 0);
    assert_int_equal(fx_count_prefix(t, "pitot_backend_requests_waiting{"), 0);
    assert_int_equal(fx_count_prefix(t, "pitot_backend_cache_usage_ratio{"), 0);
    assert_int_equal(fx_count_prefix(t, "pitot_backend_scrape_age_seconds{"), 0);
    assert_int_equal(fx_count_prefix(t, "pitot_backend_scrapes_total{"), 0);
    /* ejected is an integer gauge: every backend, 0 until set */
    assert_line(t, "pitot_backend_ejected{backend=\"a\"} 0");
    assert_line(t, "pitot_backend_ejected{backend=\"b\"} 0");
    free(t);

    met_gauge_set_f(r, MET_BACKEND_RUNNING, 0, 3);
    met_gauge_set_f(r, MET_BACKEND_WAITING, 0, 0);
    met_gauge_set_f(r, MET_BACKEND_CACHE, 0, 0.87);
    met_gauge_set_f(r, MET_BACKEND_RUNNING, 1, 2.5);
    met_gauge_set_f(r, MET_BACKEND_WAITING, 1, 1e6);
    met_gauge_set_f(r, MET_BACKEND_CACHE, 1, 0.5);
    met_gauge_set_f(r, MET_BACKEND_CACHE, 1, 0.1 + 0.2); /* the last value counts */
    met_add_scrape(r, 1, MET_SCRAPE_OK);
    met_add_scrape(r, 1, MET_SCRAPE_OK);
    met_add_scrape(r, 1, MET_SCRAPE_OK);
    met_add_scrape(r, 1, MET_SCRAPE_TIMEOUT);
    met_gauge_set(r, MET_BACKEND_EJECTED, 1, 1);
    now = clk_now_us();
    assert_true(now > 10000000u);
    met_backend_scraped(r, 0, now - 2500000u);  /* 2.5 s ago */
    met_backend_scraped(r, 1, now + 60000000u); /* "in the future": age 0, never negative */
    t = fx_expose(&r, 1);
    assert_line(t, "pitot_backend_requests_running{backend=\"a\"} 3");
    assert_line(t, "pitot_backend_requests_waiting{backend=\"a\"} 0");
    assert_line(t, "pitot_backend_cache_usage_ratio{backend=\"a\"} 0.87");
    assert_line(t, "pitot_backend_requests_running{backend=\"b\"} 2.5");
    assert_line(t, "pitot_backend_requests_waiting{backend=\"b\"} 1e+06");
    assert_line(t, "pitot_backend_cache_usage_ratio{backend=\"b\"} 0.30000000000000004");
    age = sample_value(t, "pitot_backend_scrape_age_seconds{backend=\"a\"} ");
    if (!(age >= 2.5 && age < 2.5 + 60))
        fail_msg("age %f, expected 2.5 s and a little:\n%s", age, t);
    assert_line(t, "pitot_backend_scrape_age_seconds{backend=\"b\"} 0");
    assert_int_equal(fx_count_prefix(t, "pitot_backend_scrape_age_seconds{"), 2);
    /* a backend with any scrape shows every result; one without shows none */
    assert_line(t, "pitot_backend_scrapes_total{backend=\"b\",result=\"ok\"} 3");
    assert_line(t, "pitot_backend_scrapes_total{backend=\"b\",result=\"error\"} 0");
    assert_line(t, "pitot_backend_scrapes_total{backend=\"b\",result=\"timeout\"} 1");
    assert_line(t, "pitot_backend_scrapes_total{backend=\"b\",result=\"parse_error\"} 0");
    assert_int_equal(fx_count_prefix(t, "pitot_backend_scrapes_total{"), 4);
    assert_line(t, "pitot_backend_ejected{backend=\"a\"} 0");
    assert_line(t, "pitot_backend_ejected{backend=\"b\"} 1");
    free(t);

    /* cleared, or set to "unknown": absent again */
    met_gauge_clear(r, MET_BACKEND_CACHE, 0);
    met_gauge_set_f(r, MET_BACKEND_RUNNING, 1, NAN);
    met_gauge_set_f(r, MET_BACKEND_WAITING, 1, INFINITY);
    met_gauge_set_f(r, MET_BACKEND_CACHE, 1, -0.0); /* a value: "0", not "-0" */
    met_gauge_clear(r, MET_BACKEND_SCRAPE_AGE, 1);
    met_gauge_set(r, MET_BACKEND_EJECTED, 1, 0);
    t = fx_expose(&r, 1);
    assert_int_equal(fx_count_prefix(t, "pitot_backend_cache_usage_ratio{"), 1);
    assert_line(t, "pitot_backend_cache_usage_ratio{backend=\"b\"} 0");
    assert_int_equal(fx_count_prefix(t, "pitot_backend_requests_running{"), 1);
    assert_line(t, "pitot_backend_requests_running{backend=\"a\"} 3");
    assert_int_equal(fx_count_prefix(t, "pitot_backend_requests_waiting{"), 1);
    assert_int_equal(fx_count_prefix(t, "pitot_backend_scrape_age_seconds{"), 1);
    assert_non_null(strstr(t, "pitot_backend_scrape_age_seconds{backend=\"a\"} 2.5"));
    assert_line(t, "pitot_backend_ejected{backend=\"b\"} 0");
    free(t);

    assert_string_equal(met_scrape_label(MET_SCRAPE_PARSE_ERROR), "parse_error");
    assert_string_equal(met_scrape_label(MET_SCRAPE__COUNT), "unknown");
    met_registry_free(r);
    free(c);
    (void)state;
}

static void test_tier_metrics(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *r = met_registry_new(c);
    char *t;

    assert_non_null(r);
    t = fx_expose(&r, 1);
    assert_line(t, "# HELP pitot_queue_depth Requests held in pitot's overload queue now");
    assert_line(t, "# TYPE pitot_queue_depth gauge");
    assert_line(t, "# TYPE pitot_queue_wait_seconds histogram");
    assert_line(t, "# TYPE pitot_shed_total counter");
    assert_line(t, "# TYPE pitot_slo_requests_total counter");
    /* queue depth: every tier from the start; the rest once touched */
    assert_line(t, "pitot_queue_depth{tier=\"default\"} 0");
    assert_line(t, "pitot_queue_depth{tier=\"batch\"} 0");
    assert_int_equal(fx_count_prefix(t, "pitot_queue_depth{"), 2);
    assert_int_equal(fx_count_prefix(t, "pitot_queue_wait_seconds"), 0);
    assert_int_equal(fx_count_prefix(t, "pitot_shed_total{"), 0);
    assert_int_equal(fx_count_prefix(t, "pitot_slo_requests_total{"), 0);
    free(t);

    met_tier_gauge_add(r, MET_QUEUE_DEPTH, 1, 3);
    met_tier_gauge_add(r, MET_QUEUE_DEPTH, 1, -1);
    met_observe_tier_us(r, MET_QUEUE_WAIT, 1, 500);     /* le 0.001 */
    met_observe_tier_us(r, MET_QUEUE_WAIT, 1, 250000);  /* le 0.25 */
    met_observe_tier_us(r, MET_QUEUE_WAIT, 1, 4000000); /* +Inf only */
    met_add_shed(r, 0, MET_SHED_QUEUE_FULL);
    met_add_shed(r, 0, MET_SHED_QUEUE_FULL);
    met_add_shed(r, 0, MET_SHED_EVICTED);
    met_add_shed(r, 0, MET_SHED_NO_MODEL);
    met_add_slo(r, 1, true);
    met_add_slo(r, 1, true);
    met_add_slo(r, 1, false);
    t = fx_expose(&r, 1);
    assert_line(t, "pitot_queue_depth{tier=\"default\"} 0");
    assert_line(t, "pitot_queue_depth{tier=\"batch\"} 2");
    assert_line(t, "pitot_queue_wait_seconds_bucket{tier=\"batch\",le=\"0.001\"} 1");
    assert_line(t, "pitot_queue_wait_seconds_bucket{tier=\"batch\",le=\"0.25\"} 2");
    assert_line(t, "pitot_queue_wait_seconds_bucket{tier=\"batch\",le=\"1\"} 2");
    assert_line(t, "pitot_queue_wait_seconds_bucket{tier=\"batch\",le=\"2.5\"} 2");
    assert_line(t, "pitot_queue_wait_seconds_bucket{tier=\"batch\",le=\"+Inf\"} 3");
    assert_line(t, "pitot_queue_wait_seconds_sum{tier=\"batch\"} 4.2505");
    assert_line(t, "pitot_queue_wait_seconds_count{tier=\"batch\"} 3");
    assert_int_equal(fx_count_prefix(t, "pitot_queue_wait_seconds_count{"), 1);
    /* a tier that shed anything shows every reason */
    assert_line(t, "pitot_shed_total{tier=\"default\",reason=\"queue_full\"} 2");
    assert_line(t, "pitot_shed_total{tier=\"default\",reason=\"max_wait\"} 0");
    assert_line(t, "pitot_shed_total{tier=\"default\",reason=\"evicted\"} 1");
    assert_line(t, "pitot_shed_total{tier=\"default\",reason=\"client_gone\"} 0");
    assert_line(t, "pitot_shed_total{tier=\"default\",reason=\"no_model\"} 1");
    assert_int_equal(fx_count_prefix(t, "pitot_shed_total{"), 5);
    /* and both met values */
    assert_line(t, "pitot_slo_requests_total{tier=\"batch\",met=\"false\"} 1");
    assert_line(t, "pitot_slo_requests_total{tier=\"batch\",met=\"true\"} 2");
    assert_int_equal(fx_count_prefix(t, "pitot_slo_requests_total{"), 2);
    free(t);
    met_registry_free(r);

    assert_string_equal(met_shed_label(MET_SHED_CLIENT_GONE), "client_gone");
    assert_string_equal(met_shed_label(MET_SHED__COUNT), "unknown");

    /* no tiers configured: the one tier is "default" */
    c->ntiers = 0;
    r = met_registry_new(c);
    assert_non_null(r);
    met_add_slo(r, 0, false);
    met_add_slo(r, 1, true); /* no such tier */
    met_tier_gauge_add(r, MET_QUEUE_DEPTH, 1, 1);
    t = fx_expose(&r, 1);
    assert_line(t, "pitot_queue_depth{tier=\"default\"} 0");
    assert_int_equal(fx_count_prefix(t, "pitot_queue_depth{"), 1);
    assert_line(t, "pitot_slo_requests_total{tier=\"default\",met=\"false\"} 1");
    assert_line(t, "pitot_slo_requests_total{tier=\"default\",met=\"true\"} 0");
    free(t);
    met_registry_free(r);
    free(c);
    (void)state;
}

/* Scrape-derived gauges from regs[0], ejection the maximum, the rest summed. */
static void test_merge_backend_and_tier(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *regs[2];
    uint64_t now = clk_now_us();
    double age;
    char *t;

    regs[0] = met_registry_new(c);
    regs[1] = met_registry_new(c);
    assert_non_null(regs[0]);
    assert_non_null(regs[1]);
    assert_true(now > 10000000u);
    met_gauge_set_f(regs[0], MET_BACKEND_RUNNING, 0, 4);
    met_gauge_set_f(regs[1], MET_BACKEND_RUNNING, 0, 9); /* not the scraping loop */
    met_gauge_set_f(regs[1], MET_BACKEND_CACHE, 1, 0.5); /* likewise */
    met_backend_scraped(regs[0], 0, now - 1000000u);
    met_backend_scraped(regs[1], 1, now - 1000000u); /* likewise */
    met_add_scrape(regs[0], 0, MET_SCRAPE_OK);
    met_add_scrape(regs[1], 0, MET_SCRAPE_OK);
    met_add_scrape(regs[1], 0, MET_SCRAPE_PARSE_ERROR);
    met_gauge_set(regs[1], MET_BACKEND_EJECTED, 0, 1); /* not regs[0] only */
    met_gauge_set(regs[0], MET_BACKEND_EJECTED, 1, 1); /* not a sum */
    met_gauge_set(regs[1], MET_BACKEND_EJECTED, 1, 1);
    met_tier_gauge_add(regs[0], MET_QUEUE_DEPTH, 0, 2);
    met_tier_gauge_add(regs[1], MET_QUEUE_DEPTH, 0, 3);
    met_observe_tier_us(regs[0], MET_QUEUE_WAIT, 0, 1000);
    met_observe_tier_us(regs[1], MET_QUEUE_WAIT, 0, 2000);
    met_add_shed(regs[0], 1, MET_SHED_MAX_WAIT);
    met_add_shed(regs[1], 1, MET_SHED_MAX_WAIT);
    met_add_shed(regs[1], 1, MET_SHED_CLIENT_GONE);
    met_add_slo(regs[0], 0, true);
    met_add_slo(regs[1], 0, true);
    met_add_slo(regs[1], 0, false);

    t = fx_expose(regs, 2);
    assert_line(t, "pitot_backend_requests_running{backend=\"a\"} 4");
    assert_int_equal(fx_count_prefix(t, "pitot_backend_requests_running{"), 1);
    assert_int_equal(fx_count_prefix(t, "pitot_backend_cache_usage_ratio{"), 0);
    assert_int_equal(fx_count_prefix(t, "pitot_backend_scrape_age_seconds{"), 1);
    age = sample_value(t, "pitot_backend_scrape_age_seconds{backend=\"a\"} ");
    if (!(age >= 1 && age < 1 + 60))
        fail_msg("age %f, expected 1 s and a little:\n%s", age, t);
    assert_line(t, "pitot_backend_scrapes_total{backend=\"a\",result=\"ok\"} 2");
    assert_line(t, "pitot_backend_scrapes_total{backend=\"a\",result=\"parse_error\"} 1");
    assert_line(t, "pitot_backend_ejected{backend=\"a\"} 1");
    assert_line(t, "pitot_backend_ejected{backend=\"b\"} 1");
    assert_line(t, "pitot_queue_depth{tier=\"default\"} 5");
    assert_line(t, "pitot_queue_depth{tier=\"batch\"} 0");
    assert_line(t, "pitot_queue_wait_seconds_bucket{tier=\"default\",le=\"0.001\"} 1");
    assert_line(t, "pitot_queue_wait_seconds_bucket{tier=\"default\",le=\"0.25\"} 2");
    assert_line(t, "pitot_queue_wait_seconds_sum{tier=\"default\"} 0.003");
    assert_line(t, "pitot_queue_wait_seconds_count{tier=\"default\"} 2");
    assert_line(t, "pitot_shed_total{tier=\"batch\",reason=\"max_wait\"} 2");
    assert_line(t, "pitot_shed_total{tier=\"batch\",reason=\"client_gone\"} 1");
    assert_line(t, "pitot_slo_requests_total{tier=\"default\",met=\"true\"} 2");
    assert_line(t, "pitot_slo_requests_total{tier=\"default\",met=\"false\"} 1");
    free(t);

    /* the other way round: regs[1]'s own scrape view */
    t = fx_expose(&regs[1], 1);
    assert_line(t, "pitot_backend_requests_running{backend=\"a\"} 9");
    assert_line(t, "pitot_backend_cache_usage_ratio{backend=\"b\"} 0.5");
    free(t);
    met_registry_free(regs[0]);
    met_registry_free(regs[1]);
    free(c);
    (void)state;
}

/* Everything at once, through promtool's linter. */
static void test_promtool_clean(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *regs[2];
    size_t i;
    int k;
    char *t;

    strcpy(c->backends[1].name, "we\"ird\\na\nme");
    for (i = 0; i < 2; i++) {
        struct met_registry *r = met_registry_new(c);
        unsigned s;

        assert_non_null(r);
        regs[i] = r;
        s = met_series(r, 1, met_model_index(r, span_cstr(i ? "x" : "y")), 1, 0);
        for (k = 0; k < MET__COUNT; k++) {
            met_observe_us(r, (enum met_id)k, s, 1234 * (unsigned)k);
            met_add(r, (enum met_id)k, s, (uint64_t)k);
        }
        for (k = 100; k < 600; k += 7)
            met_add_request(r, s, k);
        met_add_request(r, s, 0);
        for (k = JSON_FINISH_STOP; k <= JSON_FINISH_OTHER; k++)
            met_add_finish(r, s, (enum json_finish)k);
        for (k = 0; k < PITOT_E__COUNT; k++)
            met_add_upstream_error(r, 1, (enum pitot_err)k);
        met_gauge_set(r, MET_IN_FLIGHT, 0, 4);
        met_gauge_set(r, MET_BACKEND_UP, 1, 1);
        met_gauge_set_f(r, MET_BACKEND_RUNNING, 1, 3);
        met_gauge_set_f(r, MET_BACKEND_WAITING, 1, 0.5);
        met_gauge_set_f(r, MET_BACKEND_CACHE, 1, 0.87);
        met_gauge_set_f(r, MET_BACKEND_CACHE, 0, 1e-7);
        met_backend_scraped(r, 1, clk_now_us() - 1500000u);
        met_backend_scraped(r, 0, clk_now_us());
        for (k = 0; k < MET_SCRAPE__COUNT; k++)
            met_add_scrape(r, 1, (enum met_scrape)k);
        met_gauge_set(r, MET_BACKEND_EJECTED, 1, 1);
        met_tier_gauge_add(r, MET_QUEUE_DEPTH, 1, 2);
        met_observe_tier_us(r, MET_QUEUE_WAIT, 1, 12345);
        met_observe_tier_us(r, MET_QUEUE_WAIT, 0, 99000000);
        for (k = 0; k < MET_SHED__COUNT; k++)
            met_add_shed(r, (unsigned)k % 2, (enum met_shed)k);
        met_add_slo(r, 0, true);
        met_add_slo(r, 1, false);
        met_add_spans_exported(r, 10);
        met_add_spans_dropped(r, MET_TRACE_DROP_EXPORT_FAILED, 2);
    }
    t = fx_expose(regs, 2);
    fx_promtool_check(t);
    free(t);
    met_registry_free(regs[0]);
    met_registry_free(regs[1]);
    free(c);
    (void)state;
}

/* The span export counters: no backend or tier, always exposed (every drop
 * reason, 0 included), summed over registries; bad reasons ignored. */
static void test_trace_spans(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *regs[2];
    char *t;

    regs[0] = met_registry_new(c);
    regs[1] = met_registry_new(c);
    assert_non_null(regs[0]);
    assert_non_null(regs[1]);
    t = fx_expose(regs, 2);
    assert_line(t, "# TYPE pitot_trace_spans_exported_total counter");
    assert_line(t, "pitot_trace_spans_exported_total 0");
    assert_line(t, "pitot_trace_spans_dropped_total{reason=\"queue_full\"} 0");
    assert_line(t, "pitot_trace_spans_dropped_total{reason=\"export_failed\"} 0");
    free(t);
    met_add_spans_exported(regs[0], 512);
    met_add_spans_exported(regs[1], 3);
    met_add_spans_dropped(regs[0], MET_TRACE_DROP_QUEUE_FULL, 1);
    met_add_spans_dropped(regs[1], MET_TRACE_DROP_QUEUE_FULL, 2);
    met_add_spans_dropped(regs[1], MET_TRACE_DROP_EXPORT_FAILED, 7);
    met_add_spans_dropped(regs[1], MET_TRACE_DROP__COUNT, 100);
    t = fx_expose(regs, 2);
    assert_line(t, "pitot_trace_spans_exported_total 515");
    assert_line(t, "pitot_trace_spans_dropped_total{reason=\"queue_full\"} 3");
    assert_line(t, "pitot_trace_spans_dropped_total{reason=\"export_failed\"} 7");
    assert_int_equal(fx_count_prefix(t, "pitot_trace_spans_dropped_total{"), 2);
    free(t);
    met_registry_free(regs[0]);
    met_registry_free(regs[1]);
    free(c);
    (void)state;
}

/* TLS handshake failures: no backend or tier, every reason always exposed
 * (0 included), summed over registries; bad reasons ignored. */
static void test_tls_failures(void **state)
{
    static const char *const reasons[] = { "protocol_version",
                                           "no_shared_cipher",
                                           "no_application_protocol",
                                           "unknown_ca",
                                           "bad_certificate",
                                           "http_request",
                                           "timeout",
                                           "eof",
                                           "other" };
    struct cfg *c = test_cfg();
    struct met_registry *regs[2];
    char line[128];
    char *t;
    size_t i;

    assert_int_equal(TLS_FAIL__COUNT, sizeof(reasons) / sizeof(reasons[0]));
    regs[0] = met_registry_new(c);
    regs[1] = met_registry_new(c);
    assert_non_null(regs[0]);
    assert_non_null(regs[1]);
    t = fx_expose(regs, 2);
    assert_line(t, "# TYPE pitot_tls_handshake_failures_total counter");
    for (i = 0; i < TLS_FAIL__COUNT; i++) {
        snprintf(line, sizeof(line), "pitot_tls_handshake_failures_total{reason=\"%s\"} 0",
                 reasons[i]);
        assert_line(t, line);
        assert_string_equal(tls_fail_label((enum tls_fail)i), reasons[i]);
    }
    free(t);
    met_add_tls_failure(regs[0], TLS_FAIL_PROTOCOL_VERSION);
    met_add_tls_failure(regs[1], TLS_FAIL_PROTOCOL_VERSION);
    met_add_tls_failure(regs[1], TLS_FAIL_TIMEOUT);
    met_add_tls_failure(regs[0], TLS_FAIL_CLOSED);
    met_add_tls_failure(regs[0], TLS_FAIL__COUNT);
    t = fx_expose(regs, 2);
    assert_line(t, "pitot_tls_handshake_failures_total{reason=\"protocol_version\"} 2");
    assert_line(t, "pitot_tls_handshake_failures_total{reason=\"timeout\"} 1");
    assert_line(t, "pitot_tls_handshake_failures_total{reason=\"eof\"} 1");
    assert_line(t, "pitot_tls_handshake_failures_total{reason=\"other\"} 0");
    assert_int_equal(fx_count_prefix(t, "pitot_tls_handshake_failures_total{"), TLS_FAIL__COUNT);
    assert_string_equal(tls_fail_label(TLS_FAIL__COUNT), "unknown");
    free(t);
    met_registry_free(regs[0]);
    met_registry_free(regs[1]);
    free(c);
    (void)state;
}

static void test_doc_markdown(void **state)
{
    static const char *const names[] = {
#define NAME_ROW(id, name, type, labels, help) name,
        MET_LIST(NAME_ROW)
#undef NAME_ROW
    };
    char *doc = NULL, row[128];
    size_t len = 0, i;
    FILE *f = open_memstream(&doc, &len);

    assert_non_null(f);
    met_doc_markdown(f);
    fclose(f);
    assert_true(strncmp(doc, "| Metric | Type | Labels | Description |\n|---|---|---|---|\n", 58) ==
                0);
    for (i = 0; i < MET__COUNT; i++) {
        snprintf(row, sizeof(row), "| `%s` | ", names[i]);
        assert_non_null(strstr(doc, row));
    }
    assert_line(doc,
                "| `pitot_requests_total` | counter | `backend`, `model`, `tier`, `api`, `code` | "
                "Requests answered, by HTTP status sent to the client (pitot's own answers: "
                "empty backend) |");
    assert_line(doc, "| `pitot_backend_up` | gauge | `backend` | "
                     "1 if the backend's last health check succeeded |");
    assert_line(doc, "| `pitot_backend_scrapes_total` | counter | `backend`, `result` | "
                     "Metrics scrapes of the backend by result |");
    assert_line(doc, "| `pitot_queue_depth` | gauge | `tier` | "
                     "Requests held in pitot's overload queue now |");
    assert_line(doc, "| `pitot_queue_wait_seconds` | histogram | `tier` | "
                     "Time a request spent in the overload queue, observed when it left it |");
    assert_non_null(strstr(doc, "| `pitot_shed_total` | counter | `tier`, `reason` | "));
    assert_non_null(strstr(doc, "| `pitot_slo_requests_total` | counter | `tier`, `met` | "));
    assert_non_null(strstr(doc, "| `pitot_backend_cache_usage_ratio` | gauge | `backend` | "));
    assert_int_equal(fx_count_prefix(doc, "| `pitot_"), MET__COUNT);
    free(doc);
    (void)state;
}

/* A value in every family of backend 1 ("b"), and a request on backend 0;
 * returns backend 1's first series. */
static unsigned seed_backends(struct met_registry *r)
{
    unsigned s = met_series(r, 1, 0, 0, 0);

    met_add_request(r, s, 200);
    met_observe_us(r, MET_TTFT, s, 1000);
    met_gauge_set(r, MET_BACKEND_UP, 1, 1);
    met_add_scrape(r, 1, MET_SCRAPE_OK);
    met_add_upstream_error(r, 1, PITOT_EUPSTREAM_CONNECT);
    met_add_request(r, met_series(r, 0, 0, 0, 0), 200);
    return s;
}

/* A DNS slot without an address: none of its series is exposed, in any
 * family, until it has one; its values are kept meanwhile. Merged: the
 * first registry's mark (the router's) decides. */
static void test_inactive_backend_hidden(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *r[2];
    char *t;

    c->backends[1].dns = true; /* "b" starts without an address */
    r[0] = met_registry_new(c);
    r[1] = met_registry_new(c);
    assert_non_null(r[0]);
    assert_non_null(r[1]);
    (void)seed_backends(r[0]);
    t = fx_expose(r, 1);
    assert_null(strstr(t, "backend=\"b\""));
    assert_line(t, "pitot_backend_up{backend=\"a\"} 0");
    assert_line(t, "pitot_requests_total{" SMALL_A ",code=\"200\"} 1");
    free(t);

    met_backend_active(r[1], 1, true); /* another registry's mark does not count */
    t = fx_expose(r, 2);
    assert_null(strstr(t, "backend=\"b\""));
    free(t);
    met_backend_active(r[0], 1, true); /* the router's registry has it */
    t = fx_expose(r, 2);
    assert_line(t,
                "pitot_requests_total{backend=\"b\",model=\"small\",tier=\"default\",api=\"chat\","
                "code=\"200\"} 1");
    assert_line(t, "pitot_backend_up{backend=\"b\"} 1");
    assert_line(t, "pitot_backend_scrapes_total{backend=\"b\",result=\"ok\"} 1");
    assert_line(t, "pitot_upstream_errors_total{backend=\"b\",kind=\"upstream_connect\"} 1");
    free(t);

    met_backend_active(r[0], 1, false);
    t = fx_expose(r, 2);
    assert_null(strstr(t, "backend=\"b\""));
    free(t);
    met_registry_free(r[0]);
    met_registry_free(r[1]);
    free(c);
    (void)state;
}

/* A reload puts another backend in slot 1: met_backend_reset gives it the
 * new name and none of the old one's values, in every family; the other
 * slot keeps its own. */
static void test_backend_reset(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *r[1];
    struct cfg_backend nb;
    unsigned s;
    char *t;

    r[0] = met_registry_new(c);
    assert_non_null(r[0]);
    s = seed_backends(r[0]);
    met_backend_active(r[0], 1, false);
    memset(&nb, 0, sizeof(nb));
    snprintf(nb.name, sizeof(nb.name), "gpu-new");
    snprintf(nb.host, sizeof(nb.host), "10.9.9.9");
    nb.port = 9;
    met_backend_reset(r[0], 1, &nb);
    met_backend_active(r[0], 1, true);
    t = fx_expose(r, 1);
    assert_null(strstr(t, "backend=\"b\""));
    assert_null(strstr(t, "pitot_requests_total{backend=\"gpu-new\""));
    assert_null(strstr(t, "pitot_time_to_first_token_seconds_count{backend=\"gpu-new\""));
    assert_null(strstr(t, "pitot_backend_scrapes_total{backend=\"gpu-new\""));
    assert_null(strstr(t, "pitot_upstream_errors_total{backend=\"gpu-new\""));
    assert_line(t, "pitot_backend_up{backend=\"gpu-new\"} 0");
    assert_line(t, "pitot_requests_total{" SMALL_A ",code=\"200\"} 1");
    free(t);
    met_add_request(r[0], s, 503);
    t = fx_expose(r, 1);
    assert_line(t, "pitot_requests_total{backend=\"gpu-new\",model=\"small\",tier=\"default\","
                   "api=\"chat\",code=\"503\"} 1");
    free(t);
    met_registry_free(r[0]);
    free(c);
    (void)state;
}

/* A /proc/<pid>/stat line whose command name has spaces and parentheses,
 * one that reads like the fields after it: only the last ')' ends it. */
#define PROC_STAT_HEAD "4242 (a) Z 9 9 (b) "
#define PROC_STAT_TAIL                                                                             \
    "S 1 4242 4242 0 -1 4194560 300 0 0 0 5 3 0 0 20 0 3 0 987654 123456789 2048 "                 \
    "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"

static void test_proc_stat_parse(void **state)
{
    static const char line[] = PROC_STAT_HEAD PROC_STAT_TAIL;
    struct met_proc_stat st, keep = { 7, 7, 7 };
    char buf[4096];
    size_t cut;
    FILE *f;

    assert_int_equal(met_proc_stat_parse(span_cstr(line), &st), 0);
    assert_int_equal(st.starttime_ticks, 987654);
    assert_int_equal(st.vsize_bytes, 123456789);
    assert_int_equal(st.rss_pages, 2048);
    /* every cut before the space that ends rss fails and leaves st alone */
    for (cut = 0; cut < strlen(line); cut++) {
        st = keep;
        if (cut < (size_t)(strstr(line, "2048 ") - line) + 5) {
            assert_int_equal(met_proc_stat_parse(span_make(line, cut), &st), -1);
            assert_memory_equal(&st, &keep, sizeof(st));
        } else {
            assert_int_equal(met_proc_stat_parse(span_make(line, cut), &st), 0);
            assert_int_equal(st.rss_pages, 2048);
        }
    }
    assert_int_equal(met_proc_stat_parse(span_cstr("4242 a S 1 2 3\n"), &st), -1);
    assert_int_equal(met_proc_stat_parse(span_cstr("4242 (a)S 1 2 3\n"), &st), -1);
    assert_int_equal(met_proc_stat_parse(span_cstr("4242 (a) S 1 4242 4242 0 -1 4194560 300 0 0 0 "
                                                   "5 3 0 0 20 0 3 0 98x654 123 2048 1\n"),
                                         &st),
                     -1);
    assert_int_equal(met_proc_stat_parse(span_cstr("4242 (a) S 1 4242 4242 0 -1 4194560 300 0 0 0 "
                                                   "5 3 0 0 20 0 3 0 99999999999999999999 1 2 3\n"),
                                         &st),
                     -1);
    /* this process's own */
    f = fopen("/proc/self/stat", "r");
    assert_non_null(f);
    cut = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_int_equal(met_proc_stat_parse(span_make(buf, cut), &st), 0);
    assert_true(st.rss_pages > 0);
    assert_true(st.vsize_bytes >= st.rss_pages);
    (void)state;
}

/* The value of the unlabelled sample `name` in text; fails when absent. */
static double proc_value(const char *text, const char *name)
{
    char prefix[128];
    double v;

    snprintf(prefix, sizeof(prefix), "%s ", name);
    v = sample_value(text, prefix);
    if (isnan(v))
        fail_msg("no sample %s in:\n%s", name, text);
    return v;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void test_expose_process(void **state)
{
    static const char *const fam[][2] = {
        { "process_cpu_seconds_total", "counter" },
        { "process_max_fds", "gauge" },
        { "process_open_fds", "gauge" },
        { "process_resident_memory_bytes", "gauge" },
        { "process_start_time_seconds", "gauge" },
        { "process_virtual_memory_bytes", "gauge" },
    };
    struct evbuffer *b = evbuffer_new();
    struct rlimit rl;
    char line[160], *t;
    size_t len, i;
    double fds, cpu, start;
    int before = count_fds();
    volatile double spin = 0;

    assert_non_null(b);
    assert_int_equal(met_expose_process(b), 0);
    len = evbuffer_get_length(b);
    t = calloc(1, len + 1);
    assert_non_null(t);
    evbuffer_remove(b, t, len);
    assert_line(t, "# HELP pitot_build_info A metric with a constant '1' value labeled by "
                   "version from which pitot was built.");
    assert_line(t, "# TYPE pitot_build_info gauge");
    assert_line(t, "pitot_build_info{version=\"" PITOT_VERSION "\"} 1");
    assert_line(t, "# HELP process_cpu_seconds_total Total user and system CPU time spent in "
                   "seconds.");
    assert_line(t, "# HELP process_start_time_seconds Start time of the process since unix "
                   "epoch in seconds.");
    for (i = 0; i < sizeof(fam) / sizeof(fam[0]); i++) {
        snprintf(line, sizeof(line), "# TYPE %s %s", fam[i][0], fam[i][1]);
        assert_line(t, line);
    }
    assert_int_equal(fx_count_prefix(t, "# TYPE "), 9);
    /* the reload counters, as Prometheus exposes its own */
    assert_line(t, "# TYPE pitot_config_reloads_total counter");
    assert_non_null(strstr(t, "\npitot_config_reloads_total{result=\"failure\"} "));
    assert_non_null(strstr(t, "\npitot_config_reloads_total{result=\"success\"} "));
    assert_line(t, "# TYPE pitot_config_last_reload_success_timestamp_seconds gauge");
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_true(proc_value(t, "process_max_fds") == (double)rl.rlim_cur);
    fds = proc_value(t, "process_open_fds"); /* both counts include their reader */
    assert_true(fds >= before - 1 && fds <= before + 1);
    assert_true(proc_value(t, "process_resident_memory_bytes") > 0);
    assert_true(proc_value(t, "process_virtual_memory_bytes") >=
                proc_value(t, "process_resident_memory_bytes"));
    start = proc_value(t, "process_start_time_seconds");
    assert_true(start <= (double)time(NULL) + 1 && start > (double)time(NULL) - 3600);
    cpu = proc_value(t, "process_cpu_seconds_total");
    assert_true(cpu >= 0);
    fx_promtool_check(t);
    free(t);

    /* CPU time counts up with work done */
    while (clock() < (clock_t)((cpu + 0.05) * CLOCKS_PER_SEC))
        spin = spin + 1;
    assert_int_equal(met_expose_process(b), 0);
    len = evbuffer_get_length(b);
    t = calloc(1, len + 1);
    assert_non_null(t);
    evbuffer_remove(b, t, len);
    assert_true(proc_value(t, "process_cpu_seconds_total") >= cpu + 0.04);
    free(t);
    evbuffer_free(b);
    (void)state;
}

/* Every per-request family is kept per api; pitot's own answers are
 * requests with backend and model "", merged over registries like the rest. */
static void test_api_and_local_answers(void **state)
{
    struct cfg *c = test_cfg();
    struct met_registry *r[2];
    unsigned m;
    char *t;

    r[0] = met_registry_new(c);
    r[1] = met_registry_new(c);
    assert_non_null(r[0]);
    assert_non_null(r[1]);
    m = met_model_index(r[0], span_cstr("small"));
    met_add_request(r[0], met_series(r[0], 0, m, 0, API_MESSAGES), 200);
    met_add_request(r[0], met_series(r[0], 0, m, 0, API_CHAT), 200);
    met_observe_us(r[0], MET_TTFT, met_series(r[0], 0, m, 0, API_RESPONSES), 1000);
    met_add_local(r[0], 0, API_CHAT, 503);
    met_add_local(r[1], 0, API_CHAT, 503);
    met_add_local(r[1], 1, API_MESSAGES, 529);
    met_add_local(r[1], 2, API_MESSAGES, 529); /* no such tier: ignored */
    met_add_local(r[1], 0, MET_NAPI, 404);     /* no such api: ignored */
    t = fx_expose(r, 2);
    assert_line(t, "pitot_requests_total{" SMALL_A ",code=\"200\"} 1");
    assert_line(t, "pitot_requests_total{backend=\"a\",model=\"small\",tier=\"default\","
                   "api=\"messages\",code=\"200\"} 1");
    assert_line(t, "pitot_time_to_first_token_seconds_count{backend=\"a\",model=\"small\","
                   "tier=\"default\",api=\"responses\"} 1");
    assert_line(t, "pitot_requests_total{backend=\"\",model=\"\",tier=\"default\",api=\"chat\","
                   "code=\"503\"} 2");
    assert_line(t, "pitot_requests_total{backend=\"\",model=\"\",tier=\"batch\","
                   "api=\"messages\",code=\"529\"} 1");
    assert_int_equal(fx_count_prefix(t, "pitot_requests_total{backend=\"\""), 2);
    /* only the request counter has them */
    assert_null(strstr(t, "_count{backend=\"\""));
    fx_promtool_check(t);
    free(t);
    met_registry_free(r[0]);
    met_registry_free(r[1]);
    free(c);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram_and_counters),
        cmocka_unit_test(test_bucket_bounds),
        cmocka_unit_test(test_request_codes),
        cmocka_unit_test(test_model_learning),
        cmocka_unit_test(test_bad_arguments_ignored),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_backend_scrape_metrics),
        cmocka_unit_test(test_tier_metrics),
        cmocka_unit_test(test_merge_backend_and_tier),
        cmocka_unit_test(test_promtool_clean),
        cmocka_unit_test(test_trace_spans),
        cmocka_unit_test(test_tls_failures),
        cmocka_unit_test(test_doc_markdown),
        cmocka_unit_test(test_inactive_backend_hidden),
        cmocka_unit_test(test_backend_reset),
        cmocka_unit_test(test_proc_stat_parse),
        cmocka_unit_test(test_expose_process),
        cmocka_unit_test(test_api_and_local_answers),
    };

    return cmocka_run_group_tests_name("met", tests, NULL, NULL);
}
