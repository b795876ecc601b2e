/* pitot: command line, signals, config check, wiring. Everything else lives in
 * libpitot. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "pitot/measure/access_log.h"
#include "pitot/format/config.h"
#include "pitot/measure/metrics.h"
#include "pitot/measure/refusal.h"
#include "pitot/io/tls.h"
#include "pitot/util/log.h"
#include "pitot/serve/status.h"
#include "pitot/util/version.h"
#include "pitot/worker/process.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pitot [-c FILE] [--listen HOST:PORT] [--backend URL]... [--access-log PATH]\n"
            "             [--tls-cert FILE --tls-key FILE]\n"
            "       pitot -t -c FILE      check a configuration file and exit\n"
            "       pitot --metrics-doc   print the metrics reference (Markdown) and exit\n"
            "\n"
            "  -c, --config FILE      YAML configuration (see conf/pitot.yaml)\n"
            "  -t, --test-config      validate the configuration, report FILE:LINE: errors\n"
            "  -l, --listen HOST:PORT client-facing address (default 127.0.0.1:8080)\n"
            "  -b, --backend URL      http[s]://host:port of an inference server; repeatable;\n"
            "                         replaces the config file's backends\n"
            "  -a, --access-log PATH  JSON access log, '-' for stdout (default)\n"
            "      --tls-cert FILE    the listener speaks TLS with this certificate (PEM,\n"
            "      --tls-key FILE     then its chain) and key; replaces tls.certificates\n"
            "      --workers N        event loops on their own threads (default: one per\n"
            "                         online CPU; replaces the file's workers)\n"
            "  -h, --help             this text\n"
            "  -V, --version          version\n");
}

/* Command-line values applied over the config file. */
struct cli {
    const char *listen, *access_log, *tls_cert, *tls_key, *workers;
    const char **backends;
    size_t nb;
};

/* Applies the config file, then the command line over it, then validates,
 * TLS files included. Returns 0, or the exit status with a message in err. */
static int build_cfg(struct cfg *c, const char *conf, const struct cli *cl, char *err,
                     size_t errlen)
{
    const char *listen = cl->listen, *access_log = cl->access_log;
    const char **backends = cl->backends;
    size_t nb = cl->nb;
    unsigned line;
    char msg[448];
    size_t i;

    if (conf && cfg_load_file(c, conf, err, errlen) != 0)
        return 1;
    if (listen && cfg_listen_set(c, listen, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "pitot: --listen: %s", msg);
        return 2;
    }
    if (nb)
        c->nbackends = 0;
    for (i = 0; i < nb; i++) {
        if (cfg_backend_add(c, backends[i], NULL, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "pitot: --backend %.40s: %s", backends[i], msg);
            return 2;
        }
    }
    if (access_log)
        snprintf(c->access_log, sizeof(c->access_log), "%s", access_log);
    if (cl->workers) {
        char *end;
        unsigned long n = strtoul(cl->workers, &end, 10);
        if (*cl->workers < '0' || *cl->workers > '9' || *end != '\0' || n < 1 ||
            n > CFG_MAX_WORKERS) {
            snprintf(err, errlen, "pitot: --workers '%.20s': a number from 1 to %d", cl->workers,
                     CFG_MAX_WORKERS);
            return 2;
        }
        c->workers = (unsigned)n;
    }
    if ((cl->tls_cert == NULL) != (cl->tls_key == NULL)) {
        snprintf(err, errlen, "pitot: --tls-cert and --tls-key go together");
        return 2;
    }
    if (cl->tls_cert && cfg_tls_cert_set(c, cl->tls_cert, cl->tls_key, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "pitot: --tls-cert/--tls-key: %s", msg);
        return 2;
    }
    if (cfg_validate(c, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "%s: %s", conf ? conf : "pitot", msg);
        return 1;
    }
    /* readable, PEM, keys matching: what -t promises, before anything starts */
    if (tls_check(c, msg, sizeof(msg), &line) != 0) {
        if (line && conf)
            snprintf(err, errlen, "%s:%u: %s", conf, line, msg);
        else
            snprintf(err, errlen, "%s: %s", conf && !cl->tls_cert ? conf : "pitot", msg);
        return 1;
    }
    return 0;
}

/* File descriptors, as nginx (worker_rlimit_nofile) and HAProxy do: the soft
 * RLIMIT_NOFILE goes up to the hard one, and limits.max_clients comes down to
 * what that number holds (cfg_fd_max_clients), with one line saying so.
 * Returns 0, or 1 when not even one client fits. */
static int fd_budget(struct cfg *c)
{
    struct rlimit rl;
    unsigned long long nofile;
    unsigned n;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = { rl.rlim_max, rl.rlim_max };
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    nofile = rl.rlim_cur == RLIM_INFINITY ? ULLONG_MAX : (unsigned long long)rl.rlim_cur;
    n = cfg_fd_max_clients(c, nofile);
    if (n == 0) {
        log_error("RLIMIT_NOFILE is %llu: too few file descriptors for %zu backends", nofile,
                  c->nbackends);
        return 1;
    }
    if (n < c->max_clients) {
        /* a line of the start, as "listening on" is: written at every level */
        log_notice("max_clients lowered from %u to %u: RLIMIT_NOFILE is %llu", c->max_clients, n,
                   nofile);
        c->max_clients = n;
    }
    return 0;
}

/* libevent's own warnings and errors go through the log too (its default
 * writes "[warn] ..." to stderr, past log.level and log.format). */
static void on_libevent_log(int severity, const char *msg)
{
    if (severity >= EVENT_LOG_ERR)
        log_error("libevent: %s", msg);
    else if (severity == EVENT_LOG_WARN)
        log_warn("libevent: %s", msg);
    else
        log_debug("libevent: %s", msg);
}

/* Refusal phrase lists a reload replaced: requests that began under them may
 * still match with them, so they stay until the end. */
#define MAX_OLD_PHRASES 64

struct sigctx {
    struct process *p;
    struct alog *alog;
    unsigned drain_left; /* connections with a request in progress when the drain began */
    const char *conf;    /* the configuration file, or NULL (command line only) */
    const struct cli *cl;
    const struct refusal_phrases *ph; /* the phrases in force */
    struct refusal_phrases *old_ph[MAX_OLD_PHRASES];
    size_t nold_ph;
};

/* The first SIGTERM or SIGINT drains (shutdown.drain_timeout), a second one
 * during the drain stops at once. */
static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct sigctx *sc = arg;
    unsigned ms = process_cfg(sc->p)->drain_timeout_ms, n;
    char d[24];

    if (process_draining(sc->p) || ms == 0) {
        log_notice("signal %d, stopping%s", (int)sig, process_draining(sc->p) ? " at once" : "");
        process_stop(sc->p);
        return;
    }
    n = process_drain(sc->p, ms); /* idle connections are being closed */
    sc->drain_left = n;
    log_notice("signal %d, draining %u connection%s (drain_timeout %s): %u request%s in progress "
               "may finish, new connections are refused",
               (int)sig, n, n == 1 ? "" : "s", cfg_fmt_ms(d, sizeof(d), ms), n, n == 1 ? "" : "s");
}

/* The drain's last line, once every loop has ended: how many of the
 * requests in progress at its start finished. */
static void log_drain_end(const struct process *p, unsigned started)
{
    unsigned cut = process_drain_cut(p), open = process_open_conns(p);
    unsigned left = cut ? cut : open;
    unsigned done = started > left ? started - left : 0;

    if (!process_draining(p))
        return;
    if (cut)
        log_notice("drain_timeout reached, %u connection%s cut, exiting: %u of %u request%s "
                   "finished",
                   cut, cut == 1 ? "" : "s", done, started, started == 1 ? "" : "s");
    else if (open)
        log_notice("drain interrupted, %u connection%s closed, exiting: %u of %u request%s "
                   "finished",
                   open, open == 1 ? "" : "s", done, started, started == 1 ? "" : "s");
    else
        log_notice("drained, exiting: %u of %u request%s finished", started, started,
                   started == 1 ? "" : "s");
}

/* Whether a and b have the same refusal phrases. */
static bool same_phrases(const struct cfg *a, const struct cfg *b)
{
    size_t i;

    if (a->nrefusal != b->nrefusal)
        return false;
    for (i = 0; i < a->nrefusal; i++)
        if (strcmp(a->refusal_phrases[i], b->refusal_phrases[i]) != 0)
            return false;
    return true;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads the configuration again, as at start (the file, then the command
 * line over it, every check of pitot -t) and switches to it: new requests
 * use it, requests in flight finish on the one they began under. What a
 * running pitot cannot change (cfg_reload_keep) stays as it is, said in one
 * line; the rest applies. A configuration that fails a check changes
 * nothing: its FILE:LINE: message is logged. Returns 0 or -1. */
static int reload_config(struct sigctx *sc)
{
    const struct cfg *cur = process_cfg(sc->p);
    struct cfg *next = cfg_new();
    const struct refusal_phrases *ph = sc->ph;
    char err[512], kept[1024];
    bool reusable[CFG_MAX_BACKENDS];
    enum cfg_place how[CFG_MAX_BACKENDS];
    bool tadded[CFG_MAX_TIERS], tremoved[CFG_MAX_TIERS];
    struct rlimit rl;

    if (next == NULL) {
        log_error("reload: out of memory; the running configuration stays");
        met_note_reload(false, wall_ms());
        return -1;
    }
    if (build_cfg(next, sc->conf, sc->cl, err, sizeof(err)) != 0) {
        log_error("reload: %s; the running configuration stays", err);
        cfg_drop(next);
        met_note_reload(false, wall_ms());
        return -1;
    }
    if (next->workers == 0)
        next->workers = cur->workers;
    cfg_reload_keep(cur, next, kept, sizeof(kept));
    /* the backends, in the running table's slots */
    process_backends_reusable(sc->p, reusable);
    if (cfg_backends_expand(next, err, sizeof(err)) != 0 ||
        cfg_backends_place(cur, next, reusable, how, err, sizeof(err)) != 0) {
        size_t len = strlen(kept);
        snprintf(kept + len, sizeof(kept) - len, "%sbackends (%s)", len ? ", " : "", err);
        memcpy(next->backends, cur->backends, sizeof(cur->backends));
        next->nbackends = cur->nbackends;
        for (size_t i = 0; i < cur->nbackends; i++)
            how[i] = cur->backends[i].spare ? CFG_PLACE_FREE : CFG_PLACE_SAME;
    }
    /* the tiers, in the running table's slots; the keys follow them */
    if (cfg_tiers_place(cur, next, tadded, tremoved, err, sizeof(err)) != 0) {
        size_t len = strlen(kept);
        snprintf(kept + len, sizeof(kept) - len, "%stiers (%s)", len ? ", " : "", err);
        memcpy(next->tiers, cur->tiers, sizeof(cur->tiers));
        next->ntiers = cur->ntiers;
        memcpy(next->keys, cur->keys, sizeof(cur->keys));
        memcpy(next->key_tier, cur->key_tier, sizeof(cur->key_tier));
        next->nkeys = cur->nkeys;
        memcpy(next->tier_header, cur->tier_header, sizeof(cur->tier_header));
        next->require_auth = cur->require_auth;
        memset(tadded, 0, sizeof(tadded));
        memset(tremoved, 0, sizeof(tremoved));
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { /* as at start, quietly */
        unsigned n = cfg_fd_max_clients(
            next, rl.rlim_cur == RLIM_INFINITY ? ULLONG_MAX : (unsigned long long)rl.rlim_cur);
        if (n > 0 && n < next->max_clients)
            next->max_clients = n;
    }
    if (!same_phrases(cur, next)) {
        struct refusal_phrases *np =
            sc->nold_ph < MAX_OLD_PHRASES
                ? refusal_phrases_new((const char *const *)next->refusal_phrases, next->nrefusal)
                : NULL;
        if (np == NULL) {
            log_warn("reload: measure.refusal_phrases not changed (at most %d changes a run)",
                     MAX_OLD_PHRASES);
        } else {
            sc->old_ph[sc->nold_ph++] = np;
            ph = np;
        }
    }
    if (kept[0])
        log_warn("reload: %s changed: that takes a restart; the rest of the configuration "
                 "is applied",
                 kept);
    if (strcmp(cur->access_log, next->access_log) != 0) {
        if (alog_move(sc->alog, next->access_log) == 0) {
            log_info("reload: the access log goes to %s from now on",
                     next->access_log[0] ? next->access_log : "stdout");
        } else {
            log_error("reload: access_log %s: %s; the access log stays where it was",
                      next->access_log, strerror(errno));
            memcpy(next->access_log, cur->access_log, sizeof(cur->access_log));
        }
    }
    if (next->ntls_certs > 0 && !cfg_certs_same(cur, next))
        log_info("reload: tls.certificates changed: new handshakes use them, connections made "
                 "stay as they are");
    for (size_t t = 0; t < CFG_MAX_TIERS; t++) {
        if (tadded[t])
            log_info("reload: tier %s added", next->tiers[t].name);
        else if (tremoved[t])
            log_info("reload: tier %s removed: requests already in it finish in it",
                     cur->tiers[t].name);
    }
    process_reload(sc->p, next, ph, how, tadded, tremoved);
    sc->ph = ph;
    cfg_drop(next); /* the process holds it now */
    log_setup(process_cfg(sc->p)->log_level, process_cfg(sc->p)->log_format);
    met_note_reload(true, wall_ms());
    return 0;
}

/* SIGHUP: the configuration is read again (reload_config), the access log
 * reopened (rotation) and every certificate, key and CA file loaded again
 * for new handshakes. */
static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct sigctx *sc = arg;

    /* the count keeps two reloads within a second apart (the log writes a
     * repeated line at most once a second) */
    if (reload_config(sc) == 0)
        log_info("signal %d, configuration reloaded from %s (reload %llu since the start)",
                 (int)sig, sc->conf ? sc->conf : "the command line",
                 (unsigned long long)met_reload_count(true));
    if (alog_reopen(sc->alog) != 0)
        log_error("signal %d: reopening the access log '%s' failed", (int)sig,
                  process_cfg(sc->p)->access_log);
    if (process_tls_reload(sc->p) == 0 && process_tls(sc->p))
        log_info("signal %d, certificates reloaded", (int)sig);
}

/* POST /admin/reload, on the thread of the worker that answered it: what
 * SIGHUP does, on the main thread, by making the SIGHUP event active (libevent
 * wakes that loop). Its result is in the log and pitot_config_reloads_total. */
static int on_admin_reload(void *ud)
{
    event_active(ud, EV_SIGNAL, 1);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },     { "test-config", no_argument, NULL, 't' },
        { "listen", required_argument, NULL, 'l' },     { "backend", required_argument, NULL, 'b' },
        { "access-log", required_argument, NULL, 'a' }, { "metrics-doc", no_argument, NULL, 'M' },
        { "tls-cert", required_argument, NULL, 'C' },   { "tls-key", required_argument, NULL, 'K' },
        { "workers", required_argument, NULL, 'w' },    { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },          { NULL, 0, NULL, 0 },
    };
    static struct cfg c; /* large: keep it off the stack */
    const char *conf = NULL;
    const char **backends = calloc((size_t)argc + 1, sizeof(char *));
    struct cli cl = { NULL, NULL, NULL, NULL, NULL, backends, 0 };
    bool test = false;
    char err[512];
    struct refusal_phrases *ph = NULL;
    struct alog *alog = NULL;
    struct process *p;
    struct sigctx sc;
    struct event *sig_term, *sig_int, *sig_hup;
    size_t nconf;
    int opt, rc = 0;

    if (backends == NULL)
        return 1;
    while ((opt = getopt_long(argc, argv, "c:tl:b:a:hV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 't': test = true; break;
        case 'l': cl.listen = optarg; break;
        case 'b': backends[cl.nb++] = optarg; break;
        case 'a': cl.access_log = optarg; break;
        case 'C': cl.tls_cert = optarg; break;
        case 'K': cl.tls_key = optarg; break;
        case 'w': cl.workers = optarg; break;
        case 'M':
            met_doc_markdown(stdout);
            free(backends);
            return 0;
        case 'h':
            usage(stdout);
            free(backends);
            return 0;
        case 'V':
            printf("pitot %s\n", PITOT_VERSION);
            free(backends);
            return 0;
        default:
            usage(stderr);
            free(backends);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pitot: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        free(backends);
        return 2;
    }
    cfg_init(&c);
    rc = build_cfg(&c, conf, &cl, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        cfg_release(&c);
        free(backends);
        return rc;
    }
    if (test) {
        printf("%s: configuration OK (%zu backends)\n", conf ? conf : "command line", c.nbackends);
        cfg_release(&c);
        free(backends);
        return 0;
    }
    /* from here on every line of pitot's own goes through the log: log.level
     * and log.format hold (the lines above are the command's answer) */
    log_setup(c.log_level, c.log_format);
    event_set_log_callback(on_libevent_log);
    nconf = c.nbackends;
    if (cfg_backends_expand(&c, err, sizeof(err)) != 0) {
        log_error("%s", err);
        cfg_release(&c);
        free(backends);
        return 1;
    }
    cfg_tiers_expand(&c); /* the slots of the tiers reloads add */
    if (c.workers == 0) { /* one per online CPU */
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c.workers = n < 1 ? 1 : n > CFG_MAX_WORKERS ? CFG_MAX_WORKERS : (unsigned)n;
    }
    if (fd_budget(&c) != 0) {
        cfg_release(&c);
        free(backends);
        return 1;
    }
    ph = refusal_phrases_new((const char *const *)c.refusal_phrases, c.nrefusal);
    alog = alog_open(c.access_log);
    if (ph == NULL || alog == NULL) {
        log_error("cannot open access log '%s'", c.access_log);
        rc = 1;
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    /* before any event base: the loops wake each other (event_active) */
    if (evthread_use_pthreads() != 0) {
        log_error("libevent has no thread support");
        rc = 1;
        goto out;
    }
    p = process_new(&c, ph, alog, err, sizeof(err));
    if (p == NULL) {
        log_error("%s", err);
        rc = 1;
        goto out;
    }
    memset(&sc, 0, sizeof(sc));
    sc.p = p;
    sc.alog = alog;
    sc.conf = conf;
    sc.cl = &cl;
    sc.ph = ph;
    met_note_start(wall_ms());
    sig_term = evsignal_new(process_base(p), SIGTERM, on_stop, &sc);
    sig_int = evsignal_new(process_base(p), SIGINT, on_stop, &sc);
    sig_hup = evsignal_new(process_base(p), SIGHUP, on_hup, &sc);
    evsignal_add(sig_term, NULL);
    evsignal_add(sig_int, NULL);
    evsignal_add(sig_hup, NULL);
    if (process_status(p)) /* admin_listen: POST /admin/reload */
        status_set_reload(process_status(p), on_admin_reload, sig_hup);
    if (c.admin) /* before the line that says pitot is up: the admin port is known then */
        log_notice("admin endpoints on %s:%u", c.admin_host, process_admin_port(p));
    log_notice("version %s listening on %s:%u%s, %zu backend%s, %zu worker%s", PITOT_VERSION,
               c.listen_host, process_listen_port(p), c.ntls_certs ? " (TLS)" : "", nconf,
               nconf == 1 ? "" : "s", process_workers(p), process_workers(p) == 1 ? "" : "s");
    if (process_run(p) != 0)
        rc = 1;
    log_drain_end(p, sc.drain_left);
    event_free(sig_term);
    event_free(sig_int);
    event_free(sig_hup);
    process_free(p);
    while (sc.nold_ph > 0)
        refusal_phrases_free(sc.old_ph[--sc.nold_ph]);
out:
    if (alog)
        alog_close(alog);
    refusal_phrases_free(ph);
    cfg_release(&c);
    free(backends); /* the command line: a reload applies it again */
    return rc;
}
