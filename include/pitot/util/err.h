/* err: the one table of error kinds. Each row feeds the HTTP reply status,
 * the access-log outcome and the metric label, so the three never disagree. */
#ifndef PITOT_UTIL_ERR_H
#define PITOT_UTIL_ERR_H

#include <stddef.h>

/*  X(NAME,              status, "label",             "outcome",        "message to the client")
 * label: metric `kind` and access-log `error`; outcome: access-log `outcome`.
 * The JSON error body's "type" is the label and its "code" the status, except
 * for the kinds in PITOT_ERR_OPENAI below, which use OpenAI's own values. */
/* clang-format off */
#define PITOT_ERR_LIST(X)                                                                          \
    X(OK,                 200, "ok",                 "ok",             "ok")                        \
    X(NOMEM,              500, "no_memory",          "internal_error", "out of memory")             \
    X(BAD_REQUEST,        400, "bad_request",        "bad_request",    "malformed HTTP request")    \
    X(BAD_VERSION,        505, "bad_version",        "bad_request",    "HTTP version not supported") \
    X(HEADER_TOO_LARGE,   431, "header_too_large",   "bad_request",    "request header fields too large") \
    X(URI_TOO_LONG,       414, "uri_too_long",       "bad_request",    "request URI too long")      \
    X(BODY_TOO_LARGE,     413, "body_too_large",     "bad_request",    "request body too large")    \
    X(HEADER_TIMEOUT,     408, "header_timeout",     "client_timeout", "request header timeout")    \
    X(BODY_TIMEOUT,       408, "body_timeout",       "client_timeout", "request body timeout")      \
    X(NOT_IMPLEMENTED,    501, "not_implemented",    "bad_request",    "transfer coding not implemented") \
    X(EXPECTATION,        417, "expectation_failed", "bad_request",    "expectation not supported") \
    X(NO_BACKEND,         503, "no_backend",         "no_backend",     "no healthy backend")        \
    X(NO_MODEL,           404, "model_not_found",    "no_model",       "no backend serves this model") \
    X(OVERLOADED,         503, "overloaded",         "shed",           "all backends are busy, retry later") \
    X(UPSTREAM_CONNECT,   502, "upstream_connect",   "upstream_error", "could not connect to backend") \
    X(UPSTREAM_TIMEOUT,   504, "upstream_timeout",   "upstream_error", "backend timed out")         \
    X(UPSTREAM_RESET,     502, "upstream_reset",     "upstream_error", "backend closed the connection") \
    X(UPSTREAM_PROTOCOL,  502, "upstream_protocol",  "upstream_error", "backend sent an invalid response") \
    X(UPSTREAM_TOO_LARGE, 502, "upstream_too_large", "upstream_error", "backend response header too large") \
    X(STALL_TIMEOUT,      504, "stall_timeout",      "stall_timeout",  "backend stream stalled")    \
    X(CLIENT_CANCEL,      499, "client_cancel",      "client_cancel",  "client closed the connection") \
    X(CLIENT_TIMEOUT,     408, "client_timeout",     "client_timeout", "client stopped reading") \
    X(SHUTDOWN,           503, "shutdown",           "shutdown",       "pitot is shutting down") \
    X(INVALID_JSON,       400, "invalid_json",       "bad_request",    "the request body is not valid JSON") \
    X(UNAUTHORIZED,       401, "invalid_api_key",    "unauthorized",   "missing or invalid API key") \
    X(METHOD_NOT_ALLOWED, 405, "method_not_allowed", "bad_request",    "method not allowed") \
    X(NOT_FOUND,          404, "not_found",          "bad_request",    "not found") \
    X(RATE_REQUESTS,      429, "rate_limited_requests", "rate_limited", "rate limit reached for requests per minute; retry after the time in Retry-After") \
    X(RATE_TOKENS,        429, "rate_limited_tokens", "rate_limited",   "rate limit reached for tokens per minute; retry after the time in Retry-After") \
    X(RATE_TOKENS_DAY,    429, "rate_limited_tokens_per_day", "rate_limited", "rate limit reached for tokens per day; retry after the time in Retry-After") \
    X(RATE_CONCURRENT,    429, "rate_limited_concurrent", "rate_limited", "rate limit reached for requests at once; retry when one has ended") \
    X(RATE_UNAVAILABLE,   503, "rate_limits_unavailable", "rate_limited", "rate limits cannot be checked now; retry later")

/* Kinds whose JSON error body takes OpenAI's "type" and "code" (a JSON
 * literal), so that clients and SDKs classify them as they do OpenAI's.
 *  X(NAME,          "type",                  code literal) */
#define PITOT_ERR_OPENAI(X)                                                                        \
    X(INVALID_JSON,  "invalid_request_error", "null")                                              \
    X(UNAUTHORIZED,  "invalid_request_error", "\"invalid_api_key\"")                                 \
    X(RATE_REQUESTS, "requests",              "\"rate_limit_exceeded\"")                             \
    X(RATE_TOKENS,   "tokens",                "\"rate_limit_exceeded\"")                             \
    X(RATE_TOKENS_DAY, "tokens",              "\"rate_limit_exceeded\"")                             \
    X(RATE_CONCURRENT, "requests",            "\"rate_limit_exceeded\"")
/* clang-format on */

enum pitot_err {
#define PITOT_ERR_ENUM(name, status, label, outcome, msg) PITOT_E##name,
    PITOT_ERR_LIST(PITOT_ERR_ENUM)
#undef PITOT_ERR_ENUM
        PITOT_E__COUNT
};

/* Actions return 0 or the negated kind: return -PITOT_EBAD_REQUEST. */

/* HTTP status that answers a request failing with this kind. */
int err_status(enum pitot_err e);

/* Short snake_case label: access-log outcome and metric label value. */
const char *err_label(enum pitot_err e);

/* Access-log outcome: "ok", "upstream_error", "client_cancel", ... */
const char *err_outcome(enum pitot_err e);

/* Human message for the client's JSON error body. */
const char *err_message(enum pitot_err e);

/* The JSON error body {"error":{"message":..,"type":..,"code":..}} for `e`
 * into buf[0..cap) (NUL-terminated, truncated to fit); returns the length
 * written, at most cap - 1. */
int err_json(enum pitot_err e, char *buf, size_t cap);

/* Standard reason phrase for an HTTP status ("Not Found"), "Unknown" if none. */
const char *err_reason_phrase(int status);

#endif
