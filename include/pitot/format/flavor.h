/* flavor: backend dialects. Which inference server wrote a /metrics body, its
 * load normalised to running / waiting / cache pressure, and the model names
 * and slot count from its /v1/models and /props bodies. Pure functions over
 * spans: no allocation, no I/O. */
#ifndef PITOT_FORMAT_FLAVOR_H
#define PITOT_FORMAT_FLAVOR_H

#include <stdbool.h>
#include <stddef.h>

#include "pitot/format/config.h"
#include "pitot/format/json.h"
#include "pitot/util/span.h"

/* A backend's load from one scrape. */
struct flv_load {
    bool valid;         /* at least one load signal was found */
    double running;     /* requests being processed, summed over series (engines, ranks) */
    double waiting;     /* requests queued, summed */
    double cache_ratio; /* cache pressure 0..1 (max over series), -1 if the flavor has none */
};

/* Which server wrote this /metrics body, from its metric names: the first
 * sample whose name starts with "llamacpp:", "vllm:", "tgi_" or "sglang:"
 * decides. CFG_FLAVOR_OPENAI when none is recognised (also for a body that
 * does not parse before one is). */
enum cfg_flavor flv_detect(struct span body);

/* Normalises a /metrics body of flavor f (not AUTO). Every series of a
 * signal counts (any labels: engine, rank, pid, model): counts are summed
 * (a negative sum counts as 0), ratios take the maximum; a series whose value
 * is NaN or infinite is ignored. cache_ratio is clamped to 0..1 and is -1 when
 * the flavor has no cache signal or the body lacks it. Metric names must match
 * exactly (vllm:num_requests_waiting_by_reason is not num_requests_waiting).
 * An OPENAI body is only checked for syntax (valid stays false). Returns 0,
 * or -1 on a parse error or for AUTO, with a NUL-terminated reason ("line 12:
 * invalid sample value") in err[0..errlen) when err is not NULL; *out is then
 * not valid. Like flv_detect(), uses about 17 KiB of stack (a prom_parser). */
int flv_load_parse(enum cfg_flavor f, struct span body, struct flv_load *out, char *err,
                   size_t errlen);

/* "llamacpp", "vllm", "tgi", "sglang", "openai", "auto"; "" for a value
 * outside the enum. */
const char *flv_name(enum cfg_flavor f);

/* The flavor named exactly as flv_name() spells it, or -1 if unknown. */
int flv_from_name(const char *name);

/* Most distinct names flv_models_parse() reports from one body. */
#define FLV_MODELS_MAX 256

/* /v1/models body: calls cb (may be NULL) for every model name a backend
 * serves: OpenAI data[].id, llama.cpp's data[].aliases[] and models[].name /
 * models[].model, in that order; each distinct non-empty name once, at most
 * FLV_MODELS_MAX. Names are the raw JSON string bytes (escapes undecoded, as
 * json_resp.model), borrowed from body. Returns the count, or -1 if body is
 * not a JSON object or needs more than toks->cap tokens. */
int flv_models_parse(struct span body, struct json_toks *toks,
                     void (*cb)(void *ud, struct span name), void *ud);

/* llama.cpp /props total_slots (a non-negative integer), or -1 when absent,
 * not an integer, or the body is not a JSON object within toks->cap tokens. */
long flv_props_slots(struct span body, struct json_toks *toks);

/* ---- dialect tables: one per src/format/flavor/<server>.c --------------------- */

/* What a metric says about load. */
enum flv_field {
    FLV_RUNNING,     /* requests being processed: summed into running */
    FLV_WAITING,     /* requests queued: summed into waiting */
    FLV_CACHE_RATIO, /* cache pressure 0..1: max into cache_ratio */
    FLV_CACHE_USED,  /* cache in use (tokens, blocks): summed, then divided by ... */
    FLV_CACHE_TOTAL, /* ... the cache size, summed; the quotient is a cache ratio */
};

struct flv_signal {
    const char *name; /* exact metric (sample) name */
    enum flv_field field;
};

struct flv_dialect {
    enum cfg_flavor flavor;
    const char *name;                 /* flv_name() */
    const char *prefix;               /* sample names that identify the server */
    const struct flv_signal *signals; /* borrowed, static */
    size_t nsignals;
};

extern const struct flv_dialect flv_dialect_llamacpp;
extern const struct flv_dialect flv_dialect_vllm;
extern const struct flv_dialect flv_dialect_tgi;
extern const struct flv_dialect flv_dialect_sglang;

#endif
