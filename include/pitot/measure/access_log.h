/* access_log: one JSON line per request. Never prompt text, output text, query
 * strings or credentials: only the fields below. */
#ifndef PITOT_MEASURE_ACCESS_LOG_H
#define PITOT_MEASURE_ACCESS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pitot/util/span.h"

/* One finished request. Durations in microseconds, -1 when not measured;
 * token counts -1 when unknown. Strings borrowed, may be NULL (then null). */
struct alog_rec {
    struct span id;   /* X-Request-Id */
    uint64_t wall_us; /* request start, Unix epoch microseconds */
    struct span method;
    struct span path; /* logged up to (not including) any '?' */
    int status;       /* status sent to the client; 0 if none was sent */
    const char *backend;
    const char *model;
    const char *tier;
    const char *key; /* the name of the request's API key (never the key); NULL none */
    const char *api; /* api_label() of the request's path; NULL before a head was parsed */
    bool stream;
    int64_t ttft_us;
    int64_t itl_p50_us;
    int64_t itl_max_us;
    int64_t tpot_us;
    int64_t e2e_us;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens;
    bool tokens_estimated;     /* counted output events, no usage/timings seen */
    const char *finish_reason; /* NULL when none */
    bool refusal;
    bool truncated;
    unsigned stalls;
    const char *outcome; /* err_outcome() of the outcome: "ok", "client_cancel", ... */
    const char *error;   /* err_label() of the failure kind; NULL (null) on success */
};

/* Formats one line (JSON object + '\n') into buf[0..cap). Field names: id,
 * time (RFC 3339 UTC with milliseconds), method, path, status, backend, model,
 * tier, key, api, stream, ttft_ms, itl_p50_ms, itl_max_ms, tpot_ms, e2e_ms (3 decimals,
 * null when -1), prompt_tokens, completion_tokens, cached_tokens (null when
 * -1), tokens_estimated, finish_reason, refusal, truncated, stalls, outcome,
 * error.
 * Strings are JSON-escaped (control bytes as \u00XX, invalid UTF-8 as \ufffd).
 * Over-long strings are cut to fit and end in "..."; the line is always valid
 * JSON. Returns the length, or -1 if cap < 1024. */
int alog_format(const struct alog_rec *r, char *buf, size_t cap);

struct alog;

/* Opens the log: NULL, "" or "-" is stdout, else a file opened O_APPEND|O_CREAT.
 * Returns NULL on failure (errno set). */
struct alog *alog_open(const char *path);

/* Formats and writes one line with a single write(2). Returns 0 or -1. */
int alog_write(struct alog *l, const struct alog_rec *r);

/* Reopens the same path (log rotation on SIGHUP). Returns 0 or -1. */
int alog_reopen(struct alog *l);

/* Writes to another path from now on (a reload's access_log; "", "-":
 * stdout), opened before the old one lets go. Returns 0, or -1 (errno set)
 * with nothing changed. */
int alog_move(struct alog *l, const char *path);

void alog_close(struct alog *l);

#endif
