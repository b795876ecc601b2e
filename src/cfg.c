/* cfg: pitot's configuration from the command line and a YAML file (libyaml
 * document API). A file load is all-or-nothing: it works on a copy and commits
 * only when every key passed; each error reads "PATH:LINE: message". API keys
 * are hashed as they are read: only their SHA-256 digests are kept. */
#include "pitot/cfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <yaml.h>

#define CFG_KIB 1024ull
#define CFG_MIB (1024ull * 1024)
#define CFG_GIB (1024ull * 1024 * 1024)
#define CFG_DAY_MS 86400000ull
#define CFG_FILE_MAX_BYTES (4 * CFG_MIB)  /* a config past this is a mistake */
#define CFG_PHRASE_MAX_BYTES 256          /* rfs looks at 400 characters */
#define CFG_BUCKET_MAX_S 86400.0
#define CFG_KEY_MAX_BYTES 1024            /* an API key in tiers[].keys */
#define CFG_NAME_CHARS "[A-Za-z0-9._:@/+-]"

static const double cfg_default_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
    2.5,   5,      10,    20,   30,    60,   120, 300,  600,
};

/* ---- messages ---------------------------------------------------------- */

static int cfg_msg(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes a message into err (when there is room at all); returns -1. */
static int cfg_msg(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* "1g", "16m", "256k", "100": the shortest exact spelling of a byte count. */
static const char *cfg_fmt_size(char *buf, size_t n, unsigned long long v)
{
    if (v != 0 && v % CFG_GIB == 0)
        snprintf(buf, n, "%llug", v / CFG_GIB);
    else if (v != 0 && v % CFG_MIB == 0)
        snprintf(buf, n, "%llum", v / CFG_MIB);
    else if (v != 0 && v % CFG_KIB == 0)
        snprintf(buf, n, "%lluk", v / CFG_KIB);
    else
        snprintf(buf, n, "%llu", v);
    return buf;
}

/* "10m", "5s", "250ms": the shortest exact spelling of a duration. */
static const char *cfg_fmt_ms(char *buf, size_t n, unsigned long long ms)
{
    if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, n, "%llum", ms / 60000);
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(buf, n, "%llus", ms / 1000);
    else
        snprintf(buf, n, "%llums", ms);
    return buf;
}

/* ---- scalar syntax ----------------------------------------------------- */

/* Leading decimal digits of s into *v, saturating at ULLONG_MAX so that an
 * overflow reads as "out of range". Returns the number of digits. */
static size_t cfg_digits(const char *s, unsigned long long *v)
{
    size_t i;

    *v = 0;
    for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (*v > (~0ull - d) / 10)
            *v = ~0ull;
        else
            *v = *v * 10 + d;
    }
    return i;
}

static unsigned long long cfg_mul_sat(unsigned long long v, unsigned long long m)
{
    return v > ~0ull / m ? ~0ull : v * m;
}

/* Non-negative decimal integer, nothing else. Returns 0 or -1. */
static int cfg_parse_count(const char *s, unsigned long long *v)
{
    size_t n = cfg_digits(s, v);

    return n > 0 && s[n] == '\0' ? 0 : -1;
}

/* Bytes, or KiB/MiB/GiB with a k/m/g suffix (either case). */
static int cfg_parse_size(const char *s, unsigned long long *v)
{
    size_t n = cfg_digits(s, v);

    if (n == 0)
        return -1;
    if (s[n] == '\0')
        return 0;
    if (s[n + 1] != '\0')
        return -1;
    switch (s[n]) {
    case 'k': case 'K': *v = cfg_mul_sat(*v, CFG_KIB); return 0;
    case 'm': case 'M': *v = cfg_mul_sat(*v, CFG_MIB); return 0;
    case 'g': case 'G': *v = cfg_mul_sat(*v, CFG_GIB); return 0;
    default: return -1;
    }
}

/* Milliseconds: a bare number, or with an ms, s or m suffix. */
static int cfg_parse_ms(const char *s, unsigned long long *v)
{
    size_t n = cfg_digits(s, v);

    if (n == 0)
        return -1;
    if (strcmp(s + n, "") == 0 || strcmp(s + n, "ms") == 0)
        return 0;
    if (strcmp(s + n, "s") == 0) {
        *v = cfg_mul_sat(*v, 1000);
        return 0;
    }
    if (strcmp(s + n, "m") == 0) {
        *v = cfg_mul_sat(*v, 60000);
        return 0;
    }
    return -1;
}

/* YAML 1.1 booleans that people actually write. */
static int cfg_parse_bool(const char *s, bool *v)
{
    static const char *const yes[] = { "true", "yes", "on" };
    static const char *const no[] = { "false", "no", "off" };
    size_t i;

    for (i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *v = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *v = false;
            return 0;
        }
    }
    return -1;
}

/* A finite decimal number (no hex, inf, nan or blanks, which strtod takes). */
static int cfg_parse_double(const char *s, double *v)
{
    char *end;

    if (*s == '\0' || s[strspn(s, "0123456789.eE+-")] != '\0')
        return -1;
    errno = 0;
    *v = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(*v))
        return -1;
    return 0;
}

/* Label values: short and from a set safe in every output format. */
static int cfg_name_check(const char *s, const char *what, char *err, size_t errlen)
{
    size_t len = strlen(s);
    size_t i;

    if (len == 0)
        return cfg_msg(err, errlen, "empty %s name", what);
    if (len >= CFG_NAME_MAX)
        return cfg_msg(err, errlen, "%s name '%.*s...' longer than %d characters", what, 32, s,
                       CFG_NAME_MAX - 1);
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("._:@/+-", ch) != NULL))
            return cfg_msg(err, errlen, "%s name '%s' has characters outside " CFG_NAME_CHARS,
                           what, s);
    }
    return 0;
}

/* ---- host:port --------------------------------------------------------- */

struct cfg_hostport {
    char host[CFG_HOST_MAX]; /* without brackets */
    bool v6;
    bool has_port;
    unsigned long port;      /* valid when has_port, 0..99999: callers check */
};

/* Splits "host[:port]" or "[v6][:port]" (s[0..len), not NUL-terminated).
 * Returns NULL or the reason it is not valid. */
static const char *cfg_hostport_parse(const char *s, size_t len, struct cfg_hostport *hp)
{
    const char *host = s, *rest;
    size_t hlen, i;
    unsigned long long port;

    memset(hp, 0, sizeof(*hp));
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return "missing ']' after IPv6 address";
        host = s + 1;
        hlen = (size_t)(close - host);
        rest = close + 1;
        hp->v6 = true;
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) != NULL)
            return "an IPv6 address needs brackets: [::1]:port";
        hlen = colon ? (size_t)(colon - s) : len;
        rest = s + hlen;
    }
    if (hlen == 0)
        return "empty host";
    if (hlen >= CFG_HOST_MAX)
        return "host longer than 255 bytes";
    memcpy(hp->host, host, hlen);
    hp->host[hlen] = '\0';
    if (hp->v6) {
        unsigned char addr[16];
        if (inet_pton(AF_INET6, hp->host, addr) != 1)
            return "bad IPv6 address";
    } else {
        for (i = 0; i < hlen; i++) {
            unsigned char ch = (unsigned char)host[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_'))
                return "host has characters outside [A-Za-z0-9._-]";
        }
    }
    if (rest == s + len)
        return NULL;
    if (*rest != ':')
        return "unexpected characters after ']'";
    rest++;
    i = (size_t)(s + len - rest);
    if (i == 0 || i > 5)
        return "bad port";
    {
        char pbuf[6];
        memcpy(pbuf, rest, i);
        pbuf[i] = '\0';
        if (cfg_parse_count(pbuf, &port) != 0)
            return "bad port";
    }
    hp->has_port = true;
    hp->port = (unsigned long)port;
    return NULL;
}

/* Fills b from "http://host[:port][/]"; the name is left to the caller. */
static int cfg_url_parse(const char *url, struct cfg_backend *b, char *err, size_t errlen)
{
    struct cfg_hostport hp;
    const char *p, *rest, *why;
    size_t alen;

    if (strncasecmp(url, "https://", 8) == 0)
        return cfg_msg(err, errlen, "bad backend URL '%s': https is not supported yet", url);
    if (strncasecmp(url, "http://", 7) != 0) {
        if (strstr(url, "://") != NULL)
            return cfg_msg(err, errlen, "bad backend URL '%s': only http:// is supported", url);
        return cfg_msg(err, errlen, "bad backend URL '%s': expected http://host[:port]", url);
    }
    p = url + 7;
    alen = strcspn(p, "/?#");
    rest = p + alen;
    if (memchr(p, '@', alen) != NULL)
        return cfg_msg(err, errlen, "bad backend URL '%s': userinfo (user@) is not allowed", url);
    if (strchr(rest, '?') != NULL)
        return cfg_msg(err, errlen, "bad backend URL '%s': a query is not allowed", url);
    if (strchr(rest, '#') != NULL)
        return cfg_msg(err, errlen, "bad backend URL '%s': a fragment is not allowed", url);
    if (*rest != '\0' && strcmp(rest, "/") != 0)
        return cfg_msg(err, errlen, "bad backend URL '%s': a path is not allowed", url);
    why = cfg_hostport_parse(p, alen, &hp);
    if (why == NULL && hp.has_port && (hp.port == 0 || hp.port > 65535))
        why = "port out of range (1-65535)";
    if (why != NULL)
        return cfg_msg(err, errlen, "bad backend URL '%s': %s", url, why);
    memset(b, 0, sizeof(*b));
    memcpy(b->host, hp.host, sizeof(b->host));
    b->port = hp.has_port ? (uint16_t)hp.port : 80;
    snprintf(b->url, sizeof(b->url), hp.v6 ? "http://[%s]:%u" : "http://%s:%u", b->host,
             (unsigned)b->port);
    return 0;
}

/* Sets b->name: the given one (checked), else "host:port" from its URL. */
static int cfg_backend_name(struct cfg_backend *b, const char *name, char *err, size_t errlen)
{
    const char *hostport = b->url + 7; /* past "http://" */

    if (name != NULL) {
        if (cfg_name_check(name, "backend", err, errlen) != 0)
            return -1;
        memcpy(b->name, name, strlen(name) + 1);
        return 0;
    }
    if (strlen(hostport) >= sizeof(b->name))
        return cfg_msg(err, errlen, "backend '%s': default name '%s' longer than %d characters, "
                       "give it a name", b->url, hostport, CFG_NAME_MAX - 1);
    memcpy(b->name, hostport, strlen(hostport) + 1);
    return 0;
}

/* Index of the first of c->backends[0..n) named like name, or -1. */
static int cfg_backend_find(const struct cfg *c, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(c->backends[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* ---- public: defaults, CLI helpers ------------------------------------- */

/* A tier as every tier starts: priority 0, no SLO targets, 64 held for 30 s. */
static void cfg_tier_defaults(struct cfg_tier *t, const char *name)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->max_queue = 64;
    t->max_wait_ms = 30000;
}

void cfg_init(struct cfg *c)
{
    memset(c, 0, sizeof(*c));
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 8080;
    cfg_tier_defaults(&c->tiers[0], "default");
    c->ntiers = 1;
    c->max_model_labels = 16;

    c->max_header_bytes = 32768;
    c->max_headers = 100;
    c->max_uri_bytes = 8192;
    c->max_body_bytes = 16 * CFG_MIB;
    c->header_timeout_ms = 10000;
    c->body_timeout_ms = 60000;
    c->keepalive_timeout_ms = 75000;
    c->max_clients = 4096;

    c->connect_timeout_ms = 5000;
    c->upstream_header_timeout_ms = 600000;
    c->upstream_idle_timeout_ms = 600000;
    c->upstream_keepalive = 16;
    c->stream_buffer_bytes = 256 * CFG_KIB;
    c->max_event_bytes = CFG_MIB;
    c->health_interval_ms = 2000;
    c->health_timeout_ms = 1000;

    c->stall_ms = 10000;
    c->stall_timeout_ms = 120000;
    c->usage_injection = true;
    memcpy(c->buckets, cfg_default_buckets, sizeof(cfg_default_buckets));
    c->nbuckets = sizeof(cfg_default_buckets) / sizeof(cfg_default_buckets[0]);

    c->policy = CFG_POLICY_LEAST_BUSY;
    c->scrape_interval_ms = 500;
    c->scrape_timeout_ms = 400;
    c->scrape_stale_ms = 2000;
    c->models_interval_ms = 10000;
    c->dns_interval_ms = 10000;
    c->max_addresses = 8;
    c->default_capacity = 4;
    c->retry = true;
    c->max_waiting = 0;
    c->max_cache_ratio = 0.95;
    c->max_in_flight = 0;
    c->eject_failures = 3;
    c->eject_base_ms = 1000;
    c->eject_max_ms = 60000;
    c->affinity = CFG_AFFINITY_OFF;
    strcpy(c->affinity_header, "X-Session-Id");
    c->affinity_prefix_messages = 2;
    c->affinity_max_load = 1.25;
    c->queue_max = 256;
    /* tier_header "" (off), no aliases, no API keys: the memset */

    strcpy(c->access_log, "-");
    c->log_level = 2;
}

void cfg_release(struct cfg *c)
{
    size_t i;

    for (i = 0; i < c->nrefusal; i++) {
        free(c->refusal_phrases[i]);
        c->refusal_phrases[i] = NULL;
    }
    c->nrefusal = 0;
}

int cfg_backend_add(struct cfg *c, const char *url, const char *name, char *err, size_t errlen)
{
    struct cfg_backend b;

    if (c->nbackends >= CFG_MAX_BACKENDS)
        return cfg_msg(err, errlen, "too many backends (at most %d)", CFG_MAX_BACKENDS);
    if (cfg_url_parse(url, &b, err, errlen) != 0 || cfg_backend_name(&b, name, err, errlen) != 0)
        return -1;
    if (cfg_backend_find(c, c->nbackends, b.name) >= 0)
        return cfg_msg(err, errlen, "duplicate backend name '%s'", b.name);
    c->backends[c->nbackends++] = b;
    return 0;
}

int cfg_listen_set(struct cfg *c, const char *hostport, char *err, size_t errlen)
{
    struct cfg_hostport hp;
    unsigned long long port;
    const char *why;

    if (cfg_parse_count(hostport, &port) == 0) {
        if (port > 65535)
            return cfg_msg(err, errlen, "bad listen address '%s': port out of range (0-65535)",
                           hostport);
        strcpy(c->listen_host, "127.0.0.1");
        c->listen_port = (uint16_t)port;
        return 0;
    }
    if (hostport[0] == ':' && strchr(hostport + 1, ':') == NULL) {
        /* ":port": every interface */
        if (cfg_parse_count(hostport + 1, &port) != 0)
            why = "bad port";
        else if (port > 65535)
            why = "port out of range (0-65535)";
        else
            why = cfg_hostport_parse("0.0.0.0", 7, &hp);
        hp.has_port = true;
        hp.port = (unsigned long)port;
    } else {
        why = cfg_hostport_parse(hostport, strlen(hostport), &hp);
        if (why == NULL && !hp.has_port)
            why = "expected host:port, [v6]:port, :port or port";
        else if (why == NULL && hp.port > 65535)
            why = "port out of range (0-65535)";
    }
    if (why != NULL)
        return cfg_msg(err, errlen, "bad listen address '%s': %s", hostport, why);
    memcpy(c->listen_host, hp.host, sizeof(c->listen_host));
    c->listen_port = (uint16_t)hp.port;
    return 0;
}

int cfg_tier_find(const struct cfg *c, const char *name)
{
    size_t i;

    for (i = 0; i < c->ntiers; i++)
        if (strcmp(c->tiers[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The routing checks of cfg_validate: pairs of durations, aliases against
 * the models backends declare. */
static int cfg_validate_routing(const struct cfg *c, char *err, size_t errlen)
{
    char a[32], b[32];
    size_t i, j, m;

    if (c->scrape_timeout_ms > c->scrape_interval_ms)
        return cfg_msg(err, errlen,
                       "routing.scrape_timeout (%s) must not exceed routing.scrape_interval (%s)",
                       cfg_fmt_ms(a, sizeof(a), c->scrape_timeout_ms),
                       cfg_fmt_ms(b, sizeof(b), c->scrape_interval_ms));
    if (c->scrape_stale_ms <= c->scrape_interval_ms)
        return cfg_msg(err, errlen,
                       "routing.scrape_stale (%s) must be longer than routing.scrape_interval (%s)",
                       cfg_fmt_ms(a, sizeof(a), c->scrape_stale_ms),
                       cfg_fmt_ms(b, sizeof(b), c->scrape_interval_ms));
    if (c->eject_base_ms > c->eject_max_ms)
        return cfg_msg(err, errlen, "routing.eject.base (%s) must not exceed routing.eject.max (%s)",
                       cfg_fmt_ms(a, sizeof(a), c->eject_base_ms),
                       cfg_fmt_ms(b, sizeof(b), c->eject_max_ms));
    for (i = 0; i < c->naliases; i++)
        for (j = 0; j < c->nbackends; j++)
            for (m = 0; m < c->backends[j].nmodels; m++)
                if (strcmp(c->aliases[i].from, c->backends[j].models[m]) == 0)
                    return cfg_msg(err, errlen,
                                   "routing.aliases: '%s' is a model backend '%s' serves; it "
                                   "cannot also be an alias", c->aliases[i].from,
                                   c->backends[j].name);
    for (i = 0; i < c->nkeys; i++)
        if (c->key_tier[i] >= c->ntiers)
            return cfg_msg(err, errlen, "API key %zu belongs to tier %u, which does not exist", i,
                           (unsigned)c->key_tier[i]);
    return 0;
}

int cfg_validate(const struct cfg *c, char *err, size_t errlen)
{
    char a[32], b[32];
    size_t i, j;

    if (c->nbackends == 0)
        return cfg_msg(err, errlen, "no backend: give --backend URL or backends: in the config");
    for (i = 1; i < c->nbackends; i++)
        if (cfg_backend_find(c, i, c->backends[i].name) >= 0)
            return cfg_msg(err, errlen, "duplicate backend name '%s'", c->backends[i].name);
    if (c->ntiers == 0 || strcmp(c->tiers[0].name, "default") != 0)
        return cfg_msg(err, errlen, "the first tier must be 'default'");
    for (i = 1; i < c->ntiers; i++)
        for (j = 0; j < i; j++)
            if (strcmp(c->tiers[i].name, c->tiers[j].name) == 0)
                return cfg_msg(err, errlen, "duplicate tier '%s'", c->tiers[i].name);
    for (i = 1; i < c->nmodels; i++)
        for (j = 0; j < i; j++)
            if (strcmp(c->models[i], c->models[j]) == 0)
                return cfg_msg(err, errlen, "duplicate model '%s'", c->models[i]);
    if (c->nbuckets == 0)
        return cfg_msg(err, errlen, "measure.buckets: at least one bucket is needed");
    for (i = 0; i < c->nbuckets; i++) {
        if (!(c->buckets[i] > 0))
            return cfg_msg(err, errlen, "measure.buckets: %g is not positive", c->buckets[i]);
        if (i > 0 && !(c->buckets[i] > c->buckets[i - 1]))
            return cfg_msg(err, errlen, "measure.buckets must be strictly ascending: %g after %g",
                           c->buckets[i], c->buckets[i - 1]);
    }
    if (c->stall_ms >= c->stall_timeout_ms)
        return cfg_msg(err, errlen,
                       "measure.stall (%s) must be shorter than measure.stall_timeout (%s)",
                       cfg_fmt_ms(a, sizeof(a), c->stall_ms),
                       cfg_fmt_ms(b, sizeof(b), c->stall_timeout_ms));
    if (c->max_uri_bytes > c->max_header_bytes)
        return cfg_msg(err, errlen,
                       "limits.max_uri_bytes (%zu) must not exceed limits.max_header_bytes (%zu)",
                       c->max_uri_bytes, c->max_header_bytes);
    return cfg_validate_routing(c, err, errlen);
}

/* ---- YAML: the key tables ---------------------------------------------- */

enum cfg_kind {
    CFG_K_SECTION, /* a mapping with its own key table */
    CFG_K_LISTEN,
    CFG_K_BACKENDS,
    CFG_K_MODELS,
    CFG_K_TIERS,
    CFG_K_PHRASES,
    CFG_K_BUCKETS,
    CFG_K_ALIASES, /* routing.aliases: a {from: to} mapping */
    CFG_K_COUNT,   /* unsigned field */
    CFG_K_INT,     /* int field, may be negative */
    CFG_K_SIZE,    /* size_t field, bytes */
    CFG_K_MS,      /* unsigned field, milliseconds */
    CFG_K_BOOL,
    CFG_K_ENUM,    /* int-sized enum field: index of the value in names[] */
    CFG_K_RATIO,   /* double field in (0, 1] */
    CFG_K_FACTOR,  /* double field in [1, 100] */
    CFG_K_HEADER,  /* char[CFG_NAME_MAX] header name; min 0: "" allowed (off) */
    CFG_K_PATH,    /* access_log */
    CFG_K_NODE,    /* list items: keep the value node for the item's own code */
};

struct cfg_key {
    const char *name;
    enum cfg_kind kind;
    size_t off;                  /* field offset in the table's target struct */
    long long min, max;          /* accepted range, in the field's unit */
    const struct cfg_key *sub;   /* CFG_K_SECTION: its keys */
    const char *const *names;    /* CFG_K_ENUM: value names, NULL-terminated */
};

/* The enum kinds write an int. */
_Static_assert(sizeof(enum cfg_flavor) == sizeof(int), "enum cfg_flavor is not int-sized");
_Static_assert(sizeof(enum cfg_policy) == sizeof(int), "enum cfg_policy is not int-sized");
_Static_assert(sizeof(enum cfg_affinity) == sizeof(int), "enum cfg_affinity is not int-sized");

/* Items of backends and tiers: parsed through a key table into these, then
 * checked as a whole (the name decides where a tier goes). */
struct cfg_backend_item {
    struct cfg_backend b;               /* flavor, capacity */
    const yaml_node_t *url, *name, *models; /* borrowed from the document */
};

struct cfg_tier_item {
    struct cfg_tier t;                  /* everything but the name */
    const yaml_node_t *name, *keys, *sha; /* borrowed from the document */
};

#define CFG_K_(T, k, kind, f, lo, hi) { k, kind, offsetof(T, f), lo, hi, NULL, NULL }
#define CFG_MS(k, f, lo, hi) CFG_K_(struct cfg, k, CFG_K_MS, f, lo, hi)
#define CFG_SIZE(k, f, lo, hi) CFG_K_(struct cfg, k, CFG_K_SIZE, f, lo, hi)
#define CFG_COUNT(k, f, lo, hi) CFG_K_(struct cfg, k, CFG_K_COUNT, f, lo, hi)
#define CFG_BOOL(k, f) CFG_K_(struct cfg, k, CFG_K_BOOL, f, 0, 1)
#define CFG_ENUM(T, k, f, names) { k, CFG_K_ENUM, offsetof(T, f), 0, 0, NULL, names }
#define CFG_NODE(T, k, f) CFG_K_(T, k, CFG_K_NODE, f, 0, 0)
#define CFG_SECTION(k, sub) { k, CFG_K_SECTION, 0, 0, 0, sub, NULL }
#define CFG_SPECIAL(k, kind) { k, kind, 0, 0, 0, NULL, NULL }
#define CFG_END { NULL, CFG_K_SECTION, 0, 0, 0, NULL, NULL }
#define CFG_DAY (long long)CFG_DAY_MS
#define CFG_1G (long long)CFG_GIB
#define CFG_16M (long long)(16 * CFG_MIB)
#define CFG_256M (long long)(256 * CFG_MIB)

static const char *const cfg_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const cfg_flavors[] = { "auto", "llamacpp", "vllm", "tgi", "sglang", "openai",
                                           NULL };
static const char *const cfg_policies[] = { "least_busy", "least_in_flight", "round_robin", NULL };
static const char *const cfg_affinities[] = { "off", "header", "user", "prefix", NULL };

static const struct cfg_key cfg_limits_keys[] = {
    CFG_SIZE("max_header_bytes", max_header_bytes, 1024, CFG_16M),
    CFG_COUNT("max_headers", max_headers, 1, 10000),
    CFG_SIZE("max_uri_bytes", max_uri_bytes, 16, CFG_16M),
    CFG_SIZE("max_body_bytes", max_body_bytes, 1, CFG_1G),
    CFG_MS("header_timeout", header_timeout_ms, 1, CFG_DAY),
    CFG_MS("body_timeout", body_timeout_ms, 1, CFG_DAY),
    CFG_MS("keepalive_timeout", keepalive_timeout_ms, 1, CFG_DAY),
    CFG_COUNT("max_clients", max_clients, 1, 1000000),
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
    CFG_MS("scrape_interval", scrape_interval_ms, 1, CFG_DAY),
    CFG_MS("scrape_timeout", scrape_timeout_ms, 1, CFG_DAY),
    CFG_MS("scrape_stale", scrape_stale_ms, 1, CFG_DAY),
    CFG_MS("models_interval", models_interval_ms, 1, CFG_DAY),
    CFG_MS("dns_interval", dns_interval_ms, 1, CFG_DAY),
    CFG_COUNT("max_addresses", max_addresses, 1, 64),
    CFG_COUNT("default_capacity", default_capacity, 1, 65536),
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

static const struct cfg_key cfg_log_keys[] = {
    CFG_SPECIAL("access_log", CFG_K_PATH),
    CFG_ENUM(struct cfg, "level", log_level, cfg_levels),
    CFG_END,
};

static const struct cfg_key cfg_top_keys[] = {
    CFG_SPECIAL("listen", CFG_K_LISTEN),
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
    CFG_SECTION("log", cfg_log_keys),
    CFG_END,
};

/* backends items; url and name are checked once the whole item is read. */
static const struct cfg_key cfg_backend_keys[] = {
    CFG_NODE(struct cfg_backend_item, "url", url),
    CFG_NODE(struct cfg_backend_item, "name", name),
    CFG_ENUM(struct cfg_backend_item, "flavor", b.flavor, cfg_flavors),
    CFG_K_(struct cfg_backend_item, "capacity", CFG_K_COUNT, b.capacity, 0, 65536),
    CFG_NODE(struct cfg_backend_item, "models", models),
    CFG_END,
};

/* tiers items; the same for "default" (tiers[0]) as for the others. */
static const struct cfg_key cfg_tier_keys[] = {
    CFG_NODE(struct cfg_tier_item, "name", name),
    CFG_K_(struct cfg_tier_item, "priority", CFG_K_INT, t.priority, -1000, 1000),
    CFG_K_(struct cfg_tier_item, "slo_ttft", CFG_K_MS, t.slo_ttft_ms, 0, CFG_DAY),
    CFG_K_(struct cfg_tier_item, "slo_tpot", CFG_K_MS, t.slo_tpot_ms, 0, CFG_DAY),
    CFG_K_(struct cfg_tier_item, "max_queue", CFG_K_COUNT, t.max_queue, 0, 1000000),
    CFG_K_(struct cfg_tier_item, "max_wait", CFG_K_MS, t.max_wait_ms, 0, CFG_DAY),
    CFG_NODE(struct cfg_tier_item, "keys", keys),
    CFG_NODE(struct cfg_tier_item, "key_sha256", sha),
    CFG_END,
};

/* ---- YAML: walking the document ---------------------------------------- */

/* One load in progress. */
struct cfg_ld {
    struct cfg *w;             /* working copy, committed on success; owned */
    yaml_document_t *doc;      /* borrowed */
    const char *name;          /* borrowed: PATH in messages */
    char *err;                 /* borrowed */
    size_t errlen;
    bool phrases_set;          /* the file gave refusal_phrases */
    char *phrases[CFG_MAX_PHRASES]; /* owned until committed */
    size_t nphrases;
    size_t key_line[CFG_MAX_KEYS]; /* line of w->keys[i]: all from this file */
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

static size_t cfg_seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
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
 * limits.max_clients?)", " (did you mean top-level tier_header?)", or "". */
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
    return "";
}

static int cfg_apply(struct cfg_ld *ld, const struct cfg_key *k, const yaml_node_t *v,
                     const char *path, char *base);

/* Applies every pair of mapping m against the key table keys, writing into
 * base (the working cfg, or a list item's struct). section is NULL at the top
 * level; hints: suggest where a misplaced key belongs (not in list items). */
static int cfg_map_apply(struct cfg_ld *ld, const yaml_node_t *m, const struct cfg_key *keys,
                         const char *section, char *base, bool hints)
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
        if (keys[i].name == NULL)
            return cfg_fail(ld, kn, "unknown key '%.64s' %s %s%s", key, section ? "in" : "at",
                            where, hints ? cfg_key_hint(key, keys, hint, sizeof(hint)) : "");
        if (seen & (1ull << i))
            return cfg_fail(ld, kn, "duplicate key '%s' %s %s", key, section ? "in" : "at",
                            where);
        seen |= 1ull << i;
        snprintf(path, sizeof(path), "%s%s%s", section ? section : "", section ? "." : "", key);
        if (cfg_apply(ld, &keys[i], vn, path, base) != 0)
            return -1;
    }
    return 0;
}

/* Optionally signed decimal integer, saturating (out of range, not bad). */
static int cfg_parse_int(const char *s, long long *v)
{
    unsigned long long n;
    bool neg = s[0] == '-';

    if (cfg_parse_count(s + (s[0] == '-' || s[0] == '+'), &n) != 0)
        return -1;
    if (n > (unsigned long long)LLONG_MAX)
        *v = neg ? LLONG_MIN : LLONG_MAX;
    else
        *v = neg ? -(long long)n : (long long)n;
    return 0;
}

/* "a, b or c" from a NULL-terminated list. */
static const char *cfg_fmt_names(char *buf, size_t n, const char *const *names)
{
    size_t len = 0, i;

    buf[0] = '\0';
    for (i = 0; names[i] != NULL && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s",
                                i == 0 ? "" : names[i + 1] == NULL ? " or " : ", ", names[i]);
    return buf;
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
            return cfg_fail(ld, v, "%s: bad duration '%s' (milliseconds, or with an ms, s or m "
                            "suffix: 10s)", path, s);
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
    default:
        return cfg_fail(ld, v, "%s: internal error", path);
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
        return cfg_fail(ld, v, "%s: header name longer than %d characters", path,
                        CFG_NAME_MAX - 1);
    if (s[strspn(s, tchars)] != '\0')
        return cfg_fail(ld, v, "%s: '%s' is not a header name (letters, digits and "
                        "!#$%%&'*+-.^_`|~)", path, s);
    memcpy(field, s, strlen(s) + 1);
    return 0;
}

/* backends[].models: the names a backend serves (none: learned). */
static int cfg_apply_backend_models(struct cfg_ld *ld, const yaml_node_t *v, struct cfg_backend *b)
{
    static const char path[] = "backends.models";
    yaml_node_item_t *it;
    char msg[256];
    size_t i;
    int r = cfg_container(ld, v, YAML_SEQUENCE_NODE, path);

    if (r <= 0)
        return r;
    for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        const yaml_node_t *item = cfg_node(ld, *it);
        const char *s = cfg_scalar(ld, item, path);

        if (s == NULL)
            return -1;
        if (cfg_name_check(s, "model", msg, sizeof(msg)) != 0)
            return cfg_fail_msg(ld, item, msg);
        for (i = 0; i < b->nmodels; i++)
            if (strcmp(b->models[i], s) == 0)
                return cfg_fail(ld, item, "%s: duplicate model '%s'", path, s);
        if (b->nmodels >= CFG_MAX_BACKEND_MODELS)
            return cfg_fail(ld, item, "%s: too many models (at most %d)", path,
                            CFG_MAX_BACKEND_MODELS);
        memcpy(b->models[b->nmodels++], s, strlen(s) + 1);
    }
    return 0;
}

/* One backends item: "http://..." or a mapping of cfg_backend_keys. */
static int cfg_apply_backend(struct cfg_ld *ld, const yaml_node_t *item)
{
    struct cfg_backend_item it;
    struct cfg_backend b;
    const char *u, *nm = NULL;
    char msg[512];

    memset(&it, 0, sizeof(it));
    if (item->type == YAML_MAPPING_NODE) {
        if (cfg_map_apply(ld, item, cfg_backend_keys, "backends", (char *)&it, false) != 0)
            return -1;
        if (it.url == NULL)
            return cfg_fail(ld, item, "backends: entry without url");
    } else if (item->type == YAML_SCALAR_NODE) {
        it.url = item;
    } else {
        return cfg_fail(ld, item, "backends: expected a URL or a mapping with url:");
    }
    if ((u = cfg_scalar(ld, it.url, "backends.url")) == NULL)
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
    if (it.models != NULL && cfg_apply_backend_models(ld, it.models, &b) != 0)
        return -1;
    ld->w->backends[ld->w->nbackends++] = b;
    return 0;
}

/* "64 hex digits" into 32 bytes. */
static int cfg_parse_sha256(const char *s, unsigned char out[32])
{
    size_t i;

    if (strlen(s) != 64 || s[strspn(s, "0123456789abcdefABCDEF")] != '\0')
        return -1;
    for (i = 0; i < 32; i++) {
        char pair[3] = { s[2 * i], s[2 * i + 1], '\0' };
        out[i] = (unsigned char)strtoul(pair, NULL, 16);
    }
    return 0;
}

/* tiers[].keys (plain keys, hashed here; the text is never copied) or
 * tiers[].key_sha256 (their digests), for tier index `tier`. A digest already
 * held by any tier is an error naming the line of the first. */
static int cfg_apply_keys(struct cfg_ld *ld, const yaml_node_t *v, bool hashed, size_t tier)
{
    const char *path = hashed ? "tiers.key_sha256" : "tiers.keys";
    struct cfg *w = ld->w;
    yaml_node_item_t *it;
    int r = cfg_container(ld, v, YAML_SEQUENCE_NODE, path);

    if (r <= 0)
        return r;
    for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        const yaml_node_t *item = cfg_node(ld, *it);
        const char *s = cfg_scalar(ld, item, path);
        unsigned char d[32];
        size_t i, len;

        if (s == NULL)
            return -1;
        len = strlen(s);
        if (hashed) {
            if (cfg_parse_sha256(s, d) != 0)
                return cfg_fail(ld, item, "%s: '%.80s' is not a SHA-256 digest (64 hex digits, "
                                "from: printf %%s KEY | sha256sum)", path, s);
        } else {
            /* no key text in these messages: they end up in logs */
            if (len == 0)
                return cfg_fail(ld, item, "%s: empty key", path);
            if (len > CFG_KEY_MAX_BYTES)
                return cfg_fail(ld, item, "%s: key longer than %d bytes", path,
                                CFG_KEY_MAX_BYTES);
            for (i = 0; i < len; i++)
                if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
                    return cfg_fail(ld, item, "%s: a key may only have visible ASCII "
                                    "characters (no blanks)", path);
            if (EVP_Digest(s, len, d, NULL, EVP_sha256(), NULL) != 1)
                return cfg_fail(ld, item, "%s: SHA-256 failed", path);
        }
        for (i = 0; i < w->nkeys; i++)
            if (memcmp(w->keys[i].sha256, d, sizeof(d)) == 0)
                return cfg_fail(ld, item, "%s: the same key as on line %zu (tier '%s')", path,
                                ld->key_line[i], w->tiers[w->key_tier[i]].name);
        if (w->nkeys >= CFG_MAX_KEYS)
            return cfg_fail(ld, item, "too many API keys (at most %d)", CFG_MAX_KEYS);
        memcpy(w->keys[w->nkeys].sha256, d, sizeof(d));
        w->key_tier[w->nkeys] = (unsigned char)tier;
        ld->key_line[w->nkeys++] = cfg_line(item);
    }
    return 0;
}

/* One tiers item: "premium" or a mapping of cfg_tier_keys. "default" is
 * tiers[0]: its entry sets the default tier's fields and keys. */
static int cfg_apply_tier(struct cfg_ld *ld, const yaml_node_t *item, bool *default_seen)
{
    struct cfg_tier_item it;
    const yaml_node_t *first, *second;
    struct cfg *w = ld->w;
    const char *s;
    char msg[256];
    size_t idx;

    memset(&it, 0, sizeof(it));
    cfg_tier_defaults(&it.t, "");
    if (item->type == YAML_MAPPING_NODE) {
        if (cfg_map_apply(ld, item, cfg_tier_keys, "tiers", (char *)&it, false) != 0)
            return -1;
        if (it.name == NULL)
            return cfg_fail(ld, item, "tiers: entry without name");
    } else if (item->type == YAML_SCALAR_NODE) {
        it.name = item;
    } else {
        return cfg_fail(ld, item, "tiers: expected a name or a mapping with name:");
    }
    if ((s = cfg_scalar(ld, it.name, "tiers.name")) == NULL)
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
    first = it.keys;
    second = it.sha;
    if (first == NULL || (second != NULL && cfg_line(second) < cfg_line(first))) {
        first = it.sha;
        second = it.keys;
    }
    if (first != NULL && cfg_apply_keys(ld, first, first == it.sha, idx) != 0)
        return -1;
    if (second != NULL && cfg_apply_keys(ld, second, second == it.sha, idx) != 0)
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
                return cfg_fail_at(ld, line[i], "%s: '%s' maps to '%s', which is itself an "
                                   "alias (line %zu); aliases are not chained", path,
                                   w->aliases[i].from, w->aliases[i].to, line[j]);
    return 0;
}

static int cfg_apply_model(struct cfg_ld *ld, const yaml_node_t *item)
{
    struct cfg *w = ld->w;
    const char *s = cfg_scalar(ld, item, "models");
    char msg[256];
    size_t i;

    if (s == NULL)
        return -1;
    if (cfg_name_check(s, "model", msg, sizeof(msg)) != 0)
        return cfg_fail_msg(ld, item, msg);
    for (i = 0; i < w->nmodels; i++)
        if (strcmp(w->models[i], s) == 0)
            return cfg_fail(ld, item, "duplicate model '%s'", s);
    if (w->nmodels >= CFG_MAX_MODELS)
        return cfg_fail(ld, item, "too many models (at most %d)", CFG_MAX_MODELS);
    memcpy(w->models[w->nmodels++], s, strlen(s) + 1);
    return 0;
}

static int cfg_apply_phrase(struct cfg_ld *ld, const yaml_node_t *item)
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

static int cfg_apply_bucket(struct cfg_ld *ld, const yaml_node_t *item)
{
    struct cfg *w = ld->w;
    const char *s = cfg_scalar(ld, item, "measure.buckets");
    double d;

    if (s == NULL)
        return -1;
    if (cfg_parse_double(s, &d) != 0)
        return cfg_fail(ld, item, "measure.buckets: bad number '%s'", s);
    if (!(d > 0) || d > CFG_BUCKET_MAX_S)
        return cfg_fail(ld, item, "measure.buckets: %s is out of range (seconds, above 0, "
                        "at most %g)", s, CFG_BUCKET_MAX_S);
    if (w->nbuckets > 0 && !(d > w->buckets[w->nbuckets - 1]))
        return cfg_fail(ld, item, "measure.buckets must be strictly ascending: %s after %g", s,
                        w->buckets[w->nbuckets - 1]);
    if (w->nbuckets >= CFG_MAX_BUCKETS)
        return cfg_fail(ld, item, "too many buckets (at most %d)", CFG_MAX_BUCKETS);
    w->buckets[w->nbuckets++] = d;
    return 0;
}

static void cfg_phrases_drop(struct cfg_ld *ld)
{
    while (ld->nphrases > 0)
        free(ld->phrases[--ld->nphrases]);
}

/* A list key: a sequence (or null for an empty one) replacing the current
 * list, each item handed to the kind's item function. */
static int cfg_apply_list(struct cfg_ld *ld, const struct cfg_key *k, const yaml_node_t *v,
                          const char *path)
{
    struct cfg *w = ld->w;
    bool default_seen = false;
    yaml_node_item_t *it;
    int r = cfg_container(ld, v, YAML_SEQUENCE_NODE, path);

    if (r < 0)
        return -1;
    switch (k->kind) {
    case CFG_K_BACKENDS: w->nbackends = 0; break;
    case CFG_K_MODELS: w->nmodels = 0; break;
    case CFG_K_TIERS:
        /* the default tier and every key belong to the list it replaces */
        w->ntiers = 1;
        cfg_tier_defaults(&w->tiers[0], "default");
        w->nkeys = 0;
        memset(w->keys, 0, sizeof(w->keys));
        memset(w->key_tier, 0, sizeof(w->key_tier));
        break;
    case CFG_K_PHRASES: cfg_phrases_drop(ld); ld->phrases_set = true; break;
    case CFG_K_BUCKETS: w->nbuckets = 0; break;
    default: return cfg_fail(ld, v, "%s: internal error", path);
    }
    if (k->kind == CFG_K_BUCKETS && (r == 0 || cfg_seq_len(v) == 0))
        return cfg_fail(ld, v, "measure.buckets: at least one bucket is needed");
    if (r == 0)
        return 0;
    for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        const yaml_node_t *item = cfg_node(ld, *it);
        switch (k->kind) {
        case CFG_K_BACKENDS:
            if (w->nbackends >= CFG_MAX_BACKENDS)
                return cfg_fail(ld, item, "too many backends (at most %d)", CFG_MAX_BACKENDS);
            r = cfg_apply_backend(ld, item);
            break;
        case CFG_K_MODELS: r = cfg_apply_model(ld, item); break;
        case CFG_K_TIERS: r = cfg_apply_tier(ld, item, &default_seen); break;
        case CFG_K_PHRASES: r = cfg_apply_phrase(ld, item); break;
        default: r = cfg_apply_bucket(ld, item); break;
        }
        if (r != 0)
            return -1;
    }
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
        return r <= 0 ? r : cfg_map_apply(ld, v, k->sub, path, base, true);
    case CFG_K_BACKENDS:
    case CFG_K_MODELS:
    case CFG_K_TIERS:
    case CFG_K_PHRASES:
    case CFG_K_BUCKETS:
        return cfg_apply_list(ld, k, v, path);
    case CFG_K_ALIASES:
        return cfg_apply_aliases(ld, v, path);
    case CFG_K_HEADER:
        return cfg_apply_header(ld, k, v, path, base);
    case CFG_K_NODE:
        memcpy(base + k->off, &v, sizeof(v));
        return 0;
    case CFG_K_LISTEN:
        if ((s = cfg_scalar(ld, v, path)) == NULL)
            return -1;
        if (cfg_listen_set(ld->w, s, msg, sizeof(msg)) != 0)
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
    default:
        return cfg_apply_scalar(ld, k, v, path, base);
    }
}

/* A parse failure from libyaml, at its problem mark. Reader errors (bad
 * UTF-8, control bytes) carry only a byte offset: count lines up to it. */
static int cfg_yaml_fail(struct cfg_ld *ld, const yaml_parser_t *p, const char *buf, size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    size_t line, i, end;

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return cfg_msg(ld->err, ld->errlen, "%s: out of memory", ld->name);
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
                rc = cfg_fail_at(ld, extra.start_mark.line + 1,
                                 "only one YAML document is allowed");
            yaml_document_delete(&extra);
        }
    }
    ld->doc = &doc;
    root = yaml_document_get_root_node(&doc);
    if (rc == 0 && root != NULL && !cfg_is_null(root)) {
        if (root->type != YAML_MAPPING_NODE)
            rc = cfg_fail(ld, root, "expected a mapping at top level");
        else
            rc = cfg_map_apply(ld, root, cfg_top_keys, NULL, (char *)ld->w, true);
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

int cfg_load_file(struct cfg *c, const char *path, char *err, size_t errlen)
{
    size_t len = 0, cap = 4096;
    char *buf, *nb;
    FILE *f;
    int rc;

    if ((f = fopen(path, "rb")) == NULL)
        return cfg_msg(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    if ((buf = malloc(cap)) == NULL) {
        fclose(f);
        return cfg_msg(err, errlen, "%s: out of memory", path);
    }
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0 || len < cap) {
            if (ferror(f)) {
                rc = cfg_msg(err, errlen, "%s: cannot read: %s", path, strerror(errno));
                goto out;
            }
            if (feof(f))
                break;
            continue;
        }
        if (cap >= CFG_FILE_MAX_BYTES) {
            rc = cfg_msg(err, errlen, "%s: larger than %llu MiB", path,
                         CFG_FILE_MAX_BYTES / CFG_MIB);
            goto out;
        }
        if ((nb = realloc(buf, cap * 2)) == NULL) {
            rc = cfg_msg(err, errlen, "%s: out of memory", path);
            goto out;
        }
        buf = nb;
        cap *= 2;
    }
    rc = cfg_load_buffer(c, path, buf, len, err, errlen);
out:
    OPENSSL_cleanse(buf, len); /* API keys in plain text */
    free(buf);
    fclose(f);
    return rc;
}
