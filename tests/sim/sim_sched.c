/* sim_sched: --slots slots, a FIFO queue of deferred requests, and the one
 * timer per running request that paces prefill, tokens, pings and faults. */
#include "sim.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pitot/util/clock.h"

#define SIM_OUT_MAX (4u << 20) /* bytes a stalled reader may leave unsent */

static void sched_tick(evutil_socket_t fd, short what, void *arg);

/* Legal moves: NEW -> QUEUED|PREFILL -> ... -> ENDED; QUEUED -> PREFILL. */
static void req_set_state(struct sim_req *r, enum sim_req_state to)
{
    switch (to) {
    case SIM_REQ_QUEUED: assert(r->state == SIM_REQ_NEW); break;
    case SIM_REQ_PREFILL: assert(r->state == SIM_REQ_NEW || r->state == SIM_REQ_QUEUED); break;
    case SIM_REQ_DECODE: assert(r->state == SIM_REQ_PREFILL); break;
    case SIM_REQ_ENDED: assert(r->state != SIM_REQ_ENDED); break;
    case SIM_REQ_NEW: assert(0); break;
    }
    r->state = to;
}

int sim_sched_init(struct sim_srv *s)
{
    s->slots = calloc((size_t)s->conf.slots, sizeof(*s->slots));
    if (s->slots == NULL)
        return -1;
    TAILQ_INIT(&s->queue);
    return 0;
}

void sim_sched_release(struct sim_srv *s)
{
    free(s->slots);
    s->slots = NULL;
}

struct sim_req *sim_req_new(struct sim_srv *s, struct sim_conn *c)
{
    struct sim_req *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->timer = evtimer_new(s->base, sched_tick, r);
    if (r->timer == NULL) {
        free(r);
        return NULL;
    }
    r->state = SIM_REQ_NEW;
    r->conn = c;
    r->srv = s;
    r->flavor = s->flavor;
    r->num = ++s->req_counter;
    r->seed = s->conf.seed + r->num;
    r->jitter_rng = r->seed ^ 0xa0761d6478bd642fULL;
    memcpy(r->id, "chatcmpl-", 9);
    sim_rng_alnum(r->seed, r->id + 9, 32);
    r->id[41] = '\0';
    r->max_tokens = -1;
    r->slot = -1;
    r->t_arrive_us = clk_now_us();
    r->created_s = clk_wall_us() / 1000000;
    return r;
}

void sim_req_free(struct sim_req *r)
{
    if (r == NULL)
        return;
    assert(r->state == SIM_REQ_NEW || r->state == SIM_REQ_ENDED);
    event_free(r->timer);
    free(r->prompt_json);
    free(r);
}

/* Tells the flavor about ev, if it counts such things. */
static void sched_observe(struct sim_req *r, enum sim_obs ev, uint64_t now)
{
    if (r->flavor->observe)
        r->flavor->observe(r, ev, now);
}

int64_t sim_sched_tokens_in_use(const struct sim_srv *s)
{
    int64_t n = 0;
    int i;

    for (i = 0; i < s->conf.slots; i++) {
        const struct sim_req *r = s->slots[i].req;
        if (r)
            n += r->prompt_tokens + r->n_sent;
    }
    return n;
}

double sim_req_prompt_ms(const struct sim_req *r)
{
    return r->t_first_us ? (double)(r->t_first_us - r->t_slot_us) / 1000.0 : 0.0;
}

double sim_req_predicted_ms(const struct sim_req *r)
{
    return r->t_first_us ? (double)(r->t_last_us - r->t_first_us) / 1000.0 : 0.0;
}

/* Arms the timer for the earlier of the next token and the next ping. */
static void sched_arm(struct sim_req *r, uint64_t now)
{
    const struct sim_conf *cf = &r->srv->conf;
    uint64_t due = r->next_due_us, wait;
    struct timeval tv;

    if (r->stream && cf->ping_ms > 0) {
        uint64_t ping = r->last_write_us + (uint64_t)cf->ping_ms * 1000;
        if (ping < due)
            due = ping;
    }
    wait = due > now ? due - now : 0;
    /* The timeout counts from the loop's cached time, which is older than
     * now after a long callback: refresh it so the wakeup is not early. */
    event_base_update_cache_time(r->srv->base);
    tv.tv_sec = (time_t)(wait / 1000000);
    tv.tv_usec = (suseconds_t)(wait % 1000000);
    evtimer_add(r->timer, &tv);
}

/* Frees r's slot and hands it to the oldest queued request. */
static void sched_free_slot(struct sim_req *r)
{
    struct sim_srv *s = r->srv;
    struct sim_slot *sl = &s->slots[r->slot];
    struct sim_req *next;

    sl->req = NULL;
    sl->n_decoded = r->n_sent;
    r->slot = -1;
    s->busy--;
    evtimer_del(r->timer);
    next = TAILQ_FIRST(&s->queue);
    if (next) {
        TAILQ_REMOVE(&s->queue, next, queue);
        s->queued--;
        sim_sched_submit(next);
    }
}

static void sched_start(struct sim_req *r, int slot)
{
    struct sim_srv *s = r->srv;
    const struct sim_conf *cf = &s->conf;
    struct sim_slot *sl = &s->slots[slot];
    uint64_t now = clk_now_us();

    req_set_state(r, SIM_REQ_PREFILL);
    r->slot = slot;
    s->busy++;
    sl->req = r;
    sl->used = true;
    sl->id_task = r->num;
    sl->ep = r->ep;
    sl->stream = r->stream;
    sl->n_prompt = r->prompt_tokens;
    sl->max_tokens = r->max_tokens;
    sl->n_decoded = 0;
    r->t_slot_us = now;
    r->last_write_us = now;
    sched_observe(r, SIM_OBS_START, now);
    r->next_due_us = now + (uint64_t)((double)r->prompt_tokens * 1e6 / cf->prefill_tps);
    if (cf->stall_after == 0) {
        r->next_due_us += (uint64_t)cf->stall_ms * 1000;
        r->stalled = true;
    }
    if (r->stream) {
        struct evbuffer *b = evbuffer_new();
        if (b) {
            r->flavor->stream_head(r, b);
            sim_conn_write(r->conn, b);
            evbuffer_free(b);
        }
    }
    sched_arm(r, now);
}

void sim_sched_submit(struct sim_req *r)
{
    struct sim_srv *s = r->srv;
    int i;

    for (i = 0; i < s->conf.slots; i++) {
        if (s->slots[i].req == NULL) {
            sched_start(r, i);
            return;
        }
    }
    req_set_state(r, SIM_REQ_QUEUED);
    TAILQ_INSERT_TAIL(&s->queue, r, queue);
    s->queued++;
}

void sim_sched_cancel(struct sim_req *r)
{
    struct sim_srv *s = r->srv;

    switch (r->state) {
    case SIM_REQ_NEW:
    case SIM_REQ_ENDED: return;
    case SIM_REQ_QUEUED:
        TAILQ_REMOVE(&s->queue, r, queue);
        s->queued--;
        req_set_state(r, SIM_REQ_ENDED);
        s->stats.cancelled++;
        sched_observe(r, SIM_OBS_CANCEL, clk_now_us());
        sim_conn_log(r->conn, 0, 0, "cancelled_queued");
        return;
    case SIM_REQ_PREFILL:
    case SIM_REQ_DECODE:
        req_set_state(r, SIM_REQ_ENDED);
        s->stats.cancelled++;
        sched_observe(r, SIM_OBS_CANCEL, clk_now_us());
        sim_conn_log(r->conn, r->stream ? 200 : 0, r->n_sent, "cancelled");
        sched_free_slot(r);
        return;
    }
}

/* Counts one decode step: llama.cpp's n_decode_total and busy-slot average. */
static void sched_decode_step(struct sim_srv *s)
{
    s->ctr.n_decode++;
    s->ctr.busy_sum += (uint64_t)s->busy;
}

static void sched_finish(struct sim_req *r)
{
    struct sim_srv *s = r->srv;
    struct sim_counters *ctr = &s->ctr;
    uint64_t pred_us = r->t_last_us - r->t_first_us;
    uint64_t seq = (uint64_t)(r->prompt_tokens + r->n_sent);

    req_set_state(r, SIM_REQ_ENDED);
    s->stats.completed++;
    ctr->predicted_tokens += (uint64_t)r->n_sent;
    ctr->predicted_us += pred_us;
    ctr->bucket_predicted_tokens += (uint64_t)r->n_sent;
    ctr->bucket_predicted_us += pred_us;
    if (seq > ctr->n_tokens_max)
        ctr->n_tokens_max = seq;
    sched_observe(r, SIM_OBS_FINISH, r->t_last_us);
    /* Write the end first: freeing the slot may start the next request. */
    sim_conn_log(r->conn, 200, r->n_sent, "completed");
    if (r->stream) {
        r->flavor->stream_end(r);
        sim_conn_stream_done(r->conn, r->flavor->close_after_stream);
    } else {
        r->flavor->body_end(r);
    }
    sched_free_slot(r);
}

/* --die-after: close with no final events and no terminating chunk. */
static void sched_die(struct sim_req *r)
{
    struct sim_srv *s = r->srv;

    req_set_state(r, SIM_REQ_ENDED);
    s->stats.died++;
    sched_observe(r, SIM_OBS_DIE, clk_now_us());
    sim_conn_log(r->conn, r->stream ? 200 : 0, r->n_sent, "died");
    sim_conn_close_after_flush(r->conn);
    sched_free_slot(r);
}

/* The end of prefill: prompt counters advance (llama.cpp: per decode). */
static void sched_prefill_done(struct sim_req *r, uint64_t now)
{
    struct sim_counters *ctr = &r->srv->ctr;
    uint64_t us = now - r->t_slot_us;

    req_set_state(r, SIM_REQ_DECODE);
    r->t_first_us = now;
    ctr->prompt_tokens += (uint64_t)r->prompt_tokens;
    ctr->prompt_us += us;
    ctr->bucket_prompt_tokens += (uint64_t)r->prompt_tokens;
    ctr->bucket_prompt_us += us;
    sched_decode_step(r->srv);
    sched_observe(r, SIM_OBS_FIRST, now);
}

static void sched_emit_token(struct sim_req *r, uint64_t now)
{
    struct sim_srv *s = r->srv;
    int tok_id;
    struct span tok = sim_text_token(&s->conf, r->seed, r->n_sent, &tok_id);

    sched_observe(r, SIM_OBS_TOKEN, now);
    if (r->stream) {
        struct evbuffer *b = evbuffer_new();
        if (b) {
            r->flavor->stream_token(r, b, r->n_sent, tok);
            sim_conn_chunk(r->conn, b);
            evbuffer_free(b);
        }
        r->last_write_us = now;
    }
    r->n_sent++;
    r->t_last_us = now;
    s->stats.tokens_sent++;
    if (r->n_sent > 1)
        sched_decode_step(s);
}

/* The next inter-token interval, jittered by a factor in [1-F, 1+F]. */
static uint64_t sched_interval_us(struct sim_req *r)
{
    const struct sim_conf *cf = &r->srv->conf;
    double base = 1e6 / cf->decode_tps;

    if (cf->jitter > 0)
        base *= 1.0 - cf->jitter + 2.0 * cf->jitter * sim_rng_unit(&r->jitter_rng);
    return (uint64_t)base;
}

static void sched_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sim_req *r = arg;
    const struct sim_conf *cf = &r->srv->conf;
    uint64_t now = clk_now_us();

    (void)fd;
    (void)what;
    if (r->stream && sim_conn_pending(r->conn) > SIM_OUT_MAX) {
        /* The client stopped reading: memory stays bounded, treat as gone. */
        sim_sched_cancel(r);
        sim_conn_close_after_flush(r->conn);
        return;
    }
    if (now < r->next_due_us) {
        /* Woken for a ping (the stream waited ping_ms for its next token), or
         * a little early: libevent counts from its cached loop time. */
        if (r->stream && cf->ping_ms > 0 &&
            now >= r->last_write_us + (uint64_t)cf->ping_ms * 1000) {
            struct evbuffer *b = evbuffer_new();
            if (b) {
                evbuffer_add(b, ":\n\n", 3);
                sim_conn_chunk(r->conn, b);
                evbuffer_free(b);
            }
            r->last_write_us = now;
        }
        sched_arm(r, now);
        return;
    }
    if (r->state == SIM_REQ_PREFILL)
        sched_prefill_done(r, now);
    if (cf->die_after >= 0 && r->n_sent >= cf->die_after) {
        sched_die(r);
        return;
    }
    sched_emit_token(r, now);
    if (r->n_sent >= r->n_max) {
        sched_finish(r);
        return;
    }
    /* From the deadline, not from now: a late wakeup does not slow the rate. */
    r->next_due_us += sched_interval_us(r);
    if (!r->stalled && cf->stall_after >= 0 && r->n_sent >= cf->stall_after) {
        r->next_due_us += (uint64_t)cf->stall_ms * 1000;
        r->stalled = true;
    }
    sched_arm(r, now);
}
