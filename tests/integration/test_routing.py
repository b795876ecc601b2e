"""pitot routing end to end: load-aware choice from the backends' own
/metrics, saturation and the overload queue by tier, model routing and
aliases, retry and ejection of a killed backend, stale scrapes, every flavor's
metrics, tiers and goodput. Real pitot-sim backends (and two small Python
fakes), real pitot, raw clients and pitot-load."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD, HOST, Reader, ThreadedBackend, access_log, build_request, chat_body, check,  # noqa: E402
                     connect, finish, metric_value, metrics, request, start_pitot, start_sim,
                     stop_pitot_clean, wait_for)

PREMIUM_KEY = "sk-premium-test-1"
BATCH_KEY = "sk-batch-test-1"


def conf(routing="", rest="", stale="500ms"):
    """Short scrape, health and ejection intervals, so that every change of a
    backend's state reaches pitot within a few hundred milliseconds."""
    return ("routing:\n"
            "  scrape_interval: 100ms\n"
            "  scrape_timeout: 80ms\n"
            "  scrape_stale: %s\n" % stale +
            "  eject:\n"
            "    failures: 3\n"
            "    base: 500ms\n"
            "    max: 1s\n" + routing +
            "health:\n"
            "  interval: 200ms\n"
            "  timeout: 150ms\n" + rest)


def label(port):
    return "%s:%d" % (HOST, port)


def sim_stats(port):
    r = request(port, "GET", "/sim/stats")
    assert r.status == 200, r.status
    return json.loads(r.body)


def mval(pitot, name, **labels):
    return metric_value(metrics(pitot.port), name, **labels)


def wait_scraped(pitot, port, n=2, timeout=5.0):
    """Waits for n good scrapes of a backend (after the first, pitot has also
    asked llama.cpp's /props for its slot count)."""
    ok = wait_for(lambda: (mval(pitot, "pitot_backend_scrapes_total", backend=label(port),
                                result="ok") or 0) >= n, timeout)
    assert ok, "no %d good scrapes of %s: %s" % (n, label(port), metrics(pitot.port))
    time.sleep(0.05)  # the /props answer that followed the first one


def one_running_one_waiting(port):
    st = sim_stats(port)
    return st["busy"] == 1 and st["in_queue"] == 1


def open_request(port, body, path="/v1/chat/completions", headers=None):
    """Sends a request and returns the socket without reading the answer."""
    s = connect(port)
    s.sendall(build_request("POST", path, body, headers, port))
    return s


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def assert_overloaded(r, what):
    assert r.status == 503, "%s: status %s %r" % (what, r.status, r.body[:200])
    ra = r.header("retry-after")
    assert ra is not None and re.fullmatch(r"[0-9]+", ra) and int(ra) >= 1, \
        "%s: Retry-After %r" % (what, ra)
    err = json.loads(r.body)["error"]
    assert err["type"] == "overloaded" and err["code"] == 503 and err["message"], (what, err)


def run_load(pitot, *args, json_path=None):
    argv = [os.path.join(BUILD, "pitot-load"), "--url",
            "http://%s:%d/v1/chat/completions" % (HOST, pitot.port), "--quiet"] + list(args)
    if json_path:
        argv += ["--json", json_path]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def load_lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def by_backend(lines):
    out = {}
    for l in lines:
        out[l["backend"]] = out.get(l["backend"], 0) + 1
    return out


# ---- 1 ----------------------------------------------------------------------

def t_fast_backend_gets_more():
    slow = start_sim("--slots", "2", "--tokens-per-s", "20", "--prefill-tokens-per-s", "5000")
    fast = start_sim("--slots", "2", "--tokens-per-s", "80", "--prefill-tokens-per-s", "5000")
    pitot = start_pitot([slow.port, fast.port], config=conf())
    wait_scraped(pitot, slow.port)
    wait_scraped(pitot, fast.port)
    ld = run_load(pitot, "--concurrency", "3", "--requests", "24", "--prompt-tokens", "8",
                  "--max-tokens", "8")
    out, err = ld.communicate(timeout=60)
    assert ld.returncode == 0, err
    log = access_log(pitot, 24)
    assert len(log) == 24 and all(l["status"] == 200 and l["outcome"] == "ok" for l in log), \
        [(l["status"], l["outcome"]) for l in log]
    n = by_backend(log)
    ns, nf = n.get(label(slow.port), 0), n.get(label(fast.port), 0)
    assert ns + nf == 24, n
    assert nf >= 1.5 * ns, "fast backend got %d, slow %d" % (nf, ns)
    if os.environ.get("PITOT_VERBOSE"):
        print("  fast %d slow %d" % (nf, ns))
    stop_pitot_clean(pitot)


# ---- 2 ----------------------------------------------------------------------

def t_deferred_backend_avoided():
    a = start_sim("--slots", "4", "--tokens-per-s", "200")
    b = start_sim("--slots", "1", "--tokens-per-s", "20")
    pitot = start_pitot([a.port, b.port], config=conf())
    wait_scraped(pitot, a.port)
    wait_scraped(pitot, b.port)
    # two long streams straight to b: one runs, one waits in b's own queue
    socks = [open_request(b.port, chat_body(max_tokens=400)) for _ in range(2)]
    try:
        assert wait_for(lambda: one_running_one_waiting(b.port)), sim_stats(b.port)
        direct = request(b.port, "GET", "/metrics").body.decode()
        assert metric_value(direct, "llamacpp:requests_processing") == 1, direct
        assert metric_value(direct, "llamacpp:requests_deferred") == 1, direct
        assert wait_for(lambda: mval(pitot, "pitot_backend_requests_waiting", backend=label(b.port)) == 1), \
            metrics(pitot.port)
        m = metrics(pitot.port)
        assert metric_value(m, "pitot_backend_requests_running", backend=label(b.port)) == 1, m
        assert metric_value(m, "pitot_backend_requests_waiting", backend=label(a.port)) == 0, m
        before = sim_stats(b.port)["requests"]
        for k in range(6):
            r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=3))
            assert r.status == 200 and r.complete, (k, r.status)
        log = access_log(pitot, 6)
        assert [l["backend"] for l in log] == [label(a.port)] * 6, [l["backend"] for l in log]
        assert sim_stats(b.port)["requests"] == before, "a request reached the deferred backend"
        assert sim_stats(a.port)["requests"] == 6
    finally:
        close_all(socks)
    stop_pitot_clean(pitot)


# ---- 3 ----------------------------------------------------------------------

TIERS3 = ("tiers:\n"
          "  - name: default\n"
          "    max_wait: 10s\n"
          "  - name: premium\n"
          "    priority: 10\n"
          "    max_wait: 10s\n"
          "    keys: [\"%s\"]\n"
          "  - name: batch\n"
          "    priority: -10\n"
          "    max_wait: 300ms\n"
          "    keys: [\"%s\"]\n"
          "queue:\n"
          "  max_depth: 1\n" % (PREMIUM_KEY, BATCH_KEY))


def t_saturated_queue_by_tier():
    sim = start_sim("--slots", "1", "--tokens-per-s", "50", "--prefill-tokens-per-s", "5000")
    pitot = start_pitot([sim.port], config=conf(rest=TIERS3))
    wait_scraped(pitot, sim.port)
    premium = [("Authorization", "Bearer " + PREMIUM_KEY)]

    def depth(tier):
        return mval(pitot, "pitot_queue_depth", tier=tier)

    # the one slot is taken (pitot learnt capacity 1 from /props)
    hog = open_request(pitot.port, chat_body(max_tokens=2000))
    socks = [hog]
    try:
        r = Reader(hog).read(head_only=True)
        assert r.status == 200, r.status
        d1 = open_request(pitot.port, chat_body(max_tokens=4))
        socks.append(d1)
        assert wait_for(lambda: depth("default") == 1), metrics(pitot.port)
        assert sim_stats(sim.port)["requests"] == 1, "the held request reached the backend"
        # premium arrives at a full queue: the newest lower-tier one goes
        p = open_request(pitot.port, chat_body(max_tokens=4), headers=premium)
        socks.append(p)
        d1.settimeout(5)
        assert_overloaded(Reader(d1).read(), "evicted default request")
        assert wait_for(lambda: depth("premium") == 1 and depth("default") == 0), metrics(pitot.port)
        # a default request while the queue holds a premium one: refused at once
        t0 = time.monotonic()
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=4))
        assert_overloaded(r, "default request at a full queue")
        assert time.monotonic() - t0 < 2.0, "queue_full must not wait"
        m = metrics(pitot.port)
        assert metric_value(m, "pitot_shed_total", tier="default", reason="evicted") == 1, m
        assert metric_value(m, "pitot_shed_total", tier="default", reason="queue_full") == 1, m
        assert metric_value(m, "pitot_shed_total", tier="premium") in (None, 0), m
        # the slot frees: the premium request is served
        hog.close()
        p.settimeout(10)
        rp = Reader(p).read()
        assert rp.status == 200 and rp.complete, rp.status
        assert wait_for(lambda: depth("premium") == 0 and depth("default") == 0), metrics(pitot.port)
        log = [l for l in access_log(pitot, 4) if l["status"] == 200 and l["tier"] == "premium"]
        assert len(log) == 1 and log[0]["completion_tokens"] == 4 and log[0]["outcome"] == "ok", log
        shed = [l for l in access_log(pitot, 4) if l["status"] == 503]
        assert len(shed) == 2 and all(l["tier"] == "default" for l in shed), shed
        m = metrics(pitot.port)
        assert metric_value(m, "pitot_queue_wait_seconds_count", tier="premium") == 1, m
        # max_wait: a batch request held past 300 ms gets 503
        hog2 = open_request(pitot.port, chat_body(max_tokens=2000))
        socks.append(hog2)
        assert Reader(hog2).read(head_only=True).status == 200
        t0 = time.monotonic()
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=4),
                    headers=[("Authorization", "Bearer " + BATCH_KEY)])
        waited = time.monotonic() - t0
        assert_overloaded(r, "batch request past max_wait")
        assert waited >= 0.25, "shed after %.3f s, before max_wait" % waited
        m = metrics(pitot.port)
        assert metric_value(m, "pitot_shed_total", tier="batch", reason="max_wait") == 1, m
        assert metric_value(m, "pitot_queue_depth") == 0, m
    finally:
        close_all(socks)
    stop_pitot_clean(pitot)


# ---- 4 ----------------------------------------------------------------------

def t_killed_backend_retried_ejected_taken_back():
    a = start_sim("--slots", "2", "--tokens-per-s", "200", "--prefill-tokens-per-s", "5000")
    b = start_sim("--slots", "2", "--tokens-per-s", "200", "--prefill-tokens-per-s", "5000")
    pitot = start_pitot([a.port, b.port], config=conf())
    wait_scraped(pitot, a.port)
    wait_scraped(pitot, b.port)
    jf = tempfile.NamedTemporaryFile(prefix="pitot-load-", suffix=".json", delete=False).name
    ld = run_load(pitot, "--concurrency", "2", "--duration", "3", "--prompt-tokens", "8",
                  "--max-tokens", "6", json_path=jf)
    try:
        # both backends serve before the kill
        assert wait_for(lambda: sim_stats(b.port)["completed"] >= 3 and sim_stats(a.port)["completed"] >= 3,
                        3.0), (sim_stats(a.port), sim_stats(b.port))
        b.stop(signal.SIGKILL)
        # the dead one is marked down by the health check or ejected by failures
        def out_of_rotation():
            m = metrics(pitot.port)
            return (metric_value(m, "pitot_backend_up", backend=label(b.port)) == 0 or
                    metric_value(m, "pitot_backend_ejected", backend=label(b.port)) == 1)
        assert wait_for(out_of_rotation, 2.0), metrics(pitot.port)
        out, err = ld.communicate(timeout=30)
        assert ld.returncode == 0, err
    finally:
        if ld.poll() is None:
            ld.kill()
            ld.wait()
    client = load_lines(jf)
    os.unlink(jf)
    log = access_log(pitot, len(client))
    assert len(client) >= 20 and len(log) == len(client), (len(client), len(log))
    bad = [l for l in log if l["outcome"] != "ok"]
    # only streams already under way on the killed backend may fail: at most
    # its slots' worth (2 with concurrency 2), and never before the first byte
    assert len(bad) <= 2, bad
    assert all(l["backend"] == label(b.port) and l["status"] == 200 and
               l["outcome"] == "upstream_error" for l in bad), bad
    assert all(c["status"] == 200 for c in client), [c for c in client if c["status"] != 200]
    assert sum(1 for c in client if c["error"]) == len(bad), ([c for c in client if c["error"]], bad)
    # pitot did meet the dead backend (a cut stream, or a refused or reset
    # connection that was retried on the other), and no client saw it fail
    # before its first byte
    assert (mval(pitot, "pitot_upstream_errors_total", backend=label(b.port)) or 0) >= 1
    # requests after the kill all went to the live backend and succeeded
    tail = log[-10:]
    assert all(l["backend"] == label(a.port) and l["outcome"] == "ok" for l in tail), tail
    # the same port comes back: the backend is taken back
    b2 = start_sim("--slots", "2", "--tokens-per-s", "200", "--prefill-tokens-per-s", "5000",
                   port=b.port)
    assert wait_for(lambda: mval(pitot, "pitot_backend_up", backend=label(b.port)) == 1, 3.0), \
        metrics(pitot.port)

    def reached():
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2))
        assert r.status == 200 and r.complete, r.status
        return sim_stats(b2.port)["requests"] >= 2
    assert wait_for(reached, 5.0, step=0.05), (sim_stats(b2.port), metrics(pitot.port))
    m = metrics(pitot.port)
    assert metric_value(m, "pitot_backend_up", backend=label(b.port)) == 1, m
    assert metric_value(m, "pitot_backend_ejected", backend=label(b.port)) == 0, \
        "pitot_backend_ejected still 1 for a backend serving again: %s" % m
    stop_pitot_clean(pitot)


def t_5xx_backend_ejected_not_the_last():
    a = start_sim("--tokens-per-s", "400")
    b = start_sim("--tokens-per-s", "400", "--fail-status", "500")
    pitot = start_pitot([a.port, b.port], config=conf())
    A, B = label(a.port), label(b.port)
    wait_scraped(pitot, a.port)
    wait_scraped(pitot, b.port)
    statuses = []
    while statuses.count(500) < 3:
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2))
        statuses.append(r.status)  # a 5xx answer is relayed, not retried
        assert r.status in (200, 500) and len(statuses) < 12, statuses
    assert mval(pitot, "pitot_backend_ejected", backend=B) == 1, metrics(pitot.port)
    n0 = len(access_log(pitot))
    for _ in range(4):  # well within the 500 ms ejection
        assert request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2)).status == 200
    assert [l["backend"] for l in access_log(pitot, n0 + 4)[n0:]] == [A] * 4
    # the ejection ends by itself: the gauge follows, and b gets requests again
    assert wait_for(lambda: mval(pitot, "pitot_backend_ejected", backend=B) == 0, 2.0), metrics(pitot.port)
    before = sim_stats(b.port)["requests"]
    for _ in range(4):
        request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2))
    assert sim_stats(b.port)["requests"] > before, "not taken back after the ejection"
    stop_pitot_clean(pitot)
    # the last backend of a model is never ejected
    pitot = start_pitot([b.port], config=conf())
    for _ in range(5):
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2))
        assert r.status == 500, r.status
    assert mval(pitot, "pitot_backend_ejected", backend=B) == 0, metrics(pitot.port)
    stop_pitot_clean(pitot)


class ResetBackend(ThreadedBackend):
    """Healthy by /health, no /metrics or model list, and every other request
    is answered by a TCP reset before any byte."""

    def __init__(self):
        self.resets = 0
        ThreadedBackend.__init__(self)

    def serve(self, c, conn_id):
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                d = c.recv(65536)
                if not d:
                    return
                head += d
            if head.startswith(b"GET /health "):
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            elif head.startswith(b"GET "):
                c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                self.resets += 1
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        finally:
            c.close()


def t_reset_before_first_byte_retried():
    rb = ResetBackend()
    try:
        sim = start_sim("--tokens-per-s", "400")
        pitot = start_pitot([sim.port, rb.port], config=conf())
        R = label(rb.port)
        wait_scraped(pitot, sim.port)
        n = 0
        while rb.resets < 3:
            r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=3))
            assert r.status == 200 and r.complete, r.status
            n += 1
            assert n < 12, "the resetting backend got %d requests of %d" % (rb.resets, n)
        m = metrics(pitot.port)
        assert metric_value(m, "pitot_upstream_errors_total", backend=R, kind="upstream_reset") == 3, m
        assert metric_value(m, "pitot_backend_ejected", backend=R) == 1, m
        log = access_log(pitot, n)
        assert all(l["backend"] == label(sim.port) and l["outcome"] == "ok" for l in log), log
        assert sim_stats(sim.port)["requests"] == n
        stop_pitot_clean(pitot)
    finally:
        rb.close()


# ---- 5 ----------------------------------------------------------------------

def t_model_routing_and_aliases():
    a = start_sim("--model", "small", "--tokens-per-s", "400")
    b = start_sim("--model", "large", "--tokens-per-s", "400")
    pitot = start_pitot([a.port, b.port], config=conf(routing="  aliases: {gpt-4o: large}\n"))

    def ask(model, **kw):
        return request(pitot.port, "POST", "/v1/chat/completions",
                       chat_body(max_tokens=3, model=model, **kw))
    # until both model lists are learnt, a backend serves anything
    assert wait_for(lambda: ask("unknown").status == 404, 5.0, step=0.05), "model lists never learnt"
    n0 = len(access_log(pitot))
    sa, sb = sim_stats(a.port)["requests"], sim_stats(b.port)["requests"]
    for model in ("small", "large", "gpt-4o", "small", "large", "gpt-4o"):
        r = ask(model)
        assert r.status == 200 and r.complete, (model, r.status)
    r = ask("small", stream=False)
    assert r.status == 200 and json.loads(r.body)["model"] == "small", r.body[:200]
    r = ask("gpt-4o", stream=False)
    assert r.status == 200 and json.loads(r.body)["model"] == "large", r.body[:200]
    log = access_log(pitot, n0 + 8)[n0:]
    got = [l["backend"] for l in log]
    A, B = label(a.port), label(b.port)
    assert got == [A, B, B, A, B, B, A, B], got
    assert sim_stats(a.port)["requests"] - sa == 3 and sim_stats(b.port)["requests"] - sb == 5
    shed0 = mval(pitot, "pitot_shed_total", reason="no_model") or 0
    r = ask("unknown")
    assert r.status == 404, r.status
    err = json.loads(r.body)["error"]
    assert err["type"] == "model_not_found" and err["code"] == 404, err
    r = ask("unknown", stream=False)
    assert r.status == 404 and json.loads(r.body)["error"]["type"] == "model_not_found"
    assert sim_stats(a.port)["requests"] - sa == 3 and sim_stats(b.port)["requests"] - sb == 5, \
        "an unknown model reached a backend"
    assert mval(pitot, "pitot_shed_total", reason="no_model") == shed0 + 2, metrics(pitot.port)
    stop_pitot_clean(pitot)


# ---- 6 ----------------------------------------------------------------------

class FakeLlama(ThreadedBackend):
    """A llama.cpp look-alike: /metrics says `fixed` (processing, deferred),
    or with fixed=None the completions it holds now as processing (and hangs
    once `hang` is set), /props `slots` slots, and chat completions are
    answered as one JSON body, held until `release` is set when `hold` is."""

    def __init__(self, slots=8, fixed=(2, 5)):
        self.slots = slots
        self.fixed = fixed
        self.busy = 0
        self.hang = False
        self.hold = False
        self.release = threading.Event()
        self.completions = 0
        self.metrics_asked = 0
        self.lock = threading.Lock()
        ThreadedBackend.__init__(self)

    def reply(self, c, status, body):
        c.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (status, len(body), body))

    def serve(self, c, conn_id):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                n = int(m.group(1)) if m else 0
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf[n:]
                target = head.split(b"\r\n")[0].split(b" ")[1]
                if target == b"/health":
                    self.reply(c, b"200 OK", b'{"status":"ok"}')
                elif target == b"/metrics":
                    with self.lock:
                        self.metrics_asked += 1
                    if self.hang:
                        time.sleep(0.4)  # well past scrape_timeout
                    proc, deferred = self.fixed or (self.busy, 0)
                    body = (b"# TYPE llamacpp:requests_processing gauge\n"
                            b"llamacpp:requests_processing %d\n"
                            b"# TYPE llamacpp:requests_deferred gauge\n"
                            b"llamacpp:requests_deferred %d\n" % (proc, deferred))
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                elif target == b"/props":
                    self.reply(c, b"200 OK", b'{"total_slots":%d}' % self.slots)
                elif target == b"/v1/models":
                    self.reply(c, b"200 OK", b'{"object":"list","data":[{"id":"small","object":"model"}]}')
                elif target == b"/v1/chat/completions":
                    with self.lock:
                        self.completions += 1
                        self.busy += 1
                    if self.hold:
                        self.release.wait(30)
                    with self.lock:
                        self.busy -= 1
                    self.reply(c, b"200 OK",
                               b'{"id":"x","object":"chat.completion","created":1,"model":"small",'
                               b'"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},'
                               b'"finish_reason":"stop"}],'
                               b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}')
                else:
                    self.reply(c, b"404 Not Found", b"{}")
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.release.set()
        ThreadedBackend.close(self)


def t_stale_scrape_falls_back_to_own_counts():
    fake = FakeLlama()
    socks = []
    try:
        sim = start_sim("--slots", "4", "--tokens-per-s", "20", "--prefill-tokens-per-s", "5000")
        pitot = start_pitot([fake.port, sim.port], config=conf())
        F, S = label(fake.port), label(sim.port)
        wait_scraped(pitot, fake.port)
        wait_scraped(pitot, sim.port)
        m = metrics(pitot.port)
        assert metric_value(m, "pitot_backend_requests_running", backend=F) == 2, m
        assert metric_value(m, "pitot_backend_requests_waiting", backend=F) == 5, m
        # fresh scrape: 7 of 8 busy, the idle sim takes everything
        for _ in range(4):
            r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False, max_tokens=2))
            assert r.status == 200, r.status
        assert [l["backend"] for l in access_log(pitot, 4)] == [S] * 4
        assert fake.completions == 0
        # its /metrics now hangs: scrapes time out and age past scrape_stale
        fake.hang = True
        fake.hold = True
        t0 = mval(pitot, "pitot_backend_scrapes_total", backend=F, result="timeout") or 0
        assert wait_for(lambda: (mval(pitot, "pitot_backend_scrapes_total", backend=F,
                                      result="timeout") or 0) >= t0 + 3, 5.0), metrics(pitot.port)
        assert wait_for(lambda: (mval(pitot, "pitot_backend_scrape_age_seconds", backend=F) or 0) > 0.6,
                        3.0), metrics(pitot.port)
        assert (mval(pitot, "pitot_backend_scrape_age_seconds", backend=S) or 0) < 0.5
        # pitot's own counts now: fake (capacity 8) vs sim (capacity 4), one at
        # a time, every request held. Least in flight per slot gives 4 and 2;
        # a failed scrape taken as idle would give 6 and 0, the stale
        # "7 of 8 busy" 0 and 6.
        for k in range(1, 7):
            socks.append(open_request(pitot.port, chat_body(stream=False, max_tokens=400)))
            assert wait_for(lambda: mval(pitot, "pitot_requests_in_flight") == k), metrics(pitot.port)
        m = metrics(pitot.port)
        inf, ins = (metric_value(m, "pitot_requests_in_flight", backend=F),
                    metric_value(m, "pitot_requests_in_flight", backend=S))
        assert (inf, ins) == (4, 2), "in flight fake %s, sim %s" % (inf, ins)
        assert wait_for(lambda: fake.completions == 4 and sim_stats(sim.port)["busy"] == 2), \
            (fake.completions, sim_stats(sim.port))
        assert (mval(pitot, "pitot_backend_scrapes_total", backend=F, result="error") or 0) + \
            (mval(pitot, "pitot_backend_scrapes_total", backend=F, result="timeout") or 0) >= 3
        # released, the fake's answers come through
        fake.release.set()
        got = 0
        for s in socks:
            s.settimeout(0.5)
            try:
                r = Reader(s).read()
            except OSError:
                continue
            if r.status == 200 and r.complete and b'"content":"ok"' in r.body:
                got += 1
        assert got == 4, got
        close_all(socks)
        stop_pitot_clean(pitot)
    finally:
        close_all(socks)
        fake.close()


def t_completion_frees_slot_at_once():
    # One slot, scrapes that freeze on "1 running" (they time out, and stay
    # fresh for 5 s): when the running request ends, the one pitot holds must
    # go at once, not when the scrape goes stale or the next one succeeds.
    fake = FakeLlama(slots=1, fixed=None)
    fake.hold = True
    socks = []
    try:
        pitot = start_pitot([fake.port], config=conf(stale="5s"))
        F = label(fake.port)
        wait_scraped(pitot, fake.port)
        socks.append(open_request(pitot.port, chat_body(stream=False, max_tokens=2)))
        assert wait_for(lambda: mval(pitot, "pitot_backend_requests_running", backend=F) == 1), \
            metrics(pitot.port)
        fake.hang = True
        assert wait_for(lambda: (mval(pitot, "pitot_backend_scrapes_total", backend=F, result="timeout")
                                 or 0) >= 1, 2.0), metrics(pitot.port)
        ok0 = mval(pitot, "pitot_backend_scrapes_total", backend=F, result="ok")
        socks.append(open_request(pitot.port, chat_body(stream=False, max_tokens=2)))
        assert wait_for(lambda: mval(pitot, "pitot_queue_depth") == 1), metrics(pitot.port)
        assert fake.completions == 1
        fake.release.set()
        socks[0].settimeout(5)
        assert Reader(socks[0]).read().status == 200
        # at once: well within the 5 s a scrape stays fresh
        assert wait_for(lambda: fake.completions == 2, 1.0), \
            "held request not sent when the slot freed: %s" % metrics(pitot.port)
        socks[1].settimeout(5)
        assert Reader(socks[1]).read().status == 200
        m = metrics(pitot.port)
        assert metric_value(m, "pitot_backend_scrapes_total", backend=F, result="ok") == ok0, m
        assert metric_value(m, "pitot_backend_scrape_age_seconds", backend=F) < 5, m
        close_all(socks)
        stop_pitot_clean(pitot)
    finally:
        close_all(socks)
        fake.close()


# ---- 7 ----------------------------------------------------------------------

def sim_flavors():
    out = subprocess.run([os.path.join(BUILD, "pitot-sim"), "--help"], capture_output=True, text=True)
    return "--flavor" in out.stdout + out.stderr


def t_flavor_metrics_end_to_end():
    if not wait_for(sim_flavors, 60.0, step=2.0):
        raise AssertionError("pitot-sim --flavor not supported yet by %s/pitot-sim" % BUILD)
    for flavor in ("llamacpp", "vllm", "tgi", "sglang"):
        sim = start_sim("--flavor", flavor, "--slots", "1", "--model", "small", "--tokens-per-s", "100",
                        "--prefill-tokens-per-s", "5000")
        pitot = start_pitot([sim.port], config=conf())
        B = label(sim.port)
        wait_scraped(pitot, sim.port)
        socks = [open_request(sim.port, chat_body(max_tokens=2000)) for _ in range(2)]
        try:
            assert wait_for(lambda: one_running_one_waiting(sim.port)), (flavor, sim_stats(sim.port))

            def seen_by_pitot():
                m = metrics(pitot.port)
                return (metric_value(m, "pitot_backend_requests_running", backend=B) == 1 and
                        metric_value(m, "pitot_backend_requests_waiting", backend=B) == 1)
            assert wait_for(seen_by_pitot), (flavor, metrics(pitot.port))
            cache = mval(pitot, "pitot_backend_cache_usage_ratio", backend=B)
            if flavor == "llamacpp":
                assert cache is None, (flavor, cache)
            else:
                assert cache is not None and 0 <= cache <= 1, (flavor, cache)
            assert (mval(pitot, "pitot_backend_scrapes_total", backend=B, result="parse_error") or 0) == 0
        finally:
            close_all(socks)
        assert wait_for(lambda: (lambda s: s["busy"] == 0 and s["in_queue"] == 0)(sim_stats(sim.port))), \
            (flavor, sim_stats(sim.port))
        # pitot's answer must not lag behind its last scrape of the long streams
        assert wait_for(lambda: mval(pitot, "pitot_backend_requests_running", backend=B) == 0), flavor
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=7))
        assert r.status == 200 and r.complete, (flavor, r.status, r.body[:300])
        ns = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False, max_tokens=5))
        assert ns.status == 200, (flavor, ns.status, ns.body[:300])
        usage = json.loads(ns.body)["usage"]
        log = access_log(pitot, 2)
        assert len(log) == 2 and all(l["status"] == 200 and l["outcome"] == "ok" and l["backend"] == B
                                     for l in log), (flavor, log)
        assert log[0]["completion_tokens"] == 7 and log[0]["tokens_estimated"] is False, (flavor, log[0])
        assert log[0]["prompt_tokens"] == usage["prompt_tokens"], (flavor, log[0], usage)
        assert log[1]["completion_tokens"] == 5 == usage["completion_tokens"], (flavor, log[1], usage)
        assert log[1]["prompt_tokens"] == usage["prompt_tokens"], (flavor, log[1], usage)
        stop_pitot_clean(pitot)
        sim.stop()


# ---- 8 ----------------------------------------------------------------------

TIERS8 = ("tiers:\n"
          "  - name: premium\n"
          "    priority: 10\n"
          "    slo_ttft: 50ms\n"
          "    slo_tpot: 100ms\n"
          "    keys: [\"%s\"]\n" % PREMIUM_KEY)


def t_tiers_and_goodput():
    # prefill 1000 tokens/s: 4 prompt bytes a token, so 1200 bytes take 300 ms
    sim = start_sim("--tokens-per-s", "200", "--prefill-tokens-per-s", "1000")
    pitot = start_pitot([sim.port], config=conf(rest=TIERS8))
    premium = [("Authorization", "Bearer " + PREMIUM_KEY)]
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body("hi", max_tokens=5), headers=premium)
    assert r.status == 200 and r.complete
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body("y" * 1200, max_tokens=5),
                headers=premium)
    assert r.status == 200 and r.complete
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body("hi", max_tokens=5))
    assert r.status == 200
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body("hi", max_tokens=5),
                headers=[("Authorization", "Bearer not-a-key")])
    assert r.status == 200
    log = access_log(pitot, 4)
    assert [l["tier"] for l in log] == ["premium", "premium", "default", "default"], log
    assert log[0]["ttft_ms"] < 50 and log[0]["tpot_ms"] < 100, log[0]
    assert log[1]["ttft_ms"] >= 290, log[1]
    m = metrics(pitot.port)
    assert metric_value(m, "pitot_requests_total", tier="premium", code="200") == 2, m
    assert metric_value(m, "pitot_requests_total", tier="default", code="200") == 2, m
    assert metric_value(m, "pitot_time_to_first_token_seconds_count", tier="premium") == 2, m
    assert metric_value(m, "pitot_completion_tokens_total", tier="premium") == 10, m
    assert metric_value(m, "pitot_slo_requests_total", tier="premium", met="true") == 1, m
    assert metric_value(m, "pitot_slo_requests_total", tier="premium", met="false") == 1, m
    # the default tier has no targets: both met
    assert metric_value(m, "pitot_slo_requests_total", tier="default", met="true") == 2, m
    assert "Bearer" not in open(pitot.access_log).read() and PREMIUM_KEY not in m
    stop_pitot_clean(pitot)



def t_round_robin_learns_slots():
    # Every policy scrapes: round_robin too learns llama.cpp's 2 slots from
    # /props, sends 2 and holds the other 2 in pitot's queue.
    sim = start_sim("--slots", "2", "--tokens-per-s", "20")
    pitot = start_pitot([sim.port], config="routing:\n  policy: round_robin\n  scrape_interval: 100ms\n"
                                          "  scrape_timeout: 80ms\n  scrape_stale: 500ms\n")
    assert wait_for(lambda: metric_value(metrics(pitot.port), "pitot_backend_scrapes_total",
                                         result="ok") or 0, 5.0)
    time.sleep(0.3)
    socks = []
    for _ in range(4):
        s = connect(pitot.port)
        s.sendall(build_request("POST", "/v1/chat/completions", chat_body(max_tokens=40),
                                port=pitot.port))
        socks.append(s)
    seen = wait_for(lambda: (lambda m: (metric_value(m, "pitot_requests_in_flight"),
                                        metric_value(m, "pitot_queue_depth")))(metrics(pitot.port))
                    == (2.0, 2.0), 3.0)
    m = metrics(pitot.port)
    assert seen, (metric_value(m, "pitot_requests_in_flight"), metric_value(m, "pitot_queue_depth"))
    assert json.loads(request(sim.port, "GET", "/sim/stats").body)["in_queue"] == 0
    for s in socks:
        s.close()
    stop_pitot_clean(pitot)


# ---- 9 ----------------------------------------------------------------------

def t_speed_aware_prefers_the_faster():
    """Two idle backends, one 4x slower per token: once pitot has timed a
    stream on each, one request at a time all go to the faster one; with
    routing.speed_aware off they keep taking turns."""
    slow = start_sim("--slots", "2", "--tokens-per-s", "20", "--prefill-tokens-per-s", "5000")
    fast = start_sim("--slots", "2", "--tokens-per-s", "80", "--prefill-tokens-per-s", "5000")
    for aware in (True, False):
        pitot = start_pitot([slow.port, fast.port],
                            config=conf(routing="  speed_aware: %s\n" % str(aware).lower()))
        wait_scraped(pitot, slow.port)
        wait_scraped(pitot, fast.port)
        for k in range(12):
            r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=4))
            assert r.status == 200 and r.complete, (aware, k, r.status)
            # Idle as both backends' own last scrape says (a scrape taken
            # during the request but read after its end would show it running).
            assert wait_for(lambda: mval(pitot, "pitot_backend_requests_running") == 0), \
                metrics(pitot.port)
        got = [l["backend"] for l in access_log(pitot, 12)]
        assert len(got) == 12, got
        # the first two: neither timed yet, so they take turns
        assert sorted(got[:2]) == sorted([label(slow.port), label(fast.port)]), got
        if aware:
            assert got[2:] == [label(fast.port)] * 10, got
        else:
            assert got[2:] == [got[0], got[1]] * 5, got
        stop_pitot_clean(pitot)


check("least busy: the 4x faster backend gets >= 1.5x the requests", t_fast_backend_gets_more)
check("a backend with deferred requests (its own /metrics) is avoided", t_deferred_backend_avoided)
check("all saturated: queue by tier, eviction, queue_full, max_wait, 503 Retry-After",
      t_saturated_queue_by_tier)
check("killed backend: retried elsewhere, marked down/ejected, taken back on return",
      t_killed_backend_retried_ejected_taken_back)
check("5xx backend ejected for eject.base, gauge back to 0, never the last one",
      t_5xx_backend_ejected_not_the_last)
check("reset before the first byte: retried on the other backend, ejected after 3",
      t_reset_before_first_byte_retried)
check("model routing from /v1/models, aliases, 404 model_not_found reaches nothing",
      t_model_routing_and_aliases)
check("stale scrape falls back to pitot's own in-flight counts, never to idle",
      t_stale_scrape_falls_back_to_own_counts)
check("a finished request frees its slot at once, not at the next scrape",
      t_completion_frees_slot_at_once)
check("llamacpp/vllm/tgi/sglang metrics parsed end to end; exact token counts", t_flavor_metrics_end_to_end)
check("tiers from API keys; SLO goodput met/not met", t_tiers_and_goodput)
check("round_robin learns llama.cpp slots from /props; the rest wait in pitot",
      t_round_robin_learns_slots)
check("speed_aware: idle, the faster backend goes first once timed; off, they take turns",
      t_speed_aware_prefers_the_faster)
finish()
