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

#include "pitot/format/config.h"
#include "pitot/io/tls.h"
#include "pitot/worker/worker.h"

#define UPSTREAM_IDLE_MS 4000

struct upstream_idle {
    struct bufferevent *bev;    /* owned */
    struct upstream_pool *pool; /* borrowed */
    TAILQ_ENTRY(upstream_idle) link;
};

struct upstream_pool {
    struct worker *w; /* borrowed */
    unsigned be;
    size_t n;
    TAILQ_HEAD(, upstream_idle) idle;
};

struct upstream_pool *upstream_pools_new(struct worker *w, size_t nbackends)
{
    struct upstream_pool *p = calloc(nbackends ? nbackends : 1, sizeof(*p));
    size_t i;

    if (p == NULL)
        return NULL;
    for (i = 0; i < nbackends; i++) {
        p[i].w = w;
        p[i].be = (unsigned)i;
        TAILQ_INIT(&p[i].idle);
    }
    return p;
}

static void upstream_idle_free(struct upstream_idle *it)
{
    TAILQ_REMOVE(&it->pool->idle, it, link);
    it->pool->n--;
    tls_close_notify(it->bev); /* an orderly end; lets the server keep the session */
    bufferevent_free(it->bev);
    free(it);
}

void upstream_pools_free(struct upstream_pool *pools, size_t nbackends)
{
    size_t i;

    if (pools == NULL)
        return;
    for (i = 0; i < nbackends; i++)
        while (!TAILQ_EMPTY(&pools[i].idle))
            upstream_idle_free(TAILQ_FIRST(&pools[i].idle));
    free(pools);
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

struct bufferevent *upstream_conn_get(struct worker *w, unsigned be, bool *reused)
{
    struct upstream_pool *p = &w->pools[be];

    while (!TAILQ_EMPTY(&p->idle)) {
        struct upstream_idle *it = TAILQ_FIRST(&p->idle);
        struct bufferevent *bev = it->bev;

        if (!upstream_alive(bev)) {
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
    return upstream_conn_new(w, be);
}

struct bufferevent *upstream_conn_new(struct worker *w, unsigned be)
{
    struct bufferevent *bev;

    if (w->be_tls[be] != NULL)
        bev = tls_client_bev(w->be_tls[be], w->base); /* handshakes once connected */
    else
        bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return NULL;
    if (bufferevent_socket_connect(bev, (struct sockaddr *)&w->be_addr[be], w->be_addrlen[be]) <
        0) {
        bufferevent_free(bev);
        return NULL;
    }
    worker_sock_nodelay(bufferevent_getfd(bev));
    return bev;
}

void upstream_conn_put(struct worker *w, unsigned be, struct bufferevent *bev)
{
    struct upstream_pool *p = &w->pools[be];
    struct upstream_idle *it;
    struct timeval tv = { UPSTREAM_IDLE_MS / 1000, (UPSTREAM_IDLE_MS % 1000) * 1000 };

    if (p->n >= w->cfg->upstream_keepalive || w->stopping ||
        evbuffer_get_length(bufferevent_get_input(bev)) != 0 ||
        (it = malloc(sizeof(*it))) == NULL) {
        tls_close_notify(bev);
        bufferevent_free(bev);
        return;
    }
    it->bev = bev;
    it->pool = p;
    TAILQ_INSERT_HEAD(&p->idle, it, link);
    p->n++;
    bufferevent_setcb(bev, upstream_idle_read_cb, NULL, upstream_idle_event_cb, it);
    bufferevent_set_timeouts(bev, &tv, NULL);
    bufferevent_enable(bev, EV_READ);
}

void upstream_pool_flush(struct worker *w, unsigned be)
{
    while (!TAILQ_EMPTY(&w->pools[be].idle))
        upstream_idle_free(TAILQ_FIRST(&w->pools[be].idle));
}

size_t upstream_pool_idle(const struct worker *w, unsigned be)
{
    return w->pools[be].n;
}
