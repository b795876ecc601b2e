/* queue: pitot's own overload queue. When every backend that could serve a
 * request is saturated, the request waits here, ordered by its tier's
 * priority (FIFO within a tier), for at most the tier's max_wait. A full queue
 * displaces the newest request of a lower tier, or refuses the newcomer: a
 * lower tier is always shed before a higher one is made to wait. */
#ifndef PITOT_ROUTE_QUEUE_H
#define PITOT_ROUTE_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "pitot/measure/metrics.h"

struct cfg;
struct event_base;
struct queue;
struct queue_entry;

/* What the queue asks of the requests it holds (the layer above owns them;
 * the queue knows them as `item`). */
struct queue_ops {
    /* Tries to place a held item: false when it must keep waiting; true when
     * it left the queue (dispatched, or answered), having called
     * queue_remove() on its entry. */
    bool (*try_dispatch)(void *item);
    /* Answers an item the queue gives up on (evicted, waited too long): the
     * queue has already let go of its entry. */
    void (*shed)(void *item, enum met_shed why);
};

/* A queue on `base` with cfg's tiers; met gets its depth, waits and sheds.
 * ops is copied. NULL when out of memory. */
struct queue *queue_new(struct event_base *base, const struct cfg *cfg, struct met_registry *met,
                        const struct queue_ops *ops);
void queue_free(struct queue *q);

/* Holds item of tier `tier`. Returns the entry, or NULL when the item is
 * refused (*why says why; the caller sheds it). Displacing a lower-tier item
 * sheds that one through ops.shed before this returns. */
struct queue_entry *queue_push(struct queue *q, void *item, unsigned tier, enum met_shed *why);

/* Takes r out (dispatched, or its client left: then why is CLIENT_GONE and
 * it is counted as shed). Observes the time it waited. */
void queue_remove(struct queue *q, struct queue_entry *e, bool shed, enum met_shed why);

/* Dispatches held requests, highest priority first, while backends accept. */
void queue_kick(struct queue *q);

/* A request finished on a backend (the drain rate behind Retry-After). */
void queue_note_completion(struct queue *q, uint64_t now_us);

/* Seconds a shed client should wait before retrying: the queue ahead divided
 * by the observed completion rate, 1..60. */
unsigned queue_retry_after(const struct queue *q, uint64_t now_us);

/* Requests held now. */
unsigned queue_depth(const struct queue *q);

#endif
