/* Unit tests for access_log: exact lines, nulls, escaping, query stripping, cuts that
 * stay valid JSON, file and stdout output, reopen after rotation. */
#include "pitot/measure/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* 2026-11-24T14:40:57.123456Z */
#define WALL_US 1795531257123456ull

/* --- a strict validator for the JSON subset alog writes: one flat object of
 * strings, numbers, booleans and nulls, followed by "\n". --- */

static bool jv_utf8(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;
    unsigned c = p[0], need, i, lo = 0x80, hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf)
        need = 1;
    else if (c >= 0xe0 && c <= 0xef)
        need = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        need = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return false;
    for (i = 1; i <= need; i++) {
        if (p + i >= end || p[i] < lo || p[i] > hi)
            return false;
        lo = 0x80, hi = 0xbf;
    }
    *pp = p + need + 1;
    return true;
}

static bool jv_string(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;

    if (p >= end || *p++ != '"')
        return false;
    while (p < end && *p != '"') {
        if (*p < 0x20)
            return false;
        if (*p == '\\') {
            p++;
            if (p >= end)
                return false;
            if (*p == 'u') {
                int i;
                for (i = 1; i <= 4; i++)
                    if (p + i >= end || strchr("0123456789abcdefABCDEF", p[i]) == NULL || p[i] == 0)
                        return false;
                p += 5;
            } else if (strchr("\"\\/bfnrt", *p) != NULL && *p != 0) {
                p++;
            } else {
                return false;
            }
        } else if (*p >= 0x80) {
            if (!jv_utf8(&p, end))
                return false;
        } else {
            p++;
        }
    }
    if (p >= end)
        return false;
    *pp = p + 1;
    return true;
}

static bool jv_value(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;
    static const char *const words[] = { "true", "false", "null" };
    size_t i;

    if (p < end && *p == '"')
        return jv_string(pp, end);
    for (i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(end - p) >= n && memcmp(p, words[i], n) == 0) {
            *pp = p + n;
            return true;
        }
    }
    if (p < end && *p == '-')
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return false;
    if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9')
        return false;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    *pp = p;
    return true;
}

/* True when line[0..len) is exactly one JSON object and a newline; counts keys. */
static bool json_line_valid(const char *line, size_t len, int *nkeys)
{
    const unsigned char *p = (const unsigned char *)line, *end = p + len;

    *nkeys = 0;
    if (len < 3 || end[-1] != '\n' || *p++ != '{')
        return false;
    end--;
    for (;;) {
        if (!jv_string(&p, end) || p >= end || *p++ != ':' || !jv_value(&p, end))
            return false;
        (*nkeys)++;
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        return p + 1 == end && *p == '}';
    }
}

static struct alog_rec full_rec(void)
{
    struct alog_rec r;

    memset(&r, 0, sizeof(r));
    r.id = span_cstr("req-42");
    r.wall_us = WALL_US;
    r.method = span_cstr("POST");
    r.path = span_cstr("/v1/chat/completions");
    r.status = 200;
    r.backend = "gpu-a";
    r.model = "qwen2.5:7b";
    r.tier = "default";
    r.key = "ci-bot";
    r.api = "chat";
    r.stream = true;
    r.ttft_us = 12345;
    r.itl_p50_us = 21000;
    r.itl_max_us = 1500001;
    r.tpot_us = 999;
    r.e2e_us = 2000000;
    r.prompt_tokens = 17;
    r.completion_tokens = 128;
    r.cached_tokens = 0;
    r.tokens_estimated = false;
    r.finish_reason = "stop";
    r.refusal = false;
    r.truncated = false;
    r.stalls = 2;
    r.outcome = "ok";
    return r;
}

static void test_full_record(void **state)
{
    struct alog_rec r = full_rec();
    char buf[2048];
    const char *want =
        "{\"id\":\"req-42\",\"time\":\"2026-11-24T14:40:57.123Z\",\"method\":\"POST\","
        "\"path\":\"/v1/chat/completions\",\"status\":200,\"backend\":\"gpu-a\","
        "\"model\":\"qwen2.5:7b\",\"tier\":\"default\",\"key\":\"ci-bot\",\"api\":\"chat\","
        "\"stream\":true,"
        "\"ttft_ms\":12.345,"
        "\"itl_p50_ms\":21.000,\"itl_max_ms\":1500.001,\"tpot_ms\":0.999,\"e2e_ms\":2000.000,"
        "\"prompt_tokens\":17,\"completion_tokens\":128,\"cached_tokens\":0,"
        "\"tokens_estimated\":false,\"finish_reason\":\"stop\",\"refusal\":false,"
        "\"truncated\":false,\"stalls\":2,\"outcome\":\"ok\",\"error\":null}\n";
    int n = alog_format(&r, buf, sizeof(buf)), keys;

    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
    assert_true(json_line_valid(buf, (size_t)n, &keys));
    assert_int_equal(keys, 26);
    (void)state;
}

static void test_nulls_and_flags(void **state)
{
    struct alog_rec r;
    char buf[1024];
    const char *want =
        "{\"id\":null,\"time\":\"1970-01-01T00:00:00.000Z\",\"method\":null,\"path\":null,"
        "\"status\":0,\"backend\":null,\"model\":null,\"tier\":null,\"key\":null,\"api\":null,"
        "\"stream\":false,"
        "\"ttft_ms\":null,\"itl_p50_ms\":null,\"itl_max_ms\":null,\"tpot_ms\":null,"
        "\"e2e_ms\":null,\"prompt_tokens\":null,\"completion_tokens\":null,"
        "\"cached_tokens\":null,\"tokens_estimated\":true,\"finish_reason\":null,"
        "\"refusal\":true,\"truncated\":true,\"stalls\":0,\"outcome\":null,\"error\":null}\n";
    int n;

    memset(&r, 0, sizeof(r));
    r.ttft_us = r.itl_p50_us = r.itl_max_us = r.tpot_us = r.e2e_us = -1;
    r.prompt_tokens = r.completion_tokens = r.cached_tokens = -1;
    r.tokens_estimated = r.refusal = r.truncated = true;
    n = alog_format(&r, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);

    /* a too-small buffer is refused outright */
    assert_int_equal(alog_format(&r, buf, 1023), -1);
    (void)state;
}

static void test_escaping(void **state)
{
    static const char id[] = "a\"b\\c\x01\x1f\x7f";
    /* valid 2/3/4-byte UTF-8, then: lone continuation, truncated 3-byte seq,
     * overlong "/", surrogate, 0xff */
    static const char path[] = "/caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80/"
                               "\x80|\xe2\x82|\xc0\xaf|\xed\xa0\x80|\xff"
                               "?api_key=secret&q=\"x\"";
    struct alog_rec r = full_rec();
    char buf[1024];
    int n, keys;

    r.id = span_make(id, sizeof(id) - 1);
    r.path = span_make(path, sizeof(path) - 1);
    r.model = "m\nx";
    n = alog_format(&r, buf, sizeof(buf));
    assert_true(n > 0);
    assert_true(json_line_valid(buf, (size_t)n, &keys));
    assert_int_equal(keys, 26);
    assert_non_null(strstr(buf, "{\"id\":\"a\\\"b\\\\c\\u0001\\u001f\\u007f\","));
    /* maximal invalid subparts: "\xe2\x82" is one U+FFFD, "\xc0\xaf" two,
     * "\xed\xa0\x80" three (0xa0 cannot follow 0xed) */
    assert_non_null(strstr(buf, "\"path\":\"/caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80/"
                                "\\ufffd|\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\","));
    assert_non_null(strstr(buf, "\"model\":\"m\\u000ax\","));
    assert_null(strstr(buf, "secret"));
    assert_null(strstr(buf, "api_key"));
    (void)state;
}

static void test_query_stripped(void **state)
{
    struct alog_rec r = full_rec();
    char buf[1024];

    r.path = span_cstr("/v1/completions?x=1?y");
    assert_true(alog_format(&r, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "\"path\":\"/v1/completions\","));

    r.path = span_cstr("?only");
    assert_true(alog_format(&r, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "\"path\":\"\","));

    /* a span that is not NUL-terminated: the '?' search stays inside it */
    r.path = span_make("/abc?def", 3);
    assert_true(alog_format(&r, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "\"path\":\"/ab\","));
    (void)state;
}

static void test_cut_long_strings(void **state)
{
    static char path[6000], id[3000];
    static const char *const pieces[] = { "\xe2\x82\xac", "\"", "\x01",
                                          "\xff",         "a",  "\xf0\x9f\x98\x80" };
    struct alog_rec r = full_rec();
    size_t caps[] = { 1024, 1500, 4096 }, ci, i, off;
    char buf[4096];

    for (off = 0, i = 0; off + 4 < sizeof(path); i++) {
        const char *p = pieces[i % 6];
        memcpy(path + off, p, strlen(p));
        off += strlen(p);
    }
    r.path = span_make(path, off);
    memset(id, 'x', sizeof(id));
    r.id = span_make(id, sizeof(id));

    for (ci = 0; ci < sizeof(caps) / sizeof(caps[0]); ci++) {
        int n = alog_format(&r, buf, caps[ci]), keys;

        assert_true(n > 0);
        assert_true((size_t)n < caps[ci]);
        assert_true((size_t)n > caps[ci] - 16); /* the budget is used, not wasted */
        assert_true(json_line_valid(buf, (size_t)n, &keys));
        assert_int_equal(keys, 26);
        /* both long strings are cut and end in "..."; short ones stay whole */
        assert_non_null(strstr(buf, "xxx...\",\"time\":\"2026-11-24T14:40:57.123Z\""));
        assert_non_null(strstr(buf, "...\",\"status\":200,\"backend\":\"gpu-a\","));
        assert_non_null(strstr(buf, "\"model\":\"qwen2.5:7b\",\"tier\":\"default\""));
        assert_non_null(strstr(buf, "\"outcome\":\"ok\",\"error\":null}\n"));
    }
    (void)state;
}

static char tmpdir[64];

static int setup_dir(void **state)
{
    strcpy(tmpdir, "/tmp/pitot-alog-XXXXXX");
    (void)state;
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown_dir(void **state)
{
    char p[128];

    snprintf(p, sizeof(p), "%s/access.log", tmpdir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/access.log.1", tmpdir);
    unlink(p);
    rmdir(tmpdir);
    (void)state;
    return 0;
}

static size_t slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n;
}

static void test_file_write_and_reopen(void **state)
{
    char path[128], rotated[128], got[8192], want[2048];
    struct alog_rec r = full_rec();
    struct alog *l;
    struct stat st;
    mode_t mask = umask(0);
    size_t m;
    int n;

    umask(mask);

    snprintf(path, sizeof(path), "%s/access.log", tmpdir);
    snprintf(rotated, sizeof(rotated), "%s/access.log.1", tmpdir);
    n = alog_format(&r, want, sizeof(want));
    assert_true(n > 0);

    l = alog_open(path);
    assert_non_null(l);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644 & ~mask);
    assert_int_equal(alog_write(l, &r), 0);
    assert_int_equal(alog_write(l, &r), 0);
    assert_int_equal(slurp(path, got, sizeof(got)), 2 * (size_t)n);
    assert_memory_equal(got, want, (size_t)n);
    assert_memory_equal(got + n, want, (size_t)n);

    /* rotation: rename, reopen, the next line goes to a fresh file */
    assert_int_equal(rename(path, rotated), 0);
    assert_int_equal(alog_reopen(l), 0);
    r.status = 503;
    r.outcome = "no_backend";
    r.error = "no_backend";
    assert_int_equal(alog_write(l, &r), 0);
    alog_close(l);
    assert_int_equal(slurp(rotated, got, sizeof(got)), 2 * (size_t)n);
    m = slurp(path, got, sizeof(got));
    assert_non_null(strstr(got, "\"status\":503,"));
    assert_non_null(strstr(got, "\"outcome\":\"no_backend\",\"error\":\"no_backend\"}\n"));
    assert_int_equal(strchr(got, '\n') - got + 1, strlen(got)); /* one line */

    /* appends to an existing file rather than truncating it */
    l = alog_open(path);
    assert_non_null(l);
    assert_int_equal(alog_write(l, &r), 0);
    alog_close(l);
    assert_int_equal(slurp(path, got, sizeof(got)), 2 * m);

    /* failure: a directory that does not exist */
    errno = 0;
    assert_null(alog_open("/nonexistent-pitot-dir/x.log"));
    assert_int_equal(errno, ENOENT);
    (void)state;
}

/* A reload's access_log: the next line goes to the new path, the old file
 * keeps what it had; a path that cannot open changes nothing. */
static void test_move(void **state)
{
    char a[128], b[128], got[8192], want[2048];
    struct alog_rec r = full_rec();
    struct alog *l;
    int n;

    snprintf(a, sizeof(a), "%s/move-a.log", tmpdir);
    snprintf(b, sizeof(b), "%s/move-b.log", tmpdir);
    n = alog_format(&r, want, sizeof(want));
    assert_true(n > 0);
    l = alog_open(a);
    assert_non_null(l);
    assert_int_equal(alog_write(l, &r), 0);
    assert_int_equal(alog_move(l, b), 0);
    assert_int_equal(alog_write(l, &r), 0);
    assert_int_equal(alog_write(l, &r), 0);
    assert_int_equal(slurp(a, got, sizeof(got)), (size_t)n);
    assert_int_equal(slurp(b, got, sizeof(got)), 2 * (size_t)n);
    errno = 0;
    assert_int_equal(alog_move(l, "/nonexistent-pitot-dir/x.log"), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(alog_write(l, &r), 0);
    assert_int_equal(slurp(b, got, sizeof(got)), 3 * (size_t)n);
    assert_int_equal(alog_reopen(l), 0); /* still b's path */
    assert_int_equal(alog_write(l, &r), 0);
    assert_int_equal(slurp(b, got, sizeof(got)), 4 * (size_t)n);
    alog_close(l);
    /* from stdout to a file */
    l = alog_open("-");
    assert_non_null(l);
    assert_int_equal(alog_move(l, a), 0);
    assert_int_equal(alog_write(l, &r), 0);
    assert_int_equal(slurp(a, got, sizeof(got)), 2 * (size_t)n);
    alog_close(l);
    (void)state;
}

static void test_stdout(void **state)
{
    static const char *const names[] = { NULL, "", "-" };
    struct alog_rec r = full_rec();
    char want[2048], got[4096];
    int fds[2], saved, n, i;
    ssize_t k;

    n = alog_format(&r, want, sizeof(want));
    for (i = 0; i < 3; i++) {
        struct alog *l = alog_open(names[i]);

        assert_non_null(l);
        fflush(stdout);
        assert_int_equal(pipe(fds), 0);
        saved = dup(STDOUT_FILENO);
        assert_true(saved >= 0);
        assert_true(dup2(fds[1], STDOUT_FILENO) >= 0);
        assert_int_equal(alog_write(l, &r), 0);
        assert_int_equal(alog_reopen(l), 0); /* no-op for stdout */
        alog_close(l);                       /* must not close fd 1 */
        assert_true(fcntl(STDOUT_FILENO, F_GETFD) >= 0);
        assert_true(dup2(saved, STDOUT_FILENO) >= 0);
        close(saved);
        close(fds[1]);
        k = read(fds[0], got, sizeof(got));
        close(fds[0]);
        assert_int_equal(k, n);
        assert_memory_equal(got, want, (size_t)n);
    }
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_record),
        cmocka_unit_test(test_nulls_and_flags),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_query_stripped),
        cmocka_unit_test(test_cut_long_strings),
        cmocka_unit_test_setup_teardown(test_file_write_and_reopen, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_move, setup_dir, teardown_dir),
        cmocka_unit_test(test_stdout),
    };

    return cmocka_run_group_tests_name("alog", tests, NULL, NULL);
}
