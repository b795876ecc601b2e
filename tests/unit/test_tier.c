/* Unit tests for tier: tier from API keys (plain and hashed in the config,
 * in Authorization or x-api-key), from the trusted header, their precedence,
 * malformed Authorization values, repeated fields, tier_resolve on parsed
 * requests, and the SLO verdict. */
#include "pitot/route/tier.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pitot/format/config.h"
#include "pitot/format/http1.h"

/* tiers: 0 default (one key), 1 premium (plain keys), 2 batch (a digest). */
static const char tiers_yaml[] =
    "tier_header: X-Pitot-Tier\n"
    "tiers:\n"
    "  - name: premium\n"
    "    keys: [sk-premium-1, sk-premium-2]\n"
    "  - name: batch\n"
    "    key_sha256:\n"
    "      - e2186dbdb1bb4193608605e84f33208765b5693b55edd4f730a719a100eeea6f\n" /* change-me */
    "  - name: default\n"
    "    keys: [sk-default]\n";

static void load(struct cfg *c, const char *yaml)
{
    char err[512];

    cfg_init(c);
    if (cfg_load_buffer(c, "t.yaml", yaml, strlen(yaml), err, sizeof(err)) != 0) {
        print_error("%s\n", err);
        fail();
    }
}

static struct span opt(const char *s)
{
    return s ? span_cstr(s) : span_make(NULL, 0);
}

static unsigned resolve(const struct cfg *c, const char *auth, const char *hdr)
{
    return tier_resolve_values(c, opt(auth), span_make(NULL, 0), opt(hdr), NULL);
}

/* The tier and whether a key matched, from Authorization and x-api-key;
 * last_key: the index of the key that matched, -1 none. */
static int last_key;

static unsigned resolve_keys(const struct cfg *c, const char *auth, const char *apikey, bool *keyed)
{
    unsigned t = tier_resolve_values(c, opt(auth), opt(apikey), span_make(NULL, 0), &last_key);

    *keyed = last_key >= 0;
    if (last_key >= 0) /* the key's own tier */
        assert_int_equal(c->key_tier[last_key], t);
    return t;
}

static void test_keys(void **state)
{
    struct cfg c;

    load(&c, tiers_yaml);
    assert_int_equal(cfg_tier_find(&c, "premium"), 1);
    assert_int_equal(cfg_tier_find(&c, "batch"), 2);
    /* plain keys from keys: */
    assert_int_equal(resolve(&c, "Bearer sk-premium-1", NULL), 1);
    assert_int_equal(resolve(&c, "Bearer sk-premium-2", NULL), 1);
    /* a key given as its digest */
    assert_int_equal(resolve(&c, "Bearer change-me", NULL), 2);
    /* a key of the default tier */
    assert_int_equal(resolve(&c, "Bearer sk-default", NULL), 0);
    /* scheme in any case, several blanks, blanks around */
    assert_int_equal(resolve(&c, "bearer sk-premium-1", NULL), 1);
    assert_int_equal(resolve(&c, "BEARER    change-me", NULL), 2);
    assert_int_equal(resolve(&c, "  Bearer \t sk-premium-1 \t", NULL), 1);
    /* wrong keys: the default tier */
    assert_int_equal(resolve(&c, "Bearer sk-premium-3", NULL), 0);
    assert_int_equal(resolve(&c, "Bearer SK-PREMIUM-1", NULL), 0);
    assert_int_equal(resolve(&c, "Bearer sk-premium-", NULL), 0);
    assert_int_equal(resolve(&c, "Bearer sk-premium-1x", NULL), 0);
    assert_int_equal(resolve(&c,
                             "Bearer e2186dbdb1bb4193608605e84f33208765b5693b55edd4f730a719a100"
                             "eeea6f",
                             NULL),
                     0); /* the digest is not the key */
    assert_int_equal(resolve(&c, NULL, NULL), 0);
    cfg_release(&c);
}

static void test_malformed_authorization(void **state)
{
    static const char *const bad[] = {
        "",
        "Bearer",
        "Bearer ",
        "Bearer   \t ",
        "Bearersk-premium-1", /* no blank after the scheme */
        "Bearer:sk-premium-1",
        "Basic sk-premium-1", /* another scheme */
        "Token sk-premium-1",
        "sk-premium-1", /* no scheme */
        "Bearer sk-premium-1 sk-premium-2",
        "Bearer sk-premium-1,",
        "Bear sk-premium-1",
        "Bearer\nsk-premium-1",
    };
    struct cfg c;
    size_t i;

    load(&c, tiers_yaml);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (resolve(&c, bad[i], NULL) != 0) {
            print_error("'%s' resolved to a tier\n", bad[i]);
            fail();
        }
        /* ... and then the header decides */
        assert_int_equal(resolve(&c, bad[i], "batch"), 2);
    }
    /* a span that stops before the key's end is not the key */
    assert_int_equal(tier_resolve_values(&c, span_make("Bearer sk-premium-1", 18),
                                         span_make(NULL, 0), span_make(NULL, 0), NULL),
                     0);
    cfg_release(&c);
}

static void test_header(void **state)
{
    struct cfg c;

    load(&c, tiers_yaml);
    assert_int_equal(resolve(&c, NULL, "premium"), 1);
    assert_int_equal(resolve(&c, NULL, "batch"), 2);
    assert_int_equal(resolve(&c, NULL, " batch\t"), 2);
    assert_int_equal(resolve(&c, NULL, "default"), 0);
    /* exact names only */
    assert_int_equal(resolve(&c, NULL, "Premium"), 0);
    assert_int_equal(resolve(&c, NULL, "premium2"), 0);
    assert_int_equal(resolve(&c, NULL, "prem"), 0);
    assert_int_equal(resolve(&c, NULL, "gold"), 0);
    assert_int_equal(resolve(&c, NULL, ""), 0);
    /* a key beats the header, whatever tier either names */
    assert_int_equal(resolve(&c, "Bearer sk-premium-1", "batch"), 1);
    assert_int_equal(resolve(&c, "Bearer change-me", "premium"), 2);
    assert_int_equal(resolve(&c, "Bearer sk-default", "premium"), 0);
    /* a wrong key does not: the header decides */
    assert_int_equal(resolve(&c, "Bearer nope", "premium"), 1);
    cfg_release(&c);

    /* without tier_header the header is ignored; keys still work */
    load(&c, "tiers:\n  - name: premium\n    keys: [sk-premium-1]\n  - batch\n");
    assert_int_equal(resolve(&c, NULL, "batch"), 0);
    assert_int_equal(resolve(&c, "Bearer sk-premium-1", "batch"), 1);
    cfg_release(&c);

    /* without keys, Authorization is ignored */
    load(&c, "tier_header: X-Tier\ntiers: [premium, batch]\n");
    assert_int_equal(resolve(&c, "Bearer sk-premium-1", NULL), 0);
    assert_int_equal(resolve(&c, "Bearer sk-premium-1", "batch"), 2);
    cfg_release(&c);

    /* no tiers at all */
    cfg_init(&c);
    assert_int_equal(resolve(&c, "Bearer x", "default"), 0);
    cfg_release(&c);
}

/* x-api-key (Anthropic's header): the key alone, no scheme; Authorization
 * wins when its key matches, else x-api-key's; keyed tells whether either
 * matched a configured key. */
static void test_x_api_key(void **state)
{
    static const char *const bad_auth[] = { NULL,          "",        "Basic sk-premium-1",
                                            "Bearer",      "Bearer ", "Bearer nope",
                                            "sk-premium-1" };
    struct cfg c;
    bool keyed;
    size_t i;

    load(&c, tiers_yaml);
    keyed = false;
    assert_int_equal(resolve_keys(&c, NULL, "sk-premium-1", &keyed), 1);
    assert_true(keyed);
    assert_int_equal(resolve_keys(&c, NULL, " \tchange-me\t ", &keyed), 2);
    assert_true(keyed);
    keyed = false;
    assert_int_equal(resolve_keys(&c, NULL, "sk-default", &keyed), 0);
    assert_true(keyed); /* a key of the default tier is a key */
    /* no scheme in x-api-key: "Bearer KEY" there is not the key */
    assert_int_equal(resolve_keys(&c, NULL, "Bearer sk-premium-1", &keyed), 0);
    assert_false(keyed);
    assert_int_equal(resolve_keys(&c, NULL, "sk-premium-", &keyed), 0);
    assert_false(keyed);
    assert_int_equal(resolve_keys(&c, NULL, "", &keyed), 0);
    assert_false(keyed);
    assert_int_equal(resolve_keys(&c, NULL, NULL, &keyed), 0);
    assert_false(keyed);
    /* both: a matching Authorization wins over a matching x-api-key */
    assert_int_equal(resolve_keys(&c, "Bearer change-me", "sk-premium-1", &keyed), 2);
    assert_true(keyed);
    assert_int_equal(resolve_keys(&c, "Bearer sk-default", "sk-premium-1", &keyed), 0);
    assert_true(keyed);
    /* an Authorization that is malformed or names no key: x-api-key decides */
    for (i = 0; i < sizeof(bad_auth) / sizeof(bad_auth[0]); i++) {
        keyed = false;
        assert_int_equal(resolve_keys(&c, bad_auth[i], "sk-premium-2", &keyed), 1);
        assert_true(keyed);
        keyed = true;
        assert_int_equal(resolve_keys(&c, bad_auth[i], "wrong", &keyed), 0);
        assert_false(keyed);
        keyed = true;
        assert_int_equal(resolve_keys(&c, bad_auth[i], NULL, &keyed), 0);
        assert_false(keyed);
    }
    /* the Bearer paths set keyed too */
    assert_int_equal(resolve_keys(&c, "Bearer sk-premium-1", NULL, &keyed), 1);
    assert_true(keyed);
    /* an unknown key falls back to the tier header, and is still no key */
    assert_int_equal(tier_resolve_values(&c, span_cstr("Bearer nope"), span_cstr("nope"),
                                         span_cstr("batch"), &last_key),
                     2);
    assert_int_equal(last_key, -1);
    cfg_release(&c);

    /* no keys configured: nothing is a key */
    load(&c, "tiers: [premium]\n");
    assert_int_equal(resolve_keys(&c, "Bearer sk-premium-1", "sk-premium-1", &keyed), 0);
    assert_false(keyed);
    cfg_release(&c);
    (void)state;
}

/* tier_resolve on requests parsed by h1: header names in any case, the first
 * field of a name counts. */
static unsigned resolve_request(const struct cfg *c, const char *head)
{
    struct h1_parser p;
    size_t used;

    h1_init(&p, H1_REQUEST, NULL, NULL, NULL);
    assert_int_equal(h1_execute(&p, span_cstr(head), &used), H1_HEAD);
    assert_int_equal(used, strlen(head));
    return tier_resolve(c, &p.msg, NULL);
}

static void test_resolve_request(void **state)
{
    struct cfg c;

    load(&c, tiers_yaml);
    assert_int_equal(resolve_request(&c, "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
                                         "Authorization: Bearer sk-premium-2\r\n\r\n"),
                     1);
    assert_int_equal(resolve_request(&c, "POST / HTTP/1.1\r\nHost: a\r\n"
                                         "authorization:   bearer change-me  \r\n\r\n"),
                     2);
    assert_int_equal(resolve_request(&c, "POST / HTTP/1.1\r\nHost: a\r\n"
                                         "x-pitot-tier: batch\r\n\r\n"),
                     2);
    assert_int_equal(resolve_request(&c, "POST / HTTP/1.1\r\nHost: a\r\n"
                                         "X-Pitot-Tier: premium\r\n"
                                         "Authorization: Bearer change-me\r\n\r\n"),
                     2);
    assert_int_equal(resolve_request(&c, "POST / HTTP/1.1\r\nHost: a\r\n"
                                         "Authorization: Bearer wrong\r\n"
                                         "X-Pitot-Tier: premium\r\n\r\n"),
                     1);
    assert_int_equal(resolve_request(&c, "POST / HTTP/1.1\r\nHost: a\r\n"
                                         "X-Pitot-Tier: gold\r\n\r\n"),
                     0);
    assert_int_equal(resolve_request(&c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    cfg_release(&c);
}

/* The same on parsed requests: x-api-key in any case, and a credential
 * field given twice counts as absent. */
static void test_resolve_request_keys(void **state)
{
    struct h1_parser p;
    struct cfg c;
    size_t used;
    static const struct {
        const char *head;
        unsigned tier;
        bool keyed;
    } cases[] = {
        { "POST / HTTP/1.1\r\nHost: a\r\nX-Api-Key: sk-premium-1\r\n\r\n", 1, true },
        { "POST / HTTP/1.1\r\nHost: a\r\nx-api-key:change-me\r\n\r\n", 2, true },
        { "POST / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer sk-default\r\n"
          "x-api-key: sk-premium-1\r\n\r\n",
          0, true },
        { "POST / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic c2s6cHc=\r\n"
          "x-api-key: sk-premium-1\r\n\r\n",
          1, true },
        /* another header name is not a key */
        { "POST / HTTP/1.1\r\nHost: a\r\napi-key: sk-premium-1\r\n\r\n", 0, false },
        { "POST / HTTP/1.1\r\nHost: a\r\nX-Api-Token: sk-premium-1\r\n\r\n", 0, false },
        /* twice, even the same key: absent */
        { "POST / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer sk-premium-1\r\n"
          "Authorization: Bearer sk-premium-1\r\n\r\n",
          0, false },
        { "POST / HTTP/1.1\r\nHost: a\r\nx-api-key: sk-premium-1\r\n"
          "X-API-KEY: change-me\r\n\r\n",
          0, false },
        /* the other field still counts when one is repeated */
        { "POST / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer sk-premium-1\r\n"
          "Authorization: Bearer change-me\r\nx-api-key: sk-default\r\n\r\n",
          0, true },
        { "POST / HTTP/1.1\r\nHost: a\r\nx-api-key: a\r\nx-api-key: b\r\n"
          "Authorization: Bearer change-me\r\n\r\n",
          2, true },
        { "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, false },
    };
    size_t i;

    load(&c, tiers_yaml);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        h1_init(&p, H1_REQUEST, NULL, NULL, NULL);
        assert_int_equal(h1_execute(&p, span_cstr(cases[i].head), &used), H1_HEAD);
        last_key = cases[i].keyed ? -1 : 0;
        if (tier_resolve(&c, &p.msg, &last_key) != cases[i].tier ||
            (last_key >= 0) != cases[i].keyed) {
            print_error("case %zu: %s\n", i, cases[i].head);
            fail();
        }
    }
    cfg_release(&c);
    (void)state;
}

static void test_slo(void **state)
{
    struct cfg_tier none = { .name = "none" };
    struct cfg_tier ttft = { .name = "ttft", .slo_ttft_ms = 2000 };
    struct cfg_tier tpot = { .name = "tpot", .slo_tpot_ms = 100 };
    struct cfg_tier both = { .name = "both", .slo_ttft_ms = 2000, .slo_tpot_ms = 100 };

    /* no targets: always met, measured or not */
    assert_true(tier_slo_met(&none, -1, -1, -1));
    assert_true(tier_slo_met(&none, 999999999, 999999999, 100));

    /* TTFT: at most the target; unmeasured is not met */
    assert_true(tier_slo_met(&ttft, 0, -1, 0));
    assert_true(tier_slo_met(&ttft, 2000000, -1, 50));
    assert_false(tier_slo_met(&ttft, 2000001, -1, 50));
    assert_false(tier_slo_met(&ttft, -1, -1, 50));
    assert_false(tier_slo_met(&ttft, -1, 1, 1));

    /* TPOT: at most the target; unmeasured is not met... */
    assert_true(tier_slo_met(&tpot, -1, 100000, 10));
    assert_true(tier_slo_met(&tpot, -1, 0, 2));
    assert_false(tier_slo_met(&tpot, -1, 100001, 10));
    assert_false(tier_slo_met(&tpot, -1, -1, 2));
    /* ...unless there was at most one token (or an unknown count): ignored */
    assert_true(tier_slo_met(&tpot, -1, -1, 1));
    assert_true(tier_slo_met(&tpot, -1, 999999999, 1));
    assert_true(tier_slo_met(&tpot, -1, -1, 0));
    assert_true(tier_slo_met(&tpot, -1, -1, -1));

    /* both: each that applies must be met */
    assert_true(tier_slo_met(&both, 2000000, 100000, 10));
    assert_false(tier_slo_met(&both, 2000001, 100000, 10));
    assert_false(tier_slo_met(&both, 2000000, 100001, 10));
    assert_false(tier_slo_met(&both, -1, 100000, 10));
    assert_true(tier_slo_met(&both, 1500000, -1, 1));
    assert_false(tier_slo_met(&both, 2500000, -1, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),      cmocka_unit_test(test_malformed_authorization),
        cmocka_unit_test(test_header),    cmocka_unit_test(test_resolve_request),
        cmocka_unit_test(test_x_api_key), cmocka_unit_test(test_resolve_request_keys),
        cmocka_unit_test(test_slo),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
