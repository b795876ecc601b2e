/* queue: per-tier FIFOs shared by every loop under one lock, visited in
 * priority order; each loop has a port: its items, a tick that expires them
 * past their tier's max_wait, and a wake-up other loops use to hand it the
 * head of the queue or an eviction. A 10 s window of completions per second
 * gives Retry-After. */
#include "pitot/route/queue.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "pitot/format/config.h"
#include "pitot/util/clock.h"

#define QUEUE_TICK_MS 50
#define QUEUE_RATE_SLOTS 10 /* one-second slots */

enum queue_where {
    QUEUE_IN_FIFO, /* waiting in its tier's FIFO */
    QUEUE_EVICTED, /* taken out by another loop's push: in its port's evicted list */
};

struct queue_entry {
    void *r;                 /* borrowed: the item (its owner holds its place) */
    struct queue_port *port; /* borrowed: the loop the item lives on */
    unsigned tier;
    enum queue_where where;
    uint64_t since_us;
    TAILQ_ENTRY(queue_entry) link; /* in a FIFO, or in port->evicted */
};

TAILQ_HEAD(queue_fifo, queue_entry);

struct queue {
    pthread_mutex_t lock;  /* everything below */
    const struct cfg *cfg; /* borrowed */
    struct queue_fifo fifo[CFG_MAX_TIERS];
    unsigned n[CFG_MAX_TIERS];
    unsigned order[CFG_MAX_TIERS]; /* tier indexes, highest priority first */
    unsigned total;
    uint64_t rate_sec[QUEUE_RATE_SLOTS];
    unsigned rate_cnt[QUEUE_RATE_SLOTS];
};

struct queue_port {
    struct queue *q;           /* borrowed: shared */
    struct met_registry *met;  /* borrowed: this loop's */
    struct queue_ops ops;      /* for this loop's items */
    struct event *tick;        /* owned: runs while this loop holds items */
    struct event *wake;        /* owned: activated by other loops */
    struct queue_fifo evicted; /* under q->lock: this loop's items other loops evicted */
    unsigned own;              /* under q->lock: this loop's items in the queue or evicted */
    bool kicking;              /* this loop only */
};

static void queue_tick_cb(evutil_socket_t fd, short what, void *arg);
static void queue_wake_cb(evutil_socket_t fd, short what, void *arg);

/* The tiers of cfg by priority into q->order; q->lock held or q not shared. */
static void queue_order(struct queue *q, const struct cfg *cfg)
{
    unsigned i, j, nt = (unsigned)cfg->ntiers;

    q->cfg = cfg;
    /* insertion sort by priority, stable: config order breaks ties */
    for (i = 0; i < nt; i++) {
        j = i;
        while (j > 0 && cfg->tiers[q->order[j - 1]].priority < cfg->tiers[i].priority) {
            q->order[j] = q->order[j - 1];
            j--;
        }
        q->order[j] = i;
    }
}

struct queue *queue_new(const struct cfg *cfg)
{
    struct queue *q = calloc(1, sizeof(*q));
    unsigned i;

    if (q == NULL)
        return NULL;
    pthread_mutex_init(&q->lock, NULL);
    for (i = 0; i < CFG_MAX_TIERS; i++)
        TAILQ_INIT(&q->fifo[i]);
    queue_order(q, cfg);
    return q;
}

const struct cfg *queue_set_cfg(struct queue *q, const struct cfg *cfg)
{
    const struct cfg *old;

    pthread_mutex_lock(&q->lock);
    old = q->cfg;
    queue_order(q, cfg);
    pthread_mutex_unlock(&q->lock);
    return old;
}

void queue_free(struct queue *q)
{
    unsigned t;

    if (q == NULL)
        return;
    for (t = 0; t < CFG_MAX_TIERS; t++)
        while (!TAILQ_EMPTY(&q->fifo[t])) {
            struct queue_entry *e = TAILQ_FIRST(&q->fifo[t]);
            TAILQ_REMOVE(&q->fifo[t], e, link);
            free(e);
        }
    pthread_mutex_destroy(&q->lock);
    free(q);
}

struct queue_port *queue_port_new(struct queue *q, struct event_base *base,
                                  struct met_registry *met, const struct queue_ops *ops)
{
    struct queue_port *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->q = q;
    p->met = met;
    p->ops = *ops;
    TAILQ_INIT(&p->evicted);
    p->tick = evtimer_new(base, queue_tick_cb, p);
    p->wake = event_new(base, -1, 0, queue_wake_cb, p);
    if (p->tick == NULL || p->wake == NULL) {
        queue_port_free(p);
        return NULL;
    }
    return p;
}

void queue_port_free(struct queue_port *p)
{
    struct queue_entry *e, *next;
    unsigned t;

    if (p == NULL)
        return;
    /* items left behind (the loop ends with requests held): forget them */
    pthread_mutex_lock(&p->q->lock);
    for (t = 0; t < CFG_MAX_TIERS; t++)
        for (e = TAILQ_FIRST(&p->q->fifo[t]); e != NULL; e = next) {
            next = TAILQ_NEXT(e, link);
            if (e->port != p)
                continue;
            TAILQ_REMOVE(&p->q->fifo[t], e, link);
            p->q->n[t]--;
            p->q->total--;
            free(e);
        }
    while ((e = TAILQ_FIRST(&p->evicted)) != NULL) {
        TAILQ_REMOVE(&p->evicted, e, link);
        free(e);
    }
    pthread_mutex_unlock(&p->q->lock);
    if (p->tick)
        event_free(p->tick);
    if (p->wake)
        event_free(p->wake);
    free(p);
}

unsigned queue_depth(struct queue_port *p)
{
    unsigned n;

    pthread_mutex_lock(&p->q->lock);
    n = p->q->total;
    pthread_mutex_unlock(&p->q->lock);
    return n;
}

static void queue_arm(struct queue_port *p, unsigned own)
{
    struct timeval tv = { 0, QUEUE_TICK_MS * 1000 };

    if (own && !evtimer_pending(p->tick, NULL))
        evtimer_add(p->tick, &tv);
}

/* Takes e out of its FIFO; under the lock. */
static void queue_unlink(struct queue *q, struct queue_entry *e)
{
    TAILQ_REMOVE(&q->fifo[e->tier], e, link);
    q->n[e->tier]--;
    q->total--;
}

/* An item of this loop left the queue: its depth, wait and (shed) count, on
 * this loop's metrics; frees e. Not under the lock. */
static void queue_account(struct queue_port *p, struct queue_entry *e, bool shed, enum met_shed why)
{
    met_tier_gauge_add(p->met, MET_QUEUE_DEPTH, e->tier, -1);
    met_observe_tier_us(p->met, MET_QUEUE_WAIT, e->tier, clk_now_us() - e->since_us);
    if (shed)
        met_add_shed(p->met, e->tier, why);
    free(e);
}

void queue_remove(struct queue_port *p, struct queue_entry *e, bool shed, enum met_shed why)
{
    pthread_mutex_lock(&p->q->lock);
    if (e->where == QUEUE_IN_FIFO)
        queue_unlink(p->q, e);
    else
        TAILQ_REMOVE(&p->evicted, e, link);
    p->own--;
    pthread_mutex_unlock(&p->q->lock);
    queue_account(p, e, shed, why);
}

/* The newest held item of the lowest priority below `prio`, or NULL; under
 * the lock. */
static struct queue_entry *queue_victim(struct queue *q, int prio)
{
    int k;

    for (k = (int)q->cfg->ntiers - 1; k >= 0; k--) {
        unsigned t = q->order[k];
        if (q->cfg->tiers[t].priority >= prio)
            return NULL;
        if (!TAILQ_EMPTY(&q->fifo[t]))
            return TAILQ_LAST(&q->fifo[t], queue_fifo);
    }
    return NULL;
}

struct queue_entry *queue_push(struct queue_port *p, void *r, unsigned tier, enum met_shed *why)
{
    struct queue *q = p->q;
    const struct cfg *c;
    const struct cfg_tier *t;
    struct queue_entry *e = malloc(sizeof(*e)), *v = NULL;
    unsigned own;

    if (e == NULL) {
        *why = MET_SHED_QUEUE_FULL;
        return NULL;
    }
    pthread_mutex_lock(&q->lock); /* q->cfg too: a reload swaps it */
    c = q->cfg;
    t = &c->tiers[tier];
    if (t->max_queue == 0 || t->max_wait_ms == 0 || q->n[tier] >= t->max_queue ||
        (q->total >= c->queue_max && (v = queue_victim(q, t->priority)) == NULL)) {
        pthread_mutex_unlock(&q->lock);
        free(e);
        *why = MET_SHED_QUEUE_FULL;
        return NULL;
    }
    if (v != NULL) {
        /* a lower tier makes room: shed here if it is ours, else handed to
         * its own loop, which alone may answer it */
        queue_unlink(q, v);
        if (v->port == p) {
            p->own--;
        } else {
            v->where = QUEUE_EVICTED;
            TAILQ_INSERT_TAIL(&v->port->evicted, v, link);
            event_active(v->port->wake, EV_READ, 0);
            v = NULL;
        }
    }
    e->r = r;
    e->port = p;
    e->tier = tier;
    e->where = QUEUE_IN_FIFO;
    e->since_us = clk_now_us();
    TAILQ_INSERT_TAIL(&q->fifo[tier], e, link);
    q->n[tier]++;
    q->total++;
    own = ++p->own;
    pthread_mutex_unlock(&q->lock);
    met_tier_gauge_add(p->met, MET_QUEUE_DEPTH, tier, 1);
    if (v != NULL) {
        void *vr = v->r;
        queue_account(p, v, true, MET_SHED_EVICTED);
        p->ops.shed(vr, MET_SHED_EVICTED);
    }
    queue_arm(p, own);
    return e;
}

/* The first held item in priority order (FIFO within a tier), or NULL;
 * under the lock. */
static struct queue_entry *queue_head(struct queue *q)
{
    unsigned k;

    for (k = 0; k < q->cfg->ntiers; k++) {
        unsigned t = q->order[k];
        if (!TAILQ_EMPTY(&q->fifo[t]))
            return TAILQ_FIRST(&q->fifo[t]);
    }
    return NULL;
}

void queue_kick(struct queue_port *p)
{
    struct queue *q = p->q;

    if (p->kicking)
        return;
    p->kicking = true; /* a dispatch can finish a request and kick again */
    for (;;) {
        struct queue_entry *e;
        void *r;

        pthread_mutex_lock(&q->lock);
        e = queue_head(q);
        if (e != NULL && e->port != p) {
            /* Only the head goes, and only its own loop may dispatch it: a
             * lower tier never overtakes a higher one, across loops too. */
            event_active(e->port->wake, EV_READ, 0);
            e = NULL;
        }
        r = e ? e->r : NULL;
        pthread_mutex_unlock(&q->lock);
        /* Saturated for the head: everything behind it waits too. */
        if (e == NULL || !p->ops.try_dispatch(r))
            break;
    }
    p->kicking = false;
}

/* This loop's items that other loops evicted: shed here. */
static void queue_shed_evicted(struct queue_port *p)
{
    for (;;) {
        struct queue_entry *e;
        void *r;

        pthread_mutex_lock(&p->q->lock);
        e = TAILQ_FIRST(&p->evicted);
        if (e != NULL) {
            TAILQ_REMOVE(&p->evicted, e, link);
            p->own--;
        }
        pthread_mutex_unlock(&p->q->lock);
        if (e == NULL)
            return;
        r = e->r;
        queue_account(p, e, true, MET_SHED_EVICTED);
        p->ops.shed(r, MET_SHED_EVICTED);
    }
}

static void queue_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue_port *p = arg;

    queue_shed_evicted(p);
    queue_kick(p);
}

static void queue_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue_port *p = arg;
    struct queue *q = p->q;
    struct queue_fifo expired = TAILQ_HEAD_INITIALIZER(expired);
    uint64_t now = clk_now_us();
    struct queue_entry *e, *next;
    unsigned t, own;

    pthread_mutex_lock(&q->lock);
    for (t = 0; t < q->cfg->ntiers; t++) {
        uint64_t max_us = (uint64_t)q->cfg->tiers[t].max_wait_ms * 1000;
        /* oldest first: the expired ones are a prefix; other loops expire
         * their own */
        for (e = TAILQ_FIRST(&q->fifo[t]); e != NULL && now - e->since_us >= max_us; e = next) {
            next = TAILQ_NEXT(e, link);
            if (e->port != p)
                continue;
            queue_unlink(q, e);
            p->own--;
            TAILQ_INSERT_TAIL(&expired, e, link);
        }
    }
    pthread_mutex_unlock(&q->lock);
    while ((e = TAILQ_FIRST(&expired)) != NULL) {
        void *r = e->r;
        TAILQ_REMOVE(&expired, e, link);
        queue_account(p, e, true, MET_SHED_MAX_WAIT);
        p->ops.shed(r, MET_SHED_MAX_WAIT);
    }
    queue_kick(p);
    pthread_mutex_lock(&q->lock);
    own = p->own;
    pthread_mutex_unlock(&q->lock);
    queue_arm(p, own);
}

void queue_note_completion(struct queue_port *p, uint64_t now_us)
{
    struct queue *q = p->q;
    uint64_t sec = now_us / 1000000;
    unsigned i = (unsigned)(sec % QUEUE_RATE_SLOTS);

    pthread_mutex_lock(&q->lock);
    if (q->rate_sec[i] != sec) {
        q->rate_sec[i] = sec;
        q->rate_cnt[i] = 0;
    }
    q->rate_cnt[i]++;
    pthread_mutex_unlock(&q->lock);
}

unsigned queue_retry_after(struct queue_port *p, uint64_t now_us)
{
    struct queue *q = p->q;
    uint64_t sec = now_us / 1000000, done = 0, s;
    unsigned i, ahead;

    pthread_mutex_lock(&q->lock);
    for (i = 0; i < QUEUE_RATE_SLOTS; i++) {
        /* the last full slots, not the current partial one */
        if (q->rate_sec[i] < sec && sec - q->rate_sec[i] <= QUEUE_RATE_SLOTS)
            done += q->rate_cnt[i];
    }
    ahead = q->total;
    pthread_mutex_unlock(&q->lock);
    if (done == 0)
        return 5;
    /* ahead / (done / window) seconds, rounded up */
    s = ((uint64_t)(ahead + 1) * QUEUE_RATE_SLOTS + done - 1) / done;
    return s < 1 ? 1 : s > 60 ? 60 : (unsigned)s;
}
