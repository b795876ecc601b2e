/* upstream: upstream connect and an idle pool per backend. llama-server closes its
 * side 5 s after a response and right after every stream, so pooled
 * connections are dropped after UPSTREAM_IDLE_MS, before the server would. */
#include "pitot/io/upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "pitot/io/tls.h"
#include "pitot/util/sock.h"

#define UPSTREAM_IDLE_MS 4000

struct upstream_idle {
    struct bufferevent *bev;    /* owned */
    struct upstream_pool *pool; /* borrowed */
    unsigned gen;               /* the backend's address generation when it was opened */
    TAILQ_ENTRY(upstream_idle) link;
};

struct upstream_pool {
    size_t n;
    TAILQ_HEAD(, upstream_idle) idle;
};

struct upstream {
    struct event_base *base;       /* borrowed */
    upstream_addr_cb addr_of;      /* where a backend is now */
    void *ud;                      /* addr_of's */
    struct tls_client *const *tls; /* borrowed, per backend; NULL: plain */
    unsigned keepalive;            /* idle connections kept per backend */
    bool stopping;                 /* nothing is kept any more */
    size_t n;                      /* backends */
    struct upstream_pool pool[];   /* per backend */
};

struct upstream *upstream_new(struct event_base *base, size_t nbackends, unsigned keepalive,
                              upstream_addr_cb addr_of, void *ud, struct tls_client *const *tls)
{
    struct upstream *u = calloc(1, sizeof(*u) + (nbackends ? nbackends : 1) * sizeof(u->pool[0]));
    size_t i;

    if (u == NULL)
        return NULL;
    u->base = base;
    u->addr_of = addr_of;
    u->ud = ud;
    u->tls = tls;
    u->keepalive = keepalive;
    u->n = nbackends;
    for (i = 0; i < nbackends; i++)
        TAILQ_INIT(&u->pool[i].idle);
    return u;
}

static void upstream_idle_free(struct upstream_idle *it)
{
    TAILQ_REMOVE(&it->pool->idle, it, link);
    it->pool->n--;
    tls_close_notify(it->bev); /* an orderly end; lets the server keep the session */
    bufferevent_free(it->bev);
    free(it);
}

void upstream_free(struct upstream *u)
{
    size_t i;

    if (u == NULL)
        return;
    for (i = 0; i < u->n; i++)
        upstream_pool_flush(u, (unsigned)i);
    free(u);
}

void upstream_stop(struct upstream *u)
{
    u->stopping = true;
}

/* Anything from an idle connection (data, EOF, error, idle timeout) ends it. */
static void upstream_idle_read_cb(struct bufferevent *bev, void *arg)
{
    upstream_idle_free(arg);
}

static void upstream_idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
    upstream_idle_free(arg);
}

/* A pooled connection whose FIN (or RST) arrived but whose idle callback has
 * not run yet must not carry a request: peek at the socket first. Through
 * TLS the same holds: an idle connection has nothing to read, so any byte
 * waiting (a close_notify, an alert) means it is closing too. */
static bool upstream_alive(struct bufferevent *bev)
{
    char c;
    ssize_t n = recv(bufferevent_getfd(bev), &c, 1, MSG_PEEK | MSG_DONTWAIT);

    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct bufferevent *upstream_conn_get(struct upstream *u, unsigned be, unsigned gen, bool *reused)
{
    struct upstream_pool *p = &u->pool[be];

    while (!TAILQ_EMPTY(&p->idle)) {
        struct upstream_idle *it = TAILQ_FIRST(&p->idle);
        struct bufferevent *bev = it->bev;

        if (it->gen != gen || !upstream_alive(bev)) { /* an old address, or closing */
            upstream_idle_free(it);
            continue;
        }
        TAILQ_REMOVE(&p->idle, it, link);
        p->n--;
        free(it);
        bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
        bufferevent_set_timeouts(bev, NULL, NULL);
        *reused = true;
        return bev;
    }
    *reused = false;
    return upstream_conn_new(u, be);
}

struct bufferevent *upstream_conn_new(struct upstream *u, unsigned be)
{
    struct sockaddr_storage ss;
    struct bufferevent *bev;
    socklen_t len;

    if (u->tls[be] != NULL)
        bev = tls_client_bev(u->tls[be], u->base); /* handshakes once connected */
    else
        bev = bufferevent_socket_new(u->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return NULL;
    u->addr_of(u->ud, be, &ss, &len);
    if (len == 0 || bufferevent_socket_connect(bev, (const struct sockaddr *)&ss, (int)len) < 0) {
        bufferevent_free(bev);
        return NULL;
    }
    sock_nodelay(bufferevent_getfd(bev));
    return bev;
}

void upstream_conn_put(struct upstream *u, unsigned be, unsigned gen, struct bufferevent *bev)
{
    struct upstream_pool *p = &u->pool[be];
    struct upstream_idle *it;
    struct timeval tv = { UPSTREAM_IDLE_MS / 1000, (UPSTREAM_IDLE_MS % 1000) * 1000 };

    if (p->n >= u->keepalive || u->stopping ||
        evbuffer_get_length(bufferevent_get_input(bev)) != 0 ||
        (it = malloc(sizeof(*it))) == NULL) {
        tls_close_notify(bev);
        bufferevent_free(bev);
        return;
    }
    it->bev = bev;
    it->pool = p;
    it->gen = gen;
    TAILQ_INSERT_HEAD(&p->idle, it, link);
    p->n++;
    bufferevent_setcb(bev, upstream_idle_read_cb, NULL, upstream_idle_event_cb, it);
    bufferevent_set_timeouts(bev, &tv, NULL);
    bufferevent_enable(bev, EV_READ);
}

void upstream_pool_flush(struct upstream *u, unsigned be)
{
    while (!TAILQ_EMPTY(&u->pool[be].idle))
        upstream_idle_free(TAILQ_FIRST(&u->pool[be].idle));
}

size_t upstream_pool_idle(const struct upstream *u, unsigned be)
{
    return u->pool[be].n;
}
