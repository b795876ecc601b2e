/* load stats: per-request --json lines and the end-of-run summary with exact
 * percentiles (every sample is kept; memory is requests x tokens). */
#include "load.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *load_err_label(enum load_err e)
{
    static const char *const labels[] = {
#define LOAD_ERR_LABEL(name, label) label,
        LOAD_ERR_LIST(LOAD_ERR_LABEL)
#undef LOAD_ERR_LABEL
    };

    return (unsigned)e < LOAD_E__COUNT ? labels[e] : "";
}

int load_vec_push(struct load_vec *vec, uint64_t x)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 256;
        uint64_t *nv = realloc(vec->v, cap * sizeof(*nv));

        if (nv == NULL)
            return -1;
        vec->v = nv;
        vec->cap = cap;
    }
    vec->v[vec->n++] = x;
    return 0;
}

void load_vec_release(struct load_vec *vec)
{
    free(vec->v);
    memset(vec, 0, sizeof(*vec));
}

static int load_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

void load_sort(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), load_u64_cmp);
}

uint64_t load_pct(const uint64_t *v, size_t n, double pct)
{
    size_t rank;

    rank = (size_t)ceil(pct / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static void load_json_ms(FILE *f, const char *key, bool has, uint64_t us)
{
    if (has)
        fprintf(f, ",\"%s\":%.3f", key, (double)us / 1000.0);
    else
        fprintf(f, ",\"%s\":null", key);
}

static void load_json_i64(FILE *f, const char *key, int64_t v)
{
    if (v >= 0)
        fprintf(f, ",\"%s\":%" PRId64, key, v);
    else
        fprintf(f, ",\"%s\":null", key);
}

static void load_json_line(FILE *f, long pid, bool stream, const struct load_result *r,
                           uint64_t itl_p50_us, uint64_t itl_max_us)
{
    fprintf(f, "{\"id\":\"load-%ld-%" PRIu64 "\"", pid, r->n);
    if (r->status)
        fprintf(f, ",\"status\":%d", r->status);
    else
        fputs(",\"status\":null", f);
    fprintf(f, ",\"stream\":%s", stream ? "true" : "false");
    load_json_ms(f, "ttft_ms", r->has_ttft, r->ttft_us);
    load_json_ms(f, "e2e_ms", r->has_e2e, r->e2e_us);
    load_json_ms(f, "itl_p50_ms", r->ngaps > 0, itl_p50_us);
    load_json_ms(f, "itl_max_ms", r->ngaps > 0, itl_max_us);
    load_json_i64(f, "events", r->measured_events ? (int64_t)r->events : -1);
    load_json_i64(f, "prompt_tokens", r->prompt_tokens);
    load_json_i64(f, "completion_tokens", r->completion_tokens);
    if (r->finish != JSON_FINISH_NONE)
        fprintf(f, ",\"finish_reason\":\"%s\"", json_finish_label(r->finish));
    else
        fputs(",\"finish_reason\":null", f);
    if (r->err != LOAD_ENONE)
        fprintf(f, ",\"error\":\"%s\"}\n", load_err_label(r->err));
    else
        fputs(",\"error\":null}\n", f);
}

int load_stats_add(struct load_stats *st, FILE *json, long pid, bool stream,
                   const struct load_result *r)
{
    uint64_t p50 = 0, max = 0;
    size_t i;
    int rc = 0;

    if (r->ngaps > 0) {
        load_sort(r->gaps_us, r->ngaps);
        p50 = load_pct(r->gaps_us, r->ngaps, 50);
        max = r->gaps_us[r->ngaps - 1];
    }
    if (json)
        load_json_line(json, pid, stream, r, p50, max);
    if (r->err != LOAD_ENONE) {
        st->failed++;
        st->by_err[r->err]++;
        if (r->err == LOAD_EHTTP_STATUS && r->status > 0 && r->status < 600)
            st->by_status[r->status]++;
        return 0;
    }
    st->ok++;
    if (r->has_ttft)
        rc |= load_vec_push(&st->ttft_us, r->ttft_us);
    if (r->has_e2e)
        rc |= load_vec_push(&st->e2e_us, r->e2e_us);
    for (i = 0; i < r->ngaps; i++)
        rc |= load_vec_push(&st->itl_us, r->gaps_us[i]);
    if (r->prompt_tokens > 0)
        st->prompt_tokens += r->prompt_tokens;
    if (r->completion_tokens > 0)
        st->completion_tokens += r->completion_tokens;
    return rc ? -1 : 0;
}

static void load_print_dist(FILE *out, const char *name, struct load_vec *v)
{
    uint64_t p50, p95, p99;

    if (v->n == 0) {
        fprintf(out, "%-8s -\n", name);
        return;
    }
    load_sort(v->v, v->n);
    p50 = load_pct(v->v, v->n, 50);
    p95 = load_pct(v->v, v->n, 95);
    p99 = load_pct(v->v, v->n, 99);
    fprintf(out, "%-8s p50 %-6.1f p95 %-6.1f p99 %-6.1f max %.1f\n", name, (double)p50 / 1000.0,
            (double)p95 / 1000.0, (double)p99 / 1000.0, (double)v->v[v->n - 1] / 1000.0);
}

/* " (status 503: 2, connect: 1)", or nothing without failures. */
static void load_print_failures(FILE *out, const struct load_stats *st)
{
    const char *sep = " (";
    int e, code;

    if (st->failed == 0)
        return;
    for (e = 1; e < LOAD_E__COUNT; e++) {
        if (st->by_err[e] == 0)
            continue;
        if (e == LOAD_EHTTP_STATUS) {
            uint64_t listed = 0;

            for (code = 0; code < 600; code++) {
                if (st->by_status[code] == 0)
                    continue;
                fprintf(out, "%sstatus %d: %" PRIu64, sep, code, st->by_status[code]);
                listed += st->by_status[code];
                sep = ", ";
            }
            if (listed == st->by_err[e])
                continue;
        }
        fprintf(out, "%s%s: %" PRIu64, sep, load_err_label((enum load_err)e), st->by_err[e]);
        sep = ", ";
    }
    fputc(')', out);
}

void load_stats_print(struct load_stats *st, FILE *out, uint64_t duration_us, bool open_loop,
                      bool interrupted, bool quiet)
{
    double secs = (double)duration_us / 1e6;
    uint64_t total = st->ok + st->failed;

    if (!quiet) {
        fprintf(out, "requests: %" PRIu64 " ok: %" PRIu64 " failed: %" PRIu64, total, st->ok,
                st->failed);
        load_print_failures(out, st);
        if (open_loop)
            fprintf(out, "  late: %" PRIu64, st->late);
        fprintf(out, "  duration: %.2f s  rate: %.2f req/s%s\n", secs,
                secs > 0 ? (double)total / secs : 0.0, interrupted ? "  (interrupted)" : "");
        load_print_dist(out, "ttft_ms", &st->ttft_us);
        load_print_dist(out, "itl_ms", &st->itl_us);
        load_print_dist(out, "e2e_ms", &st->e2e_us);
    }
    fprintf(out, "tokens   prompt %" PRId64 "  completion %" PRId64 "  (%.1f tok/s)\n",
            st->prompt_tokens, st->completion_tokens,
            secs > 0 ? (double)st->completion_tokens / secs : 0.0);
}

void load_stats_release(struct load_stats *st)
{
    load_vec_release(&st->ttft_us);
    load_vec_release(&st->e2e_us);
    load_vec_release(&st->itl_us);
}
