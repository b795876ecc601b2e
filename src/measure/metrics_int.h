/* metrics internals shared by src/measure/metrics.c (the registry, pitot's own families, the
 * exposition) and src/met_otel.c (the OpenTelemetry GenAI families). Private
 * to the met module: the public face is include/pitot/met.h. */
#ifndef PITOT_MET_INT_H
#define PITOT_MET_INT_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pitot/format/config.h"
#include "pitot/measure/metrics.h"

#define MET_LE_MAX 32       /* formatted bucket bound, "+Inf" included */
#define MET_LABELS_BUF 1024 /* one series' escaped label set */
#define MET_NONE UINT_MAX   /* "no such index" in lookups */

/* Where a metric's values live. Most follow from type and label set; the
 * scrape-derived per-backend gauges are floats, and the age is a timestamp. */
enum met_store {
    MET_ST_OWN,    /* a dedicated array: requests, finish reasons,
                           upstream errors, scrapes, age, shed, SLO */
    MET_ST_CTR,    /* BMT counter: ctr[] */
    MET_ST_HIST,   /* BMT histogram: hist[] */
    MET_ST_GAUGE,  /* per-backend int64: gauge[] */
    MET_ST_FGAUGE, /* per-backend double bits: fgauge[] */
    MET_ST_TGAUGE, /* per-tier int64: tgauge[] */
    MET_ST_THIST,  /* per-tier histogram: thist[] */
};

struct met_bmt;
struct met_code_sum;
struct met_otel;

struct met_registry {
    unsigned nbackends;
    unsigned ntiers;
    unsigned nmodel_slots;                /* cfg models + max_model_labels + 1; "other" last */
    unsigned nseries;                     /* nbackends * nmodel_slots * ntiers */
    unsigned nbuckets;                    /* finite bounds; the stride adds overflow and sum */
    _Atomic unsigned nmodels;             /* model[] rows in use before "other", release */
    char (*backend)[CFG_NAME_MAX];        /* owned, nbackends rows */
    char (*tier)[CFG_NAME_MAX];           /* owned, ntiers rows */
    char (*model)[CFG_NAME_MAX];          /* owned, nmodel_slots rows */
    uint64_t bound_us[CFG_MAX_BUCKETS];   /* bucket upper bounds, microseconds */
    char le[CFG_MAX_BUCKETS][MET_LE_MAX]; /* the same bounds as exposed, seconds */
    enum met_store store[MET__COUNT];     /* met_store_of(id) */
    int slot[MET__COUNT];                 /* index within its storage kind, or -1 */
    unsigned nctr, nhist, ngauge, nfgauge, ntgauge, nthist;
    struct met_bmt *bmt;              /* owned, nseries */
    _Atomic uint64_t *ctr;            /* owned, nseries * nctr: BMT counters */
    _Atomic uint64_t *hist;           /* owned, (nhist * nseries) * (nbuckets + 2):
                                           per series nbuckets + 1 non-cumulative
                                           buckets (the last is "above every bound"),
                                           then the sum in microseconds */
    _Atomic uint64_t *uperr;          /* owned, nbackends * PITOT_E__COUNT */
    _Atomic int64_t *gauge;           /* owned, ngauge * nbackends */
    _Atomic uint64_t *fgauge;         /* owned, nfgauge * nbackends: double bits,
                                           MET_FG_ABSENT when there is no series */
    _Atomic uint64_t *scraped_us;     /* owned, nbackends: monotonic time of the
                                           last successful scrape, 0 never */
    _Atomic uint64_t *scrape;         /* owned, nbackends * MET_SCRAPE__COUNT */
    _Atomic int64_t *tgauge;          /* owned, ntgauge * ntiers */
    _Atomic uint64_t *thist;          /* owned, (nthist * ntiers) * (nbuckets + 2),
                                           laid out as hist[] */
    _Atomic uint64_t *shed;           /* owned, ntiers * MET_SHED__COUNT */
    _Atomic uint64_t *slo;            /* owned, ntiers * 2, [met] */
    struct met_otel *otel;            /* owned; NULL unless cfg otel_metrics */
    _Atomic unsigned char *active;    /* owned, nbackends: 0 while a DNS slot has no
                                      address; its series are not exposed */
    _Atomic unsigned char *tier_live; /* owned, ntiers: 0 for a spare tier slot;
                                         its series are not exposed */

    /* span export: one loop-wide series each, no backend or tier */
    _Atomic uint64_t spans_exported;
    _Atomic uint64_t connections; /* client connections this loop accepted */
    _Atomic uint64_t spans_dropped[MET_TRACE_DROP__COUNT];
    /* TLS listener: one loop-wide series per reason */
    _Atomic uint64_t tls_fail[TLS_FAIL__COUNT];
};

/* One exposition over n registries: the union of their model tables (matched
 * by name, "other" last) and where each union model sits in each registry. */
struct met_view {
    struct met_registry *const *regs; /* borrowed */
    size_t n;
    unsigned nu;                /* union models */
    const char **uname;         /* owned array, names borrowed from regs */
    unsigned *uidx;             /* owned, nu * n: row in regs[i] or MET_NONE */
    struct met_code_sum *codes; /* owned scratch, n * MET_CODES_MAX */
    _Atomic uint64_t **rows;    /* owned scratch, n: one row per registry */
    struct evbuffer *out;       /* borrowed */
    uint64_t now_us;            /* clk_now_us() once per exposition */
    int err;                    /* -1 once an evbuffer append failed */
};

/* Is tier t exposed: a configured tier, as the first registry says? */
static inline bool met_view_tier(const struct met_view *v, unsigned t)
{
    return atomic_load_explicit(&v->regs[0]->tier_live[t], memory_order_acquire);
}

/* Only the owning loop writes; met_expose may read from another thread, hence
 * relaxed atomics (a single writer needs no read-modify-write). */
static inline void met_inc(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t met_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

/* A finite number the way Prometheus clients print bucket bounds and values
 * (Go's 'g' with shortest precision): "0.005", "1", "2.5", "1e+06". */
void met_fmt_float(char *out, size_t cap, double v);

/* Microseconds as seconds, exactly: "0.0015", "3". */
void met_sum_fmt(char *out, size_t cap, uint64_t us);

/* One observation v into a histogram row of nb + 2 values: nb + 1
 * non-cumulative buckets for the ascending bounds bound[0..nb) (the last is
 * "above every bound"), then the sum of v. */
void met_hist_put(const uint64_t *bound, unsigned nb, _Atomic uint64_t *h, uint64_t v);

/* Adds a histogram row of nb + 2 values into b. */
void met_hist_sum(uint64_t *b, const _Atomic uint64_t *h, unsigned nb);

/* Prints one histogram series from summed non-cumulative buckets b (a row of
 * nb + 2 values), le[] its bounds as exposed; the sum in seconds from
 * microseconds when us, else as the integer it is. */
void met_hist_print(struct met_view *v, const char *name, const char *lbl, const uint64_t *b,
                    unsigned nb, const char (*le)[MET_LE_MAX], bool us);

/* Appends `,name="value"` (no comma first) to a label set in buf. */
size_t met_label(char *buf, size_t cap, size_t len, const char *name, const char *value);

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void met_printf(struct met_view *v, const char *fmt, ...);

/* HELP and TYPE lines of a family; help is escaped. */
void met_head(struct met_view *v, const char *name, const char *type, const char *help);

/* ---- src/met_otel.c ---- */

/* The OTel families' storage for registry r (its shape set, names copied),
 * from c's backends. NULL on allocation failure. */
struct met_otel *met_otel_new(const struct met_registry *r, const struct cfg *c);
void met_otel_free(struct met_otel *o);
/* Backend slot b holds cb now: its server address, and its series gone. */
void met_otel_backend_reset(struct met_otel *o, unsigned b, const struct cfg_backend *cb);

/* Appends the OTel families of v's registries (all have them). */
void met_otel_expose(struct met_view *v);

#endif
