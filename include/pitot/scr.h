/* scr: what each backend says about its own load. Per backend: GET /metrics
 * every routing.scrape_interval, normalised by its flavor (llama.cpp, vLLM,
 * TGI, SGLang; detected from the metric names unless configured) into
 * running, waiting and cache pressure; GET /props once on llama.cpp for its
 * slot count; GET /v1/models every routing.models_interval for the names it
 * serves. Results go to the backend table and the pitot_backend_* metrics. */
#ifndef PITOT_SCR_H
#define PITOT_SCR_H

struct wrk;
struct scr;

/* Starts scraping every backend of w (the first scrapes at once). */
struct scr *scr_new(struct wrk *w);
void scr_free(struct scr *s);

/* Backend `be` got a new address or lost it (a DNS slot): scrapes still
 * running are dropped, its scrape-derived gauges are cleared, /props is asked
 * again, and an active backend is scraped at once. An inactive one is not
 * scraped. */
void scr_reset(struct scr *s, unsigned be);

#endif
