/* wrk: one event loop and everything that lives on it (listener, client
 * connections, backend table, metrics registry, scratch buffers). State is per
 * loop so that several workers can run side by side later. */
#ifndef PITOT_WRK_H
#define PITOT_WRK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "pitot/bal.h"
#include "pitot/json.h"

struct event_base;
struct event;
struct evconnlistener;
struct cfg;
struct met_registry;
struct rfs_phrases;
struct alog;
struct front_conn;
struct ups_pool;
struct hc;
struct oq;
struct scr;
struct dns;
struct relay;
struct otlp;
struct tls_server;
struct tls_client;

struct wrk {
    struct event_base *base;          /* owned */
    const struct cfg *cfg;            /* borrowed */
    const struct rfs_phrases *rfs;    /* borrowed: shared, immutable */
    struct alog *alog;                /* borrowed: shared, one write(2) per line */
    struct met_registry *met;         /* owned */
    struct bal bal;                   /* owned */
    struct ups_pool *pools;           /* owned: one per backend */
    struct hc *hc;                    /* owned: health checks */
    struct oq *oq;                    /* owned: overload queue */
    struct scr *scr;                  /* owned: backend metric scrapers */
    struct dns *dns;                  /* owned: lookups of backend names */
    struct otlp *otlp;                /* owned: span exporter; NULL when traces are off */
    struct tls_server *tls;           /* owned: the listener's TLS; NULL: plain HTTP */
    struct tls_client **be_tls;       /* owned array, one per backend: NULL for http://;
                                         owned by a name's first slot, borrowed by the
                                         others (cfg group) */
    struct tls_client *otlp_tls;      /* owned: NULL unless the collector is https:// */
    struct evconnlistener *lst;       /* owned: clients */
    struct evconnlistener *adm_lst;   /* owned: admin_listen; NULL when off */
    struct sockaddr_storage *be_addr; /* owned: backend addresses (a DNS slot's
                                         changes, see dns.h; len 0: none) */
    socklen_t *be_addrlen;            /* owned */
    struct json_toks toks;            /* owned scratch for JSON parsing */
    char *scratch;                    /* owned: multi-line SSE data, max_event_bytes */
    size_t scratch_cap;
    TAILQ_HEAD(, front_conn) conns; /* live client connections (borrowed links) */
    TAILQ_HEAD(, front_conn) reap;  /* closed, freed by reap_ev */
    struct event *reap_ev;          /* owned */
    struct relay *retired;          /* owned: relays to free, see relay_retire() */
    struct event *drain_ev;         /* owned: the drain's deadline (wrk_drain) */
    struct event *accept_ev;        /* owned: turns the listener back on after a pause */
    bool accept_paused;             /* the listener is off: accept() ran out of
                                       descriptors or memory (wrk_accept_error_cb) */
    unsigned accept_fails;          /* accept() failures not logged yet */
    uint64_t accept_logged_us;      /* monotonic: the last accept() failure line; 0 none */
    unsigned full_closed;           /* connections closed at max_clients, not logged yet */
    uint64_t full_logged_us;        /* monotonic: the last line about them; 0 none */
    unsigned nconns;
    unsigned nadmin;    /* of nconns, those on the admin listener */
    unsigned drain_cut; /* connections cut when the drain's deadline passed */
    uint64_t rng;       /* xorshift state for request ids */
    bool draining;      /* wrk_drain: no new connections or requests; health checks,
                           scrapes and lookups go on */
    bool stopping;      /* the loop is ending: timers are not rearmed */
};

/* Creates a worker on a new event base, listening on c->listen_* (and on
 * c->admin_* when c->admin).
 * Returns NULL and a message in err on failure. */
struct wrk *wrk_new(const struct cfg *c, const struct rfs_phrases *rfs, struct alog *alog,
                    char *err, size_t errlen);

/* Runs the loop until wrk_stop(). Returns 0. */
int wrk_run(struct wrk *w);

/* Stops accepting and ends the loop (from a signal callback on this loop).
 * Connections still open are closed by wrk_free. */
void wrk_stop(struct wrk *w);

/* Starts a graceful drain (from a signal callback on this loop): closes the
 * listeners (the clients' and the admin one), closes idle keep-alive
 * connections at once, and lets every request in progress (head, body,
 * overload queue, response) finish; each connection then closes instead of
 * serving another request. The loop ends when the last connection is gone,
 * or after drain_ms, when the rest are cut (a request in progress is
 * accounted as one whose client left) and counted in drain_cut. drain_ms 0
 * is wrk_stop. Returns the connections left to drain; 0: the loop ends now.
 * A second call is ignored (returns nconns). */
unsigned wrk_drain(struct wrk *w, unsigned drain_ms);

/* A client connection closed (front calls it): ends a drain with none left,
 * and frees the listener from a pause for want of descriptors. */
void wrk_conn_closed(struct wrk *w);

/* True while a client connection may serve another request after this one:
 * false once the worker drains or stops. */
bool wrk_keepalive(const struct wrk *w);

void wrk_free(struct wrk *w);

/* A fresh 32-hex-digit request id into out[33]. */
void wrk_request_id(struct wrk *w, char out[33]);

/* Loads every certificate, key and CA file again (SIGHUP): the listener's
 * certificates and the https backends' and collector's CA files and client
 * certificates. New handshakes use what loaded; connections already made are
 * not touched. What fails to load keeps its old contexts: returns the number
 * of failures, each written to stderr. */
int wrk_tls_reload(struct wrk *w);

/* Sets TCP_NODELAY (and nothing else) on a socket; errors are ignored. */
void wrk_sock_nodelay(int fd);

/* The bound listen port (after port 0). */
unsigned wrk_listen_port(const struct wrk *w);

/* The bound admin_listen port (after port 0); 0 when there is none. */
unsigned wrk_admin_port(const struct wrk *w);

#endif
