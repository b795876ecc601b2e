/* sim: pitot-sim, a libevent server that imitates an LLM inference server for
 * tests and demos. Internal header shared by the tests/sim sources: configuration,
 * the server, connections (sim_conn.c), the slot scheduler (sim_sched.c),
 * wire flavors (sim_llamacpp.c, sim_vllm.c, sim_tgi.c, sim_sglang.c), request
 * JSON (sim_json.c), OpenAI-style bodies and chunks (sim_openai.c), the
 * Responses and Messages APIs (sim_apis.c), Prometheus text (sim_prom.c) and
 * text helpers (sim_text.c). */
#ifndef PITOT_SIM_H
#define PITOT_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "pitot/util/span.h"

#define SIM_MODEL_MAX 128   /* bytes of --model, with NUL */
#define SIM_PATH_MAX 2048   /* bytes of a request target we keep, with NUL */
#define SIM_ORIGIN_MAX 256  /* bytes of an Origin header we echo, with NUL */
#define SIM_CANARY_MAX 34   /* bytes of " " + a --canary word, with NUL */
#define SIM_MAX_SLOTS 65536 /* --slots: benchmarks hold 10,000 slow streams */

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
    int64_t ping_ms;           /* SSE ping interval; <= 0 disables (default: the flavor's) */
    int64_t stall_after;       /* tokens before the one pause; -1 off */
    int64_t stall_ms;          /* length of that pause */
    int64_t die_after;         /* tokens before an abrupt close; -1 off */
    bool refuse;               /* answers start with a refusal */
    bool seq;                  /* --seq: token i's text is " t" and i, 4 digits or more */
    int fail_status;           /* completion requests get this status; 0 off */
    int64_t loading_ms;        /* 503 "Loading model" this long after start */
    /* --canary: " WORD", the first output token (after a refusal); "" off */
    char canary[SIM_CANARY_MAX];
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
    uint64_t prompt_tokens;    /* prompt tokens processed (prefill ended) */
    uint64_t prompt_us;        /* time spent in prefill */
    uint64_t predicted_tokens; /* output tokens of finished requests */
    uint64_t predicted_us;     /* decode time of finished requests */
    uint64_t n_decode;         /* prefill steps + tokens: one "decode" each */
    uint64_t busy_sum;         /* busy slots summed over decode steps */
    uint64_t n_tokens_max;     /* largest prompt + output seen */
    /* since the previous /metrics scrape (llama.cpp resets these) */
    uint64_t bucket_prompt_tokens;
    uint64_t bucket_prompt_us;
    uint64_t bucket_predicted_tokens;
    uint64_t bucket_predicted_us;
};

enum sim_ep {
    SIM_EP_CHAT,        /* POST /v1/chat/completions */
    SIM_EP_COMPLETIONS, /* POST /v1/completions */
    SIM_EP_NATIVE,      /* the server's own route: llama.cpp /completion, TGI /generate[_stream] */
};

/* The public API a generation answers in, on top of its endpoint (sim_apis.c). */
enum sim_api {
    SIM_API_OWN,       /* the endpoint's own layout (chat, completions, native) */
    SIM_API_RESPONSES, /* POST /v1/responses: OpenAI Responses events */
    SIM_API_MESSAGES,  /* POST /v1/messages: Anthropic Messages events */
};

/* Scheduler events a flavor may count for its own /metrics (sim_flavor.observe). */
enum sim_obs {
    SIM_OBS_START,  /* r got a slot: queue time is t_slot_us - t_arrive_us */
    SIM_OBS_FIRST,  /* prefill ended (t_first_us set); the first token follows */
    SIM_OBS_TOKEN,  /* a token is emitted now; r->n_sent is its index and
                     * r->t_last_us the previous token's time (0 for the first) */
    SIM_OBS_FINISH, /* r completed normally (n_sent, t_last_us final) */
    SIM_OBS_CANCEL, /* the client went away (queued or running) */
    SIM_OBS_DIE,    /* --die-after cut r off */
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
    enum sim_api api; /* SIM_API_OWN but on /v1/responses and /v1/messages */
    bool stream;
    bool include_usage;
    bool details;        /* TGI native: "parameters":{"details":true} */
    uint64_t num;        /* request number, 1-based, in arrival order */
    uint64_t seed;       /* text seed: --seed + num */
    uint64_t jitter_rng; /* PRNG state for inter-token jitter */
    char id[48];         /* "chatcmpl-" + 32 alphanumerics; flavors may rewrite it */
    uint64_t created_s;  /* Unix seconds at arrival ("created" of some flavors) */
    int route;           /* flavor-private: which route took the request */
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
    struct event *timer; /* owned: the one timer driving this request */
    TAILQ_ENTRY(sim_req) queue;
};

TAILQ_HEAD(sim_req_list, sim_req);

/* A slot: what /slots reports. */
struct sim_slot {
    struct sim_req *req; /* borrowed; NULL when idle */
    bool used;           /* served a task before (long /slots object) */
    uint64_t id_task;    /* last task's number */
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
    const char *name;          /* --flavor value */
    const char *default_model; /* --model when not given */
    int64_t ping_ms;           /* SSE ping interval when not given; -1: none */
    unsigned keepalive_max;    /* responses per connection; 0: no limit */
    bool close_after_stream;   /* close the connection after every stream */
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
    /* Optional (NULL: nothing to keep): allocate s->fstate at startup (0 or
     * -1), free it at shutdown. */
    int (*init)(struct sim_srv *s);
    void (*release)(struct sim_srv *s);
    /* Optional: a scheduler event on r at now_us, for the flavor's metrics. */
    void (*observe)(struct sim_req *r, enum sim_obs ev, uint64_t now_us);
};

extern const struct sim_flavor sim_flavor_llamacpp;
extern const struct sim_flavor sim_flavor_vllm;
extern const struct sim_flavor sim_flavor_tgi;
extern const struct sim_flavor sim_flavor_sglang;

/* The process: one event loop, one listener, its connections and slots. */
struct sim_srv {
    struct sim_conf conf;
    struct event_base *base;         /* owned */
    const struct sim_flavor *flavor; /* borrowed, static */
    struct sim_slot *slots;          /* owned, conf.slots entries */
    int busy;                        /* slots holding a request */
    struct sim_req_list queue;       /* borrowed entries, FIFO */
    int queued;
    uint64_t req_counter; /* numbers generation requests */
    struct sim_stats stats;
    struct sim_counters ctr;
    uint64_t start_us;            /* monotonic */
    uint64_t start_wall_s;        /* Unix seconds */
    uint64_t start_wall_us;       /* Unix microseconds */
    void *fstate;                 /* owned by the flavor (init/release) */
    TAILQ_HEAD(, sim_conn) conns; /* owned: every open connection */
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

/* Ends a streamed exchange with the terminating chunk. close: the connection
 * closes once flushed (llama-server); otherwise it is kept alive unless the
 * client or the keep-alive limit says otherwise, and parsing resumes. */
void sim_conn_stream_done(struct sim_conn *c, bool close);

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

/* KV cache in use: prompt + generated tokens of every request holding a slot. */
int64_t sim_sched_tokens_in_use(const struct sim_srv *s);

/* ---- sim_text.c: deterministic text, JSON output ---- */

/* Output token i of a request seeded with seed: a word-like piece (the
 * refusal pieces first when cf->refuse is set, then cf->canary when set);
 * with cf->seq, " t" and i in 4 digits or more instead, in a static buffer
 * valid until the next call. *tok_id gets a stable token id. */
struct span sim_text_token(const struct sim_conf *cf, uint64_t seed, int64_t i, int *tok_id);

/* splitmix64 step: advances *state, returns 64 random bits. */
uint64_t sim_rng_next(uint64_t *state);

/* Uniform double in [0, 1). */
double sim_rng_unit(uint64_t *state);

/* Writes n alphanumerics derived from seed into out (no NUL added). */
void sim_rng_alnum(uint64_t seed, char *out, size_t n);

/* Writes n lowercase hex digits derived from seed into out (no NUL added). */
void sim_rng_hex(uint64_t seed, char *out, size_t n);

/* The whole output of r so far (tokens 0..n_sent-1), rebuilt from the seed,
 * appended raw (not JSON-escaped). *has_nl: a token held a newline. */
void sim_text_full(struct evbuffer *out, const struct sim_req *r, bool *has_nl);

/* An HTTP Date header value for now ("Sun, 06 Nov 1994 08:49:37 GMT"). */
void sim_http_date(char *out, size_t cap);

/* Appends s as a JSON string literal, quotes included (UTF-8 kept raw). */
void sim_json_str(struct evbuffer *out, const char *s, size_t len);

/* Appends a double the way nlohmann::json prints one: shortest round-trip
 * digits, ".0" on integral values. */
void sim_json_num(struct evbuffer *out, double v);

/* Bytes of the string a JSON string body (without quotes) decodes to. */
size_t sim_json_decoded_len(const char *raw, size_t len);

/* ---- sim_json.c: request bodies (jsmn, strict) ---- */

/* A parsed request body. Token 0 is the root; -1 stands for "absent". */
struct sim_json;

enum sim_json_type {
    SIM_JSON_NONE, /* absent (index < 0) */
    SIM_JSON_OBJECT,
    SIM_JSON_ARRAY,
    SIM_JSON_STRING,
    SIM_JSON_PRIMITIVE, /* number, true, false, null */
};

/* Parses body as exactly one JSON document (literals and numbers checked,
 * nothing but blanks after it). Returns the parse, owned by the caller (free
 * with sim_json_free), or NULL with msg set in nlohmann::json's wording
 * ("[json.exception.parse_error.101] parse error at line 1, column 2: ..."),
 * which is what llama-server shows. */
struct sim_json *sim_json_parse(struct span body, char *msg, size_t cap);
void sim_json_free(struct sim_json *j);

/* Value token of key in object obj, or -1 (obj not an object, key absent). */
int sim_json_find(const struct sim_json *j, int obj, const char *key);
enum sim_json_type sim_json_type(const struct sim_json *j, int i);

/* The raw text of token i (a string without its quotes, still escaped). */
struct span sim_json_text(const struct sim_json *j, int i);

/* Token i is the literal true. */
bool sim_json_true(const struct sim_json *j, int i);

/* Token i as an integer (a number, truncated, capped at 1e15). Returns false
 * and leaves *out alone when absent, null or not a number. */
bool sim_json_int(const struct sim_json *j, int i, int64_t *out);

/* Prompt bytes: a string, or an array of strings (a number stands for one
 * token, 4 bytes). Other types count 0. */
size_t sim_json_prompt_bytes(const struct sim_json *j, int v);

/* Bytes of every messages[].content of the array msgs: strings, or the text
 * of content parts. */
size_t sim_json_messages_bytes(const struct sim_json *j, int msgs);

/* Bytes of one content value v: a string, or the "text" of each part of an
 * array of parts. Other types count 0. */
size_t sim_json_content_bytes(const struct sim_json *j, int v);

/* ---- sim_openai.c: OpenAI-style requests, chunks and bodies ---- */

/* What a generation request asks for, once parsed. */
struct sim_gen {
    enum sim_ep ep;
    enum sim_api api;
    bool stream;
    bool include_usage;    /* stream_options.include_usage */
    int64_t prompt_tokens; /* prompt bytes / 4, rounded up */
    int64_t max_tokens;    /* max_completion_tokens, max_tokens; -1 absent */
};

enum sim_gen_err {
    SIM_GEN_OK,
    SIM_GEN_EJSON,    /* not one JSON document */
    SIM_GEN_ENOTOBJ,  /* the body is not an object */
    SIM_GEN_EMISSING, /* no "messages" (chat) or "prompt" (completions) */
    SIM_GEN_ETYPE,    /* "messages" is not an array */
    SIM_GEN_ECONTEXT, /* prompt + max_tokens does not fit --ctx */
};

/* The start every generation body shares: g cleared (max_tokens -1), body
 * parsed, an object with a member `field`. SIM_GEN_OK with *jo (the caller's
 * to pass to sim_gen_close) and *vo (the member's value), or an error with
 * nothing to free; on SIM_GEN_EJSON msg holds the parser's message. */
enum sim_gen_err sim_gen_open(struct span body, const char *field, struct sim_gen *g,
                              struct sim_json **jo, int *vo, char *msg, size_t cap);

/* The end they share, when rc is still SIM_GEN_OK: prompt_tokens from
 * prompt_bytes (4 a token, rounded up), max_tokens -1 when negative, stream,
 * and SIM_GEN_ECONTEXT when prompt (+ max_tokens) does not fit --ctx. Frees
 * j; returns rc or SIM_GEN_ECONTEXT. */
enum sim_gen_err sim_gen_close(const struct sim_srv *s, struct sim_json *j, struct sim_gen *g,
                               size_t prompt_bytes, enum sim_gen_err rc);

/* Parses an OpenAI /v1/chat/completions or /v1/completions body (ep says
 * which) into g. On SIM_GEN_EJSON, msg holds the parser's message. */
enum sim_gen_err sim_gen_parse(const struct sim_srv *s, struct span body, enum sim_ep ep,
                               struct sim_gen *g, char *msg, size_t cap);

/* A request for g on connection c, not yet submitted (the caller may rewrite
 * its id), with n_max = max_tokens or the rest of the context. NULL when out
 * of memory. */
struct sim_req *sim_gen_new(struct sim_conn *c, const struct sim_gen *g);

/* Attaches r to its connection and hands it to the scheduler. */
void sim_gen_submit(struct sim_req *r);

/* uvicorn's response head (vLLM, SGLang): date, server, then the app's
 * headers; clen < 0 means a chunked text/event-stream. "connection: close"
 * only when the exchange ends the connection. */
void sim_uvicorn_head(struct sim_conn *c, struct evbuffer *out, int status, const char *ctype,
                      long long clen);

/* A whole uvicorn response with body (drained; NULL for none). */
void sim_uvicorn_reply(struct sim_conn *c, int status, const char *ctype, struct evbuffer *body);

/* The OpenAI chunk and body layout vLLM writes; SGLang's flavor reuses it. */
struct sim_oai {
    const char *fingerprint; /* system_fingerprint value; NULL: no such key */
};

/* One SSE event per call, "data: {...}\n\n", appended to o. */
void sim_oai_chat_role(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st);
/* Token i of a chat stream; the last one carries finish_reason "length". */
void sim_oai_chat_token(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st,
                        int64_t i, struct span tok);
/* Token i of a /v1/completions stream. */
void sim_oai_cmpl_token(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st,
                        int64_t i, struct span tok);
/* After the last token: the usage chunk ("choices":[]) when include_usage. */
void sim_oai_usage_chunk(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st);
/* Non-streamed responses: the whole JSON body. */
void sim_oai_chat_body(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st);
void sim_oai_cmpl_body(struct evbuffer *o, const struct sim_req *r, const struct sim_oai *st);

/* ---- sim_apis.c: the OpenAI Responses and Anthropic Messages APIs ---- */

/* What differs between the flavors that serve these APIs. */
struct sim_api_style {
    /* Appends "timings":{...} (llama.cpp's) after response.completed's
     * response object; NULL: no timings. */
    void (*timings)(struct evbuffer *o, const struct sim_req *r);
    /* max_output_tokens cut the answer: end with response.incomplete,
     * "status":"incomplete" (OpenAI, vLLM) instead of llama.cpp's
     * response.completed, "status":"completed". */
    bool incomplete_at_limit;
};

/* Parses a /v1/responses (input, instructions, max_output_tokens) or
 * /v1/messages or /v1/messages/count_tokens (messages, system, max_tokens)
 * body into g, api set, ep SIM_EP_CHAT. The prompt estimate is chat's: the
 * bytes of every text / 4, rounded up. Errors as sim_gen_parse; EMISSING and
 * ETYPE name the field sim_api_field() gives. */
enum sim_gen_err sim_api_parse(const struct sim_srv *s, struct span body, enum sim_api api,
                               struct sim_gen *g, char *msg, size_t cap);

/* "input" or "messages": the field a body of api must carry. */
const char *sim_api_field(enum sim_api api);

/* The request's limit cut the answer (max_output_tokens, max_tokens); the
 * simulator has no end-of-turn token, so an answer no limit cut ran to the
 * end of the slot's context and counts as having ended by itself. */
bool sim_api_cut(const struct sim_req *r);

/* The events of output token i: for i == 0 the opening events too, so that
 * they share the first token's HTTP chunk, as llama-server sends them. */
void sim_api_stream_token(struct evbuffer *o, const struct sim_req *r, int64_t i, struct span tok);

/* The closing events, all for one chunk (no [DONE]). */
void sim_api_stream_end(struct evbuffer *o, const struct sim_req *r,
                        const struct sim_api_style *st);

/* A non-streamed answer: the whole JSON body. */
void sim_api_body(struct evbuffer *o, const struct sim_req *r, const struct sim_api_style *st);

/* {"input_tokens":N}: the answer of /v1/messages/count_tokens. */
void sim_api_count_body(struct evbuffer *o, const struct sim_gen *g);

/* ---- sim_prom.c: Prometheus text 0.0.4 the way each server's library writes it ---- */

enum sim_prom_style {
    SIM_PROM_PY,    /* prometheus_client generate_latest: floatToGoString, sorted
                     * labels; histograms: buckets, _count, _sum */
    SIM_PROM_PY_MP, /* the same through MultiProcessCollector: _sum, buckets, _count */
    SIM_PROM_RS,    /* metrics-exporter-prometheus: Rust {} numbers, labels as
                     * given with le/quantile last, buckets, _sum, _count, and a
                     * blank line after every family */
};

struct sim_label {
    const char *k;
    const char *v;
};

#define SIM_PROM_LABELS_MAX 8

/* A fixed label set, values borrowed (they must outlive the writer's use). */
struct sim_labels {
    struct sim_label l[SIM_PROM_LABELS_MAX];
    int n;
};

/* A histogram: non-cumulative counts per bound, plus +Inf. */
struct sim_hist {
    double *le; /* owned: upper bounds, ascending, +Inf not included */
    size_t n;
    uint64_t *bucket; /* owned: n + 1 counts, the last for +Inf */
    double sum;
    uint64_t count;
};

/* Copies n bounds. Returns 0 or -1 (out of memory). */
int sim_hist_init(struct sim_hist *h, const double *le, size_t n);
void sim_hist_release(struct sim_hist *h);
void sim_hist_observe(struct sim_hist *h, double v);

struct sim_prom {
    struct evbuffer *out; /* borrowed */
    enum sim_prom_style style;
};

/* Appends k=v to ls (ignored past SIM_PROM_LABELS_MAX). */
void sim_labels_add(struct sim_labels *ls, const char *k, const char *v);

/* "# HELP" (skipped when help is NULL) and "# TYPE" lines. */
void sim_prom_family(struct sim_prom *p, const char *name, const char *type, const char *help);
/* The end of a family: a blank line in SIM_PROM_RS, nothing otherwise. */
void sim_prom_family_end(struct sim_prom *p);
/* One sample line: name + suffix, labels, value in the style's number format. */
void sim_prom_sample(struct sim_prom *p, const char *name, const char *suffix,
                     const struct sim_labels *ls, double v);
/* Every line of one histogram series (buckets cumulative, +Inf == _count). */
void sim_prom_hist(struct sim_prom *p, const char *name, const struct sim_labels *ls,
                   const struct sim_hist *h);

/* Number formats, NUL-terminated into out (cap >= 32). */
void sim_fmt_py_repr(char *out, size_t cap, double v); /* Python repr(float) */
void sim_fmt_py_go(char *out, size_t cap, double v);   /* prometheus_client floatToGoString */
void sim_fmt_rust(char *out, size_t cap, double v);    /* Rust {} of an f64 */

#endif
