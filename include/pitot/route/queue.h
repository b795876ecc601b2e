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

struct worker;
struct relay;
struct queue;
struct queue_entry;

struct queue *queue_new(struct worker *w);
void queue_free(struct queue *q);

/* Holds r of tier `tier`. Returns the entry, or NULL when r is refused
 * (*why says why; the caller sheds it). Displacing a lower-tier request sheds
 * that one through relay_shed() before this returns. */
struct queue_entry *queue_push(struct queue *q, struct relay *r, unsigned tier, enum met_shed *why);

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
