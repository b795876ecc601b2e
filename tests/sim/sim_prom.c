/* sim_prom: Prometheus text exposition the way the imitated servers' libraries
 * write it: Python prometheus_client (vLLM, SGLang) and Rust
 * metrics-exporter-prometheus (TGI): number formats, label order, histogram
 * line order, blank lines. */
#include "sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shortest decimal digits that read back as v (finite, > 0) into d (NUL-
 * terminated, no dot, no trailing zeros); returns e with v = d0.d1d2... x 10^e.
 * The correctly rounded p-digit form round-trips whenever any p-digit form
 * does, so the first precision that works gives repr's and Rust's digits. */
static int prom_shortest(double v, char *d, size_t cap)
{
    char buf[40], *e;
    size_t n = 0, i;
    int prec;

    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec - 1, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    e = strchr(buf, 'e');
    for (i = 0; &buf[i] != e && n + 1 < cap; i++)
        if (buf[i] != '.')
            d[n++] = buf[i];
    while (n > 1 && d[n - 1] == '0')
        n--;
    d[n] = '\0';
    return atoi(e + 1);
}

/* Digits d with the decimal point after decpt of them, padded with zeros:
 * "0.00ddd", "ddd000" (plus ".0" when dot_zero) or "dd.d". */
static void prom_positional(char *out, size_t cap, const char *sign, const char *d, int decpt,
                            bool dot_zero)
{
    char buf[400];
    size_t n = 0;
    int nd = (int)strlen(d), i;

    if (decpt < -300 || decpt > 300) {
        snprintf(out, cap, "%s%se%d", sign, d, decpt - nd);
        return;
    }
    n += (size_t)snprintf(buf, sizeof(buf), "%s", sign);
    if (decpt <= 0) {
        buf[n++] = '0';
        buf[n++] = '.';
        for (i = 0; i < -decpt; i++)
            buf[n++] = '0';
        for (i = 0; i < nd; i++)
            buf[n++] = d[i];
    } else {
        for (i = 0; i < nd || i < decpt; i++) {
            if (i == decpt)
                buf[n++] = '.';
            buf[n++] = i < nd ? d[i] : '0';
        }
        if (decpt >= nd && dot_zero) {
            buf[n++] = '.';
            buf[n++] = '0';
        }
    }
    buf[n] = '\0';
    snprintf(out, cap, "%s", buf);
}

void sim_fmt_py_repr(char *out, size_t cap, double v)
{
    char d[24];
    int e, decpt;
    const char *sign = "";

    if (isnan(v)) {
        snprintf(out, cap, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "inf" : "-inf");
        return;
    }
    if (v == 0) {
        snprintf(out, cap, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    if (v < 0) {
        sign = "-";
        v = -v;
    }
    e = prom_shortest(v, d, sizeof(d));
    decpt = e + 1;
    if (decpt > -4 && decpt <= 16) {
        prom_positional(out, cap, sign, d, decpt, true);
        return;
    }
    /* repr's exponent form: "1e-05", "1.5e+16" */
    snprintf(out, cap, "%s%c%s%se%c%02d", sign, d[0], d[1] ? "." : "", d + 1, e < 0 ? '-' : '+',
             e < 0 ? -e : e);
}

void sim_fmt_py_go(char *out, size_t cap, double v)
{
    char s[48], mant[48];
    const char *dot;
    size_t n;

    if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
        return;
    }
    sim_fmt_py_repr(s, sizeof(s), v);
    dot = strchr(s, '.');
    /* Go switches to exponents sooner than Python: past 6 integer digits the
     * digits become a mantissa, with the exponent written "e+0<n>" (hence
     * prometheus_client's "e+010"). */
    if (v > 0 && dot && dot - s > 6) {
        snprintf(mant, sizeof(mant), "%c.%.*s%s", s[0], (int)(dot - s - 1), s + 1, dot + 1);
        n = strlen(mant);
        while (n > 0 && (mant[n - 1] == '0' || mant[n - 1] == '.'))
            n--;
        mant[n] = '\0';
        snprintf(out, cap, "%se+0%d", mant, (int)(dot - s - 1));
        return;
    }
    snprintf(out, cap, "%s", s);
}

void sim_fmt_rust(char *out, size_t cap, double v)
{
    char d[24];
    const char *sign = "";

    if (isnan(v)) {
        snprintf(out, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "inf" : "-inf");
        return;
    }
    if (v == 0) {
        snprintf(out, cap, signbit(v) ? "-0" : "0");
        return;
    }
    if (v < 0) {
        sign = "-";
        v = -v;
    }
    /* Rust's Display never uses an exponent and drops ".0". */
    prom_positional(out, cap, sign, d, prom_shortest(v, d, sizeof(d)) + 1, false);
}

int sim_hist_init(struct sim_hist *h, const double *le, size_t n)
{
    memset(h, 0, sizeof(*h));
    h->le = calloc(n ? n : 1, sizeof(*h->le));
    h->bucket = calloc(n + 1, sizeof(*h->bucket));
    if (h->le == NULL || h->bucket == NULL) {
        sim_hist_release(h);
        return -1;
    }
    memcpy(h->le, le, n * sizeof(*le));
    h->n = n;
    return 0;
}

void sim_hist_release(struct sim_hist *h)
{
    free(h->le);
    free(h->bucket);
    h->le = NULL;
    h->bucket = NULL;
}

void sim_hist_observe(struct sim_hist *h, double v)
{
    size_t i = 0;

    while (i < h->n && v > h->le[i])
        i++;
    h->bucket[i]++;
    h->sum += v;
    h->count++;
}

void sim_labels_add(struct sim_labels *ls, const char *k, const char *v)
{
    if (ls->n < SIM_PROM_LABELS_MAX) {
        ls->l[ls->n].k = k;
        ls->l[ls->n].v = v;
        ls->n++;
    }
}

static void prom_num(const struct sim_prom *p, char *out, size_t cap, double v)
{
    if (p->style == SIM_PROM_RS)
        sim_fmt_rust(out, cap, v);
    else
        sim_fmt_py_go(out, cap, v);
}

static void prom_label_value(struct evbuffer *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(o, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(o, "\\n", 2);
        else
            evbuffer_add(o, v, 1);
    }
}

static int prom_label_cmp(const void *a, const void *b)
{
    return strcmp(((const struct sim_label *)a)->k, ((const struct sim_label *)b)->k);
}

/* "{k="v",...}", sorted by name for prometheus_client, as given otherwise
 * (extra, the le or quantile label, goes last there). Nothing when empty. */
static void prom_labels(const struct sim_prom *p, const struct sim_labels *ls,
                        const struct sim_label *extra)
{
    struct sim_label l[SIM_PROM_LABELS_MAX + 1];
    int n = 0, i;

    for (i = 0; ls && i < ls->n; i++)
        l[n++] = ls->l[i];
    if (extra)
        l[n++] = *extra;
    if (n == 0)
        return;
    if (p->style != SIM_PROM_RS)
        qsort(l, (size_t)n, sizeof(l[0]), prom_label_cmp);
    evbuffer_add(p->out, "{", 1);
    for (i = 0; i < n; i++) {
        evbuffer_add_printf(p->out, "%s%s=\"", i ? "," : "", l[i].k);
        prom_label_value(p->out, l[i].v);
        evbuffer_add(p->out, "\"", 1);
    }
    evbuffer_add(p->out, "}", 1);
}

static void prom_line(struct sim_prom *p, const char *name, const char *suffix,
                      const struct sim_labels *ls, const struct sim_label *extra, double v)
{
    char num[48];

    prom_num(p, num, sizeof(num), v);
    evbuffer_add_printf(p->out, "%s%s", name, suffix);
    prom_labels(p, ls, extra);
    evbuffer_add_printf(p->out, " %s\n", num);
}

void sim_prom_family(struct sim_prom *p, const char *name, const char *type, const char *help)
{
    if (help)
        evbuffer_add_printf(p->out, "# HELP %s %s\n", name, help);
    evbuffer_add_printf(p->out, "# TYPE %s %s\n", name, type);
}

void sim_prom_family_end(struct sim_prom *p)
{
    if (p->style == SIM_PROM_RS)
        evbuffer_add(p->out, "\n", 1);
}

void sim_prom_sample(struct sim_prom *p, const char *name, const char *suffix,
                     const struct sim_labels *ls, double v)
{
    prom_line(p, name, suffix, ls, NULL, v);
}

void sim_prom_hist(struct sim_prom *p, const char *name, const struct sim_labels *ls,
                   const struct sim_hist *h)
{
    char bound[48];
    struct sim_label le = { "le", bound };
    uint64_t cum = 0;
    size_t i;

    if (p->style == SIM_PROM_PY_MP)
        prom_line(p, name, "_sum", ls, NULL, h->sum);
    for (i = 0; i <= h->n; i++) {
        cum += h->bucket[i];
        prom_num(p, bound, sizeof(bound), i < h->n ? h->le[i] : INFINITY);
        if (i == h->n)
            snprintf(bound, sizeof(bound), "+Inf");
        prom_line(p, name, "_bucket", ls, &le, (double)cum);
    }
    if (p->style == SIM_PROM_RS) {
        prom_line(p, name, "_sum", ls, NULL, h->sum);
        prom_line(p, name, "_count", ls, NULL, (double)h->count);
    } else if (p->style == SIM_PROM_PY) {
        prom_line(p, name, "_count", ls, NULL, (double)h->count);
        prom_line(p, name, "_sum", ls, NULL, h->sum);
    } else {
        prom_line(p, name, "_count", ls, NULL, (double)h->count);
    }
}
