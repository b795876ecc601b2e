/* reply: pitot's own responses, written whole into an output buffer. */
#include "pitot/serve/reply.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

void reply_head(struct evbuffer *out, int status, const char *content_type, size_t len, bool close,
                const char *extra)
{
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nServer: pitot\r\n", status,
                        err_reason_phrase(status));
    if (content_type)
        evbuffer_add_printf(out, "Content-Type: %s\r\n", content_type);
    if (extra)
        evbuffer_add(out, extra, strlen(extra));
    evbuffer_add_printf(out, "Content-Length: %zu\r\n%s\r\n", len,
                        close ? "Connection: close\r\n" : "");
}

void reply_error(struct evbuffer *out, enum pitot_err e, bool head_only, bool close,
                 const char *extra)
{
    reply_error_api(out, API_OTHER, e, head_only, close, extra);
}

void reply_error_api(struct evbuffer *out, enum api_kind api, enum pitot_err e, bool head_only,
                     bool close, const char *extra)
{
    static const char allow[] = "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n";
    char body[256], hdr[512];
    int n = api_err_json(api, e, body, sizeof(body));

    if (e == PITOT_EMETHOD_NOT_ALLOWED && (extra == NULL || strncmp(extra, "Allow:", 6) != 0)) {
        snprintf(hdr, sizeof(hdr), "%s%s", allow, extra ? extra : "");
        extra = hdr;
    }
    reply_head(out, api_err_status(api, e), "application/json", (size_t)n, close, extra);
    if (!head_only)
        evbuffer_add(out, body, (size_t)n);
}
