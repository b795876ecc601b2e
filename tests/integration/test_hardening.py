"""pitot against clients and backends that misbehave on purpose, with the raw
bytes on the wire: running out of file descriptors, request bodies that are
no JSON (and what counts toward ejecting a backend), deadlines that pacing
bytes cannot stretch (response head, interim responses, request body), and
the status a client gets when its last backend fails (502, not 503)."""

import contextlib
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HOST, RawBackend, Reader, ThreadedBackend, access_log, build_request,  # noqa: E402
                     chat_body, check, connect, finish, free_port, metric_value, metrics,
                     request, sse_data, start_pitot, start_sim, stop_pitot_clean, wait_for)

FAST = ("routing:\n  scrape_interval: 100ms\n  scrape_timeout: 80ms\n  scrape_stale: 500ms\n"
        "health:\n  interval: 200ms\n  timeout: 150ms\n")


def label(port):
    return "%s:%d" % (HOST, port)


def mval(pitot, name, **labels):
    return metric_value(metrics(pitot.port), name, **labels)


def error_of(r):
    return json.loads(r.body)["error"]


def served(pitot, timeout=5.0):
    """Waits until a streamed request through pitot succeeds; returns it."""
    def ok():
        try:
            r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=3),
                        timeout=5.0)
        except OSError:
            return None
        return r if r.status == 200 and r.complete else None
    return wait_for(ok, timeout, step=0.1)


# ---- file descriptors --------------------------------------------------------

@contextlib.contextmanager
def nofile_limit(soft, hard):
    """Processes started inside run with RLIMIT_NOFILE (soft, hard), set in
    the child between fork and exec (the harness starts them with
    subprocess.Popen)."""
    orig = subprocess.Popen

    def popen(*args, **kw):
        kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return orig(*args, **kw)
    subprocess.Popen = popen
    try:
        yield
    finally:
        subprocess.Popen = orig


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nofile_of(pid):
    """(soft, hard) 'Max open files' of a process, from /proc/PID/limits."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                parts = line.split()
                return int(parts[3]), int(parts[4])
    raise AssertionError("no Max open files line")


def own_fds(n):
    """Makes sure this process may hold n more sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1024), hard))


def open_idle(port, n):
    """n connections that send nothing (those pitot closes at once stay
    open on this side until closed here)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(5.0)
        s.connect((HOST, port))
        socks.append(s)
    return socks


def t_fd_limit_idle_connections_do_not_spin():
    own_fds(400)
    sim = start_sim("--tokens-per-s", "400")
    with nofile_limit(256, 256):
        pitot = start_pitot([sim.port], config="workers: 2\nupstream:\n  keepalive: 16\n")
    assert nofile_of(pitot.p.pid) == (256, 256)
    err = pitot.stderr()
    assert "pitot: max_clients lowered from 4096 to " in err and ": RLIMIT_NOFILE is 256" in err, err
    lowered = int(err.split("max_clients lowered from 4096 to ")[1].split(":")[0])
    # two descriptors a client; each worker keeps 22 of its own and, for the
    # backend, its 16 idle connections and 3 more
    assert lowered == (256 - 2 * (22 + 16 + 3)) // 2, lowered
    socks = open_idle(pitot.port, 300)
    try:
        time.sleep(0.5)  # let pitot take what it can
        c0, t0 = cpu_seconds(pitot.p.pid), time.monotonic()
        time.sleep(2.0)
        cpu, wall = cpu_seconds(pitot.p.pid) - c0, time.monotonic() - t0
        # a spin on accept() burns the whole interval; idle is a few ms
        assert cpu < 0.4 * wall, "pitot used %.2f s of CPU in %.2f s with idle clients" % (cpu, wall)
        lines = pitot.stderr().splitlines()
        assert len(lines) < 20, "%d stderr lines: %s" % (len(lines), "\n".join(lines[:10]))
        assert any(("max_clients (%d) reached" % lowered) in l for l in lines), lines
    finally:
        for s in socks:
            s.close()
    # once they are gone, a client is served again
    assert served(pitot), pitot.stderr()[-1000:]
    stop_pitot_clean(pitot)


def t_fd_soft_limit_raised_to_hard():
    sim = start_sim()
    with nofile_limit(200, 300):
        pitot = start_pitot([sim.port])
    assert nofile_of(pitot.p.pid) == (300, 300), nofile_of(pitot.p.pid)
    assert "RLIMIT_NOFILE is 300" in pitot.stderr(), pitot.stderr()
    stop_pitot_clean(pitot)
    # a limit that holds max_clients leaves it alone and says nothing
    with nofile_limit(4096, 16384):
        pitot = start_pitot([sim.port], config="limits:\n  max_clients: 100\n")
    assert nofile_of(pitot.p.pid) == (16384, 16384)
    assert "max_clients lowered" not in pitot.stderr(), pitot.stderr()
    stop_pitot_clean(pitot)


def t_fd_exhausted_at_run_time_pauses_accept():
    """The limit drops under what pitot planned for (prlimit on the running
    process): accept() fails with EMFILE, the listener rests instead of
    spinning, one line a second, and serves again once descriptors free."""
    own_fds(400)
    sim = start_sim("--tokens-per-s", "400")
    pitot = start_pitot([sim.port])
    resource.prlimit(pitot.p.pid, resource.RLIMIT_NOFILE, (64, 64))
    socks = open_idle(pitot.port, 150)
    try:
        time.sleep(0.5)
        c0, t0 = cpu_seconds(pitot.p.pid), time.monotonic()
        time.sleep(2.0)
        cpu, wall = cpu_seconds(pitot.p.pid) - c0, time.monotonic() - t0
        assert cpu < 0.4 * wall, "pitot used %.2f s of CPU in %.2f s out of descriptors" % (cpu, wall)
        lines = [l for l in pitot.stderr().splitlines() if "accept" in l]
        assert 1 <= len(lines) <= 6, lines
        assert "Too many open files" in lines[0] and "new connections wait" in lines[0], lines
        if len(lines) > 1:  # later lines count the failures in between
            assert " times since the last report" in lines[1], lines
    finally:
        for s in socks:
            s.close()
    assert served(pitot), pitot.stderr()[-1000:]
    stop_pitot_clean(pitot)


# ---- bodies that are no JSON, and ejection -------------------------------------

ALWAYS_500 = lambda head, body: RawBackend.json_reply(  # noqa: E731
    b'{"error":{"code":500,"message":"[json.exception.parse_error.101] parse error",'
    b'"type":"server_error"}}', b"500 Internal Server Error")

NOT_JSON = [
    ("/v1/chat/completions", b'{"messages": [oops'),     # llama.cpp's capture
    ("/v1/messages", b""),                                # empty body (the other capture)
    ("/completion", b"not json"),
    ("/v1/completions", b'{"prompt":"x"} trailing'),     # garbage after the object
    ("/v1/embeddings", b'["a top-level array"]'),        # not an object
    ("/v1/chat/completions?stream=1", b"{'a':1}"),       # path without its query
    ("/tokenize", b'{"content":"x",}'),
    ("/v1/responses", b"\xff\xfe{}"),
    ("/generate_stream", b'{"inputs":"x"'),
]


def t_invalid_json_400_never_reaches_backend():
    raw = RawBackend(ALWAYS_500)
    try:
        sim = start_sim("--tokens-per-s", "400")
        pitot = start_pitot([raw.port, sim.port], config=FAST)
        s = connect(pitot.port)
        rd = Reader(s)
        for path, body in NOT_JSON:
            # one keep-alive connection: the body was read whole, the next may follow
            s.sendall(build_request("POST", path, body, port=pitot.port))
            r = rd.read()
            assert r.status == 400, (path, body, r.status, r.body)
            assert r.header("connection") != "close", (path, r.headers)
            e = error_of(r)
            if path == "/v1/messages":  # Anthropic's error shape on its API
                assert json.loads(r.body)["type"] == "error", r.body
                assert e == {"type": "invalid_request_error",
                             "message": "the request body is not valid JSON"}, e
            else:
                assert e == {"message": "the request body is not valid JSON",
                             "type": "invalid_request_error", "code": None}, e
        s.close()
        assert raw.proxied_bytes() == b"", raw.proxied_bytes()[:200]
        log = access_log(pitot, len(NOT_JSON))
        assert len(log) == len(NOT_JSON), log
        for line in log:
            assert (line["status"], line["outcome"], line["error"], line["backend"]) == \
                (400, "bad_request", "invalid_json", None), line
        assert [l["path"] for l in log] == [p.split("?")[0] for p, _ in NOT_JSON], log
        # pipelined in one write: each answered in order on the same connection
        s = connect(pitot.port)
        rd = Reader(s)
        s.sendall(b"".join(build_request("POST", "/v1/chat/completions", b"{" * (i % 3 + 1),
                                         port=pitot.port) for i in range(200)))
        for i in range(200):
            r = rd.read()
            assert r.status == 400 and error_of(r)["type"] == "invalid_request_error", (i, r.status)
        s.close()
        assert raw.proxied_bytes() == b"", raw.proxied_bytes()[:200]
        m = metrics(pitot.port)
        assert metric_value(m, "pitot_backend_ejected", backend=label(raw.port)) == 0, m
        # a body that is not one JSON object, on a path that is no JSON API
        # (llama.cpp's /lora-adapters takes an array): not pitot's to judge
        r = request(pitot.port, "POST", "/lora-adapters", b'[{"id": 0, "scale": 0.5}]')
        log = access_log(pitot, len(NOT_JSON) + 201)[-1]
        assert r.status != 400 and log["backend"] is not None, (r.status, log)
        # the backend still serves: well-formed requests do reach it
        def chats():
            return sum(1 for h, _, _ in raw.requests if h.startswith("POST /v1/chat/completions "))
        n = 0
        while chats() < 3:
            r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2))
            assert r.status in (200, 500), r.status
            n += 1
            assert n < 20, "the 500 backend got %d of %d requests" % (chats(), n)
        # ... and three 500s to well-formed requests eject it
        assert wait_for(lambda: mval(pitot, "pitot_backend_ejected", backend=label(raw.port)) == 1,
                        1.0), metrics(pitot.port)
        stop_pitot_clean(pitot)
    finally:
        raw.close()


def t_other_5xx_do_not_eject():
    """A 500 to a request pitot did not check (no JSON API), 501 and 505 say
    nothing of the backend's health; 502, 503 and 504 do."""
    statuses = {"/v1/models": b"500 Internal Server Error", "/props": b"501 Not Implemented",
                "/slots": b"505 HTTP Version Not Supported", "/health-ish": b"502 Bad Gateway"}

    def respond(head, body):
        path = head.split(" ")[1]
        return RawBackend.json_reply(b'{"error":"x"}', statuses.get(path, b"200 OK"))
    raw = RawBackend(respond)
    try:
        sim = start_sim("--tokens-per-s", "400")
        pitot = start_pitot([raw.port, sim.port], config=FAST)
        sent = 0
        while sum(1 for h, _, _ in raw.requests if " /health-ish " not in h) < 9:
            for path in ("/v1/models", "/props", "/slots"):
                request(pitot.port, "GET", path)
            sent += 1
            assert sent < 20, raw.requests
        assert mval(pitot, "pitot_backend_ejected", backend=label(raw.port)) == 0, metrics(pitot.port)
        sent = 0
        while sum(1 for h, _, _ in raw.requests if " /health-ish " in h) < 3:
            request(pitot.port, "GET", "/health-ish")
            sent += 1
            assert sent < 20, raw.requests
        assert wait_for(lambda: mval(pitot, "pitot_backend_ejected", backend=label(raw.port)) == 1,
                        1.0), metrics(pitot.port)
        stop_pitot_clean(pitot)
    finally:
        raw.close()


# ---- deadlines ---------------------------------------------------------------

class PacedBackend(ThreadedBackend):
    """Answers pitot's probes at once; to a client's request it sends
    `chunks` one by one, `gap` seconds apart, forever if `repeat` (until the
    connection is gone). Records what requests reached it."""

    def __init__(self, chunks, gap, repeat=False):
        self.chunks, self.gap, self.repeat = chunks, gap, repeat
        self.proxied = 0
        ThreadedBackend.__init__(self)

    def serve(self, c, conn_id):
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                d = c.recv(65536)
                if not d:
                    return
                head += d
            if b"\r\nUser-Agent: pitot\r\n" in head:
                if head.startswith(b"GET /health "):
                    c.sendall(RawBackend.json_reply(b'{"status":"ok"}', extra=b"Connection: close\r\n"))
                else:
                    c.sendall(RawBackend.json_reply(b"{}", b"404 Not Found", b"Connection: close\r\n"))
                return
            self.proxied += 1
            while True:
                for ch in self.chunks:
                    c.sendall(ch)
                    time.sleep(self.gap)
                if not self.repeat:
                    break
        except OSError:
            pass
        finally:
            c.close()


def t_upstream_head_deadline_not_a_gap_timer():
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    pb = PacedBackend([head[i:i + 1] for i in range(len(head))], 1.5)
    try:
        pitot = start_pitot([pb.port], config="upstream:\n  header_timeout: 3s\n")
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False), timeout=20)
        took = time.monotonic() - r.t_send
        assert r.status == 504, r.status
        assert error_of(r)["type"] == "upstream_timeout", r.body
        assert 2.5 <= took < 8.0, "504 after %.2f s, header_timeout is 3 s" % took
        assert pb.proxied == 1
        log = access_log(pitot, 1)[-1]
        assert (log["status"], log["error"]) == (504, "upstream_timeout"), log
        stop_pitot_clean(pitot)
    finally:
        pb.close()


def t_silent_stream_ends_at_idle_timeout():
    """A backend that sends the head and one event, then nothing: the stream
    ends at upstream.idle_timeout with the API's error event, not a complete
    stream (the event stream is read straight from the socket, under the
    same timeout as any other read)."""
    ev = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    pb = PacedBackend([head + b"%x\r\n%s\r\n" % (len(ev), ev)], 8.0)
    try:
        pitot = start_pitot([pb.port], config="upstream:\n  idle_timeout: 1s\n")
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(), timeout=20)
        took = time.monotonic() - r.t_send
        assert r.status == 200 and not r.complete and r.closed, (r.status, r.body)
        data = sse_data(r.events)
        assert '"hi"' in data[0], data
        err = json.loads(data[-1])["error"]
        assert err["type"] == "upstream_timeout", err
        assert 0.8 <= took < 5.0, "ended after %.2f s, idle_timeout is 1 s" % took
        log = access_log(pitot, 1)[-1]
        assert (log["status"], log["error"]) == (200, "upstream_timeout"), log
        stop_pitot_clean(pitot)
    finally:
        pb.close()


def t_bytes_after_a_stream_end_its_connection():
    """A backend's event stream read straight from its socket: a clean end
    leaves the connection pooled (the next request reuses it); bytes after
    the final chunk close it, and they never become the next answer."""
    ev = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    stream = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(ev), ev) +
              b"0\r\n\r\n")
    for extra, reused in ((b"", True), (b"HTTP/1.1 200 OK\r\n\r\nstray", False)):
        raw = RawBackend(lambda head, body, extra=extra: stream + extra)
        try:
            pitot = start_pitot([raw.port], config="workers: 1\n")  # one pool
            for _ in range(2):
                r = request(pitot.port, "POST", "/v1/chat/completions", chat_body())
                assert r.status == 200 and r.complete, (extra, r.status, r.body)
                assert '"hi"' in sse_data(r.events)[0], r.body
            conns = [c for _, _, c in raw.requests]
            assert len(conns) == 2 and (conns[0] == conns[1]) == reused, (extra, conns)
            stop_pitot_clean(pitot)
        finally:
            raw.close()


def t_interim_responses_are_counted():
    cont = b"HTTP/1.1 100 Continue\r\n\r\n"
    final = RawBackend.json_reply(b'{"ok":true}')
    # a few are fine (and not relayed); the final answer follows
    raw = RawBackend(lambda h, b: cont * 3 + b"HTTP/1.1 102 Processing\r\n\r\n" + final)
    try:
        pitot = start_pitot([raw.port])
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False))
        assert r.status == 200 and r.body == b'{"ok":true}', (r.status, r.body)
        stop_pitot_clean(pitot)
    finally:
        raw.close()
    # a thousand at once: 502 upstream_protocol, at once
    raw = RawBackend(lambda h, b: cont * 1000)
    try:
        pitot = start_pitot([raw.port], config="upstream:\n  header_timeout: 5s\n")
        t0 = time.monotonic()
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False))
        assert r.status == 502 and error_of(r)["type"] == "upstream_protocol", (r.status, r.body)
        assert time.monotonic() - t0 < 4.0, "not refused before the deadline"
        stop_pitot_clean(pitot)
    finally:
        raw.close()
    # an endless row, one every 100 ms: 502 long before header_timeout (5 s)
    pb = PacedBackend([cont], 0.1, repeat=True)
    try:
        pitot = start_pitot([pb.port], config="upstream:\n  header_timeout: 5s\n")
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False), timeout=20)
        took = time.monotonic() - r.t_send
        assert r.status == 502 and error_of(r)["type"] == "upstream_protocol", (r.status, r.body)
        assert took < 4.0, "502 after %.2f s" % took
        log = access_log(pitot, 1)[-1]
        assert (log["status"], log["error"]) == (502, "upstream_protocol"), log
        stop_pitot_clean(pitot)
    finally:
        pb.close()


def slow_body(port, body, gap, headers=()):
    """Sends a request head at once and its body one byte per `gap` seconds
    until pitot answers; returns (response, seconds from the head, bytes
    of the body sent)."""
    s = connect(port, timeout=30)
    hdrs = "".join("%s: %s\r\n" % h for h in headers)
    s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n%s\r\n" % (len(body), hdrs)).encode())
    t0 = time.monotonic()
    answered = threading.Event()
    out = {}

    def read():
        out["r"] = Reader(s).read()
        out["t"] = time.monotonic() - t0
        answered.set()
    threading.Thread(target=read, daemon=True).start()
    sent = 0
    while sent < len(body) and not answered.wait(gap):
        try:
            s.sendall(body[sent:sent + 1])
        except OSError:
            break
        sent += 1
    assert answered.wait(10.0), "no answer"
    s.close()
    return out["r"], out["t"], sent


def t_body_deadline_and_min_rate():
    raw = RawBackend()
    try:
        body = json.dumps(chat_body(content="x" * 200)).encode()
        # a byte a second never trips the 2 s gap, but the 3 s deadline holds
        pitot = start_pitot([raw.port], config="limits:\n  body_timeout: 2s\n  body_deadline: 3s\n"
                                               "  min_body_rate: 0\n")
        r, took, sent = slow_body(pitot.port, body, 1.0)
        assert r.status == 408 and error_of(r)["type"] == "body_timeout", (r.status, r.body)
        assert r.header("connection") == "close"
        assert 2.5 <= took < 6.0 and 2 <= sent < len(body), (took, sent)
        assert raw.proxied_bytes() == b""
        stop_pitot_clean(pitot)
        # the gap timer alone still works
        pitot = start_pitot([raw.port], config="limits:\n  body_timeout: 1s\n")
        r, took, sent = slow_body(pitot.port, body, 3.0)
        assert r.status == 408 and 0.8 <= took < 3.0 and sent == 0, (r.status, took, sent)
        stop_pitot_clean(pitot)
        # a byte every 0.2 s (5 bytes/s) under a 100 bytes/s floor: refused
        # once the 10 s grace period is over, the deadline being far away
        pitot = start_pitot([raw.port], config="limits:\n  body_deadline: 1m\n  min_body_rate: 100\n")
        r, took, sent = slow_body(pitot.port, body, 0.2)
        assert r.status == 408 and error_of(r)["type"] == "body_timeout", (r.status, r.body)
        assert 9.5 <= took < 14.0 and sent < len(body), (took, sent)
        assert raw.proxied_bytes() == b""
        # a body that keeps the pace is served
        r = request(pitot.port, "POST", "/v1/chat/completions", body)
        assert r.status == 200, r.status
        stop_pitot_clean(pitot)
    finally:
        raw.close()


# ---- the last backend fails: 502, not 503 --------------------------------------

class ResetRaw(RawBackend):
    """A RawBackend whose connections end with a TCP reset (SO_LINGER 0)."""

    def serve(self, c, conn_id):
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        RawBackend.serve(self, c, conn_id)


def t_last_backend_failure_is_502():
    cases = [
        ("reset", lambda: ResetRaw(lambda h, b: None), "upstream_reset"),
        ("closed without answering", lambda: RawBackend(lambda h, b: None), "upstream_reset"),
        ("garbage", lambda: RawBackend(lambda h, b: b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
         "upstream_protocol"),
        # PacedBackend sends these, then closes
        ("garbage, then closed", lambda: PacedBackend([b"\x16\x03\x01\x02\x00\x01\x00"], 0),
         "upstream_protocol"),
        ("a head cut short", lambda: PacedBackend([b"HTTP/1.1 200 OK\r\nContent-Le"], 0),
         "upstream_reset"),
    ]
    for what, make, kind in cases:
        be = make()
        try:
            pitot = start_pitot([be.port])
            s = connect(pitot.port)
            rd = Reader(s)
            s.sendall(build_request("POST", "/v1/chat/completions", chat_body(stream=False),
                                    port=pitot.port))
            r = rd.read()
            assert r.status == 502, (what, r.status, r.body)
            # the connection goes on, as the answer's head says
            assert r.header("connection") is None, (what, r.headers)
            s.sendall(build_request("GET", "/healthz", port=pitot.port))
            assert rd.read().status == 200, what
            s.close()
            assert error_of(r) == {"message": error_of(r)["message"], "type": kind, "code": 502}, \
                (what, r.body)
            got = be.proxied if isinstance(be, PacedBackend) else len(be.requests)
            assert got == 1, (what, got)
            log = access_log(pitot, 1)[-1]
            assert (log["status"], log["outcome"], log["error"], log["backend"]) == \
                (502, "upstream_error", kind, label(be.port)), (what, log)
            m = metrics(pitot.port)
            assert metric_value(m, "pitot_requests_total", backend=label(be.port), code="502") == 1, \
                (what, m)
            assert metric_value(m, "pitot_upstream_errors_total", backend=label(be.port), kind=kind) == 1, \
                (what, m)
            stop_pitot_clean(pitot)
        finally:
            be.close()
    # two that fail: retried on the second, which fails too; the client learns how
    a, b = RawBackend(lambda h, b: None), ResetRaw(lambda h, b: None)
    try:
        pitot = start_pitot([a.port, b.port])
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False))
        assert r.status == 502 and error_of(r)["type"] == "upstream_reset", (r.status, r.body)
        assert len(a.requests) == 1 and len(b.requests) == 1, (a.requests, b.requests)
        stop_pitot_clean(pitot)
    finally:
        a.close()
        b.close()
    # 503 stays for a request no backend was there to try
    pitot = start_pitot([free_port()], config="health:\n  interval: 100ms\n  timeout: 100ms\n")
    assert wait_for(lambda: mval(pitot, "pitot_backend_up") == 0, 3.0)
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False))
    assert r.status == 503 and error_of(r)["type"] == "no_backend", (r.status, r.body)
    stop_pitot_clean(pitot)


check("out of descriptors: max_clients lowered, idle clients cost no CPU, served after",
      t_fd_limit_idle_connections_do_not_spin)
check("RLIMIT_NOFILE soft limit raised to the hard one", t_fd_soft_limit_raised_to_hard)
check("EMFILE at run time: the listener rests, one line a second, then serves",
      t_fd_exhausted_at_run_time_pauses_accept)
check("a body that is no JSON: 400 invalid_json, zero bytes upstream, no ejection",
      t_invalid_json_400_never_reaches_backend)
check("500 to unchecked requests, 501, 505 do not eject; 502 does", t_other_5xx_do_not_eject)
check("upstream.header_timeout is a deadline: a trickled head gets 504 at 3 s",
      t_upstream_head_deadline_not_a_gap_timer)
check("a stream that goes silent ends at upstream.idle_timeout with an error event",
      t_silent_stream_ends_at_idle_timeout)
check("bytes after a stream's end close its backend connection; a clean end keeps it",
      t_bytes_after_a_stream_end_its_connection)
check("interim 1xx responses counted: endless 100 Continue gets 502", t_interim_responses_are_counted)
check("request body: deadline and minimum rate give 408, the gap timer still works",
      t_body_deadline_and_min_rate)
check("last backend reset, closed, garbage: 502 with its kind; 503 only with no backend",
      t_last_backend_failure_is_502)
finish()
