/* flavor: dispatch over the dialect tables of src/format/flavor/<server>.c, the load
 * from a /metrics body, and the model list and slot count of JSON bodies. */
#include "pitot/format/flavor.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pitot/format/prom_text.h"

/* Every dialect with metrics; detection tries them in this order. */
static const struct flv_dialect *const flv_dialects[] = {
    &flv_dialect_llamacpp,
    &flv_dialect_vllm,
    &flv_dialect_tgi,
    &flv_dialect_sglang,
};

#define FLV_NDIALECTS (sizeof(flv_dialects) / sizeof(flv_dialects[0]))

static const struct flv_dialect *flv_dialect_of(enum cfg_flavor f)
{
    size_t i;

    for (i = 0; i < FLV_NDIALECTS; i++) {
        if (flv_dialects[i]->flavor == f)
            return flv_dialects[i];
    }
    return NULL;
}

const char *flv_name(enum cfg_flavor f)
{
    const struct flv_dialect *d;

    if (f == CFG_FLAVOR_AUTO)
        return "auto";
    if (f == CFG_FLAVOR_OPENAI)
        return "openai";
    d = flv_dialect_of(f);
    return d != NULL ? d->name : "";
}

int flv_from_name(const char *name)
{
    static const enum cfg_flavor all[] = {
        CFG_FLAVOR_AUTO, CFG_FLAVOR_LLAMACPP, CFG_FLAVOR_VLLM,
        CFG_FLAVOR_TGI,  CFG_FLAVOR_SGLANG,   CFG_FLAVOR_OPENAI,
    };
    size_t i;

    if (name == NULL)
        return -1;
    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(name, flv_name(all[i])) == 0)
            return (int)all[i];
    }
    return -1;
}

/* ---- detection ---------------------------------------------------------- */

static bool flv_has_prefix(struct span s, const char *prefix)
{
    size_t n = strlen(prefix);

    return s.len >= n && memcmp(s.p, prefix, n) == 0;
}

static int flv_detect_sample(void *ud, const struct prom_sample *s)
{
    enum cfg_flavor *found = ud;
    size_t i;

    for (i = 0; i < FLV_NDIALECTS; i++) {
        if (flv_has_prefix(s->name, flv_dialects[i]->prefix)) {
            *found = flv_dialects[i]->flavor;
            return 1; /* decided: stop parsing */
        }
    }
    return 0;
}

enum cfg_flavor flv_detect(struct span body)
{
    struct prom_parser p;
    enum cfg_flavor found = CFG_FLAVOR_OPENAI;

    prom_parse(&p, body, flv_detect_sample, &found);
    return found;
}

/* ---- load --------------------------------------------------------------- */

/* Sums over the series of one body. */
struct flv_acc {
    const struct flv_dialect *d; /* borrowed; NULL: syntax check only */
    bool has_running, has_waiting, has_ratio, has_used, has_total;
    double running, waiting, ratio, used, total;
};

static int flv_load_sample(void *ud, const struct prom_sample *s)
{
    struct flv_acc *a = ud;
    size_t i;

    if (a->d == NULL || !isfinite(s->value))
        return 0;
    for (i = 0; i < a->d->nsignals; i++) {
        if (!span_eq(s->name, a->d->signals[i].name))
            continue;
        switch (a->d->signals[i].field) {
        case FLV_RUNNING:
            a->running += s->value;
            a->has_running = true;
            break;
        case FLV_WAITING:
            a->waiting += s->value;
            a->has_waiting = true;
            break;
        case FLV_CACHE_RATIO:
            if (!a->has_ratio || s->value > a->ratio)
                a->ratio = s->value;
            a->has_ratio = true;
            break;
        case FLV_CACHE_USED:
            a->used += s->value;
            a->has_used = true;
            break;
        case FLV_CACHE_TOTAL:
            a->total += s->value;
            a->has_total = true;
            break;
        }
        break;
    }
    return 0;
}

static void flv_err(char *err, size_t errlen, const char *fmt_reason, unsigned line)
{
    if (err == NULL || errlen == 0)
        return;
    if (line > 0)
        snprintf(err, errlen, "line %u: %s", line, fmt_reason);
    else
        snprintf(err, errlen, "%s", fmt_reason);
}

int flv_load_parse(enum cfg_flavor f, struct span body, struct flv_load *out, char *err,
                   size_t errlen)
{
    struct prom_parser p;
    struct flv_acc a;

    memset(out, 0, sizeof(*out));
    out->cache_ratio = -1;
    memset(&a, 0, sizeof(a));
    a.d = flv_dialect_of(f);
    if (a.d == NULL && f != CFG_FLAVOR_OPENAI) {
        flv_err(err, errlen,
                f == CFG_FLAVOR_AUTO ? "flavor auto: detect the flavor first" : "unknown flavor",
                0);
        return -1;
    }
    if (prom_parse(&p, body, flv_load_sample, &a) != SPAN_OK) {
        flv_err(err, errlen, p.err, p.err_line);
        return -1;
    }
    if (a.has_used && a.has_total && a.total > 0) {
        double r = a.used / a.total;

        if (!a.has_ratio || r > a.ratio)
            a.ratio = r;
        a.has_ratio = true;
    }
    out->valid = a.has_running || a.has_waiting || a.has_ratio;
    out->running = a.running > 0 ? a.running : 0;
    out->waiting = a.waiting > 0 ? a.waiting : 0;
    if (a.has_ratio)
        out->cache_ratio = a.ratio < 0 ? 0 : a.ratio > 1 ? 1 : a.ratio;
    return 0;
}

/* ---- JSON bodies -------------------------------------------------------- */

struct flv_models {
    struct span seen[FLV_MODELS_MAX]; /* borrowed from the body */
    size_t n;
    void (*cb)(void *ud, struct span name);
    void *ud;
};

static void flv_model_name(void *ud, size_t path, struct span raw, bool is_string)
{
    struct flv_models *m = ud;
    size_t i;

    if (!is_string || raw.len == 0 || m->n == FLV_MODELS_MAX)
        return;
    for (i = 0; i < m->n; i++) {
        if (m->seen[i].len == raw.len && memcmp(m->seen[i].p, raw.p, raw.len) == 0)
            return;
    }
    m->seen[m->n++] = raw;
    if (m->cb != NULL)
        m->cb(m->ud, raw);
}

int flv_models_parse(struct span body, struct json_toks *toks,
                     void (*cb)(void *ud, struct span name), void *ud)
{
    static const char *const paths[] = {
        "data[].id",        /* OpenAI, vLLM, TGI, SGLang, llama.cpp */
        "data[].aliases[]", /* llama.cpp --alias */
        "models[].name",    /* llama.cpp (Ollama-style list) */
        "models[].model",
    };
    struct flv_models m;

    m.n = 0;
    m.cb = cb;
    m.ud = ud;
    if (json_paths_visit(body, toks, paths, sizeof(paths) / sizeof(paths[0]), flv_model_name, &m) <
        0)
        return -1;
    return (int)m.n;
}

static void flv_slots_value(void *ud, size_t path, struct span raw, bool is_string)
{
    long *slots = ud;
    long long v;

    *slots = -1;
    if (!is_string && span_to_i64(raw, &v) == 0 && v <= LONG_MAX)
        *slots = (long)v;
}

long flv_props_slots(struct span body, struct json_toks *toks)
{
    static const char *const paths[] = { "total_slots" };
    long slots = -1;

    if (json_paths_visit(body, toks, paths, 1, flv_slots_value, &slots) < 0)
        return -1;
    return slots;
}
