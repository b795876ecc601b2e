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
struct queue_port;

/* What the queue asks of the items it holds (the layer above owns them; the
 * queue knows them as `item`). Always called on the item's own loop. */
struct queue_ops {
    /* Tries to place a held item: false when it must keep waiting; true when
     * it left the queue (dispatched, or answered), having called
     * queue_remove() on its entry. */
    bool (*try_dispatch)(void *item);
    /* Answers an item the queue gives up on (evicted, waited too long): the
     * queue has already let go of its entry. */
    void (*shed)(void *item, enum met_shed why);
};

/* The queue every loop shares, with cfg's tiers. NULL when out of memory. */
struct queue *queue_new(const struct cfg *cfg);

/* Takes cfg's tier settings (the same tiers, by index: a reload) from now on,
 * under the queue's lock; returns the configuration it had. */
const struct cfg *queue_set_cfg(struct queue *q, const struct cfg *cfg);

/* Frees q, after every port. */
void queue_free(struct queue *q);

/* One loop's way into q: its items (ops, copied), its metrics, a timer and a
 * wake-up on `base`. NULL when out of memory. */
struct queue_port *queue_port_new(struct queue *q, struct event_base *base,
                                  struct met_registry *met, const struct queue_ops *ops);

/* Frees p; items of its loop still held are forgotten. */
void queue_port_free(struct queue_port *p);

/* Holds item of tier `tier`. Returns the entry, or NULL when the item is
 * refused (*why says why; the caller sheds it). Displacing a lower-tier item
 * sheds it through its loop's ops.shed: before this returns when it is this
 * loop's, else soon on its own loop. */
struct queue_entry *queue_push(struct queue_port *p, void *item, unsigned tier, enum met_shed *why);

/* Takes this loop's entry out (dispatched, or its client left: then why is
 * CLIENT_GONE and it is counted as shed). Observes the time it waited. */
void queue_remove(struct queue_port *p, struct queue_entry *e, bool shed, enum met_shed why);

/* Dispatches held items, highest priority first, while backends accept:
 * the head of the whole queue only, on its own loop (another loop's head
 * wakes that loop). Any loop may kick. */
void queue_kick(struct queue_port *p);

/* A request finished on a backend (the drain rate behind Retry-After). */
void queue_note_completion(struct queue_port *p, uint64_t now_us);

/* Seconds a shed client should wait before retrying: the queue ahead divided
 * by the observed completion rate, 1..60. */
unsigned queue_retry_after(struct queue_port *p, uint64_t now_us);

/* Items held now, by every loop. */
unsigned queue_depth(struct queue_port *p);

#endif
