/* err: lookups into the error-kind table. */
#include "pitot/util/err.h"

#include <stdio.h>

static const struct {
    int status;
    const char *label;
    const char *outcome;
    const char *msg;
} err_table[PITOT_E__COUNT] = {
#define PITOT_ERR_ROW(name, status, label, outcome, msg) { status, label, outcome, msg },
    PITOT_ERR_LIST(PITOT_ERR_ROW)
#undef PITOT_ERR_ROW
};

int err_status(enum pitot_err e)
{
    return (unsigned)e < PITOT_E__COUNT ? err_table[e].status : 500;
}

const char *err_label(enum pitot_err e)
{
    return (unsigned)e < PITOT_E__COUNT ? err_table[e].label : "unknown";
}

const char *err_outcome(enum pitot_err e)
{
    return (unsigned)e < PITOT_E__COUNT ? err_table[e].outcome : "internal_error";
}

const char *err_message(enum pitot_err e)
{
    return (unsigned)e < PITOT_E__COUNT ? err_table[e].msg : "unknown error";
}

int err_json(enum pitot_err e, char *buf, size_t cap)
{
    const char *type = err_label(e), *code = NULL;
    int n;

    switch (e) {
#define PITOT_ERR_OPENAI_CASE(name, t, c)                                                          \
    case PITOT_E##name:                                                                            \
        type = t;                                                                                  \
        code = c;                                                                                  \
        break;
        PITOT_ERR_OPENAI(PITOT_ERR_OPENAI_CASE)
#undef PITOT_ERR_OPENAI_CASE
    default: break;
    }
    if (code)
        n = snprintf(buf, cap, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"code\":%s}}",
                     err_message(e), type, code);
    else
        n = snprintf(buf, cap, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"code\":%d}}",
                     err_message(e), type, err_status(e));
    if (n < 0 || cap == 0)
        return 0;
    return (size_t)n < cap ? n : (int)cap - 1;
}

const char *err_reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 529: return "Overloaded"; /* Anthropic's API */
    default: return "Unknown";
    }
}
