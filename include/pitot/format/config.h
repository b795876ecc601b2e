/* config: pitot's configuration, from the command line and/or a YAML file, with
 * every error reported as FILE:LINE: message. */
#ifndef PITOT_FORMAT_CONFIG_H
#define PITOT_FORMAT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CFG_MAX_BACKENDS 64
#define CFG_MAX_WORKERS 256
#define CFG_MAX_TIERS 16
#define CFG_MAX_MODELS 64
#define CFG_MAX_BUCKETS 40
#define CFG_MAX_PHRASES 64
#define CFG_NAME_MAX 64
#define CFG_ADMIN_TOKEN_MAX 256 /* admin_token, NUL included */
#define CFG_HOST_MAX 256
#define CFG_MAX_BACKEND_MODELS 16
#define CFG_MAX_ALIASES 32
#define CFG_MAX_KEYS 256
#define CFG_OTLP_PATH_MAX 256    /* opentelemetry.traces.endpoint path */
#define CFG_OTLP_SERVICE_MAX 128 /* opentelemetry.traces.service_name */
#define CFG_PATH_MAX 512         /* a certificate, key or CA file path */
#define CFG_MAX_CERTS 16         /* tls.certificates */

/* Backend dialects (issue 3): how load is read from a backend's /metrics. */
enum cfg_flavor {
    CFG_FLAVOR_AUTO = 0, /* detected from the names on its /metrics */
    CFG_FLAVOR_LLAMACPP,
    CFG_FLAVOR_VLLM,
    CFG_FLAVOR_TGI,
    CFG_FLAVOR_SGLANG,
    CFG_FLAVOR_OPENAI, /* any OpenAI-compatible server without metrics */
};

/* A request for a model no backend serves (routing.unknown_model). */
enum cfg_unknown_model {
    CFG_UNKNOWN_AUTO = 0, /* served when every backend serves one and the same model */
    CFG_UNKNOWN_ANY,      /* always served by whatever backend is chosen */
    CFG_UNKNOWN_REJECT,   /* 404 model_not_found */
};

enum cfg_policy {
    CFG_POLICY_LEAST_BUSY = 0,  /* backends' own running+waiting, corrected by pitot's dispatches */
    CFG_POLICY_LEAST_IN_FLIGHT, /* pitot's own in-flight count only */
    CFG_POLICY_ROUND_ROBIN,
};

/* Which addresses of a backend name are used (routing.dns_family). */
enum cfg_dns_family {
    CFG_DNS_AUTO = 0, /* IPv4 ones when there are any, else IPv6 */
    CFG_DNS_IPV4,
    CFG_DNS_IPV6,
    CFG_DNS_ANY, /* both */
};

enum cfg_affinity {
    CFG_AFFINITY_OFF = 0,
    CFG_AFFINITY_HEADER, /* value of affinity_header */
    CFG_AFFINITY_USER,   /* the request's "user" field */
    CFG_AFFINITY_PREFIX, /* hash of the first affinity_prefix_messages messages */
};

/* What limited requests get while Redis does not answer (ratelimit.redis_fail). */
enum cfg_redis_fail {
    CFG_REDIS_FAIL_OPEN = 0, /* served, each replica counting its share of the budget alone */
    CFG_REDIS_FAIL_CLOSED,   /* 503 */
};

/* The listener's TLS minimum version (tls.min_version); 1.0 and 1.1 are
 * never accepted. */
enum cfg_tls_version {
    CFG_TLS_1_2 = 0, /* "1.2", the default */
    CFG_TLS_1_3,     /* "1.3" */
};

/* A certificate of the listener with its private key, PEM files
 * (tls.certificates[]); checked by tls_check(), not by the loader. */
struct cfg_tls_cert {
    char cert[CFG_PATH_MAX]; /* the certificate, then its chain */
    char key[CFG_PATH_MAX];  /* its private key, not encrypted */
    unsigned line;           /* of the entry in the config file; 0: --tls-cert */
};

/* How pitot checks a TLS server it connects to: an https backend
 * (backends[].tls) or the trace collector (opentelemetry.traces.ca_file). */
struct cfg_tls_client {
    char ca_file[CFG_PATH_MAX];     /* PEM CA certificates; "": the system's */
    char server_name[CFG_HOST_MAX]; /* sent as SNI and checked in the certificate;
                                       "": the URL's host */
    char cert[CFG_PATH_MAX];        /* client certificate (PEM), "" none; with key */
    char key[CFG_PATH_MAX];
    bool verify;   /* default true; false only when written out */
    unsigned line; /* of the tls: key in the config file; 0: none there */
};

struct cfg_backend {
    char name[CFG_NAME_MAX];     /* label value; default "host:port" */
    char host[CFG_HOST_MAX];     /* from url http[s]://host:port */
    uint16_t port;               /* default 80, 443 for https */
    char url[CFG_HOST_MAX + 16]; /* as given, normalised "http[s]://host:port" */
    bool https;                  /* the URL is https://: TLS, checked as tls says */
    struct cfg_tls_client tls;   /* backends[].tls; only with https */
    enum cfg_flavor flavor;      /* backends[].flavor, default auto */
    unsigned capacity;           /* backends[].capacity: concurrent requests; 0 = from
                                 llama.cpp /props total_slots, else routing.default_capacity */
    char models[CFG_MAX_BACKEND_MODELS][CFG_NAME_MAX]; /* backends[].models: served
                                 names; none = learned from its /v1/models */
    size_t nmodels;
    /* DNS: a host that is not an IP literal is looked up again every
       routing.dns_interval and every address it has becomes a backend of its
       own, in one of routing.max_addresses slots (cfg_backends_expand) */
    bool dns;       /* host is a name, not an IP literal */
    unsigned group; /* after expansion: index of the name's first slot */
    unsigned slot;  /* after expansion: 0..max_addresses-1 within the name */
    /* a slot of the table no configured backend holds now: one of
       routing.spare_backends kept for a reload to add backends, or one a
       reload removed (its name kept: the same name added again takes it back) */
    bool spare;
};

/* Rate limits of a tier (tiers[].limits, the tier's keys together) or of one
 * key (tiers[].keys[].limits); 0: no such limit. Tokens are prompt +
 * completion as the backend reported them. */
struct cfg_limits {
    unsigned requests_per_minute;
    unsigned long long tokens_per_minute;
    unsigned max_concurrent; /* requests admitted and not ended (queued ones too) */
    unsigned long long tokens_per_day;
};

/* An API key of a tier: compared as SHA-256 digests, never logged. */
struct cfg_apikey {
    unsigned char sha256[32]; /* keys: plain text hashed at load; key_sha256: hex given */
    char name[CFG_NAME_MAX];  /* tiers[].keys[].name, else "<tier>-<n>" (n from 1 in the
                                 tier's list): logs and the key metric label, never the key */
    struct cfg_limits limits; /* tiers[].keys[].limits; none: the tier's alone */
};

struct cfg_tier {
    char name[CFG_NAME_MAX];
    int priority;             /* higher is more important; default tier 0 */
    unsigned slo_ttft_ms;     /* 0: no TTFT target */
    unsigned slo_tpot_ms;     /* 0: no TPOT target */
    unsigned max_queue;       /* requests of this tier held at once (default 64);
                                 0: never held */
    unsigned max_wait_ms;     /* longest a request of this tier is held (default 30000);
                                 0: never held */
    struct cfg_limits limits; /* tiers[].limits: every request of the tier together */
    bool spare;               /* a slot no configured tier holds now (cfg_tiers_expand): never
                             used yet (no name), or a tier a reload removed (its name kept
                             for its return) */
};

struct cfg_alias {
    char from[CFG_NAME_MAX]; /* a model name clients use */
    char to[CFG_NAME_MAX];   /* the name a backend serves */
};

struct cfg {
    /* listen */
    char listen_host[CFG_HOST_MAX]; /* default "127.0.0.1" */
    uint16_t listen_port;           /* default 8080 */

    /* admin_listen: pitot's own endpoints (/metrics, /healthz, /readyz) are
       served on this second address, and no longer on the client one */
    bool admin;                    /* admin_listen is set; default false (off) */
    char admin_host[CFG_HOST_MAX]; /* as listen_host; "" when off */
    uint16_t admin_port;           /* 0 when off (or a free port, as listen) */
    /* admin_token: with it, the admin listener's POSTs (/admin/...) need
       "Authorization: Bearer <token>"; "" (the default): they need none */
    char admin_token[CFG_ADMIN_TOKEN_MAX];
    /* tls: the listener speaks TLS when it has a certificate */
    struct cfg_tls_cert tls_certs[CFG_MAX_CERTS]; /* tls.certificates: [0] the default,
                                       the others chosen by SNI; none: plain HTTP */
    size_t ntls_certs;
    enum cfg_tls_version tls_min_version; /* tls.min_version, default 1.2 */

    struct cfg_backend backends[CFG_MAX_BACKENDS];
    size_t nbackends;

    struct cfg_tier tiers[CFG_MAX_TIERS]; /* tiers[0] is always "default" */
    size_t ntiers;

    /* model label values known up front; more are learned from backend
       responses up to max_model_labels, the rest are labelled "other" */
    char models[CFG_MAX_MODELS][CFG_NAME_MAX];
    size_t nmodels;
    unsigned max_model_labels; /* default 16 */

    /* limits (front door) */
    size_t max_header_bytes;       /* default 32768: request line + headers; 431 past it */
    unsigned max_headers;          /* default 100: header fields; 431 past it */
    size_t max_uri_bytes;          /* default 8192; 414 past it */
    size_t max_body_bytes;         /* default 16 MiB; 413 past it */
    unsigned header_timeout_ms;    /* default 10000: whole head must arrive; 408 */
    unsigned body_timeout_ms;      /* default 60000: gap between body reads; 408 */
    unsigned keepalive_timeout_ms; /* default 75000: idle client connection */
    unsigned max_clients;          /* default 4096 concurrent client connections; lowered
                                      at start to what RLIMIT_NOFILE allows */
    unsigned body_deadline_ms;     /* default 300000: head complete to the last body byte; 408 */
    size_t min_body_rate;          /* default 500 bytes/s: a body's average since its head,
                                      judged from CFG_BODY_RATE_GRACE_MS on; 0 off; 408 */

    /* upstream */
    unsigned connect_timeout_ms;         /* default 5000 */
    unsigned upstream_header_timeout_ms; /* default 600000: allows for llama.cpp queueing */
    unsigned upstream_idle_timeout_ms;   /* default 600000: between body reads when not streaming */
    unsigned upstream_keepalive; /* idle upstream connections kept per backend, default 16 */
    size_t stream_buffer_bytes;  /* default 262144: client output past this pauses the backend */
    size_t max_event_bytes;      /* default 1048576: largest SSE event analysed */
    unsigned health_interval_ms; /* default 2000: active GET /health */
    unsigned health_timeout_ms;  /* default 1000 */

    /* measurement */
    unsigned stall_ms;                      /* default 10000: gap counted as a stall */
    unsigned stall_timeout_ms;              /* default 120000: gap that ends the stream */
    bool usage_injection;                   /* default true: ask for usage, strip it again */
    char *refusal_phrases[CFG_MAX_PHRASES]; /* owned; nrefusal == 0: defaults */
    size_t nrefusal;
    double buckets[CFG_MAX_BUCKETS]; /* histogram upper bounds, seconds, ascending */
    size_t nbuckets;

    /* routing (issue 3) */
    enum cfg_policy policy;               /* routing.policy, default least_busy */
    enum cfg_unknown_model unknown_model; /* routing.unknown_model, default auto */
    unsigned scrape_interval_ms;          /* routing.scrape_interval, default 500 */
    unsigned scrape_timeout_ms;           /* routing.scrape_timeout, default 400 */
    unsigned scrape_stale_ms;             /* routing.scrape_stale, default 2000: older scrapes
                                        are not used (pitot's own in-flight count is) */
    unsigned models_interval_ms;          /* routing.models_interval, default 10000: /v1/models */
    unsigned dns_interval_ms;             /* routing.dns_interval, default 10000 */
    unsigned max_addresses;               /* routing.max_addresses per backend name, default 8 */
    unsigned spare_backends;        /* routing.spare_backends, default 16: slots kept free at start
                                for the backends a reload adds (a name takes max_addresses) */
    enum cfg_dns_family dns_family; /* routing.dns_family, default auto */
    char resolver[CFG_HOST_MAX];    /* routing.resolver "ip[:port]": the DNS server asked;
                                       "" (default): /etc/resolv.conf and /etc/hosts */
    unsigned default_capacity;      /* routing.default_capacity, default 4 */
    bool speed_aware;               /* routing.speed_aware, default true: least_busy weighs
                                       each load by the backend's measured time per token */
    struct cfg_alias aliases[CFG_MAX_ALIASES]; /* routing.aliases: {from: to} map */
    size_t naliases;
    bool retry;                         /* routing.retry, default true */
    unsigned max_waiting;               /* routing.saturation.max_waiting, default 0: a
                                        backend that would have to queue more is saturated */
    double max_cache_ratio;             /* routing.saturation.max_cache_ratio, default 0.95 */
    unsigned max_in_flight;             /* routing.saturation.max_in_flight, default 0 = none */
    unsigned eject_failures;            /* routing.eject.failures, default 3 (consecutive
                                        connect failures or 5xx); 0: never ejected */
    unsigned eject_base_ms;             /* routing.eject.base, default 1000; doubles per
                                        repeated ejection */
    unsigned eject_max_ms;              /* routing.eject.max, default 60000 */
    enum cfg_affinity affinity;         /* routing.affinity.mode, default off */
    char affinity_header[CFG_NAME_MAX]; /* routing.affinity.header, default X-Session-Id */
    unsigned affinity_prefix_messages;  /* routing.affinity.prefix_messages, default 2 */
    double affinity_max_load;           /* routing.affinity.max_load, default 1.25 (bounded
                                        load: moved when above this x the average) */

    /* overload queue and tiers (issue 3) */
    unsigned queue_max;                   /* queue.max_depth: all tiers, default 256 */
    char tier_header[CFG_NAME_MAX];       /* tier_header: trusted header naming a tier; "" off */
    struct cfg_apikey keys[CFG_MAX_KEYS]; /* tiers[].keys / tiers[].key_sha256; no
                                        digest twice; replaced with the tiers list */
    unsigned char key_tier[CFG_MAX_KEYS]; /* tier index of keys[i] */
    size_t nkeys;
    bool require_auth; /* require_auth: a request without a configured API key is answered
                          401 and never proxied; default false; needs nkeys > 0 */
    /* ratelimit (issue 12) */
    /* ratelimit.redis: redis://[:password@]host[:port][/db]; "" (the default):
       the limits are counted in this process's memory */
    char ratelimit_redis[CFG_HOST_MAX + 320];
    char ratelimit_redis_host[CFG_HOST_MAX];   /* from it */
    uint16_t ratelimit_redis_port;             /* default 6379 */
    unsigned ratelimit_redis_db;               /* default 0 */
    char ratelimit_redis_password[256];        /* the URL's, or ratelimit.redis_password */
    char ratelimit_redis_prefix[CFG_NAME_MAX]; /* ratelimit.redis_prefix, default "pitot:" */
    unsigned ratelimit_redis_timeout_ms;       /* ratelimit.redis_timeout, default 250 */
    enum cfg_redis_fail ratelimit_redis_fail;  /* ratelimit.redis_fail, default open */
    unsigned ratelimit_replicas;           /* ratelimit.replicas, default 1: pitot replicas sharing
                                         the budget; fail open, each counts limit / replicas */
    unsigned ratelimit_default_max_tokens; /* ratelimit.default_max_tokens, default 1024:
                                              the completion a request without max_tokens
                                              (max_completion_tokens, max_output_tokens)
                                              reserves against token limits */

    /* OpenTelemetry (issue 4) */
    bool otel_metrics; /* opentelemetry.metrics: also expose the gen_ai_* histograms of
                          the GenAI semantic conventions, default false */
    /* opentelemetry.traces.*: OTLP/HTTP span export (see otlp.h) */
    char otel_trace_url[CFG_HOST_MAX + CFG_OTLP_PATH_MAX + 16]; /* endpoint as given; "" off */
    char otel_trace_host[CFG_HOST_MAX];           /* from the endpoint http[s]://host:port/path */
    uint16_t otel_trace_port;                     /* default 80, 443 for https */
    bool otel_trace_https;                        /* the endpoint is https:// */
    struct cfg_tls_client otel_tls;               /* its ca_file (opentelemetry.traces.ca_file);
                                                     always verified, by the endpoint's host */
    char otel_trace_path[CFG_OTLP_PATH_MAX];      /* default /v1/traces */
    char otel_service_name[CFG_OTLP_SERVICE_MAX]; /* service_name, default "pitot" */
    unsigned otel_queue_size;        /* queue_size: spans held for export, default 2048 */
    unsigned otel_batch_size;        /* batch_size: spans per export, default 512, <= queue */
    unsigned otel_trace_interval_ms; /* interval: between exports, default 1000 */
    unsigned otel_trace_timeout_ms;  /* timeout: one export, connect to answer, default 5000 */

    /* shutdown */
    unsigned workers;          /* workers: event loops on their own threads; default 0: one per
                         online CPU */
    unsigned drain_timeout_ms; /* shutdown.drain_timeout, default 30000: on SIGTERM or SIGINT,
                                  requests in progress may finish for this long; 0: exit at once */

    /* output */
    char access_log[1024]; /* "" or "-": stdout */
    int log_level;         /* 0 error, 1 warn, 2 info (default), 3 debug */
    int log_format;        /* log.format: 0 text (default), 1 json (one object a line) */

    /* A generation made by cfg_new() is shared by those who hold it (the
       loops, the router, every request that began under it: cfg_hold) and
       freed by the last cfg_drop(). 0: not counted (cfg_init's, never freed). */
    _Atomic unsigned refs;
};

/* Fills every field with its default (no backends). */
void cfg_init(struct cfg *c);

/* Frees what cfg owns (refusal phrases). The struct may be cfg_init'ed again. */
void cfg_release(struct cfg *c);

/* Loads a YAML file over the current values. Unknown keys, wrong types,
 * out-of-range values and YAML syntax errors are errors. On error returns -1
 * and writes "PATH:LINE: message" (NUL-terminated) into err[0..errlen). */
int cfg_load_file(struct cfg *c, const char *path, char *err, size_t errlen);

/* The same from a buffer; `name` stands for PATH in messages. */
int cfg_load_buffer(struct cfg *c, const char *name, const char *buf, size_t len, char *err,
                    size_t errlen);

/* Adds a backend from a URL "http://host[:port]" or "https://host[:port]"
 * (trailing '/' allowed; no path, query or userinfo). An https backend is
 * verified against the system CAs by its host name. Returns 0 or -1 with a
 * message. */
int cfg_backend_add(struct cfg *c, const char *url, const char *name, char *err, size_t errlen);

/* Makes the pair (cert, key) the listener's only certificate (--tls-cert,
 * --tls-key): the file's tls.certificates are replaced. The files are checked
 * by tls_check(). Returns 0 or -1 with a message (an empty or too long path). */
int cfg_tls_cert_set(struct cfg *c, const char *cert, const char *key, char *err, size_t errlen);

/* ratelimit.redis: "redis://[:password@]host[:port][/db]" (or "" off) into
 * ratelimit_redis and its host, port (6379), db and password. A failed set
 * changes nothing. Returns 0 or -1 with a message (never the password). */
int cfg_redis_set(struct cfg *c, const char *url, char *err, size_t errlen);

/* Parses "host:port" / "[v6]:port" / ":port" into listen_host/listen_port. */
int cfg_listen_set(struct cfg *c, const char *hostport, char *err, size_t errlen);

/* The same forms into admin_host/admin_port and sets admin; "" turns the
 * admin listener off. A failed set changes nothing. Returns 0 or -1 with a
 * message. */
int cfg_admin_listen_set(struct cfg *c, const char *hostport, char *err, size_t errlen);

/* Final checks after all sources were applied: at least one backend, unique
 * backend names, buckets ascending, stall_ms < stall_timeout_ms,
 * scrape_timeout_ms <= scrape_interval_ms < scrape_stale_ms,
 * eject_base_ms <= eject_max_ms, no alias named like a model a backend lists,
 * every key's tier exists, require_auth has at least one key, admin_listen is
 * not the listen address. Returns 0, or -1 with a message (no line: the
 * values may come from several sources). */
int cfg_validate(const struct cfg *c, char *err, size_t errlen);

/* Gives every backend named by a DNS name (dns set) max_addresses slots in
 * c->backends, consecutive, in place of the one entry: slot 0 keeps the
 * name, slot k > 0 is named "name/k"; IP-literal backends keep one. Sets
 * group and slot on every entry, then appends spare_backends spare entries
 * (as many as fit in CFG_MAX_BACKENDS). Call once, after cfg_validate (which checks
 * that the slots fit in CFG_MAX_BACKENDS and that their names are free).
 * Returns 0, or -1 with a message. */
int cfg_backends_expand(struct cfg *c, char *err, size_t errlen);

/* What a reload does to a slot of the backend table (cfg_backends_place). */
enum cfg_place {
    CFG_PLACE_FREE = 0, /* spare before and after */
    CFG_PLACE_SAME,     /* the same backend, every setting the same */
    CFG_PLACE_CHANGED,  /* the same name with other settings: started over */
    CFG_PLACE_ADDED,    /* a backend the slot did not hold (a new name there) */
    CFG_PLACE_BACK,     /* a removed backend's name added again, in its old slot */
    CFG_PLACE_REMOVED,  /* held a backend the new configuration does not name */
};

/* Lays a reload's backends (next, expanded) out in the running table (cur's
 * slots: the table never grows or moves): a backend whose name cur holds, or
 * held before a reload removed it, with as many slots, stays in its slots;
 * a new one takes the lowest run of spare slots reusable[] allows (the
 * caller's say: nothing runs there any more), never-used ones first; a
 * backend cur holds that next does not name leaves its slots spare, name
 * kept. On success next->backends is the new table (cur->nbackends
 * entries) and how[i] says what happened to slot i; returns 0. Returns -1
 * with a message when a backend finds no room (next is then unchanged). */
int cfg_backends_place(const struct cfg *cur, struct cfg *next, const bool *reusable,
                       enum cfg_place *how, char *err, size_t errlen);

/* The listener's certificate list and minimum version are the same. */
bool cfg_certs_same(const struct cfg *a, const struct cfg *b);

/* Fills c->tiers up to CFG_MAX_TIERS with spare slots, for the tiers reloads
 * add (every table indexed by tier keeps its size). After cfg_validate. */
void cfg_tiers_expand(struct cfg *c);

/* Lays a reload's tiers (next, validated, not expanded) out in the running
 * table (cur's slots): a name cur holds, or held before a reload removed it,
 * keeps its slot; a new one takes a never-used slot; one cur holds that next
 * does not name leaves its slot spare, name kept. The keys' tiers follow.
 * added[t] / removed[t]: what happened to slot t. On success next's tiers
 * are the new table (CFG_MAX_TIERS) and 0 is returned; -1 with a message
 * when a new tier finds no slot (next unchanged). */
int cfg_tiers_place(const struct cfg *cur, struct cfg *next, bool *added, bool *removed, char *err,
                    size_t errlen);

/* Backends configured now (the table's entries that are not spare). */
size_t cfg_backends_live(const struct cfg *c);

/* "host:port" of a backend as it goes in a Host header ("[::1]:8080" for v6). */
static inline const char *cfg_backend_authority(const struct cfg_backend *b)
{
    return b->url + (b->https ? sizeof("https://") : sizeof("http://")) - 1;
}

/* A duration as the config spells it, the shortest exact way ("10m", "5s",
 * "250ms") into buf[0..n); returns buf. */
const char *cfg_fmt_ms(char *buf, size_t n, unsigned long long ms);

/* limits.min_body_rate leaves a body alone for its first 10 s: a TCP
 * retransmission or two must not cost a request. */
#define CFG_BODY_RATE_GRACE_MS 10000

/* The most client connections that fit in `nofile` file descriptors
 * (RLIMIT_NOFILE), c's backends expanded: each client may hold a backend
 * connection too, and pitot keeps descriptors of its own (stdio, the access
 * log, listeners, the event loop's, DNS sockets, the OTLP exporter, and per
 * backend its idle pool of upstream.keepalive, a health probe, a scrape and a
 * model-list request). 0 when not even one client fits. */
unsigned cfg_fd_max_clients(const struct cfg *c, unsigned long long nofile);

/* Index of a configured tier (not a spare slot) by name, or -1. */
int cfg_tier_find(const struct cfg *c, const char *name);

/* A counted generation on the heap, cfg_init()ed, held once (by the caller).
 * NULL when out of memory. */
struct cfg *cfg_new(void);

/* One more holder of c (a no-op for one that is not counted); returns c. */
const struct cfg *cfg_hold(const struct cfg *c);

/* One holder less; the last one frees a generation of cfg_new(). NULL is
 * ignored. Any thread. */
void cfg_drop(const struct cfg *c);

/* What a reload (SIGHUP) cannot change in a running pitot: what sizes or
 * names its tables, listeners and threads (the backend table's shape:
 * routing.max_addresses, routing.spare_backends, routing.resolver; listen,
 * admin_listen, TLS on or off, workers, the model label table's size, the
 * buckets, opentelemetry, the pools, max_event_bytes, the header limits).
 * Copies each of those that differs from `old` back into `next`, and writes
 * their names, ", "-separated, into kept[0..cap) ("" when none). Everything
 * else of `next` applies; the backends and the tiers are laid out by
 * cfg_backends_place and cfg_tiers_place. Both validated; next not expanded
 * yet (its expansion takes the kept shape). */
void cfg_reload_keep(const struct cfg *old, struct cfg *next, char *kept, size_t cap);

#endif
