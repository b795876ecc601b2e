/* admin: /metrics, /healthz and /readyz, answered without a backend, on the
 * client listener or on the admin listener (admin_listen). */
#include "pitot/serve/admin.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "pitot/route/balancer.h"
#include "pitot/util/clock.h"
#include "pitot/format/http1.h"
#include "pitot/measure/metrics.h"
#include "pitot/serve/loop.h"
#include "pitot/serve/relay.h"
#include "pitot/serve/reply.h"

static struct span admin_path(const struct h1_msg *m)
{
    const char *q = memchr(m->url.p, '?', m->url.len);

    return span_make(m->url.p, q ? (size_t)(q - m->url.p) : m->url.len);
}

bool admin_own_path(const struct h1_msg *m)
{
    struct span path = admin_path(m);

    return span_eq(path, "/metrics") || span_eq(path, "/healthz") || span_eq(path, "/readyz");
}

bool admin_handles(const struct h1_msg *m)
{
    return (span_eq(m->method, "GET") || span_eq(m->method, "HEAD")) && admin_own_path(m);
}

static void admin_send(struct evbuffer *out, int status, const char *ctype, struct span body,
                       bool head, bool close)
{
    reply_head(out, status, ctype, body.len, close, NULL);
    if (!head && body.len)
        evbuffer_add(out, body.p, body.len);
}

/* pitot's own error, with the request's X-Request-Id like every other */
static void admin_error(struct loop *lp, struct evbuffer *out, const struct h1_msg *m,
                        enum pitot_err e, bool head, bool close, const char *extra)
{
    char id[RELAY_ID_MAX + 1], hdr[RELAY_ID_MAX + 64];

    relay_request_id(lp, m, id);
    snprintf(hdr, sizeof(hdr), "%sX-Request-Id: %s\r\n", extra ? extra : "", id);
    reply_error(out, e, head, close, hdr);
}

void admin_serve(struct loop *lp, struct evbuffer *out, const struct h1_msg *m, bool close)
{
    struct span path = admin_path(m);
    bool head = span_eq(m->method, "HEAD");

    if (span_eq(path, "/metrics")) {
        struct evbuffer *body = evbuffer_new();
        uint64_t now = clk_now_us();
        size_t n, i, k;

        /* An ejection ends by time alone, with no event to clear the gauge:
         * read it from the balancer as of now, into every loop's registry
         * (the exposition takes the maximum). */
        for (i = 0; i < lp->rt->bal.n; i++) {
            int64_t ej = router_ejected(lp->rt, (unsigned)i, now) ? 1 : 0;
            for (k = 0; k < lp->nregs; k++)
                met_gauge_set(lp->regs[k], MET_BACKEND_EJECTED, (unsigned)i, ej);
        }
        if (body == NULL || met_expose(lp->regs, lp->nregs, body) != 0 ||
            met_expose_process(body) != 0) {
            if (body)
                evbuffer_free(body);
            admin_error(lp, out, m, PITOT_ENOMEM, head, close, NULL);
            return;
        }
        n = evbuffer_get_length(body);
        admin_send(out, 200, "text/plain; version=0.0.4; charset=utf-8",
                   span_make((const char *)evbuffer_pullup(body, -1), n), head, close);
        evbuffer_free(body);
        return;
    }
    if (span_eq(path, "/healthz")) {
        admin_send(out, 200, "application/json", span_cstr("{\"status\":\"ok\"}"), head, close);
        return;
    }
    if (lp->draining) /* out of the load balancer's pool while requests finish */
        admin_send(out, 503, "application/json", span_cstr("{\"status\":\"draining\"}"), head,
                   close);
    else if (router_up_count(lp->rt) > 0)
        admin_send(out, 200, "application/json", span_cstr("{\"status\":\"ready\"}"), head, close);
    else
        admin_send(out, 503, "application/json", span_cstr("{\"status\":\"no healthy backend\"}"),
                   head, close);
}

void admin_serve_admin(struct loop *lp, struct evbuffer *out, const struct h1_msg *m, bool close)
{
    bool head = span_eq(m->method, "HEAD");

    if (admin_handles(m))
        admin_serve(lp, out, m, close);
    else if (admin_own_path(m))
        admin_error(lp, out, m, PITOT_EMETHOD_NOT_ALLOWED, head, close, "Allow: GET, HEAD\r\n");
    else
        admin_error(lp, out, m, PITOT_ENOT_FOUND, head, close, NULL);
}
