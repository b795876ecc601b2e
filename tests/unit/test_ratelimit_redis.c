/* Unit tests for ratelimit_redis against a real redis-server (started per test
 * on a free loopback port, stopped by its PID in the teardown): requests,
 * tokens and concurrency limits of a tier and a key, views as the in-memory
 * table computes them, two connections sharing one budget, Redis killed,
 * stopped, restarted and its scripts flushed, cancels, timeouts, AUTH and
 * SELECT, host names, and freeing with admissions pending. */
#include "pitot/route/ratelimit_redis.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "pitot/format/config.h"
#include "pitot/route/ratelimit.h"
#include "pitot/util/clock.h"
#include "pitot/util/log.h"

#define MIN_US 60000000ULL
#define DAY_US 86400000000ULL

static struct cfg cfg; /* large: static, not on the stack */
static struct event_base *base;
static struct event *tick; /* wakes the loop: EVLOOP_ONCE returns at least this often */
static pid_t redis_pid = -1;
static uint16_t redis_port;
static char redis_bin[PATH_MAX];
static char redis_pass[64]; /* the running server's requirepass ("" none) */
static FILE *log_file;      /* pitot's log lines during a test */

/* ---- the server ---------------------------------------------------------- */

/* redis-server on PATH, else /usr/bin's; false when there is none. */
static bool redis_find(void)
{
    const char *path = getenv("PATH");
    char dir[PATH_MAX - 16];

    while (path != NULL && *path != '\0') {
        size_t n = strcspn(path, ":");

        if (n > 0 && n < sizeof(dir)) {
            memcpy(dir, path, n);
            dir[n] = '\0';
            snprintf(redis_bin, sizeof(redis_bin), "%s/redis-server", dir);
            if (access(redis_bin, X_OK) == 0)
                return true;
        }
        path += n + (path[n] == ':');
    }
    snprintf(redis_bin, sizeof(redis_bin), "/usr/bin/redis-server");
    return access(redis_bin, X_OK) == 0;
}

/* A loopback port nothing listens on now. */
static uint16_t free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port = 0;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A blocking connection to the test's server, authenticated; NULL when it
 * does not answer PING. */
static redisContext *redis_sync(void)
{
    struct timeval tv = { 0, 200000 };
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    redisReply *r;

    if (rc == NULL || rc->err != 0) {
        if (rc != NULL)
            redisFree(rc);
        return NULL;
    }
    if (redis_pass[0] != '\0') {
        r = redisCommand(rc, "AUTH %s", redis_pass);
        if (r != NULL)
            freeReplyObject(r);
    }
    r = redisCommand(rc, "PING");
    if (r == NULL || r->type != REDIS_REPLY_STATUS || strcmp(r->str, "PONG") != 0) {
        if (r != NULL)
            freeReplyObject(r);
        redisFree(rc);
        return NULL;
    }
    freeReplyObject(r);
    return rc;
}

/* Starts redis-server on redis_port (with one extra "--option value", or
 * none) and waits until it answers PING; -1 with a message when it does not. */
static int redis_start(const char *opt, const char *val)
{
    char port[8];
    uint64_t deadline = clk_now_us() + 10000000;
    redisContext *rc;
    int st;

    snprintf(port, sizeof(port), "%u", (unsigned)redis_port);
    redis_pid = fork();
    if (redis_pid < 0) {
        print_error("fork: %s\n", strerror(errno));
        return -1;
    }
    if (redis_pid == 0) {
        int null = open("/dev/null", O_RDWR);

        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives the tests */
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        if (opt != NULL)
            execl(redis_bin, redis_bin, "--port", port, "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--loglevel", "warning", opt, val, (char *)NULL);
        else
            execl(redis_bin, redis_bin, "--port", port, "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    while (clk_now_us() < deadline) {
        if (waitpid(redis_pid, &st, WNOHANG) == redis_pid) {
            print_error("%s exited at start (status %d)\n", redis_bin, st);
            redis_pid = -1;
            return -1;
        }
        if ((rc = redis_sync()) != NULL) {
            redisFree(rc);
            return 0;
        }
        pause_ms(10);
    }
    print_error("%s did not answer on port %u\n", redis_bin, (unsigned)redis_port);
    return -1;
}

/* Sends sig to the server and, unless it only pauses it, reaps it. */
static void redis_signal(int sig)
{
    if (redis_pid <= 0)
        return;
    kill(redis_pid, sig);
    if (sig == SIGSTOP || sig == SIGCONT)
        return;
    while (waitpid(redis_pid, NULL, 0) < 0 && errno == EINTR)
        ;
    redis_pid = -1;
}

/* One command on a blocking connection; the reply's integer (-1: not one). */
static long long redis_int(const char *fmt, const char *arg)
{
    redisContext *rc = redis_sync();
    redisReply *r;
    long long v = -1;

    assert_non_null(rc);
    r = redisCommand(rc, fmt, arg);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    freeReplyObject(r);
    redisFree(rc);
    return v;
}

/* ---- the loop ------------------------------------------------------------ */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* What done was told. */
struct answer {
    int n; /* times done was called */
    struct rl_redis_result res;
};

static void on_done(void *ud, const struct rl_redis_result *res)
{
    struct answer *a = ud;

    a->n++;
    a->res = *res;
}

/* Runs the loop until *n reaches want or ms pass; true when it did. */
static bool run_until(const int *n, int want, unsigned ms)
{
    uint64_t deadline = clk_now_us() + (uint64_t)ms * 1000;

    while (*n < want && clk_now_us() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    return *n >= want;
}

/* Runs the loop for ms. */
static void run_for(unsigned ms)
{
    int never = 0;

    run_until(&never, 1, ms);
}

/* Asks, checks that done was not called from inside the call. */
static struct rl_redis_req *ask(struct rl_redis *rr, unsigned tier, int key, uint64_t tokens,
                                const char *id, struct answer *a)
{
    struct rl_redis_req *q;

    memset(a, 0, sizeof(*a));
    q = rl_redis_admit(rr, &cfg, tier, key, tokens, id, on_done, a);
    assert_non_null(q);
    assert_int_equal(a->n, 0);
    return q;
}

/* Asks and waits for the answer, which must come (answered or not). */
static void admit(struct rl_redis *rr, unsigned tier, int key, uint64_t tokens, const char *id,
                  struct answer *a)
{
    ask(rr, tier, key, tokens, id, a);
    assert_true(run_until(&a->n, 1, 3000));
    assert_int_equal(a->n, 1);
}

/* Admitted by Redis. */
static void admit_ok(struct rl_redis *rr, unsigned tier, int key, uint64_t tokens, const char *id)
{
    struct answer a;

    admit(rr, tier, key, tokens, id, &a);
    assert_true(a.res.answered);
    assert_int_equal(a.res.limit, RL_OK);
}

/* A connection to cfg's Redis (connecting: admissions wait for it). */
static struct rl_redis *connect_rr(void)
{
    struct rl_redis *rr = rl_redis_new(base, &cfg);

    assert_non_null(rr);
    return rr;
}

/* Waits until rr answers: an admission on tier 1 (limited by cfg_setup). */
static void warm(struct rl_redis *rr)
{
    admit_ok(rr, 1, -1, 0, "warm");
}

/* ---- the log ------------------------------------------------------------- */

/* How many of pitot's log lines so far contain s. */
static int log_count(const char *s)
{
    char buf[16384];
    size_t n;
    int count = 0;
    char *p, *line;

    fflush(log_file);
    n = (size_t)pread(fileno(log_file), buf, sizeof(buf) - 1, 0);
    buf[n < sizeof(buf) ? n : 0] = '\0';
    for (line = buf; line != NULL && *line != '\0'; line = p) {
        p = strchr(line, '\n');
        if (p != NULL)
            *p++ = '\0';
        count += strstr(line, s) != NULL;
    }
    return count;
}

/* ---- fixtures ------------------------------------------------------------ */

/* A configuration with tiers "default" (0) and "gold" (1), keys "k0" and
 * "k1" of tier 0, ratelimit.redis at the test's server, and no limits but
 * gold's million requests a minute (see warm). */
static void cfg_setup(unsigned timeout_ms)
{
    size_t i;

    cfg_init(&cfg);
    cfg.ratelimit_default_max_tokens = 1024;
    snprintf(cfg.tiers[1].name, sizeof(cfg.tiers[1].name), "gold");
    cfg.ntiers = 2;
    for (i = 0; i < 2; i++) {
        memset(cfg.keys[i].sha256, 0xA0 + (int)i, sizeof(cfg.keys[i].sha256));
        snprintf(cfg.keys[i].name, sizeof(cfg.keys[i].name), "k%zu", i);
        cfg.key_tier[i] = 0;
    }
    cfg.nkeys = 2;
    snprintf(cfg.ratelimit_redis, sizeof(cfg.ratelimit_redis), "redis://127.0.0.1:%u",
             (unsigned)redis_port);
    snprintf(cfg.ratelimit_redis_host, sizeof(cfg.ratelimit_redis_host), "127.0.0.1");
    cfg.ratelimit_redis_port = redis_port;
    cfg.ratelimit_redis_db = 0;
    cfg.ratelimit_redis_password[0] = '\0';
    snprintf(cfg.ratelimit_redis_prefix, sizeof(cfg.ratelimit_redis_prefix), "pitot:");
    cfg.ratelimit_redis_timeout_ms = timeout_ms;
    cfg.tiers[1].limits.requests_per_minute = 1000000;
}

static struct cfg_limits limits(unsigned rpm, unsigned long long tpm, unsigned conc,
                                unsigned long long tpd)
{
    struct cfg_limits l = { rpm, tpm, conc, tpd };

    return l;
}

static int setup_common(const char *opt, const char *val)
{
    struct timeval tv = { 0, 2000 };

    if (!redis_find()) {
        print_error("redis-server not found on PATH nor at /usr/bin/redis-server: these tests "
                    "need it (Debian: apt-get install redis-server, or make deps)\n");
        return -1;
    }
    signal(SIGPIPE, SIG_IGN); /* hiredis writes to sockets Redis may have closed */
    log_file = tmpfile();
    if (log_file == NULL)
        return -1;
    log_hooks_set(fileno(log_file), NULL, NULL);
    base = event_base_new();
    tick = base != NULL ? event_new(base, -1, EV_PERSIST, tick_cb, NULL) : NULL;
    if (tick == NULL || event_add(tick, &tv) != 0)
        return -1;
    redis_port = free_port();
    snprintf(redis_pass, sizeof(redis_pass), "%s",
             opt != NULL && strcmp(opt, "--requirepass") == 0 ? val : "");
    if (redis_port == 0 || redis_start(opt, val) != 0)
        return -1;
    cfg_setup(250);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return setup_common(NULL, NULL);
}

static int setup_auth(void **state)
{
    (void)state;
    return setup_common("--requirepass", "s3cret");
}

/* Runs whatever the test did: the server stopped by its PID, everything freed. */
static int teardown(void **state)
{
    (void)state;
    if (redis_pid > 0) {
        kill(redis_pid, SIGCONT); /* a stopped server would not see SIGTERM */
        redis_signal(SIGTERM);
    }
    if (tick != NULL)
        event_free(tick);
    tick = NULL;
    if (base != NULL)
        event_base_free(base);
    base = NULL;
    log_hooks_set(-1, NULL, NULL);
    if (log_file != NULL)
        fclose(log_file);
    log_file = NULL;
    cfg_release(&cfg);
    return 0;
}

/* ---- tests --------------------------------------------------------------- */

/* N requests per minute of a tier from idle: N admitted, the next refused by
 * the tier, told to wait about 60/N s; the hash expires once idle. */
static void test_requests_tier(void **state)
{
    struct rl_redis *rr;
    struct answer a;
    long long ttl;
    int i;

    (void)state;
    cfg.tiers[0].limits = limits(5, 0, 0, 0);
    rr = connect_rr();
    for (i = 0; i < 5; i++) {
        admit(rr, 0, -1, 10, "r", &a);
        assert_true(a.res.answered);
        assert_int_equal(a.res.limit, RL_OK);
        assert_false(a.res.who_key);
        assert_int_equal(a.res.view.limit_requests, 5);
        assert_int_equal(a.res.view.remaining_requests, 4 - i);
        assert_int_equal(a.res.view.limit_tokens, 0);
    }
    admit(rr, 0, -1, 10, "r", &a);
    assert_true(a.res.answered);
    assert_int_equal(a.res.limit, RL_REQUESTS);
    assert_false(a.res.who_key);
    assert_true(a.res.retry_us <= 12000000 && a.res.retry_us > 10000000);
    assert_int_equal(a.res.view.remaining_requests, 0);
    assert_true(a.res.view.reset_requests_us <= 60000000 &&
                a.res.view.reset_requests_us > 58000000);
    /* the other tier is not touched */
    cfg.tiers[1].limits = limits(1, 0, 0, 0);
    admit_ok(rr, 1, -1, 10, "r");
    /* arrival times up to a minute ahead: gone a minute after that */
    ttl = redis_int("PTTL %s", "pitot:t:default");
    assert_true(ttl > 60000 && ttl <= 120000);
    assert_int_equal(redis_int("EXISTS %s", "pitot:t:default:c"), 0);
    assert_int_equal(rl_redis_failures(rr), 0);
    rl_redis_free(rr);
}

/* A key's own limit: its view and its refusal (who_key). */
static void test_requests_key(void **state)
{
    struct rl_redis *rr;
    struct answer a;
    int i;

    (void)state;
    cfg.keys[0].limits = limits(3, 0, 0, 0);
    rr = connect_rr();
    for (i = 0; i < 3; i++) {
        admit(rr, 0, 0, 1, "r", &a);
        assert_int_equal(a.res.limit, RL_OK);
        assert_true(a.res.who_key);
        assert_int_equal(a.res.view.limit_requests, 3);
        assert_int_equal(a.res.view.remaining_requests, 2 - i);
    }
    admit(rr, 0, 0, 1, "r", &a);
    assert_true(a.res.answered);
    assert_int_equal(a.res.limit, RL_REQUESTS);
    assert_true(a.res.who_key);
    assert_true(a.res.retry_us <= 20000000 && a.res.retry_us > 18000000);
    /* key k1 has no limits, nor has the tier: admitted without asking */
    admit(rr, 0, 1, 1, "r", &a);
    assert_true(a.res.answered);
    assert_int_equal(a.res.limit, RL_OK);
    assert_false(a.res.who_key);
    assert_int_equal(a.res.view.limit_requests, 0);
    assert_int_equal(redis_int("EXISTS %s", "pitot:k:k0"), 1);
    assert_int_equal(redis_int("EXISTS %s", "pitot:k:k1"), 0);
    assert_int_equal(redis_int("EXISTS %s", "pitot:t:default"), 0);
    rl_redis_free(rr);
}

/* A tier limit shared by two keys with limits of their own: the key refuses
 * its own excess (who_key), the tier the second key's (not who_key), and a
 * refusal charges neither. */
static void test_key_and_tier(void **state)
{
    struct rl_redis *rr;
    struct answer a;

    (void)state;
    cfg.tiers[0].limits = limits(3, 0, 0, 0);
    cfg.keys[0].limits = limits(2, 0, 0, 0);
    cfg.keys[1].limits = limits(2, 0, 0, 0);
    rr = connect_rr();
    admit_ok(rr, 0, 0, 1, "a");
    admit_ok(rr, 0, 0, 1, "b");
    admit(rr, 0, 0, 1, "c", &a);
    assert_int_equal(a.res.limit, RL_REQUESTS);
    assert_true(a.res.who_key);
    admit(rr, 0, 1, 1, "d", &a); /* the tier's third */
    assert_int_equal(a.res.limit, RL_OK);
    assert_true(a.res.who_key); /* the view is the key's */
    assert_int_equal(a.res.view.remaining_requests, 1);
    admit(rr, 0, 1, 1, "e", &a); /* k1 has one left, the tier none */
    assert_true(a.res.answered);
    assert_int_equal(a.res.limit, RL_REQUESTS);
    assert_false(a.res.who_key);
    assert_int_equal(a.res.view.limit_requests, 2); /* k1's view, not charged */
    assert_int_equal(a.res.view.remaining_requests, 1);
    rl_redis_free(rr);
}

/* Tokens reserved, refused while the reservation holds, let in once the
 * settlement refunded it; a reservation larger than the limit never fits;
 * tokens per day. */
static void test_tokens(void **state)
{
    struct rl_redis *rr;
    struct answer a;

    (void)state;
    cfg.tiers[0].limits = limits(0, 1000, 0, 0);
    cfg.tiers[1].limits = limits(0, 0, 0, 500);
    rr = connect_rr();
    admit(rr, 0, -1, 800, "t1", &a);
    assert_int_equal(a.res.limit, RL_OK);
    assert_int_equal(a.res.view.limit_tokens, 1000);
    assert_int_equal(a.res.view.remaining_tokens, 200);
    admit(rr, 0, -1, 300, "t2", &a);
    assert_int_equal(a.res.limit, RL_TOKENS);
    assert_true(a.res.retry_us <= 6000000 && a.res.retry_us > 5000000); /* 100 tokens */
    admit(rr, 0, -1, 1001, "t3", &a);
    assert_int_equal(a.res.limit, RL_TOKENS);
    assert_int_equal(a.res.retry_us, 0);
    /* used 100 of the 800: 700 back */
    rl_redis_settle(rr, &cfg, 0, -1, 800, 100, "t1");
    admit(rr, 0, -1, 300, "t4", &a);
    assert_int_equal(a.res.limit, RL_OK);
    assert_int_equal(a.res.view.remaining_tokens, 600);
    /* used more than reserved: charged past the limit */
    rl_redis_settle(rr, &cfg, 0, -1, 300, 1500, "t4");
    admit(rr, 0, -1, 0, "t5", &a);
    assert_int_equal(a.res.limit, RL_TOKENS);
    assert_int_equal(a.res.view.remaining_tokens, 0);

    admit(rr, 1, -1, 400, "d1", &a);
    assert_int_equal(a.res.limit, RL_OK);
    admit(rr, 1, -1, 200, "d2", &a);
    assert_int_equal(a.res.limit, RL_TOKENS_DAY);
    /* 100 tokens of a day's 500 */
    assert_true(a.res.retry_us <= DAY_US / 5 && a.res.retry_us > DAY_US / 5 - 2000000);
    admit(rr, 1, -1, 501, "d3", &a);
    assert_int_equal(a.res.limit, RL_TOKENS_DAY);
    assert_int_equal(a.res.retry_us, 0);
    rl_redis_settle(rr, &cfg, 1, -1, 400, 0, "d1");
    admit_ok(rr, 1, -1, 500, "d4");
    rl_redis_free(rr);
}

/* Requests at once: refused at the limit (retry 0), let in again once one
 * ends; its running set expires after RL_REDIS_RUNNING_TTL_S. */
static void test_concurrent(void **state)
{
    struct rl_redis *rr;
    struct answer a;
    long long ttl;

    (void)state;
    cfg.tiers[0].limits = limits(0, 0, 2, 0);
    rr = connect_rr();
    admit_ok(rr, 0, -1, 1, "c1");
    admit_ok(rr, 0, -1, 1, "c2");
    admit(rr, 0, -1, 1, "c3", &a);
    assert_true(a.res.answered);
    assert_int_equal(a.res.limit, RL_CONCURRENT);
    assert_int_equal(a.res.retry_us, 0);
    assert_false(a.res.who_key);
    assert_int_equal(redis_int("ZCARD %s", "pitot:t:default:c"), 2);
    ttl = redis_int("PTTL %s", "pitot:t:default:c");
    assert_true(ttl > RL_REDIS_RUNNING_TTL_S * 1000LL - 10000 &&
                ttl <= RL_REDIS_RUNNING_TTL_S * 1000LL + 60000);
    rl_redis_settle(rr, &cfg, 0, -1, 1, 1, "c1");
    admit_ok(rr, 0, -1, 1, "c3");
    admit(rr, 0, -1, 1, "c4", &a);
    assert_int_equal(a.res.limit, RL_CONCURRENT);
    rl_redis_settle(rr, &cfg, 0, -1, 1, 1, "c2");
    rl_redis_settle(rr, &cfg, 0, -1, 1, 1, "c3");
    admit_ok(rr, 0, -1, 1, "c4");
    assert_int_equal(redis_int("ZCARD %s", "pitot:t:default:c"), 1);
    rl_redis_free(rr);
}

/* One step of test_views: an admission or a settlement, in Redis and in
 * the in-memory table at one fixed time. */
struct step {
    int key;
    uint64_t tokens;
    long long used; /* >= 0: settle the reservation `tokens` as used */
};

/* A sequence of admissions and settlements gives, in Redis, the views
 * (limits, remaining counts) and refusals the in-memory table gives at one
 * fixed time; resets differ by no more than the time the sequence took
 * (Redis's clock runs meanwhile). The limits refill one unit in 600 ms or
 * more: slower than the sequence. */
static void test_views(void **state)
{
    static const struct step steps[] = {
        { -1, 10, -1 }, { -1, 20, -1 }, { -1, 20, 5 },  { 0, 30, -1 }, { 0, 30, -1 },
        { 0, 15, -1 },  { -1, 80, -1 }, { 0, 15, 0 },   { 0, 30, 2 },  { -1, 25, -1 },
        { 1, 5, -1 },   { 1, 60, -1 },  { -1, 10, 40 }, { 0, 1, -1 },  { -1, 1, -1 },
        { 0, 1, -1 },   { 0, 1, -1 },   { -1, 1, -1 },  { -1, 1, -1 },
    };
    const uint64_t now = 5000000000ULL;
    struct ratelimit *rl;
    struct rl_redis *rr;
    uint64_t t0;
    size_t i;

    (void)state;
    cfg.tiers[0].limits = limits(10, 100, 0, 0);
    cfg.keys[0].limits = limits(4, 50, 0, 1000);
    rl = rl_new(&cfg);
    assert_non_null(rl);
    rr = connect_rr();
    warm(rr);
    t0 = clk_now_us();
    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        const struct step *s = &steps[i];
        struct rl_view v;
        uint64_t retry, elapsed;
        enum rl_limit lim;
        struct answer a;
        bool who;

        if (s->used >= 0) {
            rl_redis_settle(rr, &cfg, 0, s->key, s->tokens, (uint64_t)s->used, "v");
            rl_settle(rl, &cfg, 0, s->key, now, s->tokens, (uint64_t)s->used);
            continue;
        }
        lim = rl_admit(rl, &cfg, 0, s->key, now, s->tokens, &retry, &v, &who);
        admit(rr, 0, s->key, s->tokens, "v", &a);
        elapsed = clk_now_us() - t0 + 1000;
        assert_true(a.res.answered);
        assert_int_equal(a.res.limit, lim);
        assert_int_equal(a.res.who_key, who);
        assert_int_equal(a.res.view.limit_requests, v.limit_requests);
        assert_int_equal(a.res.view.remaining_requests, v.remaining_requests);
        assert_int_equal(a.res.view.limit_tokens, v.limit_tokens);
        assert_int_equal(a.res.view.remaining_tokens, v.remaining_tokens);
        assert_true(a.res.view.reset_requests_us <= v.reset_requests_us);
        assert_true(v.reset_requests_us - a.res.view.reset_requests_us <= elapsed);
        assert_true(a.res.view.reset_tokens_us <= v.reset_tokens_us);
        assert_true(v.reset_tokens_us - a.res.view.reset_tokens_us <= elapsed);
        if (lim != RL_OK) {
            assert_true(a.res.retry_us <= retry);
            assert_true(retry - a.res.retry_us <= elapsed);
        }
    }
    assert_true(clk_now_us() - t0 < 600000); /* else the refill makes it moot */
    rl_redis_free(rr);
    rl_free(rl);
}

/* Two connections on two loops sharing one Redis, their admissions
 * interleaved: never more than the limit together. */
static void test_two_loops(void **state)
{
    struct event_base *base2 = event_base_new();
    struct timeval tv = { 0, 1000 };
    struct event *tick2;
    struct rl_redis *rr, *rr2;
    struct answer a[40];
    int i, done, admitted = 0, running = 0;

    (void)state;
    assert_non_null(base2);
    tick2 = event_new(base2, -1, EV_PERSIST, tick_cb, NULL);
    event_add(tick2, &tv);
    cfg.tiers[0].limits = limits(10, 0, 0, 0);
    cfg.tiers[1].limits = limits(0, 0, 3, 0);
    rr = connect_rr();
    rr2 = rl_redis_new(base2, &cfg);
    assert_non_null(rr2);
    for (i = 0; i < 40; i++) {
        struct rl_redis *r = i % 2 ? rr2 : rr;
        char id[16];

        snprintf(id, sizeof(id), "q%d", i);
        memset(&a[i], 0, sizeof(a[i]));
        assert_non_null(rl_redis_admit(r, &cfg, i < 30 ? 0 : 1, -1, 1, id, on_done, &a[i]));
        if (i % 3 == 0) { /* interleave: the loops run between some of them */
            event_base_loop(base, EVLOOP_ONCE);
            event_base_loop(base2, EVLOOP_ONCE);
        }
    }
    for (i = 0; i < 30000; i++) {
        int k;

        for (done = 0, k = 0; k < 40; k++)
            done += a[k].n;
        if (done == 40)
            break;
        event_base_loop(base, EVLOOP_NONBLOCK);
        event_base_loop(base2, EVLOOP_ONCE);
    }
    assert_int_equal(done, 40);
    for (i = 0; i < 40; i++) {
        assert_true(a[i].res.answered);
        if (i < 30)
            admitted += a[i].res.limit == RL_OK;
        else
            running += a[i].res.limit == RL_OK;
        assert_true(a[i].res.limit == RL_OK ||
                    a[i].res.limit == (i < 30 ? RL_REQUESTS : RL_CONCURRENT));
    }
    assert_int_equal(admitted, 10);
    assert_int_equal(running, 3);
    rl_redis_free(rr2);
    rl_redis_free(rr);
    event_free(tick2);
    event_base_free(base2);
}

/* Redis killed: the admission pending and the next ones are unanswered
 * within the timeout, the next at once; one log line. Started again on the
 * same port: answered again after the reconnection (its data and scripts
 * lost), one log line. */
static void test_killed_and_back(void **state)
{
    struct rl_redis *rr;
    struct answer a;
    uint64_t t;
    int tries = 0;

    (void)state;
    cfg.tiers[0].limits = limits(100, 0, 0, 0);
    rr = connect_rr();
    admit_ok(rr, 0, -1, 1, "before");
    ask(rr, 0, -1, 1, "pending", &a);
    redis_signal(SIGKILL);
    t = clk_now_us();
    assert_true(run_until(&a.n, 1, 2000));
    assert_false(a.res.answered);
    assert_true(clk_now_us() - t < 300000); /* the timeout (250 ms) at most */
    t = clk_now_us();
    admit(rr, 0, -1, 1, "down", &a);
    assert_false(a.res.answered);
    assert_true(clk_now_us() - t < 100000); /* at once */
    assert_int_equal(rl_redis_failures(rr), 2);
    assert_int_equal(log_count("unreachable"), 1);
    assert_int_equal(log_count("answers again"), 0);
    run_for(1500); /* a failed reconnection: not logged again */
    assert_int_equal(log_count("unreachable"), 1);

    assert_int_equal(redis_start(NULL, NULL), 0);
    t = clk_now_us();
    do {
        admit(rr, 0, -1, 1, "after", &a);
        if (!a.res.answered)
            run_for(50);
    } while (!a.res.answered && ++tries < 100);
    assert_true(a.res.answered);
    assert_int_equal(a.res.limit, RL_OK);
    assert_true(clk_now_us() - t < 3000000);             /* a try a second */
    assert_int_equal(a.res.view.remaining_requests, 99); /* the restarted Redis was empty */
    assert_int_equal(log_count("unreachable"), 1);
    assert_int_equal(log_count("answers again"), 1);
    rl_redis_free(rr);
}

/* Redis's scripts flushed under a live connection: NOSCRIPT, the source is
 * sent again, for admissions and settlements alike. */
static void test_noscript(void **state)
{
    struct rl_redis *rr;
    struct answer a;
    redisContext *rc;
    redisReply *r;

    (void)state;
    cfg.tiers[0].limits = limits(0, 0, 1, 0);
    rr = connect_rr();
    admit_ok(rr, 0, -1, 1, "n1");
    rc = redis_sync();
    assert_non_null(rc);
    r = redisCommand(rc, "SCRIPT FLUSH");
    assert_non_null(r);
    freeReplyObject(r);
    rl_redis_settle(rr, &cfg, 0, -1, 1, 1, "n1");
    admit_ok(rr, 0, -1, 1, "n2"); /* only when n1's settlement went through */
    r = redisCommand(rc, "SCRIPT FLUSH");
    assert_non_null(r);
    freeReplyObject(r);
    admit(rr, 0, -1, 1, "n3", &a);
    assert_true(a.res.answered);
    assert_int_equal(a.res.limit, RL_CONCURRENT);
    redisFree(rc);
    assert_int_equal(rl_redis_failures(rr), 0);
    assert_int_equal(log_count("ratelimit"), 0);
    rl_redis_free(rr);
}

/* Cancelled before Redis answered: done is never called, and the admission
 * Redis made is settled back (the one asked meanwhile still sees it). A
 * cancel while Redis is down frees the request at once. */
static void test_cancel(void **state)
{
    struct rl_redis *rr;
    struct answer a, b;

    (void)state;
    cfg.tiers[0].limits = limits(0, 1000, 1, 0);
    rr = connect_rr();
    warm(rr);
    rl_redis_cancel(ask(rr, 0, -1, 900, "gone", &a));
    admit(rr, 0, -1, 1, "next", &b); /* sent before Redis answered "gone" */
    assert_true(b.res.answered);
    assert_int_equal(b.res.limit, RL_CONCURRENT);
    admit(rr, 0, -1, 1000, "last", &b); /* after the settlement: nothing used */
    assert_true(b.res.answered);
    assert_int_equal(b.res.limit, RL_OK);
    assert_int_equal(a.n, 0);

    redis_signal(SIGKILL);
    admit(rr, 0, -1, 1, "down", &b);
    assert_false(b.res.answered);
    rl_redis_cancel(ask(rr, 0, -1, 1, "gone2", &a));
    run_for(50);
    assert_int_equal(a.n, 0);
    rl_redis_free(rr);
}

/* Redis stopped (SIGSTOP): the admission is unanswered after the timeout;
 * its late answer, an admission, is settled back; the next admission
 * answered in time says so in the log. */
static void test_timeout(void **state)
{
    struct rl_redis *rr;
    struct answer a, b;
    uint64_t t;

    (void)state;
    cfg.ratelimit_redis_timeout_ms = 100;
    cfg.tiers[0].limits = limits(0, 0, 1, 0);
    rr = connect_rr();
    warm(rr);
    redis_signal(SIGSTOP);
    t = clk_now_us();
    admit(rr, 0, -1, 1, "slow", &a);
    t = clk_now_us() - t;
    assert_false(a.res.answered);
    /* libevent's timers run on CLOCK_MONOTONIC_COARSE: a few ms early at most */
    assert_true(t >= 90000 && t < 400000);
    assert_int_equal(rl_redis_failures(rr), 1);
    assert_int_equal(log_count("no answer within 100 ms"), 1);
    redis_signal(SIGCONT);
    admit(rr, 0, -1, 1, "next", &b); /* Redis counts "slow" until it settles back */
    assert_true(b.res.answered);
    assert_int_equal(b.res.limit, RL_CONCURRENT);
    admit_ok(rr, 0, -1, 1, "last");
    assert_int_equal(a.n, 1);
    assert_int_equal(log_count("answers again"), 1);
    rl_redis_free(rr);
}

/* Redis stopped for longer than a second with admissions waiting: the
 * connection is dropped (its pending answers dropped with it), the next
 * admissions are unanswered at once, and a new connection answers once
 * Redis goes on. */
static void test_stall(void **state)
{
    struct rl_redis *rr;
    struct answer a, b;
    uint64_t t;
    int tries = 0;

    (void)state;
    cfg.ratelimit_redis_timeout_ms = 100;
    cfg.tiers[0].limits = limits(0, 0, 1, 0);
    rr = connect_rr();
    warm(rr);
    redis_signal(SIGSTOP);
    admit(rr, 0, -1, 1, "slow", &a);
    assert_false(a.res.answered);
    run_for(1000);
    admit(rr, 0, -1, 1, "slower", &b); /* its timeout finds the connection silent */
    assert_false(b.res.answered);
    assert_int_equal(log_count("no answer in 1000 ms"), 0); /* "unreachable" said once */
    t = clk_now_us();
    admit(rr, 0, -1, 1, "down", &b);
    assert_false(b.res.answered);
    assert_true(clk_now_us() - t < 50000);
    redis_signal(SIGCONT);
    do {
        admit(rr, 0, -1, 1, "back", &b);
        if (!b.res.answered)
            run_for(50);
    } while (!b.res.answered && ++tries < 100);
    assert_true(b.res.answered);
    /* "slow" may have been admitted and never settled back (its connection
     * was dropped): it stays counted until RL_REDIS_RUNNING_TTL_S */
    assert_true(b.res.limit == RL_OK || b.res.limit == RL_CONCURRENT);
    assert_int_equal(log_count("unreachable"), 1);
    assert_int_equal(log_count("answers again"), 1);
    assert_int_equal(rl_redis_failures(rr), 3 + (unsigned)tries);
    rl_redis_free(rr);
}

/* Freed with admissions asked, due and unsent: done never called, nothing
 * left behind (the sanitizer build checks). */
static void test_free_pending(void **state)
{
    struct rl_redis *rr, *rr2;
    struct answer a[4];

    (void)state;
    cfg.tiers[0].limits = limits(10, 0, 2, 0);
    cfg.tiers[1].limits = limits(0, 0, 0, 0);
    rr = connect_rr();
    admit_ok(rr, 0, -1, 1, "warm");
    ask(rr, 0, -1, 1, "p1", &a[0]);
    ask(rr, 0, -1, 1, "p2", &a[1]);
    ask(rr, 1, -1, 1, "unasked", &a[2]); /* no limits: due on the next turn */
    rl_redis_settle(rr, &cfg, 0, -1, 1, 1, "warm");
    rl_redis_free(rr);
    /* one that never connected, and one still connecting */
    cfg.ratelimit_redis_port = free_port();
    rr2 = rl_redis_new(base, &cfg);
    assert_non_null(rr2);
    ask(rr2, 0, -1, 1, "p3", &a[3]);
    rl_redis_free(rr2);
    cfg.ratelimit_redis_port = redis_port;
    rr = rl_redis_new(base, &cfg);
    assert_non_null(rr);
    ask(rr, 0, -1, 1, "p4", &a[3]);
    rl_redis_free(rr);
    run_for(50);
    assert_int_equal(a[0].n + a[1].n + a[2].n + a[3].n, 0);
}

/* Nothing listens: unanswered, from the loop, logged once; a request
 * without limits is admitted without Redis. An empty host is refused. */
static void test_nothing_listens(void **state)
{
    struct rl_redis *rr;
    struct answer a;

    (void)state;
    cfg.tiers[0].limits = limits(10, 0, 0, 0);
    cfg.tiers[1].limits = limits(0, 0, 0, 0);
    cfg.ratelimit_redis_port = free_port();
    rr = connect_rr();
    admit(rr, 0, -1, 1, "x", &a);
    assert_false(a.res.answered);
    admit(rr, 0, -1, 1, "y", &a);
    assert_false(a.res.answered);
    admit(rr, 1, -1, 1, "z", &a);
    assert_true(a.res.answered);
    assert_int_equal(a.res.limit, RL_OK);
    assert_int_equal(rl_redis_failures(rr), 2);
    assert_int_equal(log_count("unreachable"), 1);
    rl_redis_free(rr);
    cfg.ratelimit_redis_host[0] = '\0';
    assert_null(rl_redis_new(base, &cfg));
}

/* AUTH and SELECT go first: the limits land in the database named; a wrong
 * password leaves admissions unanswered, logged once. */
static void test_auth_select(void **state)
{
    struct rl_redis *rr;
    struct answer a;
    redisContext *rc;
    redisReply *r;

    (void)state;
    cfg.tiers[0].limits = limits(10, 0, 0, 0);
    snprintf(cfg.ratelimit_redis_password, sizeof(cfg.ratelimit_redis_password), "s3cret");
    cfg.ratelimit_redis_db = 3;
    snprintf(cfg.ratelimit_redis_prefix, sizeof(cfg.ratelimit_redis_prefix), "app1:");
    rr = connect_rr();
    admit_ok(rr, 0, -1, 1, "a");
    rl_redis_free(rr);
    rc = redis_sync();
    assert_non_null(rc);
    r = redisCommand(rc, "EXISTS app1:t:default");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    r = redisCommand(rc, "SELECT 3");
    freeReplyObject(r);
    r = redisCommand(rc, "EXISTS app1:t:default");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(rc);

    snprintf(cfg.ratelimit_redis_password, sizeof(cfg.ratelimit_redis_password), "wrong");
    rr = connect_rr();
    admit(rr, 0, -1, 1, "b", &a);
    assert_false(a.res.answered);
    run_for(1200); /* tried again, refused again: not logged again */
    admit(rr, 0, -1, 1, "c", &a);
    assert_false(a.res.answered);
    assert_int_equal(log_count("unreachable: AUTH"), 1);
    assert_int_equal(log_count("unreachable"), 1);
    rl_redis_free(rr);
}

/* A host name is looked up (here in /etc/hosts) before connecting. */
static void test_host_name(void **state)
{
    struct rl_redis *rr;
    struct answer a;
    int tries = 0;

    (void)state;
    cfg.tiers[0].limits = limits(10, 0, 0, 0);
    snprintf(cfg.ratelimit_redis_host, sizeof(cfg.ratelimit_redis_host), "localhost");
    rr = connect_rr();
    do { /* the lookup may take a turn of the loop */
        admit(rr, 0, -1, 1, "h", &a);
        if (!a.res.answered)
            run_for(50);
    } while (!a.res.answered && ++tries < 40);
    assert_true(a.res.answered);
    assert_int_equal(a.res.limit, RL_OK);
    rl_redis_free(rr);
    snprintf(cfg.ratelimit_redis_host, sizeof(cfg.ratelimit_redis_host), "no-such-host.invalid");
    rr = connect_rr();
    admit(rr, 0, -1, 1, "h", &a);
    assert_false(a.res.answered);
    rl_redis_free(rr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_requests_tier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requests_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_and_tier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_loops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noscript, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_listens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_select, setup_auth, teardown),
        cmocka_unit_test_setup_teardown(test_host_name, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
