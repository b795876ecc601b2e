/* status: the admin listener's status page and runtime control. The page
 * (/status: one self-contained HTML file, embedded at build time) reads
 * /status.json every second: every backend's state and load, per-tier queue
 * figures and the process's, with figures over the last minute computed from
 * a ring of once-a-second snapshots taken on one loop (never on the request
 * path). Also: the paths of POST /admin/backends/{name}/disable|enable, the
 * admin token check, and the reload count and callback the process wires. */
#ifndef PITOT_SERVE_STATUS_H
#define PITOT_SERVE_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pitot/util/span.h"

struct cfg;
struct event_base;
struct evbuffer;
struct met_registry;
struct router;
struct status;

#define STATUS_WINDOW_S 60 /* "the last minute": snapshots kept, one a second */

/* Starts a reload of the configuration (may finish later, on another
 * thread). Returns 0 when started, a negative PITOT_E* when it could not be. */
typedef int (*status_reload_cb)(void *ud);

/* A status over rt's backends and the n registries of the workers (regs[0]
 * the probing loop's), for c. Everything the ring needs is allocated here.
 * Returns NULL when out of memory. rt, regs and c are borrowed. */
struct status *status_new(const struct cfg *c, struct router *rt, struct met_registry *const *regs,
                          size_t nregs);

/* Stops the sampler (on its loop's thread, or after that loop ended) and
 * frees st. NULL is ignored. */
void status_free(struct status *st);

/* Takes a snapshot now and then every second on base (one loop: the
 * sampler's timer). Returns 0 or -PITOT_ENOMEM. */
int status_start(struct status *st, struct event_base *base);

/* One snapshot at monotonic now_us into the ring (the timer calls it; tests
 * call it with their own clock). */
void status_sample(struct status *st, uint64_t now_us);

/* Appends the JSON document of /status.json as of monotonic now_us (see the
 * README for its fields). Returns 0, or -1 when an append failed. */
int status_json(struct status *st, struct evbuffer *out, uint64_t now_us);

/* The embedded page: borrowed, static. */
struct span status_page(void);

/* The process's reload function (NULL: none, POST /admin/reload answers
 * 501). Set before the workers start, or from the thread that owns st. */
void status_set_reload(struct status *st, status_reload_cb cb, void *ud);

/* Starts a reload through the callback: its result, or -PITOT_ENOT_IMPLEMENTED
 * when there is none. */
int status_reload(struct status *st);

/* What POST /admin/backends/{name}/{disable,enable} asks. */
enum status_action {
    STATUS_ACT_NONE,    /* not such a path */
    STATUS_ACT_DISABLE, /* .../disable */
    STATUS_ACT_ENABLE,  /* .../enable */
};

/* Parses a request path (no query) of the form /admin/backends/NAME/ACTION:
 * NAME is everything between "/admin/backends/" and the last '/' (a DNS
 * slot's "api/1" as it is, or as "api%2F1"), percent-decoded into name[cap]
 * (NUL-terminated), 1 to cap-1 bytes of printable ASCII. Anything else (an
 * empty or too long name, a bad escape, a control byte or NUL, another
 * action) is STATUS_ACT_NONE. */
enum status_action status_backend_path(struct span path, char *name, size_t cap);

/* Whether an Authorization header value carries token as "Bearer <token>"
 * (scheme case-insensitive). Compared as SHA-256 digests with CRYPTO_memcmp:
 * the time taken does not depend on where the two differ, nor on their
 * lengths. An empty token accepts anything (admin_token unset); a value
 * of length 0 (no header) never matches a set token. */
bool status_token_ok(const char *token, struct span authorization);

/* Slot be holds another backend now (a reload): its minute of history goes. */
void status_backend_reset(struct status *st, unsigned be);

/* Tier slot t holds the tier `name` (live: shown) or none (a reload removed it). */
void status_set_tier(struct status *st, unsigned t, const char *name, bool live);

#endif
