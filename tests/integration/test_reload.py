"""SIGHUP reloads the configuration: validated whole first (a failing one
changes nothing and its FILE:LINE: message is logged), then new requests use
the new one while requests in flight finish on the one they began under;
backends are added (probed, scraped, routable at once), changed and removed
(no new request; those in flight finish; their series leave /metrics
after); what a running pitot cannot change (listen, buckets, ...) is said in
one line and the rest applied; pitot_config_reloads_total{result} and
pitot_config_last_reload_success_timestamp_seconds count them. Real pitot-sim
backends, a real pitot started from a config file, raw clients."""

import json
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD, HOST, Proc, Reader, access_log, build_request, chat_body, check,  # noqa: E402
                     connect, finish, free_port, metric_value, metrics, request, sse_data,
                     start_sim, stop_pitot_clean, wait_for)


def config(backends, extra=""):
    lines = ["backends:"]
    lines += ["  - url: http://%s:%d" % (HOST, b) for b in backends]
    return "\n".join(lines) + "\n" + extra


class Pitot:
    """pitot from a config file it is told to read again."""

    def __init__(self, text, cli_log=True):
        self.port = free_port()
        self.file = tempfile.NamedTemporaryFile("w", prefix="pitot-", suffix=".yaml",
                                                delete=False).name
        self.write(text)
        logf = tempfile.NamedTemporaryFile(prefix="pitot-access-", suffix=".log", delete=False)
        self.proc = Proc([os.path.join(BUILD, "pitot"), "-c", self.file, "--listen",
                          "%s:%d" % (HOST, self.port)] +
                         (["--access-log", logf.name] if cli_log else []),
                         "pitot", r"listening on")
        self.proc.port = self.port
        self.proc.access_log = logf.name

    def write(self, text):
        with open(self.file, "w") as f:
            f.write(text)

    def reload(self, text, want="configuration reloaded"):
        n = self.proc.stderr().count(want)
        self.write(text)
        self.proc.p.send_signal(signal.SIGHUP)
        assert wait_for(lambda: self.proc.stderr().count(want) > n, 5.0), self.proc.stderr()[-1500:]


def open_stream(port, body, sim_port):
    """Sends a streaming request and waits until the simulator generates
    for it; the answer is read later, whole."""
    s = connect(port)
    s.sendall(build_request("POST", "/v1/chat/completions", body, port=port))
    assert wait_for(lambda: json.loads(request(sim_port, "GET", "/sim/stats").body)["busy"] >= 1,
                    5.0), "the stream never started"
    return s


def read_whole(sock, tokens):
    """Reads a stream open_stream began to its end: whole, every token."""
    sock.settimeout(30)
    r = Reader(sock).read()
    assert r.status == 200 and r.complete, "the stream was cut"
    events = [d for d in sse_data(r.events) if d != "[DONE]"]
    assert sum(1 for d in events if json.loads(d)["choices"] and
               json.loads(d)["choices"][0]["delta"].get("content")) == tokens
    sock.close()


def t_reload_applies():
    sim = start_sim("--model", "small", "--tokens-per-s", "50")
    base = "limits:\n  max_body_bytes: 1048576\n"
    pt = Pitot(config([sim.port], base))
    # a stream that runs across every reload below
    long = open_stream(pt.port, chat_body(max_tokens=150, model="small"), sim.port)

    pt.reload(config([sim.port], "limits:\n  max_body_bytes: 2048\n"
                     "routing:\n  aliases: {gpt-x: small}\n  unknown_model: reject\n"))
    r = request(pt.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, model="gpt-x"))
    assert r.status == 200 and r.complete, r.status  # the alias applies
    r = request(pt.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, model="zzz"))
    assert r.status == 404, r.status  # unknown_model: reject applies
    r = request(pt.port, "POST", "/v1/chat/completions",
                chat_body(max_tokens=2, model="small", content="x" * 3000))
    assert r.status == 413, r.status  # the smaller limit applies
    m = metrics(pt.port)
    assert metric_value(m, "pitot_config_reloads_total", result="success") == 1, m
    assert metric_value(m, "pitot_config_reloads_total", result="failure") == 0, m
    t = metric_value(m, "pitot_config_last_reload_success_timestamp_seconds")
    assert abs(t - time.time()) < 30, t

    # a configuration that fails a check changes nothing, and says where
    bad = config([sim.port], "limits:\n  max_body_bytes: 2048\n  max_bodyy: 3\n")
    pt.reload(bad, want="the running configuration stays")
    err = pt.proc.stderr()
    assert "reload: %s:5:" % pt.file in err, err[-800:]
    r = request(pt.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, model="gpt-x"))
    assert r.status == 200, r.status
    m = metrics(pt.port)
    assert metric_value(m, "pitot_config_reloads_total", result="failure") == 1, m

    # what takes a restart is kept and said; the rest applies
    pt.reload(config([sim.port], base + "log:\n  level: info\nmeasure:\n  buckets: [1, 2]\n"
                     "models: [small, medium]\n"),
              want="that takes a restart")
    err = pt.proc.stderr()
    assert "reload: measure.buckets changed: that takes a restart" in err, err[-800:]
    r = request(pt.port, "POST", "/v1/chat/completions",
                chat_body(max_tokens=2, model="small", content="x" * 3000))
    assert r.status == 200, r.status  # max_body_bytes back to 1 MiB: applied
    assert 'le="0.005"' in metrics(pt.port)  # the buckets of the start

    # the stream that began before the first reload ends whole
    read_whole(long, 150)
    log = access_log(pt.proc, 6)
    assert all(l["outcome"] == "ok" for l in log if l["status"] == 200), log
    stop_pitot_clean(pt.proc)


def t_in_flight_keep_their_config():
    # each stream pauses 1.5 s after its 3rd token
    sim = start_sim("--model", "small", "--tokens-per-s", "100", "--stall-after", "3",
                    "--stall-ms", "1500")
    pt = Pitot(config([sim.port], "measure:\n  stall: 500ms\n  stall_timeout: 10s\n"))
    before = open_stream(pt.port, chat_body(max_tokens=6, model="small"), sim.port)
    # now a 1 s stall ends a stream: the one in flight keeps its 10 s
    pt.reload(config([sim.port], "measure:\n  stall: 500ms\n  stall_timeout: 1s\n"))
    r = request(pt.port, "POST", "/v1/chat/completions", chat_body(max_tokens=6, model="small"))
    assert r.status == 200 and not r.complete, (r.status, r.complete)
    assert "stall_timeout" in sse_data(r.events)[-1], sse_data(r.events)[-1:]
    before.settimeout(15)
    r = Reader(before).read()
    assert r.status == 200 and r.complete, "the stream that began before the reload was cut"
    before.close()
    stop_pitot_clean(pt.proc)


def t_keys_and_tiers_reload():
    sim = start_sim("--model", "small", "--tokens-per-s", "400")
    tiers = ("tiers:\n  - name: default\n  - name: gold\n    priority: 10\n"
             "    keys: [%s]\n")
    pt = Pitot(config([sim.port], tiers % '"sk-one"'))

    def tier_of(key):
        n = len(access_log(pt.proc))
        r = request(pt.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, model="small"),
                    headers=[("Authorization", "Bearer " + key)])
        assert r.status == 200, r.status
        return access_log(pt.proc, n + 1)[n]["tier"]
    assert tier_of("sk-one") == "gold" and tier_of("sk-two") == "default"
    # a key added to a tier and one taken away: both at once, no restart
    pt.reload(config([sim.port], tiers % '"sk-two"'))
    assert tier_of("sk-two") == "gold" and tier_of("sk-one") == "default"
    # require_auth switched on: a request without a configured key is refused
    pt.reload(config([sim.port], tiers % '"sk-two"' + "require_auth: true\n"))
    r = request(pt.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, model="small"),
                headers=[("Authorization", "Bearer sk-one")])
    assert r.status == 401, r.status
    assert tier_of("sk-two") == "gold"
    stop_pitot_clean(pt.proc)


def named(backends, extra=""):
    lines = ["backends:"]
    lines += ["  - {url: http://%s:%d, name: %s}" % (HOST, port, name) for name, port in backends]
    return "\n".join(lines) + "\n" + extra


def sim_requests(sim):
    return json.loads(request(sim.port, "GET", "/sim/stats").body)["requests"]


def t_backends_reload():
    a = start_sim("--model", "small", "--tokens-per-s", "50")
    b = start_sim("--model", "small", "--tokens-per-s", "400")
    c = start_sim("--model", "small", "--tokens-per-s", "400")
    fast = "health:\n  interval: 200ms\n"
    pt = Pitot(named([("a", a.port)], fast))
    # a stream on a, running across the reloads below
    long = open_stream(pt.port, chat_body(max_tokens=120, model="small"), a.port)

    # b added: probed, scraped, routable at once, in /metrics
    pt.reload(named([("a", a.port), ("b", b.port)], fast))
    assert "reload: backend b added (http://%s:%d)" % (HOST, b.port) in pt.proc.stderr()
    assert wait_for(lambda: metric_value(metrics(pt.port), "pitot_backend_scrape_age_seconds",
                                         backend="b") is not None, 5.0), metrics(pt.port)
    for _ in range(4):  # a is busy with the stream: least busy sends them to b
        r = request(pt.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, model="small"))
        assert r.status == 200 and r.complete, r.status
    assert sim_requests(b) == 4, sim_requests(b)
    m = metrics(pt.port)
    assert metric_value(m, "pitot_requests_total", backend="b", model="small", tier="default",
                        api="chat", code="200") == 4, m

    # a removed: no new request goes there, its stream finishes, then its
    # series leave /metrics
    n_a = sim_requests(a)
    pt.reload(named([("b", b.port)], fast))
    assert "reload: backend a removed: no new request goes there, its 1 in flight finish" \
        in pt.proc.stderr(), pt.proc.stderr()[-800:]
    for _ in range(3):
        r = request(pt.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, model="small"))
        assert r.status == 200, r.status
    assert sim_requests(a) == n_a, "a removed backend got a new request"
    assert metric_value(metrics(pt.port), "pitot_backend_up", backend="a") is not None
    read_whole(long, 120)  # the stream on the removed backend is not cut
    assert wait_for(lambda: 'backend="a"' not in metrics(pt.port), 5.0), "a's series stayed"
    assert "backend a: its last request ended; removed" in pt.proc.stderr()

    # b changed (another address): it starts over there; a comes back with
    # its counters (the same slot, the same series)
    pt.reload(named([("a", a.port), ("b", c.port)], fast))
    err = pt.proc.stderr()
    assert "reload: backend b changed: it starts over (http://%s:%d)" % (HOST, c.port) in err, \
        err[-800:]
    assert "reload: backend a added" in err, err[-800:]
    assert wait_for(lambda: metric_value(metrics(pt.port), "pitot_backend_scrape_age_seconds",
                                         backend="b") is not None, 5.0)
    n_b = sim_requests(b)
    for _ in range(6):
        r = request(pt.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, model="small"))
        assert r.status == 200, r.status
    assert sim_requests(b) == n_b, "b's old address still got requests"
    assert sim_requests(c) + sim_requests(a) - n_a == 6, (sim_requests(c), sim_requests(a))
    m = metrics(pt.port)
    assert metric_value(m, "pitot_requests_total", backend="a", model="small", tier="default",
                        api="chat", code="200") >= 1, m
    log = access_log(pt.proc)
    assert {l["backend"] for l in log} == {"a", "b"}, log
    stop_pitot_clean(pt.proc)


def t_tiers_reload():
    sim = start_sim("--model", "small", "--tokens-per-s", "400")
    tiers = "tiers:\n  - name: default\n" + "".join(
        "  - name: %s\n    keys: [%s]\n" % (name, key) for name, key in (("%s", "sk-a"),))
    pt = Pitot(config([sim.port], tiers % "gold"))

    def ask():
        n = len(access_log(pt.proc))
        r = request(pt.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, model="small"),
                    headers=[("Authorization", "Bearer sk-a")])
        assert r.status == 200, r.status
        return access_log(pt.proc, n + 1)[n]["tier"]

    def count(tier):
        return metric_value(metrics(pt.port), "pitot_requests_total", tier=tier)

    assert ask() == "gold" and count("gold") == 1
    # gold removed, silver added with its key: no restart, gold's series go
    pt.reload(config([sim.port], tiers % "silver"))
    err = pt.proc.stderr()
    assert "reload: tier silver added" in err and "reload: tier gold removed" in err, err[-800:]
    assert "that takes a restart" not in err, err[-800:]
    assert ask() == "silver" and count("silver") == 1
    assert count("gold") is None, "a removed tier is still in /metrics"
    # gold back: its series go on where they stopped
    pt.reload(config([sim.port], tiers % "gold"))
    assert ask() == "gold" and count("gold") == 2
    assert count("silver") is None
    stop_pitot_clean(pt.proc)


def t_access_log_moves():
    sim = start_sim("--model", "small", "--tokens-per-s", "400")
    d = tempfile.mkdtemp(prefix="pitot-alog-")
    a, b = os.path.join(d, "a.log"), os.path.join(d, "b.log")
    pt = Pitot(config([sim.port], "log:\n  access_log: %s\n" % a), cli_log=False)
    assert request(pt.port, "POST", "/v1/chat/completions",
                   chat_body(max_tokens=2, model="small")).status == 200
    pt.reload(config([sim.port], "log:\n  access_log: %s\n" % b))
    assert "reload: the access log goes to %s from now on" % b in pt.proc.stderr()
    for _ in range(2):
        assert request(pt.port, "POST", "/v1/chat/completions",
                       chat_body(max_tokens=2, model="small")).status == 200
    pt.reload(config([sim.port], "log:\n  access_log: %s/no/such/dir.log\n" % d))
    assert "the access log stays where it was" in pt.proc.stderr(), pt.proc.stderr()[-600:]
    assert request(pt.port, "POST", "/v1/chat/completions",
                   chat_body(max_tokens=2, model="small")).status == 200
    assert wait_for(lambda: len(open(b).read().splitlines()) == 3, 5.0)
    assert len(open(a).read().splitlines()) == 1
    stop_pitot_clean(pt.proc)


def t_no_room():
    sims = [start_sim("--model", "small") for _ in range(3)]
    pt = Pitot(named([("s0", sims[0].port)], "routing:\n  spare_backends: 1\n"))
    pt.reload(named([("s0", sims[0].port), ("s1", sims[1].port), ("s2", sims[2].port)],
                    "limits:\n  max_body_bytes: 1000\nrouting:\n  spare_backends: 1\n"),
              want="that takes a restart")
    err = pt.proc.stderr()
    assert "reload: backends (no free slot for backend 's2' (routing.spare_backends: 1 left of " \
        "1 kept at start)) changed: that takes a restart" in err, err[-800:]
    r = request(pt.port, "POST", "/v1/chat/completions",
                chat_body(max_tokens=2, model="small", content="x" * 2000))
    assert r.status == 413, r.status  # the rest applied
    for _ in range(4):
        r = request(pt.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, model="small"))
        assert r.status == 200, r.status
    assert sim_requests(sims[1]) == 0 and sim_requests(sims[2]) == 0
    stop_pitot_clean(pt.proc)


check("SIGHUP: a new configuration applies to new requests; a failing one changes nothing "
      "and is logged with its line; what takes a restart is kept and said", t_reload_applies)
check("a request in flight keeps the configuration it began under", t_in_flight_keep_their_config)
check("a reload changes the tiers' keys and require_auth", t_keys_and_tiers_reload)
check("a reload adds a backend (routable at once), removes one (its stream finishes, then its "
      "series leave /metrics), changes one and brings one back", t_backends_reload)
check("a reload adds, removes and brings back tiers; keys follow; series come and go",
      t_tiers_reload)
check("a reload moves the access log to another path; one that cannot open changes nothing",
      t_access_log_moves)
check("backends that find no spare slot are kept and said; the rest applies", t_no_room)
finish()
