/* log: pitot's own stderr lines, text or JSON, one write(2) each, with a
 * table that holds back repeats of one message within a second. */
#include "pitot/util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pitot/util/clock.h"

/* Room kept at the end of a line for " (N more suppressed)" and the JSON
 * object's end: a long message is cut before it, never they. */
#define LOG_TAIL_RESERVE 48

/* A message seen lately: its hash (level and bytes), when it was last
 * written, and how many times it was held back since. */
struct log_seen {
    uint64_t hash;
    uint64_t last_us; /* monotonic */
    unsigned suppressed;
    bool used;
};

static _Atomic int log_level_now = LOG_LVL_INFO;
static _Atomic int log_format_now = LOG_FMT_TEXT;
static _Atomic int log_fd = 2;
static uint64_t (*log_mono_us)(void) = clk_now_us;
static uint64_t (*log_wall_us)(void) = clk_wall_us;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER; /* log_seen */
static struct log_seen log_seen[LOG_REPEAT_SLOTS];

static const char *const log_names[] = { "notice", "error", "warn", "info", "debug" };

void log_setup(int level, int format)
{
    if (level < LOG_LVL_ERROR)
        level = LOG_LVL_ERROR;
    if (level > LOG_LVL_DEBUG)
        level = LOG_LVL_DEBUG;
    atomic_store_explicit(&log_level_now, level, memory_order_relaxed);
    atomic_store_explicit(&log_format_now, format == LOG_FMT_JSON ? LOG_FMT_JSON : LOG_FMT_TEXT,
                          memory_order_relaxed);
}

bool log_on(enum log_level lv)
{
    return (int)lv <= atomic_load_explicit(&log_level_now, memory_order_relaxed);
}

void log_hooks_set(int fd, uint64_t (*mono_us)(void), uint64_t (*wall_us)(void))
{
    atomic_store(&log_fd, fd < 0 ? 2 : fd);
    log_mono_us = mono_us ? mono_us : clk_now_us;
    log_wall_us = wall_us ? wall_us : clk_wall_us;
    pthread_mutex_lock(&log_lock);
    memset(log_seen, 0, sizeof(log_seen));
    pthread_mutex_unlock(&log_lock);
}

/* A line being built: never past cap, always NUL-terminated. */
struct log_buf {
    char *p;
    size_t len, cap;
};

static void log_put(struct log_buf *b, const char *s, size_t n)
{
    if (n > b->cap - 1 - b->len)
        n = b->cap - 1 - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void log_puts(struct log_buf *b, const char *s)
{
    log_put(b, s, strlen(s));
}

/* The length of the valid UTF-8 sequence at s[0..n), 0 when it is not one
 * (overlong forms, surrogates and values past U+10FFFF are not). */
static size_t log_utf8_len(const unsigned char *s, size_t n)
{
    size_t len, i;
    unsigned cp;

    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1fu;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0fu;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07u;
    else
        return 0;
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* Appends msg[0..n) escaped for the format, up to `limit` bytes of the
 * line; what does not fit is cut at a whole character and marked "...". */
static void log_put_msg(struct log_buf *b, const char *msg, size_t n, bool json, size_t limit)
{
    const unsigned char *s = (const unsigned char *)msg;
    size_t i = 0;

    while (i < n) {
        char esc[8];
        const char *out = esc;
        size_t olen, step = 1;
        unsigned char c = s[i];

        if (json && (c == '"' || c == '\\')) {
            esc[0] = '\\', esc[1] = (char)c, olen = 2;
        } else if (json && (c == '\n' || c == '\r' || c == '\t')) {
            esc[0] = '\\', esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't', olen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            olen = (size_t)snprintf(esc, sizeof(esc), json ? "\\u%04x" : "\\x%02x", c);
        } else if (json && c >= 0x80) {
            step = log_utf8_len(s + i, n - i);
            if (step == 0) { /* not UTF-8: the replacement character */
                step = 1;
                out = "\\ufffd";
                olen = 6;
            } else {
                out = (const char *)s + i;
                olen = step;
            }
        } else {
            esc[0] = (char)c, olen = 1;
        }
        if (b->len + olen + 3 > limit) {
            log_puts(b, "...");
            return;
        }
        log_put(b, out, olen);
        i += step;
    }
}

/* "2026-12-05T19:30:00.123Z" into out (at least 32 bytes). */
static void log_ts(char *out, size_t cap)
{
    uint64_t us = log_wall_us();
    time_t secs = (time_t)(us / 1000000u);
    struct tm tm;
    size_t n;

    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, cap, "1970-01-01T00:00:00.000Z");
        return;
    }
    n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03uZ", (unsigned)(us / 1000u % 1000u));
}

/* Whether msg may be written now; *more: the repeats held back since it
 * last was. */
static bool log_repeat_ok(enum log_level lv, const char *msg, size_t n, unsigned *more)
{
    uint64_t h = 14695981039346656037ull ^ (uint64_t)(lv + 1), now;
    struct log_seen *e;
    size_t i;

    *more = 0;
    if (lv == LOG_LVL_NOTICE)
        return true;
    for (i = 0; i < n; i++)
        h = (h ^ (unsigned char)msg[i]) * 1099511628211ull;
    now = log_mono_us();
    pthread_mutex_lock(&log_lock);
    e = &log_seen[h % LOG_REPEAT_SLOTS];
    if (e->used && e->hash == h && now - e->last_us < LOG_REPEAT_US) {
        e->suppressed++;
        pthread_mutex_unlock(&log_lock);
        return false;
    }
    if (e->used && e->hash == h)
        *more = e->suppressed;
    e->used = true;
    e->hash = h;
    e->last_us = now;
    e->suppressed = 0;
    pthread_mutex_unlock(&log_lock);
    return true;
}

static void log_write_all(const char *p, size_t n)
{
    int fd = atomic_load_explicit(&log_fd, memory_order_relaxed);

    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* stderr is gone: nothing to tell it */
        p += w;
        n -= (size_t)w;
    }
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 0)))
#endif
static void
log_vwrite(enum log_level lv, const char *fmt, va_list ap)
{
    char msg[LOG_LINE_MAX], line[LOG_LINE_MAX], ts[40], tail[48] = "";
    struct log_buf b = { line, 0, sizeof(line) };
    bool json = atomic_load_explicit(&log_format_now, memory_order_relaxed) == LOG_FMT_JSON;
    unsigned more;
    int n;

    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(msg))
        n = (int)sizeof(msg) - 1;
    if (!log_repeat_ok(lv, msg, (size_t)n, &more))
        return;
    if (more)
        snprintf(tail, sizeof(tail), " (%u more suppressed)", more);
    line[0] = '\0';
    log_ts(ts, sizeof(ts));
    if (json) {
        log_puts(&b, "{\"ts\":\"");
        log_puts(&b, ts);
        log_puts(&b, "\",\"level\":\"");
        log_puts(&b, log_names[lv + 1]);
        log_puts(&b, "\",\"msg\":\"");
    } else {
        log_puts(&b, ts);
        log_puts(&b, " pitot: ");
        if (lv != LOG_LVL_NOTICE) {
            log_puts(&b, log_names[lv + 1]);
            log_puts(&b, ": ");
        }
    }
    log_put_msg(&b, msg, (size_t)n, json, sizeof(line) - LOG_TAIL_RESERVE);
    log_puts(&b, tail);
    log_puts(&b, json ? "\"}\n" : "\n");
    log_write_all(line, b.len);
}

void plog(enum log_level lv, const char *fmt, ...)
{
    va_list ap;

    if (!log_on(lv) || lv < LOG_LVL_NOTICE || lv > LOG_LVL_DEBUG)
        return;
    va_start(ap, fmt);
    log_vwrite(lv, fmt, ap);
    va_end(ap);
}

#define LOG_AT(name, lv)                                                                           \
    void name(const char *fmt, ...)                                                                \
    {                                                                                              \
        va_list ap;                                                                                \
                                                                                                   \
        if (!log_on(lv))                                                                           \
            return;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_vwrite(lv, fmt, ap);                                                                   \
        va_end(ap);                                                                                \
    }

LOG_AT(log_error, LOG_LVL_ERROR)
LOG_AT(log_warn, LOG_LVL_WARN)
LOG_AT(log_info, LOG_LVL_INFO)
LOG_AT(log_debug, LOG_LVL_DEBUG)
LOG_AT(log_notice, LOG_LVL_NOTICE)
