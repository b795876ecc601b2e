"""Rate limits shared by several pitot replicas through Redis
(ratelimit.redis): two pitot processes in front of the same backend and
one real redis-server (Debian's, started here on a free loopback port and
stopped by its PID) never grant more than the budget together, under
concurrent load; Redis killed mid-run: fail-open serves each replica's share
(ratelimit.replicas), fail-closed answers 503; Redis back: counted there
again, by itself."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HOST, chat_body, check, finish, free_port, metric_value, metrics,  # noqa: E402
                     request, start_pitot, start_sim, stop_pitot_clean, wait_for)

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class Redis:
    """A redis-server of its own: a free port, no persistence, stopped by PID."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="pitot-redis-")
        self.p = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", HOST, "--save", "",
                                   "--appendonly", "no", "--dir", self.dir],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _started.append(self)
        assert wait_for(self.ready, 10.0), "redis-server did not start"

    def ready(self):
        import socket
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()  # SIGKILL: as a crash
            self.p.wait(10)


_started = []


def stop_redis_all():
    for r in _started:
        r.stop()


def conf(redis_port, fail="open", limits="{requests_per_minute: 10}"):
    return ("ratelimit:\n  redis: redis://%s:%d\n  redis_fail: %s\n  redis_timeout: 200ms\n"
            "  replicas: 2\n"
            "tiers:\n  - name: default\n  - name: team\n"
            "    keys:\n      - {key: sk-shared-3f3f, name: shared, limits: %s}\n"
            % (HOST, redis_port, fail, limits))


def ask(port):
    return request(port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, stream=False),
                   headers=[("Authorization", "Bearer sk-shared-3f3f")])


def t_two_replicas_share_the_budget():
    redis = Redis()
    sim = start_sim("--model", "small", "--tokens-per-s", "2000")
    a = start_pitot([sim.port], config=conf(redis.port))
    b = start_pitot([sim.port], config=conf(redis.port))
    statuses = []
    lock = threading.Lock()

    def client(port):
        for _ in range(10):
            st = ask(port).status
            with lock:
                statuses.append(st)
    threads = [threading.Thread(target=client, args=(p,)) for p in (a.port, b.port) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # 40 requests within seconds, a budget of 10 a minute (one more at most
    # per 6 s that passed) shared by both replicas
    ok = statuses.count(200)
    assert 10 <= ok <= 11, statuses
    assert statuses.count(429) == 40 - ok, statuses
    served = json.loads(request(sim.port, "GET", "/sim/stats").body)["requests"]
    assert served == ok, (served, ok)
    refused = sum(metric_value(metrics(p.port), "pitot_rate_limited_total", tier="team",
                               key="shared", limit="requests") for p in (a, b))
    assert refused == 40 - ok, refused
    stop_pitot_clean(a)
    stop_pitot_clean(b)
    redis.stop()


def t_redis_down_open_then_back():
    redis = Redis()
    sim = start_sim("--model", "small", "--tokens-per-s", "2000")
    p = start_pitot([sim.port], config=conf(redis.port, limits="{requests_per_minute: 100}"))
    assert ask(p.port).status == 200
    redis.stop()
    # fail open: this replica's share (100 / replicas 2) counted here alone:
    # 50 at once, one more each 1.2 s that passes
    t0 = time.monotonic()
    statuses = [ask(p.port).status for _ in range(60)]
    extra = int((time.monotonic() - t0) / 1.2) + 1
    ok = statuses.count(200)
    assert 50 <= ok <= 50 + extra and statuses.count(429) == 60 - ok, (extra, statuses)
    assert "ratelimit: redis at %s:%d unreachable" % (HOST, redis.port) in p.stderr(), \
        p.stderr()[-800:]
    assert p.stderr().count("unreachable") == 1, p.stderr()[-800:]  # once, not per request
    assert metric_value(metrics(p.port), "pitot_ratelimit_redis_failures_total") >= 60
    # Redis back on its port: counted there again, by itself
    Redis(port=redis.port)
    assert wait_for(lambda: "answers again" in p.stderr(), 10.0), p.stderr()[-800:]
    r = ask(p.port)
    assert r.status == 200 and r.header("x-ratelimit-limit-requests") == "100", r.headers
    assert int(r.header("x-ratelimit-remaining-requests")) == 99, r.headers  # Redis: a new count
    stop_pitot_clean(p)


def t_redis_down_closed():
    redis = Redis()
    sim = start_sim("--model", "small", "--tokens-per-s", "2000")
    p = start_pitot([sim.port], config=conf(redis.port, fail="closed"))
    assert ask(p.port).status == 200
    redis.stop()
    n = json.loads(request(sim.port, "GET", "/sim/stats").body)["requests"]
    r = ask(p.port)
    assert r.status == 503, r.status
    assert json.loads(r.body)["error"]["type"] == "rate_limits_unavailable", r.body
    assert r.header("retry-after") == "1", r.headers
    assert json.loads(request(sim.port, "GET", "/sim/stats").body)["requests"] == n
    # requests of a tier without limits do not need Redis
    r = request(p.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, stream=False))
    assert r.status == 200, r.status
    stop_pitot_clean(p)


try:
    check("two pitot replicas sharing one redis-server never grant more than the budget "
          "together", t_two_replicas_share_the_budget)
    check("Redis killed: fail-open serves each replica's share, logged once and counted; Redis "
          "back: counted there again", t_redis_down_open_then_back)
    check("Redis killed, redis_fail closed: 503 before any backend; unlimited tiers go on",
          t_redis_down_closed)
finally:
    stop_redis_all()
finish()
