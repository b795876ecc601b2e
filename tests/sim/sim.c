/* sim: pitot-sim's entry point: flags, the listener, signals, shutdown.
 * Imitates llama.cpp's llama-server (tests/sim/sim_llamacpp.c), vLLM
 * (sim_vllm.c), TGI (sim_tgi.c) or SGLang (sim_sglang.c): --flavor. */
#include "sim.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/listener.h>

#include "pitot/util/clock.h"

static void sim_usage(FILE *f)
{
    fprintf(f,
            "usage: pitot-sim [options]\n"
            "  --flavor NAME                 llamacpp, vllm, tgi or sglang: routes, streams, "
            "/metrics (llamacpp)\n"
            "  --listen HOST:PORT            listen address (127.0.0.1:18081; port 0 picks one)\n"
            "  --slots N                     concurrent requests; more wait FIFO (2)\n"
            "  --model NAME                  model name in responses (llamacpp: small; vllm, tgi,\n"
            "                                sglang: their fixtures' Hugging Face ids)\n"
            "  --prefill-tokens-per-s R      prompt processing speed (200)\n"
            "  --tokens-per-s R              decode speed, one token per event (40)\n"
            "  --jitter F                    inter-token interval factor in [1-F,1+F] (0)\n"
            "  --seed N                      output text and jitter seed (1)\n"
            "  --ctx N                       per-slot context in tokens (2048)\n"
            "  --sse-ping-interval-ms MS     ':' comment after MS without a token; -1 off\n"
            "                                (llamacpp 30000, tgi 15000, vllm and sglang off)\n"
            "  --stall-after K --stall-ms MS pause MS once after K tokens of each stream\n"
            "  --die-after K                 close the connection abruptly after K tokens\n"
            "  --refuse                      answers begin with a refusal\n"
            "  --fail-status CODE            completion requests get CODE with an error body\n"
            "  --loading-ms MS               answer 503 (the flavor's loading error) for MS after "
            "start\n"
            "  --canary WORD                 the first output token (after a refusal) is WORD\n"
            "                                (letters, digits, '-'; for tests that search logs)\n"
            "  --seq                         token i's text is ' t' and i, 4 digits or more\n"
            "                                (' t0000', ' t0001', ...) in every API, in place\n"
            "                                of words, refusal and canary: a client can check\n"
            "                                it got every token once and in order\n");
}

static int sim_num(const char *name, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d;

    errno = 0;
    d = strtod(v, &end);
    if (errno || end == v || *end != '\0' || d < lo || d > hi) {
        fprintf(stderr, "pitot-sim: --%s: expected a number in [%g, %g], got '%s'\n", name, lo, hi,
                v);
        return -1;
    }
    *out = d;
    return 0;
}

static int sim_int(const char *name, const char *v, long long lo, long long hi, int64_t *out)
{
    char *end;
    long long n;

    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || end == v || *end != '\0' || n < lo || n > hi) {
        fprintf(stderr, "pitot-sim: --%s: expected an integer in [%lld, %lld], got '%s'\n", name,
                lo, hi, v);
        return -1;
    }
    *out = n;
    return 0;
}

enum {
    OPT_LISTEN = 256,
    OPT_SLOTS,
    OPT_MODEL,
    OPT_PREFILL,
    OPT_TPS,
    OPT_JITTER,
    OPT_SEED,
    OPT_CTX,
    OPT_PING,
    OPT_STALL_AFTER,
    OPT_STALL_MS,
    OPT_DIE_AFTER,
    OPT_REFUSE,
    OPT_FAIL,
    OPT_LOADING,
    OPT_FLAVOR,
    OPT_CANARY,
    OPT_SEQ,
    OPT_HELP,
};

static const struct sim_flavor *const sim_flavors[] = {
    &sim_flavor_llamacpp,
    &sim_flavor_vllm,
    &sim_flavor_tgi,
    &sim_flavor_sglang,
};

static const struct sim_flavor *sim_flavor_find(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(sim_flavors) / sizeof(sim_flavors[0]); i++)
        if (strcmp(sim_flavors[i]->name, name) == 0)
            return sim_flavors[i];
    return NULL;
}

static int sim_parse_args(struct sim_conf *cf, const struct sim_flavor **fl, int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "slots", required_argument, NULL, OPT_SLOTS },
        { "model", required_argument, NULL, OPT_MODEL },
        { "prefill-tokens-per-s", required_argument, NULL, OPT_PREFILL },
        { "tokens-per-s", required_argument, NULL, OPT_TPS },
        { "jitter", required_argument, NULL, OPT_JITTER },
        { "seed", required_argument, NULL, OPT_SEED },
        { "ctx", required_argument, NULL, OPT_CTX },
        { "sse-ping-interval-ms", required_argument, NULL, OPT_PING },
        { "stall-after", required_argument, NULL, OPT_STALL_AFTER },
        { "stall-ms", required_argument, NULL, OPT_STALL_MS },
        { "die-after", required_argument, NULL, OPT_DIE_AFTER },
        { "refuse", no_argument, NULL, OPT_REFUSE },
        { "fail-status", required_argument, NULL, OPT_FAIL },
        { "loading-ms", required_argument, NULL, OPT_LOADING },
        { "flavor", required_argument, NULL, OPT_FLAVOR },
        { "canary", required_argument, NULL, OPT_CANARY },
        { "seq", no_argument, NULL, OPT_SEQ },
        { "help", no_argument, NULL, OPT_HELP },
        { NULL, 0, NULL, 0 },
    };
    int64_t n;
    int o, rc = 0;
    bool model_set = false, ping_set = false;

    *fl = &sim_flavor_llamacpp;
    snprintf(cf->listen, sizeof(cf->listen), "127.0.0.1:18081");
    cf->slots = 2;
    cf->prefill_tps = 200;
    cf->decode_tps = 40;
    cf->jitter = 0;
    cf->seed = 1;
    cf->ctx_tokens = 2048;
    cf->ping_ms = 30000;
    cf->stall_after = -1;
    cf->stall_ms = 0;
    cf->die_after = -1;
    cf->refuse = false;
    cf->seq = false;
    cf->fail_status = 0;
    cf->loading_ms = 0;
    cf->canary[0] = '\0';

    while (rc == 0 && (o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case OPT_LISTEN:
            if (strlen(optarg) >= sizeof(cf->listen)) {
                fprintf(stderr, "pitot-sim: --listen: too long\n");
                rc = -1;
            }
            snprintf(cf->listen, sizeof(cf->listen), "%s", optarg);
            break;
        case OPT_SLOTS:
            rc = sim_int("slots", optarg, 1, SIM_MAX_SLOTS, &n);
            cf->slots = (int)n;
            break;
        case OPT_MODEL:
            if (strlen(optarg) >= sizeof(cf->model) || optarg[0] == '\0') {
                fprintf(stderr, "pitot-sim: --model: 1 to %zu bytes\n", sizeof(cf->model) - 1);
                rc = -1;
            }
            snprintf(cf->model, sizeof(cf->model), "%s", optarg);
            model_set = true;
            break;
        case OPT_PREFILL:
            rc = sim_num("prefill-tokens-per-s", optarg, 1e-3, 1e9, &cf->prefill_tps);
            break;
        case OPT_TPS: rc = sim_num("tokens-per-s", optarg, 1e-3, 1e6, &cf->decode_tps); break;
        case OPT_JITTER: rc = sim_num("jitter", optarg, 0, 1, &cf->jitter); break;
        case OPT_SEED:
            rc = sim_int("seed", optarg, 0, LLONG_MAX, &n);
            cf->seed = (uint64_t)n;
            break;
        case OPT_CTX: rc = sim_int("ctx", optarg, 1, 1 << 24, &cf->ctx_tokens); break;
        case OPT_PING:
            rc = sim_int("sse-ping-interval-ms", optarg, -1, 86400000, &cf->ping_ms);
            ping_set = true;
            break;
        case OPT_STALL_AFTER:
            rc = sim_int("stall-after", optarg, 0, 1 << 24, &cf->stall_after);
            break;
        case OPT_STALL_MS: rc = sim_int("stall-ms", optarg, 0, 86400000, &cf->stall_ms); break;
        case OPT_DIE_AFTER: rc = sim_int("die-after", optarg, 0, 1 << 24, &cf->die_after); break;
        case OPT_REFUSE: cf->refuse = true; break;
        case OPT_SEQ: cf->seq = true; break;
        case OPT_FAIL:
            rc = sim_int("fail-status", optarg, 400, 599, &n);
            cf->fail_status = (int)n;
            break;
        case OPT_LOADING: rc = sim_int("loading-ms", optarg, 0, 86400000, &cf->loading_ms); break;
        case OPT_FLAVOR:
            *fl = sim_flavor_find(optarg);
            if (*fl == NULL) {
                fprintf(stderr,
                        "pitot-sim: --flavor: expected llamacpp, vllm, tgi or sglang, got '%s'\n",
                        optarg);
                rc = -1;
            }
            break;
        case OPT_CANARY:
            if (optarg[0] == '\0' || strlen(optarg) + 2 > sizeof(cf->canary) ||
                optarg[strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789-")] != '\0') {
                fprintf(stderr, "pitot-sim: --canary: 1 to %zu letters, digits or '-'\n",
                        sizeof(cf->canary) - 2);
                rc = -1;
                break;
            }
            snprintf(cf->canary, sizeof(cf->canary), " %s", optarg);
            break;
        case OPT_HELP:
        case 'h': sim_usage(stdout); exit(0);
        default: sim_usage(stderr); rc = -1;
        }
    }
    if (rc == 0 && optind < argc) {
        fprintf(stderr, "pitot-sim: unexpected argument '%s'\n", argv[optind]);
        rc = -1;
    }
    if (rc == 0 && !model_set)
        snprintf(cf->model, sizeof(cf->model), "%s", (*fl)->default_model);
    if (rc == 0 && !ping_set)
        cf->ping_ms = (*fl)->ping_ms;
    return rc;
}

/* Splits "HOST:PORT" or "[V6]:PORT" into host and port buffers. */
static int sim_split_listen(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(s, ':');
    const char *h = s;
    size_t hl;

    if (colon == NULL || colon[1] == '\0')
        return -1;
    hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        h = s + 1;
        hl -= 2;
    }
    if (hl == 0 || hl >= hcap || strlen(colon + 1) >= pcap)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, pcap, "%s", colon + 1);
    return 0;
}

static void sim_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    if (sim_conn_accept(arg, fd) != 0)
        fprintf(stderr, "pitot-sim: out of memory accepting a connection\n");
}

static void sim_accept_error_cb(struct evconnlistener *l, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();

    (void)l;
    (void)arg;
    /* EMFILE and friends: keep listening, the next accept may succeed. */
    fprintf(stderr, "pitot-sim: accept: %s\n", evutil_socket_error_to_string(e));
}

static void sim_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    fprintf(stderr, "pitot-sim: signal %d, exiting\n", (int)sig);
    event_base_loopbreak(arg);
}

static struct evconnlistener *sim_listen(struct sim_srv *s)
{
    char host[256], port[16], shown[300];
    struct addrinfo hints, *ai = NULL;
    struct evconnlistener *l;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    unsigned real_port = 0;
    int rc;

    if (sim_split_listen(s->conf.listen, host, sizeof(host), port, sizeof(port)) != 0) {
        fprintf(stderr, "pitot-sim: --listen: expected HOST:PORT, got '%s'\n", s->conf.listen);
        return NULL;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "pitot-sim: --listen %s: %s\n", s->conf.listen, gai_strerror(rc));
        return NULL;
    }
    /* nginx's and pitot's backlog: thousands of streams may connect at once. */
    l = evconnlistener_new_bind(s->base, sim_accept_cb, s,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 511, ai->ai_addr,
                                (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (l == NULL) {
        fprintf(stderr, "pitot-sim: cannot listen on %s: %s\n", s->conf.listen, strerror(errno));
        return NULL;
    }
    evconnlistener_set_error_cb(l, sim_accept_error_cb);
    if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            real_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            real_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(shown, sizeof(shown), strchr(host, ':') ? "[%s]" : "%s", host);
    fprintf(stderr, "pitot-sim listening on %s:%u\n", shown, real_port);
    fflush(stderr);
    return l;
}

int main(int argc, char **argv)
{
    static struct sim_srv srv;
    struct event_config *ecf;
    struct evconnlistener *l;
    struct event *sig_term, *sig_int;
    int rc = 1;

    if (sim_parse_args(&srv.conf, &srv.flavor, argc, argv) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IOLBF, 0);
    srv.start_us = clk_now_us();
    srv.start_wall_us = clk_wall_us();
    srv.start_wall_s = srv.start_wall_us / 1000000;
    TAILQ_INIT(&srv.conns);

    ecf = event_config_new();
    if (ecf)
        event_config_set_flag(ecf, EVENT_BASE_FLAG_PRECISE_TIMER);
    srv.base = ecf ? event_base_new_with_config(ecf) : NULL;
    if (ecf)
        event_config_free(ecf);
    if (srv.base == NULL || sim_sched_init(&srv) != 0 ||
        (srv.flavor->init && srv.flavor->init(&srv) != 0)) {
        fprintf(stderr, "pitot-sim: out of memory\n");
        return 1;
    }
    sig_term = evsignal_new(srv.base, SIGTERM, sim_signal_cb, srv.base);
    sig_int = evsignal_new(srv.base, SIGINT, sim_signal_cb, srv.base);
    if (sig_term && sig_int && evsignal_add(sig_term, NULL) == 0 &&
        evsignal_add(sig_int, NULL) == 0) {
        l = sim_listen(&srv);
        if (l) {
            event_base_dispatch(srv.base);
            evconnlistener_free(l);
            rc = 0;
        }
    }
    sim_conn_free_all(&srv);
    /* a freed bufferevent whose deferred callback was pending (its peer had
     * just closed) is released only by a turn of the loop */
    event_base_loop(srv.base, EVLOOP_NONBLOCK);
    if (sig_term)
        event_free(sig_term);
    if (sig_int)
        event_free(sig_int);
    if (srv.flavor->release)
        srv.flavor->release(&srv);
    sim_sched_release(&srv);
    event_base_free(srv.base);
    return rc;
}
