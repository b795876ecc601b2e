/* health: active health checks. Every interval each backend gets GET /health on a
 * fresh connection: 200 is up; llama.cpp's 503 "Loading model" is not ready
 * (down, loading); anything else, a refused connection or a timeout is down. */
#ifndef PITOT_ROUTE_HEALTH_H
#define PITOT_ROUTE_HEALTH_H

struct router;
struct health;

/* Starts probing every backend of rt (the first probe at once). NULL on failure. */
struct health *health_new(struct router *rt);
void health_free(struct health *h);

/* Backend `be` got a new address or lost it (a DNS slot): a probe still
 * running is dropped, the up gauge is set to 1 (as bal_activate sets up), and
 * an active backend is probed at once. An inactive one is not probed. */
void health_reset(struct health *h, unsigned be);

#endif
