/* Unit tests for api: the API of a path, and each API's error body, status
 * and stream-ending event. */
#include "pitot/format/api.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void test_of_path(void **state)
{
    assert_int_equal(api_of_path("/v1/chat/completions"), API_CHAT);
    assert_int_equal(api_of_path("/v1/chat/completions?x=1"), API_CHAT);
    assert_int_equal(api_of_path("/chat/completions"), API_CHAT);
    assert_int_equal(api_of_path("/v1/completions"), API_COMPLETIONS);
    assert_int_equal(api_of_path("/completion"), API_COMPLETIONS);
    assert_int_equal(api_of_path("/generate_stream"), API_COMPLETIONS);
    assert_int_equal(api_of_path("/v1/responses"), API_RESPONSES);
    assert_int_equal(api_of_path("/v1/messages"), API_MESSAGES);
    assert_int_equal(api_of_path("/v1/messages/count_tokens"), API_MESSAGES);
    assert_int_equal(api_of_path("/v1/embeddings"), API_EMBEDDINGS);
    assert_int_equal(api_of_path("/embedding"), API_EMBEDDINGS);
    /* whole path segments only */
    assert_int_equal(api_of_path("/v1/chat/completionsX"), API_OTHER);
    assert_int_equal(api_of_path("/v1/messages/x"), API_OTHER);
    assert_int_equal(api_of_path("/v1/models"), API_OTHER);
    assert_int_equal(api_of_path(""), API_OTHER);
    assert_int_equal(api_of_path(NULL), API_OTHER);
    assert_string_equal(api_label(API_CHAT), "chat");
    assert_string_equal(api_label(API_COMPLETIONS), "completions");
    assert_string_equal(api_label(API_RESPONSES), "responses");
    assert_string_equal(api_label(API_MESSAGES), "messages");
    assert_string_equal(api_label(API_EMBEDDINGS), "embeddings");
    assert_string_equal(api_label(API_OTHER), "other");
    assert_string_equal(api_label(API__COUNT), "other");
    (void)state;
}

static void test_error_shapes(void **state)
{
    char buf[512];
    int n;

    /* OpenAI's shape everywhere but Messages */
    n = api_err_json(API_RESPONSES, PITOT_EOVERLOADED, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(buf));
    assert_string_equal(buf, "{\"error\":{\"message\":\"all backends are busy, retry later\","
                             "\"type\":\"overloaded\",\"code\":503}}");
    assert_int_equal(api_err_status(API_RESPONSES, PITOT_EOVERLOADED), 503);
    assert_int_equal(api_err_status(API_CHAT, PITOT_EOVERLOADED), 503);
    /* Anthropic's: 529 overloaded_error for overload, the type by status */
    assert_int_equal(api_err_status(API_MESSAGES, PITOT_EOVERLOADED), 529);
    api_err_json(API_MESSAGES, PITOT_EOVERLOADED, buf, sizeof(buf));
    assert_string_equal(buf, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                             "\"message\":\"all backends are busy, retry later\"}}");
    api_err_json(API_MESSAGES, PITOT_EUNAUTHORIZED, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"type\":\"authentication_error\""));
    api_err_json(API_MESSAGES, PITOT_ENO_MODEL, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"type\":\"not_found_error\""));
    api_err_json(API_MESSAGES, PITOT_EINVALID_JSON, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"type\":\"invalid_request_error\""));
    api_err_json(API_MESSAGES, PITOT_EBODY_TOO_LARGE, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"type\":\"request_too_large\""));
    api_err_json(API_MESSAGES, PITOT_EUPSTREAM_TIMEOUT, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"type\":\"timeout_error\""));
    api_err_json(API_MESSAGES, PITOT_ENO_BACKEND, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"type\":\"api_error\""));
    assert_int_equal(api_err_status(API_MESSAGES, PITOT_ENO_BACKEND), 503);
    /* truncation keeps the NUL */
    n = api_err_json(API_MESSAGES, PITOT_EOVERLOADED, buf, 10);
    assert_int_equal(n, 9);
    assert_int_equal(strlen(buf), 9);
    (void)state;
}

static void test_error_events(void **state)
{
    char buf[512];
    int n;

    n = api_err_event(API_CHAT, PITOT_EUPSTREAM_RESET, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(buf));
    assert_string_equal(buf, "data: {\"error\":{\"message\":\"backend closed the connection\","
                             "\"type\":\"upstream_reset\",\"code\":502}}\n\n");
    api_err_event(API_MESSAGES, PITOT_EUPSTREAM_RESET, buf, sizeof(buf));
    assert_string_equal(buf, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                             "\"api_error\",\"message\":\"backend closed the connection\"}}\n\n");
    api_err_event(API_RESPONSES, PITOT_ESTALL_TIMEOUT, buf, sizeof(buf));
    assert_string_equal(buf, "event: error\ndata: {\"type\":\"error\",\"code\":\"stall_timeout\","
                             "\"message\":\"backend stream stalled\",\"param\":null}\n\n");
    n = api_err_event(API_MESSAGES, PITOT_EUPSTREAM_RESET, buf, 20);
    assert_int_equal(n, 19);
    assert_int_equal(strlen(buf), 19);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_of_path),
        cmocka_unit_test(test_error_shapes),
        cmocka_unit_test(test_error_events),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
