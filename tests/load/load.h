/* load: pitot-load's internal contracts. A libevent HTTP/1.1 client that
 * drives streaming LLM requests and measures TTFT, ITL and E2E itself, so
 * pitot's numbers can be checked against the client's. */
#ifndef PITOT_LOAD_H
#define PITOT_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "pitot/format/http1.h"
#include "pitot/format/json.h"
#include "pitot/format/sse.h"

#define LOAD_MAX_HEADERS 64
#define LOAD_HEAD_MAX_BYTES (64u * 1024u)         /* response head cap */
#define LOAD_EVENT_MAX_BYTES (1024u * 1024u)      /* one SSE event cap */
#define LOAD_BODY_MAX_BYTES (16u * 1024u * 1024u) /* non-stream body cap */
#define LOAD_SCRATCH_BYTES (256u * 1024u)         /* multi-line SSE data join */
#define LOAD_JSON_TOKENS 4096
#define LOAD_MAX_PROMPT_TOKENS 1000000u
#define LOAD_MAX_CONCURRENCY 100000u
#define LOAD_MAX_URLS 16

/* Exit statuses (an interface: scripts test them). */
enum { LOAD_EXIT_OK = 0, LOAD_EXIT_SETUP = 1, LOAD_EXIT_USAGE = 2 };

/* How a request failed: X(NAME, "label in --json and the summary"). */
#define LOAD_ERR_LIST(X)                                                                           \
    X(NONE, "")                                                                                    \
    X(CONNECT, "connect")                           /* TCP connect or TLS handshake failed */      \
    X(TIMEOUT, "timeout")                           /* --timeout elapsed */                        \
    X(RESET, "reset")                               /* closed/reset before a response */           \
    X(HTTP_STATUS, "http_status")                   /* status not 2xx */                           \
    X(UPSTREAM_ERROR_EVENT, "upstream_error_event") /* a top-level "error" object */               \
    X(INCOMPLETE, "incomplete")                     /* cut short, no [DONE] or final event */      \
    X(PROTOCOL, "protocol")                         /* malformed HTTP, over a cap */

enum load_err {
#define LOAD_ERR_ENUM(name, label) LOAD_E##name,
    LOAD_ERR_LIST(LOAD_ERR_ENUM)
#undef LOAD_ERR_ENUM
        LOAD_E__COUNT
};

/* Label for an error kind ("" for NONE). */
const char *load_err_label(enum load_err e);

/* Request body dialect, chosen from the URL path. */
enum load_api {
    LOAD_API_CHAT,        /* messages[], max_tokens */
    LOAD_API_COMPLETIONS, /* /v1/completions: prompt, max_tokens */
    LOAD_API_NATIVE,      /* llama.cpp /completion: prompt, n_predict */
    LOAD_API_RESPONSES,   /* OpenAI /v1/responses: input, max_output_tokens */
    LOAD_API_MESSAGES,    /* Anthropic /v1/messages: messages[], max_tokens */
};

/* One --url's server: where to connect and what Host to send. */
struct load_url {
    char host[256];        /* as written, without IPv6 brackets */
    char port[8];          /* decimal */
    char host_header[272]; /* Host: value */
};

/* Parsed command line. Strings are borrowed from argv or static. */
struct load_opts {
    bool https;                          /* --url https://: TLS, the certificate verified */
    const char *cacert;                  /* --cacert: CA file to verify with; NULL: the system's */
    struct load_url urls[LOAD_MAX_URLS]; /* every --url; slot i sends to urls[i % nurls] */
    unsigned nurls;
    const char *path; /* borrowed; request target, the same for every --url */
    enum load_api api;
    bool openai_route;    /* chat or completions under /v1/: a stream must end in
                             [DONE]; Responses and Messages streams must end with
                             their API's final event instead */
    unsigned concurrency; /* max requests in flight */
    uint64_t requests;    /* total, when !use_duration */
    bool use_duration;
    uint64_t duration_us;   /* with use_duration */
    unsigned prompt_tokens; /* content is 4 * prompt_tokens bytes */
    unsigned max_tokens;
    bool stream;
    const char *json_path; /* NULL: no per-request lines */
    const char *model;
    bool open_loop;    /* --rate given */
    double rate_per_s; /* with open_loop */
    uint64_t seed;
    const char *headers[LOAD_MAX_HEADERS]; /* "Name: value", borrowed */
    unsigned nheaders;
    const char *api_key; /* borrowed; NULL: none. x-api-key for Messages, else Bearer */
    bool include_usage;
    uint64_t timeout_us; /* per request, connect to last byte */
    bool quiet;
};

/* Fills o from argv. Returns 0; 1 after printing --help (exit 0); or -1 after
 * printing a clear error to stderr (exit LOAD_EXIT_USAGE). */
int load_opts_parse(struct load_opts *o, int argc, char **argv);

/* True when the "Name: value" header h is named `name` (ASCII case-insensitive). */
bool load_header_is(const char *h, const char *name);

/* Deterministic PRNG (splitmix64): the same seed gives the same run. */
uint64_t load_rand_next(uint64_t *state);

/* A uniform double in [0, 1). */
double load_rand_unit(uint64_t *state);

/* Builds request n's bytes (head and body) for server u into a malloc'd buffer
 * the caller owns (*out, *out_len). Returns 0 or -1 on allocation failure. */
int load_req_build(const struct load_opts *o, const struct load_url *u, uint64_t n, char **out,
                   size_t *out_len);

/* A growable array of microsecond samples. */
struct load_vec {
    uint64_t *v; /* owned */
    size_t n, cap;
};

int load_vec_push(struct load_vec *vec, uint64_t x);
void load_vec_release(struct load_vec *vec);

/* Sorts n samples ascending, in place. */
void load_sort(uint64_t *v, size_t n);

/* Exact nearest-rank percentile (0 < pct <= 100) of n > 0 samples sorted
 * ascending (load_sort()). */
uint64_t load_pct(const uint64_t *v, size_t n, double pct);

/* What one finished request measured. Times in microseconds; 0 = unset where
 * the matching has_* flag is false. */
struct load_result {
    uint64_t n; /* request number, from 1 */
    int status; /* 0: no response head */
    enum load_err err;
    bool has_ttft;
    uint64_t ttft_us;
    bool has_e2e;
    uint64_t e2e_us;
    bool measured_events; /* streamed as SSE: events/ITL meaningful */
    uint64_t events;      /* output-carrying events */
    uint64_t *gaps_us;    /* borrowed: inter-event gaps, ngaps of them;
                                   load_stats_add() reorders them */
    size_t ngaps;
    int64_t prompt_tokens;     /* -1 unknown */
    int64_t completion_tokens; /* -1 unknown */
    enum json_finish finish;
};

/* Run totals for the summary. */
struct load_stats {
    struct load_vec ttft_us, e2e_us, itl_us; /* ok requests only */
    uint64_t ok, failed, late;
    uint64_t by_err[LOAD_E__COUNT];
    uint64_t by_status[600];                  /* HTTP_STATUS failures by code */
    int64_t prompt_tokens, completion_tokens; /* summed over ok requests */
};

/* Records r into st and, when json is non-NULL, writes its --json line.
 * Returns 0 or -1 on allocation failure. */
int load_stats_add(struct load_stats *st, FILE *json, long pid, bool stream,
                   const struct load_result *r);

/* Prints the summary; only its last line when quiet. */
void load_stats_print(struct load_stats *st, FILE *out, uint64_t duration_us, bool open_loop,
                      bool interrupted, bool quiet);

void load_stats_release(struct load_stats *st);

/* The run: slots, scheduling, shared buffers. Opaque outside run.c/conn.c. */
struct load_run;
struct tls_client;
struct load_slot;

/* Creates the run on base for o (borrowed), with the address of each of
 * o->nurls servers (copied). Returns NULL on allocation failure. */
struct load_run *load_run_new(struct event_base *base, const struct load_opts *o,
                              const struct sockaddr_storage *addrs, const socklen_t *addrlens,
                              FILE *json);

/* Starts the first requests and arms the timers. Returns 0 or -1. */
int load_run_start(struct load_run *run);

/* Stops at once (SIGINT): in-flight requests are dropped, not counted. */
void load_run_interrupt(struct load_run *run);

/* After the loop ended: totals, duration, whether interrupted. */
struct load_stats *load_run_stats(struct load_run *run);
uint64_t load_run_duration_us(const struct load_run *run);
bool load_run_interrupted(const struct load_run *run);
/* -1 if a request could not be recorded (out of memory), else 0. */
int load_run_status(const struct load_run *run);

void load_run_free(struct load_run *run);

/* --- between run.c and conn.c --- */

/* Creates slot i of run. Returns NULL on allocation failure. */
struct load_slot *load_slot_new(struct load_run *run, unsigned index);
void load_slot_free(struct load_slot *s);

/* Starts request n on an idle slot; the request bytes are taken (owned). Any
 * failure is reported later through load_run_done(), never from this call. */
void load_slot_start(struct load_slot *s, uint64_t n, char *req, size_t req_len);

/* Drops the slot's request without reporting it, and its connection. */
void load_slot_abort(struct load_slot *s);

unsigned load_slot_index(const struct load_slot *s);

/* The slot finished its request with r: record it and start more work. The
 * slot is idle again (maybe keeping a connection) when this is called. */
void load_run_done(struct load_run *run, struct load_slot *s, const struct load_result *r);

/* Shared by every slot (one loop thread): addresses, options, parse scratch. */
const struct load_opts *load_run_opts(const struct load_run *run);
/* The address slot `index` connects to: --url number index % nurls. */
const struct sockaddr *load_run_addr(const struct load_run *run, unsigned index, socklen_t *len);
struct event_base *load_run_base(const struct load_run *run);
/* The TLS client context of an https run, NULL for http. */
struct tls_client *load_run_tls(const struct load_run *run);
struct json_toks *load_run_toks(struct load_run *run);
/* LOAD_SCRATCH_BYTES for joining multi-line SSE data (valid until the next call). */
char *load_run_scratch(struct load_run *run);

#endif
