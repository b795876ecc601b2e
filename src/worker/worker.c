/* worker: one event loop with its listeners (clients, and the admin one when
 * admin_listen is set), connections and per-loop state. */
#include "pitot/worker/worker.h"

#include <errno.h>
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
#include "pitot/util/clock.h"
#include "pitot/route/dns.h"
#include "pitot/serve/front.h"
#include "pitot/route/health.h"
#include "pitot/measure/metrics.h"
#include "pitot/route/queue.h"
#include "pitot/measure/otlp.h"
#include "pitot/serve/relay.h"
#include "pitot/route/scrape.h"
#include "pitot/io/tls.h"
#include "pitot/io/upstream.h"
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

/* True (and the clock reset) when a rate-limited line may be printed now. */
static void worker_conn_closed(void *ud);

static bool worker_log_due(uint64_t *last_us, uint64_t now_us)
{
    if (*last_us != 0 && now_us - *last_us < WORKER_ACCEPT_LOG_US)
        return false;
    *last_us = now_us;
    return true;
}

static void worker_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                             int salen, void *arg)
{
    struct worker *w = arg;

    if (w->lp.nconns - w->lp.nadmin >= w->lp.cfg->max_clients && !w->lp.draining &&
        !w->lp.stopping) {
        /* Full: closed at once (front_accept would too), and said so. */
        w->full_closed++;
        if (worker_log_due(&w->full_logged_us, clk_now_us())) {
            fprintf(stderr,
                    "pitot: max_clients (%u) reached: %u new connection%s closed since "
                    "the last report\n",
                    w->lp.cfg->max_clients, w->full_closed, w->full_closed == 1 ? "" : "s");
            w->full_closed = 0;
        }
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
    uint64_t now = clk_now_us();

    w->accept_fails++;
    if (worker_log_due(&w->accept_logged_us, now)) {
        fprintf(stderr, "pitot: accept: %s (%u time%s since the last report), %u clients%s\n",
                evutil_socket_error_to_string(err), w->accept_fails,
                w->accept_fails == 1 ? "" : "s", w->lp.nconns,
                rest ? "; new connections wait until one closes or " WORKER_ACCEPT_PAUSE_TEXT
                       " pass"
                     : "");
        w->accept_fails = 0;
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
    l = evconnlistener_new_bind(w->lp.base, cb, w, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 511,
                                (struct sockaddr *)&ss, (int)sslen);
    if (l == NULL)
        snprintf(err, errlen, "%s %s:%u: %s", what, host, port,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    return l;
}

/* The span exporter, when opentelemetry.traces has an endpoint. The
 * collector's name is resolved here, once: never on the loop later. */
static int worker_otlp_start(struct worker *w, char *err, size_t errlen)
{
    const struct cfg *c = w->lp.cfg;
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc;

    if (c->otel_trace_url[0] == '\0')
        return 0;
    rc = sock_resolve(c->otel_trace_host, c->otel_trace_port, &ss, &sslen, 0);
    if (rc != 0) {
        snprintf(err, errlen, "opentelemetry.traces.endpoint: cannot resolve %s: %s",
                 c->otel_trace_host, gai_strerror(rc));
        return -1;
    }
    if (c->otel_trace_https) {
        w->otlp_tls = tls_client_new(&c->otel_tls, c->otel_trace_host, err, errlen);
        if (w->otlp_tls == NULL)
            return -1;
    }
    w->lp.otlp = otlp_new(w->lp.base, c, w->lp.met, w->otlp_tls, (struct sockaddr *)&ss, sslen);
    if (w->lp.otlp == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
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
        fprintf(stderr,
                "pitot: error: reloading the listener's certificates: %s; the old ones "
                "stay\n",
                msg);
        failed++;
    }
    failed += router_tls_reload(&w->lp.rt);
    if (w->otlp_tls && tls_client_reload(w->otlp_tls, msg, sizeof(msg)) != 0) {
        fprintf(stderr,
                "pitot: error: opentelemetry.traces: reloading TLS files: %s; the old "
                "ones stay\n",
                msg);
        failed++;
    }
    return failed;
}

/* upstream's view of the router: where a backend is now */
static void worker_addr_of(void *ud, unsigned be, struct sockaddr_storage *ss, socklen_t *len)
{
    router_addr(ud, be, ss, len);
}

/* router callbacks: a backend may take more now; an address changed */
static void worker_room(void *ud)
{
    struct worker *w = ud;

    if (w->lp.queue)
        queue_kick(w->lp.queue);
}

static void worker_readdressed(void *ud, unsigned be)
{
    struct worker *w = ud;

    if (w->lp.upstream)
        upstream_pool_flush(w->lp.upstream, be);
}

struct worker *worker_new(const struct cfg *c, const struct refusal_phrases *refusals,
                          struct alog *alog, char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->lp.cfg = c;
    w->lp.refusals = refusals;
    w->lp.alog = alog;
    TAILQ_INIT(&w->lp.conns);
    TAILQ_INIT(&w->lp.reap);
    loop_seed(&w->lp);
    w->lp.closed = worker_conn_closed;
    w->lp.ud = w;
    w->lp.base = event_base_new();
    w->lp.met = met_registry_new(c);
    w->lp.toks.cap = WORKER_JSON_TOKENS;
    w->lp.toks.tok = malloc(json_toks_size(WORKER_JSON_TOKENS));
    w->lp.scratch_cap = c->max_event_bytes;
    w->lp.scratch = malloc(w->lp.scratch_cap);
    if (w->lp.base == NULL || w->lp.met == NULL || w->lp.toks.tok == NULL ||
        w->lp.scratch == NULL) {
        snprintf(err, errlen, "out of memory");
        worker_free(w);
        return NULL;
    }
    if (router_init(&w->lp.rt, w->lp.base, c, w->lp.met, &w->lp.toks, err, errlen) != 0) {
        worker_free(w);
        return NULL;
    }
    w->lp.rt_ready = true;
    w->lp.rt.room = worker_room;
    w->lp.rt.readdressed = worker_readdressed;
    w->lp.rt.ud = w;
    w->lp.upstream = upstream_new(w->lp.base, c->nbackends, c->upstream_keepalive, worker_addr_of,
                                  &w->lp.rt, w->lp.rt.tls);
    if (w->lp.upstream == NULL) {
        snprintf(err, errlen, "out of memory");
        worker_free(w);
        return NULL;
    }
    if (worker_tls_start(w, err, errlen) != 0) {
        worker_free(w);
        return NULL;
    }
    w->lp.reap_ev = event_new(w->lp.base, -1, 0, worker_reap_cb, w);
    w->accept_ev = evtimer_new(w->lp.base, worker_accept_resume_cb, w);
    /* before listening: the first answers come while nothing else runs */
    w->dns = dns_new(&w->lp.rt, err, errlen);
    if (w->dns == NULL) {
        worker_free(w);
        return NULL;
    }
    if (w->lp.reap_ev == NULL || w->accept_ev == NULL) {
        snprintf(err, errlen, "out of memory");
        worker_free(w);
        return NULL;
    }
    w->lst =
        worker_listen(w, "listen", c->listen_host, c->listen_port, worker_accept_cb, err, errlen);
    if (w->lst == NULL) {
        worker_free(w);
        return NULL;
    }
    evconnlistener_set_error_cb(w->lst, worker_accept_error_cb);
    if (c->admin) {
        w->admin_lst = worker_listen(w, "admin_listen", c->admin_host, c->admin_port,
                                     worker_admin_accept_cb, err, errlen);
        if (w->admin_lst == NULL) {
            worker_free(w);
            return NULL;
        }
        evconnlistener_set_error_cb(w->admin_lst, worker_accept_error_cb);
    }
    w->lp.queue = queue_new(w->lp.base, c, w->lp.met, &relay_queue_ops);
    w->lp.rt.health = w->lp.queue ? health_new(&w->lp.rt) : NULL;
    w->lp.rt.scrape = w->lp.rt.health ? scrape_new(&w->lp.rt) : NULL;
    if (w->lp.rt.scrape == NULL) {
        snprintf(err, errlen, "out of memory");
        worker_free(w);
        return NULL;
    }
    if (worker_otlp_start(w, err, errlen) != 0) {
        worker_free(w);
        return NULL;
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
    w->lp.rt.stopping = true;
    if (w->lp.upstream)
        upstream_stop(w->lp.upstream);
    if (w->lst)
        evconnlistener_disable(w->lst);
    if (w->admin_lst)
        evconnlistener_disable(w->admin_lst);
    if (w->drain_ev)
        event_del(w->drain_ev);
    event_base_loopexit(w->lp.base, NULL);
}

static void worker_drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

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
        worker_stop(w);
        return 0;
    }
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
    if (w->lp.draining && w->lp.nconns == 0 && !w->lp.stopping)
        worker_stop(w);
}

void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    while (!TAILQ_EMPTY(&w->lp.conns))
        front_close(TAILQ_FIRST(&w->lp.conns));
    if (w->lp.reap_ev)
        worker_reap_cb(-1, 0, w);
    dns_free(w->dns);
    otlp_free(w->lp.otlp); /* after the connections: their relays still add spans */
    scrape_free(w->lp.rt.scrape);
    health_free(w->lp.rt.health);
    if (w->lst)
        evconnlistener_free(w->lst);
    if (w->admin_lst)
        evconnlistener_free(w->admin_lst);
    upstream_free(w->lp.upstream);
    if (w->lp.reap_ev)
        event_free(w->lp.reap_ev);
    if (w->drain_ev)
        event_free(w->drain_ev);
    if (w->accept_ev)
        event_free(w->accept_ev);
    queue_free(w->lp.queue);
    /* after every connection: each SSL holds its own reference anyway */
    tls_server_free(w->lp.tls);
    tls_client_free(w->otlp_tls);
    met_registry_free(w->lp.met);
    free(w->lp.toks.tok);
    free(w->lp.scratch);
    if (w->lp.rt_ready)
        router_release(&w->lp.rt);
    if (w->lp.base)
        event_base_free(w->lp.base);
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
