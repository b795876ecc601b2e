/* relay: one proxied request: the upstream request (fresh framing, hop-by-hop
 * headers dropped, X-Forwarded-For and X-Request-Id added, usage asked for on
 * demand), the backend exchange, and the response relayed event by event
 * while it is measured. */
#ifndef PITOT_SERVE_RELAY_H
#define PITOT_SERVE_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "pitot/util/err.h"
#include "pitot/format/http1.h"
#include "pitot/measure/metrics.h"
#include "pitot/route/queue.h"
#include "pitot/util/span.h"

#define RELAY_ID_MAX 128 /* longest X-Request-Id kept from a client */

struct bufferevent;
struct relay;
struct loop;

/* The client side of a relay: the connection it answers on, and its owner
 * to tell when it is done. */
struct relay_client {
    struct bufferevent *bev; /* borrowed: the client's connection */
    bool direct;             /* it is plain TCP: its socket may be written directly */
    const char *peer;        /* borrowed, at relay_new only: the client's address, for
                                X-Forwarded-For */
    /* The relay is done with the response (complete, or given up on);
     * keep_alive: the connection may serve another request. Called from the
     * relay's own callbacks: the owner retires the relay (relay_retire). */
    void (*done)(void *ud, bool keep_alive);
    void *ud;
};

/* Starts a relay on lp for the client `client` (copied) from a parsed request
 * head; everything it needs from `req` is copied, so the head may be drained
 * afterwards. t0_us: when the head was complete; tier: the request's tier,
 * key: its API key's index in the configuration, -1 none (tier_resolve).
 * NULL on allocation failure. */
struct relay *relay_new(struct loop *lp, const struct relay_client *client,
                        const struct h1_msg *req, uint64_t t0_us, unsigned tier, int key);

/* The request's id into out: the client's X-Request-Id when it is visible
 * ASCII without quotes or backslashes, at most RELAY_ID_MAX bytes (it is
 * echoed into headers and logs), else a fresh 32-hex-digit one. */
void relay_request_id(struct loop *lp, const struct h1_msg *req, char out[RELAY_ID_MAX + 1]);

/* Appends request body bytes. Returns 0, or -PITOT_EBODY_TOO_LARGE. */
int relay_body(struct relay *r, struct span body);

/* Refuses the request pitot is reading or has read (a malformed or slow
 * body, a body that is no JSON): the error reply, the access-log line, and
 * then the front takes the connection back (close: it ends after the reply).
 * Nothing of it reached a backend. */
void relay_refuse(struct relay *r, enum pitot_err e, bool close);

/* The request is complete: choose a backend and send it. */
void relay_start(struct relay *r);

/* Called by the overload queue: tries to place a held request. Returns false
 * when it must keep waiting; true when it left the queue (dispatched or
 * answered). */
bool relay_try_dispatch(struct relay *r);

/* The overload queue's view of relays: relay_try_dispatch and relay_shed. */
extern const struct queue_ops relay_queue_ops;

/* Answers a request the queue gives up on (503 + Retry-After, or 404 for no
 * model); client_gone: nothing is sent. Accounts it. */
void relay_shed(struct relay *r, enum met_shed why);

/* The client's output buffer drained below its watermark. */
void relay_client_drained(struct relay *r);

/* The client went away (EOF, error), stopped reading (write timeout), or
 * pitot cut it at the end of a drain (PITOT_ESHUTDOWN): closes the backend
 * connection at once and accounts the request with `why`. */
void relay_client_gone(struct relay *r, enum pitot_err why);

/* Frees the relay (and an upstream connection it still holds). Only for a
 * relay no callback frame can still be using; else relay_retire(). */
void relay_free(struct relay *r);

/* Detaches the relay from its client and drops its I/O at once; the memory is
 * freed by relay_reap() from the worker's reaper, after the current callback. */
void relay_retire(struct relay *r);

/* Frees every retired relay of lp. */
void relay_reap(struct loop *lp);

#endif
