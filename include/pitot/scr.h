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

#endif
