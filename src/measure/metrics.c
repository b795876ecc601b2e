/* metrics: the metrics registry (dense arrays sized once from the config), the
 * Prometheus text exposition merging one registry per worker, and the docs. */
#include "pitot/measure/metrics.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "metrics_int.h"
#include "pitot/format/config.h"
#include "pitot/util/clock.h"

#define MET_CODES_MAX 24 /* distinct status codes kept per series */
#define MET_NCLASS 6     /* [0] no valid status ("0"), [1..5] "1xx".."5xx" */
#define MET_NFINISH (JSON_FINISH_OTHER - JSON_FINISH_NONE) /* reasons after NONE */
#define MET_SERIES_MAX (1u << 20) /* refuse configs whose arrays would be absurd */
#define MET_FG_ABSENT                                                                              \
    UINT64_MAX /* float gauge bits meaning "no series" (a NaN
                                    met_gauge_set_f never stores) */

static const struct met_def {
    const char *name;
    enum met_type type;
    enum met_labels labels;
    const char *help;
} met_defs[MET__COUNT] = {
#define MET_DEF_ROW(id, name, type, labels, help) { name, MET_##type, MET_L_##labels, help },
    MET_LIST(MET_DEF_ROW)
#undef MET_DEF_ROW
};

static const char *const met_label_names[MET_L__COUNT] = {
#define MET_LABELS_ROW(id, names) names,
    MET_LABELS_LIST(MET_LABELS_ROW)
#undef MET_LABELS_ROW
};

static const char *const met_type_names[] = { "counter", "gauge", "histogram" };

static const char *const met_scrape_labels[MET_SCRAPE__COUNT] = {
#define MET_SCRAPE_ROW(id, label) label,
    MET_SCRAPE_LIST(MET_SCRAPE_ROW)
#undef MET_SCRAPE_ROW
};

static const char *const met_shed_labels[MET_SHED__COUNT] = {
#define MET_SHED_ROW(id, label) label,
    MET_SHED_LIST(MET_SHED_ROW)
#undef MET_SHED_ROW
};

static const char *const met_slo_labels[2] = { "false", "true" }; /* index: met */

static const char *const met_trace_drop_labels[MET_TRACE_DROP__COUNT] = {
#define MET_TRACE_DROP_ROW(id, label) label,
    MET_TRACE_DROP_LIST(MET_TRACE_DROP_ROW)
#undef MET_TRACE_DROP_ROW
};

/* How met_expose combines one value across registries. */
enum met_merge {
    MET_MERGE_SUM,
    MET_MERGE_FIRST, /* regs[0]: the loop that runs health checks and scrapes */
    MET_MERGE_MAX,
};

static enum met_store met_store_of(enum met_id id)
{
    const struct met_def *d = &met_defs[id];

    switch (id) {
    case MET_BACKEND_RUNNING:
    case MET_BACKEND_WAITING:
    case MET_BACKEND_CACHE: return MET_ST_FGAUGE;
    case MET_BACKEND_SCRAPE_AGE: return MET_ST_OWN;
    default: break;
    }
    if (d->labels == MET_L_BMT)
        return d->type == MET_HISTOGRAM ? MET_ST_HIST : MET_ST_CTR;
    if (d->labels == MET_L_B && d->type == MET_GAUGE)
        return MET_ST_GAUGE;
    if (d->labels == MET_L_T && d->type == MET_GAUGE)
        return MET_ST_TGAUGE;
    if (d->labels == MET_L_T && d->type == MET_HISTOGRAM)
        return MET_ST_THIST;
    return MET_ST_OWN;
}

static enum met_merge met_merge_of(enum met_id id)
{
    switch (id) {
    case MET_BACKEND_UP:
    case MET_BACKEND_RUNNING:
    case MET_BACKEND_WAITING:
    case MET_BACKEND_CACHE:
    case MET_BACKEND_SCRAPE_AGE: return MET_MERGE_FIRST;
    case MET_BACKEND_EJECTED: return MET_MERGE_MAX;
    default: return MET_MERGE_SUM;
    }
}

static const char *const met_class_labels[MET_NCLASS] = { "0", "1xx", "2xx", "3xx", "4xx", "5xx" };

/* Everything of one (backend, model, tier) series except histograms and plain
 * counters. Only the owning loop writes; met_expose may read from another
 * thread, hence relaxed atomics (plain loads and stores on x86-64 and arm64:
 * a single writer needs no read-modify-write). */
struct met_bmt {
    _Atomic unsigned char touched; /* any observation on this series */
    _Atomic unsigned char ncodes;  /* code[] rows in use, published with release */
    uint16_t code[MET_CODES_MAX];  /* written once, before ncodes covers it */
    _Atomic uint64_t code_n[MET_CODES_MAX];
    _Atomic uint64_t class_n[MET_NCLASS];
    _Atomic uint64_t finish_n[MET_NFINISH];
};

static inline void met_touch(struct met_registry *r, unsigned series)
{
    atomic_store_explicit(&r->bmt[series].touched, 1, memory_order_relaxed);
}

void met_fmt_float(char *out, size_t cap, double v)
{
    char tmp[40];
    const char *e;
    int p, exp;

    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof(tmp), "%.*e", p - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    if (p > 17)
        p = 17;
    e = strchr(tmp, 'e');
    exp = e != NULL ? atoi(e + 1) : 0;
    if (exp < -4 || exp >= 6) {
        size_t len = strlen(tmp); /* at most 24 bytes: "-1.2345678901234567e+308" */

        if (len >= cap)
            len = cap - 1;
        memcpy(out, tmp, len);
        out[len] = '\0';
    } else {
        snprintf(out, cap, "%.*f", p - 1 - exp > 0 ? p - 1 - exp : 0, v);
    }
}

static bool met_model_byte_ok(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("._:/@+-", c) != NULL);
}

static bool met_row_eq(const char *row, const char *p, size_t len)
{
    return memcmp(row, p, len) == 0 && row[len] == '\0';
}

/* Row of `name` among the first n rows, or MET_NONE. */
static unsigned met_model_find(const struct met_registry *r, unsigned n, const char *p, size_t len)
{
    unsigned i;

    for (i = 0; i < n; i++)
        if (met_row_eq(r->model[i], p, len))
            return i;
    return MET_NONE;
}

void met_registry_free(struct met_registry *r)
{
    if (r == NULL)
        return;
    free(r->backend);
    free(r->tier);
    free(r->model);
    free(r->bmt);
    free(r->ctr);
    free(r->hist);
    free(r->uperr);
    free(r->gauge);
    free(r->fgauge);
    free(r->scraped_us);
    free(r->scrape);
    free(r->tgauge);
    free(r->thist);
    free(r->shed);
    free(r->slo);
    free(r->active);
    free(r->tier_live);
    met_otel_free(r->otel);
    free(r);
}

/* Copies the configured names; fails on buckets that are not finite,
 * non-negative and strictly ascending once in microseconds. */
static int met_registry_names(struct met_registry *r, const struct cfg *c)
{
    unsigned i, nm = 0;

    for (i = 0; i < r->nbackends; i++)
        snprintf(r->backend[i], CFG_NAME_MAX, "%s", c->backends[i].name);
    if (c->ntiers == 0)
        snprintf(r->tier[0], CFG_NAME_MAX, "default");
    for (i = 0; i < c->ntiers; i++)
        snprintf(r->tier[i], CFG_NAME_MAX, "%s", c->tiers[i].name);

    /* Configured models, without empties, duplicates or "other", which would
     * repeat a series; a dropped one leaves room for one more learned name. */
    for (i = 0; i < c->nmodels; i++) {
        size_t len = strnlen(c->models[i], CFG_NAME_MAX - 1);

        if (len == 0 || strcmp(c->models[i], MET_MODEL_OTHER) == 0 ||
            met_model_find(r, nm, c->models[i], len) != MET_NONE)
            continue;
        memcpy(r->model[nm], c->models[i], len);
        r->model[nm][len] = '\0';
        nm++;
    }
    atomic_store_explicit(&r->nmodels, nm, memory_order_relaxed);
    snprintf(r->model[r->nmodel_slots - 1], CFG_NAME_MAX, "%s", MET_MODEL_OTHER);

    for (i = 0; i < r->nbuckets; i++) {
        double b = c->buckets[i];

        if (!(b >= 0.0 && b < 9e12))
            return -1;
        r->bound_us[i] = (uint64_t)(b * 1e6 + 0.5);
        if (i > 0 && r->bound_us[i] <= r->bound_us[i - 1])
            return -1;
        met_fmt_float(r->le[i], MET_LE_MAX, b);
    }
    return 0;
}

struct met_registry *met_registry_new(const struct cfg *c)
{
    struct met_registry *r;
    uint64_t nseries;
    unsigned i, stride;

    if (c->nbackends > CFG_MAX_BACKENDS || c->ntiers > CFG_MAX_TIERS ||
        c->nmodels > CFG_MAX_MODELS || c->nbuckets > CFG_MAX_BUCKETS)
        return NULL;
    nseries = (uint64_t)c->nbackends * ((uint64_t)c->nmodels + c->max_model_labels + 1) *
              (c->ntiers > 0 ? c->ntiers : 1) * MET_NAPI;
    if (nseries > MET_SERIES_MAX)
        return NULL;

    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->nbackends = (unsigned)c->nbackends;
    r->ntiers = c->ntiers > 0 ? (unsigned)c->ntiers : 1; /* tier "default" */
    r->nmodel_slots = (unsigned)c->nmodels + c->max_model_labels + 1;
    r->nseries = (unsigned)nseries;
    r->nbuckets = (unsigned)c->nbuckets;
    for (i = 0; i < MET__COUNT; i++) {
        unsigned *n = NULL;

        r->store[i] = met_store_of((enum met_id)i);
        switch (r->store[i]) {
        case MET_ST_CTR: n = &r->nctr; break;
        case MET_ST_HIST: n = &r->nhist; break;
        case MET_ST_GAUGE: n = &r->ngauge; break;
        case MET_ST_FGAUGE: n = &r->nfgauge; break;
        case MET_ST_TGAUGE: n = &r->ntgauge; break;
        case MET_ST_THIST: n = &r->nthist; break;
        case MET_ST_OWN: break;
        }
        r->slot[i] = n != NULL ? (int)(*n)++ : -1;
    }
    stride = r->nbuckets + 2;

    /* calloc's zero bytes are valid zero values for these lock-free atomics. */
    r->backend = calloc(r->nbackends + 1, sizeof(*r->backend));
    r->tier = calloc(r->ntiers, sizeof(*r->tier));
    r->model = calloc(r->nmodel_slots, sizeof(*r->model));
    /* after the series: pitot's own answers, per (tier, api) */
    r->bmt = calloc(r->nseries + (size_t)r->ntiers * MET_NAPI + 1, sizeof(*r->bmt));
    r->ctr = calloc((size_t)r->nseries * r->nctr + 1, sizeof(*r->ctr));
    r->hist = calloc((size_t)r->nhist * r->nseries * stride + 1, sizeof(*r->hist));
    r->uperr = calloc((size_t)r->nbackends * PITOT_E__COUNT + 1, sizeof(*r->uperr));
    r->gauge = calloc((size_t)r->ngauge * r->nbackends + 1, sizeof(*r->gauge));
    r->fgauge = calloc((size_t)r->nfgauge * r->nbackends + 1, sizeof(*r->fgauge));
    r->scraped_us = calloc(r->nbackends + 1, sizeof(*r->scraped_us));
    r->scrape = calloc((size_t)r->nbackends * MET_SCRAPE__COUNT + 1, sizeof(*r->scrape));
    r->tgauge = calloc((size_t)r->ntgauge * r->ntiers + 1, sizeof(*r->tgauge));
    r->thist = calloc((size_t)r->nthist * r->ntiers * stride + 1, sizeof(*r->thist));
    r->shed = calloc((size_t)r->ntiers * MET_SHED__COUNT + 1, sizeof(*r->shed));
    r->slo = calloc((size_t)r->ntiers * 2 + 1, sizeof(*r->slo));
    r->active = calloc(r->nbackends + 1, sizeof(*r->active));
    r->tier_live = calloc(r->ntiers, sizeof(*r->tier_live));
    if (r->active == NULL || r->tier_live == NULL || r->backend == NULL || r->tier == NULL ||
        r->model == NULL || r->bmt == NULL || r->ctr == NULL || r->hist == NULL ||
        r->uperr == NULL || r->gauge == NULL || r->fgauge == NULL || r->scraped_us == NULL ||
        r->scrape == NULL || r->tgauge == NULL || r->thist == NULL || r->shed == NULL ||
        r->slo == NULL || met_registry_names(r, c) < 0 ||
        (c->otel_metrics && (r->otel = met_otel_new(r, c)) == NULL)) {
        met_registry_free(r);
        return NULL;
    }
    for (i = 0; i < r->nfgauge * r->nbackends; i++)
        atomic_init(&r->fgauge[i], MET_FG_ABSENT);
    for (i = 0; i < r->nbackends; i++)
        atomic_init(&r->active[i], !c->backends[i].dns && !c->backends[i].spare);
    for (i = 0; i < r->ntiers; i++)
        atomic_init(&r->tier_live[i], c->ntiers == 0 || !c->tiers[i].spare);
    return r;
}

static bool met_model_name_ok(struct span name)
{
    size_t k;

    if (name.len == 0 || name.len > CFG_NAME_MAX - 1)
        return false;
    for (k = 0; k < name.len; k++)
        if (!met_model_byte_ok((unsigned char)name.p[k]))
            return false;
    return true;
}

unsigned met_model_lookup(const struct met_registry *r, struct span name)
{
    unsigned i;

    if (!met_model_name_ok(name))
        return r->nmodel_slots - 1;
    i = met_model_find(r,
                       atomic_load_explicit((_Atomic unsigned *)&r->nmodels, memory_order_relaxed),
                       name.p, name.len);
    return i != MET_NONE ? i : r->nmodel_slots - 1;
}

void met_model_name(const struct met_registry *r, unsigned model, char *out, size_t cap)
{
    unsigned n = atomic_load_explicit((_Atomic unsigned *)&r->nmodels, memory_order_acquire);
    const char *name = model < n ? r->model[model] : MET_MODEL_OTHER;
    size_t len = strlen(name);

    if (cap == 0)
        return;
    if (len >= cap)
        len = cap - 1;
    memcpy(out, name, len);
    out[len] = '\0';
}

unsigned met_model_index(struct met_registry *r, struct span name)
{
    unsigned other = r->nmodel_slots - 1, n, i;

    if (!met_model_name_ok(name))
        return other;
    n = atomic_load_explicit(&r->nmodels, memory_order_relaxed);
    i = met_model_find(r, n, name.p, name.len);
    if (i != MET_NONE)
        return i;
    if (span_eq(name, MET_MODEL_OTHER) || n >= other)
        return other;
    /* Learn it: fill the row, then publish it to a concurrent met_expose. */
    memcpy(r->model[n], name.p, name.len);
    r->model[n][name.len] = '\0';
    atomic_store_explicit(&r->nmodels, n + 1, memory_order_release);
    return n;
}

/* Out-of-range arguments give nseries, which every observer ignores. */
unsigned met_series(const struct met_registry *r, unsigned backend, unsigned model, unsigned tier,
                    unsigned api)
{
    if (backend >= r->nbackends || model >= r->nmodel_slots || tier >= r->ntiers || api >= MET_NAPI)
        return r->nseries;
    return ((backend * r->nmodel_slots + model) * r->ntiers + tier) * MET_NAPI + api;
}

void met_hist_put(const uint64_t *bound, unsigned nb, _Atomic uint64_t *h, uint64_t v)
{
    unsigned lo = 0, hi = nb;

    /* First bound >= v (le is inclusive); nb when above them all. */
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (bound[mid] >= v)
            hi = mid;
        else
            lo = mid + 1;
    }
    met_inc(&h[lo], 1);
    met_inc(&h[nb + 1], v);
}

void met_observe_us(struct met_registry *r, enum met_id id, unsigned series, uint64_t us)
{
    _Atomic uint64_t *h;

    if ((unsigned)id >= MET__COUNT || r->store[id] != MET_ST_HIST || series >= r->nseries)
        return;
    h = r->hist + ((size_t)r->slot[id] * r->nseries + series) * (r->nbuckets + 2);
    met_hist_put(r->bound_us, r->nbuckets, h, us);
    met_touch(r, series);
}

void met_add(struct met_registry *r, enum met_id id, unsigned series, uint64_t n)
{
    if ((unsigned)id >= MET__COUNT || r->store[id] != MET_ST_CTR || series >= r->nseries)
        return;
    met_inc(&r->ctr[(size_t)series * r->nctr + (unsigned)r->slot[id]], n);
    met_touch(r, series);
}

/* One answer with `status` on s. */
static void met_bmt_code(struct met_bmt *s, int status)
{
    unsigned n, i;

    atomic_store_explicit(&s->touched, 1, memory_order_relaxed);
    if (status < 100 || status > 599) {
        met_inc(&s->class_n[0], 1); /* no status sent, or not HTTP: code "0" */
        return;
    }
    n = atomic_load_explicit(&s->ncodes, memory_order_relaxed);
    for (i = 0; i < n; i++) {
        if (s->code[i] == status) {
            met_inc(&s->code_n[i], 1);
            return;
        }
    }
    if (n < MET_CODES_MAX) {
        s->code[n] = (uint16_t)status;
        atomic_store_explicit(&s->code_n[n], 1, memory_order_relaxed);
        atomic_store_explicit(&s->ncodes, (unsigned char)(n + 1), memory_order_release);
        return;
    }
    met_inc(&s->class_n[status / 100], 1);
}

void met_add_request(struct met_registry *r, unsigned series, int status)
{
    if (series < r->nseries)
        met_bmt_code(&r->bmt[series], status);
}

void met_add_local(struct met_registry *r, unsigned tier, unsigned api, int status)
{
    if (tier < r->ntiers && api < MET_NAPI)
        met_bmt_code(&r->bmt[r->nseries + tier * MET_NAPI + api], status);
}

void met_add_finish(struct met_registry *r, unsigned series, enum json_finish f)
{
    if (series >= r->nseries || f <= JSON_FINISH_NONE || f > JSON_FINISH_OTHER)
        return;
    met_inc(&r->bmt[series].finish_n[f - 1], 1);
    met_touch(r, series);
}

void met_add_upstream_error(struct met_registry *r, unsigned backend, enum pitot_err kind)
{
    if (backend >= r->nbackends || (unsigned)kind >= PITOT_E__COUNT)
        return;
    met_inc(&r->uperr[(size_t)backend * PITOT_E__COUNT + kind], 1);
}

static _Atomic int64_t *met_gauge_at(struct met_registry *r, enum met_id id, unsigned backend)
{
    if ((unsigned)id >= MET__COUNT || r->store[id] != MET_ST_GAUGE || backend >= r->nbackends)
        return NULL;
    return &r->gauge[(size_t)r->slot[id] * r->nbackends + backend];
}

void met_gauge_set(struct met_registry *r, enum met_id id, unsigned backend, int64_t v)
{
    _Atomic int64_t *g = met_gauge_at(r, id, backend);

    if (g != NULL)
        atomic_store_explicit(g, v, memory_order_relaxed);
}

void met_gauge_add(struct met_registry *r, enum met_id id, unsigned backend, int64_t delta)
{
    _Atomic int64_t *g = met_gauge_at(r, id, backend);

    if (g != NULL)
        atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + delta,
                              memory_order_relaxed);
}

static _Atomic uint64_t *met_fgauge_at(struct met_registry *r, enum met_id id, unsigned backend)
{
    if ((unsigned)id >= MET__COUNT || r->store[id] != MET_ST_FGAUGE || backend >= r->nbackends)
        return NULL;
    return &r->fgauge[(size_t)r->slot[id] * r->nbackends + backend];
}

void met_gauge_set_f(struct met_registry *r, enum met_id id, unsigned backend, double v)
{
    _Atomic uint64_t *g = met_fgauge_at(r, id, backend);
    uint64_t bits = MET_FG_ABSENT;

    if (g == NULL)
        return;
    if (isfinite(v)) {
        if (v == 0.0)
            v = 0.0; /* -0 would print as "-0" */
        memcpy(&bits, &v, sizeof(bits));
    }
    atomic_store_explicit(g, bits, memory_order_relaxed);
}

void met_gauge_clear(struct met_registry *r, enum met_id id, unsigned backend)
{
    _Atomic uint64_t *g = met_fgauge_at(r, id, backend);

    if (g != NULL)
        atomic_store_explicit(g, MET_FG_ABSENT, memory_order_relaxed);
    else if (id == MET_BACKEND_SCRAPE_AGE && backend < r->nbackends)
        atomic_store_explicit(&r->scraped_us[backend], 0, memory_order_relaxed);
}

void met_backend_scraped(struct met_registry *r, unsigned backend, uint64_t mono_us)
{
    if (backend < r->nbackends) /* 0 stands for "never": a 1 us error instead */
        atomic_store_explicit(&r->scraped_us[backend], mono_us != 0 ? mono_us : 1,
                              memory_order_relaxed);
}

void met_backend_active(struct met_registry *r, unsigned backend, bool active)
{
    /* release: a label met_backend_reset wrote is read after the mark */
    if (backend < r->nbackends)
        atomic_store_explicit(&r->active[backend], active, memory_order_release);
}

void met_tier_set(struct met_registry *r, unsigned tier, const char *name, bool live)
{
    if (tier >= r->ntiers)
        return;
    if (live) /* while it is not exposed: the mark, with release, publishes it */
        snprintf(r->tier[tier], CFG_NAME_MAX, "%s", name);
    atomic_store_explicit(&r->tier_live[tier], live, memory_order_release);
}

void met_backend_reset(struct met_registry *r, unsigned backend, const struct cfg_backend *cb)
{
    size_t per = (size_t)r->nmodel_slots * r->ntiers * MET_NAPI, s0, i, k;
    size_t stride = r->nbuckets + 2;

    if (backend >= r->nbackends)
        return;
    s0 = (size_t)backend * per;
    snprintf(r->backend[backend], CFG_NAME_MAX, "%s", cb->name);
    /* calloc's zeros again, in the series that were touched only (the
     * others are zero, and their pages are not made resident) */
    for (i = s0; i < s0 + per; i++) {
        size_t j;

        if (!atomic_load_explicit(&r->bmt[i].touched, memory_order_relaxed))
            continue;
        memset((void *)&r->bmt[i], 0, sizeof(r->bmt[0]));
        for (j = 0; j < r->nctr; j++)
            atomic_store_explicit(&r->ctr[i * r->nctr + j], 0, memory_order_relaxed);
        for (k = 0; k < r->nhist; k++)
            for (j = 0; j < stride; j++)
                atomic_store_explicit(&r->hist[(k * r->nseries + i) * stride + j], 0,
                                      memory_order_relaxed);
    }
    for (i = 0; i < PITOT_E__COUNT; i++)
        atomic_store_explicit(&r->uperr[(size_t)backend * PITOT_E__COUNT + i], 0,
                              memory_order_relaxed);
    for (k = 0; k < r->ngauge; k++)
        atomic_store_explicit(&r->gauge[k * r->nbackends + backend], 0, memory_order_relaxed);
    for (k = 0; k < r->nfgauge; k++)
        atomic_store_explicit(&r->fgauge[k * r->nbackends + backend], MET_FG_ABSENT,
                              memory_order_relaxed);
    atomic_store_explicit(&r->scraped_us[backend], 0, memory_order_relaxed);
    for (i = 0; i < MET_SCRAPE__COUNT; i++)
        atomic_store_explicit(&r->scrape[(size_t)backend * MET_SCRAPE__COUNT + i], 0,
                              memory_order_relaxed);
    if (r->otel)
        met_otel_backend_reset(r->otel, backend, cb);
}

void met_add_scrape(struct met_registry *r, unsigned backend, enum met_scrape res)
{
    if (backend < r->nbackends && (unsigned)res < MET_SCRAPE__COUNT)
        met_inc(&r->scrape[(size_t)backend * MET_SCRAPE__COUNT + res], 1);
}

void met_tier_gauge_add(struct met_registry *r, enum met_id id, unsigned tier, int64_t delta)
{
    _Atomic int64_t *g;

    if ((unsigned)id >= MET__COUNT || r->store[id] != MET_ST_TGAUGE || tier >= r->ntiers)
        return;
    g = &r->tgauge[(size_t)r->slot[id] * r->ntiers + tier];
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

void met_observe_tier_us(struct met_registry *r, enum met_id id, unsigned tier, uint64_t us)
{
    if ((unsigned)id >= MET__COUNT || r->store[id] != MET_ST_THIST || tier >= r->ntiers)
        return;
    met_hist_put(r->bound_us, r->nbuckets,
                 r->thist + ((size_t)r->slot[id] * r->ntiers + tier) * (r->nbuckets + 2), us);
}

void met_add_shed(struct met_registry *r, unsigned tier, enum met_shed why)
{
    if (tier < r->ntiers && (unsigned)why < MET_SHED__COUNT)
        met_inc(&r->shed[(size_t)tier * MET_SHED__COUNT + why], 1);
}

void met_add_slo(struct met_registry *r, unsigned tier, bool met)
{
    if (tier < r->ntiers)
        met_inc(&r->slo[(size_t)tier * 2 + (met ? 1 : 0)], 1);
}

void met_add_connection(struct met_registry *r)
{
    met_inc(&r->connections, 1);
}

void met_add_spans_exported(struct met_registry *r, uint64_t n)
{
    met_inc(&r->spans_exported, n);
}

void met_add_spans_dropped(struct met_registry *r, enum met_trace_drop why, uint64_t n)
{
    if ((unsigned)why < MET_TRACE_DROP__COUNT)
        met_inc(&r->spans_dropped[why], n);
}

void met_add_tls_failure(struct met_registry *r, enum tls_fail why)
{
    if ((unsigned)why < TLS_FAIL__COUNT)
        met_inc(&r->tls_fail[why], 1);
}

const char *met_scrape_label(enum met_scrape res)
{
    return (unsigned)res < MET_SCRAPE__COUNT ? met_scrape_labels[res] : "unknown";
}

const char *met_shed_label(enum met_shed why)
{
    return (unsigned)why < MET_SHED__COUNT ? met_shed_labels[why] : "unknown";
}

/* ---- exposition ---- */

struct met_code_sum {
    unsigned code;
    uint64_t n;
};

void met_printf(struct met_view *v, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (evbuffer_add_vprintf(v->out, fmt, ap) < 0)
        v->err = -1;
    va_end(ap);
}

/* Appends s escaped for the text format: backslash and newline always, the
 * double quote too inside label values. Stops short of overflowing buf. */
static size_t met_esc(char *buf, size_t cap, size_t len, const char *s, bool quote)
{
    for (; *s != '\0'; s++) {
        const char *rep = NULL;
        size_t rl;

        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (*s == '"' && quote)
            rep = "\\\"";
        rl = rep != NULL ? 2 : 1;
        if (len + rl >= cap)
            break;
        if (rep != NULL)
            memcpy(buf + len, rep, 2);
        else
            buf[len] = *s;
        len += rl;
    }
    buf[len] = '\0';
    return len;
}

size_t met_label(char *buf, size_t cap, size_t len, const char *name, const char *value)
{
    int k = snprintf(buf + len, cap - len, "%s%s=\"", len > 0 ? "," : "", name);

    if (k < 0 || (size_t)k >= cap - len - 1)
        return len;
    len = met_esc(buf, cap - 1, len + (size_t)k, value, true);
    buf[len++] = '"';
    buf[len] = '\0';
    return len;
}

void met_head(struct met_view *v, const char *name, const char *type, const char *help)
{
    char esc[512];

    met_esc(esc, sizeof(esc), 0, help, false);
    met_printf(v, "# HELP %s %s\n# TYPE %s %s\n", name, esc, name, type);
}

/* Builds the union of model names; NULL-free on failure. */
static int met_view_init(struct met_view *v, struct met_registry *const *regs, size_t n,
                         struct evbuffer *out)
{
    size_t cap = 1, i, j;
    unsigned u, *nm;

    memset(v, 0, sizeof(*v));
    v->regs = regs;
    v->n = n;
    v->out = out;
    nm = calloc(n, sizeof(*nm));
    if (nm == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        nm[i] = atomic_load_explicit(&regs[i]->nmodels, memory_order_acquire);
        cap += nm[i];
    }
    v->uname = calloc(cap, sizeof(*v->uname));
    v->uidx = calloc(cap * n, sizeof(*v->uidx));
    v->codes = calloc(n * MET_CODES_MAX, sizeof(*v->codes));
    v->rows = calloc(n, sizeof(*v->rows));
    if (v->uname == NULL || v->uidx == NULL || v->codes == NULL || v->rows == NULL) {
        free(nm);
        return -1;
    }
    for (i = 0; i < n; i++) {
        for (j = 0; j < nm[i]; j++) {
            const char *name = regs[i]->model[j];

            for (u = 0; u < v->nu; u++)
                if (strcmp(v->uname[u], name) == 0)
                    break;
            if (u == v->nu)
                v->uname[v->nu++] = name;
        }
    }
    v->uname[v->nu++] = MET_MODEL_OTHER;
    for (u = 0; u < v->nu; u++) {
        for (i = 0; i < n; i++) {
            const struct met_registry *r = regs[i];
            unsigned row = u + 1 == v->nu
                               ? r->nmodel_slots - 1
                               : met_model_find(r, nm[i], v->uname[u], strlen(v->uname[u]));
            v->uidx[u * n + i] = row;
        }
    }
    free(nm);
    return 0;
}

static void met_view_release(struct met_view *v)
{
    free(v->uname);
    free(v->uidx);
    free(v->codes);
    free(v->rows);
}

/* Series of (b, union model u, t, api a) in regs[i], or MET_NONE if that
 * registry has never seen the model or never touched the series. */
static unsigned met_view_series(const struct met_view *v, size_t i, unsigned b, unsigned u,
                                unsigned t, unsigned a)
{
    const struct met_registry *r = v->regs[i];
    unsigned row = v->uidx[u * v->n + i], s;

    if (row == MET_NONE)
        return MET_NONE;
    s = met_series(r, b, row, t, a);
    if (!atomic_load_explicit(&r->bmt[s].touched, memory_order_relaxed))
        return MET_NONE;
    return s;
}

void met_sum_fmt(char *out, size_t cap, uint64_t us)
{
    uint64_t frac = us % 1000000u;
    int digits = 6;

    if (frac == 0) {
        snprintf(out, cap, "%" PRIu64, us / 1000000u);
        return;
    }
    while (frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    snprintf(out, cap, "%" PRIu64 ".%0*" PRIu64, us / 1000000u, digits, frac);
}

static void met_expose_requests(struct met_view *v, const char *name, const char *lbl,
                                const unsigned *ser)
{
    uint64_t cls[MET_NCLASS] = { 0 };
    size_t i, nc = 0, j, k;

    for (i = 0; i < v->n; i++) {
        const struct met_bmt *s;
        unsigned n;

        if (ser[i] == MET_NONE)
            continue;
        s = &v->regs[i]->bmt[ser[i]];
        n = atomic_load_explicit((_Atomic unsigned char *)&s->ncodes, memory_order_acquire);
        for (j = 0; j < n; j++) {
            uint64_t cn = met_get(&s->code_n[j]);

            for (k = 0; k < nc && v->codes[k].code != s->code[j]; k++)
                ;
            if (k == nc) {
                /* insert keeping codes ascending */
                for (k = nc; k > 0 && v->codes[k - 1].code > s->code[j]; k--)
                    v->codes[k] = v->codes[k - 1];
                v->codes[k].code = s->code[j];
                v->codes[k].n = 0;
                nc++;
            }
            v->codes[k].n += cn;
        }
        for (j = 0; j < MET_NCLASS; j++)
            cls[j] += met_get(&s->class_n[j]);
    }
    if (cls[0] > 0)
        met_printf(v, "%s{%s,code=\"0\"} %" PRIu64 "\n", name, lbl, cls[0]);
    for (k = 0; k < nc; k++)
        met_printf(v, "%s{%s,code=\"%u\"} %" PRIu64 "\n", name, lbl, v->codes[k].code,
                   v->codes[k].n);
    for (j = 1; j < MET_NCLASS; j++)
        if (cls[j] > 0)
            met_printf(v, "%s{%s,code=\"%s\"} %" PRIu64 "\n", name, lbl, met_class_labels[j],
                       cls[j]);
}

void met_hist_sum(uint64_t *b, const _Atomic uint64_t *h, unsigned nb)
{
    unsigned j;

    for (j = 0; j < nb + 2; j++)
        b[j] += met_get(&h[j]);
}

void met_hist_print(struct met_view *v, const char *name, const char *lbl, const uint64_t *b,
                    unsigned nb, const char (*le)[MET_LE_MAX], bool us)
{
    uint64_t cum = 0;
    unsigned j;
    char sum[48];

    /* The count is the sum of the buckets, so +Inf == _count always holds,
     * even against a concurrent writer. */
    for (j = 0; j < nb; j++) {
        cum += b[j];
        met_printf(v, "%s_bucket{%s,le=\"%s\"} %" PRIu64 "\n", name, lbl, le[j], cum);
    }
    cum += b[nb];
    met_printf(v, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name, lbl, cum);
    if (us)
        met_sum_fmt(sum, sizeof(sum), b[nb + 1]);
    else
        snprintf(sum, sizeof(sum), "%" PRIu64, b[nb + 1]);
    met_printf(v, "%s_sum{%s} %s\n", name, lbl, sum);
    met_printf(v, "%s_count{%s} %" PRIu64 "\n", name, lbl, cum);
}

static void met_expose_hist(struct met_view *v, enum met_id id, const char *lbl,
                            const unsigned *ser)
{
    uint64_t b[CFG_MAX_BUCKETS + 2] = { 0 };
    unsigned nb = v->regs[0]->nbuckets;
    size_t i;

    for (i = 0; i < v->n; i++) {
        const struct met_registry *r = v->regs[i];

        if (ser[i] != MET_NONE)
            met_hist_sum(b, r->hist + ((size_t)r->slot[id] * r->nseries + ser[i]) * (nb + 2), nb);
    }
    met_hist_print(v, met_defs[id].name, lbl, b, nb, v->regs[0]->le, true);
}

/* Is backend b exposed: has it an address, as the first registry (the
 * router's) says? */
static bool met_view_active(const struct met_view *v, unsigned b)
{
    return atomic_load_explicit(&v->regs[0]->active[b], memory_order_acquire);
}

/* The samples of one BMT label set lbl, summed over the registries' series
 * ser[i] (MET_NONE: none there). */
static void met_expose_bmt_set(struct met_view *v, enum met_id id, const char *lbl,
                               const unsigned *ser)
{
    const struct met_def *d = &met_defs[id];
    unsigned j;
    size_t i;

    if (d->labels == MET_L_BMTC) {
        met_expose_requests(v, d->name, lbl, ser);
    } else if (d->labels == MET_L_BMTR) {
        for (j = 0; j < MET_NFINISH; j++) {
            uint64_t n = 0;
            for (i = 0; i < v->n; i++)
                if (ser[i] != MET_NONE)
                    n += met_get(&v->regs[i]->bmt[ser[i]].finish_n[j]);
            if (n > 0)
                met_printf(v, "%s{%s,reason=\"%s\"} %" PRIu64 "\n", d->name, lbl,
                           json_finish_label((enum json_finish)(j + 1)), n);
        }
    } else if (d->type == MET_HISTOGRAM) {
        met_expose_hist(v, id, lbl, ser);
    } else {
        uint64_t n = 0;
        for (i = 0; i < v->n; i++)
            if (ser[i] != MET_NONE)
                n += met_get(&v->regs[i]->ctr[(size_t)ser[i] * v->regs[i]->nctr +
                                              (unsigned)v->regs[i]->slot[id]]);
        met_printf(v, "%s{%s} %" PRIu64 "\n", d->name, lbl, n);
    }
}

static size_t met_bmt_label(char *lbl, const char *backend, const char *model, const char *tier,
                            unsigned api)
{
    size_t len = met_label(lbl, MET_LABELS_BUF, 0, "backend", backend);

    len = met_label(lbl, MET_LABELS_BUF, len, "model", model);
    len = met_label(lbl, MET_LABELS_BUF, len, "tier", tier);
    return met_label(lbl, MET_LABELS_BUF, len, "api", api_label((enum api_kind)api));
}

/* One BMT-labelled family (counter, histogram, requests, finish reasons):
 * every (backend, model, tier, api) that some registry touched; for the
 * request counter also pitot's own answers, backend and model "". */
static void met_expose_bmt(struct met_view *v, enum met_id id, unsigned *ser)
{
    const struct met_registry *r0 = v->regs[0];
    char lbl[MET_LABELS_BUF];
    unsigned b, u, t, a;
    size_t i;

    for (b = 0; b < r0->nbackends; b++) {
        if (!met_view_active(v, b))
            continue;
        for (u = 0; u < v->nu; u++) {
            for (t = 0; t < r0->ntiers; t++) {
                if (!met_view_tier(v, t))
                    continue;
                for (a = 0; a < MET_NAPI; a++) {
                    bool any = false;

                    for (i = 0; i < v->n; i++) {
                        ser[i] = met_view_series(v, i, b, u, t, a);
                        any = any || ser[i] != MET_NONE;
                    }
                    if (!any)
                        continue;
                    met_bmt_label(lbl, r0->backend[b], v->uname[u], r0->tier[t], a);
                    met_expose_bmt_set(v, id, lbl, ser);
                }
            }
        }
    }
    if (met_defs[id].labels != MET_L_BMTC)
        return;
    for (t = 0; t < r0->ntiers; t++) {
        if (!met_view_tier(v, t))
            continue;
        for (a = 0; a < MET_NAPI; a++) {
            bool any = false;

            for (i = 0; i < v->n; i++) {
                const struct met_registry *r = v->regs[i];
                unsigned k = r->nseries + t * MET_NAPI + a;

                ser[i] =
                    atomic_load_explicit(&r->bmt[k].touched, memory_order_relaxed) ? k : MET_NONE;
                any = any || ser[i] != MET_NONE;
            }
            if (!any)
                continue;
            met_bmt_label(lbl, "", "", r0->tier[t], a);
            met_expose_bmt_set(v, id, lbl, ser);
        }
    }
}

/* Counts of a closed label (kind, result, reason, met) summed over registries:
 * each regs[i]'s row starts at base[i]; n[k] gets the sum for value k. */
static uint64_t met_row_sum(const struct met_view *v, _Atomic uint64_t *const *base, unsigned nval,
                            uint64_t *n)
{
    uint64_t total = 0;
    unsigned k;
    size_t i;

    for (k = 0; k < nval; k++) {
        n[k] = 0;
        for (i = 0; i < v->n; i++)
            n[k] += met_get(&base[i][k]);
        total += n[k];
    }
    return total;
}

/* A per-backend integer gauge merged as met_merge_of(id) says. */
static int64_t met_gauge_merged(const struct met_view *v, enum met_id id, unsigned b)
{
    enum met_merge how = met_merge_of(id);
    size_t nreg = how == MET_MERGE_FIRST ? 1 : v->n, i;
    int64_t g = 0;

    for (i = 0; i < nreg; i++) {
        const struct met_registry *r = v->regs[i];
        int64_t x = atomic_load_explicit(&r->gauge[(size_t)r->slot[id] * r->nbackends + b],
                                         memory_order_relaxed);

        if (how != MET_MERGE_MAX)
            g += x;
        else if (i == 0 || x > g)
            g = x;
    }
    return g;
}

/* A per-backend value from regs[0] only (met_merge_of: FIRST), formatted
 * into out; false when the series is absent. */
static bool met_backend_value(const struct met_view *v, enum met_id id, unsigned b, char *out,
                              size_t cap)
{
    const struct met_registry *r0 = v->regs[0];

    if (r0->store[id] == MET_ST_FGAUGE) {
        uint64_t bits = atomic_load_explicit(&r0->fgauge[(size_t)r0->slot[id] * r0->nbackends + b],
                                             memory_order_relaxed);
        double x;

        if (bits == MET_FG_ABSENT)
            return false;
        memcpy(&x, &bits, sizeof(x));
        met_fmt_float(out, cap, x);
        return true;
    }
    if (id == MET_BACKEND_SCRAPE_AGE) {
        uint64_t t = atomic_load_explicit(&r0->scraped_us[b], memory_order_relaxed);

        if (t == 0)
            return false;
        /* a scrape stored after now was read is "just now", not negative */
        met_sum_fmt(out, cap, v->now_us > t ? v->now_us - t : 0);
        return true;
    }
    snprintf(out, cap, "%" PRId64, met_gauge_merged(v, id, b));
    return true;
}

/* A family labelled by backend (B, BK, BR), one backend after another. */
static void met_expose_backend(struct met_view *v, enum met_id id)
{
    const struct met_registry *r0 = v->regs[0];
    const struct met_def *d = &met_defs[id];
    char lbl[MET_LABELS_BUF], val[48];
    uint64_t cnt[MET_SCRAPE__COUNT];
    unsigned b, k;
    size_t i;

    for (b = 0; b < r0->nbackends; b++) {
        if (!met_view_active(v, b))
            continue;
        met_label(lbl, sizeof(lbl), 0, "backend", r0->backend[b]);
        if (d->labels == MET_L_BK) {
            for (k = 0; k < PITOT_E__COUNT; k++) {
                uint64_t n = 0;
                for (i = 0; i < v->n; i++)
                    n += met_get(&v->regs[i]->uperr[(size_t)b * PITOT_E__COUNT + k]);
                if (n > 0)
                    met_printf(v, "%s{%s,kind=\"%s\"} %" PRIu64 "\n", d->name, lbl,
                               err_label((enum pitot_err)k), n);
            }
        } else if (d->labels == MET_L_BR) {
            /* every result once the backend has any, so that rate() of a
             * rare one starts from 0 rather than from its first count */
            for (i = 0; i < v->n; i++)
                v->rows[i] = &v->regs[i]->scrape[(size_t)b * MET_SCRAPE__COUNT];
            if (met_row_sum(v, v->rows, MET_SCRAPE__COUNT, cnt) == 0)
                continue;
            for (k = 0; k < MET_SCRAPE__COUNT; k++)
                met_printf(v, "%s{%s,result=\"%s\"} %" PRIu64 "\n", d->name, lbl,
                           met_scrape_labels[k], cnt[k]);
        } else if (met_backend_value(v, id, b, val, sizeof(val))) {
            met_printf(v, "%s{%s} %s\n", d->name, lbl, val);
        }
    }
}

/* A family labelled by tier (T, TR, TM), one tier after another. */
static void met_expose_tier(struct met_view *v, enum met_id id)
{
    const struct met_registry *r0 = v->regs[0];
    const struct met_def *d = &met_defs[id];
    unsigned nb = r0->nbuckets, t, k;
    uint64_t cnt[MET_SHED__COUNT > 2 ? MET_SHED__COUNT : 2];
    char lbl[MET_LABELS_BUF];
    size_t i;

    for (t = 0; t < r0->ntiers; t++) {
        if (!met_view_tier(v, t))
            continue;
        met_label(lbl, sizeof(lbl), 0, "tier", r0->tier[t]);
        if (d->labels == MET_L_TR || d->labels == MET_L_TM) {
            bool shed = d->labels == MET_L_TR;
            unsigned nval = shed ? MET_SHED__COUNT : 2;
            const char *const *names = shed ? met_shed_labels : met_slo_labels;

            for (i = 0; i < v->n; i++)
                v->rows[i] = shed ? &v->regs[i]->shed[(size_t)t * MET_SHED__COUNT]
                                  : &v->regs[i]->slo[(size_t)t * 2];
            if (met_row_sum(v, v->rows, nval, cnt) == 0)
                continue; /* untouched tier; touched ones show every value */
            for (k = 0; k < nval; k++)
                met_printf(v, "%s{%s,%s=\"%s\"} %" PRIu64 "\n", d->name, lbl,
                           shed ? "reason" : "met", names[k], cnt[k]);
        } else if (r0->store[id] == MET_ST_TGAUGE) {
            int64_t g = 0;

            for (i = 0; i < v->n; i++)
                g += atomic_load_explicit(
                    &v->regs[i]->tgauge[(size_t)v->regs[i]->slot[id] * r0->ntiers + t],
                    memory_order_relaxed);
            met_printf(v, "%s{%s} %" PRId64 "\n", d->name, lbl, g);
        } else if (r0->store[id] == MET_ST_THIST) {
            uint64_t b[CFG_MAX_BUCKETS + 2] = { 0 }, n = 0;

            for (i = 0; i < v->n; i++)
                met_hist_sum(b,
                             v->regs[i]->thist +
                                 ((size_t)v->regs[i]->slot[id] * r0->ntiers + t) * (nb + 2),
                             nb);
            for (k = 0; k < nb + 1; k++)
                n += b[k];
            if (n > 0) /* appears with its first observation */
                met_hist_print(v, d->name, lbl, b, nb, r0->le, true);
        }
    }
}

/* A family without backend or tier (NONE, R): the span export counters and
 * the TLS handshake failures, summed over registries, every reason always
 * present. */
static void met_expose_global(struct met_view *v, enum met_id id)
{
    const struct met_def *d = &met_defs[id];
    uint64_t cnt[(int)MET_TRACE_DROP__COUNT + (int)TLS_FAIL__COUNT]; /* either */
    unsigned k;
    size_t i;

    if (id == MET_TRACE_SPANS_EXPORTED) {
        uint64_t n = 0;
        for (i = 0; i < v->n; i++)
            n += met_get(&v->regs[i]->spans_exported);
        met_printf(v, "%s %" PRIu64 "\n", d->name, n);
    } else if (id == MET_TRACE_SPANS_DROPPED) {
        for (i = 0; i < v->n; i++)
            v->rows[i] = v->regs[i]->spans_dropped;
        met_row_sum(v, v->rows, MET_TRACE_DROP__COUNT, cnt);
        for (k = 0; k < MET_TRACE_DROP__COUNT; k++)
            met_printf(v, "%s{reason=\"%s\"} %" PRIu64 "\n", d->name, met_trace_drop_labels[k],
                       cnt[k]);
    } else if (id == MET_TLS_HANDSHAKE_FAILURES) {
        for (i = 0; i < v->n; i++)
            v->rows[i] = v->regs[i]->tls_fail;
        met_row_sum(v, v->rows, TLS_FAIL__COUNT, cnt);
        for (k = 0; k < TLS_FAIL__COUNT; k++)
            met_printf(v, "%s{reason=\"%s\"} %" PRIu64 "\n", d->name,
                       tls_fail_label((enum tls_fail)k), cnt[k]);
    }
}

int met_expose(struct met_registry *const *regs, size_t n, struct evbuffer *out)
{
    struct met_view v;
    unsigned *ser;
    size_t i;
    int id;

    memset(&v, 0, sizeof(v));
    if (n == 0)
        return 0;
    for (i = 1; i < n; i++) /* "built from the same config" */
        if (regs[i]->nbackends != regs[0]->nbackends || regs[i]->ntiers != regs[0]->ntiers ||
            regs[i]->nbuckets != regs[0]->nbuckets ||
            (regs[i]->otel == NULL) != (regs[0]->otel == NULL))
            return -1;
    ser = calloc(n, sizeof(*ser));
    if (ser == NULL || met_view_init(&v, regs, n, out) < 0) {
        free(ser);
        met_view_release(&v);
        return -1;
    }
    v.now_us = clk_now_us();
    for (id = 0; id < MET__COUNT; id++) {
        met_head(&v, met_defs[id].name, met_type_names[met_defs[id].type], met_defs[id].help);
        switch (met_defs[id].labels) {
        case MET_L_BMTC:
        case MET_L_BMT:
        case MET_L_BMTR: met_expose_bmt(&v, (enum met_id)id, ser); break;
        case MET_L_BK:
        case MET_L_B:
        case MET_L_BR: met_expose_backend(&v, (enum met_id)id); break;
        case MET_L_T:
        case MET_L_TR:
        case MET_L_TM:
        case MET_L__COUNT: met_expose_tier(&v, (enum met_id)id); break;
        case MET_L_NONE:
        case MET_L_R: met_expose_global(&v, (enum met_id)id); break;
        case MET_L_W: /* one series per registry: per worker, never merged */
            for (i = 0; i < n; i++)
                met_printf(&v, "%s{worker=\"%zu\"} %" PRIu64 "\n", met_defs[id].name, i,
                           met_get(&regs[i]->connections));
            break;
        }
    }
    if (regs[0]->otel != NULL)
        met_otel_expose(&v);
    free(ser);
    met_view_release(&v);
    return v.err;
}

static void met_doc_row(FILE *f, const char *name, const char *type, const char *l,
                        const char *instrument, const char *help)
{
    fprintf(f, "| `%s` | %s | ", name, type);
    while (*l != '\0') {
        size_t k = strcspn(l, ",");
        fprintf(f, "`%.*s`%s", (int)k, l, l[k] == ',' ? ", " : "");
        l += k + (l[k] == ',');
    }
    if (instrument != NULL)
        fprintf(f, " | Only with `opentelemetry.metrics: true`: OTel `%s`. %s |\n", instrument,
                help);
    else
        fprintf(f, " | %s |\n", help);
}

void met_doc_markdown(FILE *f)
{
    static const char *const otel[][4] = {
#define MET_OTEL_DOC_ROW(id, name, instrument, labels, help) { name, instrument, labels, help },
        MET_OTEL_LIST(MET_OTEL_DOC_ROW)
#undef MET_OTEL_DOC_ROW
    };
    size_t i;
    int id;

    fprintf(f, "| Metric | Type | Labels | Description |\n");
    fprintf(f, "|---|---|---|---|\n");
    for (id = 0; id < MET__COUNT; id++) {
        const struct met_def *d = &met_defs[id];

        met_doc_row(f, d->name, met_type_names[d->type], met_label_names[d->labels], NULL, d->help);
    }
    for (i = 0; i < MET_OTEL__COUNT; i++)
        met_doc_row(f, otel[i][0], "histogram", otel[i][2], otel[i][1], otel[i][3]);
}

void met_totals_backend(struct met_registry *const *regs, size_t n, unsigned backend,
                        struct met_backend_totals *t)
{
    size_t i;

    memset(t, 0, sizeof(*t));
    for (i = 0; i < n; i++) {
        const struct met_registry *r = regs[i];
        unsigned per = r->nmodel_slots * r->ntiers * MET_NAPI, s, k, nc;
        int hs = r->slot[MET_TTFT];

        if (backend >= r->nbackends)
            continue;
        /* a backend's series are contiguous: (backend, model, tier, api) */
        for (s = backend * per; s < (backend + 1) * per; s++) {
            struct met_bmt *b = &r->bmt[s];

            if (!atomic_load_explicit(&b->touched, memory_order_relaxed))
                continue;
            nc = atomic_load_explicit(&b->ncodes, memory_order_acquire);
            for (k = 0; k < nc; k++) {
                uint64_t c = met_get(&b->code_n[k]);
                t->requests += c;
                t->errors += b->code[k] >= 500 ? c : 0;
            }
            for (k = 0; k < MET_NCLASS; k++)
                t->requests += met_get(&b->class_n[k]);
            t->errors += met_get(&b->class_n[5]);
            if (hs >= 0 && r->store[MET_TTFT] == MET_ST_HIST) {
                const _Atomic uint64_t *h =
                    r->hist + ((size_t)hs * r->nseries + s) * (r->nbuckets + 2);
                for (k = 0; k <= r->nbuckets && k <= CFG_MAX_BUCKETS; k++)
                    t->ttft[k] += met_get(&h[k]);
            }
        }
    }
}

void met_totals_tier(struct met_registry *const *regs, size_t n, unsigned tier,
                     struct met_tier_totals *t)
{
    size_t i;
    unsigned k;

    memset(t, 0, sizeof(*t));
    for (i = 0; i < n; i++) {
        const struct met_registry *r = regs[i];
        int qs = r->slot[MET_QUEUE_DEPTH];

        if (tier >= r->ntiers)
            continue;
        if (qs >= 0 && r->store[MET_QUEUE_DEPTH] == MET_ST_TGAUGE)
            t->queue_depth += atomic_load_explicit(&r->tgauge[(size_t)qs * r->ntiers + tier],
                                                   memory_order_relaxed);
        for (k = 0; k < MET_SHED__COUNT; k++)
            t->shed += met_get(&r->shed[(size_t)tier * MET_SHED__COUNT + k]);
        t->slo_met += met_get(&r->slo[(size_t)tier * 2 + 1]);
        t->slo_total += met_get(&r->slo[(size_t)tier * 2]) + met_get(&r->slo[(size_t)tier * 2 + 1]);
    }
}

unsigned met_bounds_us(const struct met_registry *r, const uint64_t **bound_us)
{
    *bound_us = r->bound_us;
    return r->nbuckets;
}
