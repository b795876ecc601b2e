/* ups: upstream connections: connect with a timeout, TCP_NODELAY, TLS for
 * https backends, and a small idle pool per backend for responses that allow
 * reuse. */
#ifndef PITOT_UPS_H
#define PITOT_UPS_H

#include <stdbool.h>
#include <stddef.h>

struct wrk;
struct bufferevent;

struct ups_pool;

/* Pools for every backend of w. Returns NULL on allocation failure. */
struct ups_pool *ups_pools_new(struct wrk *w, size_t nbackends);
void ups_pools_free(struct ups_pool *pools, size_t nbackends);

/* An idle pooled connection to backend `be` (*reused = true), else a new
 * connecting one (*reused = false). Callbacks are unset; the caller sets them
 * and enables reading. NULL on immediate failure. */
struct bufferevent *ups_conn_get(struct wrk *w, unsigned be, bool *reused);

/* A new connecting connection to backend `be`, never a pooled one; for an
 * https backend a TLS one, whose BEV_EVENT_CONNECTED comes after the
 * handshake and the certificate check. NULL on immediate failure. */
struct bufferevent *ups_conn_new(struct wrk *w, unsigned be);

/* Returns a connection whose last response completed cleanly and allowed
 * keep-alive. It is freed instead when the pool is full. */
void ups_conn_put(struct wrk *w, unsigned be, struct bufferevent *bev);

/* Closes every idle connection of backend `be` (its address changed). */
void ups_pool_flush(struct wrk *w, unsigned be);

/* Idle connections kept for backend `be` now. */
size_t ups_pool_idle(const struct wrk *w, unsigned be);

#endif
