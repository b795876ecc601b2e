/* Unit tests for metrics_otel: metrics' OpenTelemetry GenAI families (opentelemetry.metrics):
 * absent when off, with pitot's own exposition unchanged when on; exact
 * exposition lines for known observations (the conventions' bucket
 * boundaries, label names and values, counts and sums); error_type and its
 * bound; operations from request paths; the provider label; the merge of
 * per-worker registries; promtool's verdict; the docs table. */
#include "pitot/measure/metrics.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include <event2/buffer.h>

#include "pitot/format/config.h"

/* Two backends (llama.cpp on 127.0.0.1:8081, auto-detected on [::1]:8082),
 * tiers default and batch, model "small" known, buckets unlike the OTel ones. */
static struct cfg *test_cfg(bool otel)
{
    static const double buckets[] = { 0.001, 0.25, 1, 2.5 };
    struct cfg *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    strcpy(c->backends[0].name, "a");
    strcpy(c->backends[0].host, "127.0.0.1");
    c->backends[0].port = 8081;
    c->backends[0].flavor = CFG_FLAVOR_LLAMACPP;
    strcpy(c->backends[1].name, "b");
    strcpy(c->backends[1].host, "::1");
    c->backends[1].port = 8082;
    c->backends[1].flavor = CFG_FLAVOR_AUTO;
    c->nbackends = 2;
    strcpy(c->tiers[0].name, "default");
    strcpy(c->tiers[1].name, "batch");
    c->ntiers = 2;
    strcpy(c->models[0], "small");
    c->nmodels = 1;
    c->max_model_labels = 2;
    memcpy(c->buckets, buckets, sizeof(buckets));
    c->nbuckets = sizeof(buckets) / sizeof(buckets[0]);
    c->otel_metrics = otel;
    return c;
}

/* A successful streamed chat request. */
static struct met_otel_obs chat_ok(void)
{
    struct met_otel_obs o = {
        .op = MET_OTEL_OP_CHAT,
        .flavor = CFG_FLAVOR_LLAMACPP,
        .outcome = PITOT_EOK,
        .status = 200,
        .e2e_us = 150000, /* le 0.16 */
        .ttft_us = 30000, /* le 0.04 */
        .tpot_us = 20000, /* le 0.025 */
        .input_tokens = 100,
        .output_tokens = 16, /* le 16: bounds are inclusive */
    };
    return o;
}

#define L_A                                                                                        \
    "gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"llamacpp\","                            \
    "gen_ai_request_model=\"small\",server_address=\"127.0.0.1\",server_port=\"8081\","            \
    "tier=\"default\""

static void test_off_absent_and_pitot_unchanged(void **state)
{
    struct cfg *off = test_cfg(false), *on = test_cfg(true);
    struct met_registry *r0 = met_registry_new(off), *r1 = met_registry_new(on);
    struct met_otel_obs o = chat_ok();
    unsigned s0, s1;
    char *t0, *t1;

    assert_non_null(r0);
    assert_non_null(r1);
    s0 = met_series(r0, 0, met_model_index(r0, span_cstr("small")), 0, 0);
    s1 = met_series(r1, 0, met_model_index(r1, span_cstr("small")), 0, 0);
    met_observe_us(r0, MET_TTFT, s0, 30000);
    met_observe_us(r1, MET_TTFT, s1, 30000);
    met_add_request(r0, s0, 200);
    met_add_request(r1, s1, 200);
    met_observe_otel(r0, s0, &o); /* no OTel storage: ignored */
    met_observe_otel(r1, s1, &o);
    t0 = fx_expose(&r0, 1);
    t1 = fx_expose(&r1, 1);
    assert_null(strstr(t0, "gen_ai"));
    assert_null(strstr(t0, "error_type"));
    /* with the switch on, pitot's families come first, byte for byte the
     * same, and the four OTel families follow */
    assert_true(strlen(t1) > strlen(t0));
    assert_memory_equal(t0, t1, strlen(t0));
    assert_true(strncmp(t1 + strlen(t0), "# HELP gen_ai_client_operation_duration_seconds ", 48) ==
                0);
    assert_int_equal(fx_count_prefix(t1, "# TYPE gen_ai_"), 4);
    assert_int_equal(fx_count_prefix(t1 + strlen(t0), "# TYPE "), 4);
    free(t0);
    free(t1);
    met_registry_free(r0);
    met_registry_free(r1);
    free(off);
    free(on);
    (void)state;
}

static void test_exposition_bytes(void **state)
{
    struct cfg *c = test_cfg(true);
    struct met_registry *r = met_registry_new(c);
    struct met_otel_obs o = chat_ok();
    unsigned s;
    char *t;

    assert_non_null(r);
    s = met_series(r, 0, met_model_index(r, span_cstr("small")), 0, 0);
    t = fx_expose(&r, 1);
    /* every family has HELP and TYPE, with no series yet */
    assert_line(t, "# HELP gen_ai_client_operation_duration_seconds GenAI operation duration: "
                   "pitot's E2E, every request a backend took; error_type on failed ones");
    assert_line(t, "# TYPE gen_ai_client_operation_duration_seconds histogram");
    assert_line(t, "# TYPE gen_ai_client_token_usage histogram");
    assert_line(t, "# TYPE gen_ai_server_time_to_first_token_seconds histogram");
    assert_line(t, "# TYPE gen_ai_server_time_per_output_token_seconds histogram");
    assert_null(strstr(t, "gen_ai_operation_name="));
    free(t);

    met_observe_otel(r, s, &o);
    o.e2e_us = 81920000; /* the last bound exactly */
    o.ttft_us = 10000001;
    o.tpot_us = 2500000;
    o.input_tokens = 67108865;
    o.output_tokens = 0;
    met_observe_otel(r, s, &o);
    t = fx_expose(&r, 1);

#define D "gen_ai_client_operation_duration_seconds"
    assert_line(t, D "_bucket{" L_A ",le=\"0.01\"} 0");
    assert_line(t, D "_bucket{" L_A ",le=\"0.02\"} 0");
    assert_line(t, D "_bucket{" L_A ",le=\"0.04\"} 0");
    assert_line(t, D "_bucket{" L_A ",le=\"0.08\"} 0");
    assert_line(t, D "_bucket{" L_A ",le=\"0.16\"} 1");
    assert_line(t, D "_bucket{" L_A ",le=\"0.32\"} 1");
    assert_line(t, D "_bucket{" L_A ",le=\"0.64\"} 1");
    assert_line(t, D "_bucket{" L_A ",le=\"1.28\"} 1");
    assert_line(t, D "_bucket{" L_A ",le=\"2.56\"} 1");
    assert_line(t, D "_bucket{" L_A ",le=\"5.12\"} 1");
    assert_line(t, D "_bucket{" L_A ",le=\"10.24\"} 1");
    assert_line(t, D "_bucket{" L_A ",le=\"20.48\"} 1");
    assert_line(t, D "_bucket{" L_A ",le=\"40.96\"} 1");
    assert_line(t, D "_bucket{" L_A ",le=\"81.92\"} 2");
    assert_line(t, D "_bucket{" L_A ",le=\"+Inf\"} 2");
    assert_line(t, D "_sum{" L_A "} 82.07");
    assert_line(t, D "_count{" L_A "} 2");
    assert_int_equal(fx_count_prefix(t, D "_bucket{"), 15);
#undef D

#define T "gen_ai_server_time_to_first_token_seconds"
    {
        static const char *const le[] = { "0.001", "0.005", "0.01", "0.02", "0.04", "0.06",
                                          "0.08",  "0.1",   "0.25", "0.5",  "0.75", "1",
                                          "2.5",   "5",     "7.5",  "10",   "+Inf" };
        char line[512];
        size_t i;

        for (i = 0; i < sizeof(le) / sizeof(le[0]); i++) {
            snprintf(line, sizeof(line), T "_bucket{" L_A ",le=\"%s\"} %d", le[i],
                     (i >= 4) + (i == 16));
            assert_line(t, line);
        }
        assert_int_equal(fx_count_prefix(t, T "_bucket{"), 17);
    }
    assert_line(t, T "_sum{" L_A "} 10.030001");
    assert_line(t, T "_count{" L_A "} 2");
#undef T

#define P "gen_ai_server_time_per_output_token_seconds"
    assert_line(t, P "_bucket{" L_A ",le=\"0.01\"} 0");
    assert_line(t, P "_bucket{" L_A ",le=\"0.025\"} 1");
    assert_line(t, P "_bucket{" L_A ",le=\"0.075\"} 1");
    assert_line(t, P "_bucket{" L_A ",le=\"0.15\"} 1");
    assert_line(t, P "_bucket{" L_A ",le=\"1\"} 1");
    assert_line(t, P "_bucket{" L_A ",le=\"2.5\"} 2");
    assert_line(t, P "_bucket{" L_A ",le=\"+Inf\"} 2");
    assert_line(t, P "_sum{" L_A "} 2.52");
    assert_int_equal(fx_count_prefix(t, P "_bucket{"), 14);
#undef P

#define K "gen_ai_client_token_usage"
#define IN L_A ",gen_ai_token_type=\"input\""
#define OUT L_A ",gen_ai_token_type=\"output\""
    assert_line(t, K "_bucket{" IN ",le=\"1\"} 0");
    assert_line(t, K "_bucket{" IN ",le=\"64\"} 0");
    assert_line(t, K "_bucket{" IN ",le=\"256\"} 1");
    assert_line(t, K "_bucket{" IN ",le=\"262144\"} 1");
    assert_line(t, K "_bucket{" IN ",le=\"1.048576e+06\"} 1"); /* as Go clients print it */
    assert_line(t, K "_bucket{" IN ",le=\"6.7108864e+07\"} 1");
    assert_line(t, K "_bucket{" IN ",le=\"+Inf\"} 2");
    assert_line(t, K "_sum{" IN "} 67108965");
    assert_line(t, K "_count{" IN "} 2");
    assert_line(t, K "_bucket{" OUT ",le=\"1\"} 1"); /* the 0 */
    assert_line(t, K "_bucket{" OUT ",le=\"4\"} 1");
    assert_line(t, K "_bucket{" OUT ",le=\"16\"} 2");
    assert_line(t, K "_sum{" OUT "} 16");
    assert_line(t, K "_count{" OUT "} 2");
    assert_int_equal(fx_count_prefix(t, K "_bucket{"), 30);
#undef IN
#undef OUT
#undef K
    /* one label set only: no other backend, model, tier or operation */
    assert_int_equal(fx_count_prefix(t, "gen_ai_client_operation_duration_seconds_count{"), 1);
    assert_null(strstr(t, "error_type="));
    free(t);
    met_registry_free(r);
    free(c);
    (void)state;
}

static void test_errors(void **state)
{
    static const enum pitot_err kinds[] = { PITOT_EUPSTREAM_TIMEOUT, PITOT_ECLIENT_CANCEL,
                                            PITOT_ESTALL_TIMEOUT, PITOT_EUPSTREAM_RESET };
    struct cfg *c = test_cfg(true);
    struct met_registry *r = met_registry_new(c);
    struct met_otel_obs o = chat_ok();
    unsigned s;
    size_t i;
    char *t;

    assert_non_null(r);
    s = met_series(r, 0, met_model_index(r, span_cstr("small")), 0, 0);
    /* a backend's error answer, relayed: the status is the error_type */
    o.status = 500;
    o.ttft_us = o.tpot_us = -1;
    o.input_tokens = 7;
    o.output_tokens = -1;
    o.e2e_us = 5000;
    met_observe_otel(r, s, &o);
    met_observe_otel(r, s, &o);
    t = fx_expose(&r, 1);
#define D "gen_ai_client_operation_duration_seconds"
    assert_line(t, D "_bucket{" L_A ",error_type=\"500\",le=\"0.01\"} 2");
    assert_line(t, D "_count{" L_A ",error_type=\"500\"} 2");
    assert_line(t, D "_sum{" L_A ",error_type=\"500\"} 0.01");
    /* the label set without error_type is there from the first request */
    assert_line(t, D "_count{" L_A "} 0");
    /* tokens that were known still count; no output row without output */
    assert_line(t, "gen_ai_client_token_usage_count{" L_A ",gen_ai_token_type=\"input\"} 2");
    assert_null(strstr(t, "gen_ai_token_type=\"output\""));
    free(t);

    /* pitot's failures: err_label(); a successful-looking TTFT is not kept */
    o = chat_ok();
    o.status = 200; /* the head went out, then the stream broke */
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        o.outcome = kinds[i];
        met_observe_otel(r, s, &o);
    }
    o.outcome = PITOT_EOK; /* and one success */
    met_observe_otel(r, s, &o);
    o.outcome = PITOT_EUPSTREAM_TIMEOUT; /* a value already kept */
    met_observe_otel(r, s, &o);
    t = fx_expose(&r, 1);
    assert_line(t, D "_count{" L_A "} 1");
    assert_line(t, D "_count{" L_A ",error_type=\"500\"} 2");
    assert_line(t, D "_count{" L_A ",error_type=\"upstream_timeout\"} 2");
    assert_line(t, D "_count{" L_A ",error_type=\"client_cancel\"} 1");
    assert_line(t, D "_count{" L_A ",error_type=\"stall_timeout\"} 1");
    /* a fifth distinct value in one label set: the conventions' fallback */
    assert_line(t, D "_count{" L_A ",error_type=\"_OTHER\"} 1");
    assert_null(strstr(t, "upstream_reset"));
    assert_int_equal(fx_count_prefix(t, D "_count{"), 6);
    /* TTFT and TPOT only from the successful request */
    assert_line(t, "gen_ai_server_time_to_first_token_seconds_count{" L_A "} 1");
    assert_line(t, "gen_ai_server_time_per_output_token_seconds_count{" L_A "} 1");
    /* tokens from all of them: 2 + 4 + 1 + 1 input, 6 output */
    assert_line(t, "gen_ai_client_token_usage_count{" L_A ",gen_ai_token_type=\"input\"} 8");
    assert_line(t, "gen_ai_client_token_usage_count{" L_A ",gen_ai_token_type=\"output\"} 6");
    /* error_type rows are in code order: pitot's kinds, then statuses, _OTHER last */
    assert_true(strstr(t, "error_type=\"upstream_timeout\"") < strstr(t, "error_type=\"500\""));
    assert_true(strstr(t, "error_type=\"500\"") < strstr(t, "error_type=\"_OTHER\""));
#undef D
    free(t);
    met_registry_free(r);
    free(c);
    (void)state;
}

static void test_operations(void **state)
{
    struct cfg *c = test_cfg(true);
    struct met_registry *r = met_registry_new(c);
    struct met_otel_obs o = chat_ok();
    unsigned s;
    char *t;

    assert_int_equal(met_otel_op_of_path("/v1/chat/completions"), MET_OTEL_OP_CHAT);
    assert_int_equal(met_otel_op_of_path("/v1/chat/completions?x=1"), MET_OTEL_OP_CHAT);
    assert_int_equal(met_otel_op_of_path("/chat/completions"), MET_OTEL_OP_CHAT);
    assert_int_equal(met_otel_op_of_path("/v1/completions"), MET_OTEL_OP_TEXT_COMPLETION);
    assert_int_equal(met_otel_op_of_path("/completions"), MET_OTEL_OP_TEXT_COMPLETION);
    assert_int_equal(met_otel_op_of_path("/completion"), MET_OTEL_OP_TEXT_COMPLETION);
    assert_int_equal(met_otel_op_of_path("/generate"), MET_OTEL_OP_TEXT_COMPLETION);
    assert_int_equal(met_otel_op_of_path("/generate_stream"), MET_OTEL_OP_TEXT_COMPLETION);
    assert_int_equal(met_otel_op_of_path("/v1/embeddings"), MET_OTEL_OP_EMBEDDINGS);
    assert_int_equal(met_otel_op_of_path("/embedding"), MET_OTEL_OP_EMBEDDINGS);
    assert_int_equal(met_otel_op_of_path("/v1/responses"), MET_OTEL_OP_CHAT);
    assert_int_equal(met_otel_op_of_path("/v1/messages"), MET_OTEL_OP_CHAT);
    assert_int_equal(met_otel_op_of_path("/infill"), MET_OTEL_OP_TEXT_COMPLETION);
    assert_int_equal(met_otel_op_of_path("/v1/chat/completionsx"), MET_OTEL_OP_NONE);
    assert_int_equal(met_otel_op_of_path("/v1/chat"), MET_OTEL_OP_NONE);
    assert_int_equal(met_otel_op_of_path("/v1/models"), MET_OTEL_OP_NONE);
    assert_int_equal(met_otel_op_of_path("/health"), MET_OTEL_OP_NONE);
    assert_int_equal(met_otel_op_of_path(""), MET_OTEL_OP_NONE);
    assert_string_equal(met_otel_op_label(MET_OTEL_OP_CHAT), "chat");
    assert_string_equal(met_otel_op_label(MET_OTEL_OP_TEXT_COMPLETION), "text_completion");
    assert_string_equal(met_otel_op_label(MET_OTEL_OP_EMBEDDINGS), "embeddings");
    assert_string_equal(met_otel_op_label(MET_OTEL_OP_NONE), "");
    assert_string_equal(met_otel_op_label(MET_OTEL_OP__COUNT), "");

    assert_non_null(r);
    s = met_series(r, 0, met_model_index(r, span_cstr("small")), 1, 0);
    o.op = MET_OTEL_OP_NONE; /* not recorded */
    met_observe_otel(r, s, &o);
    o.op = MET_OTEL_OP__COUNT; /* out of range: ignored */
    met_observe_otel(r, s, &o);
    met_observe_otel(r, met_series(r, 9, 0, 0, 0), &o); /* series out of range */
    t = fx_expose(&r, 1);
    assert_null(strstr(t, "gen_ai_operation_name="));
    free(t);

    o.op = MET_OTEL_OP_EMBEDDINGS;
    o.ttft_us = o.tpot_us = o.output_tokens = -1;
    met_observe_otel(r, s, &o);
    o.op = MET_OTEL_OP_TEXT_COMPLETION;
    met_observe_otel(r, s, &o);
    t = fx_expose(&r, 1);
#define B                                                                                          \
    "gen_ai_provider_name=\"llamacpp\",gen_ai_request_model=\"small\","                            \
    "server_address=\"127.0.0.1\",server_port=\"8081\",tier=\"batch\""
    assert_line(t, "gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="
                   "\"text_completion\"," B "} 1");
    assert_line(t, "gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="
                   "\"embeddings\"," B "} 1");
    /* operations in enum order within a label set */
    assert_true(strstr(t, "\"text_completion\"," B) < strstr(t, "\"embeddings\"," B));
    assert_line(t, "gen_ai_client_token_usage_count{gen_ai_operation_name=\"embeddings\"," B
                   ",gen_ai_token_type=\"input\"} 1");
    assert_null(strstr(t, "gen_ai_server_time_to_first_token_seconds_count{"));
#undef B
    free(t);
    met_registry_free(r);
    free(c);
    (void)state;
}

static void test_provider(void **state)
{
    struct cfg *c = test_cfg(true);
    struct met_registry *r = met_registry_new(c);
    struct met_otel_obs o = chat_ok();
    unsigned s;
    char *t;

    assert_string_equal(met_otel_provider_label(CFG_FLAVOR_LLAMACPP), "llamacpp");
    assert_string_equal(met_otel_provider_label(CFG_FLAVOR_VLLM), "vllm");
    assert_string_equal(met_otel_provider_label(CFG_FLAVOR_TGI), "tgi");
    assert_string_equal(met_otel_provider_label(CFG_FLAVOR_SGLANG), "sglang");
    assert_string_equal(met_otel_provider_label(CFG_FLAVOR_OPENAI), "openai");
    assert_string_equal(met_otel_provider_label(CFG_FLAVOR_AUTO), "openai");

    assert_non_null(r);
    /* backend b: flavor auto, not yet detected */
    s = met_series(r, 1, met_model_index(r, span_cstr("small")), 0, 0);
    o.flavor = CFG_FLAVOR_AUTO;
    met_observe_otel(r, s, &o);
    t = fx_expose(&r, 1);
#define B_REST                                                                                     \
    "gen_ai_request_model=\"small\",server_address=\"::1\",server_port=\"8082\",tier=\"default\""
    assert_line(t, "gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name=\"chat\","
                   "gen_ai_provider_name=\"openai\"," B_REST "} 1");
    free(t);
    /* detected at a scrape: the series keeps its counts under the new label */
    o.flavor = CFG_FLAVOR_VLLM;
    met_observe_otel(r, s, &o);
    t = fx_expose(&r, 1);
    assert_line(t, "gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name=\"chat\","
                   "gen_ai_provider_name=\"vllm\"," B_REST "} 2");
    assert_null(strstr(t, "\"openai\""));
#undef B_REST
    free(t);
    met_registry_free(r);
    free(c);
    (void)state;
}

static void test_merge(void **state)
{
    struct cfg *c = test_cfg(true), *plain = test_cfg(false);
    struct met_registry *regs[2], *mixed[2];
    struct met_otel_obs o = chat_ok();
    unsigned m;
    char *t;

    /* backend b becomes a second entry for a's server: one label set */
    strcpy(c->backends[1].host, "127.0.0.1");
    c->backends[1].port = 8081;
    regs[0] = met_registry_new(c);
    regs[1] = met_registry_new(c);
    assert_non_null(regs[0]);
    assert_non_null(regs[1]);
    /* each worker learns in its own order */
    assert_int_equal(met_model_index(regs[0], span_cstr("x")), 1);
    m = met_model_index(regs[1], span_cstr("y"));
    assert_int_equal(m, 1);
    assert_int_equal(met_model_index(regs[1], span_cstr("x")), 2);

    met_observe_otel(regs[0], met_series(regs[0], 0, 1, 0, 0), &o); /* a, x */
    o.outcome = PITOT_EUPSTREAM_RESET;
    met_observe_otel(regs[1], met_series(regs[1], 1, 2, 0, 0), &o); /* b, x */
    o.outcome = PITOT_EOK;
    o.status = 429;
    met_observe_otel(regs[0], met_series(regs[0], 1, 1, 0, 0), &o); /* b, x */
    met_observe_otel(regs[1], met_series(regs[1], 0, 2, 0, 0), &o); /* a, x */
    o.status = 200;
    o.flavor = CFG_FLAVOR_AUTO;
    met_observe_otel(regs[1], met_series(regs[1], 0, m, 1, 0), &o); /* a, y, batch */

    t = fx_expose(regs, 2);
#define X                                                                                          \
    "gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"llamacpp\","                            \
    "gen_ai_request_model=\"x\",server_address=\"127.0.0.1\",server_port=\"8081\","                \
    "tier=\"default\""
#define D "gen_ai_client_operation_duration_seconds"
    assert_line(t, D "_count{" X "} 1");
    assert_line(t, D "_count{" X ",error_type=\"upstream_reset\"} 1");
    assert_line(t, D "_count{" X ",error_type=\"429\"} 2");
    assert_line(t, D "_bucket{" X ",error_type=\"429\",le=\"0.16\"} 2");
    assert_line(t, D "_sum{" X ",error_type=\"429\"} 0.3");
    assert_line(t, "gen_ai_client_token_usage_sum{" X ",gen_ai_token_type=\"input\"} 400");
    /* the configured flavor (llamacpp, of a) names the merged server even
     * where the worker recorded auto */
    assert_line(t, D "_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"llamacpp\","
                     "gen_ai_request_model=\"y\",server_address=\"127.0.0.1\","
                     "server_port=\"8081\",tier=\"batch\"} 1");
    assert_int_equal(fx_count_prefix(t, D "_count{"), 4);
    assert_null(strstr(t, "server_address=\"::1\""));
#undef D
#undef X
    free(t);

    /* registries with and without the OTel families do not merge */
    mixed[0] = regs[0];
    mixed[1] = met_registry_new(plain);
    assert_non_null(mixed[1]);
    {
        struct evbuffer *b = evbuffer_new();

        assert_non_null(b);
        assert_int_equal(met_expose(mixed, 2, b), -1);
        evbuffer_free(b);
    }
    met_registry_free(mixed[1]);
    met_registry_free(regs[0]);
    met_registry_free(regs[1]);
    free(c);
    free(plain);
    (void)state;
}

/* Everything at once, pitot's families included, through promtool's linter. */
static void test_promtool_clean(void **state)
{
    struct cfg *c = test_cfg(true);
    struct met_registry *regs[2];
    size_t i;
    int k, op;
    char *t;

    strcpy(c->tiers[1].name, "we\"ird\\na\nme");
    for (i = 0; i < 2; i++) {
        struct met_registry *r = met_registry_new(c);
        struct met_otel_obs o = chat_ok();
        unsigned s;

        assert_non_null(r);
        regs[i] = r;
        s = met_series(r, 1, met_model_index(r, span_cstr(i ? "x" : "y")), 1, 0);
        for (k = 0; k < MET__COUNT; k++)
            met_observe_us(r, (enum met_id)k, s, 1234 * (unsigned)k);
        met_add_request(r, s, 200);
        for (op = MET_OTEL_OP_CHAT; op < MET_OTEL_OP__COUNT; op++) {
            o.op = (enum met_otel_op)op;
            for (k = 0; k < PITOT_E__COUNT; k++) {
                o.outcome = (enum pitot_err)k;
                o.e2e_us = 1000 * k;
                met_observe_otel(r, s, &o);
            }
            o.outcome = PITOT_EOK;
            o.status = 503;
            met_observe_otel(r, met_series(r, 0, 0, 0, 0), &o);
            o.status = 200;
        }
    }
    t = fx_expose(regs, 2);
    assert_non_null(strstr(t, "error_type=\"_OTHER\""));
    fx_promtool_check(t);
    free(t);
    met_registry_free(regs[0]);
    met_registry_free(regs[1]);
    free(c);
    (void)state;
}

static void test_doc_markdown(void **state)
{
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);

    assert_non_null(f);
    met_doc_markdown(f);
    fclose(f);
    assert_line(doc, "| `gen_ai_client_operation_duration_seconds` | histogram | "
                     "`gen_ai_operation_name`, `gen_ai_provider_name`, `gen_ai_request_model`, "
                     "`server_address`, `server_port`, `tier`, `error_type` | "
                     "Only with `opentelemetry.metrics: true`: OTel "
                     "`gen_ai.client.operation.duration`. GenAI operation duration: pitot's E2E, "
                     "every request a backend took; error_type on failed ones |");
    assert_non_null(strstr(doc, "| `gen_ai_client_token_usage` | histogram | "
                                "`gen_ai_operation_name`, `gen_ai_provider_name`, "
                                "`gen_ai_request_model`, `server_address`, `server_port`, "
                                "`tier`, `gen_ai_token_type` | Only with "));
    assert_non_null(strstr(doc, "| `gen_ai_server_time_to_first_token_seconds` | histogram | "));
    assert_non_null(strstr(doc, "| `gen_ai_server_time_per_output_token_seconds` | histogram | "));
    assert_int_equal(fx_count_prefix(doc, "| `gen_ai_"), MET_OTEL__COUNT);
    assert_int_equal(fx_count_prefix(doc, "| `gen_ai_"), 4);
    /* after pitot's own rows */
    assert_true(strstr(doc, "| `pitot_slo_requests_total`") < strstr(doc, "| `gen_ai_"));
    free(doc);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_absent_and_pitot_unchanged),
        cmocka_unit_test(test_exposition_bytes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_operations),
        cmocka_unit_test(test_provider),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_promtool_clean),
        cmocka_unit_test(test_doc_markdown),
    };

    return cmocka_run_group_tests_name("met_otel", tests, NULL, NULL);
}
