/* fetch: one-shot HTTP/1.1 GET (or POST) on a fresh connection, plain or TLS,
 * body collected up to a cap, for health probes, metric scrapes and span
 * exports. Never on the request path. */
#ifndef PITOT_IO_FETCH_H
#define PITOT_IO_FETCH_H

#include <stddef.h>
#include <sys/socket.h>

#include "pitot/util/span.h"

struct event_base;
struct fetch;
struct tls_client;

enum fetch_result {
    FETCH_OK,       /* a complete response (any status) */
    FETCH_CONNECT,  /* connection refused or reset before the response */
    FETCH_TIMEOUT,  /* no complete response within the timeout */
    FETCH_PROTOCOL, /* malformed response, or the body passed the cap */
    FETCH_TLS,      /* the TLS handshake failed: certificate not verified, alert, ... */
};

/* Called once. With FETCH_OK, status and the body; with any other result,
 * body is why in words, for a log line ("Connection refused", "certificate
 * verify failed: unable to get local issuer certificate"). body is borrowed,
 * only during the call. The request is freed after the callback returns. */
typedef void (*fetch_cb)(void *ud, enum fetch_result res, int status, struct span body);

/* Starts GET `path` to sa with Host `authority`, over TLS with tls (borrowed;
 * NULL: plain HTTP). NULL on immediate failure (then the callback is not
 * called). */
struct fetch *fetch_start(struct event_base *base, struct tls_client *tls,
                          const struct sockaddr *sa, socklen_t salen, const char *authority,
                          const char *path, unsigned timeout_ms, size_t max_body, fetch_cb cb,
                          void *ud);

/* The same as a POST of body[0..body_len) with that Content-Type. The body
 * is sent by reference: it must stay intact until the callback ran or the
 * request was cancelled. */
struct fetch *fetch_post(struct event_base *base, struct tls_client *tls, const struct sockaddr *sa,
                         socklen_t salen, const char *authority, const char *path,
                         const char *content_type, const char *body, size_t body_len,
                         unsigned timeout_ms, size_t max_body, fetch_cb cb, void *ud);

/* Abandons a request: the callback will not be called. */
void fetch_cancel(struct fetch *g);

#endif
