/* metrics_process: the process_* families every Prometheus client library
 * exposes (named, typed and described as client_golang writes them) and
 * pitot_build_info, read from the kernel while /metrics is rendered. */
#include "pitot/measure/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "metrics_int.h"
#include "pitot/util/version.h"

/* /proc/self/stat: 52 fields of at most 20 digits, a command name of at most
 * 64 bytes */
#define MET_PROC_STAT_MAX 2048
#define MET_PROC_DENTS 4096 /* getdents64 buffer, bytes */

/* Skips one field and the space after it; false at the end of the text. */
static bool met_proc_skip(const char **p, const char *end)
{
    const char *sp = memchr(*p, ' ', (size_t)(end - *p));

    if (sp == NULL)
        return false;
    *p = sp + 1;
    return true;
}

/* An unsigned decimal field ended by a space; false if anything else. */
static bool met_proc_u64(const char **p, const char *end, uint64_t *v)
{
    const char *s = *p;
    uint64_t n = 0;

    if (s == end || *s < '0' || *s > '9')
        return false;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (n > (UINT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (uint64_t)(*s - '0');
    }
    if (s == end || *s != ' ')
        return false;
    *v = n;
    *p = s + 1;
    return true;
}

int met_proc_stat_parse(struct span text, struct met_proc_stat *st)
{
    const char *end = text.p + text.len, *p;
    struct met_proc_stat v;
    int field;

    /* Field 2 is "(comm)" and comm is whatever the program was named, ')' and
     * spaces included, so only the last ')' ends it. */
    p = text.len > 0 ? memrchr(text.p, ')', text.len) : NULL;
    if (p == NULL || end - p < 2 || p[1] != ' ')
        return -1;
    p += 2;
    for (field = 3; field < 22; field++) /* state .. itrealvalue */
        if (!met_proc_skip(&p, end))
            return -1;
    if (!met_proc_u64(&p, end, &v.starttime_ticks) || !met_proc_u64(&p, end, &v.vsize_bytes) ||
        !met_proc_u64(&p, end, &v.rss_pages))
        return -1;
    *st = v;
    return 0;
}

/* The whole of /proc/self/stat into buf (NUL-free text, not terminated);
 * its length, or -1 when it cannot be read or does not fit. */
static ssize_t met_proc_read_stat(char *buf, size_t cap)
{
    size_t len = 0;
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    while (len < cap) {
        ssize_t k = read(fd, buf + len, cap - len);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            close(fd);
            return k < 0 ? -1 : (ssize_t)len;
        }
        len += (size_t)k;
    }
    close(fd);
    return -1;
}

/* Entries of /proc/self/fd, the descriptor reading it included (as the
 * client libraries count them); -1 when it cannot be listed. getdents64 into
 * a stack buffer: opendir would allocate. */
static int64_t met_proc_open_fds(void)
{
    union {
        struct dirent64 d; /* alignment */
        char b[MET_PROC_DENTS];
    } u;
    int64_t n = 0;
    int fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    for (;;) {
        ssize_t k = getdents64(fd, u.b, sizeof(u.b)), off;

        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            n = -1;
            break;
        }
        if (k == 0)
            break;
        for (off = 0; off < k;) {
            const struct dirent64 *d = (const struct dirent64 *)(void *)(u.b + off);

            if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0)
                n++;
            off += d->d_reclen;
        }
    }
    close(fd);
    return n;
}

/* Unix time of the process start, from its start in clock ticks since boot:
 * the boot's wall-clock time is CLOCK_REALTIME - CLOCK_BOOTTIME (what the
 * kernel prints as btime in /proc/stat, here to the tick, not the second). */
static bool met_proc_start_time(uint64_t starttime_ticks, long hz, double *out)
{
    struct timespec rt, bt;
    int64_t s, ns, ticks;

    if (hz <= 0 || clock_gettime(CLOCK_REALTIME, &rt) != 0 ||
        clock_gettime(CLOCK_BOOTTIME, &bt) != 0)
        return false;
    s = (int64_t)rt.tv_sec - (int64_t)bt.tv_sec;
    ns = (int64_t)rt.tv_nsec - (int64_t)bt.tv_nsec;
    if (ns < 0) {
        s--;
        ns += 1000000000;
    }
    /* rounded to the tick, so consecutive scrapes agree */
    ticks = s * hz + (ns * hz + 500000000) / 1000000000 + (int64_t)starttime_ticks;
    *out = (double)ticks / (double)hz;
    return true;
}

/* The process's configuration reloads: [0] failed, [1] succeeded; and when
 * the configuration in force was loaded (Unix milliseconds). */
static _Atomic uint64_t met_reloads[2];
static _Atomic uint64_t met_reload_ok_ms;

/* One unlabelled family with its one sample. */
static void met_proc_family(struct met_view *v, const char *name, const char *type,
                            const char *help, double value)
{
    char num[40];

    met_fmt_float(num, sizeof(num), value);
    met_head(v, name, type, help);
    met_printf(v, "%s %s\n", name, num);
}

int met_expose_process(struct evbuffer *out)
{
    char stat[MET_PROC_STAT_MAX], lbl[64];
    struct met_view view = { .out = out }, *v = &view; /* met_head and met_printf need out */
    struct met_proc_stat st;
    struct rusage ru;
    struct rlimit rl;
    ssize_t n = met_proc_read_stat(stat, sizeof(stat));
    bool have_stat = n > 0 && met_proc_stat_parse(span_make(stat, (size_t)n), &st) == 0;
    long page = sysconf(_SC_PAGESIZE);
    int64_t fds = met_proc_open_fds();
    double start;

    met_label(lbl, sizeof(lbl), 0, "version", PITOT_VERSION);
    met_head(v, "pitot_build_info", "gauge",
             "A metric with a constant '1' value labeled by version from which pitot was built.");
    met_printf(v, "pitot_build_info{%s} 1\n", lbl);

    /* A series is left out when its source cannot be read (no /proc in a
     * sandbox): the scrape itself never fails for it. */
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        met_proc_family(v, "process_cpu_seconds_total", "counter",
                        "Total user and system CPU time spent in seconds.",
                        (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                            (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        met_proc_family(v, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                        (double)rl.rlim_cur);
    if (fds >= 0)
        met_proc_family(v, "process_open_fds", "gauge", "Number of open file descriptors.",
                        (double)fds);
    if (have_stat && page > 0)
        met_proc_family(v, "process_resident_memory_bytes", "gauge",
                        "Resident memory size in bytes.", (double)st.rss_pages * (double)page);
    if (have_stat && met_proc_start_time(st.starttime_ticks, sysconf(_SC_CLK_TCK), &start))
        met_proc_family(v, "process_start_time_seconds", "gauge",
                        "Start time of the process since unix epoch in seconds.", start);
    if (have_stat)
        met_proc_family(v, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                        (double)st.vsize_bytes);
    met_head(v, "pitot_config_reloads_total", "counter",
             "Configuration reloads (SIGHUP, POST /admin/reload) by result.");
    met_printf(v, "pitot_config_reloads_total{result=\"failure\"} %" PRIu64 "\n",
               atomic_load_explicit(&met_reloads[0], memory_order_relaxed));
    met_printf(v, "pitot_config_reloads_total{result=\"success\"} %" PRIu64 "\n",
               atomic_load_explicit(&met_reloads[1], memory_order_relaxed));
    met_proc_family(v, "pitot_config_last_reload_success_timestamp_seconds", "gauge",
                    "Timestamp of the last successful configuration reload (or of the start).",
                    (double)atomic_load_explicit(&met_reload_ok_ms, memory_order_relaxed) / 1e3);
    return view.err;
}

void met_note_reload(bool ok, uint64_t wall_ms)
{
    atomic_fetch_add_explicit(&met_reloads[ok], 1, memory_order_relaxed);
    if (ok)
        atomic_store_explicit(&met_reload_ok_ms, wall_ms, memory_order_relaxed);
}

void met_note_start(uint64_t wall_ms)
{
    atomic_store_explicit(&met_reload_ok_ms, wall_ms, memory_order_relaxed);
}

uint64_t met_reload_count(bool ok)
{
    return atomic_load_explicit(&met_reloads[ok], memory_order_relaxed);
}

void met_process_read(struct met_process_now *p)
{
    char stat[MET_PROC_STAT_MAX];
    struct met_proc_stat st;
    ssize_t n = met_proc_read_stat(stat, sizeof(stat));
    long page = sysconf(_SC_PAGESIZE);

    p->rss_bytes = -1;
    if (n > 0 && page > 0 && met_proc_stat_parse(span_make(stat, (size_t)n), &st) == 0)
        p->rss_bytes = (int64_t)st.rss_pages * page;
    p->open_fds = met_proc_open_fds();
}
