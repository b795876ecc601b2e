/* Fixture loading shared by the unit tests: reads files under the fixture
 * directory and de-chunks llama.cpp .http captures with the h1 module. */
#include "fixture.h"

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "pitot/format/http1.h"
#include "pitot/measure/metrics.h"

static const char *fixture_dir(void)
{
    const char *d = getenv("PITOT_FIXTURES");

    return d != NULL && d[0] != '\0' ? d : "tests/fixtures";
}

static char *read_path(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

char *fx_read(const char *rel, size_t *len)
{
    char path[1024];

    snprintf(path, sizeof(path), "%s/%s", fixture_dir(), rel);
    return read_path(path, len);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);

    return a >= b && strcmp(s + a - b, suffix) == 0;
}

struct sink {
    char *p;
    size_t len, cap;
};

static int sink_body(void *ud, struct span b)
{
    struct sink *s = ud;

    if (b.len > s->cap - s->len)
        return -1;
    memcpy(s->p + s->len, b.p, b.len);
    s->len += b.len;
    return 0;
}

void fx_http_decode(const char *raw, size_t n, bool request, struct fx_file *f)
{
    struct h1_parser p;
    struct sink s = { NULL, 0, n }; /* a de-chunked body is never longer */
    const struct h1_header *ct;
    size_t c, hl;
    enum h1_result r;

    s.p = malloc(n + 1);
    assert_non_null(s.p);
    h1_init(&p, request ? H1_REQUEST : H1_RESPONSE, NULL, sink_body, &s);
    assert_int_equal(h1_execute(&p, span_make(raw, n), &hl), H1_HEAD);
    assert_true(hl > 0);
    ct = h1_header_find(&p.msg, "Content-Type");
    f->http = true;
    f->request = request;
    f->sse = !request && ct != NULL && ct->value.len >= 17 &&
             memcmp(ct->value.p, "text/event-stream", 17) == 0;
    f->chunked = p.msg.chunked;
    f->status = request ? 0 : p.msg.status;
    r = h1_execute(&p, span_make(raw + hl, n - hl), &c);
    /* The client-abort capture is cut short: its last chunk never ends. */
    assert_true(r == H1_DONE || r == H1_AGAIN);
    f->complete = r == H1_DONE;
    s.p[s.len] = '\0';
    f->body = s.p;
    f->len = s.len;
}

char *fx_body_read(const char *rel, size_t *len)
{
    struct fx_file f;
    size_t n = 0;
    char *raw = fx_read(rel, &n);

    if (raw == NULL)
        fail_msg("fixture %s/%s missing (set PITOT_FIXTURES)", fixture_dir(), rel);
    if (!ends_with(rel, ".http")) {
        *len = n;
        return raw;
    }
    memset(&f, 0, sizeof(f));
    fx_http_decode(raw, n, false, &f);
    free(raw);
    assert_int_equal(f.status, 200);
    assert_true(f.complete);
    *len = f.len;
    return f.body;
}

void fx_bodies_load(struct fx_body *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        b[i].p = fx_body_read(b[i].name, &b[i].len);
}

void fx_bodies_release(struct fx_body *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(b[i].p);
        b[i].p = NULL;
    }
}

const struct fx_body *fx_bodies_find(const struct fx_body *b, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(b[i].name, name) == 0)
            return &b[i];
    }
    fail_msg("no body %s", name);
    return NULL;
}

static void load_dir(struct fx_set *set, const char *dir)
{
    char path[1024];
    struct dirent *de;
    DIR *d;

    snprintf(path, sizeof(path), "%s/%s", fixture_dir(), dir);
    d = opendir(path);
    if (d == NULL)
        fail_msg("fixture directory %s missing (set PITOT_FIXTURES)", path);
    while ((de = readdir(d)) != NULL) {
        bool http = ends_with(de->d_name, ".http");
        struct fx_file *f;
        size_t len = 0;
        char *raw;

        if (!http && !ends_with(de->d_name, ".sse"))
            continue;
        assert_true(set->n < FX_MAX_FILES);
        f = &set->f[set->n++];
        memset(f, 0, sizeof(*f));
        snprintf(f->name, sizeof(f->name), "%s/%s", dir, de->d_name);
        snprintf(path, sizeof(path), "%s/%s/%s", fixture_dir(), dir, de->d_name);
        raw = read_path(path, &len);
        if (raw == NULL)
            fail_msg("cannot read fixture %s", path);
        if (!http) {
            f->sse = true;
            f->body = raw;
            f->len = len;
            continue;
        }
        fx_http_decode(raw, len, ends_with(de->d_name, ".req.http"), f);
        free(raw);
    }
    closedir(d);
}

static int file_cmp(const void *a, const void *b)
{
    return strcmp(((const struct fx_file *)a)->name, ((const struct fx_file *)b)->name);
}

void fx_set_load(struct fx_set *set)
{
    set->n = 0;
    load_dir(set, "vllm");
    load_dir(set, "tgi");
    load_dir(set, "openai");
    load_dir(set, "llama.cpp");
    load_dir(set, "llama.cpp/apis");
    qsort(set->f, set->n, sizeof(set->f[0]), file_cmp);
}

void fx_set_release(struct fx_set *set)
{
    size_t i;

    for (i = 0; i < set->n; i++)
        free(set->f[i].body);
    set->n = 0;
}

const struct fx_file *fx_set_find(const struct fx_set *set, const char *name)
{
    size_t i;

    for (i = 0; i < set->n; i++) {
        if (strcmp(set->f[i].name, name) == 0)
            return &set->f[i];
    }
    fail_msg("fixture %s not found", name);
    return NULL;
}

/* ---- metrics text ------------------------------------------------------ */

char *fx_expose(struct met_registry *const *regs, size_t n)
{
    struct evbuffer *b = evbuffer_new();
    size_t len;
    char *s;

    assert_non_null(b);
    assert_int_equal(met_expose(regs, n, b), 0);
    len = evbuffer_get_length(b);
    s = malloc(len + 1);
    assert_non_null(s);
    assert_int_equal(evbuffer_remove(b, s, len), (int)len);
    s[len] = '\0';
    evbuffer_free(b);
    return s;
}

const char *fx_find_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *p = text;

    while ((p = strstr(p, line)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return p;
        p++;
    }
    return NULL;
}

int fx_count_prefix(const char *text, const char *prefix)
{
    const char *p = text;
    int n = 0;

    for (;;) {
        if (strncmp(p, prefix, strlen(prefix)) == 0)
            n++;
        p = strchr(p, '\n');
        if (p == NULL || *++p == '\0')
            return n;
    }
}

void fx_promtool_check(const char *text)
{
    static const char promtool[] = "/usr/bin/promtool";
    char path[] = "/tmp/pitot-metrics-XXXXXX", cmd[256], out[4096];
    size_t n, len = strlen(text);
    int fd, status;
    FILE *p;

    if (access(promtool, X_OK) != 0)
        fail_msg("%s is missing: run make deps (Debian package prometheus)", promtool);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    snprintf(cmd, sizeof(cmd), "%s check metrics < %s 2>&1", promtool, path);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    status = pclose(p);
    unlink(path);
    if (n != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("promtool check metrics (status %d):\n%s", status, out);
}
