/* config internals shared by src/format/config.c (value syntax, names, URLs, defaults) and
 * src/cfg_yaml.c (the YAML loader). Private to the cfg module: the public face
 * is include/pitot/cfg.h. */
#ifndef PITOT_CFG_INT_H
#define PITOT_CFG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "pitot/format/config.h"

#define CFG_KIB 1024ull
#define CFG_MIB (1024ull * 1024)
#define CFG_GIB (1024ull * 1024 * 1024)
#define CFG_DAY_MS 86400000ull

/* Rate limits (issue 12): the largest token limit, per minute or per day (a
 * count past it is a typo, and GCRA's arithmetic stays in 64 bits), and the
 * largest ratelimit.default_max_tokens. */
#define CFG_RATE_TOKENS_MAX 1000000000000000ull /* 1e15 */
#define CFG_RATE_MAX_TOKENS_MAX 10000000

/* Writes a printf-style message into err[0..errlen) when there is room at
 * all (err may be NULL); returns -1, so that errors read `return cfg_msg(..)`. */
int cfg_msg(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The shortest exact spelling of a value into buf[0..n); return buf.
 * Sizes: "1g", "16m", "256k", "100". Durations: cfg_fmt_ms in cfg.h.
 * Names: "a, b or c" from a NULL-terminated list. */
const char *cfg_fmt_size(char *buf, size_t n, unsigned long long v);
const char *cfg_fmt_names(char *buf, size_t n, const char *const *names);

/* Value syntax. Each takes the whole of s and returns 0, or -1 when s is not
 * of that syntax. Integers saturate (a huge value reads as out of range, not
 * as bad), so that callers only check ranges.
 *   count: non-negative decimal          size: bytes, or with k/m/g (KiB...)
 *   ms: bare, or with ms/s/m             int: optionally signed decimal
 *   bool: true/yes/on, false/no/off      double: finite decimal, no hex/inf/nan
 *   sha256: 64 hex digits into 32 bytes */
int cfg_parse_count(const char *s, unsigned long long *v);
int cfg_parse_size(const char *s, unsigned long long *v);
int cfg_parse_ms(const char *s, unsigned long long *v);
int cfg_parse_int(const char *s, long long *v);
int cfg_parse_bool(const char *s, bool *v);
int cfg_parse_double(const char *s, double *v);
int cfg_parse_sha256(const char *s, unsigned char out[32]);

/* A label value (backend, model, tier name): 1..CFG_NAME_MAX-1 characters of
 * [A-Za-z0-9._:@/+-]; `what` names it in the message. Returns 0 or -1. */
int cfg_name_check(const char *s, const char *what, char *err, size_t errlen);

/* Fills b (zeroed first) from "http[s]://host[:port][/]" (https: port 443 by
 * default, tls.verify on); the name is left to cfg_backend_name(). Returns 0
 * or -1 with a message. */
int cfg_url_parse(const char *url, struct cfg_backend *b, char *err, size_t errlen);

/* Sets opentelemetry.traces.endpoint from "http[s]://host[:port][/path]"
 * (path "" or "/" means /v1/traces; port default 80, 443 for https), or turns
 * export off for "". Userinfo, a query or a fragment are errors. On error returns -1 with
 * a message and leaves the endpoint off (a failed load drops the copy anyway). */
int cfg_otlp_endpoint_set(struct cfg *c, const char *url, char *err, size_t errlen);

/* Sets b->name: `name` when not NULL (checked), else "host:port" from its URL.
 * Returns 0 or -1 with a message. */
int cfg_backend_name(struct cfg_backend *b, const char *name, char *err, size_t errlen);

/* Index of the first of c->backends[0..n) named like name, or -1. */
int cfg_backend_find(const struct cfg *c, size_t n, const char *name);

/* Sets routing.resolver from "ip[:port]" (port 53 by default; "" = the
 * system's). Names are refused: the resolver's own address cannot need one.
 * Returns 0 or -1 with a message. */
int cfg_resolver_set(struct cfg *c, const char *hostport, char *err, size_t errlen);

/* A tier as every tier starts: priority 0, no SLO targets, 64 held for 30 s. */
void cfg_tier_defaults(struct cfg_tier *t, const char *name);

#endif
