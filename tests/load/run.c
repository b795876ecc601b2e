/* load run: schedules requests onto slots. Closed loop keeps C in flight;
 * open loop (--rate) starts arrivals at exponential gaps from the seeded PRNG,
 * at most C in flight, counting arrivals that find no free slot as late. With
 * several --url, slot i sends to the (i mod n)th. */
#include "load.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pitot/format/config.h"
#include "pitot/util/clock.h"
#include "pitot/io/tls.h"

struct load_run {
    const struct load_opts *opts;                /* borrowed */
    struct cfg_tls_client tls_cfg;               /* https: the CA file, verification on */
    struct tls_client *tls;                      /* owned: https only */
    struct event_base *base;                     /* borrowed */
    struct sockaddr_storage addr[LOAD_MAX_URLS]; /* one per --url */
    socklen_t addrlen[LOAD_MAX_URLS];
    FILE *json; /* borrowed; NULL without --json */
    long pid;
    struct load_slot **slots; /* owned: opts->concurrency of them */
    unsigned *idle;           /* owned: idle slot indices, a LIFO so the
                                      warmest kept-alive connection goes first */
    unsigned nidle;
    struct json_toks toks; /* toks.tok owned; one loop thread shares it */
    char *scratch;         /* owned: LOAD_SCRATCH_BYTES, shared likewise */
    struct load_stats stats;
    uint64_t next_n;       /* request numbers handed out */
    uint64_t arrivals;     /* open loop: arrivals so far */
    uint64_t late_pending; /* open loop: arrivals waiting for a slot */
    unsigned busy;         /* slots with a request */
    bool closed;           /* no more arrivals/starts (count, deadline) */
    bool interrupted;      /* SIGINT */
    bool finished;
    int status; /* -1 after an allocation failure */
    uint64_t prng;
    uint64_t t_start_us, t_end_us;
    uint64_t next_arrival_us; /* open loop: absolute, so gaps don't drift */
    struct event *arrival;    /* owned: open-loop arrival timer */
    struct event *deadline;   /* owned: --duration timer */
};

const struct load_opts *load_run_opts(const struct load_run *run)
{
    return run->opts;
}

const struct sockaddr *load_run_addr(const struct load_run *run, unsigned index, socklen_t *len)
{
    unsigned u = index % run->opts->nurls;

    *len = run->addrlen[u];
    return (const struct sockaddr *)&run->addr[u];
}

struct event_base *load_run_base(const struct load_run *run)
{
    return run->base;
}

struct tls_client *load_run_tls(const struct load_run *run)
{
    return run->tls;
}

struct json_toks *load_run_toks(struct load_run *run)
{
    return &run->toks;
}

char *load_run_scratch(struct load_run *run)
{
    return run->scratch;
}

struct load_stats *load_run_stats(struct load_run *run)
{
    return &run->stats;
}

uint64_t load_run_duration_us(const struct load_run *run)
{
    uint64_t end = run->t_end_us ? run->t_end_us : clk_now_us();

    return run->t_start_us && end > run->t_start_us ? end - run->t_start_us : 0;
}

bool load_run_interrupted(const struct load_run *run)
{
    return run->interrupted;
}

int load_run_status(const struct load_run *run)
{
    return run->status;
}

/* Closed loop: may another request start? */
static bool load_run_can_start(const struct load_run *run)
{
    if (run->closed)
        return false;
    return run->opts->use_duration || run->next_n < run->opts->requests;
}

static void load_run_check_finished(struct load_run *run)
{
    bool more;

    if (run->finished || run->busy > 0)
        return;
    more = run->opts->open_loop ? !run->closed || run->late_pending > 0 : load_run_can_start(run);
    if (more)
        return;
    run->finished = true;
    run->t_end_us = clk_now_us();
    event_base_loopbreak(run->base);
}

/* Takes an idle slot and starts the next request number on it. */
static void load_run_start_one(struct load_run *run)
{
    const struct load_opts *o = run->opts;
    struct load_slot *s;
    unsigned idx;
    char *req;
    size_t len;

    if (run->nidle == 0)
        return;
    idx = run->idle[run->nidle - 1];
    if (load_req_build(o, &o->urls[idx % o->nurls], run->next_n + 1, &req, &len) < 0) {
        fprintf(stderr, "pitot-load: out of memory building request %llu\n",
                (unsigned long long)run->next_n + 1);
        run->status = -1;
        run->closed = true;
        run->late_pending = 0;
        return;
    }
    run->nidle--;
    s = run->slots[idx];
    run->next_n++;
    run->busy++;
    load_slot_start(s, run->next_n, req, len);
}

void load_run_done(struct load_run *run, struct load_slot *s, const struct load_result *r)
{
    run->busy--;
    run->idle[run->nidle++] = load_slot_index(s);
    if (load_stats_add(&run->stats, run->json, run->pid, run->opts->stream, r) < 0)
        run->status = -1;
    if (run->opts->open_loop) {
        if (run->late_pending > 0) {
            run->late_pending--;
            load_run_start_one(run);
        }
    } else if (load_run_can_start(run)) {
        load_run_start_one(run);
    }
    load_run_check_finished(run);
}

static uint64_t load_run_gap_us(struct load_run *run)
{
    double u = load_rand_unit(&run->prng);

    return (uint64_t)(-log1p(-u) / run->opts->rate_per_s * 1e6);
}

/* Open loop: every arrival due by now, then re-arm for the next one. */
static void load_on_arrival(evutil_socket_t fd, short what, void *arg)
{
    struct load_run *run = arg;
    const struct load_opts *o = run->opts;
    uint64_t now = clk_now_us();

    (void)fd;
    (void)what;
    while (!run->closed && run->next_arrival_us <= now) {
        if (o->use_duration && run->next_arrival_us >= run->t_start_us + o->duration_us) {
            run->closed = true;
            break;
        }
        run->arrivals++;
        if (run->nidle > 0) {
            load_run_start_one(run);
        } else {
            run->late_pending++;
            run->stats.late++;
        }
        if (!o->use_duration && run->arrivals >= o->requests)
            run->closed = true;
        run->next_arrival_us += load_run_gap_us(run);
    }
    if (!run->closed) {
        uint64_t wait = run->next_arrival_us - now;
        struct timeval tv = { (time_t)(wait / 1000000u), (suseconds_t)(wait % 1000000u) };

        evtimer_add(run->arrival, &tv);
    }
    load_run_check_finished(run);
}

static void load_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct load_run *run = arg;

    (void)fd;
    (void)what;
    run->closed = true; /* late arrivals already counted still run */
    evtimer_del(run->arrival);
    load_run_check_finished(run);
}

struct load_run *load_run_new(struct event_base *base, const struct load_opts *o,
                              const struct sockaddr_storage *addrs, const socklen_t *addrlens,
                              FILE *json)
{
    struct load_run *run = calloc(1, sizeof(*run));
    unsigned i;

    if (run == NULL)
        return NULL;
    run->opts = o;
    run->base = base;
    for (i = 0; i < o->nurls; i++) {
        memcpy(&run->addr[i], &addrs[i], addrlens[i]);
        run->addrlen[i] = addrlens[i];
    }
    run->json = json;
    run->pid = (long)getpid();
    run->prng = o->seed;
    run->toks.cap = LOAD_JSON_TOKENS;
    run->toks.tok = malloc(json_toks_size(LOAD_JSON_TOKENS));
    run->scratch = malloc(LOAD_SCRATCH_BYTES);
    run->slots = calloc(o->concurrency, sizeof(*run->slots));
    run->idle = calloc(o->concurrency, sizeof(*run->idle));
    run->arrival = evtimer_new(base, load_on_arrival, run);
    run->deadline = evtimer_new(base, load_on_deadline, run);
    if (o->https) {
        char err[512];

        run->tls_cfg.verify = true;
        if (o->cacert)
            snprintf(run->tls_cfg.ca_file, sizeof(run->tls_cfg.ca_file), "%s", o->cacert);
        run->tls = tls_client_new(&run->tls_cfg, o->urls[0].host, err, sizeof(err));
        if (run->tls == NULL) {
            fprintf(stderr, "pitot-load: %s\n", err);
            load_run_free(run);
            return NULL;
        }
    }
    if (run->toks.tok == NULL || run->scratch == NULL || run->slots == NULL || run->idle == NULL ||
        run->arrival == NULL || run->deadline == NULL) {
        load_run_free(run);
        return NULL;
    }
    for (i = 0; i < o->concurrency; i++) {
        run->slots[i] = load_slot_new(run, i);
        if (run->slots[i] == NULL) {
            load_run_free(run);
            return NULL;
        }
    }
    /* Pushed in reverse so slot 0 is taken first. */
    for (i = o->concurrency; i-- > 0;)
        run->idle[run->nidle++] = i;
    return run;
}

int load_run_start(struct load_run *run)
{
    const struct load_opts *o = run->opts;

    run->t_start_us = clk_now_us();
    if (o->use_duration) {
        struct timeval tv = { (time_t)(o->duration_us / 1000000u),
                              (suseconds_t)(o->duration_us % 1000000u) };

        if (evtimer_add(run->deadline, &tv) < 0)
            return -1;
    }
    if (o->open_loop) {
        run->next_arrival_us = run->t_start_us;
        load_on_arrival(-1, EV_TIMEOUT, run);
    } else {
        while (run->nidle > 0 && load_run_can_start(run) && run->status == 0)
            load_run_start_one(run);
        load_run_check_finished(run);
    }
    return run->status;
}

void load_run_interrupt(struct load_run *run)
{
    unsigned i;

    if (run->finished)
        return;
    run->interrupted = true;
    run->closed = true;
    run->late_pending = 0;
    evtimer_del(run->arrival);
    evtimer_del(run->deadline);
    for (i = 0; i < run->opts->concurrency; i++)
        load_slot_abort(run->slots[i]);
    run->busy = 0;
    load_run_check_finished(run);
}

void load_run_free(struct load_run *run)
{
    unsigned i;

    if (run == NULL)
        return;
    if (run->slots)
        for (i = 0; i < run->opts->concurrency; i++)
            load_slot_free(run->slots[i]);
    free(run->slots);
    free(run->idle);
    if (run->arrival)
        event_free(run->arrival);
    if (run->deadline)
        event_free(run->deadline);
    free(run->toks.tok);
    free(run->scratch);
    load_stats_release(&run->stats);
    tls_client_free(run->tls);
    free(run);
}
