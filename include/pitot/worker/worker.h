/* worker: one event loop on one thread: its listeners (clients, and the admin
 * one when admin_listen is set), its client connections and requests (a
 * loop), its connections to the backends, its metrics. The backends
 * (router) and the overload queue are the process's, shared by every worker. */
#ifndef PITOT_WORKER_WORKER_H
#define PITOT_WORKER_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pitot/serve/loop.h"

struct alog;
struct cfg;
struct event;
struct evconnlistener;
struct met_registry;
struct queue;
struct refusal_phrases;
struct router;
struct tls_client;

/* What a worker is given: shared, borrowed for its whole life. */
struct worker_setup {
    const struct cfg *cfg;
    const struct refusal_phrases *refusals;
    struct alog *alog;                /* one write(2) per line: shared as it is */
    struct event_base *base;          /* the worker's loop (the process made it, for the
                                        router's probes on worker 0's) */
    struct met_registry *met;         /* the worker's own registry */
    struct met_registry *const *regs; /* every worker's, [0] worker 0's: /metrics */
    size_t nregs;
    struct router *rt;
    struct ratelimit *ratelimit; /* the tiers' and keys' limits, shared */
    struct queue *queue;
    _Atomic unsigned *clients; /* client connections of every worker */
    struct otlp *otlp;         /* the span exporter; NULL when traces are off */
    struct status *status;     /* the status page's data; NULL without admin_listen */
    uint16_t listen_port;      /* the port to bind: cfg's, or worker 0's bound one */
    uint16_t admin_port;
    unsigned index; /* 0 .. workers-1; worker 0 runs on the main thread */
    /* The worker's loop has nothing left to do (stopped, or drained): called
     * on its own thread. Worker 0's loop goes on until its owner ends it (it
     * runs the router's probes and the signals). */
    void (*ended)(void *ud, unsigned index);
    /* A posted drain began on the worker's thread: `left` connections to
     * drain there (idle ones already closed). */
    void (*draining)(void *ud, unsigned index, unsigned left);
    void *ud;
};

/* Commands other threads post to a worker (worker_post). */
enum worker_cmd {
    WORKER_CMD_DRAIN = 1,      /* worker_drain with the posted drain_ms */
    WORKER_CMD_STOP = 2,       /* worker_stop */
    WORKER_CMD_TLS_RELOAD = 4, /* worker_tls_reload */
    WORKER_CMD_CONFIG = 8,     /* worker_set_cfg with the posted configuration */
};

struct worker {
    struct loop lp; /* owned: what the connections on this loop share */
    unsigned index; /* see worker_setup */
    void (*ended)(void *ud, unsigned index);
    void (*draining)(void *ud, unsigned index, unsigned left);
    void *ud;
    bool ended_called;                /* ended was called */
    struct evconnlistener *lst;       /* owned: clients */
    struct evconnlistener *admin_lst; /* owned: admin_listen; NULL when off */
    struct event *drain_ev;           /* owned: the drain's deadline (worker_drain) */
    struct event *accept_ev;          /* owned: turns the listener back on after a pause */
    struct event *cmd_ev;             /* owned: worker_post wakes it */
    _Atomic unsigned cmd;             /* enum worker_cmd bits posted, not yet done */
    _Atomic unsigned cmd_drain_ms;    /* with WORKER_CMD_DRAIN */
    /* with WORKER_CMD_CONFIG: held for the worker, and the phrases with it */
    const struct cfg *_Atomic cmd_cfg;
    const struct refusal_phrases *_Atomic cmd_refusals;
    pthread_t thread;   /* its thread, when not the main one */
    bool accept_paused; /* the listener is off: accept() ran out of
                                         descriptors or memory (worker_accept_error_cb) */
    unsigned drain_cut; /* connections cut when the drain's deadline passed */
};

/* Creates a worker on s->base, listening on the configured hosts at
 * s->listen_port (and s->admin_port when admin_listen is set), with
 * SO_REUSEPORT so that every worker listens on the same ports. Returns NULL
 * and a message in err on failure. */
struct worker *worker_new(const struct worker_setup *s, char *err, size_t errlen);

/* Runs the loop until it is ended (worker_stop, or a drain that finished;
 * worker 0: by its owner). Returns 0. */
int worker_run(struct worker *w);

/* Stops accepting, and ends the loop (on its own thread). Connections still
 * open are closed by worker_free. */
void worker_stop(struct worker *w);

/* Starts a graceful drain (on the worker's own thread): closes the
 * listeners (the clients' and the admin one), closes idle keep-alive
 * connections at once, and lets every request in progress (head, body,
 * overload queue, response) finish; each connection then closes instead of
 * serving another request. The loop ends when the last connection is gone,
 * or after drain_ms, when the rest are cut (a request in progress is
 * accounted as one whose client left) and counted in drain_cut. drain_ms 0
 * is worker_stop. Returns the connections left to drain; 0: the worker is
 * done. A second call is ignored (returns nconns). */
unsigned worker_drain(struct worker *w, unsigned drain_ms);

/* Posts commands (enum worker_cmd bits) to w from any thread; its loop runs
 * them soon. drain_ms goes with WORKER_CMD_DRAIN. */
void worker_post(struct worker *w, unsigned cmds, unsigned drain_ms);

void worker_free(struct worker *w);

/* Loads the worker's listener certificates again (SIGHUP). New handshakes use
 * what loaded;
 * connections already made are not touched. What fails to load keeps its old
 * context: returns the number of failures, each written to stderr. */
int worker_tls_reload(struct worker *w);

/* On the worker's thread: new requests and connections use c (which the
 * caller held for the worker) and ph; requests in flight keep theirs. The
 * configuration the loop had is dropped. */
void worker_set_cfg(struct worker *w, const struct cfg *c, const struct refusal_phrases *ph);

/* From another thread: worker_set_cfg on the worker's own thread, soon. A
 * configuration posted before and not taken yet is dropped. */
void worker_post_cfg(struct worker *w, const struct cfg *c, const struct refusal_phrases *ph);

/* The bound listen port (after port 0). */
unsigned worker_listen_port(const struct worker *w);

/* The bound admin_listen port (after port 0); 0 when there is none. */
unsigned worker_admin_port(const struct worker *w);

#endif
