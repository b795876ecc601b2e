/* scrape: per-backend scrape timers feeding the balancer. A scrape that fails
 * leaves the last good one to age out (routing.scrape_stale), after which the
 * balancer uses pitot's own in-flight count instead. The log hears when
 * scrapes start failing (with the reason) and recover, and of each flavor
 * detected, not of every scrape. */
#include "pitot/route/scrape.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "pitot/route/balancer.h"
#include "pitot/format/config.h"
#include "pitot/util/clock.h"
#include "pitot/util/log.h"
#include "pitot/format/flavor.h"
#include "pitot/io/fetch.h"
#include "pitot/measure/metrics.h"
#include "pitot/route/router.h"

#define SCRAPE_METRICS_MAX (8u << 20)
#define SCRAPE_JSON_MAX (1u << 20)

/* What the log last said of a backend's /metrics: a line when it changes. */
enum scrape_news {
    SCRAPE_NEWS_OK,         /* scraped well, or nothing said yet */
    SCRAPE_NEWS_FAILING,    /* scrapes fail (why in the line) */
    SCRAPE_NEWS_NO_METRICS, /* llama-server started without --metrics */
};

struct scrape_be {
    struct scrape *s; /* borrowed */
    unsigned be;
    struct event *t_metrics; /* owned */
    struct event *t_models;  /* owned */
    struct fetch *g_metrics; /* owned while running */
    struct fetch *g_models;  /* owned while running */
    struct fetch *g_props;   /* owned while running */
    bool props_done;
    enum scrape_news news;       /* what the log last said of its /metrics */
    enum cfg_flavor said_flavor; /* the flavor the log last named; AUTO: none yet */
};

struct scrape {
    struct router *rt;   /* borrowed */
    struct scrape_be *b; /* owned */
    size_t n;
};

static void scrape_arm(struct event *ev, unsigned ms)
{
    struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

    evtimer_add(ev, &tv);
}

static struct fetch *scrape_get(struct scrape_be *sb, const char *path, unsigned timeout_ms,
                                size_t max, fetch_cb cb)
{
    struct router *rt = sb->s->rt;

    return fetch_start(rt->base, rt->tls[sb->be], (struct sockaddr *)&rt->addr[sb->be],
                       rt->addrlen[sb->be], cfg_backend_authority(&rt->cfg->backends[sb->be]), path,
                       timeout_ms, max, cb, sb);
}

static void scrape_props_done(void *ud, enum fetch_result res, int status, struct span body)
{
    struct scrape_be *sb = ud;
    struct router *rt = sb->s->rt;
    long slots;

    sb->g_props = NULL;
    if (res != FETCH_OK || status != 200)
        return; /* asked again after the next good scrape */
    slots = flv_props_slots(body, rt->toks);
    if (slots > 0 && slots < 1000000) {
        router_lock(rt);
        rt->bal.b[sb->be].capacity = (unsigned)slots;
        router_unlock(rt);
        sb->props_done = true;
        router_room(rt);
    }
}

/* Says what changed of be's /metrics (see enum scrape_news); why: the
 * reason a scrape failed. */
static void scrape_news(struct scrape_be *sb, enum scrape_news news, const char *why)
{
    const char *name = sb->s->rt->cfg->backends[sb->be].name;

    if (news == sb->news)
        return;
    sb->news = news;
    if (news == SCRAPE_NEWS_OK)
        log_info("backend %s: scrape recovered: GET /metrics answered 200", name);
    else if (news == SCRAPE_NEWS_FAILING)
        log_warn("backend %s: scrape failing: %s; routing falls back to in-flight counts once its "
                 "last load is older than routing.scrape_stale",
                 name, why);
    else
        log_warn("backend %s: llama-server has no /metrics: run it with --metrics; routing falls "
                 "back to in-flight counts",
                 name);
}

/* Says the flavor a scrape found, once (again only if it changes: a new
 * address may be another server). */
static void scrape_flavor_news(struct scrape_be *sb, enum cfg_flavor f, const char *how)
{
    if (f == sb->said_flavor)
        return;
    sb->said_flavor = f;
    if (f == CFG_FLAVOR_OPENAI)
        log_info("backend %s: flavor openai: %s; routing uses in-flight counts for it",
                 sb->s->rt->cfg->backends[sb->be].name, how);
    else
        log_info("backend %s: flavor %s, detected from its /metrics",
                 sb->s->rt->cfg->backends[sb->be].name, flv_name(f));
}

/* A 404 or 501 to GET /metrics from llama-server: it runs without --metrics
 * (its error says "Start it with `--metrics`"), or is known to be one. */
static bool scrape_llama_no_metrics(const struct scrape_be *sb, int status, struct span body)
{
    const struct router *rt = sb->s->rt;
    static const char hint[] = "--metrics";

    if (status != 404 && status != 501)
        return false;
    return rt->cfg->backends[sb->be].flavor == CFG_FLAVOR_LLAMACPP ||
           rt->bal.b[sb->be].flavor == CFG_FLAVOR_LLAMACPP ||
           (body.len > 0 && memmem(body.p, body.len, hint, sizeof(hint) - 1) != NULL);
}

static void scrape_metrics_done(void *ud, enum fetch_result res, int status, struct span body)
{
    struct scrape_be *sb = ud;
    struct router *rt = sb->s->rt;
    struct bal_backend *b = &rt->bal.b[sb->be];
    struct flv_load ld;
    char err[128], why[320];
    uint64_t now = clk_now_us();
    int rc;

    sb->g_metrics = NULL;
    if (res == FETCH_TIMEOUT) {
        snprintf(why, sizeof(why), "GET /metrics: %.*s", (int)body.len, body.p);
        scrape_news(sb, SCRAPE_NEWS_FAILING, why);
        met_add_scrape(rt->met, sb->be, MET_SCRAPE_TIMEOUT);
    } else if (res != FETCH_OK || status != 200) {
        bool llama = res == FETCH_OK && scrape_llama_no_metrics(sb, status, body);
        bool none =
            res == FETCH_OK && status == 404 && rt->cfg->backends[sb->be].flavor == CFG_FLAVOR_AUTO;
        if (res == FETCH_OK)
            snprintf(why, sizeof(why), "GET /metrics answered %d", status);
        else
            snprintf(why, sizeof(why), "GET /metrics: %s%.*s",
                     res == FETCH_TLS ? "TLS handshake: " : "", (int)body.len, body.p);
        if (llama)
            scrape_news(sb, SCRAPE_NEWS_NO_METRICS, why);
        else if (!none) /* no metrics at all is a flavor (below), not a failure */
            scrape_news(sb, SCRAPE_NEWS_FAILING, why);
        if (none) {
            /* An OpenAI-compatible server without metrics: pitot's own
             * in-flight count is all there is; stop asking. */
            router_lock(rt);
            b->flavor = CFG_FLAVOR_OPENAI;
            router_unlock(rt);
            if (!llama)
                scrape_flavor_news(sb, CFG_FLAVOR_OPENAI, "GET /metrics answered 404");
            return;
        }
        met_add_scrape(rt->met, sb->be, MET_SCRAPE_ERROR);
    } else {
        if (b->flavor == CFG_FLAVOR_AUTO) {
            enum cfg_flavor f = flv_detect(body);
            router_lock(rt);
            b->flavor = f;
            router_unlock(rt);
            scrape_flavor_news(sb, f,
                               "its /metrics has no metric of llama.cpp, vLLM, TGI or SGLang");
        }
        if (b->flavor == CFG_FLAVOR_OPENAI) {
            met_add_scrape(rt->met, sb->be, MET_SCRAPE_PARSE_ERROR);
            return; /* metrics we cannot read: stop asking */
        }
        err[0] = '\0';
        rc = flv_load_parse(b->flavor, body, &ld, err, sizeof(err));
        if (rc != 0 || !ld.valid) {
            if (rc != 0)
                snprintf(why, sizeof(why), "GET /metrics: cannot parse it: %s", err);
            else
                snprintf(why, sizeof(why), "GET /metrics: no %s load metric in it",
                         flv_name(b->flavor));
            scrape_news(sb, SCRAPE_NEWS_FAILING, why);
            met_add_scrape(rt->met, sb->be, MET_SCRAPE_PARSE_ERROR);
        } else {
            scrape_news(sb, SCRAPE_NEWS_OK, NULL);
            int cache = ld.cache_ratio < 0 ? -1 : (int)lround(fmin(ld.cache_ratio, 1.0) * 1000);
            router_lock(rt);
            bal_scraped(b, (uint32_t)lround(fmax(ld.running, 0)),
                        (uint32_t)lround(fmax(ld.waiting, 0)), cache, now);
            router_unlock(rt);
            met_gauge_set_f(rt->met, MET_BACKEND_RUNNING, sb->be, ld.running);
            met_gauge_set_f(rt->met, MET_BACKEND_WAITING, sb->be, ld.waiting);
            if (ld.cache_ratio < 0)
                met_gauge_clear(rt->met, MET_BACKEND_CACHE, sb->be);
            else
                met_gauge_set_f(rt->met, MET_BACKEND_CACHE, sb->be, ld.cache_ratio);
            met_backend_scraped(rt->met, sb->be, now);
            met_add_scrape(rt->met, sb->be, MET_SCRAPE_OK);
            if (b->flavor == CFG_FLAVOR_LLAMACPP && rt->cfg->backends[sb->be].capacity == 0 &&
                !sb->props_done && sb->g_props == NULL)
                sb->g_props = scrape_get(sb, "/props", rt->cfg->scrape_timeout_ms, SCRAPE_JSON_MAX,
                                         scrape_props_done);
            router_room(rt);
        }
    }
    if (!rt->stopping)
        scrape_arm(sb->t_metrics, rt->cfg->scrape_interval_ms);
}

static void scrape_metrics_cb(evutil_socket_t fd, short what, void *arg)
{
    struct scrape_be *sb = arg;
    struct router *rt = sb->s->rt;

    if (rt->stopping || !bal_live(&rt->bal.b[sb->be]) ||
        rt->bal.b[sb->be].flavor == CFG_FLAVOR_OPENAI)
        return; /* scrape_reset starts it again */
    sb->g_metrics = scrape_get(sb, "/metrics", rt->cfg->scrape_timeout_ms, SCRAPE_METRICS_MAX,
                               scrape_metrics_done);
    if (sb->g_metrics == NULL) {
        scrape_news(sb, SCRAPE_NEWS_FAILING, "GET /metrics: cannot open a connection");
        met_add_scrape(rt->met, sb->be, MET_SCRAPE_ERROR);
        scrape_arm(sb->t_metrics, rt->cfg->scrape_interval_ms);
    }
}

struct scrape_models {
    char names[CFG_MAX_BACKEND_MODELS][CFG_NAME_MAX];
    size_t n;
};

static void scrape_model_name(void *ud, struct span name)
{
    struct scrape_models *m = ud;

    if (m->n < CFG_MAX_BACKEND_MODELS && name.len > 0 && name.len < CFG_NAME_MAX) {
        memcpy(m->names[m->n], name.p, name.len);
        m->names[m->n][name.len] = '\0';
        m->n++;
    }
}

static void scrape_models_done(void *ud, enum fetch_result res, int status, struct span body)
{
    struct scrape_be *sb = ud;
    struct router *rt = sb->s->rt;
    struct bal_backend *b = &rt->bal.b[sb->be];
    struct scrape_models m;

    sb->g_models = NULL;
    if (res == FETCH_OK && status == 200) {
        m.n = 0;
        if (flv_models_parse(body, rt->toks, scrape_model_name, &m) < 0)
            m.n = 0;
        /* parsed aside, then put in at once: the routing loops read them */
        router_lock(rt);
        memcpy(b->models, m.names, m.n * sizeof(m.names[0]));
        b->nmodels = m.n;
        router_unlock(rt);
        router_room(rt);
    }
    if (!rt->stopping)
        scrape_arm(sb->t_models, rt->cfg->models_interval_ms);
}

static void scrape_models_cb(evutil_socket_t fd, short what, void *arg)
{
    struct scrape_be *sb = arg;
    struct router *rt = sb->s->rt;

    if (rt->stopping || !bal_live(&rt->bal.b[sb->be]))
        return; /* scrape_reset starts it again */
    sb->g_models = scrape_get(sb, "/v1/models", rt->cfg->scrape_timeout_ms * 4, SCRAPE_JSON_MAX,
                              scrape_models_done);
    if (sb->g_models == NULL)
        scrape_arm(sb->t_models, rt->cfg->models_interval_ms);
}

struct scrape *scrape_new(struct router *rt)
{
    struct scrape *s = calloc(1, sizeof(*s));
    size_t i;

    if (s == NULL)
        return NULL;
    s->rt = rt;
    s->n = rt->bal.n;
    s->b = calloc(s->n ? s->n : 1, sizeof(*s->b));
    if (s->b == NULL) {
        free(s);
        return NULL;
    }
    for (i = 0; i < s->n; i++) {
        struct scrape_be *sb = &s->b[i];
        sb->s = s;
        sb->be = (unsigned)i;
        sb->t_metrics = evtimer_new(rt->base, scrape_metrics_cb, sb);
        sb->t_models = evtimer_new(rt->base, scrape_models_cb, sb);
        if (sb->t_metrics == NULL || sb->t_models == NULL) {
            scrape_free(s);
            return NULL;
        }
        /* Every policy scrapes: the load gauges are exported whatever the
         * policy, and llama.cpp's slot count (capacity) comes after a scrape. */
        scrape_arm(sb->t_metrics, 0);
        /* A configured model list is authoritative: no discovery. */
        if (rt->cfg->backends[i].nmodels == 0)
            scrape_arm(sb->t_models, 0);
    }
    return s;
}

void scrape_reset(struct scrape *s, unsigned be)
{
    struct scrape_be *sb;
    struct router *rt;

    if (s == NULL || be >= s->n)
        return;
    sb = &s->b[be];
    rt = s->rt;
    fetch_cancel(sb->g_metrics);
    fetch_cancel(sb->g_models);
    fetch_cancel(sb->g_props);
    sb->g_metrics = sb->g_models = sb->g_props = NULL;
    sb->props_done = false;
    evtimer_del(sb->t_metrics);
    evtimer_del(sb->t_models);
    met_gauge_clear(rt->met, MET_BACKEND_RUNNING, be);
    met_gauge_clear(rt->met, MET_BACKEND_WAITING, be);
    met_gauge_clear(rt->met, MET_BACKEND_CACHE, be);
    met_gauge_clear(rt->met, MET_BACKEND_SCRAPE_AGE, be);
    if (!bal_live(&rt->bal.b[be]) || rt->stopping)
        return;
    scrape_arm(sb->t_metrics, 0);
    if (rt->cfg->backends[be].nmodels == 0)
        scrape_arm(sb->t_models, 0);
}

void scrape_free(struct scrape *s)
{
    size_t i;

    if (s == NULL)
        return;
    for (i = 0; i < s->n; i++) {
        struct scrape_be *sb = &s->b[i];
        if (sb->t_metrics)
            event_free(sb->t_metrics);
        if (sb->t_models)
            event_free(sb->t_models);
        fetch_cancel(sb->g_metrics);
        fetch_cancel(sb->g_models);
        fetch_cancel(sb->g_props);
    }
    free(s->b);
    free(s);
}
