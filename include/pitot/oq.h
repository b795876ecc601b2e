/* oq: pitot's own overload queue. When every backend that could serve a
 * request is saturated, the request waits here, ordered by its tier's
 * priority (FIFO within a tier), for at most the tier's max_wait. A full queue
 * displaces the newest request of a lower tier, or refuses the newcomer: a
 * lower tier is always shed before a higher one is made to wait. */
#ifndef PITOT_OQ_H
#define PITOT_OQ_H

#include <stdbool.h>
#include <stdint.h>

#include "pitot/met.h"

struct wrk;
struct relay;
struct oq;
struct oq_entry;

struct oq *oq_new(struct wrk *w);
void oq_free(struct oq *q);

/* Holds r of tier `tier`. Returns the entry, or NULL when r is refused
 * (*why says why; the caller sheds it). Displacing a lower-tier request sheds
 * that one through relay_shed() before this returns. */
struct oq_entry *oq_push(struct oq *q, struct relay *r, unsigned tier, enum met_shed *why);

/* Takes r out (dispatched, or its client left: then why is CLIENT_GONE and
 * it is counted as shed). Observes the time it waited. */
void oq_remove(struct oq *q, struct oq_entry *e, bool shed, enum met_shed why);

/* Dispatches held requests, highest priority first, while backends accept. */
void oq_kick(struct oq *q);

/* A request finished on a backend (the drain rate behind Retry-After). */
void oq_note_completion(struct oq *q, uint64_t now_us);

/* Seconds a shed client should wait before retrying: the queue ahead divided
 * by the observed completion rate, 1..60. */
unsigned oq_retry_after(const struct oq *q, uint64_t now_us);

/* Requests held now. */
unsigned oq_depth(const struct oq *q);

#endif
