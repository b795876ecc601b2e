/* status: /status.json from the backend table, the metrics registries and a
 * ring of once-a-second snapshots (the last minute's figures are differences
 * between its newest and oldest), the embedded page, the admin paths and
 * token, and the process's reload callback. */
#include "pitot/serve/status.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "pitot/format/config.h"
#include "pitot/format/flavor.h"
#include "pitot/measure/metrics.h"
#include "pitot/route/router.h"
#include "pitot/util/clock.h"
#include "pitot/util/err.h"
#include "pitot/util/version.h"

/* src/serve/status_page.html as `status_page_html[]` and `_len`, generated
 * into the build directory by xxd -i (see the Makefile) */
#include "status_page.inc"

#define STATUS_SLOTS (STATUS_WINDOW_S + 1) /* a minute of differences */
#define STATUS_BE_FIXED 3                  /* requests, errors, load; then TTFT buckets */
#define STATUS_TIER_FIELDS 3               /* shed, slo_met, slo_total */

/* One backend as the JSON shows it, copied under the router's lock. */
struct status_be {
    char name[CFG_NAME_MAX];
    bool active, up, loading, disabled, saturated;
    bool removed; /* a reload removed it: its last requests run */
    enum cfg_flavor flavor;
    unsigned capacity, in_flight;
    uint32_t running, waiting, tpot_us;
    int cache_permille;
    uint64_t scraped_us, ejected_until_us;
};

struct status {
    pthread_mutex_t lock;             /* the ring, cur */
    char (*tier)[CFG_NAME_MAX];       /* owned, ntiers: their names (copied: a
                                           reload may drop the config) */
    bool *tier_live;                  /* owned, ntiers: a configured tier, shown */
    struct router *rt;                /* borrowed */
    struct met_registry *const *regs; /* borrowed */
    size_t nregs;
    unsigned nbe, ntiers, nb;    /* backends, tiers, finite TTFT buckets */
    const uint64_t *bound_us;    /* borrowed from regs[0]: nb bounds */
    size_t stride;               /* uint64 per snapshot */
    uint64_t *ring;              /* owned: STATUS_SLOTS * stride */
    uint64_t t_us[STATUS_SLOTS]; /* monotonic time of each snapshot */
    unsigned head;               /* next slot to write */
    unsigned count;              /* snapshots held, <= STATUS_SLOTS */
    struct status_be *cur;       /* owned scratch, nbe */
    uint64_t start_us;           /* monotonic, at status_new */
    struct event *timer;         /* owned: the sampler; NULL until started */
    status_reload_cb reload;     /* the process's, or NULL */
    void *reload_ud;
};

struct span status_page(void)
{
    return span_make((const char *)status_page_html, status_page_html_len);
}

static size_t status_be_stride(const struct status *st)
{
    return STATUS_BE_FIXED + st->nb + 1;
}

struct status *status_new(const struct cfg *c, struct router *rt, struct met_registry *const *regs,
                          size_t nregs)
{
    struct status *st = calloc(1, sizeof(*st));
    unsigned i;

    if (st == NULL)
        return NULL;
    st->rt = rt;
    st->regs = regs;
    st->nregs = nregs;
    st->nbe = (unsigned)rt->bal.n;
    st->ntiers = (unsigned)c->ntiers;
    st->nb = nregs ? met_bounds_us(regs[0], &st->bound_us) : 0;
    if (st->nb > CFG_MAX_BUCKETS)
        st->nb = CFG_MAX_BUCKETS;
    st->stride = st->nbe * status_be_stride(st) + (size_t)st->ntiers * STATUS_TIER_FIELDS;
    st->ring = calloc(STATUS_SLOTS * (st->stride ? st->stride : 1), sizeof(uint64_t));
    st->cur = calloc(st->nbe ? st->nbe : 1, sizeof(*st->cur));
    st->tier = calloc(st->ntiers ? st->ntiers : 1, sizeof(*st->tier));
    st->tier_live = calloc(st->ntiers ? st->ntiers : 1, sizeof(*st->tier_live));
    st->start_us = clk_now_us();
    if (st->ring == NULL || st->cur == NULL || st->tier == NULL || st->tier_live == NULL ||
        pthread_mutex_init(&st->lock, NULL) != 0) {
        free(st->ring);
        free(st->cur);
        free(st->tier);
        free(st->tier_live);
        free(st);
        return NULL;
    }
    for (i = 0; i < st->ntiers; i++) {
        snprintf(st->tier[i], CFG_NAME_MAX, "%s", c->tiers[i].name);
        st->tier_live[i] = !c->tiers[i].spare;
    }
    return st;
}

void status_free(struct status *st)
{
    if (st == NULL)
        return;
    if (st->timer)
        event_free(st->timer);
    pthread_mutex_destroy(&st->lock);
    free(st->ring);
    free(st->cur);
    free(st->tier);
    free(st->tier_live);
    free(st);
}

static void status_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct status *st = arg;

    (void)fd;
    (void)what;
    status_sample(st, clk_now_us());
}

int status_start(struct status *st, struct event_base *base)
{
    struct timeval one = { 1, 0 };

    st->timer = event_new(base, -1, EV_PERSIST, status_timer_cb, st);
    if (st->timer == NULL || event_add(st->timer, &one) != 0)
        return -PITOT_ENOMEM;
    status_sample(st, clk_now_us());
    return 0;
}

void status_set_reload(struct status *st, status_reload_cb cb, void *ud)
{
    st->reload = cb;
    st->reload_ud = ud;
}

int status_reload(struct status *st)
{
    if (st == NULL || st->reload == NULL)
        return -PITOT_ENOT_IMPLEMENTED;
    return st->reload(st->reload_ud);
}

/* Copies what the JSON and the snapshots read of the backend table into
 * st->cur, under the router's lock (held briefly: no formatting in it). */
static void status_copy_table(struct status *st, uint64_t now_us)
{
    struct bal *bl = &st->rt->bal;
    unsigned i;

    router_lock(st->rt);
    for (i = 0; i < st->nbe && i < bl->n; i++) {
        const struct bal_backend *b = &bl->b[i];
        struct status_be *o = &st->cur[i];

        snprintf(o->name, sizeof(o->name), "%s", b->cfg->name);
        o->active = b->active;
        o->up = b->up;
        o->loading = b->loading;
        o->disabled = b->disabled;
        o->removed = b->cfg->spare;
        o->saturated = bal_saturated(bl, b, now_us);
        o->flavor = b->flavor;
        o->capacity = b->capacity;
        o->in_flight = b->in_flight;
        o->running = b->running;
        o->waiting = b->waiting;
        o->tpot_us = b->tpot_us;
        o->cache_permille = b->cache_permille;
        o->scraped_us = b->scraped_us;
        o->ejected_until_us = bal_ejected(b, now_us) ? b->ejected_until_us : 0;
    }
    router_unlock(st->rt);
}

/* A backend's load as the sparkline shows it: the larger of pitot's
 * in-flight count and the backend's own running + waiting (not once it is
 * down: its last scrape is old news). */
static uint64_t status_load(const struct status_be *b)
{
    uint64_t own = b->up && b->scraped_us ? (uint64_t)b->running + b->waiting : 0;

    return own > b->in_flight ? own : b->in_flight;
}

void status_sample(struct status *st, uint64_t now_us)
{
    struct met_backend_totals bt;
    struct met_tier_totals tt;
    uint64_t *s;
    unsigned i, k;

    pthread_mutex_lock(&st->lock);
    status_copy_table(st, now_us);
    s = st->ring + (size_t)st->head * st->stride;
    for (i = 0; i < st->nbe; i++) {
        uint64_t *o = s + (size_t)i * status_be_stride(st);

        met_totals_backend(st->regs, st->nregs, i, &bt);
        o[0] = bt.requests;
        o[1] = bt.errors;
        o[2] = status_load(&st->cur[i]);
        for (k = 0; k <= st->nb; k++)
            o[STATUS_BE_FIXED + k] = bt.ttft[k];
    }
    for (i = 0; i < st->ntiers; i++) {
        uint64_t *o = s + (size_t)st->nbe * status_be_stride(st) + (size_t)i * STATUS_TIER_FIELDS;

        met_totals_tier(st->regs, st->nregs, i, &tt);
        o[0] = tt.shed;
        o[1] = tt.slo_met;
        o[2] = tt.slo_total;
    }
    st->t_us[st->head] = now_us;
    st->head = (st->head + 1) % STATUS_SLOTS;
    if (st->count < STATUS_SLOTS)
        st->count++;
    pthread_mutex_unlock(&st->lock);
}

/* Slot of the k-th snapshot held, 0 the oldest. */
static unsigned status_slot(const struct status *st, unsigned k)
{
    return (st->head + STATUS_SLOTS - st->count + k) % STATUS_SLOTS;
}

static const uint64_t *status_snap(const struct status *st, unsigned slot)
{
    return st->ring + (size_t)slot * st->stride;
}

/* histogram_quantile (Prometheus) over non-cumulative bucket counts d[0..nb]
 * (d[nb] above every bound): linear within the bucket the rank falls in;
 * the highest finite bound when it falls above them all. -1 when empty. */
static double status_quantile(double q, const uint64_t *d, const uint64_t *bound_us, unsigned nb)
{
    uint64_t total = 0, cum = 0;
    double rank;
    unsigned i;

    for (i = 0; i <= nb; i++)
        total += d[i];
    if (total == 0 || nb == 0)
        return -1;
    rank = q * (double)total;
    for (i = 0; i <= nb; i++) {
        uint64_t prev = cum;
        double lo, hi;

        cum += d[i];
        if ((double)cum < rank || d[i] == 0)
            continue;
        if (i == nb)
            return (double)bound_us[nb - 1];
        lo = i ? (double)bound_us[i - 1] : 0;
        hi = (double)bound_us[i];
        return lo + (hi - lo) * (rank - (double)prev) / (double)d[i];
    }
    return (double)bound_us[nb - 1];
}

/* The state the page shows, worst news first. */
static const char *status_state(const struct status_be *b)
{
    if (b->removed)
        return "draining";
    if (b->disabled)
        return b->in_flight ? "draining" : "disabled";
    if (!b->up)
        return b->loading ? "loading" : "down";
    if (b->ejected_until_us)
        return "ejected";
    return "up";
}

/* A JSON string of a config name: names are printable ASCII already (the
 * config refuses control bytes); quotes and backslashes are escaped. */
static void status_str(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            evbuffer_add(out, "\\", 1);
        if ((unsigned char)*s >= 0x20 && *s != 0x7f)
            evbuffer_add(out, s, 1);
    }
    evbuffer_add(out, "\"", 1);
}

/* A number, or null when v < 0 (unknown). */
static void status_num(struct evbuffer *out, const char *key, double v, int prec)
{
    if (v < 0)
        evbuffer_add_printf(out, ",\"%s\":null", key);
    else
        evbuffer_add_printf(out, ",\"%s\":%.*f", key, prec, v);
}

static void status_json_backend(struct status *st, struct evbuffer *out, unsigned i,
                                uint64_t now_us, bool first)
{
    const struct status_be *b = &st->cur[i];
    size_t bs = status_be_stride(st), off = (size_t)i * bs;
    const uint64_t *old = NULL, *now = NULL;
    uint64_t d[CFG_MAX_BUCKETS + 1], req = 0, err = 0;
    unsigned k;

    if (st->count >= 2) {
        old = status_snap(st, status_slot(st, 0)) + off;
        now = status_snap(st, status_slot(st, st->count - 1)) + off;
        req = now[0] - old[0];
        err = now[1] - old[1];
        for (k = 0; k <= st->nb; k++)
            d[k] = now[STATUS_BE_FIXED + k] - old[STATUS_BE_FIXED + k];
    } else {
        memset(d, 0, sizeof(d));
    }
    evbuffer_add_printf(out, "%s{\"name\":", first ? "" : ",");
    status_str(out, b->name);
    evbuffer_add_printf(out, ",\"state\":\"%s\",\"disabled\":%s,\"saturated\":%s", status_state(b),
                        b->disabled ? "true" : "false", b->saturated ? "true" : "false");
    status_num(out, "ejected_left_s",
               b->ejected_until_us > now_us ? (double)(b->ejected_until_us - now_us) / 1e6 : -1, 1);
    evbuffer_add_printf(out, ",\"flavor\":\"%s\",\"capacity\":%u,\"in_flight\":%u",
                        flv_name(b->flavor), b->capacity, b->in_flight);
    if (b->scraped_us) {
        evbuffer_add_printf(out, ",\"running\":%u,\"waiting\":%u", b->running, b->waiting);
        status_num(out, "scrape_age_s",
                   now_us > b->scraped_us ? (double)(now_us - b->scraped_us) / 1e6 : 0, 1);
    } else {
        evbuffer_add_printf(out, ",\"running\":null,\"waiting\":null,\"scrape_age_s\":null");
    }
    status_num(out, "cache", b->cache_permille >= 0 ? b->cache_permille / 1000.0 : -1, 3);
    status_num(out, "tpot_ms", b->tpot_us ? b->tpot_us / 1000.0 : -1, 2);
    status_num(out, "ttft_p50_ms", status_quantile(0.5, d, st->bound_us, st->nb) / 1000.0, 1);
    status_num(out, "ttft_p95_ms", status_quantile(0.95, d, st->bound_us, st->nb) / 1000.0, 1);
    evbuffer_add_printf(out, ",\"requests_1m\":%llu,\"errors_1m\":%llu", (unsigned long long)req,
                        (unsigned long long)err);
    status_num(out, "error_rate", req ? (double)err / (double)req : -1, 4);
    evbuffer_add_printf(out, ",\"load\":[");
    for (k = 0; k < st->count; k++)
        evbuffer_add_printf(out, "%s%llu", k ? "," : "",
                            (unsigned long long)status_snap(st, status_slot(st, k))[off + 2]);
    evbuffer_add_printf(out, "]}");
}

static void status_json_tier(struct status *st, struct evbuffer *out, unsigned t, bool first)
{
    size_t off = (size_t)st->nbe * status_be_stride(st) + (size_t)t * STATUS_TIER_FIELDS;
    struct met_tier_totals tt;
    uint64_t shed = 0, met = 0, all = 0;

    if (st->count >= 2) {
        const uint64_t *old = status_snap(st, status_slot(st, 0)) + off;
        const uint64_t *now = status_snap(st, status_slot(st, st->count - 1)) + off;
        shed = now[0] - old[0];
        met = now[1] - old[1];
        all = now[2] - old[2];
    }
    met_totals_tier(st->regs, st->nregs, t, &tt);
    evbuffer_add_printf(out, "%s{\"name\":", first ? "" : ",");
    status_str(out, st->tier[t]);
    evbuffer_add_printf(out, ",\"queue_depth\":%lld,\"shed_1m\":%llu,\"slo_1m\":%llu",
                        (long long)tt.queue_depth, (unsigned long long)shed,
                        (unsigned long long)all);
    status_num(out, "goodput", all ? (double)met / (double)all : -1, 4);
    evbuffer_add_printf(out, "}");
}

int status_json(struct status *st, struct evbuffer *out, uint64_t now_us)
{
    struct met_process_now pn;
    uint64_t window_us = 0;
    unsigned i;
    bool first = true;

    met_process_read(&pn);
    pthread_mutex_lock(&st->lock);
    status_copy_table(st, now_us);
    if (st->count >= 2)
        window_us = st->t_us[status_slot(st, st->count - 1)] - st->t_us[status_slot(st, 0)];
    evbuffer_add_printf(out,
                        "{\"version\":\"%s\",\"uptime_s\":%llu,\"workers\":%zu,\"rss_bytes\":%lld,"
                        "\"open_fds\":%lld,\"reloads\":{\"ok\":%llu,\"failed\":%llu},"
                        "\"reload\":%s,\"window_s\":%.1f,\"backends\":[",
                        PITOT_VERSION, (unsigned long long)((now_us - st->start_us) / 1000000),
                        st->nregs, (long long)pn.rss_bytes, (long long)pn.open_fds,
                        (unsigned long long)met_reload_count(true),
                        (unsigned long long)met_reload_count(false), st->reload ? "true" : "false",
                        (double)window_us / 1e6);
    for (i = 0; i < st->nbe; i++) {
        if (!st->cur[i].active) /* a DNS slot without an address, as in /metrics */
            continue;
        status_json_backend(st, out, i, now_us, first);
        first = false;
    }
    evbuffer_add_printf(out, "],\"tiers\":[");
    for (i = 0, first = true; i < st->ntiers; i++) {
        if (!st->tier_live[i]) /* a spare slot, as in /metrics */
            continue;
        status_json_tier(st, out, i, first);
        first = false;
    }
    pthread_mutex_unlock(&st->lock);
    return evbuffer_add_printf(out, "]}") < 0 ? -1 : 0;
}

static int status_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

enum status_action status_backend_path(struct span path, char *name, size_t cap)
{
    static const char prefix[] = "/admin/backends/";
    const size_t pn = sizeof(prefix) - 1;
    const char *slash;
    struct span raw, act;
    enum status_action a;
    size_t i, n = 0;

    if (cap == 0)
        return STATUS_ACT_NONE;
    name[0] = '\0';
    if (path.len <= pn || memcmp(path.p, prefix, pn) != 0)
        return STATUS_ACT_NONE;
    raw = span_make(path.p + pn, path.len - pn);
    slash = memrchr(raw.p, '/', raw.len);
    if (slash == NULL)
        return STATUS_ACT_NONE;
    act = span_make(slash + 1, raw.len - (size_t)(slash + 1 - raw.p));
    raw.len = (size_t)(slash - raw.p);
    if (span_eq(act, "disable"))
        a = STATUS_ACT_DISABLE;
    else if (span_eq(act, "enable"))
        a = STATUS_ACT_ENABLE;
    else
        return STATUS_ACT_NONE;
    for (i = 0; i < raw.len; i++) {
        int c = (unsigned char)raw.p[i];

        if (c == '%') {
            int h = i + 2 < raw.len ? status_hex(raw.p[i + 1]) : -1;
            int l = h >= 0 ? status_hex(raw.p[i + 2]) : -1;
            if (l < 0)
                return STATUS_ACT_NONE;
            c = h * 16 + l;
            i += 2;
        }
        if (c < 0x21 || c > 0x7e || n + 1 >= cap)
            return STATUS_ACT_NONE;
        name[n++] = (char)c;
    }
    name[n] = '\0';
    return n ? a : STATUS_ACT_NONE;
}

static bool status_blank(char c)
{
    return c == ' ' || c == '\t';
}

bool status_token_ok(const char *token, struct span auth)
{
    static const char scheme[] = "Bearer";
    const size_t sn = sizeof(scheme) - 1;
    unsigned char want[32], got[32];
    bool ok;

    if (token[0] == '\0')
        return true;
    while (auth.len && status_blank(auth.p[auth.len - 1]))
        auth.len--;
    if (auth.len <= sn || !span_ieq(span_make(auth.p, sn), scheme) || !status_blank(auth.p[sn]))
        return false;
    auth = span_make(auth.p + sn, auth.len - sn);
    while (auth.len && status_blank(auth.p[0]))
        auth = span_make(auth.p + 1, auth.len - 1);
    if (EVP_Digest(token, strlen(token), want, NULL, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(auth.p, auth.len, got, NULL, EVP_sha256(), NULL) != 1)
        return false;
    ok = CRYPTO_memcmp(want, got, sizeof(want)) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    OPENSSL_cleanse(got, sizeof(got));
    return ok;
}

void status_backend_reset(struct status *st, unsigned be)
{
    size_t w;
    unsigned k;

    if (st == NULL || be >= st->nbe)
        return;
    w = status_be_stride(st);
    pthread_mutex_lock(&st->lock);
    for (k = 0; k < STATUS_SLOTS; k++)
        memset(&st->ring[k * st->stride + be * w], 0, w * sizeof(uint64_t));
    pthread_mutex_unlock(&st->lock);
}

void status_set_tier(struct status *st, unsigned t, const char *name, bool live)
{
    if (st == NULL || t >= st->ntiers)
        return;
    pthread_mutex_lock(&st->lock);
    snprintf(st->tier[t], CFG_NAME_MAX, "%s", name);
    st->tier_live[t] = live;
    pthread_mutex_unlock(&st->lock);
}
