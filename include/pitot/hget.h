/* hget: one-shot HTTP/1.1 GET on a fresh connection, body collected up to a
 * cap, for health probes and metric scrapes. Never on the request path. */
#ifndef PITOT_HGET_H
#define PITOT_HGET_H

#include <stddef.h>
#include <sys/socket.h>

#include "pitot/span.h"

struct event_base;
struct hget;

enum hget_result {
    HGET_OK,       /* a complete response (any status) */
    HGET_CONNECT,  /* connection refused or reset before the response */
    HGET_TIMEOUT,  /* no complete response within the timeout */
    HGET_PROTOCOL, /* malformed response, or the body passed the cap */
};

/* Called once. status and body are valid with HGET_OK (body borrowed, only
 * during the call). The request is freed after the callback returns. */
typedef void (*hget_cb)(void *ud, enum hget_result res, int status, struct span body);

/* Starts GET `path` to sa with Host `authority`. NULL on immediate failure
 * (then the callback is not called). */
struct hget *hget_start(struct event_base *base, const struct sockaddr *sa, socklen_t salen,
                        const char *authority, const char *path, unsigned timeout_ms,
                        size_t max_body, hget_cb cb, void *ud);

/* Abandons a request: the callback will not be called. */
void hget_cancel(struct hget *g);

#endif
