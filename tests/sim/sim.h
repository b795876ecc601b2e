/* sim: pitot-sim, a libevent server that imitates an LLM inference server for
 * tests and demos. Internal header shared by the tests/sim sources: configuration,
 * the server, connections (sim_conn.c), the slot scheduler (sim_sched.c),
 * wire flavors (sim_llamacpp.c) and text helpers (sim_text.c). */
#ifndef PITOT_SIM_H
#define PITOT_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "pitot/span.h"

#define SIM_MODEL_MAX 128   /* bytes of --model, with NUL */
#define SIM_PATH_MAX 2048   /* bytes of a request target we keep, with NUL */
#define SIM_ORIGIN_MAX 256  /* bytes of an Origin header we echo, with NUL */

/* Command-line configuration. Durations in ms, rates in tokens/s. */
struct sim_conf {
    char listen[256];          /* HOST:PORT */
    int slots;                 /* concurrent requests */
    char model[SIM_MODEL_MAX]; /* alias reported as "model" */
    double prefill_tps;        /* prompt tokens per second */
    double decode_tps;         /* output tokens per second */
    double jitter;             /* 0..1: interval factor spread */
    uint64_t seed;             /* output text and jitter */
    int64_t ctx_tokens;        /* per-slot context */
    int64_t ping_ms;           /* SSE ping interval; <= 0 disables */
    int64_t stall_after;       /* tokens before the one pause; -1 off */
    int64_t stall_ms;          /* length of that pause */
    int64_t die_after;         /* tokens before an abrupt close; -1 off */
    bool refuse;               /* answers start with a refusal */
    int fail_status;           /* completion requests get this status; 0 off */
    int64_t loading_ms;        /* 503 "Loading model" this long after start */
};

/* What the simulator saw; served at GET /sim/stats. */
struct sim_stats {
    uint64_t requests;    /* requests to a completion route, whatever the answer */
    uint64_t completed;   /* finished normally */
    uint64_t cancelled;   /* client went away while queued or generating */
    uint64_t died;        /* closed on purpose by --die-after */
    uint64_t tokens_sent; /* output tokens produced, all requests */
};

/* Server-side counters behind /metrics, named after llama.cpp's. */
struct sim_counters {
    uint64_t prompt_tokens;     /* prompt tokens processed (prefill ended) */
    uint64_t prompt_us;         /* time spent in prefill */
    uint64_t predicted_tokens;  /* output tokens of finished requests */
    uint64_t predicted_us;      /* decode time of finished requests */
    uint64_t n_decode;          /* prefill steps + tokens: one "decode" each */
    uint64_t busy_sum;          /* busy slots summed over decode steps */
    uint64_t n_tokens_max;      /* largest prompt + output seen */
    /* since the previous /metrics scrape (llama.cpp resets these) */
    uint64_t bucket_prompt_tokens;
    uint64_t bucket_prompt_us;
    uint64_t bucket_predicted_tokens;
    uint64_t bucket_predicted_us;
};

enum sim_ep {
    SIM_EP_CHAT,        /* POST /v1/chat/completions */
    SIM_EP_COMPLETIONS, /* POST /v1/completions */
    SIM_EP_NATIVE,      /* POST /completion */
};

enum sim_req_state {
    SIM_REQ_NEW,     /* parsed, not yet submitted */
    SIM_REQ_QUEUED,  /* waiting FIFO for a slot; no byte sent */
    SIM_REQ_PREFILL, /* holds a slot; stream headers sent; prompt "processing" */
    SIM_REQ_DECODE,  /* holds a slot; tokens flowing */
    SIM_REQ_ENDED,   /* slot released; outcome counted */
};

struct sim_conn;
struct sim_srv;
struct sim_flavor;

/* One generation request. Owned by its connection (one at a time). */
struct sim_req {
    enum sim_req_state state;
    struct sim_conn *conn;           /* borrowed: the owner */
    struct sim_srv *srv;             /* borrowed */
    const struct sim_flavor *flavor; /* borrowed, static */
    enum sim_ep ep;
    bool stream;
    bool include_usage;
    uint64_t num;           /* request number, 1-based, in arrival order */
    uint64_t seed;          /* text seed: --seed + num */
    uint64_t jitter_rng;    /* PRNG state for inter-token jitter */
    char id[48];            /* "chatcmpl-" + 32 alphanumerics */
    int64_t prompt_tokens;
    int64_t max_tokens;     /* as requested; -1 when absent */
    int64_t n_max;          /* tokens this request will produce */
    int64_t n_sent;         /* tokens produced so far */
    int slot;               /* -1 unless holding a slot */
    bool stalled;           /* the --stall-after pause was taken */
    uint64_t t_arrive_us;   /* monotonic */
    uint64_t t_slot_us;     /* slot acquired */
    uint64_t t_first_us;    /* first token (end of prefill) */
    uint64_t t_last_us;     /* latest token */
    uint64_t next_due_us;   /* next token deadline */
    uint64_t last_write_us; /* latest bytes on the stream (for pings) */
    char *prompt_json;      /* owned: native prompt, still JSON-escaped */
    size_t prompt_json_len;
    struct event *timer;    /* owned: the one timer driving this request */
    TAILQ_ENTRY(sim_req) queue;
};

TAILQ_HEAD(sim_req_list, sim_req);

/* A slot: what /slots reports. */
struct sim_slot {
    struct sim_req *req;   /* borrowed; NULL when idle */
    bool used;             /* served a task before (long /slots object) */
    uint64_t id_task;      /* last task's number */
    enum sim_ep ep;
    bool stream;
    int64_t n_prompt;
    int64_t max_tokens;
    int64_t n_decoded;
};

/* A parsed request head plus body, as the flavor's router sees it. */
struct sim_http {
    struct span method; /* borrowed from the connection */
    struct span path;   /* without the query */
    struct span query;  /* after '?', len 0 if none */
    struct span body;   /* contiguous body bytes */
};

/* A wire dialect. Every callback writes through the sim_conn_* API. */
struct sim_flavor {
    const char *name;
    /* Answers a request: either a whole response via sim_conn_respond(), or a
     * generation via sim_req_new() + sim_sched_submit(). */
    void (*route)(struct sim_conn *c, const struct sim_http *h);
    /* The response to any request while --loading-ms lasts. */
    void (*loading)(struct sim_conn *c, const struct sim_http *h);
    /* Status line and headers of a stream, sent when the request gets a slot. */
    void (*stream_head)(struct sim_req *r, struct evbuffer *out);
    /* The chunk payload for output token i (0-based) with text tok. */
    void (*stream_token)(struct sim_req *r, struct evbuffer *out, int64_t i, struct span tok);
    /* The end of a stream: the final events as chunks (the caller adds the
     * terminating chunk and closes). */
    void (*stream_end)(struct sim_req *r);
    /* A finished non-streamed generation: the whole response. */
    void (*body_end)(struct sim_req *r);
};

extern const struct sim_flavor sim_flavor_llamacpp;

/* The process: one event loop, one listener, its connections and slots. */
struct sim_srv {
    struct sim_conf conf;
    struct event_base *base;          /* owned */
    const struct sim_flavor *flavor;  /* borrowed, static */
    struct sim_slot *slots;           /* owned, conf.slots entries */
    int busy;                         /* slots holding a request */
    struct sim_req_list queue;        /* borrowed entries, FIFO */
    int queued;
    uint64_t req_counter;             /* numbers generation requests */
    struct sim_stats stats;
    struct sim_counters ctr;
    uint64_t start_us;                /* monotonic */
    uint64_t start_wall_s;            /* Unix seconds */
    TAILQ_HEAD(, sim_conn) conns;     /* owned: every open connection */
};

/* ---- sim_conn.c: HTTP/1.1 server side ---- */

/* Takes an accepted socket: TCP_NODELAY, keep-alive state, request parsing.
 * Returns 0, or -1 (the socket is closed) when out of memory. */
int sim_conn_accept(struct sim_srv *s, int fd);

/* Closes and frees every connection (shutdown). */
void sim_conn_free_all(struct sim_srv *s);

/* Queues a complete response (status line, headers, body) taken out of resp
 * and ends the exchange: the connection goes back to reading requests, or
 * closes once flushed when close is set or keep-alive is over. status is
 * remembered for the log line. Safe from any callback. */
void sim_conn_respond(struct sim_conn *c, struct evbuffer *resp, int status, bool close);

/* Appends data as one HTTP chunk ("<hex>\r\n<data>\r\n"); drains data. */
void sim_conn_chunk(struct sim_conn *c, struct evbuffer *data);

/* Ends a chunked body: the "0\r\n\r\n" terminator, no trailers. */
void sim_conn_chunk_end(struct sim_conn *c);

/* Writes raw bytes (status line and headers of a stream). Drains data. */
void sim_conn_write(struct sim_conn *c, struct evbuffer *data);

/* The exchange is over and the connection must close once what was written
 * is flushed (end of a stream, or --die-after). */
void sim_conn_close_after_flush(struct sim_conn *c);

/* Output bytes not yet sent to the client. */
size_t sim_conn_pending(const struct sim_conn *c);

/* The response must announce "Connection: close" (the client asked, or this
 * is the last response keep-alive allows). */
bool sim_conn_announce_close(const struct sim_conn *c);

/* The request's Origin header value, "" if none. */
const char *sim_conn_origin(const struct sim_conn *c);

/* The server a connection belongs to. */
struct sim_srv *sim_conn_srv(const struct sim_conn *c);

/* Attaches r as the connection's request (the connection owns it now). */
void sim_conn_attach(struct sim_conn *c, struct sim_req *r);

/* One stderr line for a finished request: method, path, status, tokens,
 * outcome, duration. Never prompt or output text. */
void sim_conn_log(struct sim_conn *c, int status, int64_t tokens, const char *outcome);

/* ---- sim_sched.c: slots, queue and the token clock ---- */

/* Allocates conf.slots slots. Returns 0 or -1. */
int sim_sched_init(struct sim_srv *s);
void sim_sched_release(struct sim_srv *s);

/* A new request for connection c: fills number, seed, id, timer. Returns NULL
 * when out of memory. The caller sets ep, stream, tokens, then submits. */
struct sim_req *sim_req_new(struct sim_srv *s, struct sim_conn *c);

/* Frees r; it must not be queued or hold a slot (see sim_sched_cancel). */
void sim_req_free(struct sim_req *r);

/* Starts r on a free slot, or queues it FIFO (no bytes until a slot frees). */
void sim_sched_submit(struct sim_req *r);

/* The client went away: dequeue r or stop it and free its slot at once
 * (starting the next queued request); counts it cancelled. No-op once ended. */
void sim_sched_cancel(struct sim_req *r);

/* Timings of r, for the flavors. */
double sim_req_prompt_ms(const struct sim_req *r);
double sim_req_predicted_ms(const struct sim_req *r);

/* ---- sim_text.c: deterministic text, JSON output ---- */

/* Output token i of a request seeded with seed: a word-like piece (the
 * refusal pieces first when refuse is set). *tok_id gets a stable token id. */
struct span sim_text_token(uint64_t seed, int64_t i, bool refuse, int *tok_id);

/* splitmix64 step: advances *state, returns 64 random bits. */
uint64_t sim_rng_next(uint64_t *state);

/* Uniform double in [0, 1). */
double sim_rng_unit(uint64_t *state);

/* Writes n alphanumerics derived from seed into out (no NUL added). */
void sim_rng_alnum(uint64_t seed, char *out, size_t n);

/* Appends s as a JSON string literal, quotes included (UTF-8 kept raw). */
void sim_json_str(struct evbuffer *out, const char *s, size_t len);

/* Appends a double the way nlohmann::json prints one: shortest round-trip
 * digits, ".0" on integral values. */
void sim_json_num(struct evbuffer *out, double v);

/* Bytes of the string a JSON string body (without quotes) decodes to. */
size_t sim_json_decoded_len(const char *raw, size_t len);

#endif
