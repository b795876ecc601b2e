/* upstream: upstream connections: connect with a timeout, TCP_NODELAY, TLS for
 * https backends, and a small idle pool per backend for responses that allow
 * reuse. */
#ifndef PITOT_IO_UPSTREAM_H
#define PITOT_IO_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

struct worker;
struct bufferevent;

struct upstream_pool;

/* Pools for every backend of w. Returns NULL on allocation failure. */
struct upstream_pool *upstream_pools_new(struct worker *w, size_t nbackends);
void upstream_pools_free(struct upstream_pool *pools, size_t nbackends);

/* An idle pooled connection to backend `be` (*reused = true), else a new
 * connecting one (*reused = false). Callbacks are unset; the caller sets them
 * and enables reading. NULL on immediate failure. */
struct bufferevent *upstream_conn_get(struct worker *w, unsigned be, bool *reused);

/* A new connecting connection to backend `be`, never a pooled one; for an
 * https backend a TLS one, whose BEV_EVENT_CONNECTED comes after the
 * handshake and the certificate check. NULL on immediate failure. */
struct bufferevent *upstream_conn_new(struct worker *w, unsigned be);

/* Returns a connection whose last response completed cleanly and allowed
 * keep-alive. It is freed instead when the pool is full. */
void upstream_conn_put(struct worker *w, unsigned be, struct bufferevent *bev);

/* Closes every idle connection of backend `be` (its address changed). */
void upstream_pool_flush(struct worker *w, unsigned be);

/* Idle connections kept for backend `be` now. */
size_t upstream_pool_idle(const struct worker *w, unsigned be);

#endif
