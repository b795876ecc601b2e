/* cfg: pitot's configuration from the command line and a YAML file (libyaml
 * document API). A file load is all-or-nothing: it works on a copy and commits
 * only when every key passed; each error reads "PATH:LINE: message". */
#include "pitot/cfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#define CFG_KIB 1024ull
#define CFG_MIB (1024ull * 1024)
#define CFG_GIB (1024ull * 1024 * 1024)
#define CFG_DAY_MS 86400000ull
#define CFG_FILE_MAX_BYTES (4 * CFG_MIB)  /* a config past this is a mistake */
#define CFG_PHRASE_MAX_BYTES 256          /* rfs looks at 400 characters */
#define CFG_BUCKET_MAX_S 86400.0
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

void cfg_init(struct cfg *c)
{
    memset(c, 0, sizeof(*c));
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 8080;
    strcpy(c->tiers[0].name, "default");
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
    return 0;
}

/* ---- YAML: the key tables ---------------------------------------------- */

enum cfg_kind {
    CFG_K_SECTION, /* a mapping with its own key table */
    CFG_K_LISTEN,
    CFG_K_BACKENDS,
    CFG_K_MODELS,
    CFG_K_TIERS,
    CFG_K_COUNT,   /* unsigned field */
    CFG_K_SIZE,    /* size_t field, bytes */
    CFG_K_MS,      /* unsigned field, milliseconds */
    CFG_K_BOOL,
    CFG_K_PHRASES,
    CFG_K_BUCKETS,
    CFG_K_PATH,    /* access_log */
    CFG_K_LEVEL,
};

struct cfg_key {
    const char *name;
    enum cfg_kind kind;
    size_t off;                  /* field offset in struct cfg (scalar kinds) */
    unsigned long long min, max; /* accepted range, in the field's unit */
    const struct cfg_key *sub;   /* CFG_K_SECTION: its keys */
};

#define CFG_OFF(f) offsetof(struct cfg, f)
#define CFG_MS(k, f, lo, hi) { k, CFG_K_MS, CFG_OFF(f), lo, hi, NULL }
#define CFG_SIZE(k, f, lo, hi) { k, CFG_K_SIZE, CFG_OFF(f), lo, hi, NULL }
#define CFG_COUNT(k, f, lo, hi) { k, CFG_K_COUNT, CFG_OFF(f), lo, hi, NULL }
#define CFG_SPECIAL(k, kind) { k, kind, 0, 0, 0, NULL }
#define CFG_END { NULL, CFG_K_SECTION, 0, 0, 0, NULL }

static const struct cfg_key cfg_limits_keys[] = {
    CFG_SIZE("max_header_bytes", max_header_bytes, CFG_KIB, 16 * CFG_MIB),
    CFG_COUNT("max_headers", max_headers, 1, 10000),
    CFG_SIZE("max_uri_bytes", max_uri_bytes, 16, 16 * CFG_MIB),
    CFG_SIZE("max_body_bytes", max_body_bytes, 1, CFG_GIB),
    CFG_MS("header_timeout", header_timeout_ms, 1, CFG_DAY_MS),
    CFG_MS("body_timeout", body_timeout_ms, 1, CFG_DAY_MS),
    CFG_MS("keepalive_timeout", keepalive_timeout_ms, 1, CFG_DAY_MS),
    CFG_COUNT("max_clients", max_clients, 1, 1000000),
    CFG_END,
};

static const struct cfg_key cfg_upstream_keys[] = {
    CFG_MS("connect_timeout", connect_timeout_ms, 1, CFG_DAY_MS),
    CFG_MS("header_timeout", upstream_header_timeout_ms, 1, CFG_DAY_MS),
    CFG_MS("idle_timeout", upstream_idle_timeout_ms, 1, CFG_DAY_MS),
    CFG_COUNT("keepalive", upstream_keepalive, 0, 1024),
    CFG_SIZE("stream_buffer_bytes", stream_buffer_bytes, CFG_KIB, 256 * CFG_MIB),
    CFG_SIZE("max_event_bytes", max_event_bytes, CFG_KIB, 256 * CFG_MIB),
    CFG_END,
};

static const struct cfg_key cfg_health_keys[] = {
    CFG_MS("interval", health_interval_ms, 1, CFG_DAY_MS),
    CFG_MS("timeout", health_timeout_ms, 1, CFG_DAY_MS),
    CFG_END,
};

static const struct cfg_key cfg_measure_keys[] = {
    CFG_MS("stall", stall_ms, 1, CFG_DAY_MS),
    CFG_MS("stall_timeout", stall_timeout_ms, 1, CFG_DAY_MS),
    { "usage_injection", CFG_K_BOOL, CFG_OFF(usage_injection), 0, 1, NULL },
    CFG_SPECIAL("refusal_phrases", CFG_K_PHRASES),
    CFG_SPECIAL("buckets", CFG_K_BUCKETS),
    CFG_END,
};

static const struct cfg_key cfg_log_keys[] = {
    CFG_SPECIAL("access_log", CFG_K_PATH),
    CFG_SPECIAL("level", CFG_K_LEVEL),
    CFG_END,
};

static const struct cfg_key cfg_top_keys[] = {
    CFG_SPECIAL("listen", CFG_K_LISTEN),
    CFG_SPECIAL("backends", CFG_K_BACKENDS),
    CFG_SPECIAL("models", CFG_K_MODELS),
    CFG_COUNT("max_model_labels", max_model_labels, 0, 1024),
    CFG_SPECIAL("tiers", CFG_K_TIERS),
    { "limits", CFG_K_SECTION, 0, 0, 0, cfg_limits_keys },
    { "upstream", CFG_K_SECTION, 0, 0, 0, cfg_upstream_keys },
    { "health", CFG_K_SECTION, 0, 0, 0, cfg_health_keys },
    { "measure", CFG_K_SECTION, 0, 0, 0, cfg_measure_keys },
    { "log", CFG_K_SECTION, 0, 0, 0, cfg_log_keys },
    CFG_END,
};

static const char *const cfg_levels[] = { "error", "warn", "info", "debug" };

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

/* The same at the line where node n starts. */
static int cfg_fail(struct cfg_ld *ld, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cfg_vfail(ld, n->start_mark.line + 1, fmt, ap);
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

/* Where a key of the wrong section probably belongs: "limits.max_clients". */
static const char *cfg_key_hint(const char *key, const struct cfg_key *here, char *buf, size_t n)
{
    const struct cfg_key *s, *k;

    for (s = cfg_top_keys; s->name != NULL; s++) {
        if (s->kind != CFG_K_SECTION || s->sub == here)
            continue;
        for (k = s->sub; k->name != NULL; k++) {
            if (strcmp(k->name, key) == 0) {
                snprintf(buf, n, " (did you mean %s.%s?)", s->name, k->name);
                return buf;
            }
        }
    }
    return "";
}

static int cfg_apply(struct cfg_ld *ld, const struct cfg_key *k, const yaml_node_t *v,
                     const char *path);

/* Applies every pair of mapping m against the key table keys; section is
 * NULL at the top level. */
static int cfg_map_apply(struct cfg_ld *ld, const yaml_node_t *m, const struct cfg_key *keys,
                         const char *section)
{
    unsigned long long seen = 0;
    yaml_node_pair_t *pair;

    for (pair = m->data.mapping.pairs.start; pair < m->data.mapping.pairs.top; pair++) {
        const yaml_node_t *kn = cfg_node(ld, pair->key), *vn = cfg_node(ld, pair->value);
        const char *where = section ? section : "top level";
        char path[64], hint[80];
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
                            where, cfg_key_hint(key, keys, hint, sizeof(hint)));
        if (seen & (1ull << i))
            return cfg_fail(ld, kn, "duplicate key '%s' %s %s", key, section ? "in" : "at",
                            where);
        seen |= 1ull << i;
        snprintf(path, sizeof(path), "%s%s%s", section ? section : "", section ? "." : "", key);
        if (cfg_apply(ld, &keys[i], vn, path) != 0)
            return -1;
    }
    return 0;
}

/* The scalar kinds: count, size, milliseconds, boolean. */
static int cfg_apply_number(struct cfg_ld *ld, const struct cfg_key *k, const yaml_node_t *v,
                            const char *path)
{
    char *field = (char *)ld->w + k->off;
    const char *s = cfg_scalar(ld, v, path);
    unsigned long long n;
    char lo[32], hi[32];
    bool b;

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
        if (n < k->min || n > k->max)
            return cfg_fail(ld, v, "%s: %s is out of range (%llu..%llu)", path, s, k->min, k->max);
        {
            unsigned u = (unsigned)n;
            memcpy(field, &u, sizeof(u));
        }
        return 0;
    case CFG_K_SIZE:
        if (cfg_parse_size(s, &n) != 0)
            return cfg_fail(ld, v, "%s: bad size '%s' (bytes, or with a k, m or g suffix: 256k)",
                            path, s);
        if (n < k->min || n > k->max)
            return cfg_fail(ld, v, "%s: %s is out of range (%s..%s)", path, s,
                            cfg_fmt_size(lo, sizeof(lo), k->min),
                            cfg_fmt_size(hi, sizeof(hi), k->max));
        {
            size_t z = (size_t)n;
            memcpy(field, &z, sizeof(z));
        }
        return 0;
    case CFG_K_MS:
        if (cfg_parse_ms(s, &n) != 0)
            return cfg_fail(ld, v, "%s: bad duration '%s' (milliseconds, or with an ms, s or m "
                            "suffix: 10s)", path, s);
        if (n < k->min || n > k->max)
            return cfg_fail(ld, v, "%s: %s is out of range (%s..%s)", path, s,
                            cfg_fmt_ms(lo, sizeof(lo), k->min), cfg_fmt_ms(hi, sizeof(hi), k->max));
        {
            unsigned u = (unsigned)n;
            memcpy(field, &u, sizeof(u));
        }
        return 0;
    default:
        return cfg_fail(ld, v, "%s: internal error", path);
    }
}

/* One backends item: "http://..." or { url: ..., name: ... }. */
static int cfg_apply_backend(struct cfg_ld *ld, const yaml_node_t *item)
{
    const yaml_node_t *url = NULL, *name = NULL;
    struct cfg_backend b;
    const char *u, *nm = NULL;
    char msg[512];

    if (item->type == YAML_MAPPING_NODE) {
        yaml_node_pair_t *pair;
        for (pair = item->data.mapping.pairs.start; pair < item->data.mapping.pairs.top; pair++) {
            const yaml_node_t *kn = cfg_node(ld, pair->key);
            const yaml_node_t **slot;
            if (kn->type != YAML_SCALAR_NODE)
                return cfg_fail(ld, kn, "keys must be scalars (in backends)");
            if (strcmp(cfg_str(kn), "url") == 0)
                slot = &url;
            else if (strcmp(cfg_str(kn), "name") == 0)
                slot = &name;
            else
                return cfg_fail(ld, kn, "unknown key '%.64s' in backends", cfg_str(kn));
            if (*slot != NULL)
                return cfg_fail(ld, kn, "duplicate key '%s' in backends", cfg_str(kn));
            *slot = cfg_node(ld, pair->value);
        }
        if (url == NULL)
            return cfg_fail(ld, item, "backends: entry without url");
    } else if (item->type == YAML_SCALAR_NODE) {
        url = item;
    } else {
        return cfg_fail(ld, item, "backends: expected a URL or a mapping with url:");
    }
    if ((u = cfg_scalar(ld, url, "backends.url")) == NULL)
        return -1;
    if (name != NULL && (nm = cfg_scalar(ld, name, "backends.name")) == NULL)
        return -1;
    if (cfg_url_parse(u, &b, msg, sizeof(msg)) != 0)
        return cfg_fail_msg(ld, url, msg);
    if (cfg_backend_name(&b, nm, msg, sizeof(msg)) != 0)
        return cfg_fail_msg(ld, name ? name : url, msg);
    if (cfg_backend_find(ld->w, ld->w->nbackends, b.name) >= 0)
        return cfg_fail(ld, name ? name : url, "duplicate backend name '%s'", b.name);
    ld->w->backends[ld->w->nbackends++] = b;
    return 0;
}

/* One tiers item: "premium" or { name: premium }. "default" is tiers[0]. */
static int cfg_apply_tier(struct cfg_ld *ld, const yaml_node_t *item, bool *default_seen)
{
    const yaml_node_t *name = NULL;
    struct cfg *w = ld->w;
    const char *s;
    char msg[256];

    if (item->type == YAML_MAPPING_NODE) {
        yaml_node_pair_t *pair;
        for (pair = item->data.mapping.pairs.start; pair < item->data.mapping.pairs.top; pair++) {
            const yaml_node_t *kn = cfg_node(ld, pair->key);
            if (kn->type != YAML_SCALAR_NODE)
                return cfg_fail(ld, kn, "keys must be scalars (in tiers)");
            if (strcmp(cfg_str(kn), "name") != 0)
                return cfg_fail(ld, kn, "unknown key '%.64s' in tiers", cfg_str(kn));
            if (name != NULL)
                return cfg_fail(ld, kn, "duplicate key 'name' in tiers");
            name = cfg_node(ld, pair->value);
        }
        if (name == NULL)
            return cfg_fail(ld, item, "tiers: entry without name");
    } else if (item->type == YAML_SCALAR_NODE) {
        name = item;
    } else {
        return cfg_fail(ld, item, "tiers: expected a name or a mapping with name:");
    }
    if ((s = cfg_scalar(ld, name, "tiers.name")) == NULL)
        return -1;
    if (cfg_name_check(s, "tier", msg, sizeof(msg)) != 0)
        return cfg_fail_msg(ld, name, msg);
    if (strcmp(s, "default") == 0) {
        if (*default_seen)
            return cfg_fail(ld, name, "duplicate tier 'default'");
        *default_seen = true;
        return 0;
    }
    if (cfg_tier_find(w, s) >= 0)
        return cfg_fail(ld, name, "duplicate tier '%s'", s);
    if (w->ntiers >= CFG_MAX_TIERS)
        return cfg_fail(ld, item, "too many tiers (at most %d with default)", CFG_MAX_TIERS);
    memcpy(w->tiers[w->ntiers++].name, s, strlen(s) + 1);
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
    case CFG_K_TIERS: w->ntiers = 1; break;
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
                     const char *path)
{
    char msg[512];
    const char *s;
    size_t i;
    int r;

    switch (k->kind) {
    case CFG_K_SECTION:
        r = cfg_container(ld, v, YAML_MAPPING_NODE, path);
        return r <= 0 ? r : cfg_map_apply(ld, v, k->sub, k->name);
    case CFG_K_BACKENDS:
    case CFG_K_MODELS:
    case CFG_K_TIERS:
    case CFG_K_PHRASES:
    case CFG_K_BUCKETS:
        return cfg_apply_list(ld, k, v, path);
    case CFG_K_LISTEN:
        if ((s = cfg_scalar(ld, v, path)) == NULL)
            return -1;
        if (cfg_listen_set(ld->w, s, msg, sizeof(msg)) != 0)
            return cfg_fail_msg(ld, v, msg);
        return 0;
    case CFG_K_PATH:
        if (v->type == YAML_SCALAR_NODE && v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
            v->data.scalar.length == 0) {
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
    case CFG_K_LEVEL:
        if ((s = cfg_scalar(ld, v, path)) == NULL)
            return -1;
        for (i = 0; i < sizeof(cfg_levels) / sizeof(cfg_levels[0]); i++) {
            if (strcmp(s, cfg_levels[i]) == 0) {
                ld->w->log_level = (int)i;
                return 0;
            }
        }
        return cfg_fail(ld, v, "%s: bad level '%s' (error, warn, info or debug)", path, s);
    default:
        return cfg_apply_number(ld, k, v, path);
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
            rc = cfg_map_apply(ld, root, cfg_top_keys, NULL);
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
    free(buf);
    fclose(f);
    return rc;
}
