/* mtr: what one request measures, fed with every response object pitot
 * forwards and the moment it was forwarded. Pure logic, no I/O: the relay
 * calls it per event, tests call it with fixture streams and made-up times. */
#ifndef PITOT_MTR_H
#define PITOT_MTR_H

#include <stdbool.h>
#include <stdint.h>

#include "pitot/json.h"
#include "pitot/qnt.h"
#include "pitot/rfs.h"

enum mtr_tok_src {
    MTR_TOK_NONE = 0, /* nothing seen */
    MTR_TOK_COUNTED,  /* output events counted, +1 for a "stop" finish
                           (its token is never streamed): an estimate */
    MTR_TOK_TIMINGS,  /* llama.cpp timings */
    MTR_TOK_USAGE,    /* usage object */
};

/* Gaps kept exactly for the access log's ITL p50; past this many the P-square
 * estimate is used (2 KiB per request, no allocation). */
#define MTR_GAPS_EXACT 512

struct mtr {
    uint64_t t0_us;    /* complete request head arrived */
    uint64_t first_us; /* first output event forwarded, 0 if none */
    uint64_t last_us;  /* last output event forwarded */
    uint64_t n_out;    /* output-carrying events */
    uint64_t itl_max_us;
    struct qnt_p2 itl_p50; /* gaps between output events, microseconds */
    unsigned stalls;       /* gaps above stall_us */
    uint64_t stall_us;     /* threshold */
    int64_t max_tokens;    /* the request's limit, -1 if none */
    int64_t usage_prompt, usage_completion, usage_cached;      /* -1 if not seen */
    int64_t timings_prompt, timings_predicted, timings_cached; /* -1 if not seen */
    enum json_finish finish;
    bool refusal;
    bool error_event; /* an event carried a top-level error */
    /* mtr_init() clears everything above; the two below need no clearing. */
    uint32_t gaps_us[MTR_GAPS_EXACT]; /* the first gaps, for an exact median */
    struct rfs_match rfs;
};

/* Results derived at the end. Durations in microseconds, -1 if not measured. */
struct mtr_result {
    int64_t ttft_us, e2e_us, tpot_us, itl_max_us;
    int64_t itl_p50_us; /* exact median up to MTR_GAPS_EXACT gaps, then estimated */
    int64_t prompt_tokens, completion_tokens, cached_tokens; /* -1 unknown */
    enum mtr_tok_src tok_src;
    bool truncated;
};

void mtr_init(struct mtr *m, uint64_t t0_us, uint64_t stall_us, int64_t max_tokens,
              const struct rfs_phrases *ph);

/* Accounts one forwarded response object at now_us. When it carries output,
 * returns the gap to the previous output event in *gap_us (0 for the first)
 * and true; else false. A gap above the stall threshold counts a stall. */
bool mtr_event(struct mtr *m, const struct json_resp *r, uint64_t now_us, uint64_t *gap_us);

/* Accounts a whole non-streamed body: tokens, finish, refusal; no timing
 * (a response that arrives at once has no first token nor gaps). */
void mtr_body(struct mtr *m, const struct json_resp *r);

/* Derives the results; end_us is when the last byte went to the client. */
void mtr_finish(const struct mtr *m, uint64_t end_us, struct mtr_result *out);

#endif
