"""API keys that can say no (require_auth) and the admin listener
(admin_listen): 401 before any backend is touched, for every way a key can be
missing or wrong; the allowed keys served in their tiers from Authorization
and from x-api-key; the connection kept after a 401 with the refused body
dropped; pitot's own endpoints on the admin port only; and the canary scan of
the harness shown to find what it looks for. Real pitot, pitot-sim and a raw
backend that records every byte it receives."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD, CANARY_KEY, CANARY_OUTPUT, CANARY_PROMPT, HOST, Proc, RawBackend,  # noqa: E402
                     Reader, access_log, build_request, canary_forget, canary_leaks, chat_body,
                     check, connect, finish, free_port, metric_value, metrics, request,
                     start_pitot, start_sim, stop_pitot_clean, wait_for)

KEY_PREMIUM = "sk-premium-4b1e7c"
KEY_DEFAULT = "sk-default-90d2aa"
KEYS = (KEY_PREMIUM, KEY_DEFAULT)
AUTH_CONF = ("require_auth: true\n"
             "tiers:\n"
             "  - name: premium\n"
             "    priority: 10\n"
             "    keys: [%s]\n"
             "  - name: default\n"
             "    keys: [%s]\n" % (KEY_PREMIUM, KEY_DEFAULT))
UNAUTHORIZED = (b'{"error":{"message":"missing or invalid API key",'
                b'"type":"invalid_request_error","code":"invalid_api_key"}}')
NO_AUTH = ("Authorization", None)  # request() then sends no Authorization at all


def bearer(key):
    return ("Authorization", "Bearer " + key)


def assert_401(r, what):
    assert r.status == 401, (what, r.status, r.body)
    assert r.body == UNAUTHORIZED, (what, r.body)
    assert r.header("www-authenticate") == "Bearer", (what, r.headers)
    assert r.header("content-type") == "application/json", (what, r.headers)
    assert r.header("x-request-id"), (what, r.headers)


def assert_no_key_written(pitot, scrapes=()):
    """The configured keys are in no log line, no stderr, no scrape."""
    with open(pitot.access_log, "rb") as f:
        texts = [f.read(), pitot.stderr().encode()] + [s.encode() for s in scrapes]
    for k in KEYS:
        assert all(k.encode() not in t for t in texts), "key %s written" % k


def raw_request(sock, data):
    sock.sendall(data)
    return Reader(sock)


# Every way a request can fail to carry a configured key, each with a marker
# (X-Request-Id and query) to look for in what reached the backend.
REFUSED = [
    ("no key", [NO_AUTH]),
    ("unknown key", [bearer("sk-unknown-key")]),
    ("the canary key", [bearer(CANARY_KEY)]),
    ("Basic scheme", [("Authorization", "Basic " + base64.b64encode(
        (KEY_PREMIUM + ":").encode()).decode())]),
    ("Basic with the key itself", [("Authorization", "Basic " + KEY_PREMIUM)]),
    ("Bearer without a key", [("Authorization", "Bearer")]),
    ("Bearer and blanks", [("Authorization", "Bearer    ")]),
    ("key without a scheme", [("Authorization", KEY_PREMIUM)]),
    ("key in Api-Key", [NO_AUTH, ("Api-Key", KEY_PREMIUM)]),
    ("key in X-Api-Token", [NO_AUTH, ("X-Api-Token", KEY_PREMIUM)]),
    ("key in a header named Bearer", [NO_AUTH, ("Bearer", KEY_PREMIUM)]),
    ("Bearer scheme in x-api-key", [NO_AUTH, ("x-api-key", "Bearer " + KEY_PREMIUM)]),
    ("key cut short", [bearer(KEY_PREMIUM[:-1])]),
    ("key in another case", [bearer(KEY_PREMIUM.upper())]),
    ("Authorization twice", [bearer(KEY_PREMIUM), bearer(KEY_PREMIUM)]),
    ("x-api-key twice", [NO_AUTH, ("x-api-key", KEY_PREMIUM), ("X-Api-Key", KEY_PREMIUM)]),
    ("malformed Authorization, unknown x-api-key", [("Authorization", "Basic x"),
                                                    ("x-api-key", "sk-nope")]),
]


def t_unauthorized_never_reaches_backend():
    be = RawBackend()
    pitot = start_pitot([be.port], config=AUTH_CONF)
    for n, (what, headers) in enumerate(REFUSED):
        for method, body in (("POST", chat_body(max_tokens=2)), ("GET", None)):
            r = request(pitot.port, method, "/v1/chat/completions?refused=%d" % n, body,
                        headers=headers + [("X-Request-Id", "refused-%d-%s" % (n, method))])
            assert_401(r, what)
            assert r.header("x-request-id") == "refused-%d-%s" % (n, method), r.headers
    # HEAD: the same status and headers, no body
    r = request(pitot.port, "HEAD", "/v1/models", headers=[NO_AUTH])
    assert r.status == 401 and r.body == b"" and r.header("content-length") == str(len(UNAUTHORIZED))
    # one allowed request last: requests are handled in order, so anything
    # refused that had been forwarded would have reached the backend first
    r = request(pitot.port, "POST", "/v1/chat/completions?allowed", chat_body(max_tokens=2),
                headers=[bearer(KEY_PREMIUM)])
    assert r.status == 200 and r.body == b'{"ok":true}', (r.status, r.body)
    assert len(be.requests) == 1 and be.requests[0][0].startswith(
        "POST /v1/chat/completions?allowed "), [h.split("\r\n")[0] for h, _, _ in be.requests]
    sent = be.proxied_bytes()
    assert b"refused" not in sent and sent.count(b"POST ") == 1, sent[:300]

    log = access_log(pitot, 2 * len(REFUSED) + 2)
    refused = [l for l in log if l["status"] == 401]
    assert len(refused) == 2 * len(REFUSED) + 1, len(refused)
    for l in refused:
        assert l["outcome"] == "unauthorized" and l["error"] == "invalid_api_key", l
        assert l["backend"] is None and l["tier"] is None and l["model"] is None, l
        assert "?" not in l["path"], l  # the query is never logged
    ids = {l["id"] for l in refused}
    assert {"refused-%d-POST" % n for n in range(len(REFUSED))} <= ids, ids
    ok = [l for l in log if l["status"] == 200]
    assert len(ok) == 1 and ok[0]["tier"] == "premium" and ok[0]["outcome"] == "ok", ok
    m = metrics(pitot.port)
    # refusals reach no backend: no backend-labelled series counts them,
    # they are pitot's own answers (backend "")
    assert metric_value(m, "pitot_requests_total") == 2 * len(REFUSED) + 2, m
    assert metric_value(m, "pitot_requests_total", backend="", code="401") == 2 * len(REFUSED) + 1, m
    assert metric_value(m, "pitot_requests_total", tier="premium", code="200") == 1
    assert_no_key_written(pitot, [m])
    stop_pitot_clean(pitot)


def t_allowed_keys_in_their_tiers():
    sim = start_sim("--tokens-per-s", "2000", "--prefill-tokens-per-s", "100000")
    pitot = start_pitot([sim.port], config=AUTH_CONF)
    cases = [  # (headers, tier)
        ([bearer(KEY_PREMIUM)], "premium"),
        ([("Authorization", "bearer \t" + KEY_PREMIUM + " ")], "premium"),
        ([NO_AUTH, ("x-api-key", KEY_PREMIUM)], "premium"),
        ([NO_AUTH, ("X-API-KEY", " " + KEY_PREMIUM)], "premium"),
        ([bearer(KEY_DEFAULT)], "default"),
        ([NO_AUTH, ("x-api-key", KEY_DEFAULT)], "default"),
        # both: a matching Authorization wins
        ([bearer(KEY_DEFAULT), ("x-api-key", KEY_PREMIUM)], "default"),
        # else x-api-key: an unknown or malformed Authorization does not refuse
        ([bearer("sk-unknown"), ("x-api-key", KEY_PREMIUM)], "premium"),
        ([("Authorization", "Basic abc"), ("x-api-key", KEY_DEFAULT)], "default"),
        ([("Authorization", "Bearer"), ("x-api-key", KEY_PREMIUM)], "premium"),
    ]
    for i, (headers, tier) in enumerate(cases):
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=3),
                    headers=headers + [("X-Request-Id", "allowed-%d" % i)])
        assert r.status == 200 and r.complete, (headers, r.status, r.body[:200])
        assert len(r.events) >= 3 and CANARY_OUTPUT.encode() in r.body, r.body[:300]
    log = {l["id"]: l for l in access_log(pitot, len(cases))}
    for i, (headers, tier) in enumerate(cases):
        l = log["allowed-%d" % i]
        assert l["tier"] == tier and l["outcome"] == "ok" and l["status"] == 200, (headers, l)
        assert l["completion_tokens"] == 3, l
    st = json.loads(request(sim.port, "GET", "/sim/stats").body)
    assert st["requests"] == len(cases), st
    m = metrics(pitot.port)
    want = {"premium": sum(t == "premium" for _, t in cases),
            "default": sum(t == "default" for _, t in cases)}
    for tier, n in want.items():
        assert metric_value(m, "pitot_requests_total", tier=tier, code="200") == n, (tier, m)
        assert metric_value(m, "pitot_completion_tokens_total", tier=tier) == 3 * n, tier
    # without admin_listen pitot's own endpoints stay open on the client port
    for path in ("/metrics", "/healthz"):
        r = request(pitot.port, "GET", path, headers=[NO_AUTH])
        assert r.status == 200, (path, r.status)
    assert_no_key_written(pitot, [m])
    stop_pitot_clean(pitot)


def t_connection_kept_after_401():
    be = RawBackend()
    pitot = start_pitot([be.port], config=AUTH_CONF)
    s = connect(pitot.port)
    rd = Reader(s)
    # a body that is itself a request: dropped, never taken for the next one
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + \
        KEY_PREMIUM.encode() + b"\r\n\r\n"
    s.sendall(build_request("POST", "/v1/chat/completions", smuggled, port=pitot.port))
    r = rd.read()
    assert_401(r, "a body like a request")
    assert r.header("connection") is None, r.headers  # kept alive
    # the same connection serves the next request, with a key
    s.sendall(build_request("POST", "/v1/chat/completions?second", chat_body(max_tokens=2),
                            [bearer(KEY_PREMIUM)], port=pitot.port))
    r = rd.read()
    assert r.status == 200 and r.body == b'{"ok":true}', (r.status, r.body)
    # a chunked body, pipelined with the next request in one write
    inner = b"GET /chunk-smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner) +
              build_request("GET", "/v1/models?third", None, [("x-api-key", KEY_DEFAULT)],
                            port=pitot.port))
    assert_401(rd.read(), "chunked body")
    r = rd.read()
    assert r.status == 200, (r.status, r.body)
    # no key and no body: nothing to drop
    s.sendall(build_request("GET", "/v1/models", port=pitot.port) +
              build_request("GET", "/v1/models?fourth", None, [bearer(KEY_DEFAULT)],
                            port=pitot.port))
    assert_401(rd.read(), "no body")
    assert rd.read().status == 200
    assert not rd.closed_by_peer(0.2), "connection closed after the requests"
    s.close()
    paths = [h.split("\r\n")[0] for h, _, _ in be.requests]
    assert paths == ["POST /v1/chat/completions?second HTTP/1.1", "GET /v1/models?third HTTP/1.1",
                     "GET /v1/models?fourth HTTP/1.1"], paths
    assert b"smuggled" not in be.proxied_bytes() and b"hello" not in be.proxied_bytes()
    log = access_log(pitot, 6)
    assert [l["status"] for l in log] == [401, 200, 401, 200, 401, 200], log
    stop_pitot_clean(pitot)


def t_connection_closed_after_401():
    """Where the body cannot or should not be read, the 401 closes."""
    be = RawBackend()
    pitot = start_pitot([be.port], config=AUTH_CONF + "limits:\n  max_body_bytes: 1k\n")
    # the client waits for 100 Continue: it may never send the body
    s = connect(pitot.port)
    rd = raw_request(s, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                        b"Expect: 100-continue\r\n\r\n")
    r = rd.read()
    assert_401(r, "expect 100-continue")
    assert r.header("connection") == "close" and rd.closed_by_peer(5.0), r.headers
    s.close()
    # a body larger than a request may have, announced: not worth reading
    s = connect(pitot.port)
    rd = raw_request(s, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n"
                        b"\r\n" + b"x" * 100)
    r = rd.read()
    assert_401(r, "body over max_body_bytes")
    assert r.header("connection") == "close" and rd.closed_by_peer(5.0), r.headers
    s.close()
    # a chunked body that grows past it while dropped: closed, no second reply
    s = connect(pitot.port)
    rd = raw_request(s, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n400\r\n" + b"y" * 1024 + b"\r\n")
    assert_401(rd.read(), "chunked, then too much")
    s.sendall(b"400\r\n" + b"y" * 1024 + b"\r\n0\r\n\r\n")
    assert rd.closed_by_peer(5.0) and rd.buf == b"", rd.buf
    s.close()
    # a malformed chunked body while dropped: closed, no second reply
    s = connect(pitot.port)
    rd = raw_request(s, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert_401(rd.read(), "bad chunk")
    assert rd.closed_by_peer(5.0) and rd.buf == b"", rd.buf
    s.close()
    # HTTP/1.0 without keep-alive
    s = connect(pitot.port)
    rd = raw_request(s, b"GET /v1/models HTTP/1.0\r\n\r\n")
    assert_401(rd.read(), "HTTP/1.0")
    assert rd.closed_by_peer(5.0)
    s.close()
    assert be.proxied_bytes() == b"" and be.requests == [], be.requests
    # the worker still serves
    r = request(pitot.port, "GET", "/v1/models", headers=[bearer(KEY_PREMIUM)])
    assert r.status == 200
    assert [l["outcome"] for l in access_log(pitot, 6)][:5] == ["unauthorized"] * 5
    stop_pitot_clean(pitot)


def t_admin_listener():
    be = RawBackend()
    admin = free_port()
    pitot = start_pitot([be.port], config=AUTH_CONF + "admin_listen: %s:%d\n" % (HOST, admin))
    assert "pitot: admin endpoints on %s:%d" % (HOST, admin) in pitot.stderr(), pitot.stderr()
    # the admin port: pitot's own endpoints, no key asked
    r = wait_for(lambda: (lambda x: x if x.status == 200 else None)(
        request(admin, "GET", "/readyz", headers=[NO_AUTH])))
    assert r and r.body == b'{"status":"ready"}', r and (r.status, r.body)
    r = request(admin, "GET", "/healthz", headers=[NO_AUTH])
    assert r.status == 200 and r.body == b'{"status":"ok"}', (r.status, r.body)
    m = metrics(admin)
    assert metric_value(m, "pitot_backend_up", backend="%s:%d" % (HOST, be.port)) == 1, m
    r = request(admin, "HEAD", "/metrics", headers=[NO_AUTH])
    assert r.status == 200 and r.body == b"" and int(r.header("content-length")) > 0
    # ... and nothing else: no path is proxied from it
    for method, path, body in (("GET", "/v1/models", None),
                               ("POST", "/v1/chat/completions", chat_body(max_tokens=2)),
                               ("GET", "/", None), ("GET", "/metricsx", None)):
        r = request(admin, method, path, body, headers=[bearer(KEY_PREMIUM)])
        assert r.status == 404 and r.body == \
            b'{"error":{"message":"not found","type":"not_found","code":404}}', (path, r.body)
        assert r.header("x-request-id"), r.headers  # pitot's own answer, like every other
    r = request(admin, "POST", "/metrics", "{}", headers=[("X-Request-Id", "adm-405")])
    assert r.status == 405 and r.header("allow") == "GET, HEAD", (r.status, r.headers)
    assert r.header("x-request-id") == "adm-405", r.headers
    r = request(admin, "HEAD", "/nothing")
    assert r.status == 404 and r.body == b"", (r.status, r.body)
    # keep-alive on the admin port
    s = connect(admin)
    rd = raw_request(s, build_request("GET", "/healthz", port=admin) +
                     build_request("GET", "/metrics", port=admin))
    assert rd.read().status == 200 and rd.read().status == 200
    s.close()

    # the client port: those paths are pitot's, and not served there (404,
    # with or without a key, any method), never proxied
    for method, path in (("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/readyz"),
                         ("HEAD", "/metrics"), ("POST", "/metrics"), ("GET", "/metrics?x=1")):
        for headers in ([bearer(KEY_PREMIUM)], [NO_AUTH]):
            r = request(pitot.port, method, path, "{}" if method == "POST" else None,
                        headers=headers)
            assert r.status == 404 and r.header("x-request-id"), (method, path, headers, r.status)
            assert r.body == (b"" if method == "HEAD" else
                              b'{"error":{"message":"not found","type":"not_found","code":404}}')
    # proxying on the client port goes on, behind the key
    assert_401(request(pitot.port, "GET", "/v1/models", headers=[NO_AUTH]), "client port")
    r = request(pitot.port, "GET", "/v1/models", headers=[bearer(KEY_PREMIUM)])
    assert r.status == 200 and r.body == b'{"ok":true}', (r.status, r.body)
    paths = [h.split("\r\n")[0] for h, _, _ in be.requests]
    assert paths == ["GET /v1/models HTTP/1.1"], paths
    assert b"metrics" not in be.proxied_bytes() and b"healthz" not in be.proxied_bytes()

    # the drain closes both listeners; /readyz on the admin port says 503
    # to a request already being read
    ready = connect(admin)
    ready.sendall(b"GET /readyz HTTP/1.1\r\n")
    held = connect(pitot.port)
    held.sendall(b"GET /v1/models HTTP/1.1\r\n")  # keeps the drain going
    time.sleep(0.3)  # generous: pitot has read both partial heads
    pitot.p.send_signal(signal.SIGTERM)

    def refused(port):
        try:
            socket.create_connection((HOST, port), timeout=2).close()
            return False
        except (ConnectionRefusedError, ConnectionResetError):  # reset: closed while connecting
            return True
    assert wait_for(lambda: refused(admin) and refused(pitot.port)), "a listener is still open"
    ready.sendall(b"Host: x\r\n\r\n")
    r = Reader(ready).read()
    assert r.status == 503 and r.body == b'{"status":"draining"}', (r.status, r.body)
    assert r.header("connection") == "close"
    held.sendall(b"Host: x\r\nAuthorization: Bearer " + KEY_DEFAULT.encode() + b"\r\n\r\n")
    r = Reader(held).read()
    assert r.status == 200 and r.header("connection") == "close", (r.status, r.headers)
    ready.close()
    held.close()
    rc = pitot.p.wait(10)
    err = pitot.stderr()
    assert rc == 0 and "pitot: drained, exiting" in err, (rc, err[-2000:])
    assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]


def t_admin_port_outside_max_clients():
    """Clients holding every slot of limits.max_clients do not lock out
    scrapes and probes on the admin port."""
    sim = start_sim()
    admin = free_port()
    pitot = start_pitot([sim.port], config="limits:\n  max_clients: 2\n"
                        "admin_listen: %s:%d\n" % (HOST, admin))
    held = [connect(pitot.port) for _ in range(2)]
    for s in held:  # each is accepted and answered: both slots are taken
        s.sendall(build_request("GET", "/v1/models", port=pitot.port))
        assert Reader(s).read().status == 200
    third = connect(pitot.port)
    try:
        third.sendall(build_request("GET", "/v1/models", port=pitot.port))
    except OSError:  # already closed by pitot
        pass
    assert Reader(third).read().closed, "a third client got in"
    third.close()
    assert metric_value(metrics(admin), "pitot_backend_up") == 1
    assert request(admin, "GET", "/healthz").status == 200
    for s in held:
        s.close()
    stop_pitot_clean(pitot)


def t_config_checks():
    def check_config(text):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(text)
        try:
            return subprocess.run([os.path.join(BUILD, "pitot"), "-t", "-c", f.name],
                                  capture_output=True, text=True, timeout=10)
        finally:
            os.unlink(f.name)
    out = check_config("backends: [http://127.0.0.1:1]\nrequire_auth: true\n")
    assert out.returncode == 1 and "require_auth: true, but no API key is configured" in \
        out.stderr, (out.returncode, out.stderr)
    out = check_config("backends: [http://127.0.0.1:1]\nlisten: 127.0.0.1:9000\n"
                       "admin_listen: 127.0.0.1:9000\n")
    assert out.returncode == 1 and "admin_listen (127.0.0.1:9000) must differ from listen" in \
        out.stderr, out.stderr
    out = check_config("backends: [http://127.0.0.1:1]\nadmin_listen: 127.0.0.1:99999\n")
    assert out.returncode == 1 and "bad admin_listen address" in out.stderr, out.stderr
    out = check_config("backends: [http://127.0.0.1:1]\n" + AUTH_CONF +
                       "admin_listen: 127.0.0.1:9001\n")
    assert out.returncode == 0, out.stderr
    # the admin address taken: a start-up error that names it
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        p = subprocess.run([os.path.join(BUILD, "pitot"), "--listen", "%s:%d" % (HOST, free_port()),
                            "--backend", "http://127.0.0.1:1", "-c", "/dev/stdin"],
                           input="admin_listen: %s:%d\n" % (HOST, port), capture_output=True,
                           text=True, timeout=10)
    finally:
        busy.close()
    assert p.returncode == 1 and "admin_listen %s:%d" % (HOST, port) in p.stderr, p.stderr


def t_canary_scan_finds_canaries():
    """The scan every check ends with does find a canary where pitot writes
    it on purpose: a backend named like the key (access log, scrape), a tier
    named like the prompt (scrape), a model named like the output (access
    log, scrape), a config error that quotes a name (stderr)."""
    sim = start_sim("--model", CANARY_OUTPUT)
    pitot = start_pitot([], config="backends:\n  - url: http://%s:%d\n    name: %s\n"
                        "tiers: [%s]\n" % (HOST, sim.port, CANARY_KEY, CANARY_PROMPT))
    r = request(pitot.port, "POST", "/v1/chat/completions",
                dict(chat_body(content="plain", max_tokens=2), model=CANARY_OUTPUT),
                headers=[NO_AUTH])
    assert r.status == 200, r.status
    access_log(pitot, 1)
    metrics(pitot.port)
    bad = Proc([os.path.join(BUILD, "pitot"), "--backend", "http://127.0.0.1:1", "-c",
                "/dev/null", "-l", CANARY_KEY + ":x"], "pitot-t")
    bad.p.wait(10)
    leaks = canary_leaks()
    want = ["API key in pitot access log " + pitot.access_log,
            "API key in a /metrics scrape of port %d" % pitot.port,
            "prompt in a /metrics scrape of port %d" % pitot.port,
            "output in pitot access log " + pitot.access_log,
            "output in a /metrics scrape of port %d" % pitot.port,
            "API key in pitot-t stderr " + bad.errf.name]
    missing = [w for w in want if w not in leaks]
    assert not missing, (missing, leaks)
    # nothing else: the sim's stderr, for one, is clean
    assert not [l for l in leaks if "pitot-sim" in l], leaks
    canary_forget()  # planted on purpose: this check's own scan must pass


check("require_auth: 401 for every missing, malformed or unknown key, and nothing reaches the backend",
      t_unauthorized_never_reaches_backend)
check("require_auth: allowed keys from Authorization and x-api-key, each in its tier",
      t_allowed_keys_in_their_tiers)
check("require_auth: the connection is kept after a 401, the refused body dropped",
      t_connection_kept_after_401)
check("require_auth: a 401 closes when the body cannot be dropped", t_connection_closed_after_401)
check("admin_listen: own endpoints there only, 404 on the client port, drain closes both",
      t_admin_listener)
check("admin_listen: scrapes get in when clients fill max_clients", t_admin_port_outside_max_clients)
check("require_auth and admin_listen: config checks", t_config_checks)
check("the canary scan finds canaries where they are written", t_canary_scan_finds_canaries)
finish()
