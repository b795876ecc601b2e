/* meter: what one request measures, fed with every response object pitot
 * forwards and the moment it was forwarded. Pure logic, no I/O: the relay
 * calls it per event, tests call it with fixture streams and made-up times. */
#ifndef PITOT_MEASURE_METER_H
#define PITOT_MEASURE_METER_H

#include <stdbool.h>
#include <stdint.h>

#include "pitot/format/json.h"
#include "pitot/util/quantile.h"
#include "pitot/measure/refusal.h"

enum meter_tok_src {
    METER_TOK_NONE = 0, /* nothing seen */
    METER_TOK_COUNTED,  /* output events counted, +1 for a "stop" finish
                           (its token is never streamed): an estimate */
    METER_TOK_TIMINGS,  /* llama.cpp timings */
    METER_TOK_USAGE,    /* usage object */
};

/* Gaps kept exactly for the access log's ITL p50; past this many the P-square
 * estimate is used (2 KiB per request, no allocation). */
#define METER_GAPS_EXACT 512

struct meter {
    uint64_t t0_us;    /* complete request head arrived */
    uint64_t first_us; /* first output event forwarded, 0 if none */
    uint64_t last_us;  /* last output event forwarded */
    uint64_t n_out;    /* output-carrying events */
    uint64_t itl_max_us;
    struct quantile_p2 itl_p50; /* gaps between output events, microseconds */
    unsigned stalls;            /* gaps above stall_us */
    uint64_t stall_us;          /* threshold */
    int64_t max_tokens;         /* the request's limit, -1 if none */
    int64_t usage_prompt, usage_completion, usage_cached;      /* -1 if not seen */
    int64_t timings_prompt, timings_predicted, timings_cached; /* -1 if not seen */
    enum json_finish finish;
    bool refusal;
    bool error_event; /* an event carried a top-level error */
    /* meter_init() clears everything above; the two below need no clearing. */
    uint32_t gaps_us[METER_GAPS_EXACT]; /* the first gaps, for an exact median */
    struct refusal_match refusals;
};

/* Results derived at the end. Durations in microseconds, -1 if not measured. */
struct meter_result {
    int64_t ttft_us, e2e_us, tpot_us, itl_max_us;
    int64_t itl_p50_us; /* exact median up to METER_GAPS_EXACT gaps, then estimated */
    int64_t prompt_tokens, completion_tokens, cached_tokens; /* -1 unknown */
    enum meter_tok_src tok_src;
    bool truncated;
};

void meter_init(struct meter *m, uint64_t t0_us, uint64_t stall_us, int64_t max_tokens,
                const struct refusal_phrases *ph);

/* Accounts one forwarded response object at now_us. When it carries output,
 * returns the gap to the previous output event in *gap_us (0 for the first)
 * and true; else false. A gap above the stall threshold counts a stall. */
bool meter_event(struct meter *m, const struct json_resp *r, uint64_t now_us, uint64_t *gap_us);

/* Accounts a whole non-streamed body: tokens, finish, refusal; no timing
 * (a response that arrives at once has no first token nor gaps). */
void meter_body(struct meter *m, const struct json_resp *r);

/* Derives the results; end_us is when the last byte went to the client. */
void meter_finish(const struct meter *m, uint64_t end_us, struct meter_result *out);

#endif
