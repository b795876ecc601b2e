/* upstream: connections to the backends: connect with TCP_NODELAY, TLS for
 * https backends, and a small idle pool per backend for responses that allow
 * reuse. One per event loop; it knows the backends only as addresses. */
#ifndef PITOT_IO_UPSTREAM_H
#define PITOT_IO_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct bufferevent;
struct event_base;
struct tls_client;
struct upstream;

/* Where backend be is now: its address into *ss and *len (0: none). */
typedef void (*upstream_addr_cb)(void *ud, unsigned be, struct sockaddr_storage *ss,
                                 socklen_t *len);

/* Pools for nbackends backends on `base`, keeping up to `keepalive` idle
 * connections each. addr_of(ud, ...) is asked at each connect (an address may
 * change); tls is a borrowed array indexed by backend, tls[be] NULL being
 * plain HTTP. NULL when out of memory. */
struct upstream *upstream_new(struct event_base *base, size_t nbackends, unsigned keepalive,
                              upstream_addr_cb addr_of, void *ud, struct tls_client *const *tls);

/* Closes the idle connections and frees u (NULL is fine). */
void upstream_free(struct upstream *u);

/* The loop is ending: connections handed back are closed, not kept. */
void upstream_stop(struct upstream *u);

/* An idle pooled connection to backend `be` opened under address generation
 * `gen` (*reused = true), else a new connecting one (*reused = false); idle
 * ones of another generation are closed. Callbacks are unset; the caller sets
 * them and enables reading. NULL on immediate failure. */
struct bufferevent *upstream_conn_get(struct upstream *u, unsigned be, unsigned gen, bool *reused);

/* A new connecting connection to backend `be`, never a pooled one; for an
 * https backend a TLS one, whose BEV_EVENT_CONNECTED comes after the
 * handshake and the certificate check. NULL on immediate failure. */
struct bufferevent *upstream_conn_new(struct upstream *u, unsigned be);

/* Returns a connection, opened under address generation `gen`, whose last
 * response completed cleanly and allowed keep-alive. It is freed instead when
 * the pool is full or u stops. */
void upstream_conn_put(struct upstream *u, unsigned be, unsigned gen, struct bufferevent *bev);

/* Closes every idle connection of backend `be` (its address changed). */
void upstream_pool_flush(struct upstream *u, unsigned be);

/* Idle connections kept for backend `be` now. */
size_t upstream_pool_idle(const struct upstream *u, unsigned be);

#endif
