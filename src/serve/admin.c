/* admin: /metrics, /healthz and /readyz, answered without a backend, on the
 * client listener or on the admin listener (admin_listen); and on the admin
 * listener only, the status page and runtime control (/status, /admin/...). */
#include "pitot/serve/admin.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "pitot/route/balancer.h"
#include "pitot/route/queue.h"
#include "pitot/route/ratelimit.h"
#include "pitot/util/clock.h"
#include "pitot/format/http1.h"
#include "pitot/measure/metrics.h"
#include "pitot/serve/loop.h"
#include "pitot/serve/relay.h"
#include "pitot/serve/reply.h"
#include "pitot/serve/status.h"

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

bool admin_listener_path(const struct h1_msg *m)
{
    struct span path = admin_path(m);

    return span_eq(path, "/status") || span_eq(path, "/status.json") ||
           (path.len >= 7 && memcmp(path.p, "/admin/", 7) == 0) || span_eq(path, "/admin");
}

bool admin_handles(const struct h1_msg *m)
{
    return (span_eq(m->method, "GET") || span_eq(m->method, "HEAD")) && admin_own_path(m);
}

/* extra: NULL or more header lines, each ending in CRLF */
static void admin_send(struct evbuffer *out, int status, const char *ctype, struct span body,
                       bool head, bool close, const char *extra)
{
    reply_head(out, status, ctype, body.len, close, extra);
    if (!head && body.len)
        evbuffer_add(out, body.p, body.len);
}

/* The rate limits' families (ratelimit.h), after the others. */
struct admin_limits {
    struct evbuffer *out;
    const struct cfg *cfg;
    int pass; /* 0: refusals, 1: tokens left */
    int err;
};

static void admin_limit_row(void *ud, unsigned tier, int key, const uint64_t *refused,
                            long long tokens_left)
{
    struct admin_limits *a = ud;
    const char *tname = a->cfg->tiers[tier].name;
    const char *kname = key >= 0 ? a->cfg->keys[key].name : "";
    const struct cfg_limits *l = key >= 0 ? &a->cfg->keys[key].limits : &a->cfg->tiers[tier].limits;
    const bool set[RL__COUNT] = {
        [RL_REQUESTS] = l->requests_per_minute > 0,
        [RL_TOKENS] = l->tokens_per_minute > 0,
        [RL_TOKENS_DAY] = l->tokens_per_day > 0,
        [RL_CONCURRENT] = l->max_concurrent > 0,
    };
    int k;

    /* tier and key names are label-safe (the loader checks them) */
    if (a->pass == 1) {
        if (tokens_left >= 0 &&
            evbuffer_add_printf(a->out,
                                "pitot_ratelimit_tokens_remaining{tier=\"%s\",key=\"%s\"} %lld\n",
                                tname, kname, tokens_left) < 0)
            a->err = -1;
        return;
    }
    for (k = RL_OK + 1; k < RL__COUNT; k++)
        if (set[k] && evbuffer_add_printf(a->out,
                                          "pitot_rate_limited_total{tier=\"%s\",key=\"%s\","
                                          "limit=\"%s\"} %llu\n",
                                          tname, kname, rl_limit_label((enum rl_limit)k),
                                          (unsigned long long)refused[k]) < 0)
            a->err = -1;
}

static int admin_expose_limits(struct loop *lp, struct evbuffer *out)
{
    struct admin_limits a = { out, lp->cfg, 0, 0 };
    uint64_t now = clk_now_us();

    if (lp->ratelimit == NULL)
        return 0;
    evbuffer_add_printf(out, "# HELP pitot_rate_limited_total Requests a rate limit refused (429) "
                             "before any backend, by tier, key name (\"\": the tier's own "
                             "limits) and limit\n# TYPE pitot_rate_limited_total counter\n");
    rl_each(lp->ratelimit, lp->cfg, now, admin_limit_row, &a);
    a.pass = 1;
    evbuffer_add_printf(out, "# HELP pitot_ratelimit_tokens_remaining Tokens per minute a tier "
                             "(key \"\") or key has left now\n"
                             "# TYPE pitot_ratelimit_tokens_remaining gauge\n");
    rl_each(lp->ratelimit, lp->cfg, now, admin_limit_row, &a);
    if (lp->cfg->ratelimit_redis[0] != '\0' &&
        evbuffer_add_printf(out,
                            "# HELP pitot_ratelimit_redis_failures_total Admissions Redis did not "
                            "answer in time (ratelimit.redis_fail then decided)\n"
                            "# TYPE pitot_ratelimit_redis_failures_total counter\n"
                            "pitot_ratelimit_redis_failures_total %llu\n",
                            (unsigned long long)rl_unanswered(lp->ratelimit)) < 0)
        a.err = -1;
    return a.err;
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
            met_expose_process(body) != 0 || admin_expose_limits(lp, body) != 0) {
            if (body)
                evbuffer_free(body);
            admin_error(lp, out, m, PITOT_ENOMEM, head, close, NULL);
            return;
        }
        n = evbuffer_get_length(body);
        admin_send(out, 200, "text/plain; version=0.0.4; charset=utf-8",
                   span_make((const char *)evbuffer_pullup(body, -1), n), head, close, NULL);
        evbuffer_free(body);
        return;
    }
    if (span_eq(path, "/healthz")) {
        admin_send(out, 200, "application/json", span_cstr("{\"status\":\"ok\"}"), head, close,
                   NULL);
        return;
    }
    if (lp->draining) /* out of the load balancer's pool while requests finish */
        admin_send(out, 503, "application/json", span_cstr("{\"status\":\"draining\"}"), head,
                   close, NULL);
    else if (router_up_count(lp->rt) > 0)
        admin_send(out, 200, "application/json", span_cstr("{\"status\":\"ready\"}"), head, close,
                   NULL);
    else
        admin_send(out, 503, "application/json", span_cstr("{\"status\":\"no healthy backend\"}"),
                   head, close, NULL);
}

/* An admin answer of pitot's own making with a JSON body in the shape of
 * the error replies; message and type are constants, never input. */
static void admin_fail(struct loop *lp, struct evbuffer *out, const struct h1_msg *m, int status,
                       const char *type, const char *message, bool head, bool close,
                       const char *extra)
{
    char id[RELAY_ID_MAX + 1], hdr[RELAY_ID_MAX + 96], body[256];
    int n;

    relay_request_id(lp, m, id);
    snprintf(hdr, sizeof(hdr), "%sX-Request-Id: %s\r\n", extra ? extra : "", id);
    n = snprintf(body, sizeof(body), "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"code\":%d}}",
                 message, type, status);
    if (n < 0 || (size_t)n >= sizeof(body)) /* constants: never, but never past body */
        n = 0;
    admin_send(out, status, "application/json", span_make(body, (size_t)n), head, close, hdr);
}

/* GET or HEAD /status (the page) and /status.json (its data). */
static void admin_status(struct loop *lp, struct evbuffer *out, const struct h1_msg *m, bool head,
                         bool close)
{
    struct evbuffer *body;

    if (span_eq(admin_path(m), "/status")) {
        admin_send(out, 200, "text/html; charset=utf-8", status_page(), head, close,
                   "Cache-Control: no-store\r\n");
        return;
    }
    body = evbuffer_new();
    if (body == NULL || status_json(lp->status, body, clk_now_us()) != 0) {
        if (body)
            evbuffer_free(body);
        admin_error(lp, out, m, PITOT_ENOMEM, head, close, NULL);
        return;
    }
    admin_send(out, 200, "application/json",
               span_make((const char *)evbuffer_pullup(body, -1), evbuffer_get_length(body)), head,
               close, "Cache-Control: no-store\r\n");
    evbuffer_free(body);
}

/* POST /admin/backends/{name}/{disable,enable} and /admin/reload, the
 * token already checked. */
static void admin_control(struct loop *lp, struct evbuffer *out, const struct h1_msg *m, bool close)
{
    struct span path = admin_path(m);
    char name[CFG_NAME_MAX], body[CFG_NAME_MAX * 2 + 64], *p;
    enum status_action act;
    size_t nb, i;
    int rc, n;

    if (span_eq(path, "/admin/reload")) {
        rc = status_reload(lp->status);
        if (rc == -PITOT_ENOT_IMPLEMENTED)
            admin_fail(lp, out, m, 501, "not_implemented",
                       "this pitot cannot reload its configuration here", false, close, NULL);
        else if (rc != 0)
            admin_fail(lp, out, m, 500, "reload_failed", "the reload could not be started", false,
                       close, NULL);
        else
            admin_send(out, 202, "application/json", span_cstr("{\"status\":\"reloading\"}"), false,
                       close, NULL);
        return;
    }
    act = status_backend_path(path, name, sizeof(name));
    if (act == STATUS_ACT_NONE) {
        admin_error(lp, out, m, PITOT_ENOT_FOUND, false, close, NULL);
        return;
    }
    nb = router_disable(lp->rt, span_cstr(name), act == STATUS_ACT_DISABLE);
    if (nb == 0) {
        admin_fail(lp, out, m, 404, "not_found", "no backend of that name", false, close, NULL);
        return;
    }
    if (act == STATUS_ACT_ENABLE)
        queue_kick(lp->queue); /* held requests may go to it now */
    /* the name is printable ASCII (status_backend_path): escape " and \ */
    p = body + snprintf(body, sizeof(body), "{\"backend\":\"");
    for (i = 0; name[i]; i++) {
        if (name[i] == '"' || name[i] == '\\')
            *p++ = '\\';
        *p++ = name[i];
    }
    n = (int)(p - body);
    n += snprintf(p, sizeof(body) - (size_t)n, "\",\"disabled\":%s,\"backends\":%zu}",
                  act == STATUS_ACT_DISABLE ? "true" : "false", nb);
    admin_send(out, 200, "application/json", span_make(body, (size_t)n), false, close, NULL);
}

void admin_serve_admin(struct loop *lp, struct evbuffer *out, const struct h1_msg *m, bool close)
{
    bool head = span_eq(m->method, "HEAD");
    bool get = span_eq(m->method, "GET") || head;
    struct span path = admin_path(m);

    if (admin_handles(m))
        admin_serve(lp, out, m, close);
    else if (admin_own_path(m))
        admin_error(lp, out, m, PITOT_EMETHOD_NOT_ALLOWED, head, close, "Allow: GET, HEAD\r\n");
    else if (lp->status && (span_eq(path, "/status") || span_eq(path, "/status.json"))) {
        if (get)
            admin_status(lp, out, m, head, close);
        else
            admin_error(lp, out, m, PITOT_EMETHOD_NOT_ALLOWED, head, close, "Allow: GET, HEAD\r\n");
    } else if (lp->status && admin_listener_path(m)) {
        const struct h1_header *auth = h1_header_find(m, "authorization");
        if (!span_eq(m->method, "POST"))
            admin_error(lp, out, m, PITOT_EMETHOD_NOT_ALLOWED, head, close, "Allow: POST\r\n");
        else if (!status_token_ok(lp->cfg->admin_token, auth ? auth->value : span_make(NULL, 0)))
            admin_fail(lp, out, m, 401, "unauthorized", "missing or invalid admin token", false,
                       close, "WWW-Authenticate: Bearer\r\n");
        else
            admin_control(lp, out, m, close);
    } else
        admin_error(lp, out, m, PITOT_ENOT_FOUND, head, close, NULL);
}
