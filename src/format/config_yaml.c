/* config_yaml: the YAML side of cfg: key tables and a walk of the libyaml
 * document over them. A load is all-or-nothing: it works on a copy and commits
 * only when every key passed; each error reads "PATH:LINE: message". API keys
 * are hashed as they are read: only their SHA-256 digests are kept. */
#include "pitot/format/config.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <yaml.h>

#include "config_int.h"
#include "pitot/format/http1.h"

#define CFG_PHRASE_MAX_BYTES 256 /* refusal detection looks at 400 characters */
#define CFG_BUCKET_MAX_S 86400.0
#define CFG_KEY_MAX_BYTES 1024 /* an API key in tiers[].keys */

/* ---- YAML: the key tables ---------------------------------------------- */

enum cfg_kind {
    CFG_K_SECTION, /* a mapping with its own key table */
    CFG_K_LISTEN,
    CFG_K_ADMIN_LISTEN, /* as listen; "" or null: off */
    CFG_K_BACKENDS,
    CFG_K_MODELS,
    CFG_K_TIERS,
    CFG_K_PHRASES,
    CFG_K_BUCKETS,
    CFG_K_ALIASES,  /* routing.aliases: a {from: to} mapping */
    CFG_K_RESOLVER, /* routing.resolver: "ip[:port]" */
    CFG_K_REDIS,    /* ratelimit.redis: "redis://[:password@]host[:port][/db]" */
    CFG_K_COUNT,    /* unsigned field */
    CFG_K_COUNT64,  /* unsigned long long field */
    CFG_K_INT,      /* int field, may be negative */
    CFG_K_SIZE,     /* size_t field, bytes */
    CFG_K_MS,       /* unsigned field, milliseconds */
    CFG_K_BOOL,
    CFG_K_ENUM,   /* int-sized enum field: index of the value in names[] */
    CFG_K_RATIO,  /* double field in (0, 1] */
    CFG_K_FACTOR, /* double field in [1, 100] */
    CFG_K_HEADER, /* char[CFG_NAME_MAX] header name; min 0: "" allowed (off) */
    CFG_K_PATH,   /* access_log */
    CFG_K_TEXT,   /* char[max + 1] free text, no control bytes; min 0: "" allowed */
    CFG_K_URL,    /* opentelemetry.traces.endpoint: "" or null off, else http://... */
    CFG_K_CERTS,  /* tls.certificates: a list of {cert, key} */
    CFG_K_NODE,   /* list items: keep the value node for the item's own code */
};

struct cfg_key {
    const char *name;
    enum cfg_kind kind;
    size_t off;                /* field offset in the table's target struct; CFG_K_SECTION:
                                  where its table's struct starts in it */
    long long min, max;        /* accepted range, in the field's unit */
    const struct cfg_key *sub; /* CFG_K_SECTION: its keys */
    const char *const *names;  /* CFG_K_ENUM: value names, NULL-terminated */
};

/* The enum kinds write an int. */
_Static_assert(sizeof(enum cfg_flavor) == sizeof(int), "enum cfg_flavor is not int-sized");
_Static_assert(sizeof(enum cfg_policy) == sizeof(int), "enum cfg_policy is not int-sized");
_Static_assert(sizeof(enum cfg_unknown_model) == sizeof(int),
               "enum cfg_unknown_model is not int-sized");
_Static_assert(sizeof(enum cfg_affinity) == sizeof(int), "enum cfg_affinity is not int-sized");
_Static_assert(sizeof(enum cfg_dns_family) == sizeof(int), "enum cfg_dns_family is not int-sized");
_Static_assert(sizeof(enum cfg_tls_version) == sizeof(int),
               "enum cfg_tls_version is not int-sized");
_Static_assert(sizeof(enum cfg_redis_fail) == sizeof(int), "enum cfg_redis_fail is not int-sized");

/* Items of backends and tiers: parsed through a key table into these, then
 * checked as a whole (the name decides where a tier goes). */
struct cfg_backend_item {
    struct cfg_backend b;                         /* flavor, capacity */
    const yaml_node_t *url, *name, *models, *tls; /* borrowed from the document */
};

struct cfg_tier_item {
    struct cfg_tier t;                    /* everything but the name */
    const yaml_node_t *name, *keys, *sha; /* borrowed from the document */
};

/* A tiers[].keys item given as a mapping: exactly one of key and key_sha256. */
struct cfg_apikey_item {
    struct cfg_limits limits;
    const yaml_node_t *key, *sha, *name; /* borrowed from the document */
};

#define CFG_K_(T, k, kind, f, lo, hi)                                                              \
    {                                                                                              \
        k, kind, offsetof(T, f), lo, hi, NULL, NULL                                                \
    }
#define CFG_MS(k, f, lo, hi) CFG_K_(struct cfg, k, CFG_K_MS, f, lo, hi)
#define CFG_SIZE(k, f, lo, hi) CFG_K_(struct cfg, k, CFG_K_SIZE, f, lo, hi)
#define CFG_COUNT(k, f, lo, hi) CFG_K_(struct cfg, k, CFG_K_COUNT, f, lo, hi)
#define CFG_BOOL(k, f) CFG_K_(struct cfg, k, CFG_K_BOOL, f, 0, 1)
#define CFG_ENUM(T, k, f, names)                                                                   \
    {                                                                                              \
        k, CFG_K_ENUM, offsetof(T, f), 0, 0, NULL, names                                           \
    }
#define CFG_NODE(T, k, f) CFG_K_(T, k, CFG_K_NODE, f, 0, 0)
#define CFG_SECTION(k, sub)                                                                        \
    {                                                                                              \
        k, CFG_K_SECTION, 0, 0, 0, sub, NULL                                                       \
    }
/* a section whose table is of a struct that is field f of T */
#define CFG_SUB(T, k, f, sub)                                                                      \
    {                                                                                              \
        k, CFG_K_SECTION, offsetof(T, f), 0, 0, sub, NULL                                          \
    }
#define CFG_SPECIAL(k, kind)                                                                       \
    {                                                                                              \
        k, kind, 0, 0, 0, NULL, NULL                                                               \
    }
#define CFG_END                                                                                    \
    {                                                                                              \
        NULL, CFG_K_SECTION, 0, 0, 0, NULL, NULL                                                   \
    }
#define CFG_DAY (long long)CFG_DAY_MS
#define CFG_1G (long long)CFG_GIB
#define CFG_16M (long long)(16 * CFG_MIB)
#define CFG_256M (long long)(256 * CFG_MIB)
#define CFG_TOKENS (long long)CFG_RATE_TOKENS_MAX

static const char *const cfg_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const cfg_log_formats[] = { "text", "json", NULL };
static const char *const cfg_flavors[] = { "auto",   "llamacpp", "vllm", "tgi",
                                           "sglang", "openai",   NULL };
static const char *const cfg_policies[] = { "least_busy", "least_in_flight", "round_robin", NULL };
static const char *const cfg_unknown_models[] = { "auto", "any", "reject", NULL };
static const char *const cfg_dns_families[] = { "auto", "ipv4", "ipv6", "any", NULL };
static const char *const cfg_affinities[] = { "off", "header", "user", "prefix", NULL };
static const char *const cfg_tls_versions[] = { "1.2", "1.3", NULL }; /* never 1.0, 1.1 */
static const char *const cfg_redis_fails[] = { "open", "closed", NULL };

static const struct cfg_key cfg_limits_keys[] = {
    CFG_SIZE("max_header_bytes", max_header_bytes, 1024, CFG_16M),
    CFG_COUNT("max_headers", max_headers, 1, H1_MAX_HEADERS), /* the parser's own bound */
    CFG_SIZE("max_uri_bytes", max_uri_bytes, 16, CFG_16M),
    CFG_SIZE("max_body_bytes", max_body_bytes, 1, CFG_1G),
    CFG_MS("header_timeout", header_timeout_ms, 1, CFG_DAY),
    CFG_MS("body_timeout", body_timeout_ms, 1, CFG_DAY),
    CFG_MS("keepalive_timeout", keepalive_timeout_ms, 1, CFG_DAY),
    CFG_COUNT("max_clients", max_clients, 1, 1000000),
    CFG_MS("body_deadline", body_deadline_ms, 1, CFG_DAY),
    CFG_SIZE("min_body_rate", min_body_rate, 0, CFG_1G),
    CFG_END,
};

static const struct cfg_key cfg_upstream_keys[] = {
    CFG_MS("connect_timeout", connect_timeout_ms, 1, CFG_DAY),
    CFG_MS("header_timeout", upstream_header_timeout_ms, 1, CFG_DAY),
    CFG_MS("idle_timeout", upstream_idle_timeout_ms, 1, CFG_DAY),
    CFG_COUNT("keepalive", upstream_keepalive, 0, 1024),
    CFG_SIZE("stream_buffer_bytes", stream_buffer_bytes, 1024, CFG_256M),
    CFG_SIZE("max_event_bytes", max_event_bytes, 1024, CFG_256M),
    CFG_END,
};

static const struct cfg_key cfg_health_keys[] = {
    CFG_MS("interval", health_interval_ms, 1, CFG_DAY),
    CFG_MS("timeout", health_timeout_ms, 1, CFG_DAY),
    CFG_END,
};

static const struct cfg_key cfg_measure_keys[] = {
    CFG_MS("stall", stall_ms, 1, CFG_DAY),
    CFG_MS("stall_timeout", stall_timeout_ms, 1, CFG_DAY),
    CFG_BOOL("usage_injection", usage_injection),
    CFG_SPECIAL("refusal_phrases", CFG_K_PHRASES),
    CFG_SPECIAL("buckets", CFG_K_BUCKETS),
    CFG_END,
};

static const struct cfg_key cfg_saturation_keys[] = {
    CFG_COUNT("max_waiting", max_waiting, 0, 1000000),
    CFG_K_(struct cfg, "max_cache_ratio", CFG_K_RATIO, max_cache_ratio, 0, 0),
    CFG_COUNT("max_in_flight", max_in_flight, 0, 1000000),
    CFG_END,
};

static const struct cfg_key cfg_eject_keys[] = {
    CFG_COUNT("failures", eject_failures, 0, 1000),
    CFG_MS("base", eject_base_ms, 1, CFG_DAY),
    CFG_MS("max", eject_max_ms, 1, CFG_DAY),
    CFG_END,
};

static const struct cfg_key cfg_affinity_keys[] = {
    CFG_ENUM(struct cfg, "mode", affinity, cfg_affinities),
    CFG_K_(struct cfg, "header", CFG_K_HEADER, affinity_header, 1, 0),
    CFG_COUNT("prefix_messages", affinity_prefix_messages, 1, 64),
    CFG_K_(struct cfg, "max_load", CFG_K_FACTOR, affinity_max_load, 0, 0),
    CFG_END,
};

static const struct cfg_key cfg_routing_keys[] = {
    CFG_ENUM(struct cfg, "policy", policy, cfg_policies),
    CFG_ENUM(struct cfg, "unknown_model", unknown_model, cfg_unknown_models),
    CFG_MS("scrape_interval", scrape_interval_ms, 1, CFG_DAY),
    CFG_MS("scrape_timeout", scrape_timeout_ms, 1, CFG_DAY),
    CFG_MS("scrape_stale", scrape_stale_ms, 1, CFG_DAY),
    CFG_MS("models_interval", models_interval_ms, 1, CFG_DAY),
    CFG_MS("dns_interval", dns_interval_ms, 1, CFG_DAY),
    CFG_COUNT("max_addresses", max_addresses, 1, 64),
    CFG_COUNT("spare_backends", spare_backends, 0, CFG_MAX_BACKENDS),
    CFG_ENUM(struct cfg, "dns_family", dns_family, cfg_dns_families),
    CFG_SPECIAL("resolver", CFG_K_RESOLVER),
    CFG_COUNT("default_capacity", default_capacity, 1, 65536),
    CFG_BOOL("speed_aware", speed_aware),
    CFG_SPECIAL("aliases", CFG_K_ALIASES),
    CFG_BOOL("retry", retry),
    CFG_SECTION("saturation", cfg_saturation_keys),
    CFG_SECTION("eject", cfg_eject_keys),
    CFG_SECTION("affinity", cfg_affinity_keys),
    CFG_END,
};

static const struct cfg_key cfg_queue_keys[] = {
    CFG_COUNT("max_depth", queue_max, 0, 1000000),
    CFG_END,
};

/* ratelimit: what every tier's and key's limits share. The shared state's
 * keys (redis, redis_fail, redis_prefix, redis_password, redis_timeout) are
 * to come here. */
static const struct cfg_key cfg_ratelimit_keys[] = {
    CFG_COUNT("default_max_tokens", ratelimit_default_max_tokens, 1, CFG_RATE_MAX_TOKENS_MAX),
    CFG_SPECIAL("redis", CFG_K_REDIS),
    CFG_ENUM(struct cfg, "redis_fail", ratelimit_redis_fail, cfg_redis_fails),
    CFG_K_(struct cfg, "redis_prefix", CFG_K_TEXT, ratelimit_redis_prefix, 1, CFG_NAME_MAX - 1),
    CFG_K_(struct cfg, "redis_password", CFG_K_TEXT, ratelimit_redis_password, 0,
           sizeof(((struct cfg *)0)->ratelimit_redis_password) - 1),
    CFG_MS("redis_timeout", ratelimit_redis_timeout_ms, 1, 60000),
    CFG_COUNT("replicas", ratelimit_replicas, 1, 1000),
    CFG_END,
};

/* tiers[].limits and tiers[].keys[].limits, into a struct cfg_limits: 0 (the
 * default) is no such limit */
static const struct cfg_key cfg_rate_keys[] = {
    CFG_K_(struct cfg_limits, "requests_per_minute", CFG_K_COUNT, requests_per_minute, 0, UINT_MAX),
    CFG_K_(struct cfg_limits, "tokens_per_minute", CFG_K_COUNT64, tokens_per_minute, 0, CFG_TOKENS),
    CFG_K_(struct cfg_limits, "max_concurrent", CFG_K_COUNT, max_concurrent, 0, UINT_MAX),
    CFG_K_(struct cfg_limits, "tokens_per_day", CFG_K_COUNT64, tokens_per_day, 0, CFG_TOKENS),
    CFG_END,
};

static const struct cfg_key cfg_log_keys[] = {
    CFG_SPECIAL("access_log", CFG_K_PATH),
    CFG_ENUM(struct cfg, "level", log_level, cfg_levels),
    CFG_ENUM(struct cfg, "format", log_format, cfg_log_formats),
    CFG_END,
};

/* opentelemetry.traces: OTLP/HTTP span export */
static const struct cfg_key cfg_otel_trace_keys[] = {
    CFG_SPECIAL("endpoint", CFG_K_URL),
    CFG_K_(struct cfg, "ca_file", CFG_K_TEXT, otel_tls.ca_file, 0, CFG_PATH_MAX - 1),
    CFG_K_(struct cfg, "service_name", CFG_K_TEXT, otel_service_name, 1, CFG_OTLP_SERVICE_MAX - 1),
    CFG_COUNT("queue_size", otel_queue_size, 1, 1000000),
    CFG_COUNT("batch_size", otel_batch_size, 1, 8192),
    CFG_MS("interval", otel_trace_interval_ms, 1, CFG_DAY),
    CFG_MS("timeout", otel_trace_timeout_ms, 1, CFG_DAY),
    CFG_END,
};

static const struct cfg_key cfg_otel_keys[] = {
    CFG_BOOL("metrics", otel_metrics),
    CFG_SECTION("traces", cfg_otel_trace_keys),
    CFG_END,
};

/* shutdown: what SIGTERM and SIGINT do */
static const struct cfg_key cfg_shutdown_keys[] = {
    CFG_MS("drain_timeout", drain_timeout_ms, 0, CFG_DAY),
    CFG_END,
};

/* tls: the listener's certificates and protocol floor */
static const struct cfg_key cfg_tls_keys[] = {
    CFG_SPECIAL("certificates", CFG_K_CERTS),
    CFG_ENUM(struct cfg, "min_version", tls_min_version, cfg_tls_versions),
    CFG_END,
};

static const struct cfg_key cfg_top_keys[] = {
    CFG_SPECIAL("listen", CFG_K_LISTEN),
    CFG_COUNT("workers", workers, 0, CFG_MAX_WORKERS),
    CFG_SECTION("tls", cfg_tls_keys),
    CFG_SPECIAL("backends", CFG_K_BACKENDS),
    CFG_SPECIAL("models", CFG_K_MODELS),
    CFG_COUNT("max_model_labels", max_model_labels, 0, 1024),
    CFG_SPECIAL("tiers", CFG_K_TIERS),
    CFG_K_(struct cfg, "tier_header", CFG_K_HEADER, tier_header, 0, 0),
    CFG_SECTION("limits", cfg_limits_keys),
    CFG_SECTION("upstream", cfg_upstream_keys),
    CFG_SECTION("health", cfg_health_keys),
    CFG_SECTION("measure", cfg_measure_keys),
    CFG_SECTION("routing", cfg_routing_keys),
    CFG_SECTION("queue", cfg_queue_keys),
    CFG_SECTION("ratelimit", cfg_ratelimit_keys),
    CFG_SECTION("log", cfg_log_keys),
    CFG_SECTION("opentelemetry", cfg_otel_keys),
    CFG_SECTION("shutdown", cfg_shutdown_keys),
    CFG_SPECIAL("admin_listen", CFG_K_ADMIN_LISTEN),
    CFG_K_(struct cfg, "admin_token", CFG_K_TEXT, admin_token, 0, CFG_ADMIN_TOKEN_MAX - 1),
    CFG_BOOL("require_auth", require_auth),
    CFG_END,
};

/* backends items; url and name are checked once the whole item is read. url
 * comes first: a plain scalar item is the url alone (cfg_item_apply). */
static const struct cfg_key cfg_backend_keys[] = {
    CFG_NODE(struct cfg_backend_item, "url", url),
    CFG_NODE(struct cfg_backend_item, "name", name),
    CFG_ENUM(struct cfg_backend_item, "flavor", b.flavor, cfg_flavors),
    CFG_K_(struct cfg_backend_item, "capacity", CFG_K_COUNT, b.capacity, 0, 65536),
    CFG_NODE(struct cfg_backend_item, "models", models),
    CFG_NODE(struct cfg_backend_item, "tls", tls),
    CFG_END,
};

/* backends[].tls: how an https backend is checked */
static const struct cfg_key cfg_backend_tls_keys[] = {
    CFG_K_(struct cfg_tls_client, "ca_file", CFG_K_TEXT, ca_file, 1, CFG_PATH_MAX - 1),
    CFG_K_(struct cfg_tls_client, "server_name", CFG_K_TEXT, server_name, 1, CFG_HOST_MAX - 1),
    CFG_K_(struct cfg_tls_client, "cert", CFG_K_TEXT, cert, 1, CFG_PATH_MAX - 1),
    CFG_K_(struct cfg_tls_client, "key", CFG_K_TEXT, key, 1, CFG_PATH_MAX - 1),
    CFG_K_(struct cfg_tls_client, "verify", CFG_K_BOOL, verify, 0, 1),
    CFG_END,
};

/* tls.certificates items: both keys, always as a mapping */
static const struct cfg_key cfg_cert_keys[] = {
    CFG_K_(struct cfg_tls_cert, "cert", CFG_K_TEXT, cert, 1, CFG_PATH_MAX - 1),
    CFG_K_(struct cfg_tls_cert, "key", CFG_K_TEXT, key, 1, CFG_PATH_MAX - 1),
    CFG_END,
};

/* tiers items; the same for "default" (tiers[0]) as for the others. name
 * comes first: a plain scalar item is the name alone (cfg_item_apply). */
static const struct cfg_key cfg_tier_keys[] = {
    CFG_NODE(struct cfg_tier_item, "name", name),
    CFG_K_(struct cfg_tier_item, "priority", CFG_K_INT, t.priority, -1000, 1000),
    CFG_K_(struct cfg_tier_item, "slo_ttft", CFG_K_MS, t.slo_ttft_ms, 0, CFG_DAY),
    CFG_K_(struct cfg_tier_item, "slo_tpot", CFG_K_MS, t.slo_tpot_ms, 0, CFG_DAY),
    CFG_K_(struct cfg_tier_item, "max_queue", CFG_K_COUNT, t.max_queue, 0, 1000000),
    CFG_K_(struct cfg_tier_item, "max_wait", CFG_K_MS, t.max_wait_ms, 0, CFG_DAY),
    CFG_SUB(struct cfg_tier_item, "limits", t.limits, cfg_rate_keys),
    CFG_NODE(struct cfg_tier_item, "keys", keys),
    CFG_NODE(struct cfg_tier_item, "key_sha256", sha),
    CFG_END,
};

/* tiers[].keys items written as a mapping; key and key_sha256 are checked
 * once the whole item is read (one of them, not both) */
static const struct cfg_key cfg_apikey_keys[] = {
    CFG_NODE(struct cfg_apikey_item, "key", key),
    CFG_NODE(struct cfg_apikey_item, "key_sha256", sha),
    CFG_NODE(struct cfg_apikey_item, "name", name),
    CFG_SUB(struct cfg_apikey_item, "limits", limits, cfg_rate_keys),
    CFG_END,
};

/* ---- YAML: walking the document ---------------------------------------- */

/* One load in progress. */
struct cfg_ld {
    struct cfg *w;        /* working copy, committed on success; owned */
    yaml_document_t *doc; /* borrowed */
    const char *name;     /* borrowed: PATH in messages */
    char *err;            /* borrowed */
    size_t errlen;
    bool phrases_set;               /* the file gave refusal_phrases */
    char *phrases[CFG_MAX_PHRASES]; /* owned until committed */
    size_t nphrases;
    size_t key_line[CFG_MAX_KEYS]; /* line of w->keys[i]: all from this file */
    bool key_named[CFG_MAX_KEYS];  /* w->keys[i].name was written, not "<tier>-<n>" */
};

static int cfg_fail_at(struct cfg_ld *ld, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfg_fail(struct cfg_ld *ld, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfg_vfail(struct cfg_ld *ld, size_t line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static int cfg_vfail(struct cfg_ld *ld, size_t line, const char *fmt, va_list ap)
{
    char msg[512];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    return cfg_msg(ld->err, ld->errlen, "%s:%zu: %s", ld->name, line, msg);
}

/* "NAME:LINE: message" with a 1-based line; returns -1. */
static int cfg_fail_at(struct cfg_ld *ld, size_t line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_vfail(ld, line, fmt, ap);
    va_end(ap);
    return -1;
}

static size_t cfg_line(const yaml_node_t *n)
{
    return n->start_mark.line + 1;
}

/* The same at the line where node n starts. */
static int cfg_fail(struct cfg_ld *ld, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_vfail(ld, cfg_line(n), fmt, ap);
    va_end(ap);
    return -1;
}

/* A message from a helper (cfg_url_parse...), placed at node n. */
static int cfg_fail_msg(struct cfg_ld *ld, const yaml_node_t *n, const char *msg)
{
    return cfg_fail(ld, n, "%s", msg);
}

static yaml_node_t *cfg_node(struct cfg_ld *ld, int idx)
{
    return yaml_document_get_node(ld->doc, idx);
}

static const char *cfg_str(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A plain empty, ~ or null scalar: the key is there without a value. */
static bool cfg_is_null(const yaml_node_t *n)
{
    const char *s;

    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    s = cfg_str(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* A quoted "" (as opposed to a missing value). */
static bool cfg_is_quoted_empty(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
           n->data.scalar.length == 0;
}

/* The text of a scalar that must have a value. Returns NULL after failing. */
static const char *cfg_scalar(struct cfg_ld *ld, const yaml_node_t *n, const char *what)
{
    if (n->type != YAML_SCALAR_NODE) {
        cfg_fail(ld, n, "%s: expected a scalar", what);
        return NULL;
    }
    if (cfg_is_null(n)) {
        cfg_fail(ld, n, "%s: missing value", what);
        return NULL;
    }
    if (strlen(cfg_str(n)) != n->data.scalar.length) {
        cfg_fail(ld, n, "%s: NUL byte in value", what);
        return NULL;
    }
    return cfg_str(n);
}

/* 1: n is a container of that type; 0: a null (an empty section or list);
 * -1 after failing with "expected a mapping/sequence". */
static int cfg_container(struct cfg_ld *ld, const yaml_node_t *n, yaml_node_type_t type,
                         const char *what)
{
    if (n->type == type)
        return 1;
    if (cfg_is_null(n))
        return 0;
    return cfg_fail(ld, n, "%s: expected a %s", what,
                    type == YAML_MAPPING_NODE ? "mapping" : "sequence");
}

/* Depth-first through the sections under tbl (path prefix) for a key named
 * like key, outside the table `here`; writes " (did you mean a.b?)". */
static bool cfg_hint_walk(const struct cfg_key *tbl, const char *prefix, const char *key,
                          const struct cfg_key *here, char *buf, size_t n)
{
    const struct cfg_key *s, *k;
    char path[64];

    for (s = tbl; s->name != NULL; s++) {
        if (s->kind != CFG_K_SECTION)
            continue;
        snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", s->name);
        for (k = s->sub; s->sub != here && k->name != NULL; k++) {
            if (strcmp(k->name, key) == 0) {
                snprintf(buf, n, " (did you mean %s.%s?)", path, k->name);
                return true;
            }
        }
        if (cfg_hint_walk(s->sub, path, key, here, buf, n))
            return true;
    }
    return false;
}

/* Where a key of the wrong section probably belongs: " (did you mean
 * limits.max_clients?)", " (did you mean top-level tier_header?)", " (did
 * you mean tiers.limits.requests_per_minute?)" (rate limits are a tier's or a
 * key's, not in limits: or ratelimit:), or "". */
static const char *cfg_key_hint(const char *key, const struct cfg_key *here, char *buf, size_t n)
{
    const struct cfg_key *k;

    if (cfg_hint_walk(cfg_top_keys, "", key, here, buf, n))
        return buf;
    for (k = cfg_top_keys; here != cfg_top_keys && k->name != NULL; k++) {
        if (strcmp(k->name, key) == 0) {
            snprintf(buf, n, " (did you mean top-level %s?)", k->name);
            return buf;
        }
    }
    for (k = cfg_rate_keys; here != cfg_rate_keys && k->name != NULL; k++) {
        if (strcmp(k->name, key) == 0) {
            snprintf(buf, n, " (did you mean tiers.limits.%s?)", k->name);
            return buf;
        }
    }
    return "";
}

/* The names of a key table, "a, b or c", into buf[0..n); returns buf. */
static const char *cfg_key_names(const struct cfg_key *keys, char *buf, size_t n)
{
    size_t i, len = 0;

    buf[0] = '\0';
    for (i = 0; keys[i].name != NULL && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s",
                                i == 0                     ? ""
                                : keys[i + 1].name == NULL ? " or "
                                                           : ", ",
                                keys[i].name);
    return buf;
}

static int cfg_apply(struct cfg_ld *ld, const struct cfg_key *k, const yaml_node_t *v,
                     const char *path, char *base);

/* How cfg_map_apply words an unknown key. */
enum cfg_map_mode {
    CFG_MAP_PLAIN = 0, /* "unknown key 'x' in s": list items */
    CFG_MAP_HINTS,     /* with where a misplaced key belongs: sections */
    CFG_MAP_SECRET,    /* without the key, which could be an API key ("- sk-...: x"),
                          with the keys it could be */
};

/* Applies every pair of mapping m against the key table keys, writing into
 * base (the working cfg, or a list item's struct). section is NULL at the top
 * level; mode: how an unknown key is reported. */
static int cfg_map_apply(struct cfg_ld *ld, const yaml_node_t *m, const struct cfg_key *keys,
                         const char *section, char *base, enum cfg_map_mode mode)
{
    unsigned long long seen = 0;
    yaml_node_pair_t *pair;

    for (pair = m->data.mapping.pairs.start; pair < m->data.mapping.pairs.top; pair++) {
        const yaml_node_t *kn = cfg_node(ld, pair->key), *vn = cfg_node(ld, pair->value);
        const char *where = section ? section : "top level";
        char path[96], hint[112];
        const char *key;
        size_t i;

        if (kn->type != YAML_SCALAR_NODE)
            return cfg_fail(ld, kn, "keys must be scalars (%s %s)", section ? "in" : "at", where);
        key = cfg_str(kn);
        for (i = 0; keys[i].name != NULL; i++)
            if (strcmp(keys[i].name, key) == 0)
                break;
        if (keys[i].name == NULL && mode == CFG_MAP_SECRET)
            return cfg_fail(ld, kn,
                            "unknown key in %s (%s; not repeated here: it could be an API key)",
                            where, cfg_key_names(keys, hint, sizeof(hint)));
        if (keys[i].name == NULL)
            return cfg_fail(
                ld, kn, "unknown key '%.64s' %s %s%s", key, section ? "in" : "at", where,
                mode == CFG_MAP_HINTS ? cfg_key_hint(key, keys, hint, sizeof(hint)) : "");
        if (seen & (1ull << i))
            return cfg_fail(ld, kn, "duplicate key '%s' %s %s", key, section ? "in" : "at", where);
        seen |= 1ull << i;
        snprintf(path, sizeof(path), "%s%s%s", section ? section : "", section ? "." : "", key);
        if (cfg_apply(ld, &keys[i], vn, path, base) != 0)
            return -1;
    }
    return 0;
}

static void cfg_put_unsigned(char *field, unsigned long long n)
{
    unsigned u = (unsigned)n;

    memcpy(field, &u, sizeof(u));
}

/* The scalar kinds: count, integer, size, milliseconds, boolean, enum, ratio. */
static int cfg_apply_scalar(struct cfg_ld *ld, const struct cfg_key *k, const yaml_node_t *v,
                            const char *path, char *base)
{
    char *field = base + k->off;
    const char *s = cfg_scalar(ld, v, path);
    unsigned long long n;
    char lo[32], hi[160];
    long long sn;
    double d;
    bool b;
    int e;

    if (s == NULL)
        return -1;
    switch (k->kind) {
    case CFG_K_BOOL:
        if (cfg_parse_bool(s, &b) != 0)
            return cfg_fail(ld, v, "%s: bad boolean '%s' (true or false)", path, s);
        memcpy(field, &b, sizeof(b));
        return 0;
    case CFG_K_COUNT:
        if (cfg_parse_count(s, &n) != 0)
            return cfg_fail(ld, v, "%s: bad number '%s'", path, s);
        if (n < (unsigned long long)k->min || n > (unsigned long long)k->max)
            return cfg_fail(ld, v, "%s: %s is out of range (%lld..%lld)", path, s, k->min, k->max);
        cfg_put_unsigned(field, n);
        return 0;
    case CFG_K_COUNT64:
        if (cfg_parse_count(s, &n) != 0)
            return cfg_fail(ld, v, "%s: bad number '%s'", path, s);
        if (n < (unsigned long long)k->min || n > (unsigned long long)k->max)
            return cfg_fail(ld, v, "%s: %s is out of range (%lld..%lld)", path, s, k->min, k->max);
        memcpy(field, &n, sizeof(n));
        return 0;
    case CFG_K_INT:
        if (cfg_parse_int(s, &sn) != 0)
            return cfg_fail(ld, v, "%s: bad number '%s'", path, s);
        if (sn < k->min || sn > k->max)
            return cfg_fail(ld, v, "%s: %s is out of range (%lld..%lld)", path, s, k->min, k->max);
        e = (int)sn;
        memcpy(field, &e, sizeof(e));
        return 0;
    case CFG_K_SIZE:
        if (cfg_parse_size(s, &n) != 0)
            return cfg_fail(ld, v, "%s: bad size '%s' (bytes, or with a k, m or g suffix: 256k)",
                            path, s);
        if (n < (unsigned long long)k->min || n > (unsigned long long)k->max)
            return cfg_fail(ld, v, "%s: %s is out of range (%s..%s)", path, s,
                            cfg_fmt_size(lo, sizeof(lo), (unsigned long long)k->min),
                            cfg_fmt_size(hi, sizeof(hi), (unsigned long long)k->max));
        {
            size_t z = (size_t)n;
            memcpy(field, &z, sizeof(z));
        }
        return 0;
    case CFG_K_MS:
        if (cfg_parse_ms(s, &n) != 0)
            return cfg_fail(ld, v,
                            "%s: bad duration '%s' (milliseconds, or with an ms, s or m "
                            "suffix: 10s)",
                            path, s);
        if (n < (unsigned long long)k->min || n > (unsigned long long)k->max)
            return cfg_fail(ld, v, "%s: %s is out of range (%s..%s)", path, s,
                            cfg_fmt_ms(lo, sizeof(lo), (unsigned long long)k->min),
                            cfg_fmt_ms(hi, sizeof(hi), (unsigned long long)k->max));
        cfg_put_unsigned(field, n);
        return 0;
    case CFG_K_ENUM:
        for (e = 0; k->names[e] != NULL; e++) {
            if (strcmp(s, k->names[e]) == 0) {
                memcpy(field, &e, sizeof(e));
                return 0;
            }
        }
        return cfg_fail(ld, v, "%s: bad %s '%s' (%s)", path, k->name, s,
                        cfg_fmt_names(hi, sizeof(hi), k->names));
    case CFG_K_RATIO:
    case CFG_K_FACTOR:
        if (cfg_parse_double(s, &d) != 0)
            return cfg_fail(ld, v, "%s: bad number '%s'", path, s);
        if (k->kind == CFG_K_RATIO ? !(d > 0 && d <= 1) : !(d >= 1 && d <= 100))
            return cfg_fail(ld, v, "%s: %s is out of range (%s)", path, s,
                            k->kind == CFG_K_RATIO ? "above 0, at most 1" : "1..100");
        memcpy(field, &d, sizeof(d));
        return 0;
    default: return cfg_fail(ld, v, "%s: internal error", path);
    }
}

/* A header field name (an RFC 9110 token) into a char[CFG_NAME_MAX] field. A
 * quoted "" turns it off where the key allows (min 0). */
static int cfg_apply_header(struct cfg_ld *ld, const struct cfg_key *k, const yaml_node_t *v,
                            const char *path, char *base)
{
    static const char tchars[] = "!#$%&'*+-.^_`|~0123456789"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    char *field = base + k->off;
    const char *s;

    if (cfg_is_quoted_empty(v)) {
        if (k->min > 0)
            return cfg_fail(ld, v, "%s: empty header name", path);
        field[0] = '\0';
        return 0;
    }
    if ((s = cfg_scalar(ld, v, path)) == NULL)
        return -1;
    if (strlen(s) >= CFG_NAME_MAX)
        return cfg_fail(ld, v, "%s: header name longer than %d characters", path, CFG_NAME_MAX - 1);
    if (s[strspn(s, tchars)] != '\0')
        return cfg_fail(ld, v,
                        "%s: '%s' is not a header name (letters, digits and "
                        "!#$%%&'*+-.^_`|~)",
                        path, s);
    memcpy(field, s, strlen(s) + 1);
    return 0;
}

/* Free text (service_name) into a char[k->max + 1] field: at least k->min
 * bytes (a quoted "" when 0), no control bytes (the value goes into JSON and
 * logs as it is). */
static int cfg_apply_text(struct cfg_ld *ld, const struct cfg_key *k, const yaml_node_t *v,
                          const char *path, char *base)
{
    char *field = base + k->off;
    const char *s;
    size_t len, i;

    if (cfg_is_quoted_empty(v) && k->min == 0) {
        field[0] = '\0';
        return 0;
    }
    if ((s = cfg_scalar(ld, v, path)) == NULL)
        return -1;
    len = strlen(s);
    if (len < (size_t)k->min)
        return cfg_fail(ld, v, "%s: empty value", path);
    if (len > (size_t)k->max)
        return cfg_fail(ld, v, "%s: longer than %lld bytes", path, k->max);
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return cfg_fail(ld, v, "%s: control characters are not allowed", path);
    memcpy(field, s, len + 1);
    return 0;
}

/* ---- YAML: lists and their items --------------------------------------- */

/* One item of a list: returns 0, or -1 after failing. arg: the list's state. */
typedef int (*cfg_item_cb)(struct cfg_ld *ld, const yaml_node_t *item, void *arg);

/* A list value: a sequence, or a null for an empty one. Hands each item, in
 * order, to fn. Returns 0, or -1 after failing. */
static int cfg_seq_apply(struct cfg_ld *ld, const yaml_node_t *v, const char *path, cfg_item_cb fn,
                         void *arg)
{
    yaml_node_item_t *it;
    int r = cfg_container(ld, v, YAML_SEQUENCE_NODE, path);

    if (r <= 0)
        return r;
    for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++)
        if (fn(ld, cfg_node(ld, *it), arg) != 0)
            return -1;
    return 0;
}

/* A list item that is either its main value alone ("http://...", "premium")
 * or a mapping of keys (written into base) whose first key is that value, a
 * CFG_K_NODE. `what` names the value in "expected a URL or a mapping with
 * url:". Returns the main value's text, or NULL after failing. */
static const char *cfg_item_apply(struct cfg_ld *ld, const yaml_node_t *item,
                                  const struct cfg_key *keys, const char *section, char *base,
                                  const char *what)
{
    const struct cfg_key *k = &keys[0];
    const yaml_node_t *v;
    char path[96];

    if (item->type == YAML_MAPPING_NODE) {
        if (cfg_map_apply(ld, item, keys, section, base, CFG_MAP_PLAIN) != 0)
            return NULL;
        memcpy(&v, base + k->off, sizeof(v));
        if (v == NULL) {
            cfg_fail(ld, item, "%s: entry without %s", section, k->name);
            return NULL;
        }
    } else if (item->type == YAML_SCALAR_NODE) {
        v = item;
        memcpy(base + k->off, &v, sizeof(v));
    } else {
        cfg_fail(ld, item, "%s: expected a %s or a mapping with %s:", section, what, k->name);
        return NULL;
    }
    snprintf(path, sizeof(path), "%s.%s", section, k->name);
    return cfg_scalar(ld, v, path);
}

/* A list of model names being filled: models, backends[].models. */
struct cfg_names {
    char (*v)[CFG_NAME_MAX]; /* borrowed: the list's array */
    size_t *n;               /* borrowed: its count */
    size_t max;              /* its capacity */
    const char *path;        /* the key, in errors about a value */
    const char *pfx;         /* "" or "PATH: ", before the duplicate and too-many errors */
};

/* One name of a cfg_names list: checked, not there yet, room left. */
static int cfg_name_item(struct cfg_ld *ld, const yaml_node_t *item, void *arg)
{
    struct cfg_names *l = arg;
    const char *s = cfg_scalar(ld, item, l->path);
    char msg[256];
    size_t i;

    if (s == NULL)
        return -1;
    if (cfg_name_check(s, "model", msg, sizeof(msg)) != 0)
        return cfg_fail_msg(ld, item, msg);
    for (i = 0; i < *l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return cfg_fail(ld, item, "%sduplicate model '%s'", l->pfx, s);
    if (*l->n >= l->max)
        return cfg_fail(ld, item, "%stoo many models (at most %zu)", l->pfx, l->max);
    memcpy(l->v[(*l->n)++], s, strlen(s) + 1);
    return 0;
}

/* backends[].tls (v) of backend b, whose URL is parsed: only for https. */
static int cfg_apply_backend_tls(struct cfg_ld *ld, const yaml_node_t *v, struct cfg_backend *b)
{
    struct cfg_tls_client *t = &b->tls;
    unsigned char a6[16];
    int r;

    if (!b->https)
        return cfg_fail(ld, v, "backends.tls: the URL '%s' is http://; tls is only for https://",
                        b->url);
    r = cfg_container(ld, v, YAML_MAPPING_NODE, "backends.tls");
    if (r <= 0)
        return r;
    if (cfg_map_apply(ld, v, cfg_backend_tls_keys, "backends.tls", (char *)t, CFG_MAP_PLAIN) != 0)
        return -1;
    t->line = (unsigned)cfg_line(v);
    if ((t->cert[0] == '\0') != (t->key[0] == '\0'))
        return cfg_fail(ld, v, "backends.tls: a client certificate needs both cert and key");
    if (t->server_name[0] != '\0' && inet_pton(AF_INET6, t->server_name, a6) != 1 &&
        t->server_name[strspn(t->server_name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                              "0123456789.-_")] != '\0')
        return cfg_fail(ld, v,
                        "backends.tls.server_name: '%s' is not a host name (letters, digits "
                        "and .-_) or an IP address",
                        t->server_name);
    return 0;
}

/* One tls.certificates item: a mapping with cert and key. */
static int cfg_apply_cert(struct cfg_ld *ld, const yaml_node_t *item, void *arg)
{
    struct cfg *w = ld->w;
    struct cfg_tls_cert ct;

    if (item->type != YAML_MAPPING_NODE)
        return cfg_fail(ld, item, "tls.certificates: expected a mapping with cert: and key:");
    memset(&ct, 0, sizeof(ct));
    if (cfg_map_apply(ld, item, cfg_cert_keys, "tls.certificates", (char *)&ct, CFG_MAP_PLAIN) != 0)
        return -1;
    if (ct.cert[0] == '\0' || ct.key[0] == '\0')
        return cfg_fail(ld, item, "tls.certificates: entry without %s",
                        ct.cert[0] == '\0' ? "cert" : "key");
    if (w->ntls_certs >= CFG_MAX_CERTS)
        return cfg_fail(ld, item, "too many certificates (at most %d)", CFG_MAX_CERTS);
    ct.line = (unsigned)cfg_line(item);
    w->tls_certs[w->ntls_certs++] = ct;
    return 0;
}

/* One backends item: "http://..." or a mapping of cfg_backend_keys. */
static int cfg_apply_backend(struct cfg_ld *ld, const yaml_node_t *item, void *arg)
{
    struct cfg_backend_item it;
    struct cfg_backend b;
    struct cfg_names models = { b.models, &b.nmodels, CFG_MAX_BACKEND_MODELS, "backends.models",
                                "backends.models: " };
    const char *u, *nm = NULL;
    char msg[512];

    if (ld->w->nbackends >= CFG_MAX_BACKENDS)
        return cfg_fail(ld, item, "too many backends (at most %d)", CFG_MAX_BACKENDS);
    memset(&it, 0, sizeof(it));
    if ((u = cfg_item_apply(ld, item, cfg_backend_keys, "backends", (char *)&it, "URL")) == NULL)
        return -1;
    if (it.name != NULL && (nm = cfg_scalar(ld, it.name, "backends.name")) == NULL)
        return -1;
    if (cfg_url_parse(u, &b, msg, sizeof(msg)) != 0)
        return cfg_fail_msg(ld, it.url, msg);
    if (cfg_backend_name(&b, nm, msg, sizeof(msg)) != 0)
        return cfg_fail_msg(ld, it.name ? it.name : it.url, msg);
    if (cfg_backend_find(ld->w, ld->w->nbackends, b.name) >= 0)
        return cfg_fail(ld, it.name ? it.name : it.url, "duplicate backend name '%s'", b.name);
    b.flavor = it.b.flavor;
    b.capacity = it.b.capacity;
    if (it.tls != NULL && cfg_apply_backend_tls(ld, it.tls, &b) != 0)
        return -1;
    /* the names a backend serves; none: learned from its /v1/models */
    if (it.models != NULL && cfg_seq_apply(ld, it.models, models.path, cfg_name_item, &models) != 0)
        return -1;
    ld->w->backends[ld->w->nbackends++] = b;
    return 0;
}

/* The keys of one tiers item: plain (hashed here) or given as digests. */
struct cfg_keyset {
    const char *path; /* "tiers.keys" or "tiers.key_sha256" */
    bool hashed;      /* key_sha256 */
    size_t tier;      /* the tier index they belong to */
    unsigned n;       /* the next key's number in the tier, for its default name */
};

/* The SHA-256 of one key into d: v is a plain key (hashed here; its text is
 * never copied, nor put in a message: they end up in logs) or, when hashed,
 * the digest in hex. path names v in messages. Returns 0, or -1 after
 * failing. */
static int cfg_key_digest(struct cfg_ld *ld, const yaml_node_t *v, bool hashed, const char *path,
                          unsigned char d[32])
{
    const char *s = cfg_scalar(ld, v, path);
    size_t i, len;

    if (s == NULL)
        return -1;
    len = strlen(s);
    if (hashed) {
        if (cfg_parse_sha256(s, d) != 0)
            return cfg_fail(ld, v,
                            "%s: '%.80s' is not a SHA-256 digest (64 hex digits, "
                            "from: printf %%s KEY | sha256sum)",
                            path, s);
        return 0;
    }
    if (len == 0)
        return cfg_fail(ld, v, "%s: empty key", path);
    if (len > CFG_KEY_MAX_BYTES)
        return cfg_fail(ld, v, "%s: key longer than %d bytes", path, CFG_KEY_MAX_BYTES);
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return cfg_fail(ld, v,
                            "%s: a key may only have visible ASCII "
                            "characters (no blanks)",
                            path);
    if (EVP_Digest(s, len, d, NULL, EVP_sha256(), NULL) != 1)
        return cfg_fail(ld, v, "%s: SHA-256 failed", path);
    return 0;
}

/* The name of the tier's n-th key: the one written (name, checked as a label
 * value) or "<tier>-<n>", the tier's name cut short when the number would not
 * fit after it. Either must be free among every tier's keys. at: the entry,
 * for messages. Returns 0, or -1 after failing. */
static int cfg_key_name(struct cfg_ld *ld, const yaml_node_t *name, const yaml_node_t *at,
                        const struct cfg_keyset *ks, unsigned n, char out[CFG_NAME_MAX])
{
    const struct cfg *w = ld->w;
    const char *tier = w->tiers[ks->tier].name;
    const char *path = name != NULL ? "tiers.keys.name" : ks->path;
    char num[16], msg[256];
    const char *s;
    size_t i, keep;

    if (name != NULL) {
        if ((s = cfg_scalar(ld, name, path)) == NULL)
            return -1;
        if (cfg_name_check(s, "key", msg, sizeof(msg)) != 0)
            return cfg_fail_msg(ld, name, msg);
        memcpy(out, s, strlen(s) + 1);
        at = name;
    } else {
        keep = (size_t)snprintf(num, sizeof(num), "-%u", n);
        keep = CFG_NAME_MAX - 1 - keep;
        snprintf(out, CFG_NAME_MAX, "%.*s%s", (int)(strlen(tier) < keep ? strlen(tier) : keep),
                 tier, num);
    }
    for (i = 0; i < w->nkeys; i++)
        if (strcmp(w->keys[i].name, out) == 0)
            return cfg_fail(ld, at, "%s: duplicate key name '%s'%s (the key on line %zu%s)", path,
                            out, name != NULL ? "" : ", this key's default name", ld->key_line[i],
                            ld->key_named[i] ? "" : ", by default");
    return 0;
}

/* One of tiers[].keys: a plain key, or a mapping of cfg_apikey_keys (key: or
 * key_sha256:, name:, limits:); or one of tiers[].key_sha256: a digest. A
 * digest or a name already held by any tier is an error naming the line of
 * the first. arg: the list's cfg_keyset. */
static int cfg_key_item(struct cfg_ld *ld, const yaml_node_t *item, void *arg)
{
    struct cfg_keyset *ks = arg;
    struct cfg_apikey_item it;
    struct cfg_apikey key;
    struct cfg *w = ld->w;
    const yaml_node_t *v = item;
    const char *path = ks->path;
    bool hashed = ks->hashed;
    unsigned n = ks->n++;
    char vpath[48];
    size_t i;

    memset(&it, 0, sizeof(it));
    memset(&key, 0, sizeof(key));
    if (!ks->hashed && item->type == YAML_MAPPING_NODE) {
        if (cfg_map_apply(ld, item, cfg_apikey_keys, path, (char *)&it, CFG_MAP_SECRET) != 0)
            return -1;
        if (it.key != NULL && it.sha != NULL)
            return cfg_fail(ld, item, "%s: an entry has key or key_sha256, not both", path);
        if (it.key == NULL && it.sha == NULL)
            return cfg_fail(ld, item, "%s: entry without key or key_sha256", path);
        hashed = it.sha != NULL;
        v = hashed ? it.sha : it.key;
        snprintf(vpath, sizeof(vpath), "%s.%s", path, hashed ? "key_sha256" : "key");
        path = vpath;
        key.limits = it.limits;
    } else if (!ks->hashed && item->type != YAML_SCALAR_NODE) {
        return cfg_fail(ld, item, "%s: expected a key or a mapping with key: or key_sha256:", path);
    }
    if (cfg_key_digest(ld, v, hashed, path, key.sha256) != 0)
        return -1;
    for (i = 0; i < w->nkeys; i++)
        if (memcmp(w->keys[i].sha256, key.sha256, sizeof(key.sha256)) == 0)
            return cfg_fail(ld, v, "%s: the same key as on line %zu (tier '%s')", path,
                            ld->key_line[i], w->tiers[w->key_tier[i]].name);
    if (w->nkeys >= CFG_MAX_KEYS)
        return cfg_fail(ld, item, "too many API keys (at most %d)", CFG_MAX_KEYS);
    if (cfg_key_name(ld, it.name, item, ks, n, key.name) != 0)
        return -1;
    w->keys[w->nkeys] = key;
    w->key_tier[w->nkeys] = (unsigned char)ks->tier;
    ld->key_named[w->nkeys] = it.name != NULL;
    ld->key_line[w->nkeys++] = cfg_line(v);
    return 0;
}

/* tiers[].keys or tiers[].key_sha256 (v) for tier index `tier`; their keys
 * are numbered from n on (default names). */
static int cfg_apply_keys(struct cfg_ld *ld, const yaml_node_t *v, bool hashed, size_t tier,
                          unsigned n)
{
    struct cfg_keyset ks = { hashed ? "tiers.key_sha256" : "tiers.keys", hashed, tier, n };

    return cfg_seq_apply(ld, v, ks.path, cfg_key_item, &ks);
}

/* One tiers item: "premium" or a mapping of cfg_tier_keys. "default" is
 * tiers[0]: its entry sets the default tier's fields and keys. arg: bool, the
 * default tier's entry was seen. */
static int cfg_apply_tier(struct cfg_ld *ld, const yaml_node_t *item, void *arg)
{
    bool *default_seen = arg;
    struct cfg_tier_item it;
    const yaml_node_t *first, *second;
    struct cfg *w = ld->w;
    unsigned nplain = 0; /* entries of keys: the key_sha256 ones are numbered after them */
    const char *s;
    char msg[256];
    size_t idx;

    memset(&it, 0, sizeof(it));
    cfg_tier_defaults(&it.t, "");
    if ((s = cfg_item_apply(ld, item, cfg_tier_keys, "tiers", (char *)&it, "name")) == NULL)
        return -1;
    if (cfg_name_check(s, "tier", msg, sizeof(msg)) != 0)
        return cfg_fail_msg(ld, it.name, msg);
    if (strcmp(s, "default") == 0) {
        if (*default_seen)
            return cfg_fail(ld, it.name, "duplicate tier 'default'");
        *default_seen = true;
        idx = 0;
    } else {
        if (cfg_tier_find(w, s) >= 0)
            return cfg_fail(ld, it.name, "duplicate tier '%s'", s);
        if (w->ntiers >= CFG_MAX_TIERS)
            return cfg_fail(ld, item, "too many tiers (at most %d with default)", CFG_MAX_TIERS);
        idx = w->ntiers++;
    }
    memcpy(it.t.name, s, strlen(s) + 1);
    w->tiers[idx] = it.t;
    /* in the file's order, so that a repeated key is reported where it repeats */
    if (it.keys != NULL && it.keys->type == YAML_SEQUENCE_NODE)
        nplain = (unsigned)(it.keys->data.sequence.items.top - it.keys->data.sequence.items.start);
    first = it.keys;
    second = it.sha;
    if (first == NULL || (second != NULL && cfg_line(second) < cfg_line(first))) {
        first = it.sha;
        second = it.keys;
    }
    if (first != NULL &&
        cfg_apply_keys(ld, first, first == it.sha, idx, first == it.sha ? nplain + 1 : 1) != 0)
        return -1;
    if (second != NULL &&
        cfg_apply_keys(ld, second, second == it.sha, idx, second == it.sha ? nplain + 1 : 1) != 0)
        return -1;
    return 0;
}

/* routing.aliases: {client name: served name}, one step (no chains). */
static int cfg_apply_aliases(struct cfg_ld *ld, const yaml_node_t *v, const char *path)
{
    size_t line[CFG_MAX_ALIASES];
    struct cfg *w = ld->w;
    yaml_node_pair_t *pair;
    char msg[256];
    size_t i, j;
    int r = cfg_container(ld, v, YAML_MAPPING_NODE, path);

    if (r < 0)
        return -1;
    w->naliases = 0;
    memset(w->aliases, 0, sizeof(w->aliases));
    if (r == 0)
        return 0;
    for (pair = v->data.mapping.pairs.start; pair < v->data.mapping.pairs.top; pair++) {
        const yaml_node_t *kn = cfg_node(ld, pair->key), *vn = cfg_node(ld, pair->value);
        const char *from, *to;

        if (kn->type != YAML_SCALAR_NODE)
            return cfg_fail(ld, kn, "keys must be scalars (in %s)", path);
        if ((from = cfg_scalar(ld, kn, path)) == NULL || (to = cfg_scalar(ld, vn, path)) == NULL)
            return -1;
        if (cfg_name_check(from, "model", msg, sizeof(msg)) != 0)
            return cfg_fail_msg(ld, kn, msg);
        if (cfg_name_check(to, "model", msg, sizeof(msg)) != 0)
            return cfg_fail_msg(ld, vn, msg);
        if (strcmp(from, to) == 0)
            return cfg_fail(ld, kn, "%s: '%s' is an alias of itself", path, from);
        for (i = 0; i < w->naliases; i++)
            if (strcmp(w->aliases[i].from, from) == 0)
                return cfg_fail(ld, kn, "%s: duplicate alias '%s'", path, from);
        if (w->naliases >= CFG_MAX_ALIASES)
            return cfg_fail(ld, kn, "too many aliases (at most %d)", CFG_MAX_ALIASES);
        memcpy(w->aliases[w->naliases].from, from, strlen(from) + 1);
        memcpy(w->aliases[w->naliases].to, to, strlen(to) + 1);
        line[w->naliases++] = cfg_line(kn);
    }
    /* an alias is resolved once: pointing at another alias is a mistake */
    for (i = 0; i < w->naliases; i++)
        for (j = 0; j < w->naliases; j++)
            if (strcmp(w->aliases[i].to, w->aliases[j].from) == 0)
                return cfg_fail_at(ld, line[i],
                                   "%s: '%s' maps to '%s', which is itself an "
                                   "alias (line %zu); aliases are not chained",
                                   path, w->aliases[i].from, w->aliases[i].to, line[j]);
    return 0;
}

static void cfg_phrases_drop(struct cfg_ld *ld)
{
    while (ld->nphrases > 0)
        free(ld->phrases[--ld->nphrases]);
}

static int cfg_apply_phrase(struct cfg_ld *ld, const yaml_node_t *item, void *arg)
{
    const char *s = cfg_scalar(ld, item, "measure.refusal_phrases");
    char *dup;

    if (s == NULL)
        return -1;
    if (s[0] == '\0')
        return cfg_fail(ld, item, "measure.refusal_phrases: empty phrase");
    if (strlen(s) > CFG_PHRASE_MAX_BYTES)
        return cfg_fail(ld, item, "measure.refusal_phrases: phrase longer than %d bytes",
                        CFG_PHRASE_MAX_BYTES);
    if (ld->nphrases >= CFG_MAX_PHRASES)
        return cfg_fail(ld, item, "too many refusal phrases (at most %d)", CFG_MAX_PHRASES);
    if ((dup = strdup(s)) == NULL)
        return cfg_fail(ld, item, "out of memory");
    ld->phrases[ld->nphrases++] = dup;
    return 0;
}

static int cfg_apply_bucket(struct cfg_ld *ld, const yaml_node_t *item, void *arg)
{
    struct cfg *w = ld->w;
    const char *s = cfg_scalar(ld, item, "measure.buckets");
    double d;

    if (s == NULL)
        return -1;
    if (cfg_parse_double(s, &d) != 0)
        return cfg_fail(ld, item, "measure.buckets: bad number '%s'", s);
    if (!(d > 0) || d > CFG_BUCKET_MAX_S)
        return cfg_fail(ld, item,
                        "measure.buckets: %s is out of range (seconds, above 0, "
                        "at most %g)",
                        s, CFG_BUCKET_MAX_S);
    if (w->nbuckets > 0 && !(d > w->buckets[w->nbuckets - 1]))
        return cfg_fail(ld, item, "measure.buckets must be strictly ascending: %s after %g", s,
                        w->buckets[w->nbuckets - 1]);
    if (w->nbuckets >= CFG_MAX_BUCKETS)
        return cfg_fail(ld, item, "too many buckets (at most %d)", CFG_MAX_BUCKETS);
    w->buckets[w->nbuckets++] = d;
    return 0;
}

/* A list key: a sequence (or null for an empty one) replacing the current
 * list, each item handed to the kind's item function. */
static int cfg_apply_list(struct cfg_ld *ld, const struct cfg_key *k, const yaml_node_t *v,
                          const char *path)
{
    struct cfg *w = ld->w;
    struct cfg_names models = { w->models, &w->nmodels, CFG_MAX_MODELS, path, "" };
    bool default_seen = false;
    void *arg = NULL;
    cfg_item_cb fn;

    switch (k->kind) {
    case CFG_K_BACKENDS:
        w->nbackends = 0;
        fn = cfg_apply_backend;
        break;
    case CFG_K_MODELS:
        w->nmodels = 0;
        fn = cfg_name_item;
        arg = &models;
        break;
    case CFG_K_TIERS:
        /* the default tier and every key belong to the list it replaces */
        w->ntiers = 1;
        cfg_tier_defaults(&w->tiers[0], "default");
        w->nkeys = 0;
        memset(w->keys, 0, sizeof(w->keys));
        memset(w->key_tier, 0, sizeof(w->key_tier));
        fn = cfg_apply_tier;
        arg = &default_seen;
        break;
    case CFG_K_PHRASES:
        cfg_phrases_drop(ld);
        ld->phrases_set = true;
        fn = cfg_apply_phrase;
        break;
    case CFG_K_BUCKETS:
        w->nbuckets = 0;
        fn = cfg_apply_bucket;
        break;
    case CFG_K_CERTS:
        w->ntls_certs = 0;
        memset(w->tls_certs, 0, sizeof(w->tls_certs));
        fn = cfg_apply_cert;
        break;
    default: return cfg_fail(ld, v, "%s: internal error", path);
    }
    /* emptied before the type check: a failed load drops the working copy */
    if (cfg_seq_apply(ld, v, path, fn, arg) != 0)
        return -1;
    if (k->kind == CFG_K_BUCKETS && w->nbuckets == 0)
        return cfg_fail(ld, v, "measure.buckets: at least one bucket is needed");
    return 0;
}

static int cfg_apply(struct cfg_ld *ld, const struct cfg_key *k, const yaml_node_t *v,
                     const char *path, char *base)
{
    char msg[512];
    const char *s;
    int r;

    switch (k->kind) {
    case CFG_K_SECTION:
        r = cfg_container(ld, v, YAML_MAPPING_NODE, path);
        return r <= 0 ? r : cfg_map_apply(ld, v, k->sub, path, base + k->off, CFG_MAP_HINTS);
    case CFG_K_BACKENDS:
    case CFG_K_MODELS:
    case CFG_K_TIERS:
    case CFG_K_PHRASES:
    case CFG_K_BUCKETS:
    case CFG_K_CERTS: return cfg_apply_list(ld, k, v, path);
    case CFG_K_ALIASES: return cfg_apply_aliases(ld, v, path);
    case CFG_K_HEADER: return cfg_apply_header(ld, k, v, path, base);
    case CFG_K_NODE: memcpy(base + k->off, &v, sizeof(v)); return 0;
    case CFG_K_LISTEN:
        if ((s = cfg_scalar(ld, v, path)) == NULL)
            return -1;
        if (cfg_listen_set(ld->w, s, msg, sizeof(msg)) != 0)
            return cfg_fail_msg(ld, v, msg);
        return 0;
    case CFG_K_ADMIN_LISTEN:
        if (cfg_is_null(v) || cfg_is_quoted_empty(v))
            return cfg_admin_listen_set(ld->w, "", NULL, 0);
        if ((s = cfg_scalar(ld, v, path)) == NULL)
            return -1;
        if (cfg_admin_listen_set(ld->w, s, msg, sizeof(msg)) != 0)
            return cfg_fail_msg(ld, v, msg);
        return 0;
    case CFG_K_REDIS:
        if (cfg_is_quoted_empty(v))
            return cfg_redis_set(ld->w, "", msg, sizeof(msg));
        if ((s = cfg_scalar(ld, v, path)) == NULL)
            return -1;
        if (cfg_redis_set(ld->w, s, msg, sizeof(msg)) != 0)
            return cfg_fail_msg(ld, v, msg);
        return 0;
    case CFG_K_RESOLVER:
        if (cfg_is_quoted_empty(v))
            return cfg_resolver_set(ld->w, "", msg, sizeof(msg));
        if ((s = cfg_scalar(ld, v, path)) == NULL)
            return -1;
        if (cfg_resolver_set(ld->w, s, msg, sizeof(msg)) != 0)
            return cfg_fail_msg(ld, v, msg);
        return 0;
    case CFG_K_PATH:
        if (cfg_is_quoted_empty(v)) {
            ld->w->access_log[0] = '\0'; /* "": stdout, as "-" */
            return 0;
        }
        if ((s = cfg_scalar(ld, v, path)) == NULL)
            return -1;
        if (strlen(s) >= sizeof(ld->w->access_log))
            return cfg_fail(ld, v, "%s: path longer than %zu bytes", path,
                            sizeof(ld->w->access_log) - 1);
        memcpy(ld->w->access_log, s, strlen(s) + 1);
        return 0;
    case CFG_K_TEXT: return cfg_apply_text(ld, k, v, path, base);
    case CFG_K_URL:
        if (cfg_is_null(v) || cfg_is_quoted_empty(v))
            return cfg_otlp_endpoint_set(ld->w, "", NULL, 0);
        if ((s = cfg_scalar(ld, v, path)) == NULL)
            return -1;
        if (cfg_otlp_endpoint_set(ld->w, s, msg, sizeof(msg)) != 0)
            return cfg_fail_msg(ld, v, msg);
        return 0;
    default: return cfg_apply_scalar(ld, k, v, path, base);
    }
}

/* A parse failure from libyaml, at its problem mark. Reader errors (bad
 * UTF-8, control bytes) carry only a byte offset: count lines up to it. */
static int cfg_yaml_fail(struct cfg_ld *ld, const yaml_parser_t *p, const char *buf, size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    size_t line, i, end;

    switch (p->error) {
    case YAML_MEMORY_ERROR: return cfg_msg(ld->err, ld->errlen, "%s: out of memory", ld->name);
    case YAML_READER_ERROR:
        end = p->problem_offset < len ? p->problem_offset : len;
        for (line = 1, i = 0; i < end; i++)
            if (buf[i] == '\n')
                line++;
        if (p->problem_value != -1)
            return cfg_fail_at(ld, line, "syntax error: %s (byte 0x%02x)", problem,
                               (unsigned)p->problem_value & 0xffu);
        return cfg_fail_at(ld, line, "syntax error: %s", problem);
    default:
        line = p->problem_mark.line + 1;
        if (p->context == NULL)
            return cfg_fail_at(ld, line, "syntax error: %s", problem);
        if (p->context_mark.line + 1 != line)
            return cfg_fail_at(ld, line, "syntax error: %s %s started on line %zu", problem,
                               p->context, p->context_mark.line + 1);
        return cfg_fail_at(ld, line, "syntax error: %s %s", problem, p->context);
    }
}

/* Parses the one document of buf and applies it to ld->w. */
static int cfg_load_doc(struct cfg_ld *ld, const char *buf, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    yaml_node_t *root;
    int rc = 0;

    if (!yaml_parser_initialize(&parser))
        return cfg_msg(ld->err, ld->errlen, "%s: out of memory", ld->name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = cfg_yaml_fail(ld, &parser, buf, len);
        yaml_parser_delete(&parser);
        return rc;
    }
    /* Read to the end first, so that a syntax error anywhere fails the load
     * even when the first document is fine. */
    if (yaml_document_get_root_node(&doc) != NULL) {
        if (!yaml_parser_load(&parser, &extra)) {
            rc = cfg_yaml_fail(ld, &parser, buf, len);
        } else {
            if (yaml_document_get_root_node(&extra) != NULL)
                rc =
                    cfg_fail_at(ld, extra.start_mark.line + 1, "only one YAML document is allowed");
            yaml_document_delete(&extra);
        }
    }
    ld->doc = &doc;
    root = yaml_document_get_root_node(&doc);
    if (rc == 0 && root != NULL && !cfg_is_null(root)) {
        if (root->type != YAML_MAPPING_NODE)
            rc = cfg_fail(ld, root, "expected a mapping at top level");
        else
            rc = cfg_map_apply(ld, root, cfg_top_keys, NULL, (char *)ld->w, CFG_MAP_HINTS);
    }
    ld->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int cfg_load_buffer(struct cfg *c, const char *name, const char *buf, size_t len, char *err,
                    size_t errlen)
{
    struct cfg_ld ld;
    size_t i;
    int rc;

    memset(&ld, 0, sizeof(ld));
    ld.name = name;
    ld.err = err;
    ld.errlen = errlen;
    if ((ld.w = malloc(sizeof(*ld.w))) == NULL)
        return cfg_msg(err, errlen, "%s: out of memory", name);
    /* The copy shares c's phrases (borrowed); the file's own list lives in
     * ld.phrases until the commit below. */
    memcpy(ld.w, c, sizeof(*c));
    rc = cfg_load_doc(&ld, buf, len);
    if (rc == 0) {
        if (ld.phrases_set) {
            cfg_release(c);
            for (i = 0; i < CFG_MAX_PHRASES; i++)
                ld.w->refusal_phrases[i] = i < ld.nphrases ? ld.phrases[i] : NULL;
            ld.w->nrefusal = ld.nphrases;
            ld.nphrases = 0;
        }
        memcpy(c, ld.w, sizeof(*c));
    }
    cfg_phrases_drop(&ld);
    free(ld.w);
    return rc;
}
