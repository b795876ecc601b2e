/* hget: one-shot HTTP/1.1 GET (or POST) on a fresh connection, plain or TLS,
 * body collected up to a cap, for health probes, metric scrapes and span
 * exports. Never on the request path. */
#ifndef PITOT_HGET_H
#define PITOT_HGET_H

#include <stddef.h>
#include <sys/socket.h>

#include "pitot/span.h"

struct event_base;
struct hget;
struct tls_client;

enum hget_result {
    HGET_OK,       /* a complete response (any status) */
    HGET_CONNECT,  /* connection refused or reset before the response */
    HGET_TIMEOUT,  /* no complete response within the timeout */
    HGET_PROTOCOL, /* malformed response, or the body passed the cap */
    HGET_TLS,      /* the TLS handshake failed: certificate not verified, alert, ... */
};

/* Called once. With HGET_OK, status and the body; with any other result,
 * body is why in words, for a log line ("Connection refused", "certificate
 * verify failed: unable to get local issuer certificate"). body is borrowed,
 * only during the call. The request is freed after the callback returns. */
typedef void (*hget_cb)(void *ud, enum hget_result res, int status, struct span body);

/* Starts GET `path` to sa with Host `authority`, over TLS with tls (borrowed;
 * NULL: plain HTTP). NULL on immediate failure (then the callback is not
 * called). */
struct hget *hget_start(struct event_base *base, struct tls_client *tls, const struct sockaddr *sa,
                        socklen_t salen, const char *authority, const char *path,
                        unsigned timeout_ms, size_t max_body, hget_cb cb, void *ud);

/* The same as a POST of body[0..body_len) with that Content-Type. The body
 * is sent by reference: it must stay intact until the callback ran or the
 * request was cancelled. */
struct hget *hget_post(struct event_base *base, struct tls_client *tls, const struct sockaddr *sa,
                       socklen_t salen, const char *authority, const char *path,
                       const char *content_type, const char *body, size_t body_len,
                       unsigned timeout_ms, size_t max_body, hget_cb cb, void *ud);

/* Abandons a request: the callback will not be called. */
void hget_cancel(struct hget *g);

#endif
