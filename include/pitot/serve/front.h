/* front: client connections: accept (and the TLS handshake on a TLS
 * listener), read and check a request (llhttp via h1, limits, timeouts),
 * answer pitot's own paths, hand the rest to a relay, and write locally
 * generated replies. */
#ifndef PITOT_SERVE_FRONT_H
#define PITOT_SERVE_FRONT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "pitot/util/err.h"
#include "pitot/format/http1.h"
#include "pitot/util/span.h"

struct loop;
struct relay;
struct bufferevent;
struct evbuffer;
struct event;
struct sockaddr;

enum front_state {
    FRONT_ST_HANDSHAKE, /* TLS: the handshake runs (the header timeout from the accept) */
    FRONT_ST_IDLE,      /* keep-alive: waiting for a request's first byte */
    FRONT_ST_HEAD,      /* reading a request head (header timeout runs) */
    FRONT_ST_BODY,      /* reading a request body into the relay */
    FRONT_ST_DISCARD,   /* reading and dropping the body of a refused request (its
                           reply is written), then IDLE */
    FRONT_ST_PROXY,     /* the relay owns the response */
    FRONT_ST_CLOSING,   /* flushing the last output, then close (transient) */
    FRONT_ST_DEAD,      /* closed; memory freed by the worker's reaper */
};

struct front_conn {
    struct loop *lp;         /* borrowed */
    struct bufferevent *bev; /* owned */
    struct event *timer;     /* owned: idle, header and body timeouts */
    struct relay *rl;        /* owned: the request in progress, or NULL */
    struct h1_parser hp;
    enum front_state st;
    char peer[64];         /* client address, for X-Forwarded-For and logs */
    struct event *arrival; /* owned: an idle plain client connection's next
                              request is readable (NULL: TLS, admin) */
    uint64_t arrived_us;   /* monotonic: when the next request's first bytes reached the
                            host (the kernel's receive stamp); 0: no stamp */
    uint64_t start_us;     /* monotonic: when the request being read began to arrive (t0) */
    unsigned nreq;         /* requests served on this connection */
    /* the body being read (front_read_body): its deadline and rate */
    uint64_t body_start_us; /* monotonic: its head was complete */
    uint64_t body_last_us;  /* monotonic: its last bytes arrived */
    uint64_t body_bytes;    /* received so far, chunk framing included */
    TAILQ_ENTRY(front_conn) link;
    bool admin;               /* accepted on the admin listener: pitot's own endpoints only */
    bool head;                /* the request being answered locally is a HEAD: no body */
    uint64_t discarded_bytes; /* FRONT_ST_DISCARD: body bytes dropped so far */
};

/* Accepts a connected socket (TCP_NODELAY set here, before a TLS listener
 * wraps it and starts the handshake). admin: it came in on the admin listener
 * (admin_listen): plain HTTP, only ever answered by pitot's own endpoints,
 * never proxied, and counted against FRONT_MAX_ADMIN_CONNS instead of
 * limits.max_clients. */
void front_accept(struct loop *lp, int fd, const struct sockaddr *sa, int salen, bool admin);

/* Connections the admin listener holds at most, apart from the clients'
 * (limits.max_clients): scrapes and probes still get in when clients have
 * taken every slot. */
#define FRONT_MAX_ADMIN_CONNS 64

/* Moves a connection to a new state; asserts the move is legal. */
void front_set_state(struct front_conn *fc, enum front_state st);

/* Ends the connection once everything written so far reached the socket. */
void front_close_after_flush(struct front_conn *fc);

/* Closes at once (no flush) and schedules the memory to be freed. */
void front_close(struct front_conn *fc);

/* Closes at once like front_close; a request in progress is accounted first
 * as one whose client left (relay_client_gone: client_cancel). */
void front_cut(struct front_conn *fc);

/* Frees a dead connection (the worker's reaper calls it). */
void front_free(struct front_conn *fc);

#endif
