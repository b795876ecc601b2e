/* dns: periodic asynchronous lookups of backend names; each address keeps its
 * slot in the backend table while the name has it. */
#include "pitot/route/dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "pitot/route/balancer.h"
#include "pitot/util/clock.h"
#include "pitot/util/log.h"
#include "pitot/route/health.h"
#include "pitot/measure/metrics.h"
#include "pitot/route/scrape.h"
#include "pitot/route/router.h"

#define DNS_START_WAIT_MS 5000 /* longest pitot waits for the first answers */
#define DNS_ADDRS_MAX 64       /* addresses of one answer considered */

/* One backend name and its slots rt->bal.b[first .. first + n). */
struct dns_name {
    struct dns *d; /* borrowed */
    unsigned first, n;
    struct evdns_getaddrinfo_request *req; /* owned by evdns while a lookup runs */
    bool running;                          /* a lookup is under way (req may be NULL) */
    bool failing;                          /* the last lookup failed (logged once) */
    bool used;                             /* a configured backend's name now */
    bool stale;                            /* a reload changed it while a lookup ran:
                                              that answer is dropped, a new one asked */
    size_t unused;                         /* addresses without a slot, last logged */
};

struct dns {
    struct router *rt;       /* borrowed */
    struct evdns_base *base; /* owned; NULL when no backend has a name */
    struct event *timer;     /* owned: the next round of lookups */
    struct dns_name *names;  /* owned, CFG_MAX_BACKENDS: by the first slot of the
                                name's group (stable across reloads) */
    unsigned running;        /* lookups under way */
};

bool dns_addr_eq(const struct dns_addr *a, const struct dns_addr *b)
{
    if (a->len == 0 || b->len == 0 || a->ss.ss_family != b->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

size_t dns_filter(struct dns_addr *a, size_t n, enum cfg_dns_family fam)
{
    size_t i, j, k = 0;
    bool v4 = fam == CFG_DNS_IPV4 || fam == CFG_DNS_ANY || fam == CFG_DNS_AUTO;
    bool v6 = fam == CFG_DNS_IPV6 || fam == CFG_DNS_ANY;

    if (fam == CFG_DNS_AUTO) {
        bool any4 = false;
        for (i = 0; i < n; i++)
            any4 = any4 || (a[i].len > 0 && a[i].ss.ss_family == AF_INET);
        v4 = any4;
        v6 = !any4;
    }
    for (i = 0; i < n; i++) {
        bool dup = false;
        if (a[i].len == 0 ||
            !((a[i].ss.ss_family == AF_INET && v4) || (a[i].ss.ss_family == AF_INET6 && v6)))
            continue;
        for (j = 0; j < k && !dup; j++)
            dup = dns_addr_eq(&a[j], &a[i]);
        if (!dup) {
            if (k != i)
                a[k] = a[i];
            k++;
        }
    }
    return k;
}

size_t dns_assign(struct dns_addr *slots, size_t nslots, const struct dns_addr *addrs,
                  size_t naddrs, enum dns_change *chg)
{
    bool placed[DNS_ADDRS_MAX];
    size_t i, j, left = 0;

    if (naddrs > DNS_ADDRS_MAX) {
        left = naddrs - DNS_ADDRS_MAX;
        naddrs = DNS_ADDRS_MAX;
    }
    memset(placed, 0, sizeof(placed));
    /* addresses still there keep their slot; the others' slots empty */
    for (i = 0; i < nslots; i++) {
        bool kept = false;
        chg[i] = DNS_SAME;
        if (slots[i].len == 0)
            continue;
        for (j = 0; j < naddrs && !kept; j++) {
            if (!placed[j] && dns_addr_eq(&slots[i], &addrs[j])) {
                placed[j] = true;
                kept = true;
            }
        }
        if (!kept) {
            slots[i].len = 0;
            chg[i] = DNS_REMOVED;
        }
    }
    /* new addresses, in answer order, into the lowest empty slots */
    for (i = 0, j = 0; j < naddrs; j++) {
        if (placed[j])
            continue;
        while (i < nslots && slots[i].len != 0)
            i++;
        if (i == nslots) {
            left++;
            continue;
        }
        slots[i] = addrs[j];
        chg[i] = chg[i] == DNS_REMOVED ? DNS_REPLACED : DNS_ADDED;
    }
    return left;
}

void dns_addr_fmt(const struct dns_addr *a, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (a->len > 0 && a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)&a->ss;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(s->sin_port));
    } else if (a->len > 0 && a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)&a->ss;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(s->sin6_port));
    } else {
        snprintf(out, cap, "none");
    }
}

/* Slot be got a new address or lost it: everything learned of the old one
 * goes, its pooled connections close, probes and scrapes start over. */
static void dns_slot_changed(struct dns *d, unsigned be, const struct dns_addr *a)
{
    struct router *rt = d->rt;
    struct bal_backend *b = &rt->bal.b[be];

    router_lock(rt); /* the routing loops read them */
    if (a->len > 0) {
        memcpy(&rt->addr[be], &a->ss, sizeof(a->ss));
        rt->addrlen[be] = a->len;
    } else {
        memset(&rt->addr[be], 0, sizeof(rt->addr[be]));
        rt->addrlen[be] = 0;
    }
    bal_activate(&rt->bal, b, a->len > 0);
    router_unlock(rt);
    met_backend_active(rt->met, be, a->len > 0);
    router_readdressed(rt, be);
    health_reset(rt->health, be);
    scrape_reset(rt->scrape, be);
}

/* Applies a lookup's addresses (already filtered) to the name's slots. */
static void dns_apply(struct dns_name *nm, const struct dns_addr *addrs, size_t naddrs)
{
    struct dns *d = nm->d;
    struct router *rt = d->rt;
    const struct cfg_backend *cb = &rt->cfg->backends[nm->first];
    struct dns_addr slots[CFG_MAX_BACKENDS];
    enum dns_change chg[CFG_MAX_BACKENDS];
    char now[64], was[64];
    size_t left;
    unsigned k;
    bool any = false;

    for (k = 0; k < nm->n; k++) {
        unsigned be = nm->first + k;
        slots[k].len = rt->bal.b[be].active ? rt->addrlen[be] : 0;
        if (slots[k].len > 0)
            memcpy(&slots[k].ss, &rt->addr[be], sizeof(slots[k].ss));
    }
    left = dns_assign(slots, nm->n, addrs, naddrs, chg);
    for (k = 0; k < nm->n; k++) {
        unsigned be = nm->first + k;
        if (chg[k] == DNS_SAME)
            continue;
        any = true;
        {
            struct dns_addr old = { .len = rt->addrlen[be] };
            memcpy(&old.ss, &rt->addr[be], sizeof(old.ss));
            dns_addr_fmt(&old, was, sizeof(was));
        }
        dns_addr_fmt(&slots[k], now, sizeof(now));
        if (chg[k] == DNS_REMOVED)
            log_info("backend %s: address %s is gone from %s", rt->cfg->backends[be].name, was,
                     cb->host);
        else if (chg[k] == DNS_REPLACED)
            log_info("backend %s: address %s (was %s), from %s", rt->cfg->backends[be].name, now,
                     was, cb->host);
        else
            log_info("backend %s: address %s, from %s", rt->cfg->backends[be].name, now, cb->host);
        dns_slot_changed(d, be, &slots[k]);
    }
    if (left != nm->unused && left > 0)
        log_warn("backend %s: %s has %zu addresses, routing.max_addresses is %u: %zu not used",
                 cb->name, cb->host, naddrs, rt->cfg->max_addresses, left);
    nm->unused = left;
    if (any)
        router_room(rt);
}

static void dns_lookup(struct dns_name *nm);

static void dns_done(int result, struct evutil_addrinfo *res, void *arg)
{
    struct dns_name *nm = arg;
    struct dns *d = nm->d;
    struct dns_addr addrs[DNS_ADDRS_MAX];
    struct evutil_addrinfo *ai;
    const struct cfg_backend *cb = &d->rt->cfg->backends[nm->first];
    size_t n = 0, kept = 0;
    unsigned k;

    nm->req = NULL;
    nm->running = false;
    d->running--;
    if (result == EVUTIL_EAI_CANCEL)
        return; /* shutting down */
    if (nm->stale || !nm->used) {
        if (res != NULL)
            evutil_freeaddrinfo(res);
        nm->stale = false;
        if (nm->used)
            dns_lookup(nm); /* what the reload named */
        return;
    }
    for (ai = result == 0 ? res : NULL; ai != NULL && n < DNS_ADDRS_MAX; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(addrs[n].ss))
            continue;
        memset(&addrs[n], 0, sizeof(addrs[n]));
        memcpy(&addrs[n].ss, ai->ai_addr, ai->ai_addrlen);
        addrs[n].len = (socklen_t)ai->ai_addrlen;
        n++;
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
    n = dns_filter(addrs, n, d->rt->cfg->dns_family);
    if (n == 0) {
        /* keep what there is: a DNS outage must not empty the pool */
        for (k = 0; k < nm->n; k++)
            kept += d->rt->bal.b[nm->first + k].active;
        if (!nm->failing)
            log_warn("backend %s: cannot resolve %s: %s; keeping %zu address%s, retrying "
                     "every %u ms",
                     cb->name, cb->host,
                     result != 0 ? evutil_gai_strerror(result) : "no address of the family wanted",
                     kept, kept == 1 ? "" : "es", d->rt->cfg->dns_interval_ms);
        nm->failing = true;
        return;
    }
    if (nm->failing)
        log_info("backend %s: %s resolves again", cb->name, cb->host);
    nm->failing = false;
    dns_apply(nm, addrs, n);
}

static void dns_lookup(struct dns_name *nm)
{
    struct dns *d = nm->d;
    const struct cfg_backend *cb = &d->rt->cfg->backends[nm->first];
    struct evutil_addrinfo hints;
    char port[8];

    if (nm->running)
        return; /* the last one has not answered yet */
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = d->rt->cfg->dns_family == CFG_DNS_IPV4   ? AF_INET
                      : d->rt->cfg->dns_family == CFG_DNS_IPV6 ? AF_INET6
                                                               : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(port, sizeof(port), "%u", (unsigned)cb->port);
    nm->running = true;
    d->running++;
    /* may answer at once (hosts file), calling dns_done before it returns */
    nm->req = evdns_getaddrinfo(d->base, cb->host, port, &hints, dns_done, nm);
}

static void dns_arm(struct dns *d)
{
    unsigned ms = d->rt->cfg->dns_interval_ms;
    struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

    evtimer_add(d->timer, &tv);
}

static void dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct dns *d = arg;
    size_t i;

    if (d->rt->stopping)
        return;
    for (i = 0; i < CFG_MAX_BACKENDS; i++)
        if (d->names[i].used)
            dns_lookup(&d->names[i]);
    dns_arm(d);
}

static void dns_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

/* Runs the loop until every first lookup answered or DNS_START_WAIT_MS. */
static void dns_first_answers(struct dns *d)
{
    struct timeval tv = { DNS_START_WAIT_MS / 1000, 0 };
    bool late = false;
    struct event *wake;

    if (d->running == 0)
        return;
    wake = evtimer_new(d->rt->base, dns_wake_cb, &late);
    if (wake == NULL)
        return;
    evtimer_add(wake, &tv);
    while (d->running > 0 && !late)
        event_base_loop(d->rt->base, EVLOOP_ONCE);
    event_free(wake);
}

/* The resolver and the timer, once some backend has a name. */
static int dns_setup(struct dns *d, char *err, size_t errlen)
{
    const struct cfg *c = d->rt->cfg;

    if (d->base != NULL)
        return 0;
    d->timer = evtimer_new(d->rt->base, dns_timer_cb, d);
    if (c->resolver[0] != '\0') {
        d->base = evdns_base_new(d->rt->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (d->base != NULL && evdns_base_nameserver_ip_add(d->base, c->resolver) != 0) {
            snprintf(err, errlen, "routing.resolver %s: not usable", c->resolver);
            return -1;
        }
    } else {
        /* /etc/resolv.conf (servers, search list, ndots) and /etc/hosts */
        d->base = evdns_base_new(d->rt->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                                  EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    }
    if (d->timer == NULL || d->base == NULL) {
        snprintf(err, errlen, "cannot set up the DNS resolver");
        return -1;
    }
    dns_arm(d);
    return 0;
}

/* Marks the names of rt->cfg's backends in d->names: a name whose group
 * starts (start[i], or every one when start is NULL) is looked up afresh.
 * Returns how many lookups it began. */
static unsigned dns_mark(struct dns *d, const bool *start)
{
    const struct cfg *c = d->rt->cfg;
    unsigned began = 0;
    size_t i;

    for (i = 0; i < CFG_MAX_BACKENDS; i++) {
        struct dns_name *nm = &d->names[i];
        bool named = i < c->nbackends && c->backends[i].dns && c->backends[i].slot == 0 &&
                     !c->backends[i].spare;

        if (!named) {
            nm->used = false; /* a lookup under way is dropped when it answers */
            continue;
        }
        if (nm->used && start != NULL && !start[i])
            continue;
        nm->d = d;
        nm->first = (unsigned)i;
        for (nm->n = 1; i + nm->n < c->nbackends && c->backends[i + nm->n].group == i &&
                        c->backends[i + nm->n].slot != 0;
             nm->n++)
            ;
        nm->used = true;
        nm->failing = false;
        nm->unused = 0;
        if (nm->running) {
            nm->stale = true;
        } else {
            dns_lookup(nm);
            began++;
        }
    }
    return began;
}

struct dns *dns_new(struct router *rt, char *err, size_t errlen)
{
    const struct cfg *c = rt->cfg;
    struct dns *d = calloc(1, sizeof(*d));
    size_t i, nnames = 0;

    if (d == NULL || (d->names = calloc(CFG_MAX_BACKENDS, sizeof(*d->names))) == NULL) {
        free(d);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->rt = rt;
    for (i = 0; i < c->nbackends; i++)
        nnames += c->backends[i].dns && c->backends[i].slot == 0 && !c->backends[i].spare;
    if (nnames == 0)
        return d;
    if (dns_setup(d, err, errlen) != 0) {
        dns_free(d);
        return NULL;
    }
    dns_mark(d, NULL);
    dns_first_answers(d);
    return d;
}

void dns_reload(struct dns *d, const enum cfg_place *how)
{
    bool start[CFG_MAX_BACKENDS];
    char err[256];
    size_t i;

    if (d == NULL)
        return;
    for (i = 0; i < CFG_MAX_BACKENDS; i++)
        start[i] =
            i < d->rt->cfg->nbackends &&
            (how[i] == CFG_PLACE_CHANGED || how[i] == CFG_PLACE_ADDED || how[i] == CFG_PLACE_BACK);
    for (i = 0; i < d->rt->cfg->nbackends; i++) {
        const struct cfg_backend *cb = &d->rt->cfg->backends[i];
        if (cb->dns && !cb->spare && cb->slot == 0 && d->base == NULL &&
            dns_setup(d, err, sizeof(err)) != 0) {
            log_error("reload: %s: backend names are not looked up", err);
            return;
        }
    }
    dns_mark(d, start);
}

void dns_free(struct dns *d)
{
    size_t i;

    if (d == NULL)
        return;
    for (i = 0; i < CFG_MAX_BACKENDS && d->names; i++)
        if (d->names[i].req != NULL)
            evdns_getaddrinfo_cancel(d->names[i].req);
    /* evdns delivers the cancellations (EVUTIL_EAI_CANCEL to dns_done) from
     * the loop, and frees the requests after them */
    for (i = 0; d->running > 0 && i < 16; i++)
        event_base_loop(d->rt->base, EVLOOP_NONBLOCK);
    if (d->base)
        evdns_base_free(d->base, 0);
    if (d->timer)
        event_free(d->timer);
    free(d->names);
    free(d);
}
