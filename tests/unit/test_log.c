/* Unit tests for log: the text and JSON line shapes, level filtering, escaping,
 * the repeat limit (on a fake clock), long lines, whole lines from several
 * threads. Lines go to a temporary file through log_hooks_set. */
#include "pitot/util/log.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* 2026-12-05T19:30:00.123Z */
#define WALL_US (1796499000ull * 1000000u + 123456u)
#define TS "2026-12-05T19:30:00.123Z"

static uint64_t fake_now_us;

static uint64_t fake_mono(void)
{
    return fake_now_us;
}

static uint64_t fake_wall(void)
{
    return WALL_US;
}

static FILE *out_f;
static off_t out_off;
static char out_buf[1 << 20];

/* What was written since the last call, NUL-terminated. */
static const char *out(void)
{
    ssize_t n = pread(fileno(out_f), out_buf, sizeof(out_buf) - 1, out_off);

    assert_true(n >= 0);
    out_buf[n] = '\0';
    out_off += n;
    return out_buf;
}

static int setup(void **state)
{
    out_f = tmpfile();
    assert_non_null(out_f);
    out_off = 0;
    fake_now_us = 1000000;
    log_hooks_set(fileno(out_f), fake_mono, fake_wall);
    log_setup(LOG_LVL_INFO, LOG_FMT_TEXT);
    (void)state;
    return 0;
}

static int teardown(void **state)
{
    log_hooks_set(-1, NULL, NULL);
    log_setup(LOG_LVL_INFO, LOG_FMT_TEXT);
    fclose(out_f);
    (void)state;
    return 0;
}

static void test_text_shape(void **state)
{
    log_warn("backend %s: down: %s", "b1", "GET /health: Connection refused");
    assert_string_equal(out(),
                        TS " pitot: warn: backend b1: down: GET /health: Connection refused\n");
    /* every level says its name but notice, the start and stop lines */
    log_info("backend %s: up", "b1");
    assert_string_equal(out(), TS " pitot: info: backend b1: up\n");
    log_notice("drained, exiting");
    assert_string_equal(out(), TS " pitot: drained, exiting\n");
    log_error("reloading: %d", 3);
    assert_string_equal(out(), TS " pitot: error: reloading: 3\n");
    plog(LOG_LVL_WARN, "x%s", "y");
    assert_string_equal(out(), TS " pitot: warn: xy\n");
    (void)state;
}

static void test_levels(void **state)
{
    log_setup(LOG_LVL_ERROR, LOG_FMT_TEXT);
    assert_false(log_on(LOG_LVL_WARN));
    assert_true(log_on(LOG_LVL_ERROR));
    assert_true(log_on(LOG_LVL_NOTICE));
    log_info("i");
    log_warn("w");
    log_debug("d");
    assert_string_equal(out(), "");
    log_error("e");
    log_notice("n"); /* start and stop lines: whatever the level */
    assert_string_equal(out(), TS " pitot: error: e\n" TS " pitot: n\n");

    log_setup(LOG_LVL_WARN, LOG_FMT_TEXT);
    log_info("i");
    log_warn("w");
    assert_string_equal(out(), TS " pitot: warn: w\n");

    log_setup(LOG_LVL_INFO, LOG_FMT_TEXT);
    log_debug("d");
    log_info("i");
    assert_string_equal(out(), TS " pitot: info: i\n");

    log_setup(LOG_LVL_DEBUG, LOG_FMT_TEXT);
    log_debug("d");
    assert_string_equal(out(), TS " pitot: debug: d\n");

    /* out of range: clamped */
    log_setup(99, LOG_FMT_TEXT);
    assert_true(log_on(LOG_LVL_DEBUG));
    log_setup(-5, LOG_FMT_TEXT);
    assert_false(log_on(LOG_LVL_WARN));
    assert_true(log_on(LOG_LVL_ERROR));
    /* plog with a level that is none */
    log_setup(LOG_LVL_DEBUG, LOG_FMT_TEXT);
    plog((enum log_level)7, "never");
    assert_string_equal(out(), "");
    (void)state;
}

static void test_json(void **state)
{
    log_setup(LOG_LVL_INFO, LOG_FMT_JSON);
    log_warn("backend %s: down", "b1");
    assert_string_equal(out(),
                        "{\"ts\":\"" TS "\",\"level\":\"warn\",\"msg\":\"backend b1: down\"}\n");
    log_info("i");
    assert_string_equal(out(), "{\"ts\":\"" TS "\",\"level\":\"info\",\"msg\":\"i\"}\n");
    log_notice("n");
    assert_string_equal(out(), "{\"ts\":\"" TS "\",\"level\":\"notice\",\"msg\":\"n\"}\n");
    /* quotes, backslash, newline, CR, tab, control bytes, DEL, UTF-8 kept,
     * bytes that are not UTF-8 replaced */
    log_error("a \"q\" \\ b\nc\rd\te\x01\x1f\x7f \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xff \xc3 "
              "\xc0\xaf \xed\xa0\x80 z");
    assert_string_equal(out(), "{\"ts\":\"" TS "\",\"level\":\"error\",\"msg\":\"a \\\"q\\\" \\\\ "
                               "b\\nc\\rd\\te\\u0001\\u001f\\u007f \xc3\xa9 \xe2\x82\xac "
                               "\xf0\x9f\x98\x80 \\ufffd \\ufffd \\ufffd\\ufffd "
                               "\\ufffd\\ufffd\\ufffd z\"}\n");
    (void)state;
}

static void test_text_escapes(void **state)
{
    /* a message cannot make a line of its own */
    log_warn("a\nb\r\x01\x7f \xc3\xa9 \"q\" \\");
    assert_string_equal(out(), TS " pitot: warn: a\\x0ab\\x0d\\x01\\x7f \xc3\xa9 \"q\" \\\n");
    (void)state;
}

static void test_repeats(void **state)
{
    log_warn("backend b1: down");
    assert_string_equal(out(), TS " pitot: warn: backend b1: down\n");
    fake_now_us += 100000;
    log_warn("backend b1: down");
    fake_now_us += 400000;
    log_warn("backend b1: down");
    assert_string_equal(out(), "");
    /* other messages are not held back by it */
    log_warn("backend b2: down");
    log_info("backend b1: down"); /* another level: another message */
    assert_string_equal(out(), TS " pitot: warn: backend b2: down\n" TS
                                  " pitot: info: backend b1: down\n");
    /* a second after it was written, it is again, with the count */
    fake_now_us += 499999;
    log_warn("backend b1: down");
    assert_string_equal(out(), "");
    fake_now_us += 1;
    log_warn("backend b1: down");
    assert_string_equal(out(), TS " pitot: warn: backend b1: down (3 more suppressed)\n");
    /* the count starts over */
    fake_now_us += 5000000;
    log_warn("backend b1: down");
    assert_string_equal(out(), TS " pitot: warn: backend b1: down\n");
    /* notice lines are never held back */
    log_notice("signal 15, stopping at once");
    log_notice("signal 15, stopping at once");
    assert_string_equal(out(), TS " pitot: signal 15, stopping at once\n" TS
                                  " pitot: signal 15, stopping at once\n");
    /* JSON: the count is in the message */
    log_setup(LOG_LVL_INFO, LOG_FMT_JSON);
    log_warn("j");
    log_warn("j");
    fake_now_us += LOG_REPEAT_US;
    log_warn("j");
    out();
    log_warn("j");
    fake_now_us += LOG_REPEAT_US;
    log_warn("j");
    assert_string_equal(out(), "{\"ts\":\"" TS
                               "\",\"level\":\"warn\",\"msg\":\"j (1 more suppressed)\"}\n");
    (void)state;
}

static void test_long_lines(void **state)
{
    static char big[3 * LOG_LINE_MAX];
    const char *o;
    size_t n;

    memset(big, 'x', sizeof(big) - 1);
    log_warn("%s", big);
    o = out();
    n = strlen(o);
    assert_true(n <= LOG_LINE_MAX - 1);
    assert_true(n > LOG_LINE_MAX - 64);
    assert_memory_equal(o + n - 4, "...\n", 4);

    /* JSON: cut at a whole escape, the object still ends */
    log_setup(LOG_LVL_INFO, LOG_FMT_JSON);
    memset(big, '"', sizeof(big) - 1);
    log_warn("%s", big);
    o = out();
    n = strlen(o);
    assert_true(n <= LOG_LINE_MAX - 1);
    assert_memory_equal(o + n - 6, "...\"}\n", 6);
    assert_memory_equal(o + n - 8, "\\\"", 2); /* the last escape is whole */
    (void)state;
}

#define THREADS 4
#define THREAD_LINES 500

static void *writer(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg, i;

    for (i = 0; i < THREAD_LINES; i++)
        log_warn("thread %u line %u %s", t, i, "padding-padding-padding-padding-padding");
    return NULL;
}

/* Lines from several threads at once come out whole, none lost. */
static void test_threads(void **state)
{
    pthread_t th[THREADS];
    unsigned seen[THREADS] = { 0 }, lines = 0, t, i;
    char *s, *save = NULL;

    for (t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, writer, (void *)(uintptr_t)t), 0);
    for (t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (s = strtok_r((char *)out(), "\n", &save); s; s = strtok_r(NULL, "\n", &save)) {
        char pad[64];
        assert_int_equal(sscanf(s, TS " pitot: warn: thread %u line %u %63s", &t, &i, pad), 3);
        assert_string_equal(pad, "padding-padding-padding-padding-padding");
        assert_true(t < THREADS && i == seen[t]);
        seen[t]++;
        lines++;
    }
    assert_int_equal(lines, THREADS * THREAD_LINES);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_text_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };

    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
