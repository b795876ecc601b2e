/* Unit tests for err (the error-kind table and reason phrases) and span
 * (case-insensitive compare, strict decimal parsing). */
#include "pitot/util/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pitot/util/span.h"

/* ---- err ---------------------------------------------------------------- */

/* The names of the rows, straight from the X-macro, for messages. */
static const char *const row_name[] = {
#define ROW_NAME(name, status, label, outcome, msg) #name,
    PITOT_ERR_LIST(ROW_NAME)
#undef ROW_NAME
};

static bool snake_case(const char *s)
{
    size_t i;

    if (s == NULL || s[0] < 'a' || s[0] > 'z')
        return false;
    for (i = 0; s[i] != '\0'; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
            return false;
    }
    return s[i - 1] != '_';
}

static void test_err_table(void **state)
{
    int e, f;

    assert_int_equal(PITOT_EOK, 0); /* actions return 0 for success */
    assert_int_equal(sizeof(row_name) / sizeof(row_name[0]), PITOT_E__COUNT);
    for (e = 0; e < PITOT_E__COUNT; e++) {
        int st = err_status((enum pitot_err)e);
        const char *label = err_label((enum pitot_err)e);
        const char *outcome = err_outcome((enum pitot_err)e);
        const char *msg = err_message((enum pitot_err)e);

        if (e == PITOT_EOK ? st != 200 : st < 400 || st > 599)
            fail_msg("%s: status %d", row_name[e], st);
        /* Labels go into metrics and logs: snake_case, one per row. */
        if (!snake_case(label) || !snake_case(outcome))
            fail_msg("%s: label \"%s\" outcome \"%s\"", row_name[e], label, outcome);
        if (msg == NULL || msg[0] == '\0')
            fail_msg("%s: no message", row_name[e]);
        for (f = 0; f < e; f++) {
            if (strcmp(label, err_label((enum pitot_err)f)) == 0)
                fail_msg("%s and %s share the label %s", row_name[f], row_name[e], label);
        }
        /* The reply's status line needs a real reason phrase. */
        if (strcmp(err_reason_phrase(st), "Unknown") == 0)
            fail_msg("%s: status %d has no reason phrase", row_name[e], st);
        /* The client's timeouts and cancels are 4xx (a bad request may be
         * 505), the server side's failures 5xx. */
        if (strcmp(outcome, "client_timeout") == 0 || strcmp(outcome, "client_cancel") == 0)
            assert_in_range(st, 400, 499);
        if (strcmp(outcome, "upstream_error") == 0 || strcmp(outcome, "no_backend") == 0 ||
            strcmp(outcome, "internal_error") == 0 || strcmp(outcome, "stall_timeout") == 0)
            assert_in_range(st, 500, 599);
    }
    (void)state;
}

static void test_err_rows(void **state)
{
    /* A few rows spelled out: the three uses must see these exact values. */
    assert_int_equal(err_status(PITOT_EOK), 200);
    assert_string_equal(err_label(PITOT_EOK), "ok");
    assert_string_equal(err_outcome(PITOT_EOK), "ok");
    assert_int_equal(err_status(PITOT_ENO_BACKEND), 503);
    assert_string_equal(err_label(PITOT_ENO_BACKEND), "no_backend");
    assert_string_equal(err_message(PITOT_ENO_BACKEND), "no healthy backend");
    assert_int_equal(err_status(PITOT_EUPSTREAM_TIMEOUT), 504);
    assert_string_equal(err_outcome(PITOT_EUPSTREAM_TIMEOUT), "upstream_error");
    assert_int_equal(err_status(PITOT_EHEADER_TOO_LARGE), 431);
    assert_int_equal(err_status(PITOT_ECLIENT_CANCEL), 499);
    assert_string_equal(err_outcome(PITOT_ECLIENT_CANCEL), "client_cancel");
    assert_int_equal(err_status(PITOT_ESTALL_TIMEOUT), 504);
    assert_string_equal(err_label(PITOT_ESTALL_TIMEOUT), "stall_timeout");
    assert_int_equal(err_status(PITOT_ENOMEM), 500);
    assert_string_equal(err_outcome(PITOT_ENOMEM), "internal_error");

    /* Out of range (a negated code passed by mistake, or past the end). */
    assert_int_equal(err_status(PITOT_E__COUNT), 500);
    assert_int_equal(err_status((enum pitot_err) - PITOT_EBAD_REQUEST), 500);
    assert_string_equal(err_label(PITOT_E__COUNT), "unknown");
    assert_string_equal(err_outcome((enum pitot_err) - 1), "internal_error");
    assert_string_equal(err_message((enum pitot_err)1000), "unknown error");
    (void)state;
}

static void test_err_json(void **state)
{
    char buf[256];
    int n;

    /* pitot's own kinds: type is the label, code the status */
    n = err_json(PITOT_EOVERLOADED, buf, sizeof(buf));
    assert_string_equal(buf, "{\"error\":{\"message\":\"all backends are busy, retry later\","
                             "\"type\":\"overloaded\",\"code\":503}}");
    assert_int_equal(n, (int)strlen(buf));
    /* OpenAI's own type and code where clients classify by them */
    err_json(PITOT_EUNAUTHORIZED, buf, sizeof(buf));
    assert_string_equal(buf, "{\"error\":{\"message\":\"missing or invalid API key\","
                             "\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}");
    assert_int_equal(err_status(PITOT_EUNAUTHORIZED), 401);
    err_json(PITOT_EINVALID_JSON, buf, sizeof(buf));
    assert_string_equal(buf, "{\"error\":{\"message\":\"the request body is not valid JSON\","
                             "\"type\":\"invalid_request_error\",\"code\":null}}");
    /* a short buffer: truncated, terminated, the written length returned */
    n = err_json(PITOT_EOVERLOADED, buf, 10);
    assert_int_equal(n, 9);
    assert_string_equal(buf, "{\"error\":");
    assert_int_equal(err_json(PITOT_EOVERLOADED, buf, 0), 0);
    (void)state;
}

static void test_reason_phrase(void **state)
{
    assert_string_equal(err_reason_phrase(200), "OK");
    assert_string_equal(err_reason_phrase(204), "No Content");
    assert_string_equal(err_reason_phrase(400), "Bad Request");
    assert_string_equal(err_reason_phrase(401), "Unauthorized");
    assert_string_equal(err_reason_phrase(404), "Not Found");
    assert_string_equal(err_reason_phrase(408), "Request Timeout");
    assert_string_equal(err_reason_phrase(413), "Content Too Large");
    assert_string_equal(err_reason_phrase(429), "Too Many Requests");
    assert_string_equal(err_reason_phrase(431), "Request Header Fields Too Large");
    assert_string_equal(err_reason_phrase(499), "Client Closed Request");
    assert_string_equal(err_reason_phrase(500), "Internal Server Error");
    assert_string_equal(err_reason_phrase(502), "Bad Gateway");
    assert_string_equal(err_reason_phrase(503), "Service Unavailable");
    assert_string_equal(err_reason_phrase(504), "Gateway Timeout");
    assert_string_equal(err_reason_phrase(505), "HTTP Version Not Supported");
    assert_string_equal(err_reason_phrase(0), "Unknown");
    assert_string_equal(err_reason_phrase(299), "Unknown");
    assert_string_equal(err_reason_phrase(-404), "Unknown");
    assert_string_equal(err_reason_phrase(1404), "Unknown");
    (void)state;
}

/* ---- span --------------------------------------------------------------- */

static void test_span_ieq(void **state)
{
    assert_true(span_ieq(span_cstr("Content-Length"), "content-length"));
    assert_true(span_ieq(span_cstr("TRANSFER-ENCODING"), "Transfer-Encoding"));
    assert_true(span_ieq(span_cstr("chunked"), "chunked"));
    assert_true(span_ieq(span_make(NULL, 0), ""));
    assert_false(span_ieq(span_cstr("chunked"), "chunke"));
    assert_false(span_ieq(span_cstr("chunke"), "chunked"));
    assert_false(span_ieq(span_cstr("chunked"), ""));
    assert_false(span_ieq(span_cstr("Host"), "Hosu"));
    /* Only ASCII letters fold: characters 0x20 apart that are not letters. */
    assert_false(span_ieq(span_cstr("@"), "`"));
    assert_false(span_ieq(span_cstr("["), "{"));
    assert_false(span_ieq(span_cstr("^"), "~"));
    assert_false(span_ieq(span_cstr("`"), "@"));
    assert_false(span_ieq(span_cstr("{"), "["));
    assert_false(span_ieq(span_cstr("~"), "^"));
    assert_false(span_ieq(span_cstr("\xc9"), "\xe9")); /* Latin-1 É/é stay distinct */
    assert_true(span_ieq(span_cstr("\xc3\xa9"), "\xc3\xa9"));
    /* The span's bytes only: what follows them does not count. */
    assert_true(span_ieq(span_make("KEEP-alive, close", 10), "keep-ALIVE"));
    (void)state;
}

static void check_i64(const char *text, size_t len, int want_rc, long long want)
{
    long long v = -777;
    int rc = span_to_i64(span_make(text, len), &v);

    if (rc != want_rc)
        fail_msg("span_to_i64(\"%.*s\") returned %d", (int)len, text, rc);
    /* On failure the output is left alone. */
    if (v != (want_rc == 0 ? want : -777))
        fail_msg("span_to_i64(\"%.*s\") gave %lld", (int)len, text, v);
}

#define OK_I64(lit, want) check_i64(lit, sizeof(lit) - 1, 0, want)
#define BAD_I64(lit) check_i64(lit, sizeof(lit) - 1, -1, 0)

static void test_span_to_i64(void **state)
{
    OK_I64("0", 0);
    OK_I64("7", 7);
    OK_I64("1234567890", 1234567890LL);
    OK_I64("000123", 123);
    OK_I64("9223372036854775806", INT64_MAX - 1);
    OK_I64("9223372036854775807", INT64_MAX);
    OK_I64("09223372036854775807", INT64_MAX);
    /* Overflow, by one and by a lot. */
    BAD_I64("9223372036854775808");
    BAD_I64("9223372036854775810");
    BAD_I64("18446744073709551616");
    BAD_I64("99999999999999999999999999");
    /* Signs, blanks, empty, other characters. */
    BAD_I64("-1");
    BAD_I64("-0");
    BAD_I64("+1");
    BAD_I64("");
    BAD_I64(" 1");
    BAD_I64("1 ");
    BAD_I64("1\t");
    BAD_I64("1.0");
    BAD_I64("1e3");
    BAD_I64("0x10");
    BAD_I64("12a");
    check_i64("1\0", 2, -1, 0);
    check_i64(NULL, 0, -1, 0);
    /* Only the span's bytes: a prefix of a longer number. */
    check_i64("123456", 3, 0, 123);
    check_i64("42abc", 2, 0, 42);
    (void)state;
}

static void test_span_eq(void **state)
{
    assert_true(span_eq(span_cstr("abc"), "abc"));
    assert_false(span_eq(span_cstr("abc"), "ABC"));
    assert_false(span_eq(span_cstr("abc"), "ab"));
    assert_true(span_eq(span_make("abcdef", 2), "ab"));
    assert_int_equal(span_cstr("").len, 0);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_table),     cmocka_unit_test(test_err_rows),
        cmocka_unit_test(test_reason_phrase), cmocka_unit_test(test_span_ieq),
        cmocka_unit_test(test_span_to_i64),   cmocka_unit_test(test_span_eq),
        cmocka_unit_test(test_err_json),
    };

    return cmocka_run_group_tests_name("err", tests, NULL, NULL);
}
