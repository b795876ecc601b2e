/* metrics_otel: the OpenTelemetry GenAI histograms (opentelemetry.metrics): their
 * storage, sized once with the registry; the observation of one finished
 * request; their part of the exposition. Buckets are the conventions'. */
#include "pitot/measure/metrics.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_int.h"
#include "pitot/format/flavor.h"
#include "pitot/util/err.h"

#define MET_OTEL_NOPS (MET_OTEL_OP__COUNT - 1)      /* operations stored (NONE is not) */
#define MET_OTEL_BOUNDS_MAX 16                      /* finite bounds of the longest family */
#define MET_OTEL_DUR_ROWS (MET_OTEL_ERRORS_MAX + 2) /* no error, each kept one, "_OTHER" */
#define MET_OTEL_OTHER "_OTHER" /* error.type's fallback value in the conventions */

static const struct met_otel_def {
    const char *name;
    const char *help;
} met_otel_defs[MET_OTEL__COUNT] = {
#define MET_OTEL_DEF_ROW(id, name, instrument, labels, help) { name, help },
    MET_OTEL_LIST(MET_OTEL_DEF_ROW)
#undef MET_OTEL_DEF_ROW
};

/* ExplicitBucketBoundaries from the semantic conventions for generative AI
 * metrics (gen-ai-metrics.md): seconds, and tokens for token usage. */
static const double met_otel_dur_s[] = { 0.01, 0.02, 0.04, 0.08,  0.16,  0.32,  0.64,
                                         1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92 };
static const double met_otel_tok[] = { 1,     4,     16,     64,      256,     1024,     4096,
                                       16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864 };
static const double met_otel_ttft_s[] = { 0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                          0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0 };
static const double met_otel_tpot_s[] = { 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                          0.3,  0.4,   0.5,  0.75,  1.0, 2.5 };

#define MET_OTEL_N(a) (sizeof(a) / sizeof((a)[0]))

static const struct met_otel_shape {
    const double *bounds;
    unsigned nb;
    unsigned nrows; /* histograms per (series, operation) */
    bool us;        /* observed in microseconds, exposed in seconds; else a count */
} met_otel_shapes[MET_OTEL__COUNT] = {
    [MET_OTEL_DURATION] = { met_otel_dur_s, MET_OTEL_N(met_otel_dur_s), MET_OTEL_DUR_ROWS, true },
    [MET_OTEL_TOKENS] = { met_otel_tok, MET_OTEL_N(met_otel_tok), 2, false }, /* input, output */
    [MET_OTEL_TTFT] = { met_otel_ttft_s, MET_OTEL_N(met_otel_ttft_s), 1, true },
    [MET_OTEL_TPOT] = { met_otel_tpot_s, MET_OTEL_N(met_otel_tpot_s), 1, true },
};

static const char *const met_otel_token_types[2] = { "input", "output" };

static const char *const met_otel_op_labels[MET_OTEL_OP__COUNT] = {
    [MET_OTEL_OP_NONE] = "",
#define MET_OTEL_OP_ROW(id, value) [MET_OTEL_OP_##id] = value,
    MET_OTEL_OP_LIST(MET_OTEL_OP_ROW)
#undef MET_OTEL_OP_ROW
};

/* One family's bounds in the unit observed, and as exposed. */
struct met_otel_fam {
    size_t off;                               /* its first row in a block */
    uint64_t bound[MET_OTEL_BOUNDS_MAX];      /* microseconds or tokens */
    char le[MET_OTEL_BOUNDS_MAX][MET_LE_MAX]; /* met_fmt_float of the bound */
};

/* What one (series, operation) block has seen besides its histograms. Only
 * the owning loop writes; met_expose may read from another thread. */
struct met_otel_blk {
    _Atomic unsigned char touched;     /* any observation */
    _Atomic unsigned char nerr;        /* err[] entries in use, published with release */
    uint16_t err[MET_OTEL_ERRORS_MAX]; /* written once, before nerr covers it: a
                                          pitot_err kind (< 100) or an HTTP status */
};

struct met_otel {
    unsigned nbackends;
    unsigned nblocks; /* nseries * MET_OTEL_NOPS */
    size_t stride;    /* values per block: every family's rows of nb + 2 */
    struct met_otel_fam fam[MET_OTEL__COUNT];
    struct met_otel_blk *blk;   /* owned, nblocks */
    _Atomic uint64_t *hist;     /* owned, nblocks * stride, rows as met_hist_put's */
    _Atomic int *flavor;        /* owned, nbackends: enum cfg_flavor last recorded */
    char (*host)[CFG_HOST_MAX]; /* owned, nbackends: server_address */
    char (*port)[8];            /* owned, nbackends: server_port */
    unsigned *group;            /* owned, nbackends: the first backend with the
                                   same host and port, whose series it joins */
};

enum met_otel_op met_otel_op_of_path(const char *path)
{
    switch (api_of_path(path)) {
    case API_CHAT:
    case API_RESPONSES: /* the conventions' "chat": OpenAI's Responses, */
    case API_MESSAGES: /* Anthropic's Messages */ return MET_OTEL_OP_CHAT;
    case API_COMPLETIONS: return MET_OTEL_OP_TEXT_COMPLETION;
    case API_EMBEDDINGS: return MET_OTEL_OP_EMBEDDINGS;
    default: return MET_OTEL_OP_NONE;
    }
}

const char *met_otel_op_label(enum met_otel_op op)
{
    return (unsigned)op < MET_OTEL_OP__COUNT ? met_otel_op_labels[op] : "";
}

const char *met_otel_provider_label(enum cfg_flavor f)
{
    return f == CFG_FLAVOR_AUTO ? "openai" : flv_name(f);
}

void met_otel_free(struct met_otel *o)
{
    if (o == NULL)
        return;
    free(o->blk);
    free(o->hist);
    free(o->flavor);
    free(o->host);
    free(o->port);
    free(o->group);
    free(o);
}

/* Two backend entries for one server would expose the same label set twice:
 * their series are summed under the first one (spare slots left out). */
static unsigned met_otel_group(const struct met_otel *o, const struct cfg *c, unsigned b)
{
    unsigned k;

    for (k = 0; k < b; k++)
        if (!c->backends[k].spare && strcmp(o->host[k], o->host[b]) == 0 &&
            strcmp(o->port[k], o->port[b]) == 0)
            return k;
    return b;
}

struct met_otel *met_otel_new(const struct met_registry *r, const struct cfg *c)
{
    struct met_otel *o = calloc(1, sizeof(*o));
    unsigned b, f, j;

    if (o == NULL)
        return NULL;
    o->nbackends = r->nbackends;
    o->nblocks = r->nseries / MET_NAPI * MET_OTEL_NOPS; /* the operation stands for the api */
    for (f = 0; f < MET_OTEL__COUNT; f++) {
        const struct met_otel_shape *sh = &met_otel_shapes[f];

        o->fam[f].off = o->stride;
        o->stride += (size_t)sh->nrows * (sh->nb + 2);
        for (j = 0; j < sh->nb; j++) {
            /* every bound is a whole number of microseconds (or tokens) */
            o->fam[f].bound[j] = (uint64_t)(sh->bounds[j] * (sh->us ? 1e6 : 1) + 0.5);
            met_fmt_float(o->fam[f].le[j], MET_LE_MAX, sh->bounds[j]);
        }
    }
    /* calloc's zero bytes are valid zero values for these lock-free atomics. */
    o->blk = calloc((size_t)o->nblocks + 1, sizeof(*o->blk));
    o->hist = calloc((size_t)o->nblocks * o->stride + 1, sizeof(*o->hist));
    o->flavor = calloc(o->nbackends + 1, sizeof(*o->flavor));
    o->host = calloc(o->nbackends + 1, sizeof(*o->host));
    o->port = calloc(o->nbackends + 1, sizeof(*o->port));
    o->group = calloc(o->nbackends + 1, sizeof(*o->group));
    if (o->blk == NULL || o->hist == NULL || o->flavor == NULL || o->host == NULL ||
        o->port == NULL || o->group == NULL) {
        met_otel_free(o);
        return NULL;
    }
    for (b = 0; b < o->nbackends; b++) {
        const struct cfg_backend *cb = &c->backends[b];

        atomic_init(&o->flavor[b], (int)cb->flavor);
        snprintf(o->host[b], CFG_HOST_MAX, "%s", cb->host);
        snprintf(o->port[b], sizeof(o->port[b]), "%u", (unsigned)cb->port);
        o->group[b] = cb->spare ? b : met_otel_group(o, c, b);
    }
    return o;
}

void met_otel_backend_reset(struct met_otel *o, unsigned b, const struct cfg_backend *cb)
{
    size_t per = o->nblocks / o->nbackends, i;

    if (b >= o->nbackends)
        return;
    atomic_store_explicit(&o->flavor[b], (int)cb->flavor, memory_order_relaxed);
    snprintf(o->host[b], CFG_HOST_MAX, "%s", cb->host);
    snprintf(o->port[b], sizeof(o->port[b]), "%u", (unsigned)cb->port);
    for (i = (size_t)b * per; i < (size_t)(b + 1) * per; i++) { /* the touched ones */
        size_t j;

        if (!atomic_load_explicit(&o->blk[i].touched, memory_order_relaxed))
            continue;
        memset((void *)&o->blk[i], 0, sizeof(o->blk[0]));
        for (j = 0; j < o->stride; j++)
            atomic_store_explicit(&o->hist[i * o->stride + j], 0, memory_order_relaxed);
    }
    /* its own group: the label set of a server another slot holds too is
     * summed only among the backends of the start */
    o->group[b] = b;
}

/* error_type of a request as a code: 0 none, a pitot_err kind, an HTTP status. */
static unsigned met_otel_error(enum pitot_err outcome, int status)
{
    if (outcome != PITOT_EOK)
        return (unsigned)outcome;
    return status >= 400 && status <= 599 ? (unsigned)status : 0;
}

/* The duration row of error code e (not 0) in block k: its own, learned while
 * there is room, else the "_OTHER" row. */
static unsigned met_otel_error_row(struct met_otel_blk *k, unsigned e)
{
    unsigned n = atomic_load_explicit(&k->nerr, memory_order_relaxed), i;

    for (i = 0; i < n; i++)
        if (k->err[i] == e)
            return 1 + i;
    if (n == MET_OTEL_ERRORS_MAX)
        return MET_OTEL_DUR_ROWS - 1;
    k->err[n] = (uint16_t)e;
    atomic_store_explicit(&k->nerr, (unsigned char)(n + 1), memory_order_release);
    return 1 + n;
}

static _Atomic uint64_t *met_otel_row(const struct met_otel *o, size_t block, enum met_otel_id f,
                                      unsigned row)
{
    return o->hist + block * o->stride + o->fam[f].off + (size_t)row * (met_otel_shapes[f].nb + 2);
}

static void met_otel_put(struct met_otel *o, size_t block, enum met_otel_id f, unsigned row,
                         int64_t v)
{
    if (v >= 0)
        met_hist_put(o->fam[f].bound, met_otel_shapes[f].nb, met_otel_row(o, block, f, row),
                     (uint64_t)v);
}

void met_observe_otel(struct met_registry *r, unsigned series, const struct met_otel_obs *ob)
{
    struct met_otel *o = r->otel;
    unsigned e, b;
    size_t k;

    if (o == NULL || series >= r->nseries || ob->op <= MET_OTEL_OP_NONE ||
        ob->op >= MET_OTEL_OP__COUNT)
        return;
    series /= MET_NAPI;                         /* met_series()'s layout, api innermost */
    b = series / (r->nmodel_slots * r->ntiers); /* ... and backend outermost */
    if ((unsigned)ob->flavor <= CFG_FLAVOR_OPENAI)
        atomic_store_explicit(&o->flavor[b], (int)ob->flavor, memory_order_relaxed);
    k = (size_t)series * MET_OTEL_NOPS + (ob->op - 1);
    e = met_otel_error(ob->outcome, ob->status);
    met_otel_put(o, k, MET_OTEL_DURATION, e ? met_otel_error_row(&o->blk[k], e) : 0, ob->e2e_us);
    met_otel_put(o, k, MET_OTEL_TOKENS, 0, ob->input_tokens);
    met_otel_put(o, k, MET_OTEL_TOKENS, 1, ob->output_tokens);
    if (e == 0) { /* "for successful responses" */
        met_otel_put(o, k, MET_OTEL_TTFT, 0, ob->ttft_us);
        met_otel_put(o, k, MET_OTEL_TPOT, 0, ob->tpot_us);
    }
    atomic_store_explicit(&o->blk[k].touched, 1, memory_order_relaxed);
}

/* ---- exposition ---- */

/* A block of some registry that feeds one exposed label set. */
struct met_otel_src {
    const struct met_otel *o; /* borrowed */
    size_t block;
};

/* One error_type's rows summed over the sources. */
struct met_otel_err_sum {
    unsigned code; /* UINT_MAX: "_OTHER" */
    uint64_t b[MET_OTEL_BOUNDS_MAX + 2];
};

/* Per exposition: the sources of the label set at hand and the error sums. */
struct met_otel_scratch {
    struct met_otel_src *src; /* owned, n * nbackends */
    size_t nsrc;
    struct met_otel_err_sum *es; /* owned, n * nbackends * MET_OTEL_ERRORS_MAX + 1 */
    size_t nes;
};

/* The touched blocks of (backend group g, union model u, tier t, operation op)
 * in every registry into x->src; returns how many. */
static size_t met_otel_gather(struct met_view *v, struct met_otel_scratch *x, unsigned g,
                              unsigned u, unsigned t, unsigned op)
{
    size_t i;
    unsigned b;

    x->nsrc = 0;
    for (i = 0; i < v->n; i++) {
        const struct met_registry *r = v->regs[i];
        const struct met_otel *o = r->otel;
        unsigned row = v->uidx[u * v->n + i];

        if (row == MET_NONE)
            continue;
        for (b = g; b < o->nbackends; b++) {
            size_t k;

            /* the marks of met_backend_active, as the exposition's */
            if (o->group[b] != g ||
                !atomic_load_explicit(&v->regs[0]->active[b], memory_order_acquire))
                continue;
            k = (size_t)(met_series(r, b, row, t, 0) / MET_NAPI) * MET_OTEL_NOPS + (op - 1);
            if (atomic_load_explicit(&o->blk[k].touched, memory_order_relaxed)) {
                x->src[x->nsrc].o = o;
                x->src[x->nsrc].block = k;
                x->nsrc++;
            }
        }
    }
    return x->nsrc;
}

/* Sums row `row` of family f over the sources into b; returns the count. */
static uint64_t met_otel_sum(const struct met_otel_scratch *x, enum met_otel_id f, unsigned row,
                             uint64_t *b)
{
    unsigned nb = met_otel_shapes[f].nb, j;
    uint64_t n = 0;
    size_t i;

    memset(b, 0, sizeof(uint64_t) * (nb + 2));
    for (i = 0; i < x->nsrc; i++)
        met_hist_sum(b, met_otel_row(x->src[i].o, x->src[i].block, f, row), nb);
    for (j = 0; j < nb + 1; j++)
        n += b[j];
    return n;
}

static struct met_otel_err_sum *met_otel_err_slot(struct met_otel_scratch *x, unsigned code)
{
    size_t i;

    for (i = 0; i < x->nes && x->es[i].code != code; i++)
        ;
    if (i == x->nes) {
        /* keep codes ascending ("_OTHER", UINT_MAX, last) */
        for (i = x->nes; i > 0 && x->es[i - 1].code > code; i--)
            x->es[i] = x->es[i - 1];
        memset(&x->es[i], 0, sizeof(x->es[i]));
        x->es[i].code = code;
        x->nes++;
    }
    return &x->es[i];
}

/* The duration rows of the error_type values, merged by value. */
static void met_otel_errors(struct met_otel_scratch *x)
{
    unsigned nb = met_otel_shapes[MET_OTEL_DURATION].nb, j;
    size_t i;

    x->nes = 0;
    for (i = 0; i < x->nsrc; i++) {
        const struct met_otel *o = x->src[i].o;
        const struct met_otel_blk *k = &o->blk[x->src[i].block];
        unsigned n = atomic_load_explicit((_Atomic unsigned char *)&k->nerr, memory_order_acquire);

        for (j = 0; j < n; j++)
            met_hist_sum(met_otel_err_slot(x, k->err[j])->b,
                         met_otel_row(o, x->src[i].block, MET_OTEL_DURATION, 1 + j), nb);
        met_hist_sum(met_otel_err_slot(x, UINT_MAX)->b,
                     met_otel_row(o, x->src[i].block, MET_OTEL_DURATION, MET_OTEL_DUR_ROWS - 1),
                     nb);
    }
}

/* The provider of backend group g: the first known flavor recorded. */
static const char *met_otel_provider(const struct met_view *v, unsigned g)
{
    size_t i;
    unsigned b;

    for (i = 0; i < v->n; i++) {
        const struct met_otel *o = v->regs[i]->otel;

        for (b = g; b < o->nbackends; b++) {
            int f = atomic_load_explicit(&o->flavor[b], memory_order_relaxed);

            if (o->group[b] == g && f != CFG_FLAVOR_AUTO)
                return met_otel_provider_label((enum cfg_flavor)f);
        }
    }
    return met_otel_provider_label(CFG_FLAVOR_AUTO);
}

/* The series of family f for the label set lbl (sources in x). */
static void met_otel_series(struct met_view *v, struct met_otel_scratch *x, enum met_otel_id f,
                            const char *lbl)
{
    const struct met_otel_shape *sh = &met_otel_shapes[f];
    const struct met_otel_fam *fam = &v->regs[0]->otel->fam[f];
    const char *name = met_otel_defs[f].name;
    uint64_t b[MET_OTEL_BOUNDS_MAX + 2];
    char ext[MET_LABELS_BUF], code[32];
    unsigned row;
    size_t i, len = strlen(lbl);

    memcpy(ext, lbl, len + 1);
    if (f == MET_OTEL_DURATION) {
        /* the request without error_type always, so rate() starts from 0 */
        met_otel_sum(x, f, 0, b);
        met_hist_print(v, name, lbl, b, sh->nb, fam->le, sh->us);
        met_otel_errors(x);
        for (i = 0; i < x->nes; i++) {
            unsigned c = x->es[i].code, j;
            uint64_t n = 0;

            for (j = 0; j < sh->nb + 1; j++)
                n += x->es[i].b[j];
            if (n == 0)
                continue; /* "_OTHER" before any overflow */
            if (c == UINT_MAX)
                snprintf(code, sizeof(code), "%s", MET_OTEL_OTHER);
            else if (c < PITOT_E__COUNT)
                snprintf(code, sizeof(code), "%s", err_label((enum pitot_err)c));
            else
                snprintf(code, sizeof(code), "%u", c);
            met_label(ext, sizeof(ext), len, "error_type", code);
            met_hist_print(v, name, ext, x->es[i].b, sh->nb, fam->le, sh->us);
        }
        return;
    }
    for (row = 0; row < sh->nrows; row++) {
        if (met_otel_sum(x, f, row, b) == 0)
            continue;
        if (f == MET_OTEL_TOKENS)
            met_label(ext, sizeof(ext), len, "gen_ai_token_type", met_otel_token_types[row]);
        met_hist_print(v, name, ext, b, sh->nb, fam->le, sh->us);
    }
}

void met_otel_expose(struct met_view *v)
{
    const struct met_registry *r0 = v->regs[0];
    const struct met_otel *o0 = r0->otel;
    struct met_otel_scratch x;
    char lbl[MET_LABELS_BUF];
    unsigned f, g, u, t, op;
    size_t len;

    memset(&x, 0, sizeof(x));
    x.src = calloc(v->n * o0->nbackends + 1, sizeof(*x.src));
    x.es = calloc(v->n * o0->nbackends * MET_OTEL_ERRORS_MAX + 1, sizeof(*x.es));
    if (x.src == NULL || x.es == NULL) {
        v->err = -1;
        free(x.src);
        free(x.es);
        return;
    }
    for (f = 0; f < MET_OTEL__COUNT; f++) {
        met_head(v, met_otel_defs[f].name, "histogram", met_otel_defs[f].help);
        for (g = 0; g < o0->nbackends; g++) {
            if (o0->group[g] != g)
                continue;
            for (u = 0; u < v->nu; u++) {
                for (t = 0; t < r0->ntiers; t++) {
                    if (!met_view_tier(v, t))
                        continue;
                    for (op = 1; op < MET_OTEL_OP__COUNT; op++) {
                        if (met_otel_gather(v, &x, g, u, t, op) == 0)
                            continue;
                        len = met_label(lbl, sizeof(lbl), 0, "gen_ai_operation_name",
                                        met_otel_op_labels[op]);
                        len = met_label(lbl, sizeof(lbl), len, "gen_ai_provider_name",
                                        met_otel_provider(v, g));
                        len = met_label(lbl, sizeof(lbl), len, "gen_ai_request_model", v->uname[u]);
                        len = met_label(lbl, sizeof(lbl), len, "server_address", o0->host[g]);
                        len = met_label(lbl, sizeof(lbl), len, "server_port", o0->port[g]);
                        met_label(lbl, sizeof(lbl), len, "tier", r0->tier[t]);
                        met_otel_series(v, &x, (enum met_otel_id)f, lbl);
                    }
                }
            }
        }
    }
    free(x.src);
    free(x.es);
}
