/* Unit tests for flavor: detection and normalised load on every fixture
 * /metrics body (the fixture README's scenario: 3 running, 5 waiting, cache
 * 0.87; llama.cpp busy 2/2, idle 0/0), summing over series, errors, names,
 * the /v1/models list and /props slots. */
#include "pitot/format/flavor.h"

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
    { "llama.cpp/v1-models.http", NULL, 0 },
    { "llama.cpp/props.http", NULL, 0 },
    { "llama.cpp/apis/models-list.http", NULL, 0 },
    { "llama.cpp/apis/props.http", NULL, 0 },
};

#define NBODIES (sizeof(bodies) / sizeof(bodies[0]))

static struct json_toks toks;

static int bodies_setup(void **state)
{
    toks.cap = JSON_TOKENS_DEFAULT;
    toks.tok = malloc(json_toks_size(toks.cap));
    assert_non_null(toks.tok);
    fx_bodies_load(bodies, NBODIES);
    (void)state;
    return 0;
}

static int bodies_teardown(void **state)
{
    fx_bodies_release(bodies, NBODIES);
    free(toks.tok);
    (void)state;
    return 0;
}

static struct span body(const char *name)
{
    const struct fx_body *b = fx_bodies_find(bodies, NBODIES, name);

    return span_make(b->p, b->len);
}

/* ---- detection ----------------------------------------------------------- */

static void test_detect_fixtures(void **state)
{
    size_t i;

    assert_int_equal(flv_detect(body("vllm/metrics.txt")), CFG_FLAVOR_VLLM);
    assert_int_equal(flv_detect(body("tgi/metrics.txt")), CFG_FLAVOR_TGI);
    assert_int_equal(flv_detect(body("sglang/metrics.txt")), CFG_FLAVOR_SGLANG);
    for (i = 0; i < NBODIES; i++) {
        if (strncmp(bodies[i].name, "llama.cpp/metrics-", 18) == 0)
            assert_int_equal(flv_detect(body(bodies[i].name)), CFG_FLAVOR_LLAMACPP);
    }
    (void)state;
}

static void test_detect_other(void **state)
{
    assert_int_equal(flv_detect(span_cstr("")), CFG_FLAVOR_OPENAI);
    assert_int_equal(flv_detect(span_cstr("process_open_fds 12\nhttp_requests_total 3\n")),
                     CFG_FLAVOR_OPENAI);
    /* a name in a HELP text or a label is not a sample name */
    assert_int_equal(flv_detect(span_cstr("# HELP x like vllm:foo\n# TYPE tgi_x gauge\n"
                                          "x{n=\"sglang:y\"} 1\n")),
                     CFG_FLAVOR_OPENAI);
    /* the first recognised sample decides, later junk does not matter */
    assert_int_equal(flv_detect(span_cstr("a 1\nsglang:num_queue_reqs 2\nvllm:x 1\n{{{\n")),
                     CFG_FLAVOR_SGLANG);
    assert_int_equal(flv_detect(span_cstr("tgi_queue_size 0\n")), CFG_FLAVOR_TGI);
    assert_int_equal(flv_detect(span_cstr("llamacpp:requests_deferred 0")), CFG_FLAVOR_LLAMACPP);
    /* junk before any recognised name */
    assert_int_equal(flv_detect(span_cstr("<html>\nvllm:x 1\n")), CFG_FLAVOR_OPENAI);
    (void)state;
}

/* ---- load ---------------------------------------------------------------- */

static struct flv_load load_of(enum cfg_flavor f, struct span b)
{
    struct flv_load l;
    char err[128] = "untouched";

    if (flv_load_parse(f, b, &l, err, sizeof(err)) != 0)
        fail_msg("flv_load_parse: %s", err);
    assert_string_equal(err, "untouched");
    return l;
}

static void test_load_scenario(void **state)
{
    struct flv_load l;

    l = load_of(CFG_FLAVOR_VLLM, body("vllm/metrics.txt"));
    assert_true(l.valid);
    assert_true(l.running == 3.0 && l.waiting == 5.0 && l.cache_ratio == 0.87);

    l = load_of(CFG_FLAVOR_SGLANG, body("sglang/metrics.txt"));
    assert_true(l.valid);
    assert_true(l.running == 3.0 && l.waiting == 5.0 && l.cache_ratio == 0.87);

    /* TGI: token budget in use, 24556 / 28224 = 0.87 to three places */
    l = load_of(CFG_FLAVOR_TGI, body("tgi/metrics.txt"));
    assert_true(l.valid);
    assert_true(l.running == 3.0 && l.waiting == 5.0);
    assert_true(l.cache_ratio == 24556.0 / 28224.0);
    assert_true(fabs(l.cache_ratio - 0.87) < 0.0005);
    (void)state;
}

static void test_load_llamacpp(void **state)
{
    static const char *const idle[] = {
        "llama.cpp/metrics-idle-fresh.http",
        "llama.cpp/metrics-after-busy-idle.http",
        "llama.cpp/metrics-after-client-abort.http",
        "llama.cpp/metrics-after-traffic-idle.http",
        "llama.cpp/metrics-busy-other-replica-idle.http",
    };
    struct flv_load l;
    size_t i;

    l = load_of(CFG_FLAVOR_LLAMACPP, body("llama.cpp/metrics-busy.http"));
    assert_true(l.valid);
    assert_true(l.running == 2.0 && l.waiting == 2.0 && l.cache_ratio == -1.0);
    for (i = 0; i < sizeof(idle) / sizeof(idle[0]); i++) {
        l = load_of(CFG_FLAVOR_LLAMACPP, body(idle[i]));
        assert_true(l.valid);
        assert_true(l.running == 0.0 && l.waiting == 0.0 && l.cache_ratio == -1.0);
    }
    (void)state;
}

static void test_load_sums_series(void **state)
{
    struct flv_load l;

    /* two engines: counts summed, ratio the max; the old cache name counts */
    l = load_of(CFG_FLAVOR_VLLM,
                span_cstr("vllm:num_requests_running{engine=\"0\"} 2.0\n"
                          "vllm:num_requests_running{engine=\"1\"} 3.0\n"
                          "vllm:num_requests_waiting{engine=\"1\"} 4.0\n"
                          "vllm:num_requests_waiting{engine=\"0\"} NaN\n"
                          "vllm:num_requests_waiting_by_reason{reason=\"capacity\"} 99\n"
                          "vllm:kv_cache_usage_perc{engine=\"0\"} 0.5\n"
                          "vllm:gpu_cache_usage_perc{engine=\"1\"} 0.9\n"
                          "vllm:kv_cache_usage_perc{engine=\"2\"} 0.25\n"));
    assert_true(l.valid);
    assert_true(l.running == 5.0 && l.waiting == 4.0 && l.cache_ratio == 0.9);

    /* SGLang ranks and pids */
    l = load_of(CFG_FLAVOR_SGLANG,
                span_cstr("sglang:num_running_reqs{pid=\"1\",tp_rank=\"0\"} 1\n"
                          "sglang:num_running_reqs{tp_rank=\"1\",pid=\"2\"} 6\n"
                          "sglang:num_running_reqs_offline_batch{tp_rank=\"0\"} 50\n"
                          "sglang:num_queue_reqs{tp_rank=\"0\"} 0\n"
                          "sglang:token_usage{tp_rank=\"0\"} 1.25\n"));
    assert_true(l.valid);
    assert_true(l.running == 7.0 && l.waiting == 0.0 && l.cache_ratio == 1.0); /* clamped */

    /* llama.cpp in front of several replicas' worth of lines */
    l = load_of(CFG_FLAVOR_LLAMACPP, span_cstr("llamacpp:requests_processing 1\n"
                                               "llamacpp:requests_processing 1\n"
                                               "llamacpp:requests_deferred +Inf\n"));
    assert_true(l.valid);
    assert_true(l.running == 2.0 && l.waiting == 0.0 && l.cache_ratio == -1.0);
    (void)state;
}

static void test_load_partial(void **state)
{
    struct flv_load l;

    /* TGI without the budget's denominator, or with a zero one: no ratio */
    l = load_of(CFG_FLAVOR_TGI,
                span_cstr("tgi_batch_current_size 2\ntgi_batch_current_max_tokens 5\n"));
    assert_true(l.valid);
    assert_true(l.running == 2.0 && l.waiting == 0.0 && l.cache_ratio == -1.0);
    l = load_of(CFG_FLAVOR_TGI,
                span_cstr("tgi_batch_current_max_tokens 5\ntgi_batch_max_total_tokens 0\n"));
    assert_false(l.valid);
    assert_true(l.cache_ratio == -1.0);
    /* a ratio alone is a signal */
    l = load_of(CFG_FLAVOR_VLLM, span_cstr("vllm:kv_cache_usage_perc 0.1\n"));
    assert_true(l.valid);
    assert_true(l.running == 0.0 && l.waiting == 0.0 && l.cache_ratio == 0.1);
    /* no signal of that flavor: parsed, but not valid */
    l = load_of(CFG_FLAVOR_TGI, body("vllm/metrics.txt"));
    assert_false(l.valid);
    assert_true(l.running == 0.0 && l.waiting == 0.0 && l.cache_ratio == -1.0);
    l = load_of(CFG_FLAVOR_VLLM, span_cstr(""));
    assert_false(l.valid);
    /* openai: syntax only */
    l = load_of(CFG_FLAVOR_OPENAI, body("vllm/metrics.txt"));
    assert_false(l.valid);
    assert_true(l.cache_ratio == -1.0);
    (void)state;
}

static void test_load_errors(void **state)
{
    struct flv_load l;
    char err[64];

    assert_int_equal(flv_load_parse(CFG_FLAVOR_VLLM,
                                    span_cstr("vllm:num_requests_running 1\nvllm:x 1x\n"), &l, err,
                                    sizeof(err)),
                     -1);
    assert_string_equal(err, "line 2: invalid sample value");
    assert_false(l.valid);
    assert_int_equal(flv_load_parse(CFG_FLAVOR_OPENAI, span_cstr("<html>\n"), &l, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "line 1: invalid metric name");
    assert_int_equal(
        flv_load_parse(CFG_FLAVOR_AUTO, body("vllm/metrics.txt"), &l, err, sizeof(err)), -1);
    assert_string_equal(err, "flavor auto: detect the flavor first");
    /* err may be NULL; a short one is cut, terminated */
    assert_int_equal(flv_load_parse(CFG_FLAVOR_TGI, span_cstr("m{a=\"b} 1\n"), &l, NULL, 0), -1);
    assert_int_equal(flv_load_parse(CFG_FLAVOR_TGI, span_cstr("m{a=\"b} 1\n"), &l, err, 8), -1);
    assert_string_equal(err, "line 1:");
    (void)state;
}

static void test_names(void **state)
{
    static const enum cfg_flavor all[] = {
        CFG_FLAVOR_AUTO, CFG_FLAVOR_LLAMACPP, CFG_FLAVOR_VLLM,
        CFG_FLAVOR_TGI,  CFG_FLAVOR_SGLANG,   CFG_FLAVOR_OPENAI,
    };
    static const char *const names[] = { "auto", "llamacpp", "vllm", "tgi", "sglang", "openai" };
    size_t i;

    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        assert_string_equal(flv_name(all[i]), names[i]);
        assert_int_equal(flv_from_name(names[i]), (int)all[i]);
    }
    assert_string_equal(flv_name((enum cfg_flavor)99), "");
    assert_int_equal(flv_from_name("VLLM"), -1);
    assert_int_equal(flv_from_name("llama.cpp"), -1);
    assert_int_equal(flv_from_name(""), -1);
    assert_int_equal(flv_from_name(NULL), -1);
    (void)state;
}

/* ---- /v1/models and /props ---------------------------------------------- */

struct names {
    char text[512]; /* names joined by ';' */
    unsigned n;
};

static void name_seen(void *ud, struct span name)
{
    struct names *ns = ud;
    size_t len = strlen(ns->text);

    snprintf(ns->text + len, sizeof(ns->text) - len, "%.*s;", (int)name.len, name.p);
    ns->n++;
}

static int models(const char *json, struct names *ns)
{
    memset(ns, 0, sizeof(*ns));
    return flv_models_parse(span_cstr(json), &toks, name_seen, ns);
}

static void test_models_llamacpp(void **state)
{
    struct names ns;

    memset(&ns, 0, sizeof(ns));
    assert_int_equal(flv_models_parse(body("llama.cpp/v1-models.http"), &toks, name_seen, &ns), 1);
    assert_string_equal(ns.text, "small;");
    assert_int_equal(ns.n, 1);
    /* aliases and the models[] list; each name once, in path order */
    assert_int_equal(
        models("{\"models\":[{\"name\":\"m1\",\"model\":\"m1.gguf\"},{\"name\":\"m2\"}],"
               "\"object\":\"list\",\"data\":[{\"id\":\"m1\",\"aliases\":[\"a1\",\"m1\"]}]}",
               &ns),
        4);
    assert_string_equal(ns.text, "m1;a1;m2;m1.gguf;");
    /* --alias tiny: the id, its alias and the models[] list name one model */
    memset(&ns, 0, sizeof(ns));
    assert_int_equal(
        flv_models_parse(body("llama.cpp/apis/models-list.http"), &toks, name_seen, &ns), 1);
    assert_string_equal(ns.text, "tiny;");
    (void)state;
}

static void test_models_openai(void **state)
{
    struct names ns;

    assert_int_equal(
        models("{\"object\":\"list\",\"data\":["
               "{\"id\":\"gpt-4o\",\"object\":\"model\",\"created\":1,\"owned_by\":\"system\"},"
               "{\"id\":\"meta-llama/Llama-3.3-70B-Instruct\",\"object\":\"model\"},"
               "{\"id\":\"gpt-4o\"},{\"id\":\"\"},{\"id\":7},{\"name\":\"x\"}]}",
               &ns),
        2);
    assert_string_equal(ns.text, "gpt-4o;meta-llama/Llama-3.3-70B-Instruct;");
    /* raw bytes: escapes stay as written */
    assert_int_equal(models("{\"data\":[{\"id\":\"a\\/b\"}]}", &ns), 1);
    assert_string_equal(ns.text, "a\\/b;");
    /* no list, not an object, not JSON */
    assert_int_equal(models("{\"data\":{\"id\":\"x\"}}", &ns), 0);
    assert_int_equal(models("{}", &ns), 0);
    assert_int_equal(models("[{\"id\":\"x\"}]", &ns), -1);
    assert_int_equal(models("{\"data\":[{\"id\":\"x\"}]", &ns), -1);
    assert_int_equal(models("Loading model", &ns), -1);
    assert_int_equal(ns.n, 0);
    /* no callback: just the count */
    assert_int_equal(flv_models_parse(span_cstr("{\"data\":[{\"id\":\"a\"},{\"id\":\"b\"}]}"),
                                      &toks, NULL, NULL),
                     2);
    (void)state;
}

static void test_models_limits(void **state)
{
    static char json[16384];
    struct json_toks few;
    struct names ns;
    size_t n = 0, i;

    /* more tokens than given: an error, not a partial list */
    few.tok = toks.tok;
    few.cap = 4;
    assert_int_equal(
        flv_models_parse(span_cstr("{\"data\":[{\"id\":\"a\"},{\"id\":\"b\"}]}"), &few, NULL, NULL),
        -1);
    /* at most FLV_MODELS_MAX distinct names */
    n += (size_t)snprintf(json + n, sizeof(json) - n, "{\"data\":[");
    for (i = 0; i < FLV_MODELS_MAX + 10; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, "%s{\"id\":\"m%zu\"}", i ? "," : "", i);
    snprintf(json + n, sizeof(json) - n, "]}");
    memset(&ns, 0, sizeof(ns));
    assert_int_equal(flv_models_parse(span_cstr(json), &toks, NULL, NULL), FLV_MODELS_MAX);
    (void)state;
}

static void test_props_slots(void **state)
{
    assert_int_equal(flv_props_slots(body("llama.cpp/props.http"), &toks), 2);
    assert_int_equal(flv_props_slots(body("llama.cpp/apis/props.http"), &toks), 2);
    assert_int_equal(flv_props_slots(span_cstr("{\"total_slots\":16}"), &toks), 16);
    assert_int_equal(flv_props_slots(span_cstr("{\"total_slots\":\"2\"}"), &toks), -1);
    assert_int_equal(flv_props_slots(span_cstr("{\"total_slots\":-1}"), &toks), -1);
    assert_int_equal(flv_props_slots(span_cstr("{\"total_slots\":null}"), &toks), -1);
    assert_int_equal(flv_props_slots(span_cstr("{\"x\":{\"total_slots\":3}}"), &toks), -1);
    assert_int_equal(flv_props_slots(span_cstr("{}"), &toks), -1);
    assert_int_equal(
        flv_props_slots(span_cstr("{\"error\":{\"code\":503,\"message\":\"Loading model\"}}"),
                        &toks),
        -1);
    assert_int_equal(flv_props_slots(span_cstr("not json"), &toks), -1);
    (void)state;
}

/* json_paths_visit() (added to json.c for the above): nested paths, arrays of
 * arrays, duplicate keys, values of the wrong kind. */
struct visits {
    char text[256];
};

static void visit(void *ud, size_t path, struct span raw, bool is_string)
{
    struct visits *v = ud;
    size_t len = strlen(v->text);

    snprintf(v->text + len, sizeof(v->text) - len, "%zu%c%.*s;", path, is_string ? 's' : 'p',
             (int)raw.len, raw.p);
}

static void test_json_paths(void **state)
{
    static const char *const paths[] = { "a.b[].c", "x[][]", "d", "a", "a.b[]", "n.m" };
    const char *doc = "{\"a\":{\"b\":[{\"c\":1},{\"c\":\"two\"},{\"e\":3},5,{\"c\":{\"f\":1}}]},"
                      "\"x\":[[1,2],[\"3\"],4],\"d\":false,\"d\":true,\"n\":[{\"m\":1}]}";
    struct visits v;

    memset(&v, 0, sizeof(v));
    assert_int_equal(json_paths_visit(span_cstr(doc), &toks, paths, 6, visit, &v), 7);
    assert_string_equal(v.text, "0p1;0stwo;1p1;1p2;1s3;2ptrue;4p5;");
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_fixtures),  cmocka_unit_test(test_detect_other),
        cmocka_unit_test(test_load_scenario),    cmocka_unit_test(test_load_llamacpp),
        cmocka_unit_test(test_load_sums_series), cmocka_unit_test(test_load_partial),
        cmocka_unit_test(test_load_errors),      cmocka_unit_test(test_names),
        cmocka_unit_test(test_models_llamacpp),  cmocka_unit_test(test_models_openai),
        cmocka_unit_test(test_models_limits),    cmocka_unit_test(test_props_slots),
        cmocka_unit_test(test_json_paths),
    };

    return cmocka_run_group_tests_name("flavor", tests, bodies_setup, bodies_teardown);
}
