/* Unit tests for status: /status.json rendered from a hand-made backend table
 * and registries (states, scraped load, the last minute's TTFT quantiles and
 * error rate from snapshot differences, tiers), the disable flag in the
 * balancer (by name, a DNS name's slots, kept across an address change), the
 * /admin/backends/{name}/{action} paths and the admin token check. */
#include "pitot/serve/status.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "pitot/format/config.h"
#include "pitot/measure/metrics.h"
#include "pitot/route/balancer.h"
#include "pitot/route/router.h"
#include "pitot/util/err.h"

static struct cfg cfg; /* large: static, not on the stack */

static void cfg_with(size_t n)
{
    char url[64], name[32], err[256];
    size_t i;

    cfg_init(&cfg);
    for (i = 0; i < n; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%zu", 9001 + i);
        snprintf(name, sizeof(name), "b%zu", i);
        if (cfg_backend_add(&cfg, url, name, err, sizeof(err)) != 0)
            fail_msg("cfg_backend_add %s: %s", url, err);
    }
}

/* The JSON of st at now_us, NUL-terminated, malloc'd. */
static char *render(struct status *st, uint64_t now_us)
{
    struct evbuffer *b = evbuffer_new();
    size_t n;
    char *s;

    assert_non_null(b);
    assert_int_equal(status_json(st, b, now_us), 0);
    n = evbuffer_get_length(b);
    s = malloc(n + 1);
    assert_non_null(s);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

/* The object of backend `name` in the JSON, up to its end ("}"): a copy. */
static char *backend_obj(const char *json, const char *name)
{
    char key[96], *s, *e, *o;

    snprintf(key, sizeof(key), "{\"name\":\"%s\"", name);
    s = strstr(json, key);
    if (s == NULL)
        fail_msg("no backend %s in %s", name, json);
    e = strchr(s, '}');
    assert_non_null(e);
    o = strndup(s, (size_t)(e - s + 1));
    assert_non_null(o);
    return o;
}

static double num_after(const char *obj, const char *key)
{
    char k[64];
    const char *p;

    snprintf(k, sizeof(k), "\"%s\":", key);
    p = strstr(obj, k);
    if (p == NULL)
        fail_msg("no %s in %s", key, obj);
    return strtod(p + strlen(k), NULL);
}

static void test_json_table(void **state)
{
    struct router rt;
    struct met_registry *regs[2];
    struct status *st;
    const uint64_t *bound;
    unsigned nb, model, ser, i;
    char *js, *o;
    uint64_t t0 = 1000000000ull; /* monotonic µs */

    (void)state;
    cfg_with(5);
    memset(&rt, 0, sizeof(rt));
    assert_int_equal(pthread_mutex_init(&rt.lock, NULL), 0);
    rt.cfg = &cfg;
    assert_int_equal(bal_init(&rt.bal, &cfg), 0);
    regs[0] = met_registry_new(&cfg);
    regs[1] = met_registry_new(&cfg);
    assert_non_null(regs[0]);
    assert_non_null(regs[1]);
    st = status_new(&cfg, &rt, regs, 2);
    assert_non_null(st);

    /* b0 up and scraped; b1 disabled with a request still running; b2 down;
     * b3 loading; b4 ejected for 5 more seconds */
    bal_scraped(&rt.bal.b[0], 3, 1, 500, t0);
    rt.bal.b[0].capacity = 4;
    bal_measured(&rt.bal.b[0], 20000);
    bal_dispatched(&rt.bal.b[1]);
    assert_int_equal(bal_disable(&rt.bal, span_cstr("b1"), true), 1);
    bal_scraped(&rt.bal.b[2], 5, 5, -1, t0); /* its last words before it went down */
    rt.bal.b[2].up = false;
    rt.bal.b[3].up = false;
    rt.bal.b[3].loading = true;
    rt.bal.b[4].ejected_until_us = t0 + 5000000;

    status_sample(st, t0);
    /* the last minute on b0: 10 answers (2 of them 503) over both workers,
     * TTFTs all in the bucket of 0.1 s */
    nb = met_bounds_us(regs[0], &bound);
    assert_true(nb > 2);
    for (i = 0; i < 10; i++) {
        struct met_registry *r = regs[i % 2];
        model = met_model_index(r, span_cstr("m"));
        ser = met_series(r, 0, model, 0, 0);
        met_add_request(r, ser, i < 2 ? 503 : 200);
        met_observe_us(r, MET_TTFT, ser, 100000);
    }
    met_add_shed(regs[1], 0, MET_SHED_QUEUE_FULL);
    met_add_slo(regs[0], 0, true);
    met_add_slo(regs[0], 0, true);
    met_add_slo(regs[1], 0, true);
    met_add_slo(regs[1], 0, false);
    status_sample(st, t0 + 1000000);

    js = render(st, t0 + 1000000);
    assert_non_null(strstr(js, "\"version\":\""));
    assert_non_null(strstr(js, "\"workers\":2,"));
    assert_non_null(strstr(js, "\"window_s\":1.0,"));
    assert_non_null(strstr(js, "\"reload\":false"));

    o = backend_obj(js, "b0");
    assert_non_null(strstr(o, "\"state\":\"up\""));
    assert_non_null(strstr(o, "\"running\":3,\"waiting\":1"));
    assert_non_null(strstr(o, "\"capacity\":4"));
    assert_non_null(strstr(o, "\"cache\":0.500"));
    assert_non_null(strstr(o, "\"tpot_ms\":20.00"));
    assert_non_null(strstr(o, "\"requests_1m\":10,\"errors_1m\":2"));
    assert_non_null(strstr(o, "\"error_rate\":0.2000"));
    assert_non_null(strstr(o, "\"load\":[4,4]"));
    {
        /* all ten in the bucket (lo, hi] holding 0.1 s: p50 halfway, p95 at
         * 95% of it, as histogram_quantile interpolates */
        double lo = 0, hi = 0, p50 = num_after(o, "ttft_p50_ms"), p95 = num_after(o, "ttft_p95_ms");
        for (i = 0; i < nb; i++)
            if (bound[i] >= 100000) {
                hi = bound[i] / 1000.0;
                lo = i ? bound[i - 1] / 1000.0 : 0;
                break;
            }
        assert_true(hi > 0);
        assert_true(p50 > lo + (hi - lo) * 0.5 - 0.1 && p50 < lo + (hi - lo) * 0.5 + 0.1);
        assert_true(p95 > lo + (hi - lo) * 0.95 - 0.1 && p95 < lo + (hi - lo) * 0.95 + 0.1);
    }
    free(o);

    o = backend_obj(js, "b1");
    assert_non_null(strstr(o, "\"state\":\"draining\",\"disabled\":true"));
    assert_non_null(strstr(o, "\"in_flight\":1"));
    assert_non_null(strstr(o, "\"running\":null"));
    assert_non_null(strstr(o, "\"ttft_p50_ms\":null"));
    assert_non_null(strstr(o, "\"error_rate\":null"));
    free(o);
    o = backend_obj(js, "b2");
    assert_non_null(strstr(o, "\"state\":\"down\""));
    assert_non_null(strstr(o, "\"running\":5,\"waiting\":5")); /* as last scraped */
    assert_non_null(strstr(o, "\"load\":[0,0]"));              /* but no load */
    free(o);
    o = backend_obj(js, "b3");
    assert_non_null(strstr(o, "\"state\":\"loading\""));
    free(o);
    o = backend_obj(js, "b4");
    assert_non_null(strstr(o, "\"state\":\"ejected\""));
    assert_non_null(strstr(o, "\"ejected_left_s\":4.0"));
    free(o);
    assert_non_null(strstr(js, "\"tiers\":[{\"name\":\"default\",\"queue_depth\":0,\"shed_1m\":1,"
                               "\"slo_1m\":4,\"goodput\":0.7500}]"));
    free(js);

    /* the draining backend's last request ends: disabled */
    bal_released(&rt.bal.b[1]);
    js = render(st, t0 + 1500000);
    o = backend_obj(js, "b1");
    assert_non_null(strstr(o, "\"state\":\"disabled\""));
    free(o);
    free(js);

    status_free(st);
    met_registry_free(regs[0]);
    met_registry_free(regs[1]);
    bal_release(&rt.bal);
    pthread_mutex_destroy(&rt.lock);
    cfg_release(&cfg);
}

/* The ring keeps a minute: the figures are the difference with the oldest
 * snapshot held, 60 seconds back. */
static void test_json_window(void **state)
{
    struct router rt;
    struct met_registry *regs[1];
    struct status *st;
    unsigned ser, i;
    char *js, *o, want[96];
    uint64_t t0 = 5000000;

    (void)state;
    cfg_with(1);
    memset(&rt, 0, sizeof(rt));
    assert_int_equal(pthread_mutex_init(&rt.lock, NULL), 0);
    assert_int_equal(bal_init(&rt.bal, &cfg), 0);
    regs[0] = met_registry_new(&cfg);
    assert_non_null(regs[0]);
    st = status_new(&cfg, &rt, regs, 1);
    assert_non_null(st);
    ser = met_series(regs[0], 0, met_model_index(regs[0], span_cstr("m")), 0, 0);
    /* one 500 a second for 100 seconds: the last minute holds 60 */
    for (i = 0; i < 100; i++) {
        met_add_request(regs[0], ser, 500);
        status_sample(st, t0 + (uint64_t)i * 1000000);
    }
    met_note_reload(true, 1);
    met_note_reload(false, 1);
    js = render(st, t0 + 99 * 1000000ull);
    assert_non_null(strstr(js, "\"window_s\":60.0,"));
    snprintf(want, sizeof(want), "\"reloads\":{\"ok\":%llu,\"failed\":%llu}",
             (unsigned long long)met_reload_count(true),
             (unsigned long long)met_reload_count(false));
    assert_true(met_reload_count(true) >= 1);
    assert_non_null(strstr(js, want));
    o = backend_obj(js, "b0");
    assert_non_null(strstr(o, "\"requests_1m\":60,\"errors_1m\":60"));
    assert_non_null(strstr(o, "\"error_rate\":1.0000"));
    free(o);
    free(js);
    status_free(st);
    met_registry_free(regs[0]);
    bal_release(&rt.bal);
    pthread_mutex_destroy(&rt.lock);
    cfg_release(&cfg);
}

static void test_disable(void **state)
{
    struct bal bl;
    struct bal_req rq = { { NULL, 0 }, 0, NULL, NULL, 0 };
    struct bal_backend *b;
    char err[256];
    size_t i;

    (void)state;
    cfg_init(&cfg);
    assert_int_equal(cfg_backend_add(&cfg, "http://127.0.0.1:9001", "a", err, sizeof(err)), 0);
    assert_int_equal(cfg_backend_add(&cfg, "http://pool.invalid:9002", "pool", err, sizeof(err)),
                     0);
    cfg.max_addresses = 3;
    assert_int_equal(cfg_backends_expand(&cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.nbackends, 4 + 16); /* a, pool, pool/1, pool/2, the spares */
    assert_string_equal(cfg.backends[2].name, "pool/1");
    assert_int_equal(bal_init(&bl, &cfg), 0);
    for (i = 1; i < 4; i++)
        bal_activate(&bl, &bl.b[i], true);
    assert_int_equal(bal_up_count(&bl), 4);
    assert_int_equal(bal_disable(&bl, span_cstr(""), true), 0); /* the spares: no name */

    assert_int_equal(bal_disable(&bl, span_cstr("nope"), true), 0);
    assert_int_equal(bal_disable(&bl, span_cstr("pool/1"), true), 1); /* one slot */
    assert_true(bl.b[2].disabled);
    assert_false(bl.b[1].disabled);
    assert_int_equal(bal_disable(&bl, span_cstr("pool"), true), 3); /* every slot */
    assert_int_equal(bal_up_count(&bl), 1);
    for (i = 0; i < 4; i++) {
        assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_OK);
        assert_int_equal(b->idx, 0);
    }
    /* a new address does not bring a disabled slot back */
    bal_activate(&bl, &bl.b[3], true);
    assert_true(bl.b[3].disabled);
    /* every backend disabled: none to choose, none up (/readyz 503) */
    assert_int_equal(bal_disable(&bl, span_cstr("a"), true), 1);
    assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_NO_BACKEND);
    assert_int_equal(bal_up_count(&bl), 0);
    assert_int_equal(bal_disable(&bl, span_cstr("pool"), false), 3);
    assert_int_equal(bal_up_count(&bl), 3);
    assert_int_equal(bal_choose(&bl, &rq, 1, &b), BAL_OK);
    assert_true(b->idx >= 1);
    bal_release(&bl);
    cfg_release(&cfg);
}

static void test_backend_path(void **state)
{
    static const struct {
        const char *path;
        enum status_action act;
        const char *name;
    } cases[] = {
        { "/admin/backends/a/disable", STATUS_ACT_DISABLE, "a" },
        { "/admin/backends/replica-b/enable", STATUS_ACT_ENABLE, "replica-b" },
        { "/admin/backends/127.0.0.1:8081/disable", STATUS_ACT_DISABLE, "127.0.0.1:8081" },
        { "/admin/backends/pool/2/disable", STATUS_ACT_DISABLE, "pool/2" },
        { "/admin/backends/pool%2F2/enable", STATUS_ACT_ENABLE, "pool/2" },
        { "/admin/backends/a%2fb/enable", STATUS_ACT_ENABLE, "a/b" },
        { "/admin/backends//disable", STATUS_ACT_NONE, "" },
        { "/admin/backends/disable", STATUS_ACT_NONE, "" },
        { "/admin/backends/a/drain", STATUS_ACT_NONE, "" },
        { "/admin/backends/a/disable/", STATUS_ACT_NONE, "" },
        { "/admin/backends/a/Disable", STATUS_ACT_NONE, "" },
        { "/admin/backend/a/disable", STATUS_ACT_NONE, "" },
        { "/admin/backends/a%/disable", STATUS_ACT_NONE, "" },
        { "/admin/backends/a%4/disable", STATUS_ACT_NONE, "" },
        { "/admin/backends/a%zz/disable", STATUS_ACT_NONE, "" },
        { "/admin/backends/a%00b/disable", STATUS_ACT_NONE, "" },
        { "/admin/backends/a%0a/disable", STATUS_ACT_NONE, "" },
        { "/admin/backends/a%20b/disable", STATUS_ACT_NONE, "" },
        { "/admin/backends/a%7f/disable", STATUS_ACT_NONE, "" },
        { "/admin/backends/\xc3\xa9/disable", STATUS_ACT_NONE, "" },
        { "/admin/backends/a/disablex", STATUS_ACT_NONE, "" },
        { "", STATUS_ACT_NONE, "" },
    };
    char name[CFG_NAME_MAX], longp[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum status_action a = status_backend_path(span_cstr(cases[i].path), name, sizeof(name));
        if (a != cases[i].act || (a != STATUS_ACT_NONE && strcmp(name, cases[i].name) != 0))
            fail_msg("%s: action %d name '%s'", cases[i].path, (int)a, name);
    }
    /* a name of CFG_NAME_MAX - 1 bytes fits; one more does not */
    snprintf(longp, sizeof(longp), "/admin/backends/%0*d/enable", CFG_NAME_MAX - 1, 7);
    assert_int_equal(status_backend_path(span_cstr(longp), name, sizeof(name)), STATUS_ACT_ENABLE);
    assert_int_equal(strlen(name), CFG_NAME_MAX - 1);
    snprintf(longp, sizeof(longp), "/admin/backends/%0*d/enable", CFG_NAME_MAX, 7);
    assert_int_equal(status_backend_path(span_cstr(longp), name, sizeof(name)), STATUS_ACT_NONE);
    /* the span's length counts, not a NUL */
    assert_int_equal(
        status_backend_path(span_make("/admin/backends/a/disable", 24), name, sizeof(name)),
        STATUS_ACT_NONE);
}

static void test_token(void **state)
{
    (void)state;
    /* no token configured: anything goes */
    assert_true(status_token_ok("", span_make(NULL, 0)));
    assert_true(status_token_ok("", span_cstr("Bearer whatever")));
    assert_true(status_token_ok("s3cret", span_cstr("Bearer s3cret")));
    assert_true(status_token_ok("s3cret", span_cstr("bearer   s3cret  ")));
    assert_true(status_token_ok("s3cret", span_cstr("BEARER\ts3cret")));
    assert_false(status_token_ok("s3cret", span_make(NULL, 0)));
    assert_false(status_token_ok("s3cret", span_cstr("")));
    assert_false(status_token_ok("s3cret", span_cstr("Bearer")));
    assert_false(status_token_ok("s3cret", span_cstr("Bearer ")));
    assert_false(status_token_ok("s3cret", span_cstr("Bearers3cret")));
    assert_false(status_token_ok("s3cret", span_cstr("Basic s3cret")));
    assert_false(status_token_ok("s3cret", span_cstr("s3cret")));
    assert_false(status_token_ok("s3cret", span_cstr("Bearer s3cre")));
    assert_false(status_token_ok("s3cret", span_cstr("Bearer s3cret2")));
    assert_false(status_token_ok("s3cret", span_cstr("Bearer S3CRET")));
    assert_false(status_token_ok("s3cret", span_make("Bearer s3cret", 12)));
}

/* No reload callback: 501; the page is embedded and fetches nothing. */
static void test_reload_page(void **state)
{
    (void)state;
    assert_int_equal(status_reload(NULL), -PITOT_ENOT_IMPLEMENTED);
    assert_true(status_page().len > 1000);
    assert_non_null(memmem(status_page().p, status_page().len, "status.json", 11));
    /* self-contained: nothing fetched from elsewhere (no script or image
     * source, stylesheet link, CSS import or url()) */
    assert_null(memmem(status_page().p, status_page().len, "src=", 4));
    assert_null(memmem(status_page().p, status_page().len, "<link", 5));
    assert_null(memmem(status_page().p, status_page().len, "@import", 7));
    assert_null(memmem(status_page().p, status_page().len, "url(", 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_table), cmocka_unit_test(test_json_window),
        cmocka_unit_test(test_disable),    cmocka_unit_test(test_backend_path),
        cmocka_unit_test(test_token),      cmocka_unit_test(test_reload_page),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
