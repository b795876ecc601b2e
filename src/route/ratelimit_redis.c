/* ratelimit_redis: the GCRA limits of ratelimit.c kept in Redis: one Lua script
 * admits (both parties at once), another settles; one asynchronous hiredis
 * connection per event loop, reconnected at most once a second. */
#include "pitot/route/ratelimit_redis.h"

#include <assert.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <openssl/evp.h>

#include "pitot/util/clock.h"
#include "pitot/util/log.h"
#include "pitot/util/sock.h"

#define RLR_MINUTE_US 60000000ULL
#define RLR_DAY_US 86400000000ULL
#define RLR_RETRY_MS 1000     /* a lost connection is tried again after this long */
#define RLR_STALL_MIN_MS 1000 /* least silence (4 redis_timeouts) that drops a connection */
#define RLR_ID_MAX 128        /* bytes of a request id kept (X-Request-Id's cap) */
#define RLR_KEY_MAX (2 * CFG_NAME_MAX + 8)
/* The largest move of a settlement (us, ~35 years): arrival times stay
 * below 2^53, exact in Lua's doubles. */
#define RLR_MOVE_MAX (1LL << 50)
#define RLR_NUMS_MAX 16 /* numeric arguments of one script call */
#define RLR_ARGC_MAX 24 /* arguments of one script call */

/* The admission, for up to two parties. Lua 5.1's numbers are doubles:
 * integers are exact below 2^53, and every number here is below it: times in
 * microseconds since 1970 (about 2^51 now), the increments and windows (at
 * most a day: the C side computes ceil(cost * window / n) exactly and sends
 * it, refusing "never fits" with -1), and arrival times (settlements keep
 * them under 2^52). Numbers are written back with %.0f, never tostring
 * (%.14g would round them). The view's remaining counts are computed by the
 * caller from the arrival times and "now" returned here (rl_state_view, as
 * in memory): (now + window - tat) * n may pass 2^53. Returns {limit (0 ok,
 * 1 requests, 2 tokens, 3 tokens per day, 4 concurrent), retry (us), the
 * refusing party (0: none), now, the first party's requests and tokens
 * arrival times (charged when admitted, as they were when refused)}. A hash
 * lives while one of its arrival times is ahead of now (a day at most,
 * unless a settlement charged more than was reserved) plus a minute, a set
 * RL_REDIS_RUNNING_TTL_S plus a minute: idle parties vanish. */
static const char rlr_admit_lua[] =
    "-- pitot rate-limit admission (ratelimit_redis.c). KEYS: each party's hash\n"
    "-- of arrival times and its set of running requests, the key's first.\n"
    "-- ARGV: request id, running ttl (us), then per party: requests increment\n"
    "-- and window, tokens increment and window, day increment and window (us;\n"
    "-- window 0: no such limit; increment -1: never fits), max concurrent.\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local np = #KEYS / 2\n"
    "local function us(x) return string.format('%.0f', x) end\n"
    "local old, new = {}, {}\n"
    "for i = 1, np do\n"
    "  local v = redis.call('HMGET', KEYS[2 * i - 1], 'req', 'tok', 'day')\n"
    "  old[i], new[i] = {}, {}\n"
    "  for j = 1, 3 do\n"
    "    old[i][j] = tonumber(v[j]) or 0\n"
    "    new[i][j] = old[i][j]\n"
    "  end\n"
    "end\n"
    "local function refuse(limit, retry, i)\n"
    "  return {limit, retry, i, now, old[1][1], old[1][2]}\n"
    "end\n"
    "for i = 1, np do\n"
    "  local a = 2 + (i - 1) * 7\n"
    "  for j = 1, 3 do\n"
    "    local inc, win = tonumber(ARGV[a + 2 * j - 1]), tonumber(ARGV[a + 2 * j])\n"
    "    if win > 0 then\n"
    "      if inc < 0 then return refuse(j, 0, i) end\n"
    "      local nxt = math.max(old[i][j], now) + inc\n"
    "      if nxt > now + win then return refuse(j, nxt - now - win, i) end\n"
    "      new[i][j] = nxt\n"
    "    end\n"
    "  end\n"
    "  local cap = tonumber(ARGV[a + 7])\n"
    "  if cap > 0 then\n"
    "    redis.call('ZREMRANGEBYSCORE', KEYS[2 * i], '-inf', us(now))\n"
    "    if redis.call('ZCARD', KEYS[2 * i]) >= cap then return refuse(4, 0, i) end\n"
    "  end\n"
    "end\n"
    "local ttl = tonumber(ARGV[2])\n"
    "for i = 1, np do\n"
    "  local n = new[i]\n"
    "  local last = math.max(n[1], n[2], n[3], now)\n"
    "  redis.call('HSET', KEYS[2 * i - 1], 'req', us(n[1]), 'tok', us(n[2]), 'day', us(n[3]))\n"
    "  redis.call('PEXPIRE', KEYS[2 * i - 1], us(math.floor((last - now) / 1000) + 60000))\n"
    "  if tonumber(ARGV[2 + i * 7]) > 0 then\n"
    "    redis.call('ZADD', KEYS[2 * i], us(now + ttl), ARGV[1])\n"
    "    redis.call('PEXPIRE', KEYS[2 * i], us(math.floor(ttl / 1000) + 60000))\n"
    "  end\n"
    "end\n"
    "return {0, 0, 0, now, new[1][1], new[1][2]}\n";

/* The settlement: rl_gcra_settle's moves of the token arrival times (a
 * refund never below now, an excess past the limit, kept under 2^52), and
 * the request no longer running. */
static const char rlr_settle_lua[] =
    "-- pitot rate-limit settlement (ratelimit_redis.c). KEYS as the admission's.\n"
    "-- ARGV: request id, then per party the moves of the tokens per minute and\n"
    "-- per day arrival times (us: used minus reserved; 'n': no such limit).\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local function us(x) return string.format('%.0f', x) end\n"
    "for i = 1, #KEYS / 2 do\n"
    "  local h = KEYS[2 * i - 1]\n"
    "  redis.call('ZREM', KEYS[2 * i], ARGV[1])\n"
    "  local v = redis.call('HMGET', h, 'req', 'tok', 'day')\n"
    "  local tat = {tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0}\n"
    "  local moved = false\n"
    "  for j = 2, 3 do\n"
    "    local d = tonumber(ARGV[2 * i + j - 2])\n"
    "    if d ~= nil and d ~= 0 then\n"
    "      local x = tat[j]\n"
    "      if d > 0 then\n"
    "        x = math.min(math.max(x, now) + d, 4503599627370496)\n"
    "      elseif x > now then\n"
    "        x = math.max(x + d, now)\n"
    "      end\n"
    "      if x ~= tat[j] then tat[j] = x; moved = true end\n"
    "    end\n"
    "  end\n"
    "  if moved then\n"
    "    local last = math.max(tat[1], tat[2], tat[3], now)\n"
    "    redis.call('HSET', h, 'tok', us(tat[2]), 'day', us(tat[3]))\n"
    "    redis.call('PEXPIRE', h, us(math.floor((last - now) / 1000) + 60000))\n"
    "  end\n"
    "end\n"
    "return 0\n";

_Static_assert(RL_OK == 0 && RL_REQUESTS == 1 && RL_TOKENS == 2 && RL_TOKENS_DAY == 3 &&
                   RL_CONCURRENT == 4,
               "rlr_admit_lua answers these limit codes");

/* The connection. */
enum rlr_state {
    RLR_DOWN,       /* no connection; the timer tries again (RLR_RETRY_MS) */
    RLR_RESOLVING,  /* transient: the host name is being looked up (evdns) */
    RLR_CONNECTING, /* transient: connect(2) under way; the timer bounds it (stall_ms) */
    RLR_UP,         /* connected: commands go out pipelined */
};

/* One request record: an admission, or a settlement. */
enum rlr_req_state {
    RLR_REQ_SOON,   /* transient: answered on the next turn of the loop, unasked
                       (no connection, or no party has limits) */
    RLR_REQ_ASKED,  /* an admission Redis has; its caller waits (the timer bounds it) */
    RLR_REQ_ORPHAN, /* an admission Redis has; its caller is gone (timed out,
                       cancelled): settled back if Redis admits it */
    RLR_REQ_SETTLE, /* a settlement Redis has (rl_redis_settle, or an orphan's) */
};

/* A limited party of a request: the key (when it has limits) or the tier. */
struct rlr_party {
    struct cfg_limits lim;  /* as configured when the request came */
    char hash[RLR_KEY_MAX]; /* <prefix>k:<key> or <prefix>t:<tier>: arrival times */
    char set[RLR_KEY_MAX];  /* hash + ":c": the requests running */
};

struct rl_redis_req {
    struct rl_redis *rr; /* borrowed: it frees every record before itself */
    LIST_ENTRY(rl_redis_req) link;
    enum rlr_req_state state;
    void (*done)(void *ud, const struct rl_redis_result *res);
    void *ud;
    uint64_t tokens;    /* the reservation */
    unsigned nparties;  /* 0: no limits: admitted unasked */
    bool key_first;     /* party[0] is the key's */
    bool soon_answered; /* SOON: the answer is "admitted" (no party), else unanswered */
    bool eval;          /* Redis said NOSCRIPT: the script's source goes (EVAL) */
    struct rlr_party party[2];
    char id[RLR_ID_MAX + 1];
    char num[RLR_NUMS_MAX][24]; /* the numeric arguments, as text */
    unsigned nnum;
    const char *argv[RLR_ARGC_MAX]; /* [0], [1]: EVALSHA sha or EVAL source */
    size_t argvlen[RLR_ARGC_MAX];
    int argc;
    max_align_t timer[]; /* a struct event (event_get_struct_event_size() bytes) */
};

LIST_HEAD(rlr_reqs, rl_redis_req);

struct rl_redis {
    struct event_base *base; /* borrowed */
    enum rlr_state state;
    redisAsyncContext *ac;  /* owned: NULL unless CONNECTING or UP */
    struct event *timer;    /* owned: next try (DOWN), connect deadline (CONNECTING) */
    struct evdns_base *dns; /* owned: NULL when the host is an address */
    struct evdns_getaddrinfo_request *lookup; /* owned by evdns while resolving */
    bool resolving;                           /* a lookup is under way (lookup may be NULL) */
    struct rlr_reqs reqs;                     /* owned: every record */
    char host[CFG_HOST_MAX];
    uint16_t port;
    unsigned db;
    char password[256];
    char prefix[CFG_NAME_MAX];
    unsigned timeout_ms; /* one admission's bound */
    unsigned stall_ms;   /* silence with commands waiting that drops the connection */
    char sha_admit[41], sha_settle[41];
    unsigned inflight;    /* commands sent and not answered */
    uint64_t progress_us; /* last reply, or the send that ended a quiet time */
    uint64_t failures;    /* admissions done was told were unanswered */
    bool trouble;         /* "unreachable" logged, "answers again" not yet */
    bool freeing;         /* rl_redis_free: callbacks only let go */
};

/* Setup commands, named in the reason a failure is logged with (privdata). */
static char rlr_step_auth[] = "AUTH";
static char rlr_step_select[] = "SELECT";
static char rlr_step_load[] = "SCRIPT LOAD";

static void rlr_connect(struct rl_redis *rr);

static void rlr_set_state(struct rl_redis *rr, enum rlr_state st)
{
    static const unsigned char legal[][4] = {
        /*                 DOWN RSLV CONN UP */
        [RLR_DOWN] = { 0, 1, 1, 0 },
        [RLR_RESOLVING] = { 1, 0, 1, 0 },
        [RLR_CONNECTING] = { 1, 0, 0, 1 },
        [RLR_UP] = { 1, 0, 0, 0 },
    };

    assert(legal[rr->state][st]);
    (void)legal;
    rr->state = st;
}

static void rlr_req_set_state(struct rl_redis_req *q, enum rlr_req_state st)
{
    static const unsigned char legal[][4] = {
        /*                    SOON ASKD ORPH SETL */
        [RLR_REQ_SOON] = { 0, 0, 0, 0 },
        [RLR_REQ_ASKED] = { 0, 0, 1, 0 },
        [RLR_REQ_ORPHAN] = { 0, 0, 0, 1 },
        [RLR_REQ_SETTLE] = { 0, 0, 0, 0 },
    };

    assert(legal[q->state][st]);
    (void)legal;
    q->state = st;
}

/* ---- the arguments ------------------------------------------------------ */

/* ceil(cost * window_us / n), n > 0: at most 2^64 * 2^37. */
static unsigned __int128 rlr_inc(unsigned long long n, uint64_t window_us, uint64_t cost)
{
    return ((unsigned __int128)cost * window_us + n - 1) / n;
}

static void rlr_push(struct rl_redis_req *q, const char *s)
{
    assert(q->argc < RLR_ARGC_MAX);
    q->argv[q->argc] = s;
    q->argvlen[q->argc] = strlen(s);
    q->argc++;
}

static void rlr_push_num(struct rl_redis_req *q, long long x)
{
    assert(q->nnum < RLR_NUMS_MAX);
    snprintf(q->num[q->nnum], sizeof(q->num[0]), "%lld", x);
    rlr_push(q, q->num[q->nnum++]);
}

/* The numbers of q's script call start after the command and the script. */
static void rlr_args_start(struct rl_redis_req *q)
{
    unsigned i;

    q->argc = 2;
    q->nnum = 0;
    rlr_push_num(q, 2 * (long long)q->nparties);
    for (i = 0; i < q->nparties; i++) {
        rlr_push(q, q->party[i].hash);
        rlr_push(q, q->party[i].set);
    }
    rlr_push(q, q->id);
}

/* A token limit's increment and window: cost never fits past n (-1). */
static void rlr_push_tokens(struct rl_redis_req *q, unsigned long long n, uint64_t window_us)
{
    if (n == 0) {
        rlr_push_num(q, 0);
        rlr_push_num(q, 0);
        return;
    }
    rlr_push_num(q, q->tokens > n ? -1 : (long long)rlr_inc(n, window_us, q->tokens));
    rlr_push_num(q, (long long)window_us);
}

/* The admission's arguments (see rlr_admit_lua). The requests limit's
 * window is n * ceil(P / n), its increment ceil(P / n), as in memory. */
static void rlr_args_admit(struct rl_redis_req *q)
{
    unsigned i;

    rlr_args_start(q);
    rlr_push_num(q, (long long)RL_REDIS_RUNNING_TTL_S * 1000000);
    for (i = 0; i < q->nparties; i++) {
        const struct cfg_limits *l = &q->party[i].lim;
        unsigned long long n = l->requests_per_minute, inc = n ? (RLR_MINUTE_US + n - 1) / n : 0;

        rlr_push_num(q, (long long)inc);
        rlr_push_num(q, (long long)(n * inc)); /* < P + n: no overflow */
        rlr_push_tokens(q, l->tokens_per_minute, RLR_MINUTE_US);
        rlr_push_tokens(q, l->tokens_per_day, RLR_DAY_US);
        rlr_push_num(q, l->max_concurrent);
    }
}

/* How far a settlement moves a token limit's arrival time: ceil(used * P /
 * n) - ceil(reserved * P / n), bounded by RLR_MOVE_MAX. */
static long long rlr_move(unsigned long long n, uint64_t window_us, uint64_t reserved,
                          uint64_t used)
{
    unsigned __int128 ir = rlr_inc(n, window_us, reserved), iu = rlr_inc(n, window_us, used);

    if (iu >= ir)
        return iu - ir > RLR_MOVE_MAX ? RLR_MOVE_MAX : (long long)(iu - ir);
    return ir - iu > RLR_MOVE_MAX ? -RLR_MOVE_MAX : -(long long)(ir - iu);
}

static void rlr_push_move(struct rl_redis_req *q, unsigned long long n, uint64_t window_us,
                          uint64_t reserved, uint64_t used)
{
    if (n == 0)
        rlr_push(q, "n");
    else
        rlr_push_num(q, rlr_move(n, window_us, reserved, used));
}

/* The settlement's arguments (see rlr_settle_lua). */
static void rlr_args_settle(struct rl_redis_req *q, uint64_t reserved, uint64_t used)
{
    unsigned i;

    rlr_args_start(q);
    for (i = 0; i < q->nparties; i++) {
        const struct cfg_limits *l = &q->party[i].lim;

        rlr_push_move(q, l->tokens_per_minute, RLR_MINUTE_US, reserved, used);
        rlr_push_move(q, l->tokens_per_day, RLR_DAY_US, reserved, used);
    }
}

static bool rlr_limits_any(const struct cfg_limits *l)
{
    return l->requests_per_minute > 0 || l->tokens_per_minute > 0 || l->max_concurrent > 0 ||
           l->tokens_per_day > 0;
}

static void rlr_party_set(struct rl_redis *rr, struct rlr_party *p, const struct cfg_limits *l,
                          char kind, const char *name)
{
    p->lim = *l;
    snprintf(p->hash, sizeof(p->hash), "%s%c:%s", rr->prefix, kind, name);
    snprintf(p->set, sizeof(p->set), "%s%c:%s:c", rr->prefix, kind, name);
}

/* The parties of (tier, key) under c, as rl_admit: the key's when it has
 * limits of its own, then the tier's when it has any. */
static void rlr_parties(struct rl_redis_req *q, const struct cfg *c, unsigned tier, int key)
{
    q->nparties = 0;
    q->key_first = false;
    if (key >= 0 && (size_t)key < c->nkeys && rlr_limits_any(&c->keys[key].limits)) {
        rlr_party_set(q->rr, &q->party[q->nparties++], &c->keys[key].limits, 'k',
                      c->keys[key].name);
        q->key_first = true;
    }
    if (tier < CFG_MAX_TIERS && rlr_limits_any(&c->tiers[tier].limits))
        rlr_party_set(q->rr, &q->party[q->nparties++], &c->tiers[tier].limits, 't',
                      c->tiers[tier].name);
}

/* ---- records ------------------------------------------------------------ */

static void rlr_timer_cb(evutil_socket_t fd, short what, void *arg);

static struct rl_redis_req *rlr_req_new(struct rl_redis *rr, enum rlr_req_state st,
                                        const char *request_id)
{
    struct rl_redis_req *q = calloc(1, sizeof(*q) + event_get_struct_event_size());

    if (q == NULL)
        return NULL;
    q->rr = rr;
    q->state = st;
    snprintf(q->id, sizeof(q->id), "%s", request_id != NULL ? request_id : "");
    event_assign((struct event *)q->timer, rr->base, -1, 0, rlr_timer_cb, q);
    LIST_INSERT_HEAD(&rr->reqs, q, link);
    return q;
}

static void rlr_req_free(struct rl_redis_req *q)
{
    event_del((struct event *)q->timer);
    LIST_REMOVE(q, link);
    free(q);
}

static void rlr_req_arm(struct rl_redis_req *q, unsigned ms)
{
    struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

    evtimer_add((struct event *)q->timer, &tv);
}

static void rlr_reply_cb(redisAsyncContext *ac, void *reply, void *privdata);

/* Sends q's script call: EVALSHA, or EVAL once Redis said NOSCRIPT. Returns
 * 0, or -1 when there is no connection to send it on. */
static int rlr_send(struct rl_redis_req *q)
{
    struct rl_redis *rr = q->rr;
    bool settle = q->state == RLR_REQ_SETTLE;

    if (rr->ac == NULL)
        return -1;
    if (q->eval) {
        q->argv[0] = "EVAL";
        q->argv[1] = settle ? rlr_settle_lua : rlr_admit_lua;
        q->argvlen[1] = settle ? sizeof(rlr_settle_lua) - 1 : sizeof(rlr_admit_lua) - 1;
    } else {
        q->argv[0] = "EVALSHA";
        q->argv[1] = settle ? rr->sha_settle : rr->sha_admit;
        q->argvlen[1] = 40;
    }
    q->argvlen[0] = strlen(q->argv[0]);
    if (redisAsyncCommandArgv(rr->ac, rlr_reply_cb, q, q->argc, q->argv, q->argvlen) != REDIS_OK)
        return -1; /* the connection is going away */
    if (rr->inflight++ == 0)
        rr->progress_us = clk_now_us();
    return 0;
}

/* ---- the connection ----------------------------------------------------- */

/* Connections (one per loop) in trouble now: the lines below speak for the
 * process, once, not once per loop. */
static _Atomic unsigned rlr_troubled;

/* Logs that Redis cannot be used, once until it answers again. */
static void rlr_trouble(struct rl_redis *rr, const char *what, const char *why)
{
    if (rr->trouble)
        return;
    rr->trouble = true;
    if (atomic_fetch_add(&rlr_troubled, 1) == 0)
        log_warn("ratelimit: redis at %s:%u %s: %s; admissions go by ratelimit.redis_fail until it "
                 "answers",
                 rr->host, (unsigned)rr->port, what, why);
}

/* Redis answered in time. */
static void rlr_answered(struct rl_redis *rr)
{
    if (!rr->trouble)
        return;
    rr->trouble = false;
    if (atomic_fetch_sub(&rlr_troubled, 1) == 1)
        log_info("ratelimit: redis at %s:%u answers again", rr->host, (unsigned)rr->port);
}

static void rlr_arm(struct rl_redis *rr, unsigned ms)
{
    struct timeval tv = { ms / 1000, (long)(ms % 1000) * 1000 };

    evtimer_add(rr->timer, &tv);
}

/* No connection now (rr->ac already let go of): logged, tried again later. */
static void rlr_fail(struct rl_redis *rr, const char *why)
{
    if (rr->state != RLR_DOWN)
        rlr_set_state(rr, RLR_DOWN);
    rlr_trouble(rr, "unreachable", why);
    rlr_arm(rr, RLR_RETRY_MS);
}

/* hiredis is freeing the connection (an error, a close): its pending
 * callbacks get NULL replies, then it is gone. */
static void rlr_lost(struct rl_redis *rr, const char *why)
{
    rr->ac = NULL;
    rlr_fail(rr, why);
}

/* pitot gives the connection up: hiredis calls every pending callback with a
 * NULL reply (now, or when the callback running returns). */
static void rlr_drop(struct rl_redis *rr, const char *why)
{
    redisAsyncContext *ac = rr->ac;

    rlr_lost(rr, why);
    redisAsyncFree(ac);
}

static const char *rlr_errstr(const redisAsyncContext *ac)
{
    return ac->c.err != 0 && ac->c.errstr[0] != '\0' ? ac->c.errstr : "connection closed";
}

/* Drops a connection that has not answered for stall_ms though asked. */
static void rlr_stall_check(struct rl_redis *rr)
{
    char why[64];

    if (rr->ac == NULL || rr->inflight == 0 ||
        clk_now_us() - rr->progress_us < (uint64_t)rr->stall_ms * 1000)
        return;
    snprintf(why, sizeof(why), "no answer in %u ms", rr->stall_ms);
    rlr_drop(rr, why);
}

static void rlr_on_connect(const redisAsyncContext *ac, int status)
{
    struct rl_redis *rr = ac->data;

    if (rr->freeing || ac != rr->ac)
        return;
    if (status != REDIS_OK) {
        rlr_lost(rr, rlr_errstr(ac)); /* hiredis frees it after this */
        return;
    }
    rlr_set_state(rr, RLR_UP);
    evtimer_del(rr->timer);
}

static void rlr_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rl_redis *rr = ac->data;

    (void)status;
    if (!rr->freeing && ac == rr->ac)
        rlr_lost(rr, rlr_errstr(ac));
}

/* AUTH, SELECT, SCRIPT LOAD answered. */
static void rlr_setup_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct rl_redis *rr = ac->data;
    redisReply *reply = r;
    char why[256];

    rr->inflight--;
    if (rr->freeing || ac != rr->ac)
        return;
    if (reply == NULL) {
        rlr_lost(rr, rlr_errstr(ac));
        return;
    }
    rr->progress_us = clk_now_us();
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s: %s", (const char *)privdata, reply->str);
        rlr_drop(rr, why);
        return;
    }
    rlr_answered(rr);
}

static void rlr_setup(struct rl_redis *rr)
{
    redisAsyncContext *ac = rr->ac;
    unsigned sent = 0;

    /* pipelined before any admission: Redis runs them first */
    if (rr->password[0] != '\0')
        sent +=
            redisAsyncCommand(ac, rlr_setup_cb, rlr_step_auth, "AUTH %s", rr->password) == REDIS_OK;
    if (rr->db != 0)
        sent +=
            redisAsyncCommand(ac, rlr_setup_cb, rlr_step_select, "SELECT %u", rr->db) == REDIS_OK;
    sent += redisAsyncCommand(ac, rlr_setup_cb, rlr_step_load, "SCRIPT LOAD %b", rlr_admit_lua,
                              sizeof(rlr_admit_lua) - 1) == REDIS_OK;
    sent += redisAsyncCommand(ac, rlr_setup_cb, rlr_step_load, "SCRIPT LOAD %b", rlr_settle_lua,
                              sizeof(rlr_settle_lua) - 1) == REDIS_OK;
    rr->inflight += sent;
    rr->progress_us = clk_now_us();
}

/* Starts a connection to ip (an address, no lookup). */
static void rlr_connect_to(struct rl_redis *rr, const char *ip)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, rr->port);
    char why[128];

    if (ac == NULL) {
        rlr_fail(rr, "out of memory");
        return;
    }
    if (ac->err != 0) {
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        rlr_fail(rr, why);
        return;
    }
    ac->data = rr;
    if (redisLibeventAttach(ac, rr->base) != REDIS_OK) {
        redisAsyncFree(ac);
        rlr_fail(rr, "cannot watch its socket");
        return;
    }
    sock_nodelay(ac->c.fd);
    redisAsyncSetConnectCallback(ac, rlr_on_connect);
    redisAsyncSetDisconnectCallback(ac, rlr_on_disconnect);
    rr->ac = ac;
    rlr_set_state(rr, RLR_CONNECTING);
    rlr_setup(rr);
    rlr_arm(rr, rr->stall_ms);
}

static void rlr_resolved_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct rl_redis *rr = arg;
    struct evutil_addrinfo *ai, *pick = NULL;
    char ip[64] = "", why[CFG_HOST_MAX + 64];

    rr->lookup = NULL;
    rr->resolving = false;
    /* the IPv4 address when there is one, as routing.dns_family auto */
    for (ai = result == 0 ? res : NULL; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (pick == NULL || (pick->ai_family != AF_INET && ai->ai_family == AF_INET))
            pick = ai;
    }
    if (pick != NULL && getnameinfo(pick->ai_addr, (socklen_t)pick->ai_addrlen, ip, sizeof(ip),
                                    NULL, 0, NI_NUMERICHOST) != 0)
        ip[0] = '\0';
    if (res != NULL)
        evutil_freeaddrinfo(res);
    if (result == EVUTIL_EAI_CANCEL || rr->freeing)
        return;
    if (ip[0] == '\0') {
        snprintf(why, sizeof(why), "cannot resolve %s: %s", rr->host,
                 result != 0 ? evutil_gai_strerror(result) : "no address");
        rlr_fail(rr, why);
        return;
    }
    rlr_connect_to(rr, ip);
}

static void rlr_connect(struct rl_redis *rr)
{
    struct evutil_addrinfo hints;
    struct evdns_getaddrinfo_request *req;

    if (rr->dns == NULL) {
        rlr_connect_to(rr, rr->host);
        return;
    }
    rlr_set_state(rr, RLR_RESOLVING);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    rr->resolving = true;
    /* may answer at once (hosts file), calling rlr_resolved_cb before it returns */
    req = evdns_getaddrinfo(rr->dns, rr->host, NULL, &hints, rlr_resolved_cb, rr);
    if (rr->resolving)
        rr->lookup = req;
}

/* DOWN: time to try again; CONNECTING: connect(2) took too long. */
static void rlr_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct rl_redis *rr = arg;
    char why[64];

    (void)fd;
    (void)what;
    if (rr->state == RLR_DOWN) {
        rlr_connect(rr);
    } else if (rr->state == RLR_CONNECTING) {
        snprintf(why, sizeof(why), "not connected in %u ms", rr->stall_ms);
        rlr_drop(rr, why);
    }
}

/* ---- answers ------------------------------------------------------------ */

/* The admission's answer (see rlr_admit_lua) into *res; false when it is
 * not one. */
static bool rlr_parse(const struct rl_redis_req *q, const redisReply *r,
                      struct rl_redis_result *res)
{
    struct rl_state st;
    long long v[6];
    size_t i;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6)
        return false;
    for (i = 0; i < 6; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer < 0)
            return false;
        v[i] = r->element[i]->integer;
    }
    if (v[0] > RL_CONCURRENT || v[2] > (long long)q->nparties)
        return false;
    memset(res, 0, sizeof(*res));
    memset(&st, 0, sizeof(st));
    res->answered = true;
    res->limit = (enum rl_limit)v[0];
    res->retry_us = res->limit != RL_OK ? (uint64_t)v[1] : 0;
    /* refused by the key's limits, or the view is the key's */
    res->who_key = q->key_first && (v[0] == RL_OK || v[2] == 1);
    st.req_tat_us = (uint64_t)v[4];
    st.tok_tat_us = (uint64_t)v[5];
    rl_state_view(&st, &q->party[0].lim, (uint64_t)v[3], &res->view);
    return true;
}

/* An admission nobody waits for any more: if Redis admitted it, it is
 * settled as if nothing was used (q goes on as the settlement), else freed. */
static void rlr_orphan_answer(struct rl_redis_req *q, bool admitted)
{
    if (admitted) {
        rlr_args_settle(q, q->tokens, 0);
        rlr_req_set_state(q, RLR_REQ_SETTLE);
        q->eval = false;
        if (rlr_send(q) == 0)
            return;
    }
    rlr_req_free(q);
}

static void rlr_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct rl_redis_req *q = privdata;
    struct rl_redis *rr = q->rr;
    struct rl_redis_result res;
    redisReply *reply = r;
    void (*done)(void *ud, const struct rl_redis_result *res) = q->done;
    void *ud = q->ud;
    bool ok;

    rr->inflight--;
    if (rr->freeing) {
        rlr_req_free(q);
        return;
    }
    memset(&res, 0, sizeof(res));
    if (reply == NULL) { /* the connection is being freed */
        bool asked = q->state == RLR_REQ_ASKED;

        if (ac == rr->ac)
            rlr_lost(rr, rlr_errstr(ac));
        rlr_req_free(q);
        if (asked) {
            rr->failures++;
            done(ud, &res);
        }
        return;
    }
    rr->progress_us = clk_now_us();
    if (reply->type == REDIS_REPLY_ERROR && !q->eval && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        q->eval = true; /* Redis restarted, or its scripts were flushed */
        if (rlr_send(q) == 0)
            return;
    }
    ok = q->state != RLR_REQ_SETTLE ? rlr_parse(q, reply, &res) : reply->type != REDIS_REPLY_ERROR;
    if (!ok)
        rlr_trouble(rr, "fails",
                    reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    switch (q->state) {
    case RLR_REQ_ASKED:
        if (ok)
            rlr_answered(rr);
        else
            rr->failures++;
        rlr_req_free(q);
        done(ud, &res);
        break;
    case RLR_REQ_ORPHAN: rlr_orphan_answer(q, ok && res.limit == RL_OK); break;
    default: rlr_req_free(q); break;
    }
}

/* SOON: the answer is due; ASKED: Redis did not answer in time. */
static void rlr_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct rl_redis_req *q = arg;
    struct rl_redis *rr = q->rr;
    void (*done)(void *ud, const struct rl_redis_result *res) = q->done;
    void *ud = q->ud;
    struct rl_redis_result res;
    char why[64];

    (void)fd;
    (void)what;
    memset(&res, 0, sizeof(res));
    if (q->state == RLR_REQ_SOON) {
        res.answered = q->soon_answered;
        if (!res.answered)
            rr->failures++;
        rlr_req_free(q);
        done(ud, &res);
        return;
    }
    /* a late answer finds q an orphan, and settles it back if admitted */
    rlr_req_set_state(q, RLR_REQ_ORPHAN);
    rr->failures++;
    snprintf(why, sizeof(why), "no answer within %u ms", rr->timeout_ms);
    rlr_trouble(rr, "unreachable", why);
    rlr_stall_check(rr); /* may free q */
    done(ud, &res);
}

/* ---- the interface ------------------------------------------------------ */

/* The SHA-1 of a script, in hex, as EVALSHA wants it. */
static int rlr_sha1_hex(const char *src, size_t len, char out[41])
{
    unsigned char d[20];
    unsigned i;

    if (EVP_Digest(src, len, d, NULL, EVP_sha1(), NULL) != 1)
        return -1;
    for (i = 0; i < sizeof(d); i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    return 0;
}

struct rl_redis *rl_redis_new(struct event_base *base, const struct cfg *c)
{
    struct rl_redis *rr;
    unsigned char addr[16];

    if (c->ratelimit_redis_host[0] == '\0' || c->ratelimit_redis_port == 0)
        return NULL;
    rr = calloc(1, sizeof(*rr));
    if (rr == NULL)
        return NULL;
    rr->base = base;
    rr->state = RLR_DOWN;
    LIST_INIT(&rr->reqs);
    snprintf(rr->host, sizeof(rr->host), "%s", c->ratelimit_redis_host);
    rr->port = c->ratelimit_redis_port;
    rr->db = c->ratelimit_redis_db;
    snprintf(rr->password, sizeof(rr->password), "%s", c->ratelimit_redis_password);
    snprintf(rr->prefix, sizeof(rr->prefix), "%s", c->ratelimit_redis_prefix);
    rr->timeout_ms = c->ratelimit_redis_timeout_ms > 0 ? c->ratelimit_redis_timeout_ms : 1;
    rr->stall_ms = rr->timeout_ms < RLR_STALL_MIN_MS / 4 ? RLR_STALL_MIN_MS
                   : rr->timeout_ms > UINT_MAX / 4       ? UINT_MAX
                                                         : 4 * rr->timeout_ms;
    if (rlr_sha1_hex(rlr_admit_lua, sizeof(rlr_admit_lua) - 1, rr->sha_admit) != 0 ||
        rlr_sha1_hex(rlr_settle_lua, sizeof(rlr_settle_lua) - 1, rr->sha_settle) != 0 ||
        (rr->timer = evtimer_new(base, rlr_conn_timer_cb, rr)) == NULL) {
        rl_redis_free(rr);
        return NULL;
    }
    if (evutil_inet_pton(AF_INET, rr->host, addr) != 1 &&
        evutil_inet_pton(AF_INET6, rr->host, addr) != 1) {
        /* a name: looked up on the loop (evdns) before each connection, as
         * backend names are: /etc/resolv.conf and /etc/hosts, or routing.resolver */
        if (c->resolver[0] != '\0') {
            rr->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
            if (rr->dns != NULL && evdns_base_nameserver_ip_add(rr->dns, c->resolver) != 0) {
                rl_redis_free(rr);
                return NULL;
            }
        } else {
            rr->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                               EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        }
        if (rr->dns == NULL) {
            rl_redis_free(rr);
            return NULL;
        }
    }
    rlr_connect(rr);
    return rr;
}

void rl_redis_free(struct rl_redis *rr)
{
    struct rl_redis_req *q;
    unsigned i;

    if (rr == NULL)
        return;
    rr->freeing = true;
    if (rr->trouble) /* no longer one of the process's troubled connections */
        atomic_fetch_sub(&rlr_troubled, 1);
    if (rr->ac != NULL) {
        redisAsyncContext *ac = rr->ac;

        /* its pending callbacks run now, with NULL replies: they free their
         * records (no done: the callers are gone first) */
        rr->ac = NULL;
        redisAsyncFree(ac);
    }
    while ((q = LIST_FIRST(&rr->reqs)) != NULL)
        rlr_req_free(q); /* SOON ones */
    if (rr->timer != NULL)
        event_free(rr->timer);
    if (rr->lookup != NULL)
        evdns_getaddrinfo_cancel(rr->lookup);
    /* evdns delivers the cancellation (to rlr_resolved_cb) from the loop */
    for (i = 0; rr->resolving && i < 16; i++)
        event_base_loop(rr->base, EVLOOP_NONBLOCK);
    if (rr->resolving)
        return; /* the loop is running (a call from inside it): evdns still holds rr,
                   which is left behind rather than freed under it */
    if (rr->dns != NULL)
        evdns_base_free(rr->dns, 0);
    free(rr);
}

struct rl_redis_req *rl_redis_admit(struct rl_redis *rr, const struct cfg *c, unsigned tier,
                                    int key, uint64_t tokens, const char *request_id,
                                    void (*done)(void *ud, const struct rl_redis_result *res),
                                    void *ud)
{
    struct rl_redis_req *q = rlr_req_new(rr, RLR_REQ_ASKED, request_id);

    if (q == NULL)
        return NULL;
    q->done = done;
    q->ud = ud;
    q->tokens = tokens;
    rlr_parties(q, c, tier, key);
    if (q->nparties > 0 && rr->ac != NULL) {
        rlr_args_admit(q);
        if (rlr_send(q) == 0) {
            rlr_req_arm(q, rr->timeout_ms);
            return q;
        }
    }
    /* nothing to ask (admitted), or no connection (unanswered): either way
     * from the loop, never from inside this call */
    q->state = RLR_REQ_SOON;
    q->soon_answered = q->nparties == 0;
    rlr_req_arm(q, 0);
    return q;
}

void rl_redis_cancel(struct rl_redis_req *q)
{
    if (q == NULL)
        return;
    assert(q->state == RLR_REQ_SOON || q->state == RLR_REQ_ASKED);
    if (q->state == RLR_REQ_SOON) {
        rlr_req_free(q);
        return;
    }
    event_del((struct event *)q->timer);
    rlr_req_set_state(q, RLR_REQ_ORPHAN); /* Redis's answer settles it back */
}

void rl_redis_settle(struct rl_redis *rr, const struct cfg *c, unsigned tier, int key,
                     uint64_t reserved, uint64_t used, const char *request_id)
{
    struct rl_redis_req *q;

    if (rr == NULL || rr->ac == NULL)
        return; /* lost: the running member expires after RL_REDIS_RUNNING_TTL_S */
    q = rlr_req_new(rr, RLR_REQ_SETTLE, request_id);
    if (q == NULL)
        return;
    rlr_parties(q, c, tier, key);
    if (q->nparties > 0) {
        rlr_args_settle(q, reserved, used);
        if (rlr_send(q) == 0)
            return;
    }
    rlr_req_free(q);
}

uint64_t rl_redis_failures(const struct rl_redis *rr)
{
    return rr != NULL ? rr->failures : 0;
}
