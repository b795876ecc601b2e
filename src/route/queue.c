/* queue: per-tier FIFOs visited in priority order, a tick that expires heads
 * past their tier's max_wait, and a 10 s window of completions per second. */
#include "pitot/route/queue.h"

#include <stdlib.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "pitot/format/config.h"
#include "pitot/util/clock.h"

#define QUEUE_TICK_MS 50
#define QUEUE_RATE_SLOTS 10 /* one-second slots */

struct queue_entry {
    void *r; /* borrowed: the request (its owner holds its place) */
    unsigned tier;
    uint64_t since_us;
    TAILQ_ENTRY(queue_entry) link;
};

TAILQ_HEAD(queue_fifo, queue_entry);

struct queue {
    struct event_base *base;  /* borrowed */
    const struct cfg *cfg;    /* borrowed */
    struct met_registry *met; /* borrowed */
    struct queue_ops ops;
    struct queue_fifo fifo[CFG_MAX_TIERS];
    unsigned n[CFG_MAX_TIERS];
    unsigned order[CFG_MAX_TIERS]; /* tier indexes, highest priority first */
    unsigned total;
    struct event *tick; /* owned: runs while anything is held */
    uint64_t rate_sec[QUEUE_RATE_SLOTS];
    unsigned rate_cnt[QUEUE_RATE_SLOTS];
    bool kicking;
};

static void queue_tick_cb(evutil_socket_t fd, short what, void *arg);

struct queue *queue_new(struct event_base *base, const struct cfg *cfg, struct met_registry *met,
                        const struct queue_ops *ops)
{
    struct queue *q = calloc(1, sizeof(*q));
    unsigned i, j, nt;

    if (q == NULL)
        return NULL;
    q->base = base;
    q->cfg = cfg;
    q->met = met;
    q->ops = *ops;
    nt = (unsigned)cfg->ntiers;
    for (i = 0; i < CFG_MAX_TIERS; i++)
        TAILQ_INIT(&q->fifo[i]);
    /* insertion sort by priority, stable: config order breaks ties */
    for (i = 0; i < nt; i++) {
        j = i;
        while (j > 0 && cfg->tiers[q->order[j - 1]].priority < cfg->tiers[i].priority) {
            q->order[j] = q->order[j - 1];
            j--;
        }
        q->order[j] = i;
    }
    q->tick = evtimer_new(base, queue_tick_cb, q);
    if (q->tick == NULL) {
        free(q);
        return NULL;
    }
    return q;
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
    event_free(q->tick);
    free(q);
}

unsigned queue_depth(const struct queue *q)
{
    return q->total;
}

static void queue_arm(struct queue *q)
{
    struct timeval tv = { 0, QUEUE_TICK_MS * 1000 };

    if (q->total && !evtimer_pending(q->tick, NULL))
        evtimer_add(q->tick, &tv);
}

static void queue_unlink(struct queue *q, struct queue_entry *e)
{
    TAILQ_REMOVE(&q->fifo[e->tier], e, link);
    q->n[e->tier]--;
    q->total--;
    met_tier_gauge_add(q->met, MET_QUEUE_DEPTH, e->tier, -1);
    met_observe_tier_us(q->met, MET_QUEUE_WAIT, e->tier, clk_now_us() - e->since_us);
}

void queue_remove(struct queue *q, struct queue_entry *e, bool shed, enum met_shed why)
{
    queue_unlink(q, e);
    if (shed)
        met_add_shed(q->met, e->tier, why);
    free(e);
}

/* The newest held request of the lowest priority below `prio`, or NULL. */
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

struct queue_entry *queue_push(struct queue *q, void *r, unsigned tier, enum met_shed *why)
{
    const struct cfg *c = q->cfg;
    const struct cfg_tier *t = &c->tiers[tier];
    struct queue_entry *e;

    if (t->max_queue == 0 || t->max_wait_ms == 0) {
        *why = MET_SHED_QUEUE_FULL;
        return NULL;
    }
    if (q->n[tier] >= t->max_queue) {
        *why = MET_SHED_QUEUE_FULL;
        return NULL;
    }
    if (q->total >= c->queue_max) {
        struct queue_entry *v = queue_victim(q, t->priority);
        void *vr;
        if (v == NULL) {
            *why = MET_SHED_QUEUE_FULL;
            return NULL;
        }
        vr = v->r;
        queue_remove(q, v, true, MET_SHED_EVICTED);
        q->ops.shed(vr, MET_SHED_EVICTED);
    }
    e = malloc(sizeof(*e));
    if (e == NULL) {
        *why = MET_SHED_QUEUE_FULL;
        return NULL;
    }
    e->r = r;
    e->tier = tier;
    e->since_us = clk_now_us();
    TAILQ_INSERT_TAIL(&q->fifo[tier], e, link);
    q->n[tier]++;
    q->total++;
    met_tier_gauge_add(q->met, MET_QUEUE_DEPTH, tier, 1);
    queue_arm(q);
    return e;
}

void queue_kick(struct queue *q)
{
    unsigned k;

    if (q->kicking || q->total == 0)
        return;
    q->kicking = true; /* a dispatch can finish a request and kick again */
    for (k = 0; k < q->cfg->ntiers; k++) {
        unsigned t = q->order[k];
        while (!TAILQ_EMPTY(&q->fifo[t])) {
            struct queue_entry *e = TAILQ_FIRST(&q->fifo[t]);
            void *r = e->r;
            if (!q->ops.try_dispatch(r)) {
                /* Saturated for this request: lower tiers wait too, so a
                 * lower tier never overtakes a higher one. */
                q->kicking = false;
                return;
            }
        }
    }
    q->kicking = false;
}

static void queue_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue *q = arg;
    uint64_t now = clk_now_us();
    unsigned t;

    for (t = 0; t < q->cfg->ntiers; t++) {
        uint64_t max_us = (uint64_t)q->cfg->tiers[t].max_wait_ms * 1000;
        while (!TAILQ_EMPTY(&q->fifo[t])) {
            struct queue_entry *e = TAILQ_FIRST(&q->fifo[t]);
            void *r = e->r;
            if (now - e->since_us < max_us)
                break;
            queue_remove(q, e, true, MET_SHED_MAX_WAIT);
            q->ops.shed(r, MET_SHED_MAX_WAIT);
        }
    }
    queue_kick(q);
    queue_arm(q);
}

void queue_note_completion(struct queue *q, uint64_t now_us)
{
    uint64_t sec = now_us / 1000000;
    unsigned i = (unsigned)(sec % QUEUE_RATE_SLOTS);

    if (q->rate_sec[i] != sec) {
        q->rate_sec[i] = sec;
        q->rate_cnt[i] = 0;
    }
    q->rate_cnt[i]++;
}

unsigned queue_retry_after(const struct queue *q, uint64_t now_us)
{
    uint64_t sec = now_us / 1000000, done = 0, s;
    unsigned i;

    for (i = 0; i < QUEUE_RATE_SLOTS; i++) {
        /* the last full slots, not the current partial one */
        if (q->rate_sec[i] < sec && sec - q->rate_sec[i] <= QUEUE_RATE_SLOTS)
            done += q->rate_cnt[i];
    }
    if (done == 0)
        return 5;
    /* ahead / (done / window) seconds, rounded up */
    s = ((uint64_t)(q->total + 1) * QUEUE_RATE_SLOTS + done - 1) / done;
    return s < 1 ? 1 : s > 60 ? 60 : (unsigned)s;
}
