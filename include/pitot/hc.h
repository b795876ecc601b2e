/* hc: active health checks. Every interval each backend gets GET /health on a
 * fresh connection: 200 is up; llama.cpp's 503 "Loading model" is not ready
 * (down, loading); anything else, a refused connection or a timeout is down. */
#ifndef PITOT_HC_H
#define PITOT_HC_H

struct wrk;
struct hc;

/* Starts probing every backend of w (the first probe at once). NULL on failure. */
struct hc *hc_new(struct wrk *w);
void hc_free(struct hc *h);

/* Backend `be` got a new address or lost it (a DNS slot): a probe still
 * running is dropped, the up gauge is set to 1 (as bal_activate sets up), and
 * an active backend is probed at once. An inactive one is not probed. */
void hc_reset(struct hc *h, unsigned be);

#endif
