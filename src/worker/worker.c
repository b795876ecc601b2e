/* worker: one event loop with its listeners (clients, and the admin one when
 * admin_listen is set), connections and per-loop state. */
#include "pitot/worker/worker.h"

#include <errno.h>
#include <stdatomic.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "pitot/format/config.h"
#include "pitot/io/tls.h"
#include "pitot/io/upstream.h"
#include "pitot/measure/metrics.h"
#include "pitot/measure/otlp.h"
#include "pitot/route/queue.h"
#include "pitot/route/ratelimit_redis.h"
#include "pitot/route/router.h"
#include "pitot/serve/front.h"
#include "pitot/serve/relay.h"
#include "pitot/util/clock.h"
#include "pitot/util/log.h"
#include "pitot/util/sock.h"

/* How long the listener rests after accept() ran out of descriptors or memory
 * (or until a client connection closes): nginx and HAProxy do the same rather
 * than spin on a listening socket that stays readable. */
#define WORKER_ACCEPT_PAUSE_MS 100
#define WORKER_ACCEPT_PAUSE_TEXT "100 ms"
#define WORKER_ACCEPT_LOG_US 1000000 /* at most one line a second about it */

/* Tokens for one JSON document: a non-streamed response with logprobs can
 * need many; this is scratch per loop, not per request. */
#define WORKER_JSON_TOKENS 65536

static void worker_conn_closed(void *ud);

/* The lines about accept() failures and a full max_clients are the
 * process's, whichever worker saw it: at most one of each a second, with the
 * count since the last. */
struct worker_note {
    _Atomic uint64_t logged_us; /* monotonic: the last line; 0 none */
    _Atomic unsigned count;     /* events not in a line yet */
};

static struct worker_note worker_accept_fails, worker_full_closed;

/* Counts an event; true (and *n the count, reset) when a line is due now. */
static bool worker_note_due(struct worker_note *nt, unsigned *n)
{
    uint64_t now = clk_now_us(), last;

    atomic_fetch_add_explicit(&nt->count, 1, memory_order_relaxed);
    last = atomic_load_explicit(&nt->logged_us, memory_order_relaxed);
    if (last != 0 && now - last < WORKER_ACCEPT_LOG_US)
        return false;
    if (!atomic_compare_exchange_strong(&nt->logged_us, &last, now))
        return false; /* another worker writes this second's line */
    *n = atomic_exchange_explicit(&nt->count, 0, memory_order_relaxed);
    return true;
}

static void worker_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                             int salen, void *arg)
{
    struct worker *w = arg;

    if (atomic_load_explicit(w->lp.clients, memory_order_relaxed) >= w->lp.cfg->max_clients &&
        !w->lp.draining && !w->lp.stopping) {
        /* Full: closed at once (front_accept would too), and said so. */
        unsigned n;
        if (worker_note_due(&worker_full_closed, &n))
            log_warn("max_clients (%u) reached: %u new connection%s closed since the last report",
                     w->lp.cfg->max_clients, n, n == 1 ? "" : "s");
        evutil_closesocket(fd);
        return;
    }
    front_accept(&w->lp, fd, sa, salen, false);
}

static void worker_admin_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                                   struct sockaddr *sa, int salen, void *arg)
{
    struct worker *w = arg;

    front_accept(&w->lp, fd, sa, salen, true);
}

static void worker_accept_resume(struct worker *w)
{
    if (!w->accept_paused)
        return;
    w->accept_paused = false;
    if (w->accept_ev)
        event_del(w->accept_ev);
    if (w->lp.draining || w->lp.stopping)
        return;
    if (w->lst)
        evconnlistener_enable(w->lst);
    if (w->admin_lst)
        evconnlistener_enable(w->admin_lst);
}

static void worker_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    worker_accept_resume(arg);
}

/* accept() failed for a reason libevent does not retry by itself. Out of
 * descriptors (EMFILE, ENFILE) or memory (ENOBUFS, ENOMEM), the connection
 * stays in the backlog and the socket stays readable: the listener rests for
 * WORKER_ACCEPT_PAUSE_MS, or until a client connection closes, instead of
 * spinning. One line a second at most, with the failures since the last. */
static void worker_accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct worker *w = arg;
    int err = EVUTIL_SOCKET_ERROR();
    bool rest = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
    unsigned n;

    if (worker_note_due(&worker_accept_fails, &n)) {
        log_error("accept: %s (%u time%s since the last report), %u clients%s",
                  evutil_socket_error_to_string(err), n, n == 1 ? "" : "s",
                  atomic_load_explicit(w->lp.clients, memory_order_relaxed),
                  rest ? "; new connections wait until one closes or " WORKER_ACCEPT_PAUSE_TEXT
                         " pass"
                       : "");
    }
    if (rest && w->accept_ev && !w->accept_paused) {
        struct timeval tv = { 0, WORKER_ACCEPT_PAUSE_MS * 1000 };
        /* descriptors are the process's: both listeners rest */
        if (w->lst)
            evconnlistener_disable(w->lst);
        if (w->admin_lst)
            evconnlistener_disable(w->admin_lst);
        w->accept_paused = true;
        evtimer_add(w->accept_ev, &tv);
    }
}

static void worker_reap_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    while (!TAILQ_EMPTY(&w->lp.reap)) {
        struct front_conn *fc = TAILQ_FIRST(&w->lp.reap);
        TAILQ_REMOVE(&w->lp.reap, fc, link);
        front_free(fc);
    }
    relay_reap(&w->lp);
}

/* A listening socket on host:port whose connections go to cb; `what` names
 * the config key in messages. NULL with a message on failure. */
static struct evconnlistener *worker_listen(struct worker *w, const char *what, const char *host,
                                            uint16_t port, evconnlistener_cb cb, char *err,
                                            size_t errlen)
{
    struct evconnlistener *l;
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = sock_resolve(host, port, &ss, &sslen, 1);

    if (rc != 0) {
        snprintf(err, errlen, "%s %s:%u: %s", what, host, port, gai_strerror(rc));
        return NULL;
    }
    /* SO_REUSEPORT: every worker listens on the port, the kernel spreads
     * the connections */
    l = evconnlistener_new_bind(w->lp.base, cb, w,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT,
                                511, (struct sockaddr *)&ss, (int)sslen);
    if (l == NULL)
        snprintf(err, errlen, "%s %s:%u: %s", what, host, port,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    else /* the arrival of a request's first bytes, from the kernel (see front) */
        sock_rx_stamps(evconnlistener_get_fd(l));
    return l;
}

/* The TLS contexts: the listener's when it has certificates, one per https
 * backend name (its address slots share it). */
static int worker_tls_start(struct worker *w, char *err, size_t errlen)
{
    if (w->lp.cfg->ntls_certs > 0 && (w->lp.tls = tls_server_new(w->lp.cfg, err, errlen)) == NULL)
        return -1;
    return 0;
}

int worker_tls_reload(struct worker *w)
{
    char msg[448];
    int failed = 0;

    if (w->lp.tls && tls_server_reload(w->lp.tls, msg, sizeof(msg)) != 0) {
        log_error("reloading the listener's certificates: %s; the old ones stay", msg);
        failed++;
    }
    return failed;
}

/* upstream's view of the router: where a backend is now */
static void worker_addr_of(void *ud, unsigned be, struct sockaddr_storage *ss, socklen_t *len)
{
    router_addr(ud, be, ss, len);
}

static void worker_cmd_cb(evutil_socket_t fd, short what, void *arg);

struct worker *worker_new(const struct worker_setup *su, char *err, size_t errlen)
{
    const struct cfg *c = su->cfg;
    struct worker *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->index = su->index;
    w->ended = su->ended;
    w->draining = su->draining;
    w->ud = su->ud;
    w->lp.cfg = c;
    w->lp.refusals = su->refusals;
    w->lp.alog = su->alog;
    w->lp.base = su->base;
    w->lp.met = su->met;
    w->lp.regs = su->regs;
    w->lp.nregs = su->nregs;
    w->lp.rt = su->rt;
    w->lp.ratelimit = su->ratelimit;
    w->lp.clients = su->clients;
    w->lp.otlp = su->otlp;
    w->lp.status = su->status;
    TAILQ_INIT(&w->lp.conns);
    TAILQ_INIT(&w->lp.reap);
    loop_seed(&w->lp);
    w->lp.closed = worker_conn_closed;
    w->lp.ud = w;
    w->lp.toks.cap = WORKER_JSON_TOKENS;
    w->lp.toks.tok = malloc(json_toks_size(WORKER_JSON_TOKENS));
    w->lp.scratch_cap = c->max_event_bytes;
    w->lp.scratch = malloc(w->lp.scratch_cap);
    w->lp.upstream = upstream_new(w->lp.base, c->nbackends, c->upstream_keepalive, worker_addr_of,
                                  su->rt, su->rt->tls);
    w->lp.queue = queue_port_new(su->queue, w->lp.base, w->lp.met, &relay_queue_ops);
    w->lp.reap_ev = event_new(w->lp.base, -1, 0, worker_reap_cb, w);
    w->accept_ev = evtimer_new(w->lp.base, worker_accept_resume_cb, w);
    w->cmd_ev = event_new(w->lp.base, -1, 0, worker_cmd_cb, w);
    if (c->ratelimit_redis[0] != '\0' && (w->lp.rl_redis = rl_redis_new(w->lp.base, c)) == NULL) {
        snprintf(err, errlen, "ratelimit.redis: cannot set up the connection");
        worker_free(w);
        return NULL;
    }
    if (w->lp.toks.tok == NULL || w->lp.scratch == NULL || w->lp.upstream == NULL ||
        w->lp.queue == NULL || w->lp.reap_ev == NULL || w->accept_ev == NULL || w->cmd_ev == NULL) {
        snprintf(err, errlen, "out of memory");
        worker_free(w);
        return NULL;
    }
    if (worker_tls_start(w, err, errlen) != 0) {
        worker_free(w);
        return NULL;
    }
    w->lst =
        worker_listen(w, "listen", c->listen_host, su->listen_port, worker_accept_cb, err, errlen);
    if (w->lst == NULL) {
        worker_free(w);
        return NULL;
    }
    evconnlistener_set_error_cb(w->lst, worker_accept_error_cb);
    if (c->admin) {
        w->admin_lst = worker_listen(w, "admin_listen", c->admin_host, su->admin_port,
                                     worker_admin_accept_cb, err, errlen);
        if (w->admin_lst == NULL) {
            worker_free(w);
            return NULL;
        }
        evconnlistener_set_error_cb(w->admin_lst, worker_accept_error_cb);
    }
    return w;
}

int worker_run(struct worker *w)
{
    event_base_dispatch(w->lp.base);
    return 0;
}

void worker_stop(struct worker *w)
{
    w->lp.stopping = true;
    if (w->lp.upstream)
        upstream_stop(w->lp.upstream);
    if (w->lst)
        evconnlistener_disable(w->lst);
    if (w->admin_lst)
        evconnlistener_disable(w->admin_lst);
    if (w->drain_ev)
        event_del(w->drain_ev);
    /* worker 0's loop also runs the probes and the signals: its owner ends it */
    if (w->index != 0)
        event_base_loopexit(w->lp.base, NULL);
    if (!w->ended_called) {
        w->ended_called = true;
        if (w->ended)
            w->ended(w->ud, w->index);
    }
}

void worker_set_cfg(struct worker *w, const struct cfg *c, const struct refusal_phrases *ph)
{
    const struct cfg *old = w->lp.cfg;
    size_t i;

    /* models a reload names get their label now, as learned names do
     * (while max_model_labels has room; on this loop: its registry's only
     * writer) */
    for (i = 0; i < c->nmodels; i++)
        (void)met_model_lookup(w->lp.met, span_cstr(c->models[i]));

    if (w->lp.tls) {
        /* the listener reads its certificates from c from now on: other
         * files load at once, for new handshakes */
        tls_server_set_cfg(w->lp.tls, c);
        if (!cfg_certs_same(old, c))
            worker_tls_reload(w);
    }
    w->lp.cfg = c;
    w->lp.refusals = ph;
    cfg_drop(old);
}

void worker_post_cfg(struct worker *w, const struct cfg *c, const struct refusal_phrases *ph)
{
    atomic_store_explicit(&w->cmd_refusals, ph, memory_order_relaxed);
    cfg_drop(atomic_exchange_explicit(&w->cmd_cfg, c, memory_order_acq_rel));
    worker_post(w, WORKER_CMD_CONFIG, 0);
}

void worker_post(struct worker *w, unsigned cmds, unsigned drain_ms)
{
    if (cmds & WORKER_CMD_DRAIN)
        atomic_store_explicit(&w->cmd_drain_ms, drain_ms, memory_order_relaxed);
    atomic_fetch_or_explicit(&w->cmd, cmds, memory_order_release);
    event_active(w->cmd_ev, EV_READ, 0);
}

static void worker_cmd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    unsigned cmds = atomic_exchange_explicit(&w->cmd, 0, memory_order_acquire);

    if (cmds & WORKER_CMD_TLS_RELOAD)
        worker_tls_reload(w);
    if (cmds & WORKER_CMD_CONFIG) {
        const struct cfg *c = atomic_exchange_explicit(&w->cmd_cfg, NULL, memory_order_acq_rel);
        if (c)
            worker_set_cfg(w, c, atomic_load_explicit(&w->cmd_refusals, memory_order_relaxed));
    }
    if (cmds & WORKER_CMD_STOP)
        worker_stop(w);
    else if (cmds & WORKER_CMD_DRAIN) {
        unsigned left =
            worker_drain(w, atomic_load_explicit(&w->cmd_drain_ms, memory_order_relaxed));
        if (w->draining)
            w->draining(w->ud, w->index, left);
    }
}

static void worker_drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    if (w->lp.nconns)
        log_debug("worker %u: drain_timeout reached, cutting %u connection%s", w->index,
                  w->lp.nconns, w->lp.nconns == 1 ? "" : "s");
    /* front_cut always takes the connection off the list */
    while (!TAILQ_EMPTY(&w->lp.conns)) {
        front_cut(TAILQ_FIRST(&w->lp.conns));
        w->drain_cut++;
    }
    worker_stop(w);
}

unsigned worker_drain(struct worker *w, unsigned drain_ms)
{
    struct timeval tv = { drain_ms / 1000, (long)(drain_ms % 1000) * 1000 };
    struct front_conn *fc, *next;

    if (w->lp.draining || w->lp.stopping)
        return w->lp.nconns;
    if (drain_ms == 0) {
        worker_stop(w);
        return w->lp.nconns;
    }
    w->lp.draining = true;
    /* Closed, not disabled: a new connection is refused at once rather than
     * left in the backlog until the process exits. */
    if (w->lst) {
        evconnlistener_free(w->lst);
        w->lst = NULL;
    }
    if (w->admin_lst) {
        evconnlistener_free(w->admin_lst);
        w->admin_lst = NULL;
    }
    for (fc = TAILQ_FIRST(&w->lp.conns); fc != NULL; fc = next) {
        next = TAILQ_NEXT(fc, link);
        if (fc->st == FRONT_ST_IDLE || fc->st == FRONT_ST_HANDSHAKE)
            front_close(fc); /* takes fc off the list, nothing else */
    }
    if (w->lp.nconns == 0) {
        log_debug("worker %u: drained at once, no request in progress", w->index);
        worker_stop(w);
        return 0;
    }
    log_debug("worker %u: draining, %u connection%s with a request in progress", w->index,
              w->lp.nconns, w->lp.nconns == 1 ? "" : "s");
    w->drain_ev = evtimer_new(w->lp.base, worker_drain_timeout_cb, w);
    if (w->drain_ev == NULL) {
        worker_drain_timeout_cb(-1, 0, w); /* no deadline possible: stop as before */
        return 0;
    }
    evtimer_add(w->drain_ev, &tv);
    return w->lp.nconns;
}

/* A client connection closed: ends a drain with none left, and frees the
 * listener from a pause for want of descriptors. */
static void worker_conn_closed(void *ud)
{
    struct worker *w = ud;

    worker_accept_resume(w); /* a descriptor is free again */
    if (w->lp.draining && w->lp.nconns == 0 && !w->lp.stopping) {
        log_debug("worker %u: drained", w->index);
        worker_stop(w);
    }
}

void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    while (!TAILQ_EMPTY(&w->lp.conns))
        front_close(TAILQ_FIRST(&w->lp.conns));
    if (w->lp.reap_ev)
        worker_reap_cb(-1, 0, w);
    if (w->lst)
        evconnlistener_free(w->lst);
    if (w->admin_lst)
        evconnlistener_free(w->admin_lst);
    upstream_free(w->lp.upstream);
    rl_redis_free(w->lp.rl_redis); /* after every relay: none waits for it */
    if (w->lp.reap_ev)
        event_free(w->lp.reap_ev);
    if (w->drain_ev)
        event_free(w->drain_ev);
    if (w->accept_ev)
        event_free(w->accept_ev);
    if (w->cmd_ev)
        event_free(w->cmd_ev);
    queue_port_free(w->lp.queue);
    cfg_drop(atomic_exchange_explicit(&w->cmd_cfg, NULL, memory_order_relaxed));
    cfg_drop(w->lp.cfg); /* after every connection and request */
    /* after every connection: each SSL holds its own reference anyway */
    tls_server_free(w->lp.tls);
    free(w->lp.toks.tok);
    free(w->lp.scratch);
    free(w);
}

/* The bound port of a listener, 0 without one. */
static unsigned worker_bound_port(struct evconnlistener *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = l ? evconnlistener_get_fd(l) : -1;

    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

unsigned worker_listen_port(const struct worker *w)
{
    return worker_bound_port(w->lst);
}

unsigned worker_admin_port(const struct worker *w)
{
    return worker_bound_port(w->admin_lst);
}
