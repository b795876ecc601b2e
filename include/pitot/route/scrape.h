/* scrape: what each backend says about its own load. Per backend: GET /metrics
 * every routing.scrape_interval, normalised by its flavor (llama.cpp, vLLM,
 * TGI, SGLang; detected from the metric names unless configured) into
 * running, waiting and cache pressure; GET /props once on llama.cpp for its
 * slot count; GET /v1/models every routing.models_interval for the names it
 * serves. Results go to the backend table and the pitot_backend_* metrics. */
#ifndef PITOT_ROUTE_SCRAPE_H
#define PITOT_ROUTE_SCRAPE_H

struct router;
struct scrape;

/* Starts scraping every backend of rt (the first scrapes at once). */
struct scrape *scrape_new(struct router *rt);
void scrape_free(struct scrape *s);

/* Backend `be` got a new address or lost it (a DNS slot): scrapes still
 * running are dropped, its scrape-derived gauges are cleared, /props is asked
 * again, and an active backend is scraped at once. An inactive one is not
 * scraped. */
void scrape_reset(struct scrape *s, unsigned be);

#endif
