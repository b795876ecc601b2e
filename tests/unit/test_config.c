/* Unit tests for config: defaults, a full file, every error class with its exact
 * "NAME:LINE: message", value syntax, CLI helpers, validation, the sample. */
#include "pitot/format/config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

struct err_case {
    const char *yaml;
    const char *want; /* "t.yaml:LINE: message" */
};

static char err[1024];

static int load(struct cfg *c, const char *yaml)
{
    err[0] = '\0';
    return cfg_load_buffer(c, "t.yaml", yaml, strlen(yaml), err, sizeof(err));
}

/* SHA-256 of a key, as cfg stores it. */
static void sha256(const char *key, unsigned char out[32])
{
    assert_int_equal(EVP_Digest(key, strlen(key), out, NULL, EVP_sha256(), NULL), 1);
}

/* The digest of "change-me", the sample's placeholder. */
#define CHANGE_ME_HEX "e2186dbdb1bb4193608605e84f33208765b5693b55edd4f730a719a100eeea6f"

/* Every case fails to load with exactly its message, and leaves the cfg as
 * it was (loads are all-or-nothing). */
static void check_errors(const struct err_case *cases, size_t n)
{
    struct cfg c, before;
    size_t i;

    for (i = 0; i < n; i++) {
        cfg_init(&c);
        memcpy(&before, &c, sizeof(c));
        if (load(&c, cases[i].yaml) != -1 || strcmp(err, cases[i].want) != 0) {
            print_error("yaml:\n%s\nwant: %s\n got: %s\n", cases[i].yaml, cases[i].want, err);
            fail();
        }
        assert_memory_equal(&c, &before, sizeof(c));
        cfg_release(&c);
    }
}

#define CHECK_ERRORS(cases) check_errors(cases, sizeof(cases) / sizeof(cases[0]))

static void test_defaults(void **state)
{
    static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                      2.5,   5,      10,    20,   30,    60,   120, 300,  600 };
    struct cfg c;
    size_t i;

    cfg_init(&c);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8080);
    assert_int_equal(c.nbackends, 0);
    assert_int_equal(c.ntiers, 1);
    assert_string_equal(c.tiers[0].name, "default");
    assert_int_equal(c.nmodels, 0);
    assert_int_equal(c.max_model_labels, 16);
    assert_int_equal(c.max_header_bytes, 32768);
    assert_int_equal(c.max_headers, 100);
    assert_int_equal(c.max_uri_bytes, 8192);
    assert_int_equal(c.max_body_bytes, 16 * 1024 * 1024);
    assert_int_equal(c.header_timeout_ms, 10000);
    assert_int_equal(c.body_timeout_ms, 60000);
    assert_int_equal(c.keepalive_timeout_ms, 75000);
    assert_int_equal(c.max_clients, 4096);
    assert_int_equal(c.connect_timeout_ms, 5000);
    assert_int_equal(c.upstream_header_timeout_ms, 600000);
    assert_int_equal(c.upstream_idle_timeout_ms, 600000);
    assert_int_equal(c.upstream_keepalive, 64);
    assert_int_equal(c.stream_buffer_bytes, 262144);
    assert_int_equal(c.max_event_bytes, 1048576);
    assert_int_equal(c.health_interval_ms, 2000);
    assert_int_equal(c.health_timeout_ms, 1000);
    assert_int_equal(c.stall_ms, 10000);
    assert_int_equal(c.stall_timeout_ms, 120000);
    assert_true(c.usage_injection);
    assert_int_equal(c.nrefusal, 0);
    assert_int_equal(c.nbuckets, sizeof(buckets) / sizeof(buckets[0]));
    for (i = 0; i < c.nbuckets; i++)
        assert_true(c.buckets[i] == buckets[i]);
    assert_string_equal(c.access_log, "-");
    assert_int_equal(c.log_level, 2);
    assert_int_equal(cfg_tier_find(&c, "default"), 0);
    /* the default tier: priority 0, no SLO targets, 64 held for 30 s */
    assert_int_equal(c.tiers[0].priority, 0);
    assert_int_equal(c.tiers[0].slo_ttft_ms, 0);
    assert_int_equal(c.tiers[0].slo_tpot_ms, 0);
    assert_int_equal(c.tiers[0].max_queue, 64);
    assert_int_equal(c.tiers[0].max_wait_ms, 30000);
    assert_int_equal(c.nkeys, 0);
    assert_string_equal(c.tier_header, "");
    /* rate limits: none, and a request without max_tokens reserves 1024 */
    assert_int_equal(c.tiers[0].limits.requests_per_minute, 0);
    assert_int_equal(c.tiers[0].limits.tokens_per_minute, 0);
    assert_int_equal(c.tiers[0].limits.max_concurrent, 0);
    assert_int_equal(c.tiers[0].limits.tokens_per_day, 0);
    assert_int_equal(c.ratelimit_default_max_tokens, 1024);
    /* routing, queue */
    assert_int_equal(c.policy, CFG_POLICY_LEAST_BUSY);
    assert_int_equal(c.scrape_interval_ms, 500);
    assert_int_equal(c.scrape_timeout_ms, 400);
    assert_int_equal(c.scrape_stale_ms, 2000);
    assert_int_equal(c.models_interval_ms, 10000);
    assert_int_equal(c.dns_interval_ms, 10000);
    assert_int_equal(c.max_addresses, 8);
    assert_int_equal(c.default_capacity, 4);
    assert_true(c.speed_aware);
    assert_int_equal(c.naliases, 0);
    assert_true(c.retry);
    assert_int_equal(c.max_waiting, 0);
    assert_true(c.max_cache_ratio == 0.95);
    assert_int_equal(c.max_in_flight, 0);
    assert_int_equal(c.eject_failures, 3);
    assert_int_equal(c.eject_base_ms, 1000);
    assert_int_equal(c.eject_max_ms, 60000);
    assert_int_equal(c.affinity, CFG_AFFINITY_OFF);
    assert_string_equal(c.affinity_header, "X-Session-Id");
    assert_int_equal(c.affinity_prefix_messages, 2);
    assert_true(c.affinity_max_load == 1.25);
    assert_int_equal(c.queue_max, 256);
    cfg_release(&c);
}

static const char full_yaml[] =
    "# every key, none at its default\n"
    "listen: \"[::1]:9090\"\n"
    "backends:\n"
    "  - url: http://10.0.0.1:18081\n"
    "    name: replica-a\n"
    "    flavor: vllm\n"
    "    capacity: 8\n"
    "    models: [small, \"org/Model-7B\"]\n"
    "  - http://gpu-2.local:8000/\n"
    "  - url: HTTP://[fe80::1]\n"
    "models: [small, llama-3-8b, \"org/Model-7B:q4@v1+x\"]\n"
    "max_model_labels: 32\n"
    "tier_header: X-Pitot-Tier\n"
    "tiers:\n"
    "  - name: premium\n"
    "    priority: 10\n"
    "    slo_ttft: 2s\n"
    "    slo_tpot: 100ms\n"
    "    max_queue: 32\n"
    "    max_wait: 5s\n"
    "    limits:\n"
    "      requests_per_minute: 600\n"
    "      tokens_per_minute: 100000\n"
    "      max_concurrent: 16\n"
    "      tokens_per_day: 50000000\n"
    "    keys: [\"sk-premium-1\", \"sk-premium-2\"]\n"
    "    key_sha256: [\"" CHANGE_ME_HEX "\"]\n"
    "  - free\n"
    "  - name: default\n"
    "    priority: -5\n"
    "    max_queue: 0\n"
    "    max_wait: 0\n"
    "    key_sha256:\n"
    "      - \""
    "E2186DBDB1BB4193608605E84F33208765B5693B55EDD4F730A719A100EEEA6E"
    "\"\n"
    "limits:\n"
    "  max_header_bytes: 64k\n"
    "  max_headers: 50\n"
    "  max_uri_bytes: 4096\n"
    "  max_body_bytes: 1g\n"
    "  header_timeout: 5s\n"
    "  body_timeout: 1500ms\n"
    "  keepalive_timeout: 2m\n"
    "  max_clients: 100\n"
    "upstream:\n"
    "  connect_timeout: 250\n"
    "  header_timeout: 20m\n"
    "  idle_timeout: 30s\n"
    "  keepalive: 0\n"
    "  stream_buffer_bytes: 1m\n"
    "  max_event_bytes: 64K\n"
    "health:\n"
    "  interval: 500ms\n"
    "  timeout: 400ms\n"
    "measure:\n"
    "  stall: 3s\n"
    "  stall_timeout: 30s\n"
    "  usage_injection: false\n"
    "  refusal_phrases: [\"i'm sorry, but\", 'i cannot', Je ne peux pas]\n"
    "  buckets:\n"
    "    - 0.01\n"
    "    - 0.1\n"
    "    - 1\n"
    "    - 1e1\n"
    "routing:\n"
    "  policy: round_robin\n"
    "  scrape_interval: 1s\n"
    "  scrape_timeout: 1s\n"
    "  scrape_stale: 5s\n"
    "  models_interval: 1m\n"
    "  dns_interval: 30s\n"
    "  max_addresses: 2\n"
    "  default_capacity: 16\n"
    "  speed_aware: false\n"
    "  aliases: {gpt-4o-mini: small, \"gpt-4o\": org/Model-7B}\n"
    "  retry: false\n"
    "  saturation: {max_waiting: 2, max_cache_ratio: 1, max_in_flight: 100}\n"
    "  eject:\n"
    "    failures: 0\n"
    "    base: 500ms\n"
    "    max: 500ms\n"
    "  affinity:\n"
    "    mode: prefix\n"
    "    header: X-Conversation\n"
    "    prefix_messages: 3\n"
    "    max_load: 1.5\n"
    "queue:\n"
    "  max_depth: 0\n"
    "ratelimit:\n"
    "  default_max_tokens: 4096\n"
    "log:\n"
    "  access_log: /var/log/pitot/access.log\n"
    "  level: debug\n";

static void test_full_config(void **state)
{
    unsigned char d[32];
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(load(&c, full_yaml), 0);
    assert_string_equal(err, "");
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 9090);

    assert_int_equal(c.nbackends, 3);
    assert_string_equal(c.backends[0].name, "replica-a");
    assert_string_equal(c.backends[0].host, "10.0.0.1");
    assert_int_equal(c.backends[0].port, 18081);
    assert_string_equal(c.backends[0].url, "http://10.0.0.1:18081");
    assert_int_equal(c.backends[0].flavor, CFG_FLAVOR_VLLM);
    assert_int_equal(c.backends[0].capacity, 8);
    assert_int_equal(c.backends[0].nmodels, 2);
    assert_string_equal(c.backends[0].models[0], "small");
    assert_string_equal(c.backends[0].models[1], "org/Model-7B");
    assert_int_equal(c.backends[1].flavor, CFG_FLAVOR_AUTO);
    assert_int_equal(c.backends[1].capacity, 0);
    assert_int_equal(c.backends[1].nmodels, 0);
    assert_string_equal(c.backends[1].name, "gpu-2.local:8000");
    assert_string_equal(c.backends[1].host, "gpu-2.local");
    assert_int_equal(c.backends[1].port, 8000);
    assert_string_equal(c.backends[1].url, "http://gpu-2.local:8000");
    assert_string_equal(c.backends[2].name, "[fe80::1]:80");
    assert_string_equal(c.backends[2].host, "fe80::1");
    assert_int_equal(c.backends[2].port, 80);
    assert_string_equal(c.backends[2].url, "http://[fe80::1]:80");

    assert_int_equal(c.nmodels, 3);
    assert_string_equal(c.models[0], "small");
    assert_string_equal(c.models[1], "llama-3-8b");
    assert_string_equal(c.models[2], "org/Model-7B:q4@v1+x");
    assert_int_equal(c.max_model_labels, 32);

    /* "default" names tiers[0]; it is not added again */
    assert_int_equal(c.ntiers, 3);
    assert_string_equal(c.tiers[0].name, "default");
    assert_string_equal(c.tiers[1].name, "premium");
    assert_string_equal(c.tiers[2].name, "free");
    assert_int_equal(cfg_tier_find(&c, "free"), 2);
    assert_int_equal(cfg_tier_find(&c, "premium"), 1);
    assert_int_equal(cfg_tier_find(&c, "gold"), -1);
    assert_int_equal(c.tiers[1].priority, 10);
    assert_int_equal(c.tiers[1].slo_ttft_ms, 2000);
    assert_int_equal(c.tiers[1].slo_tpot_ms, 100);
    assert_int_equal(c.tiers[1].max_queue, 32);
    assert_int_equal(c.tiers[1].max_wait_ms, 5000);
    assert_int_equal(c.tiers[1].limits.requests_per_minute, 600);
    assert_int_equal(c.tiers[1].limits.tokens_per_minute, 100000);
    assert_int_equal(c.tiers[1].limits.max_concurrent, 16);
    assert_int_equal(c.tiers[1].limits.tokens_per_day, 50000000);
    assert_int_equal(c.ratelimit_default_max_tokens, 4096);
    /* a tier given by name alone has the defaults */
    assert_int_equal(c.tiers[2].priority, 0);
    assert_int_equal(c.tiers[2].limits.requests_per_minute, 0);
    assert_int_equal(c.tiers[2].limits.tokens_per_day, 0);
    assert_int_equal(c.tiers[2].slo_ttft_ms, 0);
    assert_int_equal(c.tiers[2].max_queue, 64);
    assert_int_equal(c.tiers[2].max_wait_ms, 30000);
    /* "- name: default" sets the default tier's fields */
    assert_int_equal(c.tiers[0].priority, -5);
    assert_int_equal(c.tiers[0].max_queue, 0);
    assert_int_equal(c.tiers[0].max_wait_ms, 0);
    assert_string_equal(c.tier_header, "X-Pitot-Tier");
    /* keys in file order, as digests with their tier */
    assert_int_equal(c.nkeys, 4);
    sha256("sk-premium-1", d);
    assert_memory_equal(c.keys[0].sha256, d, 32);
    sha256("sk-premium-2", d);
    assert_memory_equal(c.keys[1].sha256, d, 32);
    sha256("change-me", d);
    assert_memory_equal(c.keys[2].sha256, d, 32);
    assert_int_equal(c.key_tier[0], 1);
    assert_int_equal(c.key_tier[1], 1);
    assert_int_equal(c.key_tier[2], 1);
    d[31] = 0x6e; /* upper-case hex, one digit off */
    assert_memory_equal(c.keys[3].sha256, d, 32);
    assert_int_equal(c.key_tier[3], 0);
    /* plain strings and digests are named "<tier>-<n>", keys: first */
    assert_string_equal(c.keys[0].name, "premium-1");
    assert_string_equal(c.keys[1].name, "premium-2");
    assert_string_equal(c.keys[2].name, "premium-3");
    assert_string_equal(c.keys[3].name, "default-1");
    assert_int_equal(c.keys[0].limits.requests_per_minute, 0);
    assert_int_equal(c.keys[2].limits.tokens_per_minute, 0);

    assert_int_equal(c.max_header_bytes, 65536);
    assert_int_equal(c.max_headers, 50);
    assert_int_equal(c.max_uri_bytes, 4096);
    assert_int_equal(c.max_body_bytes, 1024 * 1024 * 1024);
    assert_int_equal(c.header_timeout_ms, 5000);
    assert_int_equal(c.body_timeout_ms, 1500);
    assert_int_equal(c.keepalive_timeout_ms, 120000);
    assert_int_equal(c.max_clients, 100);

    assert_int_equal(c.connect_timeout_ms, 250);
    assert_int_equal(c.upstream_header_timeout_ms, 1200000);
    assert_int_equal(c.upstream_idle_timeout_ms, 30000);
    assert_int_equal(c.upstream_keepalive, 0);
    assert_int_equal(c.stream_buffer_bytes, 1048576);
    assert_int_equal(c.max_event_bytes, 65536);
    assert_int_equal(c.health_interval_ms, 500);
    assert_int_equal(c.health_timeout_ms, 400);

    assert_int_equal(c.stall_ms, 3000);
    assert_int_equal(c.stall_timeout_ms, 30000);
    assert_false(c.usage_injection);
    assert_int_equal(c.nrefusal, 3);
    assert_string_equal(c.refusal_phrases[0], "i'm sorry, but");
    assert_string_equal(c.refusal_phrases[1], "i cannot");
    assert_string_equal(c.refusal_phrases[2], "Je ne peux pas");
    assert_null(c.refusal_phrases[3]);
    assert_int_equal(c.nbuckets, 4);
    assert_true(c.buckets[0] == 0.01);
    assert_true(c.buckets[1] == 0.1);
    assert_true(c.buckets[2] == 1.0);
    assert_true(c.buckets[3] == 10.0);

    assert_int_equal(c.policy, CFG_POLICY_ROUND_ROBIN);
    assert_int_equal(c.scrape_interval_ms, 1000);
    assert_int_equal(c.scrape_timeout_ms, 1000);
    assert_int_equal(c.scrape_stale_ms, 5000);
    assert_int_equal(c.models_interval_ms, 60000);
    assert_int_equal(c.dns_interval_ms, 30000);
    assert_int_equal(c.max_addresses, 2);
    assert_int_equal(c.default_capacity, 16);
    assert_false(c.speed_aware);
    assert_int_equal(c.naliases, 2);
    assert_string_equal(c.aliases[0].from, "gpt-4o-mini");
    assert_string_equal(c.aliases[0].to, "small");
    assert_string_equal(c.aliases[1].from, "gpt-4o");
    assert_string_equal(c.aliases[1].to, "org/Model-7B");
    assert_false(c.retry);
    assert_int_equal(c.max_waiting, 2);
    assert_true(c.max_cache_ratio == 1.0);
    assert_int_equal(c.max_in_flight, 100);
    assert_int_equal(c.eject_failures, 0);
    assert_int_equal(c.eject_base_ms, 500);
    assert_int_equal(c.eject_max_ms, 500);
    assert_int_equal(c.affinity, CFG_AFFINITY_PREFIX);
    assert_string_equal(c.affinity_header, "X-Conversation");
    assert_int_equal(c.affinity_prefix_messages, 3);
    assert_true(c.affinity_max_load == 1.5);
    assert_int_equal(c.queue_max, 0);

    assert_string_equal(c.access_log, "/var/log/pitot/access.log");
    assert_int_equal(c.log_level, 3);

    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    cfg_release(&c);
    assert_int_equal(c.nrefusal, 0);
    assert_null(c.refusal_phrases[0]);
}

/* Files without keys change nothing; null sections and lists are empty. */
static void test_empty_files(void **state)
{
    static const char *const empty[] = {
        "",        "\n\n", "# only a comment\n", "---\n",
        "--- ~\n", "~\n",  "---\n...\n",         "limits:\nupstream: ~\nhealth: {}\nlog: null\n",
    };
    struct cfg c, d;
    size_t i;

    for (i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
        cfg_init(&c);
        cfg_init(&d);
        assert_int_equal(load(&c, empty[i]), 0);
        assert_memory_equal(&c, &d, sizeof(c));
    }

    /* A null list empties the list it replaces. */
    cfg_init(&c);
    assert_int_equal(cfg_backend_add(&c, "http://a:1", NULL, err, sizeof(err)), 0);
    assert_int_equal(load(&c, "backends:\nmodels: ~\n"), 0);
    assert_int_equal(c.nbackends, 0);
}

/* A list in the file replaces the current one; absent keys keep theirs. */
static void test_lists_replace(void **state)
{
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(cfg_backend_add(&c, "http://cli:1", "cli", err, sizeof(err)), 0);
    assert_int_equal(load(&c, "listen: 9000\n"), 0);
    assert_int_equal(c.nbackends, 1);
    assert_string_equal(c.backends[0].name, "cli");
    assert_int_equal(load(&c, "backends: [http://a:1, http://b:2]\ntiers: [x, y]\n"), 0);
    assert_int_equal(c.nbackends, 2);
    assert_string_equal(c.backends[1].name, "b:2");
    assert_int_equal(c.ntiers, 3);
    /* a second file replaces tiers again; "default" stays first */
    assert_int_equal(load(&c, "tiers: [z]\nmeasure:\n  buckets: [5]\n"), 0);
    assert_int_equal(c.ntiers, 2);
    assert_string_equal(c.tiers[0].name, "default");
    assert_string_equal(c.tiers[1].name, "z");
    assert_int_equal(c.nbuckets, 1);
    assert_true(c.buckets[0] == 5.0);
    /* backends named like an earlier file's are fine: the list is new */
    assert_int_equal(load(&c, "backends: [http://b:2]\n"), 0);
    assert_int_equal(c.nbackends, 1);
    cfg_release(&c);
}

static void test_error_unknown_key(void **state)
{
    static const struct err_case cases[] = {
        { "foo: 1\n", "t.yaml:1: unknown key 'foo' at top level" },
        { "listen: 1\nlimits:\n  max_headers: 5\n  foo: 1\n",
          "t.yaml:4: unknown key 'foo' in limits" },
        { "max_clients: 5\n",
          "t.yaml:1: unknown key 'max_clients' at top level (did you mean limits.max_clients?)" },
        { "health:\n  interval: 1s\n  stall: 1s\n",
          "t.yaml:3: unknown key 'stall' in health (did you mean measure.stall?)" },
        { "log:\n  Level: info\n", "t.yaml:2: unknown key 'Level' in log" },
        { "backends:\n  - url: http://a:1\n    weight: 2\n",
          "t.yaml:3: unknown key 'weight' in backends" },
        { "tiers:\n  - name: p\n    rate: 5\n", "t.yaml:3: unknown key 'rate' in tiers" },
        { "? [a]\n: 1\n", "t.yaml:1: keys must be scalars (at top level)" },
        { "upstream:\n  {a: 1}: 2\n", "t.yaml:2: keys must be scalars (in upstream)" },
    };
    CHECK_ERRORS(cases);
}

static void test_error_type(void **state)
{
    static const struct err_case cases[] = {
        { "limits: 5\n", "t.yaml:1: limits: expected a mapping" },
        { "listen: 1\nmeasure:\n  - stall\n", "t.yaml:3: measure: expected a mapping" },
        { "backends: http://a:1\n", "t.yaml:1: backends: expected a sequence" },
        { "models: {a: 1}\n", "t.yaml:1: models: expected a sequence" },
        { "measure:\n  refusal_phrases: i cannot\n",
          "t.yaml:2: measure.refusal_phrases: expected a sequence" },
        { "listen: [a]\n", "t.yaml:1: listen: expected a scalar" },
        { "limits:\n  max_headers: {a: 1}\n", "t.yaml:2: limits.max_headers: expected a scalar" },
        { "log:\n  level: [info]\n", "t.yaml:2: log.level: expected a scalar" },
        { "models:\n  - a\n  - [b]\n", "t.yaml:3: models: expected a scalar" },
        { "measure:\n  buckets:\n    - 1\n    - [2]\n",
          "t.yaml:4: measure.buckets: expected a scalar" },
        { "backends:\n  - [http://a:1]\n",
          "t.yaml:2: backends: expected a URL or a mapping with url:" },
        { "backends:\n  - url: [http://a:1]\n", "t.yaml:2: backends.url: expected a scalar" },
        { "backends:\n  - name: a\n", "t.yaml:2: backends: entry without url" },
        { "tiers:\n  - [p]\n", "t.yaml:2: tiers: expected a name or a mapping with name:" },
        { "tiers:\n  - {}\n", "t.yaml:2: tiers: entry without name" },
        { "[1, 2]\n", "t.yaml:1: expected a mapping at top level" },
        { "\n\njust text\n", "t.yaml:3: expected a mapping at top level" },
        /* a key without a value */
        { "listen:\n", "t.yaml:1: listen: missing value" },
        { "limits:\n\n  max_headers:\n", "t.yaml:3: limits.max_headers: missing value" },
        { "backends:\n  -\n", "t.yaml:2: backends.url: missing value" },
        { "log:\n  access_log: ~\n", "t.yaml:2: log.access_log: missing value" },
        { "log:\n  level: \"in\\0fo\"\n", "t.yaml:2: log.level: NUL byte in value" },
    };
    CHECK_ERRORS(cases);
}

static void test_error_bad_values(void **state)
{
    static const struct err_case cases[] = {
        { "limits:\n  max_headers: 10x\n", "t.yaml:2: limits.max_headers: bad number '10x'" },
        { "limits:\n  max_headers: -1\n", "t.yaml:2: limits.max_headers: bad number '-1'" },
        { "limits:\n  max_headers: 0x10\n", "t.yaml:2: limits.max_headers: bad number '0x10'" },
        { "max_model_labels: 1.5\n", "t.yaml:1: max_model_labels: bad number '1.5'" },
        { "limits:\n  header_timeout: 10h\n",
          "t.yaml:2: limits.header_timeout: bad duration '10h' (milliseconds, or with an ms, s "
          "or m suffix: 10s)" },
        { "upstream:\n  idle_timeout: 1.5s\n",
          "t.yaml:2: upstream.idle_timeout: bad duration '1.5s' (milliseconds, or with an ms, s or "
          "m suffix: 10s)" },
        { "health:\n  timeout: 10 s\n",
          "t.yaml:2: health.timeout: bad duration '10 s' (milliseconds, or with an ms, s or m "
          "suffix: 10s)" },
        { "upstream:\n  stream_buffer_bytes: 256kb\n",
          "t.yaml:2: upstream.stream_buffer_bytes: bad size '256kb' (bytes, or with a k, m or g "
          "suffix: 256k)" },
        { "limits:\n  max_body_bytes: m\n",
          "t.yaml:2: limits.max_body_bytes: bad size 'm' (bytes, or with a k, m or g suffix: "
          "256k)" },
        { "measure:\n  usage_injection: maybe\n",
          "t.yaml:2: measure.usage_injection: bad boolean 'maybe' (true or false)" },
        { "measure:\n  usage_injection: 1\n",
          "t.yaml:2: measure.usage_injection: bad boolean '1' (true or false)" },
        { "measure:\n  buckets: [0.1, abc]\n", "t.yaml:2: measure.buckets: bad number 'abc'" },
        { "measure:\n  buckets:\n    - .inf\n", "t.yaml:3: measure.buckets: bad number '.inf'" },
        { "measure:\n  buckets:\n    - 1e999\n", "t.yaml:3: measure.buckets: bad number '1e999'" },
        { "measure:\n  buckets: [0x10]\n", "t.yaml:2: measure.buckets: bad number '0x10'" },
        { "log:\n  level: verbose\n",
          "t.yaml:2: log.level: bad level 'verbose' (error, warn, info or debug)" },
        { "log:\n  format: xml\n", "t.yaml:2: log.format: bad format 'xml' (text or json)" },
        { "log:\n  format: JSON\n", "t.yaml:2: log.format: bad format 'JSON' (text or json)" },
        { "log:\n  level: info\n  format: [json]\n", "t.yaml:3: log.format: expected a scalar" },
    };
    CHECK_ERRORS(cases);
}

static void test_error_range(void **state)
{
    static const struct err_case cases[] = {
        { "limits:\n  max_headers: 0\n",
          "t.yaml:2: limits.max_headers: 0 is out of range (1..128)" },
        /* not silently capped: the HTTP parser holds at most 128 fields */
        { "limits:\n  max_headers: 129\n",
          "t.yaml:2: limits.max_headers: 129 is out of range (1..128)" },
        { "limits:\n  max_clients: 99999999999999999999999\n",
          "t.yaml:2: limits.max_clients: 99999999999999999999999 is out of range (1..1000000)" },
        { "limits:\n  header_timeout: 0\n",
          "t.yaml:2: limits.header_timeout: 0 is out of range (1ms..1440m)" },
        { "limits:\n  body_timeout: 1441m\n",
          "t.yaml:2: limits.body_timeout: 1441m is out of range (1ms..1440m)" },
        { "health:\n  interval: 0s\n",
          "t.yaml:2: health.interval: 0s is out of range (1ms..1440m)" },
        { "limits:\n  max_header_bytes: 100\n",
          "t.yaml:2: limits.max_header_bytes: 100 is out of range (1k..16m)" },
        { "limits:\n  max_body_bytes: 2g\n",
          "t.yaml:2: limits.max_body_bytes: 2g is out of range (1..1g)" },
        { "limits:\n  max_body_bytes: 0\n",
          "t.yaml:2: limits.max_body_bytes: 0 is out of range (1..1g)" },
        { "upstream:\n  stream_buffer_bytes: 99999999999999999999g\n",
          "t.yaml:2: upstream.stream_buffer_bytes: 99999999999999999999g is out of range "
          "(1k..256m)" },
        { "upstream:\n  keepalive: 1025\n",
          "t.yaml:2: upstream.keepalive: 1025 is out of range (0..1024)" },
        { "max_model_labels: 5000\n",
          "t.yaml:1: max_model_labels: 5000 is out of range (0..1024)" },
        { "measure:\n  buckets: [0]\n",
          "t.yaml:2: measure.buckets: 0 is out of range (seconds, above 0, at most 86400)" },
        { "measure:\n  buckets: [1, 100000]\n",
          "t.yaml:2: measure.buckets: 100000 is out of range (seconds, above 0, at most 86400)" },
        { "listen: 127.0.0.1:70000\n",
          "t.yaml:1: bad listen address '127.0.0.1:70000': port out of range (0-65535)" },
        { "listen: 65536\n", "t.yaml:1: bad listen address '65536': port out of range (0-65535)" },
        { "backends: [http://a:0]\n",
          "t.yaml:1: bad backend URL 'http://a:0': port out of range (1-65535)" },
        { "backends:\n  - http://a:65536\n",
          "t.yaml:2: bad backend URL 'http://a:65536': port out of range (1-65535)" },
    };
    CHECK_ERRORS(cases);
}

/* shutdown.drain_timeout: a duration, 0 allowed (exit at once). */
static void test_drain_timeout(void **state)
{
    static const struct err_case cases[] = {
        { "shutdown:\n  drain_timeout: 1441m\n",
          "t.yaml:2: shutdown.drain_timeout: 1441m is out of range (0ms..1440m)" },
        { "shutdown:\n  drain_timeout: -1s\n",
          "t.yaml:2: shutdown.drain_timeout: bad duration '-1s' (milliseconds, or with an ms, s or "
          "m suffix: 10s)" },
        { "shutdown:\n  drain_timeout: soon\n",
          "t.yaml:2: shutdown.drain_timeout: bad duration 'soon' (milliseconds, or with an ms, s "
          "or m suffix: 10s)" },
        { "shutdown:\n  grace: 10s\n", "t.yaml:2: unknown key 'grace' in shutdown" },
        { "shutdown: 30s\n", "t.yaml:1: shutdown: expected a mapping" },
    };
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(c.drain_timeout_ms, 30000);
    assert_int_equal(load(&c, "shutdown:\n  drain_timeout: 1500ms\n"), 0);
    assert_int_equal(c.drain_timeout_ms, 1500);
    assert_int_equal(load(&c, "shutdown:\n  drain_timeout: 2m\n"), 0);
    assert_int_equal(c.drain_timeout_ms, 120000);
    assert_int_equal(load(&c, "shutdown:\n  drain_timeout: 0\n"), 0);
    assert_int_equal(c.drain_timeout_ms, 0);
    cfg_release(&c);
    CHECK_ERRORS(cases);
    (void)state;
}

static void test_error_backend_url(void **state)
{
    static const struct err_case cases[] = {
        { "backends:\n  - https://a:1/x\n",
          "t.yaml:2: bad backend URL 'https://a:1/x': a path is not allowed" },
        { "backends:\n  - url: http://a:1/v1\n",
          "t.yaml:2: bad backend URL 'http://a:1/v1': a path is not allowed" },
        { "backends:\n  - http://a:1/?x=1\n",
          "t.yaml:2: bad backend URL 'http://a:1/?x=1': a query is not allowed" },
        { "backends:\n  - http://a:1?x\n",
          "t.yaml:2: bad backend URL 'http://a:1?x': a query is not allowed" },
        { "backends:\n  - http://a:1#f\n",
          "t.yaml:2: bad backend URL 'http://a:1#f': a fragment is not allowed" },
        { "backends:\n  - http://u:p@a:1\n",
          "t.yaml:2: bad backend URL 'http://u:p@a:1': userinfo (user@) is not allowed" },
        { "backends:\n  - http://a:x\n", "t.yaml:2: bad backend URL 'http://a:x': bad port" },
        { "backends:\n  - \"http://a:\"\n", "t.yaml:2: bad backend URL 'http://a:': bad port" },
        /* unquoted, that is a mapping { "http://a": null } */
        { "backends:\n  - http://a:\n", "t.yaml:2: unknown key 'http://a' in backends" },
        { "backends:\n  - http://a:123456\n",
          "t.yaml:2: bad backend URL 'http://a:123456': bad port" },
        { "backends:\n  - http://:80\n", "t.yaml:2: bad backend URL 'http://:80': empty host" },
        { "backends:\n  - http://\n", "t.yaml:2: bad backend URL 'http://': empty host" },
        { "backends:\n  - http:///\n", "t.yaml:2: bad backend URL 'http:///': empty host" },
        { "backends:\n  - http://[]:80\n", "t.yaml:2: bad backend URL 'http://[]:80': empty host" },
        { "backends:\n  - ftp://a\n",
          "t.yaml:2: bad backend URL 'ftp://a': only http:// and https:// are supported" },
        { "backends:\n  - a:1\n",
          "t.yaml:2: bad backend URL 'a:1': expected http[s]://host[:port]" },
        { "backends:\n  - http://::1:80\n",
          "t.yaml:2: bad backend URL 'http://::1:80': an IPv6 address needs brackets: [::1]:port" },
        { "backends:\n  - http://[::1\n",
          "t.yaml:2: bad backend URL 'http://[::1': missing ']' after IPv6 address" },
        { "backends:\n  - http://[::1]x\n",
          "t.yaml:2: bad backend URL 'http://[::1]x': unexpected characters after ']'" },
        { "backends:\n  - http://[zz]:1\n",
          "t.yaml:2: bad backend URL 'http://[zz]:1': bad IPv6 address" },
        { "backends:\n  - \"http://a b:1\"\n",
          "t.yaml:2: bad backend URL 'http://a b:1': host has characters outside [A-Za-z0-9._-]" },
    };
    CHECK_ERRORS(cases);
}

/* head, then n lines "<item>1" .. "<item>n". */
static char *make_list(const char *head, const char *item, int n)
{
    size_t cap = strlen(head) + (size_t)n * 64 + 1, len;
    char *s = malloc(cap);
    int i;

    assert_non_null(s);
    len = (size_t)snprintf(s, cap, "%s", head);
    for (i = 1; i <= n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%d\n", item, i);
    return s;
}

static void test_error_too_many(void **state)
{
    static const struct {
        const char *head;
        const char *item;
        int max; /* items accepted */
        int head_lines;
        const char *msg;
    } lists[] = {
        { "backends:\n", "  - http://h:", 64, 1, "too many backends (at most 64)" },
        { "tiers:\n", "  - name: t", 15, 1, "too many tiers (at most 16 with default)" },
        { "models:\n", "  - m", 64, 1, "too many models (at most 64)" },
        { "listen: 1\nmeasure:\n  buckets:\n", "    - ", 40, 3, "too many buckets (at most 40)" },
        { "measure:\n  refusal_phrases:\n", "    - phrase ", 64, 2,
          "too many refusal phrases (at most 64)" },
        { "backends:\n  - url: http://a:1\n    models:\n", "      - m", 16, 3,
          "backends.models: too many models (at most 16)" },
        { "tiers:\n  - name: t\n    keys:\n", "      - key-", 256, 3,
          "too many API keys (at most 256)" },
    };
    struct cfg c;
    char want[128];
    size_t i;

    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        char *ok = make_list(lists[i].head, lists[i].item, lists[i].max);
        char *bad = make_list(lists[i].head, lists[i].item, lists[i].max + 1);

        cfg_init(&c);
        if (load(&c, ok) != 0) {
            print_error("%s\n", err);
            fail();
        }
        cfg_release(&c);
        cfg_init(&c);
        assert_int_equal(load(&c, bad), -1);
        snprintf(want, sizeof(want), "t.yaml:%d: %s", lists[i].head_lines + lists[i].max + 1,
                 lists[i].msg);
        assert_string_equal(err, want);
        cfg_release(&c);
        free(ok);
        free(bad);
    }
}

static void test_error_duplicates(void **state)
{
    static const struct err_case cases[] = {
        { "listen: 1\nlisten: 2\n", "t.yaml:2: duplicate key 'listen' at top level" },
        { "limits:\n  max_headers: 1\n  max_uri_bytes: 99\n  max_headers: 2\n",
          "t.yaml:4: duplicate key 'max_headers' in limits" },
        { "measure: {stall: 1s, stall: 2s}\n", "t.yaml:1: duplicate key 'stall' in measure" },
        { "backends:\n  - url: http://a:1\n    url: http://a:2\n",
          "t.yaml:3: duplicate key 'url' in backends" },
        { "tiers:\n  - name: a\n    name: b\n", "t.yaml:3: duplicate key 'name' in tiers" },
        { "backends:\n  - http://a:1\n  - url: http://b:1\n    name: a:1\n",
          "t.yaml:4: duplicate backend name 'a:1'" },
        { "backends:\n  - http://a:1\n  - http://a:1/\n",
          "t.yaml:3: duplicate backend name 'a:1'" },
        { "tiers: [a, b, a]\n", "t.yaml:1: duplicate tier 'a'" },
        { "tiers:\n  - default\n  - name: default\n", "t.yaml:3: duplicate tier 'default'" },
        { "models:\n  - a\n  - a\n", "t.yaml:3: duplicate model 'a'" },
    };
    CHECK_ERRORS(cases);
}

/* tiers replace the default tier's fields and every key too; the other
 * routing lists replace theirs; tier_header "" turns it off. */
static void test_tiers_replace(void **state)
{
    unsigned char d[32];
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(load(&c, "tier_header: X-Tier\n"
                              "tiers:\n"
                              "  - name: default\n"
                              "    priority: -1000\n"
                              "    slo_ttft: 1s\n"
                              "    keys: [sk-default]\n"
                              "  - name: gold\n"
                              "    priority: 1000\n"
                              "    keys: [sk-gold]\n"
                              "routing:\n"
                              "  aliases: {a: b}\n"),
                     0);
    assert_int_equal(c.ntiers, 2);
    assert_int_equal(c.tiers[0].priority, -1000);
    assert_int_equal(c.tiers[0].slo_ttft_ms, 1000);
    assert_int_equal(c.tiers[1].priority, 1000);
    assert_int_equal(c.nkeys, 2);
    assert_int_equal(c.key_tier[0], 0);
    assert_int_equal(c.key_tier[1], 1);
    sha256("sk-gold", d);
    assert_memory_equal(c.keys[1].sha256, d, 32);

    /* a file without these keys keeps them */
    assert_int_equal(load(&c, "routing:\n  retry: false\n"), 0);
    assert_int_equal(c.nkeys, 2);
    assert_int_equal(c.naliases, 1);
    assert_string_equal(c.tier_header, "X-Tier");

    /* a new list: the default tier is back to its defaults, keys are gone */
    assert_int_equal(load(&c, "tiers: [silver]\nrouting:\n  aliases: {c: d, e: d}\n"), 0);
    assert_int_equal(c.ntiers, 2);
    assert_string_equal(c.tiers[1].name, "silver");
    assert_int_equal(c.tiers[0].priority, 0);
    assert_int_equal(c.tiers[0].slo_ttft_ms, 0);
    assert_int_equal(c.tiers[0].max_queue, 64);
    assert_int_equal(c.nkeys, 0);
    assert_int_equal(c.naliases, 2);
    assert_string_equal(c.aliases[0].from, "c");
    assert_string_equal(c.aliases[1].from, "e");

    /* keys reused in a new list are not duplicates of the old one */
    assert_int_equal(load(&c, "tiers:\n  - name: gold\n    keys: [sk-gold]\n"), 0);
    assert_int_equal(c.nkeys, 1);
    assert_int_equal(c.key_tier[0], 1);

    /* null and empty lists empty them */
    assert_int_equal(load(&c, "tiers:\nrouting:\n  aliases:\ntier_header: \"\"\n"), 0);
    assert_int_equal(c.ntiers, 1);
    assert_int_equal(c.nkeys, 0);
    assert_int_equal(c.naliases, 0);
    assert_string_equal(c.tier_header, "");
    assert_int_equal(load(&c, "routing:\n  aliases: {a: b}\n"), 0);
    assert_int_equal(load(&c, "routing:\n  aliases: {}\n"), 0);
    assert_int_equal(c.naliases, 0);
    /* tier_header needs a value: "" is off, nothing is a mistake */
    assert_int_equal(load(&c, "tier_header:\n"), -1);
    assert_string_equal(err, "t.yaml:1: tier_header: missing value");

    /* the enum and header spellings accepted */
    assert_int_equal(load(&c, "routing:\n  policy: least_in_flight\n"
                              "  affinity: {mode: header, header: \"x-user_id.v2~!#$%&'*+^`|\"}\n"
                              "backends:\n  - {url: http://a:1, flavor: llamacpp}\n"
                              "  - {url: http://b:1, flavor: tgi}\n"
                              "  - {url: http://c:1, flavor: sglang}\n"
                              "  - {url: http://d:1, flavor: openai}\n"
                              "  - {url: http://e:1, flavor: auto, models: []}\n"),
                     0);
    assert_int_equal(c.policy, CFG_POLICY_LEAST_IN_FLIGHT);
    assert_int_equal(c.affinity, CFG_AFFINITY_HEADER);
    assert_string_equal(c.affinity_header, "x-user_id.v2~!#$%&'*+^`|");
    assert_int_equal(c.backends[0].flavor, CFG_FLAVOR_LLAMACPP);
    assert_int_equal(c.backends[1].flavor, CFG_FLAVOR_TGI);
    assert_int_equal(c.backends[2].flavor, CFG_FLAVOR_SGLANG);
    assert_int_equal(c.backends[3].flavor, CFG_FLAVOR_OPENAI);
    assert_int_equal(c.backends[4].flavor, CFG_FLAVOR_AUTO);
    assert_int_equal(c.backends[4].nmodels, 0);
    assert_int_equal(load(&c, "routing:\n  affinity: {mode: user}\n"), 0);
    assert_int_equal(c.affinity, CFG_AFFINITY_USER);
    assert_int_equal(load(&c, "routing:\n  affinity: {mode: off}\n"), 0);
    assert_int_equal(c.affinity, CFG_AFFINITY_OFF);
    assert_int_equal(c.unknown_model, CFG_UNKNOWN_AUTO);
    assert_int_equal(load(&c, "routing:\n  unknown_model: reject\n"), 0);
    assert_int_equal(c.unknown_model, CFG_UNKNOWN_REJECT);
    assert_int_equal(load(&c, "routing:\n  unknown_model: any\n"), 0);
    assert_int_equal(c.unknown_model, CFG_UNKNOWN_ANY);
    cfg_release(&c);
}

static void test_error_routing(void **state)
{
    static const struct err_case cases[] = {
        { "routing:\n  unknown_model: strict\n",
          "t.yaml:2: routing.unknown_model: bad unknown_model 'strict' (auto, any or reject)" },
        { "routing:\n  policy: fastest\n",
          "t.yaml:2: routing.policy: bad policy 'fastest' (least_busy, least_in_flight or "
          "round_robin)" },
        { "routing:\n  policy: Least_Busy\n",
          "t.yaml:2: routing.policy: bad policy 'Least_Busy' (least_busy, least_in_flight or "
          "round_robin)" },
        { "routing:\n  affinity:\n    mode: cookie\n",
          "t.yaml:3: routing.affinity.mode: bad mode 'cookie' (off, header, user or prefix)" },
        { "routing:\n  affinity: {mode: false}\n",
          "t.yaml:2: routing.affinity.mode: bad mode 'false' (off, header, user or prefix)" },
        { "routing:\n  scrape_interval: 0\n",
          "t.yaml:2: routing.scrape_interval: 0 is out of range (1ms..1440m)" },
        { "routing:\n  scrape_timeout: 2h\n",
          "t.yaml:2: routing.scrape_timeout: bad duration '2h' (milliseconds, or with an ms, s or "
          "m suffix: 10s)" },
        { "routing:\n  scrape_stale: 1441m\n",
          "t.yaml:2: routing.scrape_stale: 1441m is out of range (1ms..1440m)" },
        { "routing:\n  models_interval: 0s\n",
          "t.yaml:2: routing.models_interval: 0s is out of range (1ms..1440m)" },
        { "routing:\n  dns_interval: -1\n",
          "t.yaml:2: routing.dns_interval: bad duration '-1' (milliseconds, or with an ms, s or m "
          "suffix: 10s)" },
        { "routing:\n  max_addresses: 65\n",
          "t.yaml:2: routing.max_addresses: 65 is out of range (1..64)" },
        { "routing:\n  max_addresses: 0\n",
          "t.yaml:2: routing.max_addresses: 0 is out of range (1..64)" },
        { "routing:\n  default_capacity: 0\n",
          "t.yaml:2: routing.default_capacity: 0 is out of range (1..65536)" },
        { "routing:\n  retry: sometimes\n",
          "t.yaml:2: routing.retry: bad boolean 'sometimes' (true or false)" },
        { "routing:\n  speed_aware: 1\n",
          "t.yaml:2: routing.speed_aware: bad boolean '1' (true or false)" },
        { "routing:\n  saturation:\n    max_cache_ratio: 0\n",
          "t.yaml:3: routing.saturation.max_cache_ratio: 0 is out of range (above 0, at most 1)" },
        { "routing:\n  saturation:\n    max_cache_ratio: 1.01\n",
          "t.yaml:3: routing.saturation.max_cache_ratio: 1.01 is out of range (above 0, at most "
          "1)" },
        { "routing:\n  saturation:\n    max_cache_ratio: 95%\n",
          "t.yaml:3: routing.saturation.max_cache_ratio: bad number '95%'" },
        { "routing:\n  saturation:\n    max_cache_ratio: .nan\n",
          "t.yaml:3: routing.saturation.max_cache_ratio: bad number '.nan'" },
        { "routing:\n  saturation: {max_waiting: 1000001}\n",
          "t.yaml:2: routing.saturation.max_waiting: 1000001 is out of range (0..1000000)" },
        { "routing:\n  saturation: {max_in_flight: x}\n",
          "t.yaml:2: routing.saturation.max_in_flight: bad number 'x'" },
        { "routing:\n  eject:\n    failures: 1001\n",
          "t.yaml:3: routing.eject.failures: 1001 is out of range (0..1000)" },
        { "routing:\n  eject: {base: 0}\n",
          "t.yaml:2: routing.eject.base: 0 is out of range (1ms..1440m)" },
        { "routing:\n  eject: {max: 0ms}\n",
          "t.yaml:2: routing.eject.max: 0ms is out of range (1ms..1440m)" },
        { "routing:\n  affinity: {max_load: 0.99}\n",
          "t.yaml:2: routing.affinity.max_load: 0.99 is out of range (1..100)" },
        { "routing:\n  affinity: {max_load: 101}\n",
          "t.yaml:2: routing.affinity.max_load: 101 is out of range (1..100)" },
        { "routing:\n  affinity:\n    prefix_messages: 0\n",
          "t.yaml:3: routing.affinity.prefix_messages: 0 is out of range (1..64)" },
        { "routing:\n  affinity:\n    header: \"X Session\"\n",
          "t.yaml:3: routing.affinity.header: 'X Session' is not a header name (letters, digits "
          "and !#$%&'*+-.^_`|~)" },
        { "routing:\n  affinity:\n    header: \"\"\n",
          "t.yaml:3: routing.affinity.header: empty header name" },
        { "routing:\n  affinity:\n    header:\n",
          "t.yaml:3: routing.affinity.header: missing value" },
        { "tier_header: \"X-Tier:\"\n",
          "t.yaml:1: tier_header: 'X-Tier:' is not a header name (letters, digits and "
          "!#$%&'*+-.^_`|~)" },
        { "tier_header: [X-Tier]\n", "t.yaml:1: tier_header: expected a scalar" },
        { "tier_header: X-01234567890123456789012345678901234567890123456789012345678901\n",
          "t.yaml:1: tier_header: header name longer than 63 characters" },
        { "queue:\n  max_depth: 1000001\n",
          "t.yaml:2: queue.max_depth: 1000001 is out of range (0..1000000)" },
        { "queue: 5\n", "t.yaml:1: queue: expected a mapping" },
        { "routing: []\n", "t.yaml:1: routing: expected a mapping" },
        { "routing:\n  saturation: [1]\n", "t.yaml:2: routing.saturation: expected a mapping" },
        { "routing:\n  eject:\n    after: 3\n", "t.yaml:3: unknown key 'after' in routing.eject" },
        { "routing:\n  eject:\n    max: 1s\n    max: 2s\n",
          "t.yaml:4: duplicate key 'max' in routing.eject" },
        /* hints through nested sections, and back to the top level */
        { "routing:\n  max_depth: 5\n",
          "t.yaml:2: unknown key 'max_depth' in routing (did you mean queue.max_depth?)" },
        { "failures: 3\n",
          "t.yaml:1: unknown key 'failures' at top level (did you mean routing.eject.failures?)" },
        { "queue:\n  eject: {}\n",
          "t.yaml:2: unknown key 'eject' in queue (did you mean routing.eject?)" },
        { "routing:\n  eject:\n    max_cache_ratio: 1\n",
          "t.yaml:3: unknown key 'max_cache_ratio' in routing.eject (did you mean "
          "routing.saturation.max_cache_ratio?)" },
        { "routing:\n  tier_header: X\n",
          "t.yaml:2: unknown key 'tier_header' in routing (did you mean top-level tier_header?)" },
        /* ... but not inside list items, where section names mislead */
        { "tiers:\n  - name: p\n    stall: 1s\n", "t.yaml:3: unknown key 'stall' in tiers" },
        { "backends:\n  - url: http://a:1\n    policy: round_robin\n",
          "t.yaml:3: unknown key 'policy' in backends" },
    };
    CHECK_ERRORS(cases);
}

static void test_error_backend_keys(void **state)
{
    static const struct err_case cases[] = {
        { "backends:\n  - url: http://a:1\n    flavor: ollama\n",
          "t.yaml:3: backends.flavor: bad flavor 'ollama' (auto, llamacpp, vllm, tgi, sglang or "
          "openai)" },
        { "backends:\n  - url: http://a:1\n    flavor: llama.cpp\n",
          "t.yaml:3: backends.flavor: bad flavor 'llama.cpp' (auto, llamacpp, vllm, tgi, sglang or "
          "openai)" },
        { "backends:\n  - url: http://a:1\n    flavor:\n",
          "t.yaml:3: backends.flavor: missing value" },
        { "backends:\n  - url: http://a:1\n    capacity: 65537\n",
          "t.yaml:3: backends.capacity: 65537 is out of range (0..65536)" },
        { "backends:\n  - url: http://a:1\n    capacity: -1\n",
          "t.yaml:3: backends.capacity: bad number '-1'" },
        { "backends:\n  - url: http://a:1\n    models: small\n",
          "t.yaml:3: backends.models: expected a sequence" },
        { "backends:\n  - url: http://a:1\n    models: [ok, \"a b\"]\n",
          "t.yaml:3: model name 'a b' has characters outside [A-Za-z0-9._:@/+-]" },
        { "backends:\n  - url: http://a:1\n    models:\n      - a\n      - \"\"\n",
          "t.yaml:5: empty model name" },
        { "backends:\n  - url: http://a:1\n    models:\n      - a\n      - [b]\n",
          "t.yaml:5: backends.models: expected a scalar" },
        { "backends:\n  - url: http://a:1\n    models:\n      - a\n      - b\n      - a\n",
          "t.yaml:6: backends.models: duplicate model 'a'" },
        { "backends:\n  - url: http://a:1\n    models: [a]\n    models: [b]\n",
          "t.yaml:4: duplicate key 'models' in backends" },
        /* the item's keys are all read before its url is checked */
        { "backends:\n  - capacity: 2\n    flavor: tgi\n",
          "t.yaml:2: backends: entry without url" },
    };
    CHECK_ERRORS(cases);
}

static void test_error_tiers(void **state)
{
    static const struct err_case cases[] = {
        { "tiers:\n  - name: p\n    priority: 1001\n",
          "t.yaml:3: tiers.priority: 1001 is out of range (-1000..1000)" },
        { "tiers:\n  - name: p\n    priority: -1001\n",
          "t.yaml:3: tiers.priority: -1001 is out of range (-1000..1000)" },
        { "tiers:\n  - name: p\n    priority: -99999999999999999999\n",
          "t.yaml:3: tiers.priority: -99999999999999999999 is out of range (-1000..1000)" },
        { "tiers:\n  - name: p\n    priority: 1.5\n",
          "t.yaml:3: tiers.priority: bad number '1.5'" },
        { "tiers:\n  - name: p\n    priority: --1\n",
          "t.yaml:3: tiers.priority: bad number '--1'" },
        { "tiers:\n  - name: p\n    priority: high\n",
          "t.yaml:3: tiers.priority: bad number 'high'" },
        { "tiers:\n  - name: p\n    slo_ttft: 1h\n",
          "t.yaml:3: tiers.slo_ttft: bad duration '1h' (milliseconds, or with an ms, s or m "
          "suffix: 10s)" },
        { "tiers:\n  - name: p\n    slo_tpot: 1441m\n",
          "t.yaml:3: tiers.slo_tpot: 1441m is out of range (0ms..1440m)" },
        { "tiers:\n  - name: p\n    max_queue: -1\n",
          "t.yaml:3: tiers.max_queue: bad number '-1'" },
        { "tiers:\n  - name: p\n    max_queue: 1000001\n",
          "t.yaml:3: tiers.max_queue: 1000001 is out of range (0..1000000)" },
        { "tiers:\n  - name: p\n    max_wait: 1441m\n",
          "t.yaml:3: tiers.max_wait: 1441m is out of range (0ms..1440m)" },
        { "tiers:\n  - priority: 5\n", "t.yaml:2: tiers: entry without name" },
        { "tiers:\n  - name: p\n    priority: 1\n    priority: 2\n",
          "t.yaml:4: duplicate key 'priority' in tiers" },
        { "tiers:\n  - name: default\n    priority: 1\n  - name: default\n",
          "t.yaml:4: duplicate tier 'default'" },
        { "tiers:\n  - name: p\n  - name: q\n    max_wait: 1x\n",
          "t.yaml:4: tiers.max_wait: bad duration '1x' (milliseconds, or with an ms, s or m "
          "suffix: "
          "10s)" },
    };
    CHECK_ERRORS(cases);
}

static void test_error_keys(void **state)
{
    static const struct err_case cases[] = {
        { "tiers:\n  - name: p\n    keys: sk-1\n", "t.yaml:3: tiers.keys: expected a sequence" },
        { "tiers:\n  - name: p\n    keys: [\"\"]\n", "t.yaml:3: tiers.keys: empty key" },
        { "tiers:\n  - name: p\n    keys:\n      -\n", "t.yaml:4: tiers.keys: missing value" },
        { "tiers:\n  - name: p\n    keys: [[sk-1]]\n",
          "t.yaml:3: tiers.keys: expected a key or a mapping with key: or key_sha256:" },
        { "tiers:\n  - name: p\n    keys: [\"sk secret\"]\n",
          "t.yaml:3: tiers.keys: a key may only have visible ASCII characters (no blanks)" },
        { "tiers:\n  - name: p\n    keys: [\"sk-\\tsecret\"]\n",
          "t.yaml:3: tiers.keys: a key may only have visible ASCII characters (no blanks)" },
        { "tiers:\n  - name: p\n    keys: [\"sk-s\\u00e9cret\"]\n",
          "t.yaml:3: tiers.keys: a key may only have visible ASCII characters (no blanks)" },
        { "tiers:\n  - name: p\n    key_sha256: [abc]\n",
          "t.yaml:3: tiers.key_sha256: 'abc' is not a SHA-256 digest (64 hex digits, from: printf "
          "%s KEY | sha256sum)" },
        { "tiers:\n  - name: p\n    key_sha256:\n"
          "      - e2186dbdb1bb4193608605e84f33208765b5693b55edd4f730a719a100eeea6\n",
          "t.yaml:4: tiers.key_sha256: 'e2186dbdb1bb4193608605e84f33208765b5693b55edd4f730a719a100"
          "eeea6' is not a SHA-256 digest (64 hex digits, from: printf %s KEY | sha256sum)" },
        { "tiers:\n  - name: p\n    key_sha256:\n"
          "      - g2186dbdb1bb4193608605e84f33208765b5693b55edd4f730a719a100eeea6f\n",
          "t.yaml:4: tiers.key_sha256: 'g2186dbdb1bb4193608605e84f33208765b5693b55edd4f730a719a100"
          "eeea6f' is not a SHA-256 digest (64 hex digits, from: printf %s KEY | sha256sum)" },
        { "tiers:\n  - name: p\n    key_sha256: [\"" CHANGE_ME_HEX " \"]\n",
          "t.yaml:3: tiers.key_sha256: '" CHANGE_ME_HEX " ' is not a SHA-256 digest (64 hex "
          "digits, from: printf %s KEY | sha256sum)" },
        /* the same key twice: both lines, whichever way it was given */
        { "tiers:\n  - name: a\n    keys:\n      - sk-1\n      - sk-2\n      - sk-1\n",
          "t.yaml:6: tiers.keys: the same key as on line 4 (tier 'a')" },
        { "tiers:\n  - name: a\n    keys: [change-me]\n  - name: b\n"
          "    key_sha256: [\"" CHANGE_ME_HEX "\"]\n",
          "t.yaml:5: tiers.key_sha256: the same key as on line 3 (tier 'a')" },
        { "tiers:\n  - name: a\n    key_sha256:\n      - " CHANGE_ME_HEX "\n"
          "    keys: [change-me]\n",
          "t.yaml:5: tiers.keys: the same key as on line 4 (tier 'a')" },
        { "tiers:\n  - name: a\n    keys: [sk-1]\n  - name: default\n    keys: [sk-1]\n",
          "t.yaml:5: tiers.keys: the same key as on line 3 (tier 'a')" },
        { "tiers:\n  - name: a\n    keys: [&k sk-1, *k]\n",
          "t.yaml:3: tiers.keys: the same key as on line 3 (tier 'a')" },
        { "tiers:\n  - name: a\n    keys: []\n    keys: []\n",
          "t.yaml:4: duplicate key 'keys' in tiers" },
    };
    struct cfg c;
    char *yaml;
    size_t n = 8192;

    CHECK_ERRORS(cases);
    /* no message carries the key's text */
    cfg_init(&c);
    assert_int_equal(load(&c, "tiers:\n  - name: p\n    keys: [\"sk secret\"]\n"), -1);
    assert_null(strstr(err, "secret"));
    /* a key may be 1024 bytes long */
    yaml = malloc(n);
    assert_non_null(yaml);
    snprintf(yaml, n, "tiers:\n  - name: p\n    keys:\n      - %01024d\n", 7);
    assert_int_equal(load(&c, yaml), 0);
    assert_int_equal(c.nkeys, 1);
    snprintf(yaml, n, "tiers:\n  - name: p\n    keys:\n      - %01025d\n", 7);
    assert_int_equal(load(&c, yaml), -1);
    assert_string_equal(err, "t.yaml:4: tiers.keys: key longer than 1024 bytes");
    free(yaml);
    cfg_release(&c);
}

/* The SHA-256 of a key in lower-case hex, as key_sha256 takes it. */
static void sha256_hex(const char *key, char out[65])
{
    unsigned char d[32];
    size_t i;

    sha256(key, d);
    for (i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Rate limits (issue 12): a tier's limits, keys written as mappings with a
 * name and limits of their own, the default names "<tier>-<n>" (keys: in
 * order, then key_sha256:, whatever the order in the file), and
 * ratelimit.default_max_tokens. */
static void test_ratelimit_keys(void **state)
{
    char hashed[65], hex_ci[65], yaml[2048];
    unsigned char d[32];
    struct cfg c;

    sha256_hex("sk-hashed", hashed);
    sha256_hex("sk-ci-hashed", hex_ci);
    snprintf(yaml, sizeof(yaml),
             "ratelimit:\n"
             "  default_max_tokens: 256\n"
             "tiers:\n"
             "  - name: premium\n"
             "    limits:\n"
             "      requests_per_minute: 600\n"
             "      tokens_per_minute: 1000000\n"
             "      max_concurrent: 32\n"
             "      tokens_per_day: 1000000000000000\n"
             "    keys:\n"
             "      - sk-plain-1\n"
             "      - key: sk-ci\n"
             "        name: premium-ci\n"
             "        limits: {requests_per_minute: 60, tokens_per_day: 100000}\n"
             "      - key_sha256: %s\n"
             "        limits:\n"
             "          max_concurrent: 2\n"
             "          tokens_per_minute: 0\n"
             "      - {name: \"team/a@eu:1.x+y_z\", key: sk-team}\n"
             "      - sk-plain-2\n"
             "    key_sha256: [%s]\n"
             "  - name: default\n"
             "    key_sha256: [\"" CHANGE_ME_HEX "\"]\n"
             "    keys:\n"
             "      - sk-d\n"
             "  - name: free\n"
             "    limits: {}\n"
             "    keys: []\n",
             hex_ci, hashed);
    cfg_init(&c);
    if (load(&c, yaml) != 0) {
        print_error("%s\n%s\n", yaml, err);
        fail();
    }
    assert_int_equal(c.ratelimit_default_max_tokens, 256);
    assert_int_equal(c.ntiers, 3);
    assert_int_equal(c.tiers[1].limits.requests_per_minute, 600);
    assert_int_equal(c.tiers[1].limits.tokens_per_minute, 1000000);
    assert_int_equal(c.tiers[1].limits.max_concurrent, 32);
    assert_true(c.tiers[1].limits.tokens_per_day == 1000000000000000ull);
    assert_memory_equal(&c.tiers[0].limits, &(struct cfg_limits){ 0 }, sizeof(struct cfg_limits));
    assert_memory_equal(&c.tiers[2].limits, &(struct cfg_limits){ 0 }, sizeof(struct cfg_limits));
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1); /* no backend, else fine */
    assert_string_equal(err, "no backend: give --backend URL or backends: in the config");

    assert_int_equal(c.nkeys, 8);
    sha256("sk-plain-1", d);
    assert_memory_equal(c.keys[0].sha256, d, 32);
    assert_string_equal(c.keys[0].name, "premium-1");
    assert_memory_equal(&c.keys[0].limits, &(struct cfg_limits){ 0 }, sizeof(struct cfg_limits));
    sha256("sk-ci", d);
    assert_memory_equal(c.keys[1].sha256, d, 32);
    assert_string_equal(c.keys[1].name, "premium-ci");
    assert_int_equal(c.keys[1].limits.requests_per_minute, 60);
    assert_int_equal(c.keys[1].limits.tokens_per_minute, 0);
    assert_int_equal(c.keys[1].limits.max_concurrent, 0);
    assert_int_equal(c.keys[1].limits.tokens_per_day, 100000);
    sha256("sk-ci-hashed", d);
    assert_memory_equal(c.keys[2].sha256, d, 32);
    assert_string_equal(c.keys[2].name, "premium-3");
    assert_int_equal(c.keys[2].limits.max_concurrent, 2);
    assert_int_equal(c.keys[2].limits.requests_per_minute, 0);
    sha256("sk-team", d);
    assert_memory_equal(c.keys[3].sha256, d, 32);
    assert_string_equal(c.keys[3].name, "team/a@eu:1.x+y_z");
    assert_string_equal(c.keys[4].name, "premium-5");
    sha256("sk-hashed", d);
    assert_memory_equal(c.keys[5].sha256, d, 32);
    assert_string_equal(c.keys[5].name, "premium-6"); /* key_sha256: after the 5 of keys: */
    /* the default tier's key_sha256 comes first in the file, but is numbered
     * after its keys: */
    sha256("change-me", d);
    assert_memory_equal(c.keys[6].sha256, d, 32);
    assert_string_equal(c.keys[6].name, "default-2");
    sha256("sk-d", d);
    assert_memory_equal(c.keys[7].sha256, d, 32);
    assert_string_equal(c.keys[7].name, "default-1");
    assert_int_equal(c.key_tier[4], 1);
    assert_int_equal(c.key_tier[5], 1);
    assert_int_equal(c.key_tier[6], 0);
    assert_int_equal(c.key_tier[7], 0);
    assert_int_equal(load(&c, "backends: [http://a:1]\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);

    /* a file without them keeps them; a new tiers list drops them */
    assert_int_equal(load(&c, "routing:\n  retry: false\n"), 0);
    assert_int_equal(c.ratelimit_default_max_tokens, 256);
    assert_int_equal(c.tiers[1].limits.max_concurrent, 32);
    assert_int_equal(load(&c, "tiers: [premium]\n"), 0);
    assert_int_equal(c.nkeys, 0);
    assert_int_equal(c.tiers[1].limits.max_concurrent, 0);
    assert_int_equal(load(&c, "ratelimit:\n  default_max_tokens: 10000000\n"), 0);
    assert_int_equal(c.ratelimit_default_max_tokens, 10000000);
    assert_int_equal(load(&c, "ratelimit:\n"), 0);
    assert_int_equal(c.ratelimit_default_max_tokens, 10000000);
    cfg_release(&c);

    /* the largest limits */
    cfg_init(&c);
    assert_int_equal(load(&c, "tiers:\n  - name: p\n    keys:\n      - key: sk-1\n        limits:\n"
                              "          requests_per_minute: 4294967295\n"
                              "          max_concurrent: 4294967295\n"
                              "          tokens_per_minute: 1000000000000000\n"),
                     0);
    assert_int_equal(c.keys[0].limits.requests_per_minute, 4294967295u);
    assert_int_equal(c.keys[0].limits.max_concurrent, 4294967295u);
    assert_true(c.keys[0].limits.tokens_per_minute == 1000000000000000ull);
    cfg_release(&c);
    (void)state;
}

/* A default name that would be too long: the tier's name is cut so that
 * "-<n>" fits in 63 characters. */
static void test_ratelimit_default_names(void **state)
{
    static const char t63[] = "t12345678901234567890123456789012345678901234567890123456789012";
    char yaml[8192], want[CFG_NAME_MAX];
    size_t len;
    struct cfg c;
    int i;

    assert_int_equal(strlen(t63), 63);
    len = (size_t)snprintf(yaml, sizeof(yaml), "tiers:\n  - name: %s\n    keys:\n", t63);
    for (i = 1; i <= 10; i++)
        len += (size_t)snprintf(yaml + len, sizeof(yaml) - len, "      - sk-%d\n", i);
    cfg_init(&c);
    assert_int_equal(load(&c, yaml), 0);
    assert_int_equal(c.nkeys, 10);
    snprintf(want, sizeof(want), "%.61s-1", t63);
    assert_string_equal(c.keys[0].name, want);
    snprintf(want, sizeof(want), "%.60s-10", t63);
    assert_string_equal(c.keys[9].name, want);
    for (i = 0; i < 10; i++)
        assert_int_equal(strlen(c.keys[i].name), 63);
    /* a short tier name is not cut */
    assert_int_equal(load(&c, "tiers:\n  - name: p\n    keys: [sk-1]\n"), 0);
    assert_string_equal(c.keys[0].name, "p-1");
    cfg_release(&c);
    (void)state;
}

/* Every error of the rate-limit keys, with its line; and none of them
 * repeats a plain key. */
static void test_error_ratelimit(void **state)
{
    static const struct err_case cases[] = {
        /* limits: a mapping of the four counts, each 0 or more */
        { "tiers:\n  - name: p\n    limits:\n      rpm: 5\n",
          "t.yaml:4: unknown key 'rpm' in tiers.limits" },
        { "tiers:\n  - name: p\n    keys:\n      - key: sk-1\n        limits: {burst: 5}\n",
          "t.yaml:5: unknown key 'burst' in tiers.keys.limits" },
        { "tiers:\n  - name: p\n    limits: [60]\n", "t.yaml:3: tiers.limits: expected a mapping" },
        { "tiers:\n  - name: p\n    limits:\n      requests_per_minute: -1\n",
          "t.yaml:4: tiers.limits.requests_per_minute: bad number '-1'" },
        { "tiers:\n  - name: p\n    limits:\n      tokens_per_day: -5\n",
          "t.yaml:4: tiers.limits.tokens_per_day: bad number '-5'" },
        { "tiers:\n  - name: p\n    limits:\n      tokens_per_minute: 1.5\n",
          "t.yaml:4: tiers.limits.tokens_per_minute: bad number '1.5'" },
        { "tiers:\n  - name: p\n    limits:\n      max_concurrent: ~\n",
          "t.yaml:4: tiers.limits.max_concurrent: missing value" },
        { "tiers:\n  - name: p\n    limits:\n      requests_per_minute: 4294967296\n",
          "t.yaml:4: tiers.limits.requests_per_minute: 4294967296 is out of range "
          "(0..4294967295)" },
        { "tiers:\n  - name: p\n    limits:\n      max_concurrent: 99999999999999999999999\n",
          "t.yaml:4: tiers.limits.max_concurrent: 99999999999999999999999 is out of range "
          "(0..4294967295)" },
        { "tiers:\n  - name: p\n    limits:\n      tokens_per_minute: 1000000000000001\n",
          "t.yaml:4: tiers.limits.tokens_per_minute: 1000000000000001 is out of range "
          "(0..1000000000000000)" },
        { "tiers:\n  - name: p\n    keys:\n      - {key: sk-1, limits: {tokens_per_day: -1}}\n",
          "t.yaml:4: tiers.keys.limits.tokens_per_day: bad number '-1'" },
        { "tiers:\n  - name: p\n    limits: {max_concurrent: 1, max_concurrent: 2}\n",
          "t.yaml:3: duplicate key 'max_concurrent' in tiers.limits" },
        /* rate limits are a tier's or a key's, not the front door's */
        { "limits:\n  requests_per_minute: 60\n",
          "t.yaml:2: unknown key 'requests_per_minute' in limits (did you mean "
          "tiers.limits.requests_per_minute?)" },
        { "ratelimit:\n  tokens_per_minute: 60\n",
          "t.yaml:2: unknown key 'tokens_per_minute' in ratelimit (did you mean "
          "tiers.limits.tokens_per_minute?)" },
        { "limits:\n  default_max_tokens: 60\n",
          "t.yaml:2: unknown key 'default_max_tokens' in limits (did you mean "
          "ratelimit.default_max_tokens?)" },
        /* ratelimit */
        { "ratelimit:\n  burst: 2\n", "t.yaml:2: unknown key 'burst' in ratelimit" },
        { "ratelimit: 5\n", "t.yaml:1: ratelimit: expected a mapping" },
        { "ratelimit:\n  default_max_tokens: 0\n",
          "t.yaml:2: ratelimit.default_max_tokens: 0 is out of range (1..10000000)" },
        { "ratelimit:\n  default_max_tokens: 10000001\n",
          "t.yaml:2: ratelimit.default_max_tokens: 10000001 is out of range (1..10000000)" },
        { "ratelimit:\n  default_max_tokens: -1\n",
          "t.yaml:2: ratelimit.default_max_tokens: bad number '-1'" },
        /* a key as a mapping: key or key_sha256, one of them */
        { "tiers:\n  - name: p\n    keys:\n      - key: sk-1\n        key_sha256: " CHANGE_ME_HEX
          "\n",
          "t.yaml:4: tiers.keys: an entry has key or key_sha256, not both" },
        { "tiers:\n  - name: p\n    keys:\n      - name: ci\n        limits: {}\n",
          "t.yaml:4: tiers.keys: entry without key or key_sha256" },
        { "tiers:\n  - name: p\n    keys:\n      - {}\n",
          "t.yaml:4: tiers.keys: entry without key or key_sha256" },
        { "tiers:\n  - name: p\n    keys:\n      - key: sk-1\n        key: sk-2\n",
          "t.yaml:5: duplicate key 'key' in tiers.keys" },
        { "tiers:\n  - name: p\n    keys:\n      - key: sk-1\n        rate: 5\n",
          "t.yaml:5: unknown key in tiers.keys (key, key_sha256, name or limits; not repeated "
          "here: it could be an API key)" },
        { "tiers:\n  - name: p\n    keys:\n      - [key]: sk-1\n",
          "t.yaml:4: keys must be scalars (in tiers.keys)" },
        { "tiers:\n  - name: p\n    keys:\n      - key: \"\"\n",
          "t.yaml:4: tiers.keys.key: empty key" },
        { "tiers:\n  - name: p\n    keys:\n      - key: ~\n",
          "t.yaml:4: tiers.keys.key: missing value" },
        { "tiers:\n  - name: p\n    keys:\n      - key: [sk-1]\n",
          "t.yaml:4: tiers.keys.key: expected a scalar" },
        { "tiers:\n  - name: p\n    keys:\n      - key_sha256: abc\n",
          "t.yaml:4: tiers.keys.key_sha256: 'abc' is not a SHA-256 digest (64 hex digits, from: "
          "printf %s KEY | sha256sum)" },
        /* key_sha256: stays a list of digests */
        { "tiers:\n  - name: p\n    key_sha256:\n      - {key_sha256: " CHANGE_ME_HEX "}\n",
          "t.yaml:4: tiers.key_sha256: expected a scalar" },
        /* the same key however it is written */
        { "tiers:\n  - name: p\n    keys:\n      - change-me\n      - key_sha256: " CHANGE_ME_HEX
          "\n",
          "t.yaml:5: tiers.keys.key_sha256: the same key as on line 4 (tier 'p')" },
        { "tiers:\n  - name: p\n    keys:\n      - name: a\n        key: sk-1\n"
          "  - name: q\n    keys: [sk-1]\n",
          "t.yaml:7: tiers.keys: the same key as on line 5 (tier 'p')" },
        /* names: label values, unique across tiers */
        { "tiers:\n  - name: p\n    keys:\n      - {key: sk-1, name: \"a b\"}\n",
          "t.yaml:4: key name 'a b' has characters outside [A-Za-z0-9._:@/+-]" },
        { "tiers:\n  - name: p\n    keys:\n      - {key: sk-1, name: \"a\\\"b\"}\n",
          "t.yaml:4: key name 'a\"b' has characters outside [A-Za-z0-9._:@/+-]" },
        { "tiers:\n  - name: p\n    keys:\n      - {key: sk-1, name: \"\"}\n",
          "t.yaml:4: empty key name" },
        { "tiers:\n  - name: p\n    keys:\n      - {key: sk-1, name: ~}\n",
          "t.yaml:4: tiers.keys.name: missing value" },
        { "tiers:\n  - name: p\n    keys:\n      - {key: sk-1, name: [a]}\n",
          "t.yaml:4: tiers.keys.name: expected a scalar" },
        { "tiers:\n  - name: p\n    keys:\n      - key: sk-1\n        name: "
          "0123456789012345678901234567890123456789012345678901234567890123\n",
          "t.yaml:5: key name '01234567890123456789012345678901...' longer than 63 characters" },
        { "tiers:\n  - name: p\n    keys:\n      - key: sk-1\n        name: ci\n"
          "  - name: q\n    keys:\n      - key: sk-2\n        name: ci\n",
          "t.yaml:9: tiers.keys.name: duplicate key name 'ci' (the key on line 4)" },
        { "tiers:\n  - name: p\n    keys:\n      - sk-1\n      - key: sk-2\n        name: p-1\n",
          "t.yaml:6: tiers.keys.name: duplicate key name 'p-1' (the key on line 4, by default)" },
        { "tiers:\n  - name: p\n    keys:\n      - {key: sk-1, name: p-2}\n      - sk-2\n",
          "t.yaml:5: tiers.keys: duplicate key name 'p-2', this key's default name (the key on "
          "line 4)" },
        { "tiers:\n  - name: p\n    keys:\n      - {key: sk-1, name: p-2}\n"
          "    key_sha256: [" CHANGE_ME_HEX "]\n",
          "t.yaml:5: tiers.key_sha256: duplicate key name 'p-2', this key's default name (the key "
          "on line 4)" },
    };
    /* a key's text, however mistyped, stays out of every message */
    static const char *const secret[] = {
        "tiers:\n  - name: p\n    keys:\n      - sk-SECRET: x\n",
        "tiers:\n  - name: p\n    keys:\n      - {sk-SECRET}\n",
        "tiers:\n  - name: p\n    keys:\n      - \"sk-SECRET\": x\n        key: sk-2\n",
        "tiers:\n  - name: p\n    keys:\n      - key: sk-SECRET\n        nmae: ci\n",
        "tiers:\n  - name: p\n    keys:\n      - {key: \"sk-SECRET x\", name: ci}\n",
        "tiers:\n  - name: p\n    keys:\n      - {key: sk-SECRET, key_sha256: " CHANGE_ME_HEX "}\n",
        "tiers:\n  - name: p\n    keys:\n      - {key: sk-SECRET, name: \"c i\"}\n",
        "tiers:\n  - name: p\n    keys:\n      - {key: sk-SECRET, name: p-2}\n      - sk-SECRET2\n",
        "tiers:\n  - name: p\n    keys:\n      - sk-SECRET\n      - {key: sk-SECRET}\n",
        "tiers:\n  - name: p\n    keys:\n      - {key: sk-SECRET, limits: {rpm: 1}}\n",
        "tiers:\n  - name: p\n    keys:\n      - [sk-SECRET]\n",
    };
    struct cfg c;
    size_t i;

    CHECK_ERRORS(cases);
    for (i = 0; i < sizeof(secret) / sizeof(secret[0]); i++) {
        cfg_init(&c);
        assert_int_equal(load(&c, secret[i]), -1);
        if (err[0] == '\0' || strstr(err, "SECRET") != NULL) {
            print_error("yaml:\n%s\ngot: %s\n", secret[i], err);
            fail();
        }
        cfg_release(&c);
    }
    (void)state;
}

/* cfg_validate's rate-limit checks, on values set by hand (the loader never
 * lets them through). */
static void test_validate_ratelimit(void **state)
{
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(load(&c, "backends: [http://a:1]\n"
                              "tiers:\n  - name: p\n    keys: [sk-1, sk-2]\n"),
                     0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    c.ratelimit_default_max_tokens = 0;
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "ratelimit.default_max_tokens: 0 is out of range (1..10000000)");
    c.ratelimit_default_max_tokens = 10000001;
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "ratelimit.default_max_tokens: 10000001 is out of range (1..10000000)");
    c.ratelimit_default_max_tokens = 1;
    c.tiers[1].limits.tokens_per_minute = 1000000000000001ull;
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "tier 'p': limits.tokens_per_minute (1000000000000001) must not "
                             "exceed 1000000000000000");
    c.tiers[1].limits.tokens_per_minute = 1000000000000000ull;
    c.keys[1].limits.tokens_per_day = 1000000000000001ull;
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "key 'p-2': limits.tokens_per_day (1000000000000001) must not exceed "
                             "1000000000000000");
    c.keys[1].limits.tokens_per_day = 0;
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    strcpy(c.keys[1].name, "p-1");
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "duplicate key name 'p-1'");
    c.keys[1].name[0] = '\0';
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "API key 1 of tier 'p': empty key name");
    strcpy(c.keys[1].name, "a b");
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "API key 1 of tier 'p': key name 'a b' has characters outside "
                             "[A-Za-z0-9._:@/+-]");
    cfg_release(&c);
    (void)state;
}

static void test_error_model_aliases(void **state)
{
    static const struct err_case cases[] = {
        { "routing:\n  aliases: [a]\n", "t.yaml:2: routing.aliases: expected a mapping" },
        { "routing:\n  aliases:\n    a b: c\n",
          "t.yaml:3: model name 'a b' has characters outside [A-Za-z0-9._:@/+-]" },
        { "routing:\n  aliases:\n    a: \"c{d}\"\n",
          "t.yaml:3: model name 'c{d}' has characters outside [A-Za-z0-9._:@/+-]" },
        { "routing:\n  aliases:\n    a: \"\"\n", "t.yaml:3: empty model name" },
        { "routing:\n  aliases:\n    a: [b]\n", "t.yaml:3: routing.aliases: expected a scalar" },
        { "routing:\n  aliases:\n    a: ~\n", "t.yaml:3: routing.aliases: missing value" },
        { "routing:\n  aliases:\n    [x]: b\n",
          "t.yaml:3: keys must be scalars (in routing.aliases)" },
        { "routing:\n  aliases:\n    a: a\n",
          "t.yaml:3: routing.aliases: 'a' is an alias of itself" },
        { "routing:\n  aliases:\n    a: b\n    c: d\n    a: e\n",
          "t.yaml:5: routing.aliases: duplicate alias 'a'" },
        { "routing:\n  aliases:\n    a: b\n    b: c\n",
          "t.yaml:3: routing.aliases: 'a' maps to 'b', which is itself an alias (line 4); aliases "
          "are not chained" },
        { "routing:\n  aliases:\n    x: y\n    b: a\n    a: b\n",
          "t.yaml:4: routing.aliases: 'b' maps to 'a', which is itself an alias (line 5); aliases "
          "are not chained" },
    };
    char yaml[2048];
    struct cfg c;
    size_t len;
    int i;

    CHECK_ERRORS(cases);
    /* 32 aliases, not 33 */
    len = (size_t)snprintf(yaml, sizeof(yaml), "routing:\n  aliases:\n");
    for (i = 1; i <= 32; i++)
        len += (size_t)snprintf(yaml + len, sizeof(yaml) - len, "    a%d: served\n", i);
    cfg_init(&c);
    assert_int_equal(load(&c, yaml), 0);
    assert_int_equal(c.naliases, 32);
    assert_string_equal(c.aliases[31].from, "a32");
    snprintf(yaml + len, sizeof(yaml) - len, "    a33: served\n");
    assert_int_equal(load(&c, yaml), -1);
    assert_string_equal(err, "t.yaml:35: too many aliases (at most 32)");
    assert_int_equal(c.naliases, 32);
}

static void test_error_buckets(void **state)
{
    static const struct err_case cases[] = {
        { "measure:\n  buckets:\n    - 0.5\n    - 1\n    - 1\n",
          "t.yaml:5: measure.buckets must be strictly ascending: 1 after 1" },
        { "measure:\n  buckets: [1, 0.5]\n",
          "t.yaml:2: measure.buckets must be strictly ascending: 0.5 after 1" },
        { "measure:\n  buckets: []\n", "t.yaml:2: measure.buckets: at least one bucket is needed" },
        { "measure:\n  buckets:\n", "t.yaml:2: measure.buckets: at least one bucket is needed" },
    };
    CHECK_ERRORS(cases);
}

/* Every list and nested list takes a sequence or a null (an empty list); any
 * other value is a type error, also where an empty list would be one. */
static void test_list_shapes(void **state)
{
    static const struct err_case cases[] = {
        { "measure:\n  buckets: {a: 1}\n", "t.yaml:2: measure.buckets: expected a sequence" },
        { "measure:\n  buckets: 5\n", "t.yaml:2: measure.buckets: expected a sequence" },
        { "tiers:\n  - name: p\n    key_sha256: {a: b}\n",
          "t.yaml:3: tiers.key_sha256: expected a sequence" },
        { "tiers:\n  - name: p\n    keys: ~\n    key_sha256: x\n",
          "t.yaml:4: tiers.key_sha256: expected a sequence" },
        { "backends:\n  - url: http://a:1\n    models: x\n",
          "t.yaml:3: backends.models: expected a sequence" },
    };
    struct cfg c;

    CHECK_ERRORS(cases);
    cfg_init(&c);
    assert_int_equal(load(&c, "backends:\n  - url: http://a:1\n    models: [m]\n"
                              "models: [a, b]\n"
                              "tiers:\n  - name: p\n    keys: [sk-p]\n"
                              "measure:\n  refusal_phrases: [no way]\n"),
                     0);
    assert_int_equal(c.nmodels, 2);
    assert_int_equal(c.backends[0].nmodels, 1);
    assert_int_equal(c.nkeys, 1);
    assert_int_equal(c.nrefusal, 1);
    assert_int_equal(load(&c, "backends:\n  - url: http://a:1\n    models: ~\n"
                              "models: []\n"
                              "tiers:\n  - name: p\n    keys: []\n    key_sha256: ~\n"
                              "measure:\n  refusal_phrases: ~\n"),
                     0);
    assert_int_equal(c.nbackends, 1);
    assert_int_equal(c.backends[0].nmodels, 0);
    assert_int_equal(c.nmodels, 0);
    assert_int_equal(c.ntiers, 2);
    assert_int_equal(c.nkeys, 0);
    assert_int_equal(c.nrefusal, 0);
    cfg_release(&c);
}

static void test_error_names(void **state)
{
    static const struct err_case cases[] = {
        { "backends:\n  - url: http://a:1\n    name: a b\n",
          "t.yaml:3: backend name 'a b' has characters outside [A-Za-z0-9._:@/+-]" },
        { "backends:\n  - url: http://a:1\n    name: \"\"\n", "t.yaml:3: empty backend name" },
        { "backends:\n  - url: http://a:1\n"
          "    name: 0123456789012345678901234567890123456789012345678901234567890123\n",
          "t.yaml:3: backend name '01234567890123456789012345678901...' longer than 63 "
          "characters" },
        { "models: [\"a\\\"b\"]\n",
          "t.yaml:1: model name 'a\"b' has characters outside [A-Za-z0-9._:@/+-]" },
        { "models:\n  - ok\n  - \"tab\\there\"\n",
          "t.yaml:3: model name 'tab\there' has characters outside [A-Za-z0-9._:@/+-]" },
        { "tiers:\n  - name: \"\"\n", "t.yaml:2: empty tier name" },
        { "tiers:\n  - name: \"gold{x}\"\n",
          "t.yaml:2: tier name 'gold{x}' has characters outside [A-Za-z0-9._:@/+-]" },
        { "measure:\n  refusal_phrases: [a, \"\"]\n",
          "t.yaml:2: measure.refusal_phrases: empty phrase" },
    };
    static const char long_host[] =
        "h0123456789012345678901234567890123456789012345678901234567890123456789";
    struct cfg c;
    char yaml[256], want[512];

    CHECK_ERRORS(cases);
    /* a default "host:port" name must fit too */
    cfg_init(&c);
    snprintf(yaml, sizeof(yaml), "backends:\n  - http://%s:1\n", long_host);
    assert_int_equal(load(&c, yaml), -1);
    snprintf(want, sizeof(want),
             "t.yaml:2: backend 'http://%s:1': default name '%s:1' longer than 63 characters, "
             "give it a name",
             long_host, long_host);
    assert_string_equal(err, want);
    /* 63 characters is the longest name */
    cfg_init(&c);
    snprintf(yaml, sizeof(yaml), "backends:\n  - url: http://a:1\n    name: %.63s\n",
             "012345678901234567890123456789012345678901234567890123456789012");
    assert_int_equal(load(&c, yaml), 0);
    assert_int_equal(strlen(c.backends[0].name), 63);
}

static void test_error_yaml_syntax(void **state)
{
    static const struct err_case cases[] = {
        { "listen: 1\nbackends: [http://a:1, http://b:2\nlog:\n  level: info\n",
          "t.yaml:3: syntax error: did not find expected ',' or ']' while parsing a flow sequence "
          "started on line 2" },
        { "listen: 1\n  limits: 2\n",
          "t.yaml:2: syntax error: mapping values are not allowed in this context" },
        { "listen: 1\nbackends:\n\t- http://a:1\n",
          "t.yaml:3: syntax error: found character that cannot start any token while scanning for "
          "the next token" },
        { "listen: 1\nlog:\n  level: \xff\n",
          "t.yaml:3: syntax error: invalid leading UTF-8 octet (byte 0xff)" },
        { "listen: *port\n", "t.yaml:1: syntax error: found undefined alias" },
        { "limits:\n  max_headers: 1\n- x\n",
          "t.yaml:3: syntax error: did not find expected key while parsing a block mapping started "
          "on line 1" },
        { "listen: 1\n---\nlisten: 2\n", "t.yaml:2: only one YAML document is allowed" },
        /* a syntax error after a good first document still fails */
        { "listen: 1\n---\n[\n", "t.yaml:4: syntax error: did not find expected node content while "
                                 "parsing a flow node" },
    };
    CHECK_ERRORS(cases);
}

/* Anchors and aliases are plain YAML and work. */
static void test_aliases(void **state)
{
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(load(&c, "limits:\n  header_timeout: &t 7s\n  body_timeout: *t\n"), 0);
    assert_int_equal(c.header_timeout_ms, 7000);
    assert_int_equal(c.body_timeout_ms, 7000);
    /* a self-referencing node is never walked into; an alias has no line of
       its own in a libyaml document, the error names the anchored node's */
    assert_int_equal(load(&c, "limits: &l\n  max_headers: *l\n"), -1);
    assert_string_equal(err, "t.yaml:1: limits.max_headers: expected a scalar");
}

static void test_durations_sizes(void **state)
{
    static const struct {
        const char *in;
        unsigned ms;
    } durs[] = {
        { "1", 1 },
        { "1500", 1500 },
        { "1500ms", 1500 },
        { "10s", 10000 },
        { "10m", 600000 },
        { "0010s", 10000 },
        { "\"5s\"", 5000 },
        { "'250ms'", 250 },
        { "1440m", 86400000 },
        { "86400s", 86400000 },
    };
    static const struct {
        const char *in;
        size_t bytes;
    } sizes[] = {
        { "1024", 1024 },  { "4k", 4096 },    { "4K", 4096 },        { "256k", 262144 },
        { "1m", 1048576 }, { "3M", 3145728 }, { "256m", 268435456 },
    };
    static const struct {
        const char *in;
        bool v;
    } bools[] = {
        { "true", true },   { "True", true },   { "yes", true }, { "on", true },
        { "false", false }, { "FALSE", false }, { "no", false }, { "off", false },
    };
    static const char *const levels[] = { "error", "warn", "info", "debug" };
    struct cfg c;
    char yaml[128];
    size_t i;

    for (i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
        cfg_init(&c);
        snprintf(yaml, sizeof(yaml), "upstream:\n  header_timeout: %s\n", durs[i].in);
        assert_int_equal(load(&c, yaml), 0);
        assert_int_equal(c.upstream_header_timeout_ms, durs[i].ms);
    }
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        cfg_init(&c);
        snprintf(yaml, sizeof(yaml), "upstream:\n  max_event_bytes: %s\n", sizes[i].in);
        assert_int_equal(load(&c, yaml), 0);
        assert_int_equal(c.max_event_bytes, sizes[i].bytes);
    }
    for (i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        cfg_init(&c);
        c.usage_injection = !bools[i].v;
        snprintf(yaml, sizeof(yaml), "measure:\n  usage_injection: %s\n", bools[i].in);
        assert_int_equal(load(&c, yaml), 0);
        assert_true(c.usage_injection == bools[i].v);
    }
    for (i = 0; i < 4; i++) {
        cfg_init(&c);
        snprintf(yaml, sizeof(yaml), "log: {level: %s}\n", levels[i]);
        assert_int_equal(load(&c, yaml), 0);
        assert_int_equal(c.log_level, (int)i);
    }
    /* log.format: text (the default) or json */
    cfg_init(&c);
    assert_int_equal(c.log_format, 0);
    assert_int_equal(load(&c, "log:\n  format: json\n"), 0);
    assert_int_equal(c.log_format, 1);
    assert_int_equal(load(&c, "log: {format: text}\n"), 0);
    assert_int_equal(c.log_format, 0);
    /* access_log: "" is stdout too */
    cfg_init(&c);
    assert_int_equal(load(&c, "log:\n  access_log: \"\"\n"), 0);
    assert_string_equal(c.access_log, "");
}

static void test_backend_add(void **state)
{
    static const struct err_case bad[] = {
        { "https://a:0", "bad backend URL 'https://a:0': port out of range (1-65535)" },
        { "https://u@a", "bad backend URL 'https://u@a': userinfo (user@) is not allowed" },
        { "http://a/x", "bad backend URL 'http://a/x': a path is not allowed" },
        { "http://a?q", "bad backend URL 'http://a?q': a query is not allowed" },
        { "http://u@a", "bad backend URL 'http://u@a': userinfo (user@) is not allowed" },
        { "http://a:0", "bad backend URL 'http://a:0': port out of range (1-65535)" },
        { "http://a:-1", "bad backend URL 'http://a:-1': bad port" },
        { "http://[::1]", "" }, /* fine, checked below */
        { "", "bad backend URL '': expected http[s]://host[:port]" },
    };
    struct cfg c;
    char url[64];
    size_t i;

    cfg_init(&c);
    assert_int_equal(cfg_backend_add(&c, "http://127.0.0.1:18081", NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg_backend_add(&c, "HTTP://Example.COM/", "ex", err, sizeof(err)), 0);
    assert_int_equal(cfg_backend_add(&c, "http://[::1]:9000/", NULL, err, sizeof(err)), 0);
    assert_int_equal(c.nbackends, 3);
    assert_string_equal(c.backends[0].name, "127.0.0.1:18081");
    assert_string_equal(c.backends[0].host, "127.0.0.1");
    assert_int_equal(c.backends[0].port, 18081);
    assert_string_equal(c.backends[0].url, "http://127.0.0.1:18081");
    assert_int_equal(c.backends[0].flavor, CFG_FLAVOR_AUTO);
    assert_int_equal(c.backends[0].capacity, 0);
    assert_int_equal(c.backends[0].nmodels, 0);
    assert_string_equal(c.backends[1].name, "ex");
    assert_string_equal(c.backends[1].host, "Example.COM");
    assert_int_equal(c.backends[1].port, 80);
    assert_string_equal(c.backends[1].url, "http://Example.COM:80");
    assert_string_equal(c.backends[2].name, "[::1]:9000");
    assert_string_equal(c.backends[2].host, "::1");
    assert_int_equal(c.backends[2].port, 9000);
    assert_string_equal(c.backends[2].url, "http://[::1]:9000");

    assert_int_equal(cfg_backend_add(&c, "http://127.0.0.1:18081/", NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "duplicate backend name '127.0.0.1:18081'");
    assert_int_equal(cfg_backend_add(&c, "http://b:1", "bad name", err, sizeof(err)), -1);
    assert_string_equal(err, "backend name 'bad name' has characters outside [A-Za-z0-9._:@/+-]");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (bad[i].want[0] == '\0')
            continue;
        assert_int_equal(cfg_backend_add(&c, bad[i].yaml, NULL, err, sizeof(err)), -1);
        assert_string_equal(err, bad[i].want);
    }
    assert_int_equal(c.nbackends, 3);
    while (c.nbackends < CFG_MAX_BACKENDS) {
        snprintf(url, sizeof(url), "http://h:%zu", c.nbackends + 1);
        assert_int_equal(cfg_backend_add(&c, url, NULL, err, sizeof(err)), 0);
    }
    assert_int_equal(cfg_backend_add(&c, "http://last:1", NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "too many backends (at most 64)");
    /* a small or absent error buffer is fine */
    assert_int_equal(cfg_backend_add(&c, "http://last:1", NULL, err, 8), -1);
    assert_string_equal(err, "too man");
    assert_int_equal(cfg_backend_add(&c, "http://last:1", NULL, NULL, 0), -1);
}

static void test_listen_set(void **state)
{
    static const struct {
        const char *in;
        const char *host;
        unsigned port;
    } good[] = {
        { "0.0.0.0:9000", "0.0.0.0", 9000 },
        { "[::1]:9000", "::1", 9000 },
        { "[::]:80", "::", 80 },
        { ":9000", "0.0.0.0", 9000 },
        { "9000", "127.0.0.1", 9000 },
        { "0", "127.0.0.1", 0 },
        { "localhost:0", "localhost", 0 },
        { "127.0.0.1:65535", "127.0.0.1", 65535 },
    };
    static const struct err_case bad[] = {
        { "", "bad listen address '': empty host" },
        { "host", "bad listen address 'host': expected host:port, [v6]:port, :port or port" },
        { "host:", "bad listen address 'host:': bad port" },
        { "host:x", "bad listen address 'host:x': bad port" },
        { ":", "bad listen address ':': bad port" },
        { ":x", "bad listen address ':x': bad port" },
        { ":70000", "bad listen address ':70000': port out of range (0-65535)" },
        { "[::1]", "bad listen address '[::1]': expected host:port, [v6]:port, :port or port" },
        { "[::1]:65536", "bad listen address '[::1]:65536': port out of range (0-65535)" },
        { "::1:80", "bad listen address '::1:80': an IPv6 address needs brackets: [::1]:port" },
        { "a b:80", "bad listen address 'a b:80': host has characters outside [A-Za-z0-9._-]" },
        { "99999999999999999999999", "bad listen address '99999999999999999999999': port out of "
                                     "range (0-65535)" },
    };
    struct cfg c;
    size_t i;

    cfg_init(&c);
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        c.listen_port = 1;
        assert_int_equal(cfg_listen_set(&c, good[i].in, err, sizeof(err)), 0);
        assert_string_equal(c.listen_host, good[i].host);
        assert_int_equal(c.listen_port, good[i].port);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cfg_listen_set(&c, bad[i].yaml, err, sizeof(err)), -1);
        assert_string_equal(err, bad[i].want);
        /* a failed set leaves the last good value */
        assert_string_equal(c.listen_host, "127.0.0.1");
        assert_int_equal(c.listen_port, 65535);
    }
}

static void test_validate(void **state)
{
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "no backend: give --backend URL or backends: in the config");
    assert_int_equal(cfg_backend_add(&c, "http://a:1", NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);

    c.backends[1] = c.backends[0];
    c.nbackends = 2;
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "duplicate backend name 'a:1'");
    c.nbackends = 1;

    c.stall_ms = c.stall_timeout_ms;
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "measure.stall (2m) must be shorter than measure.stall_timeout (2m)");
    /* the check runs after all sources: each file alone may be fine */
    cfg_init(&c);
    assert_int_equal(cfg_backend_add(&c, "http://a:1", NULL, err, sizeof(err)), 0);
    assert_int_equal(load(&c, "measure:\n  stall: 200s\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err,
                        "measure.stall (200s) must be shorter than measure.stall_timeout (2m)");
    assert_int_equal(load(&c, "measure:\n  stall_timeout: 201s\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);

    strcpy(c.tiers[1].name, "gold");
    strcpy(c.tiers[2].name, "gold");
    c.ntiers = 3;
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "duplicate tier 'gold'");
    c.ntiers = 2;

    c.buckets[1] = c.buckets[0];
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "measure.buckets must be strictly ascending: 0.001 after 0.001");
    c.buckets[1] = 0.0025;

    assert_int_equal(load(&c, "limits:\n  max_uri_bytes: 64k\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "limits.max_uri_bytes (65536) must not exceed "
                             "limits.max_header_bytes (32768)");
    assert_int_equal(load(&c, "limits:\n  max_header_bytes: 64k\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
}

/* require_auth and admin_listen: defaults, the forms admin_listen takes, its
 * errors (as listen's, under its own name), and the checks on final values. */
static void test_auth_admin(void **state)
{
    static const struct err_case cases[] = {
        { "admin_listen: 127.0.0.1:70000\n",
          "t.yaml:1: bad admin_listen address '127.0.0.1:70000': port out of range (0-65535)" },
        { "admin_listen: host\n", "t.yaml:1: bad admin_listen address 'host': expected "
                                  "host:port, [v6]:port, :port or port" },
        { "admin_listen: ::1:80\n", "t.yaml:1: bad admin_listen address '::1:80': an IPv6 "
                                    "address needs brackets: [::1]:port" },
        { "admin_listen: [a]\n", "t.yaml:1: admin_listen: expected a scalar" },
        { "admin_listen: {a: 1}\n", "t.yaml:1: admin_listen: expected a scalar" },
        { "require_auth: maybe\n", "t.yaml:1: require_auth: bad boolean 'maybe' (true or false)" },
        { "require_auth:\n", "t.yaml:1: require_auth: missing value" },
        { "require_auth: [true]\n", "t.yaml:1: require_auth: expected a scalar" },
        { "limits:\n  require_auth: true\n",
          "t.yaml:2: unknown key 'require_auth' in limits (did you mean top-level "
          "require_auth?)" },
    };
    struct cfg c;

    cfg_init(&c);
    assert_false(c.require_auth);
    assert_false(c.admin);
    assert_string_equal(c.admin_host, "");
    assert_int_equal(c.admin_port, 0);

    assert_int_equal(load(&c, "admin_listen: 127.0.0.1:9091\nrequire_auth: true\n"), 0);
    assert_true(c.admin);
    assert_string_equal(c.admin_host, "127.0.0.1");
    assert_int_equal(c.admin_port, 9091);
    assert_true(c.require_auth);
    /* listen is untouched */
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8080);
    assert_int_equal(load(&c, "admin_listen: \"[::1]:0\"\n"), 0);
    assert_string_equal(c.admin_host, "::1");
    assert_int_equal(c.admin_port, 0);
    assert_int_equal(load(&c, "admin_listen: :9092\n"), 0);
    assert_string_equal(c.admin_host, "0.0.0.0");
    assert_int_equal(c.admin_port, 9092);
    assert_int_equal(load(&c, "admin_listen: 9093\n"), 0);
    assert_string_equal(c.admin_host, "127.0.0.1");
    assert_int_equal(c.admin_port, 9093);
    /* "", ~ and an empty value turn it off again */
    assert_int_equal(load(&c, "admin_listen: \"\"\n"), 0);
    assert_false(c.admin);
    assert_int_equal(load(&c, "admin_listen: 9093\n"), 0);
    assert_int_equal(load(&c, "admin_listen: ~\n"), 0);
    assert_false(c.admin);
    assert_int_equal(load(&c, "admin_listen: 9093\n"), 0);
    assert_int_equal(load(&c, "admin_listen:\nrequire_auth: off\n"), 0);
    assert_false(c.admin);
    assert_false(c.require_auth);

    /* the setter: a failed set changes nothing */
    assert_int_equal(cfg_admin_listen_set(&c, "localhost:9094", err, sizeof(err)), 0);
    assert_int_equal(cfg_admin_listen_set(&c, "localhost:x", err, sizeof(err)), -1);
    assert_string_equal(err, "bad admin_listen address 'localhost:x': bad port");
    assert_true(c.admin);
    assert_string_equal(c.admin_host, "localhost");
    assert_int_equal(c.admin_port, 9094);
    assert_int_equal(cfg_admin_listen_set(&c, "", err, sizeof(err)), 0);
    assert_false(c.admin);
    cfg_release(&c);
    CHECK_ERRORS(cases);

    /* require_auth needs a key, wherever it comes from */
    cfg_init(&c);
    assert_int_equal(cfg_backend_add(&c, "http://a:1", NULL, err, sizeof(err)), 0);
    assert_int_equal(load(&c, "require_auth: true\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "require_auth: true, but no API key is configured: every request "
                             "would be refused (give a tier keys: or key_sha256:)");
    assert_int_equal(load(&c, "tiers:\n  - name: default\n    keys: [k1]\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);

    /* admin_listen on the client address itself */
    assert_int_equal(load(&c, "listen: 127.0.0.1:9000\nadmin_listen: 127.0.0.1:9000\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "admin_listen (127.0.0.1:9000) must differ from listen");
    assert_int_equal(load(&c, "admin_listen: 127.0.0.1:9001\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    /* two free ports: port 0 is no clash */
    assert_int_equal(load(&c, "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    cfg_release(&c);
    (void)state;
}

/* The routing pairs, checked on the final values like measure.stall. */
static void test_validate_routing(void **state)
{
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(cfg_backend_add(&c, "http://a:1", NULL, err, sizeof(err)), 0);
    /* scrape_timeout may equal scrape_interval, not exceed it */
    assert_int_equal(load(&c, "routing:\n  scrape_timeout: 500ms\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    assert_int_equal(load(&c, "routing:\n  scrape_timeout: 501\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "routing.scrape_timeout (501ms) must not exceed "
                             "routing.scrape_interval (500ms)");
    assert_int_equal(load(&c, "routing:\n  scrape_interval: 1s\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    /* scrape_stale must outlast an interval */
    assert_int_equal(load(&c, "routing:\n  scrape_stale: 1s\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "routing.scrape_stale (1s) must be longer than "
                             "routing.scrape_interval (1s)");
    assert_int_equal(load(&c, "routing:\n  scrape_stale: 1001ms\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    /* eject.base <= eject.max */
    assert_int_equal(load(&c, "routing:\n  eject: {base: 2m, max: 1m}\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "routing.eject.base (2m) must not exceed routing.eject.max (1m)");
    assert_int_equal(load(&c, "routing:\n  eject: {base: 1m}\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    /* an alias may not hide a name a backend declares it serves */
    assert_int_equal(load(&c, "backends:\n  - url: http://a:1\n    models: [small, big]\n"
                              "routing:\n  aliases: {big: small}\n"),
                     0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "routing.aliases: 'big' is a model backend 'a:1' serves; it cannot "
                             "also be an alias");
    assert_int_equal(load(&c, "routing:\n  aliases: {large: big}\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    /* keys of a tier that is gone (set by hand) */
    c.nkeys = 1;
    c.key_tier[0] = 3;
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "API key 0 belongs to tier 3, which does not exist");
    cfg_release(&c);
}

/* Phrases are owned by the cfg: a new list frees the old one, a failed load
 * keeps it, release frees it. Leaks show under valgrind or ASan. */
static void test_phrases_ownership(void **state)
{
    struct cfg c;
    const char *first;

    cfg_init(&c);
    assert_int_equal(load(&c, "measure:\n  refusal_phrases: [a, b]\n"), 0);
    assert_int_equal(c.nrefusal, 2);
    assert_int_equal(load(&c, "measure:\n  refusal_phrases: [c]\n"), 0);
    assert_int_equal(c.nrefusal, 1);
    assert_string_equal(c.refusal_phrases[0], "c");
    assert_null(c.refusal_phrases[1]);
    first = c.refusal_phrases[0];
    /* fails after its phrases were copied: they are dropped, ours stay */
    assert_int_equal(load(&c, "measure:\n  refusal_phrases: [d, e]\n  stall: x\n"), -1);
    assert_int_equal(c.nrefusal, 1);
    assert_ptr_equal(c.refusal_phrases[0], first);
    /* a file without the key keeps them */
    assert_int_equal(load(&c, "listen: 1\n"), 0);
    assert_ptr_equal(c.refusal_phrases[0], first);
    /* [] means the built-in list */
    assert_int_equal(load(&c, "measure:\n  refusal_phrases: []\n"), 0);
    assert_int_equal(c.nrefusal, 0);
    assert_null(c.refusal_phrases[0]);
    assert_int_equal(load(&c, "measure:\n  refusal_phrases: [x, y, z]\n"), 0);
    cfg_release(&c);
    assert_int_equal(c.nrefusal, 0);
    cfg_release(&c); /* twice is harmless */
    cfg_init(&c);
    assert_int_equal(c.nrefusal, 0);
}

static void test_load_file(void **state)
{
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(cfg_load_file(&c, "tests/unit/cfg/missing.yaml", err, sizeof(err)), -1);
    assert_string_equal(err, "tests/unit/cfg/missing.yaml: cannot open: No such file or directory");
    assert_int_equal(cfg_load_file(&c, "tests/unit/cfg", err, sizeof(err)), -1);
    assert_string_equal(err, "tests/unit/cfg: cannot read: Is a directory");
    assert_int_equal(cfg_load_file(&c, "tests/unit/cfg/bad.yaml", err, sizeof(err)), -1);
    assert_string_equal(err, "tests/unit/cfg/bad.yaml:9: unknown key 'max_body' in limits");
    assert_int_equal(c.nbackends, 0);
}

/* The sample sets every key to its default, plus two backends. */
static void test_sample_conf(void **state)
{
    struct cfg c, d;

    cfg_init(&c);
    cfg_init(&d);
    if (cfg_load_file(&c, "conf/pitot.yaml", err, sizeof(err)) != 0) {
        print_error("%s\n", err);
        fail();
    }
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    assert_int_equal(c.nbackends, 2);
    assert_string_equal(c.backends[0].url, "http://127.0.0.1:18081");
    assert_string_equal(c.backends[0].name, "replica-a");
    assert_string_equal(c.backends[1].url, "http://127.0.0.1:18082");
    assert_string_equal(c.backends[1].name, "127.0.0.1:18082");
    c.nbackends = 0;
    memset(c.backends, 0, sizeof(c.backends));
    assert_memory_equal(&c, &d, sizeof(c));
    cfg_release(&c);
}

/* The sample's commented-out tier, uncommented, loads: its limits, and its
 * key written as a mapping whose key_sha256 placeholder is a valid digest (of
 * "change-me"), with a name and limits of its own. */
static void test_sample_tier_example(void **state)
{
    unsigned char d[32];
    char line[512], *yaml;
    size_t len = 0, cap = 8192;
    bool in = false;
    struct cfg c;
    FILE *f;

    f = fopen("conf/pitot.yaml", "r");
    assert_non_null(f);
    yaml = malloc(cap);
    assert_non_null(yaml);
    len = (size_t)snprintf(yaml, cap, "tiers:\n");
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strcmp(line, "tiers:\n") == 0) {
            in = true;
            continue;
        }
        if (!in)
            continue;
        if (strncmp(line, "#  ", 3) != 0)
            break;
        len += (size_t)snprintf(yaml + len, cap - len, "%s", line + 1);
        assert_true(len < cap);
    }
    fclose(f);
    assert_true(in);
    cfg_init(&c);
    if (load(&c, yaml) != 0) {
        print_error("%s\n%s\n", yaml, err);
        fail();
    }
    free(yaml);
    assert_int_equal(c.ntiers, 2);
    assert_string_equal(c.tiers[1].name, "premium");
    assert_true(c.tiers[1].priority > 0);
    assert_true(c.tiers[1].slo_ttft_ms > 0);
    assert_true(c.tiers[1].limits.requests_per_minute > 0);
    assert_true(c.tiers[1].limits.tokens_per_minute > 0);
    assert_true(c.tiers[1].limits.max_concurrent > 0);
    assert_int_equal(c.nkeys, 1);
    assert_int_equal(c.key_tier[0], 1);
    sha256("change-me", d);
    assert_memory_equal(c.keys[0].sha256, d, 32);
    assert_string_equal(c.keys[0].name, "premium-batch");
    assert_true(c.keys[0].limits.requests_per_minute > 0);
    cfg_release(&c);
}

/* A backend host that is not an IP literal is a DNS name, expanded into
 * routing.max_addresses slots named name, name/1, ...; IP literals keep one. */
static void test_dns_backends_expand(void **state)
{
    static struct cfg c;
    char msg[512];

    cfg_init(&c);
    assert_int_equal(load(&c, "backends:\n"
                              "  - http://10.0.0.1:8080\n"
                              "  - url: http://llama.default.svc:8080\n"
                              "    name: llama\n"
                              "    models: [m]\n"
                              "  - http://[::1]:9000\n"
                              "  - http://localhost:9001\n"
                              "routing:\n"
                              "  max_addresses: 3\n"
                              "  dns_family: any\n"
                              "  resolver: 127.0.0.1:5353\n"),
                     0);
    assert_false(c.backends[0].dns);
    assert_true(c.backends[1].dns);
    assert_false(c.backends[2].dns);
    assert_true(c.backends[3].dns);
    assert_int_equal(c.dns_family, CFG_DNS_ANY);
    assert_string_equal(c.resolver, "127.0.0.1:5353");
    assert_int_equal(cfg_validate(&c, msg, sizeof(msg)), 0);
    assert_int_equal(cfg_backends_expand(&c, msg, sizeof(msg)), 0);
    assert_int_equal(c.nbackends, 1 + 3 + 1 + 3 + 16);
    assert_int_equal(cfg_backends_live(&c), 1 + 3 + 1 + 3);
    for (unsigned k = 8; k < 8 + 16; k++) { /* routing.spare_backends (16): empty */
        assert_true(c.backends[k].spare);
        assert_string_equal(c.backends[k].name, "");
        assert_int_equal(c.backends[k].group, k);
        assert_int_equal(c.backends[k].slot, 0);
    }
    for (unsigned k = 0; k < 8; k++)
        assert_false(c.backends[k].spare);
    assert_string_equal(c.backends[0].name, "10.0.0.1:8080");
    assert_int_equal(c.backends[0].group, 0);
    assert_string_equal(c.backends[1].name, "llama");
    assert_string_equal(c.backends[2].name, "llama/1");
    assert_string_equal(c.backends[3].name, "llama/2");
    for (unsigned k = 0; k < 3; k++) {
        assert_int_equal(c.backends[1 + k].group, 1);
        assert_int_equal(c.backends[1 + k].slot, k);
        assert_string_equal(c.backends[1 + k].host, "llama.default.svc");
        assert_string_equal(c.backends[1 + k].models[0], "m");
        assert_string_equal(cfg_backend_authority(&c.backends[1 + k]), "llama.default.svc:8080");
    }
    assert_string_equal(c.backends[4].name, "[::1]:9000");
    assert_int_equal(c.backends[4].group, 4);
    assert_string_equal(c.backends[5].name, "localhost:9001");
    assert_string_equal(c.backends[7].name, "localhost:9001/2");
    assert_int_equal(c.backends[7].group, 5);
    assert_int_equal(c.backends[7].slot, 2);
    cfg_release(&c);

    /* max_addresses 1: a name keeps one entry, still looked up again */
    cfg_init(&c);
    assert_int_equal(load(&c, "backends: [http://a.example:1, http://b.example:2]\n"
                              "routing: {max_addresses: 1}\n"),
                     0);
    assert_int_equal(cfg_backends_expand(&c, msg, sizeof(msg)), 0);
    assert_int_equal(c.nbackends, 2 + 16);
    assert_true(c.backends[1].dns);
    assert_int_equal(c.backends[1].group, 1);
    cfg_release(&c);
    (void)state;
}

static void test_dns_errors(void **state)
{
    static struct cfg c;
    static const struct err_case cases[] = {
        { "routing:\n  resolver: dns.example:53\n",
          "t.yaml:2: bad routing.resolver 'dns.example:53': expected an IP address (the DNS "
          "server's), not a name" },
        { "routing:\n  resolver: 10.0.0.1:0\n",
          "t.yaml:2: bad routing.resolver '10.0.0.1:0': port out of range (1-65535)" },
        { "routing:\n  dns_family: ipv5\n",
          "t.yaml:2: routing.dns_family: bad dns_family 'ipv5' (auto, ipv4, ipv6 or any)" },
    };
    char msg[512];
    size_t i;

    CHECK_ERRORS(cases);

    /* default port 53, IPv6 in brackets, "" back to the system's */
    cfg_init(&c);
    assert_int_equal(load(&c, "routing: {resolver: '[fd00::53]'}\n"), 0);
    assert_string_equal(c.resolver, "[fd00::53]:53");
    assert_int_equal(load(&c, "routing: {resolver: ''}\n"), 0);
    assert_string_equal(c.resolver, "");
    cfg_release(&c);

    /* 9 names x 8 slots do not fit in 64 */
    cfg_init(&c);
    for (i = 0; i < 9; i++) {
        char url[64];
        snprintf(url, sizeof(url), "http://n%zu.example:80", i);
        assert_int_equal(cfg_backend_add(&c, url, NULL, msg, sizeof(msg)), 0);
    }
    assert_int_equal(cfg_validate(&c, msg, sizeof(msg)), -1);
    assert_string_equal(msg, "backends given by host name take routing.max_addresses (8) slots "
                             "each: 72 slots in all, more than 64; lower routing.max_addresses");
    c.max_addresses = 7;
    assert_int_equal(cfg_validate(&c, msg, sizeof(msg)), 0);
    cfg_release(&c);

    /* a slot name must fit and must not be taken */
    cfg_init(&c);
    assert_int_equal(load(&c, "backends:\n"
                              "  - {url: 'http://a.example', name: svc}\n"
                              "  - {url: 'http://10.0.0.1', name: svc/2}\n"),
                     0);
    assert_int_equal(cfg_validate(&c, msg, sizeof(msg)), -1);
    assert_string_equal(msg, "backend name 'svc/2' is taken by an address slot of backend 'svc'; "
                             "rename it");
    cfg_release(&c);
    cfg_init(&c);
    assert_int_equal(load(&c, "backends:\n"
                              "  - {url: 'http://a.example', name: "
                              "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc}\n"),
                     0);
    assert_int_equal(cfg_validate(&c, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "no room for its address slot names"));
    cfg_release(&c);
    (void)state;
}

/* opentelemetry.traces: defaults, every key, endpoints with and without a
 * port or path, off again with "" or null, and every error. */
static void test_otel_traces(void **state)
{
    static const struct err_case cases[] = {
        { "opentelemetry:\n  traces:\n    endpoint: https://u@c:4318\n",
          "t.yaml:3: bad opentelemetry.traces.endpoint 'https://u@c:4318': userinfo (user@) is "
          "not allowed" },
        { "opentelemetry:\n  traces:\n    endpoint: grpc://c:4317\n",
          "t.yaml:3: bad opentelemetry.traces.endpoint 'grpc://c:4317': expected "
          "http[s]://host[:port][/path]" },
        { "opentelemetry:\n  traces:\n    endpoint: c:4318\n",
          "t.yaml:3: bad opentelemetry.traces.endpoint 'c:4318': expected "
          "http[s]://host[:port][/path]" },
        { "opentelemetry:\n  traces:\n    ca_file: \"a\\nb\"\n",
          "t.yaml:3: opentelemetry.traces.ca_file: control characters are not allowed" },
        { "opentelemetry:\n  traces:\n    endpoint: http://c:4318/v1/traces?x=1\n",
          "t.yaml:3: bad opentelemetry.traces.endpoint 'http://c:4318/v1/traces?x=1': a query "
          "is not allowed" },
        { "opentelemetry:\n  traces:\n    endpoint: http://u@c:4318\n",
          "t.yaml:3: bad opentelemetry.traces.endpoint 'http://u@c:4318': userinfo (user@) is "
          "not allowed" },
        { "opentelemetry:\n  traces:\n    endpoint: http://c:0\n",
          "t.yaml:3: bad opentelemetry.traces.endpoint 'http://c:0': port out of range "
          "(1-65535)" },
        { "opentelemetry:\n  traces:\n    endpoint: http://:4318\n",
          "t.yaml:3: bad opentelemetry.traces.endpoint 'http://:4318': empty host" },
        { "opentelemetry:\n  traces:\n    endpoint: \"http://c:1/a b\"\n",
          "t.yaml:3: bad opentelemetry.traces.endpoint 'http://c:1/a b': the path has "
          "characters outside [A-Za-z0-9-._~/%!$&'()*+,;=:@]" },
        { "opentelemetry:\n  traces:\n    endpoint: [http://c:1]\n",
          "t.yaml:3: opentelemetry.traces.endpoint: expected a scalar" },
        { "opentelemetry:\n  traces:\n    queue_size: 0\n",
          "t.yaml:3: opentelemetry.traces.queue_size: 0 is out of range (1..1000000)" },
        { "opentelemetry:\n  traces:\n    batch_size: 8193\n",
          "t.yaml:3: opentelemetry.traces.batch_size: 8193 is out of range (1..8192)" },
        { "opentelemetry:\n  traces:\n    interval: soon\n",
          "t.yaml:3: opentelemetry.traces.interval: bad duration 'soon' (milliseconds, or with "
          "an ms, s or m suffix: 10s)" },
        { "opentelemetry:\n  traces:\n    timeout: 0\n",
          "t.yaml:3: opentelemetry.traces.timeout: 0 is out of range (1ms..1440m)" },
        { "opentelemetry:\n  traces:\n    service_name: \"\"\n",
          "t.yaml:3: opentelemetry.traces.service_name: empty value" },
        { "opentelemetry:\n  traces:\n    service_name: \"a\\tb\"\n",
          "t.yaml:3: opentelemetry.traces.service_name: control characters are not allowed" },
        { "opentelemetry:\n  traces:\n    service_name:\n",
          "t.yaml:3: opentelemetry.traces.service_name: missing value" },
        { "opentelemetry:\n  traces:\n    sampler: always\n",
          "t.yaml:3: unknown key 'sampler' in opentelemetry.traces" },
        { "opentelemetry:\n  traces:\n    interval: 1s\n    interval: 2s\n",
          "t.yaml:4: duplicate key 'interval' in opentelemetry.traces" },
    };
    struct cfg c;
    char name[200];
    size_t pre;

    cfg_init(&c);
    assert_string_equal(c.otel_trace_url, "");
    assert_string_equal(c.otel_trace_path, "/v1/traces");
    assert_string_equal(c.otel_service_name, "pitot");
    assert_int_equal(c.otel_queue_size, 2048);
    assert_int_equal(c.otel_batch_size, 512);
    assert_int_equal(c.otel_trace_interval_ms, 1000);
    assert_int_equal(c.otel_trace_timeout_ms, 5000);

    assert_int_equal(load(&c, "opentelemetry:\n"
                              "  traces:\n"
                              "    endpoint: http://collector.local:4318\n"
                              "    service_name: \"llm gateway \\\"eu\\\"\"\n"
                              "    queue_size: 100\n"
                              "    batch_size: 10\n"
                              "    interval: 250ms\n"
                              "    timeout: 2s\n"),
                     0);
    assert_string_equal(c.otel_trace_url, "http://collector.local:4318");
    assert_string_equal(c.otel_trace_host, "collector.local");
    assert_int_equal(c.otel_trace_port, 4318);
    assert_string_equal(c.otel_trace_path, "/v1/traces");
    assert_string_equal(c.otel_service_name, "llm gateway \"eu\"");
    assert_int_equal(c.otel_queue_size, 100);
    assert_int_equal(c.otel_batch_size, 10);
    assert_int_equal(c.otel_trace_interval_ms, 250);
    assert_int_equal(c.otel_trace_timeout_ms, 2000);
    assert_false(c.otel_metrics); /* the sibling key is left alone */

    assert_int_equal(load(&c, "opentelemetry:\n  traces:\n"
                              "    endpoint: http://[::1]:4318/otlp/v1/traces\n"),
                     0);
    assert_string_equal(c.otel_trace_host, "::1");
    assert_int_equal(c.otel_trace_port, 4318);
    assert_string_equal(c.otel_trace_path, "/otlp/v1/traces");
    assert_int_equal(load(&c, "opentelemetry:\n  traces:\n    endpoint: http://otel/\n"), 0);
    assert_string_equal(c.otel_trace_host, "otel");
    assert_int_equal(c.otel_trace_port, 80);
    assert_string_equal(c.otel_trace_path, "/v1/traces");
    assert_int_equal(c.otel_queue_size, 100); /* untouched keys keep their value */
    /* "" and a key without value turn the export off */
    assert_int_equal(load(&c, "opentelemetry:\n  traces:\n    endpoint: \"\"\n"), 0);
    assert_string_equal(c.otel_trace_url, "");
    assert_string_equal(c.otel_trace_host, "");
    assert_int_equal(load(&c, "opentelemetry:\n  traces:\n    endpoint: http://otel:1\n"), 0);
    assert_int_equal(load(&c, "opentelemetry:\n  traces:\n    endpoint:\n"), 0);
    assert_string_equal(c.otel_trace_url, "");
    assert_false(c.otel_trace_https);
    /* https: port 443 by default, verified (the system's CAs or ca_file) */
    assert_string_equal(c.otel_tls.ca_file, "");
    assert_true(c.otel_tls.verify);
    assert_int_equal(load(&c, "opentelemetry:\n  traces:\n    endpoint: HTTPS://otel.example\n"
                              "    ca_file: /etc/pitot/otel-ca.pem\n"),
                     0);
    assert_true(c.otel_trace_https);
    assert_string_equal(c.otel_trace_host, "otel.example");
    assert_int_equal(c.otel_trace_port, 443);
    assert_string_equal(c.otel_trace_path, "/v1/traces");
    assert_string_equal(c.otel_tls.ca_file, "/etc/pitot/otel-ca.pem");
    assert_int_equal(load(&c, "opentelemetry:\n  traces:\n    endpoint: https://[::1]:4318/x\n"
                              "    ca_file: \"\"\n"),
                     0);
    assert_true(c.otel_trace_https);
    assert_int_equal(c.otel_trace_port, 4318);
    assert_string_equal(c.otel_trace_path, "/x");
    assert_string_equal(c.otel_tls.ca_file, "");
    assert_int_equal(load(&c, "opentelemetry:\n  traces:\n    endpoint: http://otel:1\n"), 0);
    assert_false(c.otel_trace_https);
    cfg_release(&c);

    /* a name of 127 bytes is the longest */
    strcpy(name, "opentelemetry:\n  traces:\n    service_name: ");
    pre = strlen(name);
    memset(name + pre, 'n', 127);
    strcpy(name + pre + 127, "\n");
    cfg_init(&c);
    assert_int_equal(load(&c, name), 0);
    assert_int_equal(strlen(c.otel_service_name), 127);
    strcpy(name + pre + 127, "n\n");
    assert_int_equal(load(&c, name), -1);
    assert_string_equal(err, "t.yaml:3: opentelemetry.traces.service_name: longer than 127 bytes");
    cfg_release(&c);
    CHECK_ERRORS(cases);
    (void)state;
}

/* batch_size may not exceed queue_size, whichever source set them. */
static void test_validate_otel(void **state)
{
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(cfg_backend_add(&c, "http://a:1", NULL, err, sizeof(err)), 0);
    assert_int_equal(load(&c, "opentelemetry:\n  traces:\n    queue_size: 512\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0); /* batch 512 = queue 512 */
    assert_int_equal(load(&c, "opentelemetry:\n  traces:\n    batch_size: 600\n"), 0);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "opentelemetry.traces.batch_size (600) must not exceed "
                             "opentelemetry.traces.queue_size (512)");
    cfg_release(&c);
    (void)state;
}

/* The sample's commented-out opentelemetry.traces block (inside the
 * opentelemetry section, so that uncommenting it in place adds no second
 * section), uncommented, loads with every traces key at its default but the
 * endpoint. */
static void test_sample_otel_example(void **state)
{
    char line[512], *yaml;
    size_t len = 0, cap = 8192;
    bool in = false;
    struct cfg c, d;
    FILE *f;

    f = fopen("conf/pitot.yaml", "r");
    assert_non_null(f);
    yaml = malloc(cap);
    assert_non_null(yaml);
    len = (size_t)snprintf(yaml, cap, "opentelemetry:\n");
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strcmp(line, "#  traces:\n") == 0)
            in = true;
        if (!in)
            continue;
        if (line[0] != '#')
            break;
        len += (size_t)snprintf(yaml + len, cap - len, "%s", line + 1);
        assert_true(len < cap);
    }
    fclose(f);
    assert_true(in);
    cfg_init(&c);
    cfg_init(&d);
    if (load(&c, yaml) != 0) {
        print_error("%s\n%s\n", yaml, err);
        fail();
    }
    free(yaml);
    assert_string_equal(c.otel_trace_url, "http://127.0.0.1:4318");
    assert_string_equal(c.otel_trace_host, "127.0.0.1");
    assert_int_equal(c.otel_trace_port, 4318);
    memcpy(d.otel_trace_url, c.otel_trace_url, sizeof(d.otel_trace_url));
    memcpy(d.otel_trace_host, c.otel_trace_host, sizeof(d.otel_trace_host));
    d.otel_trace_port = c.otel_trace_port;
    assert_memory_equal(&c, &d, sizeof(c));
    cfg_release(&c);
    (void)state;
}

/* The lines of conf/pitot.yaml that start with `prefix` right after the
 * line `after` (and the indented comments that continue it), without their
 * first character (the '#'), after `head`. */
static char *sample_block(const char *after, const char *prefix, const char *head)
{
    char line[512], *yaml;
    size_t len, cap = 8192, got = 0;
    bool in = false;
    FILE *f = fopen("conf/pitot.yaml", "r");

    assert_non_null(f);
    yaml = malloc(cap);
    assert_non_null(yaml);
    len = (size_t)snprintf(yaml, cap, "%s", head);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (!in) {
            in = strncmp(line, after, strlen(after)) == 0;
            continue;
        }
        if (strncmp(line, prefix, strlen(prefix)) != 0) {
            if (got == 0 && line[0] == ' ' && line[strspn(line, " ")] == '#')
                continue; /* the comment of the line before, continued */
            break;
        }
        len += (size_t)snprintf(yaml + len, cap - len, "%s", line + 1);
        assert_true(len < cap);
        got++;
    }
    fclose(f);
    assert_true(in && got > 0);
    return yaml;
}

/* The sample's commented-out TLS examples, uncommented, load: two listener
 * certificates, an https backend with every tls key. */
static void test_sample_tls_examples(void **state)
{
    char *yaml = sample_block("  certificates:", "#    ", "tls:\n  certificates:\n");
    struct cfg c;

    cfg_init(&c);
    if (load(&c, yaml) != 0) {
        print_error("%s\n%s\n", yaml, err);
        fail();
    }
    free(yaml);
    assert_int_equal(c.ntls_certs, 2);
    assert_string_equal(c.tls_certs[0].cert, "/etc/pitot/tls/api.example.com.crt");
    assert_string_equal(c.tls_certs[1].key, "/etc/pitot/tls/internal.example.com.key");
    yaml = sample_block("  - http://127.0.0.1:18082", "#  ", "backends:\n");
    if (load(&c, yaml) != 0) {
        print_error("%s\n%s\n", yaml, err);
        fail();
    }
    free(yaml);
    assert_int_equal(c.nbackends, 1);
    assert_true(c.backends[0].https);
    assert_string_equal(c.backends[0].name, "replica-c");
    assert_string_equal(c.backends[0].url, "https://gpu-3.internal:8443");
    assert_string_equal(c.backends[0].tls.ca_file, "/etc/pitot/tls/backend-ca.crt");
    assert_string_equal(c.backends[0].tls.server_name, "llm.internal");
    assert_string_equal(c.backends[0].tls.cert, "/etc/pitot/tls/pitot-client.crt");
    assert_string_equal(c.backends[0].tls.key, "/etc/pitot/tls/pitot-client.key");
    assert_true(c.backends[0].tls.verify);
    cfg_release(&c);
    (void)state;
}

/* tls: the listener's certificates (a list of {cert, key}, lines kept for
 * the messages of tls_check) and min_version; every error. */
static void test_tls_listener(void **state)
{
    static const struct err_case cases[] = {
        { "tls:\n  min_version: 1.1\n",
          "t.yaml:2: tls.min_version: bad min_version '1.1' (1.2 or 1.3)" },
        { "tls:\n  min_version: \"1.0\"\n",
          "t.yaml:2: tls.min_version: bad min_version '1.0' (1.2 or 1.3)" },
        { "tls:\n  min_version: TLSv1.2\n",
          "t.yaml:2: tls.min_version: bad min_version 'TLSv1.2' (1.2 or 1.3)" },
        { "tls:\n  certificates: /etc/a.crt\n", "t.yaml:2: tls.certificates: expected a sequence" },
        { "tls:\n  certificates:\n    - /etc/a.crt\n",
          "t.yaml:3: tls.certificates: expected a mapping with cert: and key:" },
        { "tls:\n  certificates:\n    - cert: /a.crt\n",
          "t.yaml:3: tls.certificates: entry without key" },
        { "tls:\n  certificates:\n    - key: /a.key\n",
          "t.yaml:3: tls.certificates: entry without cert" },
        { "tls:\n  certificates:\n    - cert: /a.crt\n      key: \"\"\n",
          "t.yaml:4: tls.certificates.key: empty value" },
        { "tls:\n  certificates:\n    - cert: /a.crt\n      key: /a.key\n      chain: /c\n",
          "t.yaml:5: unknown key 'chain' in tls.certificates" },
        { "tls:\n  certificates:\n    - cert: [/a.crt]\n      key: /a.key\n",
          "t.yaml:3: tls.certificates.cert: expected a scalar" },
        { "tls:\n  cert: /a.crt\n", "t.yaml:2: unknown key 'cert' in tls" },
        { "tls:\n  ciphers: HIGH\n", "t.yaml:2: unknown key 'ciphers' in tls" },
        { "certificates: []\n",
          "t.yaml:1: unknown key 'certificates' at top level (did you mean tls.certificates?)" },
    };
    struct cfg c;
    char yaml[4096], long_path[CFG_PATH_MAX + 1];
    size_t len, i;

    cfg_init(&c);
    assert_int_equal(c.ntls_certs, 0);
    assert_int_equal(c.tls_min_version, CFG_TLS_1_2);
    assert_int_equal(load(&c, "listen: 127.0.0.1:8443\n"
                              "tls:\n"
                              "  certificates:\n"
                              "    - cert: /etc/pitot/a.crt\n"
                              "      key: /etc/pitot/a.key\n"
                              "    - {key: /etc/pitot/b.key, cert: /etc/pitot/b.crt}\n"
                              "  min_version: \"1.3\"\n"),
                     0);
    assert_int_equal(c.ntls_certs, 2);
    assert_string_equal(c.tls_certs[0].cert, "/etc/pitot/a.crt");
    assert_string_equal(c.tls_certs[0].key, "/etc/pitot/a.key");
    assert_int_equal(c.tls_certs[0].line, 4);
    assert_string_equal(c.tls_certs[1].cert, "/etc/pitot/b.crt");
    assert_string_equal(c.tls_certs[1].key, "/etc/pitot/b.key");
    assert_int_equal(c.tls_certs[1].line, 6);
    assert_int_equal(c.tls_min_version, CFG_TLS_1_3);
    /* the list replaces the one before; an empty one is plain HTTP again */
    assert_int_equal(load(&c, "tls:\n  certificates:\n    - {cert: /c, key: /k}\n"
                              "  min_version: 1.2\n"),
                     0);
    assert_int_equal(c.ntls_certs, 1);
    assert_string_equal(c.tls_certs[0].cert, "/c");
    assert_string_equal(c.tls_certs[1].cert, "");
    assert_int_equal(c.tls_min_version, CFG_TLS_1_2);
    assert_int_equal(load(&c, "tls:\n  certificates: []\n"), 0);
    assert_int_equal(c.ntls_certs, 0);
    assert_int_equal(load(&c, "tls:\n"), 0); /* an empty section changes nothing */
    cfg_release(&c);
    CHECK_ERRORS(cases);

    /* 16 certificates at most; paths of 511 bytes at most */
    len = (size_t)snprintf(yaml, sizeof(yaml), "tls:\n  certificates:\n");
    for (i = 0; i <= CFG_MAX_CERTS; i++)
        len +=
            (size_t)snprintf(yaml + len, sizeof(yaml) - len, "    - {cert: /c%zu, key: /k}\n", i);
    cfg_init(&c);
    assert_int_equal(load(&c, yaml), -1);
    assert_string_equal(err, "t.yaml:19: too many certificates (at most 16)");
    memset(long_path, 'p', CFG_PATH_MAX);
    long_path[CFG_PATH_MAX] = '\0';
    snprintf(yaml, sizeof(yaml), "tls:\n  certificates:\n    - {cert: /c, key: %s}\n", long_path);
    assert_int_equal(load(&c, yaml), -1);
    assert_string_equal(err, "t.yaml:3: tls.certificates.key: longer than 511 bytes");
    long_path[CFG_PATH_MAX - 1] = '\0';
    snprintf(yaml, sizeof(yaml), "tls:\n  certificates:\n    - {cert: /c, key: %s}\n", long_path);
    assert_int_equal(load(&c, yaml), 0);
    assert_int_equal(strlen(c.tls_certs[0].key), CFG_PATH_MAX - 1);
    cfg_release(&c);
    (void)state;
}

/* --tls-cert/--tls-key: one certificate in place of the file's list. */
static void test_tls_cert_set(void **state)
{
    char long_path[CFG_PATH_MAX + 1];
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(load(&c, "tls:\n  certificates:\n    - {cert: /a, key: /ak}\n"
                              "    - {cert: /b, key: /bk}\n"),
                     0);
    assert_int_equal(cfg_tls_cert_set(&c, "/x.crt", "/x.key", err, sizeof(err)), 0);
    assert_int_equal(c.ntls_certs, 1);
    assert_string_equal(c.tls_certs[0].cert, "/x.crt");
    assert_string_equal(c.tls_certs[0].key, "/x.key");
    assert_int_equal(c.tls_certs[0].line, 0); /* not from the file */
    assert_string_equal(c.tls_certs[1].cert, "");
    assert_int_equal(cfg_tls_cert_set(&c, "", "/x.key", err, sizeof(err)), -1);
    assert_string_equal(err, "empty certificate path");
    assert_int_equal(cfg_tls_cert_set(&c, "/x.crt", "", err, sizeof(err)), -1);
    assert_string_equal(err, "empty key path");
    memset(long_path, 'p', CFG_PATH_MAX);
    long_path[CFG_PATH_MAX] = '\0';
    assert_int_equal(cfg_tls_cert_set(&c, long_path, "/k", err, sizeof(err)), -1);
    assert_string_equal(err, "certificate path longer than 511 bytes");
    assert_string_equal(c.tls_certs[0].cert, "/x.crt"); /* unchanged by a failure */
    cfg_release(&c);
    (void)state;
}

/* https backends: port 443, Host and default name with it, verification on;
 * backends[].tls with every key, only for https; every error. */
static void test_backend_tls(void **state)
{
    static const struct err_case cases[] = {
        { "backends:\n  - url: http://a:1\n    tls:\n      verify: false\n",
          "t.yaml:4: backends.tls: the URL 'http://a:1' is http://; tls is only for https://" },
        { "backends:\n  - url: http://a:1\n    tls: {}\n",
          "t.yaml:3: backends.tls: the URL 'http://a:1' is http://; tls is only for https://" },
        { "backends:\n  - url: https://a\n    tls: [x]\n",
          "t.yaml:3: backends.tls: expected a mapping" },
        { "backends:\n  - url: https://a\n    tls:\n      cert: /c.pem\n",
          "t.yaml:4: backends.tls: a client certificate needs both cert and key" },
        { "backends:\n  - url: https://a\n    tls:\n      key: /k.pem\n",
          "t.yaml:4: backends.tls: a client certificate needs both cert and key" },
        { "backends:\n  - url: https://a\n    tls:\n      verify: maybe\n",
          "t.yaml:4: backends.tls.verify: bad boolean 'maybe' (true or false)" },
        { "backends:\n  - url: https://a\n    tls:\n      ca_file: \"\"\n",
          "t.yaml:4: backends.tls.ca_file: empty value" },
        { "backends:\n  - url: https://a\n    tls:\n      ca_file:\n",
          "t.yaml:4: backends.tls.ca_file: missing value" },
        { "backends:\n  - url: https://a\n    tls:\n      server_name: a/b\n",
          "t.yaml:4: backends.tls.server_name: 'a/b' is not a host name (letters, digits and "
          ".-_) or an IP address" },
        { "backends:\n  - url: https://a\n    tls:\n      sni: b\n",
          "t.yaml:4: unknown key 'sni' in backends.tls" },
        { "backends:\n  - url: https://a\n    tls:\n      verify: false\n      verify: true\n",
          "t.yaml:5: duplicate key 'verify' in backends.tls" },
    };
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(load(&c, "backends:\n"
                              "  - https://gpu-1.internal\n"
                              "  - url: https://10.0.0.2:8443/\n"
                              "    name: gpu-2\n"
                              "    tls:\n"
                              "      ca_file: /etc/pitot/ca.pem\n"
                              "      server_name: llm.internal\n"
                              "      cert: /etc/pitot/client.pem\n"
                              "      key: /etc/pitot/client.key\n"
                              "      verify: true\n"
                              "  - url: https://[::1]:9443\n"
                              "    tls: {verify: false}\n"
                              "  - http://10.0.0.4:8080\n"),
                     0);
    assert_int_equal(c.nbackends, 4);
    assert_true(c.backends[0].https);
    assert_string_equal(c.backends[0].url, "https://gpu-1.internal:443");
    assert_string_equal(c.backends[0].name, "gpu-1.internal:443");
    assert_string_equal(cfg_backend_authority(&c.backends[0]), "gpu-1.internal:443");
    assert_int_equal(c.backends[0].port, 443);
    assert_true(c.backends[0].dns);
    assert_true(c.backends[0].tls.verify);
    assert_string_equal(c.backends[0].tls.ca_file, "");
    assert_string_equal(c.backends[0].tls.server_name, "");
    assert_int_equal(c.backends[0].tls.line, 0);
    assert_true(c.backends[1].https);
    assert_string_equal(c.backends[1].name, "gpu-2");
    assert_string_equal(cfg_backend_authority(&c.backends[1]), "10.0.0.2:8443");
    assert_string_equal(c.backends[1].tls.ca_file, "/etc/pitot/ca.pem");
    assert_string_equal(c.backends[1].tls.server_name, "llm.internal");
    assert_string_equal(c.backends[1].tls.cert, "/etc/pitot/client.pem");
    assert_string_equal(c.backends[1].tls.key, "/etc/pitot/client.key");
    assert_true(c.backends[1].tls.verify);
    assert_int_equal(c.backends[1].tls.line, 6);
    assert_string_equal(c.backends[2].url, "https://[::1]:9443");
    assert_string_equal(c.backends[2].name, "[::1]:9443");
    assert_false(c.backends[2].tls.verify); /* only because it is written */
    assert_int_equal(c.backends[2].tls.line, 12);
    assert_false(c.backends[3].https);
    assert_int_equal(c.backends[3].port, 8080);
    assert_string_equal(cfg_backend_authority(&c.backends[3]), "10.0.0.4:8080");
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    /* the slots of a name keep its TLS settings */
    assert_int_equal(cfg_backends_expand(&c, err, sizeof(err)), 0);
    assert_int_equal(c.nbackends, 8 + 3 + 16); /* and routing.spare_backends */
    assert_string_equal(c.backends[8].name, "gpu-2");
    assert_true(c.backends[1].https);
    assert_string_equal(c.backends[1].name, "gpu-1.internal:443/1");
    assert_true(c.backends[1].tls.verify);
    cfg_release(&c);

    cfg_init(&c);
    assert_int_equal(cfg_backend_add(&c, "https://Example.COM", NULL, err, sizeof(err)), 0);
    assert_true(c.backends[0].https);
    assert_string_equal(c.backends[0].url, "https://Example.COM:443");
    assert_string_equal(c.backends[0].name, "Example.COM:443");
    assert_true(c.backends[0].tls.verify);
    cfg_release(&c);
    CHECK_ERRORS(cases);
    (void)state;
}

/* limits.body_deadline and limits.min_body_rate: defaults, parsing, ranges;
 * max_clients as RLIMIT_NOFILE allows. */
static void test_body_limits_and_fds(void **state)
{
    static const struct err_case cases[] = {
        { "limits:\n  body_deadline: 0\n",
          "t.yaml:2: limits.body_deadline: 0 is out of range (1ms..1440m)" },
        { "limits:\n  body_deadline: 1441m\n",
          "t.yaml:2: limits.body_deadline: 1441m is out of range (1ms..1440m)" },
        { "limits:\n  min_body_rate: 2g\n",
          "t.yaml:2: limits.min_body_rate: 2g is out of range (0..1g)" },
        { "limits:\n  min_body_rate: -1\n", "t.yaml:2: limits.min_body_rate: bad size '-1' (bytes, "
                                            "or with a k, m or g suffix: 256k)" },
        { "limits:\n  body_deadline: 5 m\n",
          "t.yaml:2: limits.body_deadline: bad duration '5 m' (milliseconds, or with an ms, s or m "
          "suffix: 10s)" },
    };
    struct cfg c;

    cfg_init(&c);
    assert_int_equal(c.body_deadline_ms, 300000);
    assert_int_equal(c.min_body_rate, 500);
    assert_int_equal(load(&c, "limits:\n  body_deadline: 90s\n  min_body_rate: 2k\n"), 0);
    assert_int_equal(c.body_deadline_ms, 90000);
    assert_int_equal(c.min_body_rate, 2048);
    assert_int_equal(load(&c, "limits:\n  min_body_rate: 0\n"), 0);
    assert_int_equal(c.min_body_rate, 0);
    assert_int_equal(c.body_deadline_ms, 90000); /* untouched */
    cfg_release(&c);
    CHECK_ERRORS(cases);

    /* two descriptors a client (its own, its backend's); pitot's own are
     * 22 plus, per backend, upstream.keepalive (64 by default) + 3 */
    cfg_init(&c);
    assert_int_equal(cfg_backend_add(&c, "http://127.0.0.1:1", NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg_fd_max_clients(&c, 256), (256 - 22 - 67) / 2);
    assert_int_equal(cfg_fd_max_clients(&c, 1024), (1024 - 89) / 2);
    c.upstream_keepalive = 16;
    assert_int_equal(cfg_fd_max_clients(&c, 256), (256 - 22 - 19) / 2);
    assert_int_equal(cfg_backend_add(&c, "http://127.0.0.1:2", NULL, err, sizeof(err)), 0);
    c.upstream_keepalive = 100;
    assert_int_equal(cfg_fd_max_clients(&c, 1024), (1024 - 22 - 2 * 103) / 2);
    /* not one client: 0; a huge limit does not overflow */
    assert_int_equal(cfg_fd_max_clients(&c, 228), 0);
    assert_int_equal(cfg_fd_max_clients(&c, 231), 1);
    assert_int_equal(cfg_fd_max_clients(&c, 0), 0);
    assert_int_equal(cfg_fd_max_clients(&c, ~0ull), ~0u);
    /* every worker keeps its own */
    c.workers = 2;
    assert_int_equal(cfg_fd_max_clients(&c, 1024), (1024 - 2 * (22 + 2 * 103)) / 2);
    cfg_release(&c);
    (void)state;
}

/* A reload keeps what a running pitot cannot change and applies the rest. */
static void test_reload_keep(void **state)
{
    struct cfg *old = cfg_new(), *next = cfg_new();
    char kept[256];

    assert_non_null(old);
    assert_non_null(next);
    assert_int_equal(load(old, "backends: [{url: http://10.0.0.1:80}]\n"
                               "tiers:\n  - name: default\n  - name: gold\n    keys: [k1]\n"
                               "limits: {max_body_bytes: 1000}\n"),
                     0);
    /* the same text again: nothing kept, whatever lies past the strings' ends */
    assert_int_equal(load(next, "backends: [{url: http://10.0.0.1:80}]\n"
                                "tiers:\n  - name: default\n  - name: gold\n    keys: [k1]\n"
                                "limits: {max_body_bytes: 2000}\n"
                                "routing: {aliases: {a: b}}\n"),
                     0);
    memset(next->backends[0].name + strlen(next->backends[0].name) + 1, 'x', 4);
    cfg_reload_keep(old, next, kept, sizeof(kept));
    assert_string_equal(kept, "");
    assert_int_equal(next->max_body_bytes, 2000); /* applies */
    assert_int_equal(next->naliases, 1);
    cfg_drop(next);

    /* a backend more (cfg_backends_place's), a tier renamed
     * (cfg_tiers_place's), new buckets, another listen: kept, said */
    next = cfg_new();
    assert_int_equal(load(next, "listen: 127.0.0.1:9999\n"
                                "backends: [{url: http://10.0.0.1:80}, {url: http://10.0.0.2:80}]\n"
                                "tiers:\n  - name: default\n  - name: silver\n    keys: [k2]\n"
                                "measure: {buckets: [1, 2]}\n"
                                "limits: {max_body_bytes: 3000}\n"),
                     0);
    cfg_reload_keep(old, next, kept, sizeof(kept));
    assert_string_equal(kept, "listen, measure.buckets");
    assert_int_equal(next->nbackends, 2);
    assert_string_equal(next->backends[1].url, "http://10.0.0.2:80");
    assert_int_equal(next->listen_port, old->listen_port);
    assert_string_equal(next->tiers[1].name, "silver");
    assert_int_equal(next->nbuckets, old->nbuckets);
    assert_int_equal(next->max_body_bytes, 3000); /* the rest applies */
    cfg_drop(next);
    /* a small buffer: cut, NUL-terminated, and still everything kept */
    next = cfg_new();
    assert_int_equal(load(next, "backends: [{url: http://10.0.0.9:80}]\nworkers: 3\n"
                                "routing: {spare_backends: 2}\n"),
                     0);
    cfg_reload_keep(old, next, kept, 8);
    assert_string_equal(kept, "routing");
    assert_int_equal(next->spare_backends, old->spare_backends);
    assert_int_equal(next->workers, old->workers);
    /* counted generations; one from cfg_init is not counted */
    assert_ptr_equal(cfg_hold(next), next);
    cfg_drop(next);
    cfg_drop(next);
    cfg_drop(old);
    {
        struct cfg plain;
        cfg_init(&plain);
        assert_ptr_equal(cfg_hold(&plain), &plain);
        cfg_drop(&plain); /* not freed: it is not the heap's */
        cfg_release(&plain);
    }
    (void)state;
}

/* Reloads lay their tiers out in the running table: names keep their
 * slots, new ones take never-used slots, removed ones keep theirs (name
 * too) for their return; the keys follow their tiers. */
static void test_tiers_place(void **state)
{
    struct cfg *cur = cfg_new(), *next = cfg_new();
    bool added[CFG_MAX_TIERS], removed[CFG_MAX_TIERS];
    char msg[256];
    size_t i;

    assert_int_equal(load(cur, "tiers:\n  - name: default\n  - name: gold\n    keys: [kg]\n"
                               "  - name: free\n    keys: [kf]\n"),
                     0);
    cfg_tiers_expand(cur);
    assert_int_equal(cur->ntiers, CFG_MAX_TIERS);
    assert_true(cur->tiers[3].spare);
    assert_string_equal(cur->tiers[3].name, "");
    assert_int_equal(cfg_tier_find(cur, ""), -1);
    /* gold removed, silver added (with gold's key), free's priority changed */
    assert_int_equal(load(next, "tiers:\n  - name: default\n  - name: silver\n    keys: [kg]\n"
                                "  - name: free\n    priority: -5\n    keys: [kf]\n"),
                     0);
    assert_int_equal(cfg_tiers_place(cur, next, added, removed, msg, sizeof(msg)), 0);
    assert_int_equal(next->ntiers, CFG_MAX_TIERS);
    assert_true(removed[1]);
    assert_true(next->tiers[1].spare);
    assert_string_equal(next->tiers[1].name, "gold");
    assert_int_equal(cfg_tier_find(next, "gold"), -1);
    assert_false(added[2] || removed[2]);
    assert_int_equal(next->tiers[2].priority, -5);
    assert_true(added[3]);
    assert_string_equal(next->tiers[3].name, "silver");
    assert_int_equal(cfg_tier_find(next, "silver"), 3);
    assert_int_equal(next->nkeys, 2);
    assert_int_equal(next->key_tier[0], 3); /* kg: silver's now */
    assert_int_equal(next->key_tier[1], 2); /* kf: free's */
    cfg_drop(cur);
    cur = next;
    /* gold back into its own slot */
    next = cfg_new();
    assert_int_equal(load(next, "tiers:\n  - name: default\n  - name: gold\n"), 0);
    assert_int_equal(cfg_tiers_place(cur, next, added, removed, msg, sizeof(msg)), 0);
    assert_true(added[1]);
    assert_false(next->tiers[1].spare);
    assert_true(removed[2] && removed[3]);
    cfg_drop(next);
    /* no never-used slot left: an error, next as it was */
    for (i = 4; i < CFG_MAX_TIERS; i++)
        snprintf(cur->tiers[i].name, CFG_NAME_MAX, "gone%zu", i);
    next = cfg_new();
    assert_int_equal(load(next, "tiers:\n  - name: default\n  - name: bronze\n"), 0);
    assert_int_equal(cfg_tiers_place(cur, next, added, removed, msg, sizeof(msg)), -1);
    assert_string_equal(msg, "no free slot for tier 'bronze' (16 tiers at most, each removed one "
                             "keeping its slot for its return)");
    assert_int_equal(next->ntiers, 2);
    cfg_drop(next);
    cfg_drop(cur);
    (void)state;
}

/* ratelimit.redis: the URL's parts, the other keys, and errors that never
 * repeat the password. */
static void test_redis_url(void **state)
{
    static struct cfg c;
    static const char *const bad[] = {
        "http://h:1",  "redis://",           "redis://h:0",     "redis://h:70000", "redis://h/16",
        "redis://h/x", "redis://u:sekrit@h", "rediss://h:6380", "redis://[::1:80", "redis://a b:1",
    };
    char msg[256];
    size_t i;

    cfg_init(&c);
    assert_string_equal(c.ratelimit_redis, "");
    assert_string_equal(c.ratelimit_redis_prefix, "pitot:");
    assert_int_equal(c.ratelimit_redis_timeout_ms, 250);
    assert_int_equal(c.ratelimit_redis_fail, CFG_REDIS_FAIL_OPEN);
    assert_int_equal(c.ratelimit_replicas, 1);
    assert_int_equal(load(&c, "ratelimit:\n  redis: redis://:s3cret@redis.default.svc:6380/2\n"
                              "  redis_fail: closed\n  redis_prefix: \"llm:\"\n"
                              "  redis_timeout: 50ms\n  replicas: 3\n"),
                     0);
    assert_string_equal(c.ratelimit_redis_host, "redis.default.svc");
    assert_int_equal(c.ratelimit_redis_port, 6380);
    assert_int_equal(c.ratelimit_redis_db, 2);
    assert_string_equal(c.ratelimit_redis_password, "s3cret");
    assert_int_equal(c.ratelimit_redis_fail, CFG_REDIS_FAIL_CLOSED);
    assert_string_equal(c.ratelimit_redis_prefix, "llm:");
    assert_int_equal(c.ratelimit_redis_timeout_ms, 50);
    assert_int_equal(c.ratelimit_replicas, 3);
    cfg_release(&c);
    cfg_init(&c);
    assert_int_equal(cfg_redis_set(&c, "redis://[::1]", msg, sizeof(msg)), 0);
    assert_string_equal(c.ratelimit_redis_host, "::1");
    assert_int_equal(c.ratelimit_redis_port, 6379);
    assert_int_equal(cfg_redis_set(&c, "redis://default:pw@127.0.0.1:7000/", msg, sizeof(msg)), 0);
    assert_string_equal(c.ratelimit_redis_password, "pw");
    assert_int_equal(c.ratelimit_redis_port, 7000);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cfg_redis_set(&c, bad[i], msg, sizeof(msg)), -1);
        assert_null(strstr(msg, "sekrit"));
        assert_string_equal(c.ratelimit_redis_host, "127.0.0.1"); /* unchanged */
    }
    assert_int_equal(cfg_redis_set(&c, "", msg, sizeof(msg)), 0);
    assert_string_equal(c.ratelimit_redis, "");
    cfg_release(&c);
    (void)state;
}

/* A configuration of `text`, validated and expanded as at start. */
static struct cfg *expanded(const char *text)
{
    struct cfg *c = cfg_new();
    char msg[512];

    assert_non_null(c);
    assert_int_equal(load(c, text), 0);
    assert_int_equal(cfg_validate(c, msg, sizeof(msg)), 0);
    assert_int_equal(cfg_backends_expand(c, msg, sizeof(msg)), 0);
    return c;
}

/* Reloads lay their backends out in the running table: names stay in their
 * slots (the same, changed, back after a removal), new ones take spare
 * slots (never-used first, then those the caller calls reusable), removed
 * ones leave theirs spare with their name; no room: an error, next as it was. */
static void test_backends_place(void **state)
{
    struct cfg *cur = expanded("backends:\n"
                               "  - {url: http://10.0.0.1:80, name: a}\n"
                               "  - {url: http://10.0.0.2:80, name: b}\n"
                               "  - {url: http://pool.example:80, name: p}\n"
                               "routing: {max_addresses: 2, spare_backends: 3}\n");
    struct cfg *next;
    enum cfg_place how[CFG_MAX_BACKENDS];
    bool reusable[CFG_MAX_BACKENDS];
    char msg[256];
    size_t i;

    assert_int_equal(cur->nbackends, 4 + 3); /* a, b, p, p/1, three spare */
    for (i = 0; i < CFG_MAX_BACKENDS; i++)
        reusable[i] = true;
    /* b changed, a removed, c added, p the same */
    next = expanded("backends:\n"
                    "  - {url: http://pool.example:80, name: p}\n"
                    "  - {url: http://10.0.0.3:80, name: c}\n"
                    "  - {url: http://10.0.0.22:80, name: b}\n"
                    "routing: {max_addresses: 2, spare_backends: 3}\n");
    assert_int_equal(cfg_backends_place(cur, next, reusable, how, msg, sizeof(msg)), 0);
    assert_int_equal(next->nbackends, 7);
    assert_int_equal(how[0], CFG_PLACE_REMOVED);
    assert_true(next->backends[0].spare);
    assert_string_equal(next->backends[0].name, "a"); /* kept for its return */
    assert_int_equal(how[1], CFG_PLACE_CHANGED);
    assert_string_equal(next->backends[1].url, "http://10.0.0.22:80");
    assert_false(next->backends[1].spare);
    assert_int_equal(how[2], CFG_PLACE_SAME);
    assert_int_equal(how[3], CFG_PLACE_SAME);
    assert_string_equal(next->backends[3].name, "p/1");
    assert_int_equal(next->backends[3].group, 2);
    assert_int_equal(how[4], CFG_PLACE_ADDED); /* the first never-used spare */
    assert_string_equal(next->backends[4].name, "c");
    assert_int_equal(next->backends[4].group, 4);
    assert_int_equal(how[5], CFG_PLACE_FREE);
    assert_int_equal(how[6], CFG_PLACE_FREE);
    assert_int_equal(cfg_backends_live(next), 4);
    cfg_drop(cur);
    cur = next;

    /* a comes back into its own slot, though spares are free */
    next = expanded("backends:\n"
                    "  - {url: http://10.0.0.1:80, name: a}\n"
                    "  - {url: http://10.0.0.22:80, name: b}\n"
                    "  - {url: http://pool.example:80, name: p}\n"
                    "  - {url: http://10.0.0.3:80, name: c}\n"
                    "routing: {max_addresses: 2}\n");
    assert_int_equal(cfg_backends_place(cur, next, reusable, how, msg, sizeof(msg)), 0);
    assert_int_equal(how[0], CFG_PLACE_BACK);
    assert_false(next->backends[0].spare);
    assert_int_equal(how[1], CFG_PLACE_SAME);
    assert_int_equal(how[4], CFG_PLACE_SAME);
    cfg_drop(next);

    /* the same backends in another order: nothing moves */
    next = expanded("backends:\n"
                    "  - {url: http://10.0.0.3:80, name: c}\n"
                    "  - {url: http://pool.example:80, name: p}\n"
                    "  - {url: http://10.0.0.22:80, name: b}\n"
                    "routing: {max_addresses: 2}\n");
    assert_int_equal(cfg_backends_place(cur, next, reusable, how, msg, sizeof(msg)), 0);
    for (i = 1; i < 5; i++)
        assert_int_equal(how[i], CFG_PLACE_SAME);
    assert_int_equal(how[0], CFG_PLACE_FREE);
    cfg_drop(next);

    /* three new names: two never-used spares, then a's slot, which must be
     * reusable (nothing runs there) */
    reusable[0] = false;
    next = expanded("backends:\n"
                    "  - {url: http://10.0.0.5:80, name: d}\n"
                    "  - {url: http://10.0.0.6:80, name: e}\n"
                    "  - {url: http://10.0.0.7:80, name: f}\n"
                    "routing: {max_addresses: 2}\n");
    assert_int_equal(cfg_backends_place(cur, next, reusable, how, msg, sizeof(msg)), -1);
    assert_string_equal(msg, "no free slot for backend 'f' (routing.spare_backends: 3 left of 3 "
                             "kept at start)");
    assert_int_equal(next->nbackends, 16 + 3); /* unchanged */
    reusable[0] = true;
    assert_int_equal(cfg_backends_place(cur, next, reusable, how, msg, sizeof(msg)), 0);
    assert_string_equal(next->backends[5].name, "d");
    assert_string_equal(next->backends[6].name, "e");
    assert_string_equal(next->backends[0].name, "f");
    assert_int_equal(how[0], CFG_PLACE_ADDED);
    assert_int_equal(how[1], CFG_PLACE_REMOVED);
    assert_int_equal(how[2], CFG_PLACE_REMOVED);
    assert_int_equal(how[3], CFG_PLACE_REMOVED);
    assert_int_equal(how[4], CFG_PLACE_REMOVED);
    cfg_drop(next);

    /* a new name in a removed DNS name's first slot: the rest of that
     * name's slots are never-used again (the name cannot come back there) */
    cfg_drop(cur);
    cur = expanded("backends:\n"
                   "  - {url: http://10.0.0.1:80, name: a}\n"
                   "  - {url: http://pool.example:80, name: p}\n"
                   "routing: {max_addresses: 2, spare_backends: 0}\n");
    assert_int_equal(cur->nbackends, 3);
    next = expanded("backends:\n  - {url: http://10.0.0.1:80, name: a}\n"
                    "routing: {max_addresses: 2, spare_backends: 0}\n");
    assert_int_equal(cfg_backends_place(cur, next, reusable, how, msg, sizeof(msg)), 0);
    assert_int_equal(how[1], CFG_PLACE_REMOVED);
    assert_int_equal(how[2], CFG_PLACE_REMOVED);
    cfg_drop(cur);
    cur = next;
    next = expanded("backends:\n"
                    "  - {url: http://10.0.0.1:80, name: a}\n"
                    "  - {url: http://10.0.0.9:80, name: q}\n"
                    "routing: {max_addresses: 2, spare_backends: 0}\n");
    assert_int_equal(cfg_backends_place(cur, next, reusable, how, msg, sizeof(msg)), 0);
    assert_int_equal(how[1], CFG_PLACE_ADDED);
    assert_string_equal(next->backends[1].name, "q");
    assert_int_equal(next->backends[1].group, 1);
    assert_true(next->backends[2].spare);
    assert_string_equal(next->backends[2].name, ""); /* p/1 no more */
    assert_int_equal(next->backends[2].group, 2);
    assert_int_equal(next->backends[2].slot, 0);
    cfg_drop(next);

    /* a name with a different number of slots is a new backend */
    next = expanded("backends:\n"
                    "  - {url: http://pool.example:80, name: p}\n"
                    "routing: {max_addresses: 3}\n");
    assert_int_equal(cfg_backends_place(cur, next, reusable, how, msg, sizeof(msg)), -1);
    cfg_drop(next);
    cfg_drop(cur);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_empty_files),
        cmocka_unit_test(test_lists_replace),
        cmocka_unit_test(test_error_unknown_key),
        cmocka_unit_test(test_error_type),
        cmocka_unit_test(test_error_bad_values),
        cmocka_unit_test(test_error_range),
        cmocka_unit_test(test_drain_timeout),
        cmocka_unit_test(test_error_backend_url),
        cmocka_unit_test(test_error_too_many),
        cmocka_unit_test(test_error_duplicates),
        cmocka_unit_test(test_tiers_replace),
        cmocka_unit_test(test_error_routing),
        cmocka_unit_test(test_error_backend_keys),
        cmocka_unit_test(test_error_tiers),
        cmocka_unit_test(test_error_keys),
        cmocka_unit_test(test_ratelimit_keys),
        cmocka_unit_test(test_ratelimit_default_names),
        cmocka_unit_test(test_error_ratelimit),
        cmocka_unit_test(test_validate_ratelimit),
        cmocka_unit_test(test_error_model_aliases),
        cmocka_unit_test(test_error_buckets),
        cmocka_unit_test(test_list_shapes),
        cmocka_unit_test(test_error_names),
        cmocka_unit_test(test_error_yaml_syntax),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_durations_sizes),
        cmocka_unit_test(test_backend_add),
        cmocka_unit_test(test_listen_set),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_auth_admin),
        cmocka_unit_test(test_validate_routing),
        cmocka_unit_test(test_phrases_ownership),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_sample_conf),
        cmocka_unit_test(test_sample_tier_example),
        cmocka_unit_test(test_dns_backends_expand),
        cmocka_unit_test(test_dns_errors),
        cmocka_unit_test(test_otel_traces),
        cmocka_unit_test(test_validate_otel),
        cmocka_unit_test(test_sample_otel_example),
        cmocka_unit_test(test_tls_listener),
        cmocka_unit_test(test_tls_cert_set),
        cmocka_unit_test(test_backend_tls),
        cmocka_unit_test(test_sample_tls_examples),
        cmocka_unit_test(test_body_limits_and_fds),
        cmocka_unit_test(test_reload_keep),
        cmocka_unit_test(test_backends_place),
        cmocka_unit_test(test_tiers_place),
        cmocka_unit_test(test_redis_url),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
