/* process: pitot's workers and what they share. N event loops on N threads
 * (worker 0 on the calling thread), each accepting on the same ports
 * (SO_REUSEPORT); one router (the backends, probed, scraped and looked up
 * once, on worker 0's loop) and one overload queue for all of them. */
#ifndef PITOT_WORKER_PROCESS_H
#define PITOT_WORKER_PROCESS_H

#include <stdbool.h>
#include <stddef.h>

#include "pitot/format/config.h"

struct alog;
struct cfg;
struct process;
struct refusal_phrases;
struct status;
struct event_base;

/* Sets up c->workers workers (at least 1) and what they share: the router
 * (resolving backends, a first DNS lookup), the queue, the listeners.
 * Returns NULL with a message in err on failure. Call evthread_use_pthreads()
 * before. */
struct process *process_new(const struct cfg *c, const struct refusal_phrases *refusals,
                            struct alog *alog, char *err, size_t errlen);

/* Worker 0's loop: signals are added to it (they run on the calling thread). */
struct event_base *process_base(const struct process *p);

/* Starts workers 1..N-1 on their threads and runs worker 0 here until every
 * worker ended; then joins the threads. Returns 0, or -1 when a thread could
 * not be started (the others are stopped). */
int process_run(struct process *p);

/* Starts a graceful drain in every worker (see worker_drain); drain_ms 0:
 * process_stop. Returns the client connections left to drain. A second call
 * is ignored. */
unsigned process_drain(struct process *p, unsigned drain_ms);

/* Stops every worker at once. */
void process_stop(struct process *p);

/* True once a drain began. */
bool process_draining(const struct process *p);

/* Connections cut when the drain's deadline passed, over every worker; and
 * connections still open. For the last line. */
unsigned process_drain_cut(const struct process *p);
unsigned process_open_conns(const struct process *p);

/* Loads every certificate, key and CA file again (SIGHUP): each worker's
 * listener and collector contexts (on its own loop), and the https backends'
 * (shared). Returns the failures seen here, each written to stderr. */
int process_tls_reload(struct process *p);

/* Switches to c, a validated configuration of the running one's shape
 * (cfg_reload_keep), its backends laid out in the table's slots as how says
 * (cfg_backends_place), its tiers too (tadded, tremoved: cfg_tiers_place),
 * held by the caller, who keeps its own hold: every
 * worker (on its own thread, soon), the router (backends added, changed,
 * removed: router_reload), the lookups and the queue. New requests use it,
 * requests in flight finish on theirs. ph: the refusal phrases that go with
 * it, borrowed until process_free. On worker 0's thread. */
void process_reload(struct process *p, const struct cfg *c, const struct refusal_phrases *ph,
                    const enum cfg_place *how, const bool *tadded, const bool *tremoved);

/* Per slot of the backend table: may a reload put a new backend there
 * (router_backends_reusable)? */
void process_backends_reusable(struct process *p, bool *reusable);

/* The configuration in force (the last process_reload's, else the first). */
const struct cfg *process_cfg(const struct process *p);

/* Whether the listener has TLS. */
bool process_tls(const struct process *p);

/* The bound listen and admin_listen ports (0: none). */
unsigned process_listen_port(const struct process *p);
unsigned process_admin_port(const struct process *p);

/* The number of workers. */
size_t process_workers(const struct process *p);

/* The status page's data and runtime control (status.h), sampled on worker
 * 0's loop; NULL without admin_listen. The process's reload wiring calls
 * status_set_reload on it. */
struct status *process_status(const struct process *p);

void process_free(struct process *p);

#endif
