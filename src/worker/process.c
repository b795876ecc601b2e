/* process: the workers, their threads, and the state they share: the router
 * with its probes, scrapes and lookups on worker 0's loop, the overload
 * queue, the count of client connections. */
#include "pitot/worker/process.h"

#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "pitot/format/config.h"
#include "pitot/io/tls.h"
#include "pitot/io/upstream.h"
#include "pitot/measure/otlp.h"
#include "pitot/measure/metrics.h"
#include "pitot/route/dns.h"
#include "pitot/route/health.h"
#include "pitot/route/queue.h"
#include "pitot/route/ratelimit.h"
#include "pitot/route/router.h"
#include "pitot/route/scrape.h"
#include "pitot/util/log.h"
#include "pitot/util/sock.h"
#include "pitot/serve/status.h"
#include "pitot/worker/worker.h"

/* Tokens for the JSON bodies of scrapes (/v1/models, /props), on worker 0. */
#define PROCESS_JSON_TOKENS 4096

struct process {
    const struct cfg *cfg;       /* in force: the first (borrowed) or a reload's (held) */
    size_t n;                    /* workers */
    struct event_base **base;    /* owned, per worker */
    struct met_registry **regs;  /* owned, per worker */
    struct worker **w;           /* owned, per worker */
    struct router rt;            /* owned: the backends, shared */
    bool rt_ready;               /* rt is set up */
    struct json_toks toks;       /* owned: the router's scratch (worker 0) */
    struct queue *queue;         /* owned: shared */
    struct ratelimit *ratelimit; /* owned: shared, the tiers' and keys' limits */
    struct dns *dns;             /* owned: on worker 0's loop */
    struct otlp *otlp;           /* owned: the span exporter, on worker 0's loop;
                                         NULL when traces are off */
    struct tls_client *otlp_tls; /* owned: NULL unless the collector is https:// */
    struct status *status;       /* owned: the status page's, sampled on worker 0's
                                    loop; NULL without admin_listen */
    _Atomic unsigned clients;    /* client connections of every worker */
    _Atomic unsigned running;    /* workers not ended yet */
    _Atomic bool draining;
    pthread_mutex_t ack_lock; /* the workers' answers to a posted drain */
    pthread_cond_t ack_cond;
    unsigned acks, acked_left;
};

/* A worker ended (on its thread): when the last one did, worker 0's loop
 * ends too. */
static void process_worker_ended(void *ud, unsigned index)
{
    struct process *p = ud;

    (void)index;
    if (atomic_fetch_sub_explicit(&p->running, 1, memory_order_acq_rel) == 1) {
        p->rt.stopping = true;
        event_base_loopexit(p->base[0], NULL);
    }
}

/* The router's news: a backend may take requests (the queue may move: worker
 * 0 kicks, and wakes the loop that holds the head); an address changed
 * (worker 0 drops its idle connections at once, the others when they next
 * look). Both on worker 0's loop. */
static void process_room(void *ud)
{
    struct process *p = ud;

    if (p->w && p->w[0])
        queue_kick(p->w[0]->lp.queue);
}

static void process_readdressed(void *ud, unsigned be)
{
    struct process *p = ud;

    if (p->w && p->w[0])
        upstream_pool_flush(p->w[0]->lp.upstream, be);
}

/* The span exporter, when opentelemetry.traces has an endpoint: one for
 * every worker, on worker 0's loop, counting into worker 0's registry. The
 * collector's name is resolved here, once: never on a loop later. */
static int process_otlp_start(struct process *p, char *err, size_t errlen)
{
    const struct cfg *c = p->cfg;
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
        p->otlp_tls = tls_client_new(&c->otel_tls, c->otel_trace_host, err, errlen);
        if (p->otlp_tls == NULL)
            return -1;
    }
    p->otlp = otlp_new(p->base[0], c, p->regs[0], p->otlp_tls, (struct sockaddr *)&ss, sslen);
    if (p->otlp == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* A worker began its drain: how many connections it has left. */
static void process_worker_draining(void *ud, unsigned index, unsigned left)
{
    struct process *p = ud;

    (void)index;
    pthread_mutex_lock(&p->ack_lock);
    p->acks++;
    p->acked_left += left;
    pthread_cond_signal(&p->ack_cond);
    pthread_mutex_unlock(&p->ack_lock);
}

static unsigned process_online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

/* A loop's event base. epoll's changelist: interest changed and changed
 * back within one turn of the loop (a bufferevent's write interest around a
 * write that completed, a pooled connection's read interest while it is
 * handed over) makes no epoll_ctl; pitot never dup()s a socket, the case
 * libevent warns about. */
static struct event_base *process_base_new(void)
{
    struct event_config *ec = event_config_new();
    struct event_base *b;

    if (ec == NULL)
        return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    b = event_base_new_with_config(ec);
    event_config_free(ec);
    return b;
}

struct process *process_new(const struct cfg *c, const struct refusal_phrases *refusals,
                            struct alog *alog, char *err, size_t errlen)
{
    struct process *p = calloc(1, sizeof(*p));
    size_t i;

    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->cfg = c;
    pthread_mutex_init(&p->ack_lock, NULL);
    pthread_cond_init(&p->ack_cond, NULL);
    p->n = c->workers ? c->workers : process_online_cpus();
    p->base = calloc(p->n, sizeof(*p->base));
    p->regs = calloc(p->n, sizeof(*p->regs));
    p->w = calloc(p->n, sizeof(*p->w));
    p->toks.cap = PROCESS_JSON_TOKENS;
    p->toks.tok = malloc(json_toks_size(PROCESS_JSON_TOKENS));
    p->queue = queue_new(c);
    p->ratelimit = rl_new(c);
    if (p->base == NULL || p->regs == NULL || p->w == NULL || p->toks.tok == NULL ||
        p->queue == NULL || p->ratelimit == NULL) {
        snprintf(err, errlen, "out of memory");
        process_free(p);
        return NULL;
    }
    for (i = 0; i < p->n; i++) {
        p->base[i] = process_base_new();
        p->regs[i] = met_registry_new(c);
        if (p->base[i] == NULL || p->regs[i] == NULL) {
            snprintf(err, errlen, "out of memory");
            process_free(p);
            return NULL;
        }
    }
    /* the backends: probed, scraped and looked up on worker 0's loop, their
     * gauges in worker 0's registry (the exposition takes them from there) */
    if (router_init(&p->rt, p->base[0], c, p->regs[0], &p->toks, err, errlen) != 0) {
        process_free(p);
        return NULL;
    }
    p->rt_ready = true;
    p->rt.room = process_room;
    p->rt.readdressed = process_readdressed;
    p->rt.ud = p;
    /* before listening: the first answers come while nothing else runs */
    p->dns = dns_new(&p->rt, err, errlen);
    if (p->dns == NULL || process_otlp_start(p, err, errlen) != 0) {
        process_free(p);
        return NULL;
    }
    if (c->admin) {
        p->status = status_new(c, &p->rt, p->regs, p->n);
        if (p->status == NULL || status_start(p->status, p->base[0]) != 0) {
            snprintf(err, errlen, "out of memory");
            process_free(p);
            return NULL;
        }
    }
    atomic_store(&p->running, (unsigned)p->n);
    for (i = 0; i < p->n; i++) {
        struct worker_setup su = {
            .cfg = c,
            .refusals = refusals,
            .alog = alog,
            .base = p->base[i],
            .met = p->regs[i],
            .regs = p->regs,
            .nregs = p->n,
            .rt = &p->rt,
            .ratelimit = p->ratelimit,
            .queue = p->queue,
            .clients = &p->clients,
            .otlp = p->otlp,
            .status = p->status,
            /* a port 0 is bound by worker 0; the others take the same */
            .listen_port = i ? (uint16_t)worker_listen_port(p->w[0]) : c->listen_port,
            .admin_port = i ? (uint16_t)worker_admin_port(p->w[0]) : c->admin_port,
            .index = (unsigned)i,
            .ended = process_worker_ended,
            .draining = process_worker_draining,
            .ud = p,
        };
        p->w[i] = worker_new(&su, err, errlen);
        if (p->w[i] == NULL) {
            process_free(p);
            return NULL;
        }
    }
    p->rt.health = health_new(&p->rt);
    p->rt.scrape = p->rt.health ? scrape_new(&p->rt) : NULL;
    if (p->rt.scrape == NULL) {
        snprintf(err, errlen, "out of memory");
        process_free(p);
        return NULL;
    }
    return p;
}

struct event_base *process_base(const struct process *p)
{
    return p->base[0];
}

static void *process_thread(void *arg)
{
    struct worker *w = arg;
    char name[16];

    /* "pitot/1", ...: the worker in top -H and /proc/PID/task/TID/comm */
    snprintf(name, sizeof(name), "pitot/%u", w->index);
    pthread_setname_np(pthread_self(), name);
    worker_run(w);
    return NULL;
}

int process_run(struct process *p)
{
    sigset_t all, old;
    size_t i, started = 1;
    int rc = 0;

    /* signals go to the main thread, whose loop (worker 0's) handles them */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (i = 1; i < p->n; i++) {
        if (pthread_create(&p->w[i]->thread, NULL, process_thread, p->w[i]) != 0) {
            log_error("cannot start worker %zu's thread", i);
            rc = -1;
            break;
        }
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        process_stop(p);
    worker_run(p->w[0]);
    for (i = 1; i < started; i++)
        pthread_join(p->w[i]->thread, NULL);
    return rc;
}

unsigned process_drain(struct process *p, unsigned drain_ms)
{
    unsigned left = 0;
    size_t i;

    if (drain_ms == 0) {
        process_stop(p);
        return 0;
    }
    if (atomic_exchange(&p->draining, true))
        return process_open_conns(p);
    pthread_mutex_lock(&p->ack_lock);
    p->acks = 0;
    p->acked_left = 0;
    pthread_mutex_unlock(&p->ack_lock);
    for (i = 1; i < p->n; i++)
        worker_post(p->w[i], WORKER_CMD_DRAIN, drain_ms);
    left = worker_drain(p->w[0], drain_ms);
    /* the others' counts, for the line that says how many are left: each
     * closes its idle connections at once; a second at most for them */
    {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_mutex_lock(&p->ack_lock);
        while (p->acks < p->n - 1 &&
               pthread_cond_timedwait(&p->ack_cond, &p->ack_lock, &until) == 0)
            ;
        left += p->acked_left;
        pthread_mutex_unlock(&p->ack_lock);
    }
    return left;
}

void process_stop(struct process *p)
{
    size_t i;

    for (i = 1; i < p->n; i++)
        worker_post(p->w[i], WORKER_CMD_STOP, 0);
    worker_stop(p->w[0]);
}

bool process_draining(const struct process *p)
{
    return atomic_load(&((struct process *)p)->draining);
}

unsigned process_drain_cut(const struct process *p)
{
    unsigned n = 0;
    size_t i;

    for (i = 0; i < p->n; i++)
        n += p->w[i]->drain_cut;
    return n;
}

unsigned process_open_conns(const struct process *p)
{
    unsigned n = 0;
    size_t i;

    for (i = 0; i < p->n; i++)
        n += p->w[i]->lp.nconns;
    return n;
}

void process_backends_reusable(struct process *p, bool *reusable)
{
    router_backends_reusable(&p->rt, reusable);
}

void process_reload(struct process *p, const struct cfg *c, const struct refusal_phrases *ph,
                    const enum cfg_place *how, const bool *tadded, const bool *tremoved)
{
    const struct cfg *old = p->cfg;
    size_t i, w;

    /* the limits' state follows the keys (by digest) before any request
     * counts under c */
    rl_reload(p->ratelimit, old, c);
    for (i = 1; i < p->n; i++)
        worker_post_cfg(p->w[i], cfg_hold(c), ph);
    worker_set_cfg(p->w[0], cfg_hold(c), ph);
    /* a slot a new name takes starts with no series and no history (nothing
     * runs there: router_backends_reusable) */
    for (i = 0; i < c->nbackends; i++) {
        if (how[i] != CFG_PLACE_ADDED)
            continue;
        for (w = 0; w < p->n; w++)
            met_backend_reset(p->regs[w], (unsigned)i, &c->backends[i]);
        status_backend_reset(p->status, (unsigned)i);
    }
    /* tiers added (a slot no tier had, or the one a returning tier left) and
     * removed: their labels and whether they are shown */
    for (i = 0; i < c->ntiers; i++) {
        if (!tadded[i] && !tremoved[i])
            continue;
        for (w = 0; w < p->n; w++)
            met_tier_set(p->regs[w], (unsigned)i, c->tiers[i].name, tadded[i]);
        status_set_tier(p->status, (unsigned)i, c->tiers[i].name, tadded[i]);
    }
    /* the router and the queue share the process's hold */
    cfg_hold(c);
    router_reload(&p->rt, c, how);
    for (i = 0; i < c->nbackends; i++) {
        if (how[i] == CFG_PLACE_FREE || how[i] == CFG_PLACE_SAME)
            continue;
        health_reset(p->rt.health, (unsigned)i);
        scrape_reset(p->rt.scrape, (unsigned)i);
    }
    dns_reload(p->dns, how);
    queue_set_cfg(p->queue, c);
    p->cfg = c;
    cfg_drop(old);
}

const struct cfg *process_cfg(const struct process *p)
{
    return p->cfg;
}

int process_tls_reload(struct process *p)
{
    size_t i;

    for (i = 1; i < p->n; i++)
        worker_post(p->w[i], WORKER_CMD_TLS_RELOAD, 0);
    char msg[448];
    int failed = worker_tls_reload(p->w[0]) + router_tls_reload(&p->rt);

    if (p->otlp_tls && tls_client_reload(p->otlp_tls, msg, sizeof(msg)) != 0) {
        log_error("opentelemetry.traces: reloading TLS files: %s; the old ones stay", msg);
        failed++;
    }
    return failed;
}

bool process_tls(const struct process *p)
{
    return p->w[0]->lp.tls != NULL;
}

unsigned process_listen_port(const struct process *p)
{
    return worker_listen_port(p->w[0]);
}

unsigned process_admin_port(const struct process *p)
{
    return worker_admin_port(p->w[0]);
}

size_t process_workers(const struct process *p)
{
    return p->n;
}

struct status *process_status(const struct process *p)
{
    return p->status;
}

void process_free(struct process *p)
{
    size_t i;

    if (p == NULL)
        return;
    p->rt.stopping = true;
    /* their requests leave the queue and the router; what the router says
     * after (a lookup cancelled below) finds no worker to tell */
    for (i = 0; p->w && i < p->n; i++) {
        worker_free(p->w[i]);
        p->w[i] = NULL;
    }
    otlp_free(p->otlp); /* after the workers: their relays still add spans */
    /* after the workers, before worker 0's loop (its timer) */
    status_free(p->status);
    tls_client_free(p->otlp_tls);
    dns_free(p->dns);
    scrape_free(p->rt.scrape);
    health_free(p->rt.health);
    queue_free(p->queue);
    rl_free(p->ratelimit);
    if (p->rt_ready)
        router_release(&p->rt);
    for (i = 0; p->regs && i < p->n; i++)
        met_registry_free(p->regs[i]);
    for (i = 0; p->base && i < p->n; i++)
        if (p->base[i])
            event_base_free(p->base[i]);
    free(p->toks.tok);
    cfg_drop(p->cfg); /* after the router and the queue, which shared it */
    pthread_mutex_destroy(&p->ack_lock);
    pthread_cond_destroy(&p->ack_cond);
    free(p->base);
    free(p->regs);
    free(p->w);
    free(p);
}
