/* api: the request's API by path, and each API's error shapes. */
#include "pitot/format/api.h"

#include <stdio.h>
#include <string.h>

static const char *const api_labels[API__COUNT] = {
#define PITOT_API_LABEL(name, label) label,
    PITOT_API_LIST(PITOT_API_LABEL)
#undef PITOT_API_LABEL
};

static const struct {
    const char *path;
    enum api_kind api;
} api_paths[] = {
    { "/v1/chat/completions", API_CHAT },
    { "/chat/completions", API_CHAT },
    { "/api/chat", API_CHAT },
    { "/v1/completions", API_COMPLETIONS },
    { "/completions", API_COMPLETIONS },
    { "/completion", API_COMPLETIONS },
    { "/infill", API_COMPLETIONS },
    { "/generate", API_COMPLETIONS },
    { "/generate_stream", API_COMPLETIONS },
    { "/v1/responses", API_RESPONSES },
    { "/v1/messages", API_MESSAGES },
    { "/v1/messages/count_tokens", API_MESSAGES },
    { "/v1/embeddings", API_EMBEDDINGS },
    { "/embeddings", API_EMBEDDINGS },
    { "/embedding", API_EMBEDDINGS },
};

enum api_kind api_of_path(const char *target)
{
    size_t i;

    if (target == NULL)
        return API_OTHER;
    for (i = 0; i < sizeof(api_paths) / sizeof(api_paths[0]); i++) {
        size_t n = strlen(api_paths[i].path);

        if (strncmp(target, api_paths[i].path, n) == 0 && (target[n] == '\0' || target[n] == '?'))
            return api_paths[i].api;
    }
    return API_OTHER;
}

const char *api_label(enum api_kind a)
{
    return (unsigned)a < API__COUNT ? api_labels[a] : "other";
}

int api_err_status(enum api_kind a, enum pitot_err e)
{
    if (a == API_MESSAGES && e == PITOT_EOVERLOADED)
        return 529;
    return err_status(e);
}

/* Anthropic's error type for a status (its API reference, "Errors"). */
static const char *api_anthropic_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 504: return "timeout_error";
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static int api_fit(int n, size_t cap)
{
    if (n < 0 || cap == 0)
        return 0;
    return (size_t)n < cap ? n : (int)cap - 1;
}

int api_err_json(enum api_kind a, enum pitot_err e, char *buf, size_t cap)
{
    if (a != API_MESSAGES)
        return err_json(e, buf, cap);
    return api_fit(snprintf(buf, cap,
                            "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s\"}}",
                            api_anthropic_type(api_err_status(a, e)), err_message(e)),
                   cap);
}

int api_err_event(enum api_kind a, enum pitot_err e, char *buf, size_t cap)
{
    int n;

    switch (a) {
    case API_MESSAGES: n = snprintf(buf, cap, "event: error\ndata: "); break;
    case API_RESPONSES:
        return api_fit(snprintf(buf, cap,
                                "event: error\ndata: {\"type\":\"error\",\"code\":\"%s\","
                                "\"message\":\"%s\",\"param\":null}\n\n",
                                err_label(e), err_message(e)),
                       cap);
    default: n = snprintf(buf, cap, "data: "); break;
    }
    n = api_fit(n, cap);
    n += api_err_json(a, e, buf + n, cap - (size_t)n);
    return api_fit(n + snprintf(buf + n, cap - (size_t)n, "\n\n"), cap);
}
