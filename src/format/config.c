/* config: pitot's configuration: defaults, the value syntax shared with the YAML
 * loader (src/cfg_yaml.c), backend URLs and listen addresses from the command
 * line, the final checks, and reading a config file. */
#include "pitot/format/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "config_int.h"

#define CFG_FILE_MAX_BYTES (4 * CFG_MIB) /* a config past this is a mistake */
#define CFG_NAME_CHARS "[A-Za-z0-9._:@/+-]"

static const double cfg_default_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
    2.5,   5,      10,    20,   30,    60,   120, 300,  600,
};

/* ---- messages ---------------------------------------------------------- */

/* Writes a message into err (when there is room at all); returns -1. */
int cfg_msg(char *err, size_t errlen, const char *fmt, ...)
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
const char *cfg_fmt_size(char *buf, size_t n, unsigned long long v)
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
const char *cfg_fmt_ms(char *buf, size_t n, unsigned long long ms)
{
    if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, n, "%llum", ms / 60000);
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(buf, n, "%llus", ms / 1000);
    else
        snprintf(buf, n, "%llums", ms);
    return buf;
}

/* "a, b or c" from a NULL-terminated list. */
const char *cfg_fmt_names(char *buf, size_t n, const char *const *names)
{
    size_t len = 0, i;

    buf[0] = '\0';
    for (i = 0; names[i] != NULL && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s",
                                i == 0                 ? ""
                                : names[i + 1] == NULL ? " or "
                                                       : ", ",
                                names[i]);
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
int cfg_parse_count(const char *s, unsigned long long *v)
{
    size_t n = cfg_digits(s, v);

    return n > 0 && s[n] == '\0' ? 0 : -1;
}

/* Bytes, or KiB/MiB/GiB with a k/m/g suffix (either case). */
int cfg_parse_size(const char *s, unsigned long long *v)
{
    size_t n = cfg_digits(s, v);

    if (n == 0)
        return -1;
    if (s[n] == '\0')
        return 0;
    if (s[n + 1] != '\0')
        return -1;
    switch (s[n]) {
    case 'k':
    case 'K': *v = cfg_mul_sat(*v, CFG_KIB); return 0;
    case 'm':
    case 'M': *v = cfg_mul_sat(*v, CFG_MIB); return 0;
    case 'g':
    case 'G': *v = cfg_mul_sat(*v, CFG_GIB); return 0;
    default: return -1;
    }
}

/* Milliseconds: a bare number, or with an ms, s or m suffix. */
int cfg_parse_ms(const char *s, unsigned long long *v)
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
int cfg_parse_bool(const char *s, bool *v)
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
int cfg_parse_double(const char *s, double *v)
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

/* Optionally signed decimal integer, saturating (out of range, not bad). */
int cfg_parse_int(const char *s, long long *v)
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

/* "64 hex digits" into 32 bytes. */
int cfg_parse_sha256(const char *s, unsigned char out[32])
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

/* Label values: short and from a set safe in every output format. */
int cfg_name_check(const char *s, const char *what, char *err, size_t errlen)
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
            return cfg_msg(err, errlen, "%s name '%s' has characters outside " CFG_NAME_CHARS, what,
                           s);
    }
    return 0;
}

/* ---- host:port --------------------------------------------------------- */

struct cfg_hostport {
    char host[CFG_HOST_MAX]; /* without brackets */
    bool v6;
    bool has_port;
    unsigned long port; /* valid when has_port, 0..99999: callers check */
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

/* Fills b from "http[s]://host[:port][/]"; the name is left to the caller. */
int cfg_url_parse(const char *url, struct cfg_backend *b, char *err, size_t errlen)
{
    struct cfg_hostport hp;
    const char *p, *rest, *why;
    size_t alen;
    bool https = strncasecmp(url, "https://", 8) == 0;

    if (!https && strncasecmp(url, "http://", 7) != 0) {
        if (strstr(url, "://") != NULL)
            return cfg_msg(err, errlen,
                           "bad backend URL '%s': only http:// and https:// are supported", url);
        return cfg_msg(err, errlen, "bad backend URL '%s': expected http[s]://host[:port]", url);
    }
    p = url + (https ? 8 : 7);
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
    b->port = hp.has_port ? (uint16_t)hp.port : https ? 443 : 80;
    {
        unsigned char a4[4];
        b->dns = !hp.v6 && inet_pton(AF_INET, b->host, a4) != 1;
    }
    b->https = https;
    b->tls.verify = true;
    snprintf(b->url, sizeof(b->url), hp.v6 ? "%s://[%s]:%u" : "%s://%s:%u",
             https ? "https" : "http", b->host, (unsigned)b->port);
    return 0;
}

/* opentelemetry.traces.endpoint: "http[s]://host[:port][/path]", "" for off. */
int cfg_otlp_endpoint_set(struct cfg *c, const char *url, char *err, size_t errlen)
{
    static const char pchars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789-._~/%!$&'()*+,;=:@";
    struct cfg_hostport hp;
    const char *p, *path, *why;
    size_t alen;

    bool https = strncasecmp(url, "https://", 8) == 0;

    memset(&hp, 0, sizeof(hp));
    c->otel_trace_url[0] = c->otel_trace_host[0] = '\0';
    c->otel_trace_port = 0;
    c->otel_trace_https = false;
    strcpy(c->otel_trace_path, "/v1/traces");
    if (url[0] == '\0')
        return 0;
    if (!https && strncasecmp(url, "http://", 7) != 0)
        return cfg_msg(err, errlen,
                       "bad opentelemetry.traces.endpoint '%.300s': expected "
                       "http[s]://host[:port][/path]",
                       url);
    if (strlen(url) >= sizeof(c->otel_trace_url))
        return cfg_msg(err, errlen, "bad opentelemetry.traces.endpoint: longer than %zu bytes",
                       sizeof(c->otel_trace_url) - 1);
    p = url + (https ? 8 : 7);
    alen = strcspn(p, "/?#");
    path = p + alen;
    if (memchr(p, '@', alen) != NULL)
        why = "userinfo (user@) is not allowed";
    else if (strchr(path, '?') != NULL)
        why = "a query is not allowed";
    else if (strchr(path, '#') != NULL)
        why = "a fragment is not allowed";
    else if (path[strspn(path, pchars)] != '\0')
        why = "the path has characters outside [A-Za-z0-9-._~/%!$&'()*+,;=:@]";
    else if (strlen(path) >= sizeof(c->otel_trace_path))
        why = "path too long";
    else
        why = cfg_hostport_parse(p, alen, &hp);
    if (why == NULL && hp.has_port && (hp.port == 0 || hp.port > 65535))
        why = "port out of range (1-65535)";
    if (why != NULL)
        return cfg_msg(err, errlen, "bad opentelemetry.traces.endpoint '%.300s': %s", url, why);
    memcpy(c->otel_trace_url, url, strlen(url) + 1);
    memcpy(c->otel_trace_host, hp.host, sizeof(c->otel_trace_host));
    c->otel_trace_port = hp.has_port ? (uint16_t)hp.port : https ? 443 : 80;
    c->otel_trace_https = https;
    if (path[0] != '\0' && strcmp(path, "/") != 0)
        memcpy(c->otel_trace_path, path, strlen(path) + 1);
    return 0;
}

/* Sets b->name: the given one (checked), else "host:port" from its URL. */
int cfg_backend_name(struct cfg_backend *b, const char *name, char *err, size_t errlen)
{
    const char *hostport = cfg_backend_authority(b);

    if (name != NULL) {
        if (cfg_name_check(name, "backend", err, errlen) != 0)
            return -1;
        memcpy(b->name, name, strlen(name) + 1);
        return 0;
    }
    if (strlen(hostport) >= sizeof(b->name))
        return cfg_msg(err, errlen,
                       "backend '%s': default name '%s' longer than %d characters, "
                       "give it a name",
                       b->url, hostport, CFG_NAME_MAX - 1);
    memcpy(b->name, hostport, strlen(hostport) + 1);
    return 0;
}

/* Index of the first of c->backends[0..n) named like name, or -1. */
int cfg_backend_find(const struct cfg *c, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(c->backends[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* ---- public: defaults, CLI helpers ------------------------------------- */

/* A tier as every tier starts: priority 0, no SLO targets, 64 held for 30 s. */
void cfg_tier_defaults(struct cfg_tier *t, const char *name)
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
    c->body_deadline_ms = 300000;
    c->min_body_rate = 500;

    c->connect_timeout_ms = 5000;
    c->upstream_header_timeout_ms = 600000;
    c->upstream_idle_timeout_ms = 600000;
    c->upstream_keepalive = 64;
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
    c->unknown_model = CFG_UNKNOWN_AUTO;
    c->scrape_interval_ms = 500;
    c->scrape_timeout_ms = 400;
    c->scrape_stale_ms = 2000;
    c->models_interval_ms = 10000;
    c->dns_interval_ms = 10000;
    c->max_addresses = 8;
    c->spare_backends = 16;
    c->dns_family = CFG_DNS_AUTO;
    c->resolver[0] = '\0';
    c->default_capacity = 4;
    c->speed_aware = true;
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
    /* tier_header "" (off), no aliases, no API keys, no rate limits: the memset */
    c->ratelimit_default_max_tokens = 1024;
    snprintf(c->ratelimit_redis_prefix, sizeof(c->ratelimit_redis_prefix), "pitot:");
    c->ratelimit_redis_timeout_ms = 250;
    c->ratelimit_redis_port = 6379;
    c->ratelimit_replicas = 1;

    /* opentelemetry.traces: no endpoint, no export */
    strcpy(c->otel_trace_path, "/v1/traces");
    strcpy(c->otel_service_name, "pitot");
    c->otel_queue_size = 2048;
    c->otel_batch_size = 512;
    c->otel_trace_interval_ms = 1000;
    c->otel_trace_timeout_ms = 5000;

    c->otel_tls.verify = true; /* the collector is always verified */

    c->drain_timeout_ms = 30000;

    strcpy(c->access_log, "-");
    c->log_level = 2;
    c->log_format = 0; /* text */
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

int cfg_tls_cert_set(struct cfg *c, const char *cert, const char *key, char *err, size_t errlen)
{
    const char *const path[2] = { cert, key };
    size_t i;

    for (i = 0; i < 2; i++) {
        if (path[i][0] == '\0')
            return cfg_msg(err, errlen, "empty %s path", i == 0 ? "certificate" : "key");
        if (strlen(path[i]) >= CFG_PATH_MAX)
            return cfg_msg(err, errlen, "%s path longer than %d bytes",
                           i == 0 ? "certificate" : "key", CFG_PATH_MAX - 1);
    }
    memset(c->tls_certs, 0, sizeof(c->tls_certs));
    memcpy(c->tls_certs[0].cert, cert, strlen(cert) + 1);
    memcpy(c->tls_certs[0].key, key, strlen(key) + 1);
    c->ntls_certs = 1;
    return 0;
}

/* listen and admin_listen: "host:port", "[v6]:port", ":port" (every
 * interface) or "port" (127.0.0.1) into host[CFG_HOST_MAX] and port, which
 * are left alone on error; `what` names the key in messages. */
static int cfg_listen_parse(const char *what, const char *hostport, char *host, uint16_t *lport,
                            char *err, size_t errlen)
{
    struct cfg_hostport hp;
    unsigned long long port;
    const char *why;

    if (cfg_parse_count(hostport, &port) == 0) {
        if (port > 65535)
            return cfg_msg(err, errlen, "bad %s address '%s': port out of range (0-65535)", what,
                           hostport);
        strcpy(host, "127.0.0.1");
        *lport = (uint16_t)port;
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
        return cfg_msg(err, errlen, "bad %s address '%s': %s", what, hostport, why);
    memcpy(host, hp.host, CFG_HOST_MAX);
    *lport = (uint16_t)hp.port;
    return 0;
}

int cfg_listen_set(struct cfg *c, const char *hostport, char *err, size_t errlen)
{
    return cfg_listen_parse("listen", hostport, c->listen_host, &c->listen_port, err, errlen);
}

int cfg_admin_listen_set(struct cfg *c, const char *hostport, char *err, size_t errlen)
{
    if (hostport[0] == '\0') {
        c->admin = false;
        memset(c->admin_host, 0, sizeof(c->admin_host));
        c->admin_port = 0;
        return 0;
    }
    if (cfg_listen_parse("admin_listen", hostport, c->admin_host, &c->admin_port, err, errlen) != 0)
        return -1;
    c->admin = true;
    return 0;
}

int cfg_redis_set(struct cfg *c, const char *url, char *err, size_t errlen)
{
    static const char scheme[] = "redis://";
    const char *p, *at, *slash, *end;
    struct cfg_hostport hp;
    const char *why = NULL;
    char pw[sizeof(c->ratelimit_redis_password)] = "";
    unsigned long db = 0;

    if (url[0] == '\0') {
        c->ratelimit_redis[0] = c->ratelimit_redis_host[0] = '\0';
        return 0;
    }
    if (strncmp(url, "rediss://", 9) == 0)
        return cfg_msg(err, errlen,
                       "ratelimit.redis: rediss:// (TLS) is not supported by Debian 12's hiredis "
                       "0.14; use redis:// on a trusted network, or a TLS tunnel");
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return cfg_msg(err, errlen,
                       "ratelimit.redis: expected redis://[:password@]host[:port][/db]");
    if (strlen(url) >= sizeof(c->ratelimit_redis))
        return cfg_msg(err, errlen, "ratelimit.redis: too long");
    p = url + sizeof(scheme) - 1;
    end = p + strlen(p);
    at = strrchr(p, '@');
    if (at != NULL) { /* [user]:password; the password is never repeated */
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL || (colon != p && strncmp(p, "default:", 8) != 0))
            return cfg_msg(err, errlen,
                           "ratelimit.redis: the user part must be ':password@' (or "
                           "'default:password@')");
        if ((size_t)(at - colon - 1) >= sizeof(pw))
            return cfg_msg(err, errlen, "ratelimit.redis: password too long");
        memcpy(pw, colon + 1, (size_t)(at - colon - 1));
        pw[at - colon - 1] = '\0';
        p = at + 1;
    }
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash != NULL && slash[1] != '\0') { /* /db; a lone '/' names none */
        char *e;
        db = strtoul(slash + 1, &e, 10);
        if (*e != '\0' || db > 15 || !(slash[1] >= '0' && slash[1] <= '9'))
            return cfg_msg(err, errlen, "ratelimit.redis: bad database number (0-15)");
    }
    why = cfg_hostport_parse(p, (size_t)((slash ? slash : end) - p), &hp);
    if (why == NULL && hp.has_port && (hp.port == 0 || hp.port > 65535))
        why = "port out of range (1-65535)";
    if (why != NULL)
        return cfg_msg(err, errlen, "ratelimit.redis: %s", why);
    snprintf(c->ratelimit_redis, sizeof(c->ratelimit_redis), "%s", url);
    memcpy(c->ratelimit_redis_host, hp.host, sizeof(hp.host));
    c->ratelimit_redis_port = hp.has_port ? (uint16_t)hp.port : 6379;
    c->ratelimit_redis_db = (unsigned)db;
    if (pw[0] != '\0')
        memcpy(c->ratelimit_redis_password, pw, sizeof(pw));
    return 0;
}

int cfg_resolver_set(struct cfg *c, const char *hostport, char *err, size_t errlen)
{
    struct cfg_hostport hp;
    unsigned char a4[4];
    const char *why;

    if (hostport[0] == '\0') {
        c->resolver[0] = '\0';
        return 0;
    }
    why = cfg_hostport_parse(hostport, strlen(hostport), &hp);
    if (why == NULL && !hp.v6 && inet_pton(AF_INET, hp.host, a4) != 1)
        why = "expected an IP address (the DNS server's), not a name";
    else if (why == NULL && hp.has_port && (hp.port == 0 || hp.port > 65535))
        why = "port out of range (1-65535)";
    if (why != NULL)
        return cfg_msg(err, errlen, "bad routing.resolver '%s': %s", hostport, why);
    snprintf(c->resolver, sizeof(c->resolver), hp.v6 ? "[%s]:%lu" : "%s:%lu", hp.host,
             hp.has_port ? hp.port : 53ul);
    return 0;
}

/* Slots backend b takes once expanded. */
static size_t cfg_slots(const struct cfg *c, const struct cfg_backend *b)
{
    return b->dns && c->max_addresses > 1 ? c->max_addresses : 1;
}

/* Name of slot k of b into out[CFG_NAME_MAX]; -1 when it does not fit. */
static int cfg_slot_name(const struct cfg_backend *b, unsigned k, char out[CFG_NAME_MAX])
{
    int n = k == 0 ? snprintf(out, CFG_NAME_MAX, "%s", b->name)
                   : snprintf(out, CFG_NAME_MAX, "%s/%u", b->name, k);

    return n < 0 || n >= CFG_NAME_MAX ? -1 : 0;
}

/* The slots of DNS-named backends fit in the table, and their names are
 * free. */
static int cfg_validate_slots(const struct cfg *c, char *err, size_t errlen)
{
    char name[CFG_NAME_MAX];
    size_t i, j, total = 0;
    unsigned k;

    for (i = 0; i < c->nbackends; i++)
        total += cfg_slots(c, &c->backends[i]);
    if (total > CFG_MAX_BACKENDS)
        return cfg_msg(err, errlen,
                       "backends given by host name take routing.max_addresses (%u) slots each: "
                       "%zu slots in all, more than %d; lower routing.max_addresses",
                       c->max_addresses, total, CFG_MAX_BACKENDS);
    for (i = 0; i < c->nbackends; i++) {
        for (k = 1; k < cfg_slots(c, &c->backends[i]); k++) {
            if (cfg_slot_name(&c->backends[i], k, name) != 0)
                return cfg_msg(err, errlen,
                               "backend '%s': no room for its address slot names ('%s/%u'): "
                               "give it a name of at most %d characters",
                               c->backends[i].name, c->backends[i].name, k, CFG_NAME_MAX - 4);
            for (j = 0; j < c->nbackends; j++)
                if (strcmp(c->backends[j].name, name) == 0)
                    return cfg_msg(err, errlen,
                                   "backend name '%s' is taken by an address slot of backend "
                                   "'%s'; rename it",
                                   name, c->backends[i].name);
        }
    }
    return 0;
}

int cfg_backends_expand(struct cfg *c, char *err, size_t errlen)
{
    size_t i, total = 0, pos;
    unsigned k;

    if (cfg_validate_slots(c, err, errlen) != 0)
        return -1;
    for (i = 0; i < c->nbackends; i++)
        total += cfg_slots(c, &c->backends[i]);
    /* from the back, so that every entry moves only to a higher index */
    pos = total;
    for (i = c->nbackends; i-- > 0;) {
        size_t n = cfg_slots(c, &c->backends[i]);
        size_t first = pos - n;
        /* slot 0 last: it may be entry i itself, the source of the others */
        for (k = (unsigned)n; k-- > 0;) {
            struct cfg_backend *d = &c->backends[first + k];
            char name[CFG_NAME_MAX];
            (void)cfg_slot_name(&c->backends[i], k, name);
            if (first + k != i)
                *d = c->backends[i];
            memcpy(d->name, name, sizeof(name));
            d->group = (unsigned)first;
            d->slot = k;
        }
        pos = first;
    }
    c->nbackends = total;
    /* the room a reload has for new backends */
    while (c->nbackends < CFG_MAX_BACKENDS && c->nbackends < total + c->spare_backends) {
        struct cfg_backend *d = &c->backends[c->nbackends];

        memset(d, 0, sizeof(*d));
        d->spare = true;
        d->group = (unsigned)c->nbackends++;
    }
    return 0;
}

void cfg_tiers_expand(struct cfg *c)
{
    while (c->ntiers < CFG_MAX_TIERS) {
        memset(&c->tiers[c->ntiers], 0, sizeof(c->tiers[0]));
        c->tiers[c->ntiers++].spare = true;
    }
}

int cfg_tiers_place(const struct cfg *cur, struct cfg *next, bool *added, bool *removed, char *err,
                    size_t errlen)
{
    struct cfg_tier lay[CFG_MAX_TIERS];
    bool taken[CFG_MAX_TIERS] = { false };
    unsigned map[CFG_MAX_TIERS];
    size_t i, j;

    for (j = 0; j < cur->ntiers && j < CFG_MAX_TIERS; j++) {
        lay[j] = cur->tiers[j];
        lay[j].spare = true;
        added[j] = false;
        removed[j] = !cur->tiers[j].spare;
    }
    for (i = 0; i < next->ntiers; i++) {
        const struct cfg_tier *t = &next->tiers[i];

        for (j = 0; j < cur->ntiers; j++) /* its own slot, or the one it had */
            if (!taken[j] && cur->tiers[j].name[0] != '\0' &&
                strcmp(cur->tiers[j].name, t->name) == 0)
                break;
        if (j == cur->ntiers) { /* a new name: a slot no tier ever had */
            for (j = 0; j < cur->ntiers; j++)
                if (!taken[j] && cur->tiers[j].spare && cur->tiers[j].name[0] == '\0')
                    break;
            if (j == cur->ntiers)
                return cfg_msg(err, errlen,
                               "no free slot for tier '%s' (%d tiers at most, each removed one "
                               "keeping its slot for its return)",
                               t->name, CFG_MAX_TIERS);
            added[j] = true;
        } else if (cur->tiers[j].spare) {
            added[j] = true; /* back */
        }
        removed[j] = false;
        taken[j] = true;
        lay[j] = *t;
        lay[j].spare = false;
        map[i] = (unsigned)j;
    }
    for (i = 0; i < next->nkeys; i++)
        next->key_tier[i] = (uint8_t)map[next->key_tier[i]];
    memcpy(next->tiers, lay, cur->ntiers * sizeof(lay[0]));
    next->ntiers = cur->ntiers;
    return 0;
}

size_t cfg_backends_live(const struct cfg *c)
{
    size_t i, n = 0;

    for (i = 0; i < c->nbackends; i++)
        n += !c->backends[i].spare;
    return n;
}

/* Entries of the group that starts at first (its slot 0) in c. */
static size_t cfg_group_len(const struct cfg *c, size_t first)
{
    size_t n = 1;

    while (first + n < c->nbackends && c->backends[first + n].group == first &&
           c->backends[first + n].slot != 0 &&
           c->backends[first + n].spare == c->backends[first].spare)
        n++;
    return n;
}

/* The group of cur, spare or not, whose first slot has `name` and that has
 * n slots and is not taken yet; -1 when none. */
static long cfg_place_find(const struct cfg *cur, const bool *taken, const char *name, size_t n)
{
    size_t i;

    for (i = 0; i < cur->nbackends; i++) {
        const struct cfg_backend *b = &cur->backends[i];

        if (b->slot == 0 && b->group == i && !taken[i] && b->name[0] != '\0' &&
            strcmp(b->name, name) == 0 && cfg_group_len(cur, i) == n)
            return (long)i;
    }
    return -1;
}

/* The lowest run of n spare, untaken slots of cur that reusable allows,
 * never-used ones (no name) first; -1 when none. */
static long cfg_place_room(const struct cfg *cur, const bool *taken, const bool *reusable, size_t n)
{
    int pass;
    size_t i, k;

    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i + n <= cur->nbackends; i++) {
            for (k = 0; k < n; k++) {
                const struct cfg_backend *b = &cur->backends[i + k];
                if (!b->spare || taken[i + k] || !reusable[i + k] ||
                    (pass == 0 && b->name[0] != '\0'))
                    break;
            }
            if (k == n)
                return (long)i;
        }
    }
    return -1;
}

/* A new backend takes slots of a removed one's group g: what it leaves of
 * g becomes never-used spare slots (the name cannot come back there). */
static void cfg_place_clear(const struct cfg *cur, struct cfg_backend *lay, const bool *taken,
                            unsigned g)
{
    size_t m;

    for (m = 0; m < cur->nbackends; m++) {
        if (taken[m] || cur->backends[m].group != g)
            continue;
        memset(&lay[m], 0, sizeof(lay[m]));
        lay[m].spare = true;
        lay[m].group = (unsigned)m;
    }
}

static bool cfg_backend_same(const struct cfg_backend *a, const struct cfg_backend *b);

int cfg_backends_place(const struct cfg *cur, struct cfg *next, const bool *reusable,
                       enum cfg_place *how, char *err, size_t errlen)
{
    struct cfg_backend *lay = calloc(CFG_MAX_BACKENDS, sizeof(*lay));
    bool taken[CFG_MAX_BACKENDS] = { false };
    long at[CFG_MAX_BACKENDS];
    size_t i, k;
    int pass;

    if (lay == NULL)
        return cfg_msg(err, errlen, "out of memory");
    /* the running table, every slot spare: what next names fills it again */
    for (i = 0; i < cur->nbackends; i++) {
        lay[i] = cur->backends[i];
        lay[i].spare = true;
        how[i] = cur->backends[i].spare ? CFG_PLACE_FREE : CFG_PLACE_REMOVED;
    }
    /* first the names cur has a place for, then the new ones: a new name
     * must not take the slots of one that comes back */
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < next->nbackends; i++) {
            const struct cfg_backend *b = &next->backends[i];
            size_t n;
            long j;

            if (b->spare || b->slot != 0)
                continue;
            n = cfg_group_len(next, i);
            if (pass == 0) {
                j = at[i] = cfg_place_find(cur, taken, b->name, n);
            } else {
                if (at[i] >= 0)
                    continue;
                j = at[i] = cfg_place_room(cur, taken, reusable, n);
                if (j < 0) {
                    free(lay);
                    return cfg_msg(err, errlen,
                                   "no free slot for backend '%s' (routing.spare_backends: %zu "
                                   "left of %u kept at start)",
                                   b->name, cur->nbackends - cfg_backends_live(cur),
                                   cur->spare_backends);
                }
            }
            if (j < 0)
                continue;
            for (k = 0; pass == 1 && k < n; k++)
                cfg_place_clear(cur, lay, taken, cur->backends[(size_t)j + k].group);
            for (k = 0; k < n; k++) {
                const struct cfg_backend *was = &cur->backends[(size_t)j + k];
                struct cfg_backend *d = &lay[(size_t)j + k];

                *d = b[k];
                d->group = (unsigned)j;
                d->spare = false;
                taken[(size_t)j + k] = true;
                if (pass == 1)
                    how[(size_t)j + k] = CFG_PLACE_ADDED;
                else if (was->spare)
                    how[(size_t)j + k] = CFG_PLACE_BACK;
                else
                    how[(size_t)j + k] =
                        cfg_backend_same(was, d) ? CFG_PLACE_SAME : CFG_PLACE_CHANGED;
            }
        }
    }
    memcpy(next->backends, lay, cur->nbackends * sizeof(*lay));
    next->nbackends = cur->nbackends;
    free(lay);
    return 0;
}

/* Descriptors pitot holds whatever the clients do: stdio (3), the access log
 * (1), listeners (2), the event loop (epoll, its signal socketpair, slack: 4),
 * DNS (a socket per resolver, up to 3), the OTLP exporter (1), and slack for
 * what a library opens briefly (8). */
#define CFG_FD_OWN 22
/* Per backend: a health probe, a metrics scrape, a /v1/models or /props. */
#define CFG_FD_PER_BACKEND 3

unsigned cfg_fd_max_clients(const struct cfg *c, unsigned long long nofile)
{
    /* every worker keeps its own listeners, idle pools and exporter */
    unsigned long long own = (c->workers ? c->workers : 1) *
                             (CFG_FD_OWN + (unsigned long long)cfg_backends_live(c) *
                                               (c->upstream_keepalive + CFG_FD_PER_BACKEND));
    unsigned long long n;

    if (nofile <= own + 1)
        return 0;
    n = (nofile - own) / 2; /* a client and its backend connection */
    return n > UINT_MAX ? UINT_MAX : (unsigned)n;
}

int cfg_tier_find(const struct cfg *c, const char *name)
{
    size_t i;

    for (i = 0; i < c->ntiers; i++)
        if (!c->tiers[i].spare && strcmp(c->tiers[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* ---- validation -------------------------------------------------------- */

/* "A (10s) must RELATION B (5s)": two durations in the wrong order; -1. */
static int cfg_order_msg(char *err, size_t errlen, const char *a, unsigned a_ms,
                         const char *relation, const char *b, unsigned b_ms)
{
    char x[32], y[32];

    return cfg_msg(err, errlen, "%s (%s) must %s %s (%s)", a, cfg_fmt_ms(x, sizeof(x), a_ms),
                   relation, b, cfg_fmt_ms(y, sizeof(y), b_ms));
}

/* The routing checks of cfg_validate: pairs of durations, aliases against
 * the models backends declare. */
static int cfg_validate_routing(const struct cfg *c, char *err, size_t errlen)
{
    size_t i, j, m;

    if (c->scrape_timeout_ms > c->scrape_interval_ms)
        return cfg_order_msg(err, errlen, "routing.scrape_timeout", c->scrape_timeout_ms,
                             "not exceed", "routing.scrape_interval", c->scrape_interval_ms);
    if (c->scrape_stale_ms <= c->scrape_interval_ms)
        return cfg_order_msg(err, errlen, "routing.scrape_stale", c->scrape_stale_ms,
                             "be longer than", "routing.scrape_interval", c->scrape_interval_ms);
    if (c->eject_base_ms > c->eject_max_ms)
        return cfg_order_msg(err, errlen, "routing.eject.base", c->eject_base_ms, "not exceed",
                             "routing.eject.max", c->eject_max_ms);
    for (i = 0; i < c->naliases; i++)
        for (j = 0; j < c->nbackends; j++)
            for (m = 0; m < c->backends[j].nmodels; m++)
                if (strcmp(c->aliases[i].from, c->backends[j].models[m]) == 0)
                    return cfg_msg(err, errlen,
                                   "routing.aliases: '%s' is a model backend '%s' serves; it "
                                   "cannot also be an alias",
                                   c->aliases[i].from, c->backends[j].name);
    for (i = 0; i < c->nkeys; i++)
        if (c->key_tier[i] >= c->ntiers)
            return cfg_msg(err, errlen, "API key %zu belongs to tier %u, which does not exist", i,
                           (unsigned)c->key_tier[i]);
    return 0;
}

/* The front door's checks of cfg_validate: require_auth needs a key to
 * accept, admin_listen cannot share the client address. */
static int cfg_validate_front(const struct cfg *c, char *err, size_t errlen)
{
    if (c->require_auth && c->nkeys == 0)
        return cfg_msg(err, errlen,
                       "require_auth: true, but no API key is configured: every request would "
                       "be refused (give a tier keys: or key_sha256:)");
    if (c->admin && c->admin_port != 0 && c->admin_port == c->listen_port &&
        strcmp(c->admin_host, c->listen_host) == 0)
        return cfg_msg(err, errlen, "admin_listen (%s:%u) must differ from listen", c->admin_host,
                       c->admin_port);
    return 0;
}

/* One party's rate limits (a tier's or a key's, `what` names it): token
 * limits up to CFG_RATE_TOKENS_MAX; the others fit their unsigned fields. */
static int cfg_validate_limits(const struct cfg_limits *l, const char *what, char *err,
                               size_t errlen)
{
    if (l->tokens_per_minute > CFG_RATE_TOKENS_MAX)
        return cfg_msg(err, errlen, "%s: limits.tokens_per_minute (%llu) must not exceed %llu",
                       what, l->tokens_per_minute, CFG_RATE_TOKENS_MAX);
    if (l->tokens_per_day > CFG_RATE_TOKENS_MAX)
        return cfg_msg(err, errlen, "%s: limits.tokens_per_day (%llu) must not exceed %llu", what,
                       l->tokens_per_day, CFG_RATE_TOKENS_MAX);
    return 0;
}

/* The rate-limit checks of cfg_validate: ratelimit.default_max_tokens in
 * range, every tier's and key's limits, every key named (a label value) and
 * no two keys alike. After cfg_validate_routing: each key's tier exists. */
static int cfg_validate_ratelimit(const struct cfg *c, char *err, size_t errlen)
{
    char what[CFG_NAME_MAX + 16], msg[256];
    size_t i, j;

    if (c->ratelimit_default_max_tokens < 1 ||
        c->ratelimit_default_max_tokens > CFG_RATE_MAX_TOKENS_MAX)
        return cfg_msg(err, errlen, "ratelimit.default_max_tokens: %u is out of range (1..%d)",
                       c->ratelimit_default_max_tokens, CFG_RATE_MAX_TOKENS_MAX);
    for (i = 0; i < c->ntiers; i++) {
        snprintf(what, sizeof(what), "tier '%s'", c->tiers[i].name);
        if (cfg_validate_limits(&c->tiers[i].limits, what, err, errlen) != 0)
            return -1;
    }
    for (i = 0; i < c->nkeys; i++) {
        const struct cfg_apikey *k = &c->keys[i];

        if (cfg_name_check(k->name, "key", msg, sizeof(msg)) != 0)
            return cfg_msg(err, errlen, "API key %zu of tier '%s': %s", i,
                           c->tiers[c->key_tier[i]].name, msg);
        for (j = 0; j < i; j++)
            if (strcmp(c->keys[j].name, k->name) == 0)
                return cfg_msg(err, errlen, "duplicate key name '%s'", k->name);
        snprintf(what, sizeof(what), "key '%s'", k->name);
        if (cfg_validate_limits(&k->limits, what, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int cfg_validate(const struct cfg *c, char *err, size_t errlen)
{
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
        return cfg_order_msg(err, errlen, "measure.stall", c->stall_ms, "be shorter than",
                             "measure.stall_timeout", c->stall_timeout_ms);
    if (c->max_uri_bytes > c->max_header_bytes)
        return cfg_msg(err, errlen,
                       "limits.max_uri_bytes (%zu) must not exceed limits.max_header_bytes (%zu)",
                       c->max_uri_bytes, c->max_header_bytes);
    if (cfg_validate_slots(c, err, errlen) != 0)
        return -1;
    if (c->otel_batch_size > c->otel_queue_size)
        return cfg_msg(err, errlen,
                       "opentelemetry.traces.batch_size (%u) must not exceed "
                       "opentelemetry.traces.queue_size (%u)",
                       c->otel_batch_size, c->otel_queue_size);
    if (cfg_validate_front(c, err, errlen) != 0)
        return -1;
    if (cfg_validate_routing(c, err, errlen) != 0)
        return -1;
    return cfg_validate_ratelimit(c, err, errlen);
}

/* ---- reading a file (cfg_load_buffer is in src/cfg_yaml.c) ------------- */

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

struct cfg *cfg_new(void)
{
    struct cfg *c = malloc(sizeof(*c));

    if (c == NULL)
        return NULL;
    cfg_init(c);
    atomic_store_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

const struct cfg *cfg_hold(const struct cfg *c)
{
    struct cfg *m = (struct cfg *)c;

    if (c && atomic_load_explicit(&m->refs, memory_order_relaxed) > 0)
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return c;
}

void cfg_drop(const struct cfg *c)
{
    struct cfg *m = (struct cfg *)c;

    if (c == NULL || atomic_load_explicit(&m->refs, memory_order_relaxed) == 0)
        return;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        cfg_release(m);
        free(m);
    }
}

/* Appends name to kept (", "-separated) when the field differs, and copies
 * old's back over next's. */
static void cfg_keep(char *kept, size_t cap, const char *name, bool differs, void *next,
                     const void *old, size_t n)
{
    size_t len = strlen(kept);

    if (!differs)
        return;
    memcpy(next, old, n);
    snprintf(kept + len, cap - len, "%s%s", len ? ", " : "", name);
}

/* Field by field, strings up to their NUL (the bytes after it are not
 * cleared everywhere), the config file's line numbers left out. */
static bool cfg_tls_client_same(const struct cfg_tls_client *a, const struct cfg_tls_client *b)
{
    return strcmp(a->ca_file, b->ca_file) == 0 && strcmp(a->server_name, b->server_name) == 0 &&
           strcmp(a->cert, b->cert) == 0 && strcmp(a->key, b->key) == 0 && a->verify == b->verify;
}

static bool cfg_backend_same(const struct cfg_backend *a, const struct cfg_backend *b)
{
    size_t i;

    if (strcmp(a->name, b->name) != 0 || strcmp(a->host, b->host) != 0 || a->port != b->port ||
        strcmp(a->url, b->url) != 0 || a->https != b->https ||
        !cfg_tls_client_same(&a->tls, &b->tls) || a->flavor != b->flavor ||
        a->capacity != b->capacity || a->nmodels != b->nmodels || a->dns != b->dns ||
        a->group != b->group || a->slot != b->slot)
        return false;
    for (i = 0; i < a->nmodels; i++)
        if (strcmp(a->models[i], b->models[i]) != 0)
            return false;
    return true;
}

bool cfg_certs_same(const struct cfg *a, const struct cfg *b)
{
    size_t i;

    if (a->ntls_certs != b->ntls_certs || a->tls_min_version != b->tls_min_version)
        return false;
    for (i = 0; i < a->ntls_certs; i++)
        if (strcmp(a->tls_certs[i].cert, b->tls_certs[i].cert) != 0 ||
            strcmp(a->tls_certs[i].key, b->tls_certs[i].key) != 0)
            return false;
    return true;
}

#define CFG_KEEP(name, field)                                                                      \
    cfg_keep(kept, cap, name, memcmp(&old->field, &next->field, sizeof(old->field)) != 0,          \
             &next->field, &old->field, sizeof(old->field))

void cfg_reload_keep(const struct cfg *old, struct cfg *next, char *kept, size_t cap)
{

    if (cap == 0)
        return;
    kept[0] = '\0';
    /* the backends are laid out in the running table (cfg_backends_place),
     * whose shape stays */
    CFG_KEEP("routing.max_addresses", max_addresses);
    /* the loops' connections to Redis are made at start */
    if (strcmp(old->ratelimit_redis, next->ratelimit_redis) != 0 ||
        strcmp(old->ratelimit_redis_password, next->ratelimit_redis_password) != 0 ||
        strcmp(old->ratelimit_redis_prefix, next->ratelimit_redis_prefix) != 0) {
        cfg_keep(kept, cap, "ratelimit.redis", true, next->ratelimit_redis, old->ratelimit_redis,
                 sizeof(old->ratelimit_redis));
        memcpy(next->ratelimit_redis_host, old->ratelimit_redis_host,
               sizeof(old->ratelimit_redis_host));
        next->ratelimit_redis_port = old->ratelimit_redis_port;
        next->ratelimit_redis_db = old->ratelimit_redis_db;
        memcpy(next->ratelimit_redis_password, old->ratelimit_redis_password,
               sizeof(old->ratelimit_redis_password));
        memcpy(next->ratelimit_redis_prefix, old->ratelimit_redis_prefix,
               sizeof(old->ratelimit_redis_prefix));
    }
    CFG_KEEP("routing.spare_backends", spare_backends);
    cfg_keep(kept, cap, "routing.resolver", strcmp(old->resolver, next->resolver) != 0,
             next->resolver, old->resolver, sizeof(old->resolver));
    if (strcmp(old->listen_host, next->listen_host) != 0 || old->listen_port != next->listen_port) {
        cfg_keep(kept, cap, "listen", true, next->listen_host, old->listen_host,
                 sizeof(old->listen_host));
        next->listen_port = old->listen_port;
    }
    if (old->admin != next->admin || strcmp(old->admin_host, next->admin_host) != 0 ||
        old->admin_port != next->admin_port) {
        cfg_keep(kept, cap, "admin_listen", true, next->admin_host, old->admin_host,
                 sizeof(old->admin_host));
        next->admin = old->admin;
        next->admin_port = old->admin_port;
    }
    /* the certificates change (worker_set_cfg), TLS on or off does not */
    if ((old->ntls_certs == 0) != (next->ntls_certs == 0)) {
        cfg_keep(kept, cap, "tls (on or off)", true, next->tls_certs, old->tls_certs,
                 sizeof(old->tls_certs));
        next->ntls_certs = old->ntls_certs;
        next->tls_min_version = old->tls_min_version;
    }
    CFG_KEEP("workers", workers);
    CFG_KEEP("max_model_labels", max_model_labels);
    if (old->nbuckets != next->nbuckets ||
        memcmp(old->buckets, next->buckets, old->nbuckets * sizeof(old->buckets[0])) != 0) {
        cfg_keep(kept, cap, "measure.buckets", true, next->buckets, old->buckets,
                 sizeof(old->buckets));
        next->nbuckets = old->nbuckets;
    }
    if (old->otel_metrics != next->otel_metrics ||
        strcmp(old->otel_trace_url, next->otel_trace_url) != 0 ||
        !cfg_tls_client_same(&old->otel_tls, &next->otel_tls) ||
        strcmp(old->otel_service_name, next->otel_service_name) != 0 ||
        old->otel_queue_size != next->otel_queue_size ||
        old->otel_batch_size != next->otel_batch_size ||
        old->otel_trace_interval_ms != next->otel_trace_interval_ms ||
        old->otel_trace_timeout_ms != next->otel_trace_timeout_ms) {
        cfg_keep(kept, cap, "opentelemetry", true, &next->otel_metrics, &old->otel_metrics,
                 sizeof(old->otel_metrics));
        memcpy(next->otel_trace_url, old->otel_trace_url, sizeof(old->otel_trace_url));
        memcpy(next->otel_trace_host, old->otel_trace_host, sizeof(old->otel_trace_host));
        next->otel_trace_port = old->otel_trace_port;
        next->otel_trace_https = old->otel_trace_https;
        next->otel_tls = old->otel_tls;
        memcpy(next->otel_trace_path, old->otel_trace_path, sizeof(old->otel_trace_path));
        memcpy(next->otel_service_name, old->otel_service_name, sizeof(old->otel_service_name));
        next->otel_queue_size = old->otel_queue_size;
        next->otel_batch_size = old->otel_batch_size;
        next->otel_trace_interval_ms = old->otel_trace_interval_ms;
        next->otel_trace_timeout_ms = old->otel_trace_timeout_ms;
    }
    CFG_KEEP("limits.max_headers", max_headers);
    CFG_KEEP("limits.max_header_bytes", max_header_bytes);
    CFG_KEEP("upstream.keepalive", upstream_keepalive);
    CFG_KEEP("upstream.max_event_bytes", max_event_bytes);
}
