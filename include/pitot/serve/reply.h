/* reply: the responses pitot writes itself (its errors, its own endpoints)
 * into a client connection's output: status line, headers, a
 * Content-Length, the body. */
#ifndef PITOT_SERVE_REPLY_H
#define PITOT_SERVE_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "pitot/format/api.h"
#include "pitot/util/err.h"

struct evbuffer;

/* Writes the head of a response with Content-Length `len`; the caller adds
 * exactly len body bytes (none for a HEAD request). extra: NULL or more header
 * lines, each ending in CRLF. close: the head says "Connection: close". */
void reply_head(struct evbuffer *out, int status, const char *content_type, size_t len, bool close,
                const char *extra);

/* Writes an OpenAI-style JSON error reply for `e` (status from the table);
 * head_only (a HEAD request): the body is left out. A 405 whose extra does
 * not start with its own Allow names the methods pitot relays in Allow
 * (RFC 9110 15.5.6). */
void reply_error(struct evbuffer *out, enum pitot_err e, bool head_only, bool close,
                 const char *extra);

/* The same in the error shape and status of API api (api_err_json()). */
void reply_error_api(struct evbuffer *out, enum api_kind api, enum pitot_err e, bool head_only,
                     bool close, const char *extra);

#endif
