/* pitot-load: argv, address, signals and wiring; the work is in run.c/conn.c.
 * Exit 0 when the run completed (even with failed requests), 1 on setup
 * failures, 2 on bad usage. */
#include "load.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* Each slot holds at most one socket: make room for C of them if we may. */
static void load_raise_nofile(unsigned concurrency)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)concurrency + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
}

static void load_on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    load_run_interrupt(arg);
}

int main(int argc, char **argv)
{
    struct load_opts o;
    struct addrinfo hints, *ai;
    struct sockaddr_storage addrs[LOAD_MAX_URLS];
    socklen_t addrlens[LOAD_MAX_URLS];
    struct event_base *base = NULL;
    struct event *sigint = NULL, *sigterm = NULL;
    struct load_run *run = NULL;
    FILE *json = NULL;
    unsigned i;
    int r, rc = LOAD_EXIT_SETUP;

    r = load_opts_parse(&o, argc, argv);
    if (r != 0)
        return r > 0 ? LOAD_EXIT_OK : LOAD_EXIT_USAGE;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    for (i = 0; i < o.nurls; i++) {
        ai = NULL;
        r = getaddrinfo(o.urls[i].host, o.urls[i].port, &hints, &ai);
        if (r != 0 || ai == NULL) {
            fprintf(stderr, "pitot-load: cannot resolve %s: %s\n", o.urls[i].host,
                    r != 0 ? gai_strerror(r) : "no address");
            if (ai)
                freeaddrinfo(ai);
            return LOAD_EXIT_SETUP;
        }
        memcpy(&addrs[i], ai->ai_addr, ai->ai_addrlen);
        addrlens[i] = ai->ai_addrlen;
        freeaddrinfo(ai);
    }
    if (o.json_path) {
        json = fopen(o.json_path, "w");
        if (json == NULL) {
            fprintf(stderr, "pitot-load: cannot open --json %s: %s\n", o.json_path,
                    strerror(errno));
            goto out;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    load_raise_nofile(o.concurrency);
    base = event_base_new();
    if (base == NULL) {
        fprintf(stderr, "pitot-load: cannot create the event loop\n");
        goto out;
    }
    run = load_run_new(base, &o, addrs, addrlens, json);
    sigint = evsignal_new(base, SIGINT, load_on_signal, run);
    sigterm = evsignal_new(base, SIGTERM, load_on_signal, run);
    if (run == NULL || sigint == NULL || sigterm == NULL || evsignal_add(sigint, NULL) < 0 ||
        evsignal_add(sigterm, NULL) < 0) {
        fprintf(stderr, "pitot-load: setup failed (out of memory?)\n");
        goto out;
    }
    if (load_run_start(run) < 0 || event_base_dispatch(base) < 0 || load_run_status(run) < 0) {
        fprintf(stderr, "pitot-load: the run failed (out of memory?)\n");
        goto out;
    }
    load_stats_print(load_run_stats(run), stdout, load_run_duration_us(run), o.open_loop,
                     load_run_interrupted(run), o.quiet);
    rc = LOAD_EXIT_OK;
    if (fflush(stdout) != 0) {
        fprintf(stderr, "pitot-load: writing the summary: %s\n", strerror(errno));
        rc = LOAD_EXIT_SETUP;
    }
out:
    if (json && fclose(json) != 0 && rc == LOAD_EXIT_OK) {
        fprintf(stderr, "pitot-load: writing --json %s: %s\n", o.json_path, strerror(errno));
        rc = LOAD_EXIT_SETUP;
    }
    if (sigint)
        event_free(sigint);
    if (sigterm)
        event_free(sigterm);
    load_run_free(run);
    if (base)
        event_base_free(base);
    return rc;
}
