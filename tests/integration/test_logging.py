"""pitot's own log (stderr): one line when something changes, with its reason:
a backend down and up again, a scrape failing and recovering, a flavor
detected, an ejection and the backend taken back, llama-server without
--metrics, a drain's start and end with its counts; log.format: json lines
parse with ts, level and msg; log.level filters; never a prompt, an output or
an API key. Real pitot-sim and pitot, killed and restarted by PID."""

import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (CANARY_KEY, CANARY_OUTPUT, CANARY_PROMPT, HOST, Reader,  # noqa: E402
                     ThreadedBackend, build_request, canary_leaks, chat_body, check, connect,
                     finish, request, start_pitot, start_sim, wait_for)

FAST = ("routing:\n  scrape_interval: 100ms\n  scrape_timeout: 80ms\n  scrape_stale: 500ms\n"
        "health:\n  interval: 100ms\n  timeout: 80ms\n")
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def label(port):
    return "%s:%d" % (HOST, port)


def lines(pitot):
    return pitot.stderr().splitlines()


def has(pitot, text):
    return any(text in l for l in lines(pitot))


def count(pitot, text):
    return sum(text in l for l in lines(pitot))


def line_with(pitot, text):
    return next(l for l in lines(pitot) if text in l)


def t_down_up_scrape_flavor():
    sim = start_sim()
    port = sim.port
    name = label(port)
    pitot = start_pitot([port], config=FAST)
    assert wait_for(lambda: has(pitot, "backend %s: flavor llamacpp, detected from its /metrics"
                                % name)), pitot.stderr()
    flavor = line_with(pitot, "flavor llamacpp")
    assert re.match(r"^%s pitot: info: backend %s: flavor llamacpp, detected from its /metrics$"
                    % (TS, re.escape(name)), flavor), flavor
    # the start line: whatever the level, no level word
    start = line_with(pitot, "listening on")
    assert re.match(r"^%s pitot: version \S+ listening on %s:%d, 1 backend, \d+ workers?$"
                    % (TS, HOST, pitot.port), start), start

    sim.stop(signal.SIGKILL)
    assert wait_for(lambda: has(pitot, "backend %s: down: GET /health: " % name)), pitot.stderr()
    down = line_with(pitot, "backend %s: down" % name)
    assert re.match(r"^%s pitot: warn: backend %s: down: GET /health: .*refused"
                    % (TS, re.escape(name)), down, re.I), down
    assert wait_for(lambda: has(pitot, "backend %s: scrape failing: GET /metrics: " % name)), \
        pitot.stderr()
    failing = line_with(pitot, "scrape failing")
    assert re.match(r"^%s pitot: warn: backend %s: scrape failing: GET /metrics: .*refused.*; "
                    r"routing falls back to in-flight counts" % (TS, re.escape(name)),
                    failing, re.I), failing
    # a second of probes and scrapes every 100 ms: still one line each
    time.sleep(1.0)
    assert count(pitot, "backend %s: down" % name) == 1, pitot.stderr()
    assert count(pitot, "scrape failing") == 1, pitot.stderr()

    start_sim(port=port)  # the same port again
    assert wait_for(lambda: has(pitot, "backend %s: up again: GET /health answered 200" % name)), \
        pitot.stderr()
    assert wait_for(lambda: has(pitot, "backend %s: scrape recovered" % name)), pitot.stderr()
    assert re.match(r"^%s pitot: info: backend %s: up again: GET /health answered 200$"
                    % (TS, re.escape(name)), line_with(pitot, "up again"))
    # the same server: its flavor is not said again
    time.sleep(0.3)
    assert count(pitot, "flavor llamacpp") == 1, pitot.stderr()
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False))
    assert r.status == 200, r.status


def t_ejected_and_taken_back():
    good = start_sim()
    bad = start_sim("--fail-status", "502")
    name = label(bad.port)
    conf = ("routing:\n  eject:\n    failures: 2\n    base: 1s\n    max: 1s\n"
            "health:\n  interval: 100ms\n  timeout: 80ms\n")
    pitot = start_pitot([good.port, bad.port], config=conf)

    def ejected():
        request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False, max_tokens=2))
        return has(pitot, "backend %s: ejected for" % name)
    assert wait_for(ejected, 10, 0), pitot.stderr()
    line = line_with(pitot, "ejected for")
    assert re.match(r"^%s pitot: warn: backend %s: ejected for 1s after 2 failures in a row "
                    r"\(ejection 1 in a row\)$" % (TS, re.escape(name)), line), line
    # its /health answers 200: once the second is over a probe takes it back
    assert wait_for(lambda: has(pitot, "backend %s: taken back" % name), 5), pitot.stderr()
    back = line_with(pitot, "taken back")
    assert re.match(r"^%s pitot: info: backend %s: taken back: its ejection is over and "
                    r"(GET /health answered 200|it answered a request)$"
                    % (TS, re.escape(name)), back), back
    assert count(pitot, "taken back") == 1 and count(pitot, "ejected for") == 1, pitot.stderr()
    assert not has(pitot, "backend %s: ejected" % label(good.port)), pitot.stderr()


class NoMetricsBackend(ThreadedBackend):
    """llama-server started without --metrics, as its HTTP answers show it:
    /health 200, /metrics 501 with its hint, /v1/models its list; or, with
    llama=False, an OpenAI-compatible server whose /metrics is 404."""

    LLAMA_501 = (b'{"error":{"code":501,"message":"This server does not support metrics '
                 b'endpoint. Start it with `--metrics`","type":"not_supported_error"}}')

    def __init__(self, llama=True):
        self.llama = llama
        ThreadedBackend.__init__(self)

    def serve(self, c, conn_id):
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            path = buf.split(b" ")[1]
            if path == b"/health":
                status, body = b"200 OK", b'{"status":"ok"}'
            elif path == b"/metrics":
                status, body = ((b"501 Not Implemented", self.LLAMA_501) if self.llama
                                else (b"404 Not Found", b'{"error":"not found"}'))
            elif path == b"/v1/models":
                status, body = b"200 OK", (b'{"object":"list","data":[{"id":"small",'
                                           b'"object":"model","owned_by":"llamacpp"}]}')
            else:
                status, body = b"404 Not Found", b"{}"
            c.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n%s" % (status, len(body), body))
        except OSError:
            return
        finally:
            c.close()


def t_llama_server_without_metrics():
    llama = NoMetricsBackend()
    other = NoMetricsBackend(llama=False)
    try:
        pitot = start_pitot([llama.port, other.port], config=FAST)
        want = ("backend %s: llama-server has no /metrics: run it with --metrics; routing falls "
                "back to in-flight counts" % label(llama.port))
        assert wait_for(lambda: has(pitot, want)), pitot.stderr()
        assert re.match(r"^%s pitot: warn: %s$" % (TS, re.escape(want)), line_with(pitot, want))
        # an OpenAI-compatible server without /metrics is no llama-server
        assert wait_for(lambda: has(pitot, "backend %s: flavor openai: GET /metrics answered 404"
                                    % label(other.port))), pitot.stderr()
        # scraped every 100 ms for a second: said once, and not as a failing scrape
        time.sleep(1.0)
        assert count(pitot, "llama-server has no /metrics") == 1, pitot.stderr()
        assert not has(pitot, "scrape failing"), pitot.stderr()
        assert not has(pitot, "backend %s: llama-server" % label(other.port)), pitot.stderr()
    finally:
        llama.close()
        other.close()


def t_json_format():
    sim = start_sim()
    pitot = start_pitot([sim.port], config=FAST + "log:\n  format: json\n")
    name = label(sim.port)
    assert wait_for(lambda: "flavor llamacpp" in pitot.stderr()), pitot.stderr()
    sim.stop(signal.SIGKILL)
    assert wait_for(lambda: "down: GET /health" in pitot.stderr()), pitot.stderr()
    objs = []
    for l in lines(pitot):
        o = json.loads(l)  # every line is one JSON object
        assert sorted(o) == ["level", "msg", "ts"], o
        assert re.match("^%s$" % TS, o["ts"]), o
        assert o["level"] in ("notice", "error", "warn", "info", "debug"), o
        objs.append(o)
    assert any(o["level"] == "notice" and "listening on" in o["msg"] for o in objs), objs
    assert any(o["level"] == "info" and o["msg"] ==
               "backend %s: flavor llamacpp, detected from its /metrics" % name for o in objs), objs
    down = [o for o in objs if o["msg"].startswith("backend %s: down: GET /health: " % name)]
    assert len(down) == 1 and down[0]["level"] == "warn", objs


def t_levels():
    # error: nothing but the start and stop lines, however much changes
    sim = start_sim()
    pitot = start_pitot([sim.port], config=FAST + "log:\n  level: error\n")
    time.sleep(0.5)  # scraped (flavor detected) by now
    sim.stop(signal.SIGKILL)
    time.sleep(0.5)  # probed and scraped down by now
    start_sim(port=sim.port)
    time.sleep(0.5)  # and up again
    assert not re.search(r"pitot: (warn|info|debug):", pitot.stderr()), pitot.stderr()
    assert all("listening on" in l for l in lines(pitot)), pitot.stderr()
    pitot.stop()
    assert "stopping" in pitot.stderr() or "drained" in pitot.stderr(), pitot.stderr()
    # warn: the down line, not the info ones
    sim = start_sim()
    pitot = start_pitot([sim.port], config=FAST + "log:\n  level: warn\n")
    time.sleep(0.5)
    sim.stop(signal.SIGKILL)
    assert wait_for(lambda: "down: GET /health" in pitot.stderr()), pitot.stderr()
    start_sim(port=sim.port)
    time.sleep(0.5)
    assert "pitot: warn: backend %s: down" % label(sim.port) in pitot.stderr(), pitot.stderr()
    assert "pitot: info:" not in pitot.stderr(), pitot.stderr()


def t_drain_counts_and_no_secrets():
    """Debug level, a stream in progress at SIGTERM and failed requests: the
    drain's lines count the requests, and nothing a client sent or got
    (prompt, API key, output) is in any line."""
    sim = start_sim("--tokens-per-s", "20")
    bad = start_sim("--fail-status", "500")
    pitot = start_pitot([sim.port, bad.port],
                        config=FAST + "log:\n  level: debug\nshutdown:\n  drain_timeout: 20s\n")
    for _ in range(4):
        request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False, max_tokens=2))
    s = connect(pitot.port)
    s.sendall(build_request("POST", "/v1/chat/completions", chat_body(max_tokens=20),
                            [("Authorization", "Bearer " + CANARY_KEY)], pitot.port))
    rd = Reader(s)
    r = rd.read(max_events=2)
    assert r.status == 200, r.status
    pitot.p.send_signal(signal.SIGTERM)
    assert wait_for(lambda: "draining 1 connection" in pitot.stderr()), pitot.stderr()
    rest = bytes(rd.buf)
    s.settimeout(20)
    while True:  # the stream goes on to its end, then pitot closes the connection
        d = s.recv(65536)
        if not d:
            break
        rest += d
    s.close()
    assert b"data: [DONE]" in rest, rest[-200:]
    assert pitot.p.wait(20) == 0, pitot.stderr()
    err = pitot.stderr()
    assert re.search(r"^%s pitot: signal 15, draining 1 connection \(drain_timeout 20s\): 1 "
                     r"request in progress may finish, new connections are refused$" % TS,
                     err, re.M), err
    assert re.search(r"^%s pitot: drained, exiting: 1 of 1 request finished$" % TS, err, re.M), err
    assert re.search(r"^%s pitot: debug: worker \d+: draining, 1 connection with a request in "
                     r"progress$" % TS, err, re.M), err
    for secret in (CANARY_PROMPT, CANARY_KEY, CANARY_OUTPUT):
        assert secret not in err, secret
    assert canary_leaks() == [], canary_leaks()


check("log: backend down and up again, scrape failing and recovered, flavor detected: "
      "one line each, with the reason", t_down_up_scrape_flavor)
check("log: ejected for how long, taken back once the ejection is over", t_ejected_and_taken_back)
check("log: llama-server without --metrics is said once; a server with no /metrics is "
      "flavor openai", t_llama_server_without_metrics)
check("log: log.format json: every line one object with ts, level, msg", t_json_format)
check("log: log.level error leaves only the start and stop lines; warn leaves out info",
      t_levels)
check("log: the drain's lines count the requests; no prompt, output or API key in any line",
      t_drain_counts_and_no_secrets)
finish()
