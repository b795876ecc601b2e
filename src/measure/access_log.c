/* access_log: the access log. One JSON object per line, built in a fixed buffer so
 * that an over-long field is cut rather than the line, then one write(2). */
#include "pitot/measure/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pitot/format/json.h"

#define ALOG_CAP_MIN 1024
#define ALOG_LINE_MAX 8192 /* bytes per line, cut strings included */
#define ALOG_NSTR 11       /* string fields whose contents share the budget */
#define ALOG_ELLIPSIS "..."

struct alog {
    _Atomic int fd; /* every loop writes through it */
    bool is_stdout; /* fd 1 is borrowed: never closed or reopened */
    char *path;     /* owned; NULL for stdout (or a copy of it: reopened as such) */
};

/* Output cursor. With buf == NULL it only counts (the measuring pass). */
struct alog_w {
    char *buf;
    size_t cap;
    size_t len;
};

static void w_raw(struct alog_w *w, const char *s, size_t n)
{
    if (w->buf != NULL && w->len + n <= w->cap)
        memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void w_lit(struct alog_w *w, const char *s)
{
    w_raw(w, s, strlen(s));
}

static void w_u64(struct alog_w *w, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    w_raw(w, tmp + i, sizeof(tmp) - i);
}

/* Non-negative integer, or null for every negative value (-1 = unknown). */
static void w_count(struct alog_w *w, int64_t v)
{
    if (v < 0)
        w_lit(w, "null");
    else
        w_u64(w, (uint64_t)v);
}

/* Microseconds as milliseconds with exactly 3 decimals, in integers. */
static void w_ms(struct alog_w *w, int64_t us)
{
    char frac[4];
    uint64_t u;

    if (us < 0) {
        w_lit(w, "null");
        return;
    }
    u = (uint64_t)us;
    w_u64(w, u / 1000);
    frac[0] = '.';
    frac[1] = (char)('0' + u / 100 % 10);
    frac[2] = (char)('0' + u / 10 % 10);
    frac[3] = (char)('0' + u % 10);
    w_raw(w, frac, sizeof(frac));
}

static void w_bool(struct alog_w *w, bool b)
{
    w_lit(w, b ? "true" : "false");
}

/* RFC 3339 UTC with milliseconds: "2026-11-24T14:40:57.123Z". */
static void w_time(struct alog_w *w, uint64_t wall_us)
{
    char tmp[64];
    time_t secs = (time_t)(wall_us / 1000000u);
    struct tm tm;
    int n;

    if (gmtime_r(&secs, &tm) == NULL) {
        w_lit(w, "null");
        return;
    }
    n = snprintf(tmp, sizeof(tmp), "\"%04d-%02d-%02dT%02d:%02d:%02d.%03uZ\"", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (unsigned)(wall_us / 1000u % 1000u));
    if (n < 0 || (size_t)n >= sizeof(tmp))
        w_lit(w, "null");
    else
        w_raw(w, tmp, (size_t)n);
}

static size_t esc_len(struct span s)
{
    const unsigned char *p = (const unsigned char *)s.p;
    size_t i = 0, total = 0, used;
    char unit[6];

    while (i < s.len) {
        total += json_esc_unit(p + i, s.len - i, &used, unit);
        i += used;
    }
    return total;
}

/* Escaped contents of s (no quotes) in at most `budget` bytes: whole, or the
 * longest prefix of whole units followed by "...". */
static void w_esc(struct alog_w *w, struct span s, size_t budget)
{
    const unsigned char *p = (const unsigned char *)s.p;
    size_t i = 0, out = 0, used, ul, limit;
    char unit[6];

    limit = esc_len(s) <= budget ? budget : (budget >= 3 ? budget - 3 : 0);
    while (i < s.len) {
        ul = json_esc_unit(p + i, s.len - i, &used, unit);
        if (out + ul > limit)
            break;
        w_raw(w, unit, ul);
        out += ul;
        i += used;
    }
    if (i < s.len && budget >= 3)
        w_lit(w, ALOG_ELLIPSIS);
}

/* The string fields, in output order, with their contents' budgets. */
struct alog_strs {
    struct span s[ALOG_NSTR];
    bool null[ALOG_NSTR];
    size_t budget[ALOG_NSTR];
    bool measure; /* first pass: quotes only, contents not counted */
};

enum {
    S_ID,
    S_METHOD,
    S_PATH,
    S_BACKEND,
    S_MODEL,
    S_TIER,
    S_KEY,
    S_API,
    S_FINISH,
    S_OUTCOME,
    S_ERROR
};

static void w_field_str(struct alog_w *w, const char *key, const struct alog_strs *st, int i)
{
    w_lit(w, key);
    if (st->null[i]) {
        w_lit(w, "null");
        return;
    }
    w_raw(w, "\"", 1);
    if (!st->measure)
        w_esc(w, st->s[i], st->budget[i]);
    w_raw(w, "\"", 1);
}

static void alog_emit(struct alog_w *w, const struct alog_rec *r, const struct alog_strs *st)
{
    w_field_str(w, "{\"id\":", st, S_ID);
    w_lit(w, ",\"time\":");
    w_time(w, r->wall_us);
    w_field_str(w, ",\"method\":", st, S_METHOD);
    w_field_str(w, ",\"path\":", st, S_PATH);
    w_lit(w, ",\"status\":");
    w_count(w, r->status);
    w_field_str(w, ",\"backend\":", st, S_BACKEND);
    w_field_str(w, ",\"model\":", st, S_MODEL);
    w_field_str(w, ",\"tier\":", st, S_TIER);
    w_field_str(w, ",\"key\":", st, S_KEY);
    w_field_str(w, ",\"api\":", st, S_API);
    w_lit(w, ",\"stream\":");
    w_bool(w, r->stream);
    w_lit(w, ",\"ttft_ms\":");
    w_ms(w, r->ttft_us);
    w_lit(w, ",\"itl_p50_ms\":");
    w_ms(w, r->itl_p50_us);
    w_lit(w, ",\"itl_max_ms\":");
    w_ms(w, r->itl_max_us);
    w_lit(w, ",\"tpot_ms\":");
    w_ms(w, r->tpot_us);
    w_lit(w, ",\"e2e_ms\":");
    w_ms(w, r->e2e_us);
    w_lit(w, ",\"prompt_tokens\":");
    w_count(w, r->prompt_tokens);
    w_lit(w, ",\"completion_tokens\":");
    w_count(w, r->completion_tokens);
    w_lit(w, ",\"cached_tokens\":");
    w_count(w, r->cached_tokens);
    w_lit(w, ",\"tokens_estimated\":");
    w_bool(w, r->tokens_estimated);
    w_field_str(w, ",\"finish_reason\":", st, S_FINISH);
    w_lit(w, ",\"refusal\":");
    w_bool(w, r->refusal);
    w_lit(w, ",\"truncated\":");
    w_bool(w, r->truncated);
    w_lit(w, ",\"stalls\":");
    w_u64(w, r->stalls);
    w_field_str(w, ",\"outcome\":", st, S_OUTCOME);
    w_field_str(w, ",\"error\":", st, S_ERROR);
    w_lit(w, "}\n");
}

static void strs_set_span(struct alog_strs *st, int i, struct span s)
{
    st->null[i] = s.p == NULL;
    st->s[i] = st->null[i] ? span_make("", 0) : s;
}

static void strs_set_cstr(struct alog_strs *st, int i, const char *s)
{
    st->null[i] = s == NULL;
    st->s[i] = s == NULL ? span_make("", 0) : span_cstr(s);
}

/* Shares `avail` bytes among the strings: fields that fit take what they need,
 * the rest split what is left evenly (water-filling, shortest first). */
static void strs_budget(struct alog_strs *st, size_t avail)
{
    size_t need[ALOG_NSTR], order[ALOG_NSTR], total = 0, left, i, j;

    for (i = 0; i < ALOG_NSTR; i++) {
        need[i] = st->null[i] ? 0 : esc_len(st->s[i]);
        total += need[i];
        order[i] = i;
    }
    if (total <= avail) {
        memcpy(st->budget, need, sizeof(need));
        return;
    }
    for (i = 1; i < ALOG_NSTR; i++) /* insertion sort by need */
        for (j = i; j > 0 && need[order[j]] < need[order[j - 1]]; j--) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    left = avail;
    for (i = 0; i < ALOG_NSTR; i++) {
        size_t share = left / (ALOG_NSTR - i), k = order[i];

        st->budget[k] = need[k] < share ? need[k] : share;
        left -= st->budget[k];
    }
}

int alog_format(const struct alog_rec *r, char *buf, size_t cap)
{
    struct alog_strs st;
    struct alog_w w = { NULL, 0, 0 };
    struct span path = r->path;
    const char *q;

    if (cap < ALOG_CAP_MIN)
        return -1;
    if (cap > (size_t)INT_MAX) /* the length must fit the return type */
        cap = (size_t)INT_MAX;
    if (path.p != NULL && (q = memchr(path.p, '?', path.len)) != NULL)
        path.len = (size_t)(q - path.p);

    memset(&st, 0, sizeof(st));
    strs_set_span(&st, S_ID, r->id);
    strs_set_span(&st, S_METHOD, r->method);
    strs_set_span(&st, S_PATH, path);
    strs_set_cstr(&st, S_BACKEND, r->backend);
    strs_set_cstr(&st, S_MODEL, r->model);
    strs_set_cstr(&st, S_TIER, r->tier);
    strs_set_cstr(&st, S_KEY, r->key);
    strs_set_cstr(&st, S_API, r->api);
    strs_set_cstr(&st, S_FINISH, r->finish_reason);
    strs_set_cstr(&st, S_OUTCOME, r->outcome);
    strs_set_cstr(&st, S_ERROR, r->error);

    /* Pass 1 measures everything but string contents (at most a few hundred
     * bytes, well under ALOG_CAP_MIN); pass 2 writes with the budgets. One
     * byte stays free for a terminating NUL. */
    st.measure = true;
    alog_emit(&w, r, &st);
    if (w.len >= cap)
        return -1;
    strs_budget(&st, cap - 1 - w.len);
    st.measure = false;
    w.buf = buf;
    w.cap = cap - 1;
    w.len = 0;
    alog_emit(&w, r, &st);
    if (w.len > w.cap)
        return -1; /* cannot happen: the budgets add up to what is left */
    buf[w.len] = '\0';
    return (int)w.len;
}

static int alog_open_fd(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

struct alog *alog_open(const char *path)
{
    struct alog *l = malloc(sizeof(*l));

    if (l == NULL)
        return NULL;
    if (path == NULL || path[0] == '\0' || strcmp(path, "-") == 0) {
        l->fd = STDOUT_FILENO;
        l->is_stdout = true;
        l->path = NULL;
        return l;
    }
    l->is_stdout = false;
    l->path = strdup(path);
    if (l->path == NULL) {
        free(l);
        errno = ENOMEM;
        return NULL;
    }
    l->fd = alog_open_fd(path);
    if (l->fd < 0) {
        int e = errno;
        free(l->path);
        free(l);
        errno = e;
        return NULL;
    }
    return l;
}

int alog_write(struct alog *l, const struct alog_rec *r)
{
    char line[ALOG_LINE_MAX]; /* every loop writes: a line of its own */
    int n = alog_format(r, line, sizeof(line));
    size_t off = 0;

    if (n < 0)
        return -1;
    /* O_APPEND makes each write land at the end as one piece; the loop only
     * matters for pipes and signals cutting a write short. */
    while (off < (size_t)n) {
        ssize_t k =
            write(atomic_load_explicit(&l->fd, memory_order_acquire), line + off, (size_t)n - off);

        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (k == 0)
            return -1;
        off += (size_t)k;
    }
    return 0;
}

int alog_reopen(struct alog *l)
{
    int fd;

    if (l->is_stdout)
        return 0;
    /* Open the new file before closing the old one, so a failed reopen
     * keeps logging to the old (renamed) file instead of nowhere. */
    fd = l->path ? alog_open_fd(l->path) : fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* the new file behind the same descriptor, in one step: every loop
     * writes through it, and none may see it closed */
    if (dup2(fd, l->fd) < 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int alog_move(struct alog *l, const char *path)
{
    bool to_stdout = path == NULL || path[0] == '\0' || strcmp(path, "-") == 0;
    char *np = to_stdout ? NULL : strdup(path);
    int fd;

    if (!to_stdout && np == NULL)
        return -1;
    if (l->is_stdout) {
        if (to_stdout)
            return 0;
        /* fd 1 stays open: a loop may be writing to it now */
        fd = alog_open_fd(np);
        if (fd < 0) {
            free(np);
            return -1;
        }
        l->path = np;
        l->is_stdout = false;
        atomic_store_explicit(&l->fd, fd, memory_order_release);
        return 0;
    }
    {
        char *was = l->path;

        l->path = np;
        if (alog_reopen(l) == 0) {
            free(was);
            return 0;
        }
        l->path = was;
        free(np);
        return -1;
    }
}

void alog_close(struct alog *l)
{
    if (l == NULL)
        return;
    if (!l->is_stdout)
        close(l->fd);
    free(l->path);
    free(l);
}
