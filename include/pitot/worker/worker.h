/* worker: one event loop and everything that lives on it (listener, client
 * connections, backend table, metrics registry, scratch buffers). State is per
 * loop so that several workers can run side by side later. */
#ifndef PITOT_WORKER_WORKER_H
#define PITOT_WORKER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "pitot/serve/loop.h"

struct event_base;
struct event;
struct evconnlistener;
struct cfg;
struct met_registry;
struct refusal_phrases;
struct alog;
struct front_conn;
struct upstream;
struct health;
struct queue;
struct scrape;
struct dns;
struct relay;
struct otlp;
struct tls_server;
struct tls_client;

struct worker {
    struct loop lp;                   /* owned: what the connections on this loop share */
    struct dns *dns;                  /* owned: lookups of backend names */
    struct tls_client *otlp_tls;      /* owned: NULL unless the collector is https:// */
    struct evconnlistener *lst;       /* owned: clients */
    struct evconnlistener *admin_lst; /* owned: admin_listen; NULL when off */
    struct event *drain_ev;           /* owned: the drain's deadline (worker_drain) */
    struct event *accept_ev;          /* owned: turns the listener back on after a pause */
    bool accept_paused;               /* the listener is off: accept() ran out of
                                         descriptors or memory (worker_accept_error_cb) */
    unsigned accept_fails;            /* accept() failures not logged yet */
    uint64_t accept_logged_us;        /* monotonic: the last accept() failure line; 0 none */
    unsigned full_closed;             /* connections closed at max_clients, not logged yet */
    uint64_t full_logged_us;          /* monotonic: the last line about them; 0 none */
    unsigned drain_cut;               /* connections cut when the drain's deadline passed */
};

/* Creates a worker on a new event base, listening on c->listen_* (and on
 * c->admin_* when c->admin).
 * Returns NULL and a message in err on failure. */
struct worker *worker_new(const struct cfg *c, const struct refusal_phrases *refusals,
                          struct alog *alog, char *err, size_t errlen);

/* Runs the loop until worker_stop(). Returns 0. */
int worker_run(struct worker *w);

/* Stops accepting and ends the loop (from a signal callback on this loop).
 * Connections still open are closed by worker_free. */
void worker_stop(struct worker *w);

/* Starts a graceful drain (from a signal callback on this loop): closes the
 * listeners (the clients' and the admin one), closes idle keep-alive
 * connections at once, and lets every request in progress (head, body,
 * overload queue, response) finish; each connection then closes instead of
 * serving another request. The loop ends when the last connection is gone,
 * or after drain_ms, when the rest are cut (a request in progress is
 * accounted as one whose client left) and counted in drain_cut. drain_ms 0
 * is worker_stop. Returns the connections left to drain; 0: the loop ends now.
 * A second call is ignored (returns nconns). */
unsigned worker_drain(struct worker *w, unsigned drain_ms);

void worker_free(struct worker *w);

/* Loads every certificate, key and CA file again (SIGHUP): the listener's
 * certificates and the https backends' and collector's CA files and client
 * certificates. New handshakes use what loaded; connections already made are
 * not touched. What fails to load keeps its old contexts: returns the number
 * of failures, each written to stderr. */
int worker_tls_reload(struct worker *w);

/* The bound listen port (after port 0). */
unsigned worker_listen_port(const struct worker *w);

/* The bound admin_listen port (after port 0); 0 when there is none. */
unsigned worker_admin_port(const struct worker *w);

#endif
