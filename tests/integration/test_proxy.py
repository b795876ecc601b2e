"""pitot end to end: real pitot-sim backends, real pitot, raw clients."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD, HOST, Reader, ThreadedBackend, access_log, build_request, chat_body, check,  # noqa: E402
                     connect, finish, free_port, metric_value, metrics, request, sse_data,
                     start_pitot, start_sim, stop_pitot_clean, wait_for)

VOLATILE = re.compile(r'"(id|created|system_fingerprint)":("[^"]*"|\d+)|"timings":\{[^}]*\}')


def normalise(payloads):
    return [VOLATILE.sub(lambda m: '"%s":_' % (m.group(1) or "timings"), p) for p in payloads]


def sim_stats(port):
    r = request(port, "GET", "/sim/stats")
    assert r.status == 200, r.status
    return json.loads(r.body)


def t_stream_bytes_identical():
    # Same seed, same request number: the simulator's output is the same, so
    # what comes through pitot must equal what comes from the simulator.
    for include_usage in (False, True):
        for inject in (True, False):
            direct = start_sim("--seed", "7", "--tokens-per-s", "400")
            behind = start_sim("--seed", "7", "--tokens-per-s", "400")
            conf = "measure:\n  usage_injection: %s\n" % ("true" if inject else "false")
            pitot = start_pitot([behind.port], config=conf)
            extra = {"stream_options": {"include_usage": True}} if include_usage else {}
            body = chat_body(max_tokens=12, **extra)
            a = request(direct.port, "POST", "/v1/chat/completions", body)
            b = request(pitot.port, "POST", "/v1/chat/completions", body)
            assert a.status == b.status == 200, (a.status, b.status)
            assert b.complete, "stream through pitot incomplete"
            da, db = normalise(sse_data(a.events)), normalise(sse_data(b.events))
            assert da == db, "events differ (usage=%s inject=%s):\n%s\n---\n%s" % (
                include_usage, inject, "\n".join(da), "\n".join(db))
            # raw event bytes equal too (apart from the volatile fields)
            ra = [VOLATILE.sub("_", e.decode()) for _, e in a.events]
            rb = [VOLATILE.sub("_", e.decode()) for _, e in b.events]
            assert ra == rb
            assert b.header("x-request-id"), "no X-Request-Id returned"
            assert b.header("content-type") == "text/event-stream"
            log = access_log(pitot, 1)[-1]
            assert log["completion_tokens"] == 12, log
            # exact counts need usage: injected, or asked for by the client
            assert log["tokens_estimated"] is (not inject and not include_usage) or \
                log["tokens_estimated"] is False, log
            stop_pitot_clean(pitot)
            direct.stop()
            behind.stop()


def t_usage_injection_counts_exact():
    sim = start_sim("--tokens-per-s", "500", "--prefill-tokens-per-s", "100000")
    pitot = start_pitot([sim.port])
    content = "x" * 400  # 100 prompt tokens by the simulator's rule
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(content, max_tokens=9))
    assert r.status == 200 and r.complete
    assert not any("\"choices\":[]" in d for d in sse_data(r.events)), "usage chunk leaked to the client"
    log = access_log(pitot, 1)[-1]
    assert log["prompt_tokens"] == 100 and log["completion_tokens"] == 9, log
    assert log["tokens_estimated"] is False
    m = metrics(pitot.port)
    assert metric_value(m, "pitot_prompt_tokens_total", backend="%s:%d" % (HOST, sim.port)) == 100
    assert metric_value(m, "pitot_completion_tokens_total") == 9
    stop_pitot_clean(pitot)


def t_load_agrees_with_log():
    sim = start_sim("--slots", "4", "--tokens-per-s", "100", "--prefill-tokens-per-s", "2000",
                    "--jitter", "0.2")
    pitot = start_pitot([sim.port])
    jf = "/tmp/pitot-load-%d.json" % os.getpid()
    out = subprocess.run([os.path.join(BUILD, "pitot-load"), "--url",
                          "http://%s:%d/v1/chat/completions" % (HOST, pitot.port),
                          "--concurrency", "2", "--requests", "10", "--prompt-tokens", "200",
                          "--max-tokens", "10", "--include-usage", "--json", jf, "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    client = {}
    with open(jf) as f:
        for line in f:
            d = json.loads(line)
            client[d["id"]] = d
    os.unlink(jf)
    log = {d["id"]: d for d in access_log(pitot, 10)}
    assert len(client) == 10 and set(client) <= set(log), (list(client)[:3], list(log)[:3])
    worst_ttft = worst_e2e = 0.0
    total_completion = 0
    for rid, c in client.items():
        p = log[rid]
        assert c["status"] == 200 and p["status"] == 200 and p["outcome"] == "ok", (c, p)
        worst_ttft = max(worst_ttft, abs(c["ttft_ms"] - p["ttft_ms"]))
        worst_e2e = max(worst_e2e, abs(c["e2e_ms"] - p["e2e_ms"]))
        assert p["completion_tokens"] == c["completion_tokens"] == 10, (c, p)
        total_completion += p["completion_tokens"]
    assert worst_ttft <= 5.0, "TTFT client vs pitot differs by %.3f ms" % worst_ttft
    assert worst_e2e <= 5.0, "E2E client vs pitot differs by %.3f ms" % worst_e2e
    m = metrics(pitot.port)
    assert metric_value(m, "pitot_completion_tokens_total") == total_completion
    assert metric_value(m, "pitot_prompt_tokens_total") == 10 * 200
    assert metric_value(m, "pitot_requests_total", code="200") == 10
    assert metric_value(m, "pitot_time_to_first_token_seconds_count") == 10
    assert metric_value(m, "pitot_inter_token_latency_seconds_count") == 10 * 9
    stop_pitot_clean(pitot)


def t_t0_is_when_the_request_reached_the_host():
    """A request that waited in the kernel while pitot could not run (here:
    stopped) is timed from when its bytes arrived (the kernel's receive
    stamp), not from when pitot got round to it: its TTFT and E2E include the
    wait, as the client's do. So for bytes already waiting when the
    connection is accepted, for a first request that comes after the accept,
    and for the next request on a kept-alive connection."""
    sim = start_sim("--tokens-per-s", "200", "--prefill-tokens-per-s", "100000")
    pitot = start_pitot([sim.port])
    body = chat_body(max_tokens=4)
    try:
        def timed(s, accepted):
            if accepted:
                time.sleep(0.2)  # pitot has accepted and waits for the request
            pitot.p.send_signal(signal.SIGSTOP)
            t_send = time.monotonic()
            s.sendall(build_request("POST", "/v1/chat/completions", body, None, pitot.port))
            time.sleep(0.4)
            pitot.p.send_signal(signal.SIGCONT)
            r = Reader(s).read()
            client_e2e = (time.monotonic() - t_send) * 1000
            assert r.status == 200 and r.complete, r.status
            return client_e2e

        pitot.p.send_signal(signal.SIGSTOP)
        s = connect(pitot.port)  # accepted once pitot runs again: bytes wait
        e2e = [timed(s, False)]
        s.close()
        s = connect(pitot.port)
        e2e.append(timed(s, True))
        e2e.append(timed(s, True))  # the same connection, kept alive
        s.close()
        lines = access_log(pitot, 3)[-3:]
        for line, client_e2e in zip(lines, e2e):
            assert line["ttft_ms"] >= 380, (line, e2e)
            assert line["e2e_ms"] >= 380 and abs(line["e2e_ms"] - client_e2e) < 50, (line, e2e)
    finally:
        pitot.p.send_signal(signal.SIGCONT)
    stop_pitot_clean(pitot)


def t_refusal_and_truncation():
    sim = start_sim("--refuse", "--tokens-per-s", "500")
    pitot = start_pitot([sim.port])
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=20))
    assert r.status == 200 and r.complete
    log = access_log(pitot, 1)[-1]
    assert log["refusal"] is True and log["truncated"] is True and log["finish_reason"] == "length", log
    m = metrics(pitot.port)
    assert metric_value(m, "pitot_refusals_total") == 1
    assert metric_value(m, "pitot_finish_reason_total", reason="length") == 1
    sim2 = start_sim("--tokens-per-s", "500")
    pitot2 = start_pitot([sim2.port])
    request(pitot2.port, "POST", "/v1/chat/completions", chat_body(max_tokens=5))
    log = access_log(pitot2, 1)[-1]
    assert log["refusal"] is False, log
    assert metric_value(metrics(pitot2.port), "pitot_refusals_total") in (None, 0.0)
    stop_pitot_clean(pitot)
    stop_pitot_clean(pitot2)


def t_stall_counted_and_hard_limit():
    sim = start_sim("--tokens-per-s", "200", "--stall-after", "3", "--stall-ms", "700",
                    "--sse-ping-interval-ms", "200")
    pitot = start_pitot([sim.port], config="measure:\n  stall: 300ms\n  stall_timeout: 5s\n")
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=6))
    assert r.status == 200 and r.complete
    assert any(e.strip() == b":" for _, e in r.events), "ping comments were not relayed"
    log = access_log(pitot, 1)[-1]
    assert log["stalls"] == 1 and log["outcome"] == "ok", log
    assert log["itl_max_ms"] >= 690, log
    assert metric_value(metrics(pitot.port), "pitot_stream_stalls_total") == 1
    stop_pitot_clean(pitot)
    # Above the hard limit the stream is ended with an error event.
    sim2 = start_sim("--tokens-per-s", "200", "--stall-after", "3", "--stall-ms", "3000")
    pitot2 = start_pitot([sim2.port], config="measure:\n  stall: 200ms\n  stall_timeout: 600ms\n")
    r = request(pitot2.port, "POST", "/v1/chat/completions", chat_body(max_tokens=6))
    assert r.status == 200 and not r.complete and r.closed, "cut stream must not look complete"
    data = sse_data(r.events)
    assert json.loads(data[-1])["error"]["type"] == "stall_timeout", data[-1]
    log = access_log(pitot2, 1)[-1]
    assert log["outcome"] == "stall_timeout", log
    m = metrics(pitot2.port)
    assert metric_value(m, "pitot_upstream_errors_total", kind="stall_timeout") == 1
    assert metric_value(m, "pitot_stream_stalls_total") == 1
    stop_pitot_clean(pitot2)


def t_client_cancel_closes_backend():
    sim = start_sim("--tokens-per-s", "50")
    pitot = start_pitot([sim.port])
    s = connect(pitot.port)
    s.sendall(build_request("POST", "/v1/chat/completions", chat_body(max_tokens=200), port=pitot.port))
    r = Reader(s).read(max_events=4)
    assert r.status == 200 and len(r.events) >= 4
    s.close()
    st = wait_for(lambda: sim_stats(sim.port)["cancelled"] == 1 and sim_stats(sim.port))
    assert st and st["cancelled"] == 1 and st["busy"] == 0, sim_stats(sim.port)
    log = access_log(pitot, 1)[-1]
    assert log["outcome"] == "client_cancel" and log["status"] == 200, log
    m = metrics(pitot.port)
    assert metric_value(m, "pitot_client_cancels_total") == 1
    assert metric_value(m, "pitot_requests_in_flight") == 0
    stop_pitot_clean(pitot)


def t_backend_dies_midstream():
    sim = start_sim("--tokens-per-s", "200", "--die-after", "4")
    pitot = start_pitot([sim.port])
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=20))
    assert r.status == 200
    assert not r.complete and r.closed, "the client must not see a complete stream"
    data = sse_data(r.events)
    assert "[DONE]" not in data
    err = json.loads(data[-1])["error"]
    assert err["type"] == "upstream_reset" and err["code"] == 502, err
    log = access_log(pitot, 1)[-1]
    assert log["outcome"] == "upstream_error" and log["error"] == "upstream_reset", log
    assert metric_value(metrics(pitot.port), "pitot_upstream_errors_total",
                        kind="upstream_reset") == 1
    stop_pitot_clean(pitot)


def t_backend_down_before_headers():
    dead = free_port()
    pitot = start_pitot([dead], config="health:\n  interval: 60s\n")
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body())
    assert r.status in (502, 503), r.status
    assert json.loads(r.body)["error"]["code"] == r.status
    r = wait_for(lambda: request(pitot.port, "GET", "/readyz").status == 503)
    assert r, "readyz should be 503 with no healthy backend"
    assert request(pitot.port, "GET", "/healthz").status == 200
    assert metric_value(metrics(pitot.port), "pitot_backend_up") == 0
    stop_pitot_clean(pitot)


def t_admin_endpoints_and_promtool():
    sim = start_sim("--tokens-per-s", "400")
    pitot = start_pitot([sim.port])
    assert request(pitot.port, "GET", "/healthz").status == 200
    assert wait_for(lambda: request(pitot.port, "GET", "/readyz").status == 200)
    for _ in range(3):
        request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=4))
    request(pitot.port, "POST", "/v1/chat/completions", chat_body(stream=False, max_tokens=4))
    r = request(pitot.port, "GET", "/metrics")
    assert r.header("content-type").startswith("text/plain; version=0.0.4")
    out = subprocess.run(["promtool", "check", "metrics"], input=r.body, capture_output=True)
    assert out.returncode == 0 and out.stdout.strip() == b"" and out.stderr.strip() == b"", \
        (out.stdout, out.stderr)
    text = r.body.decode()
    for name in ("pitot_requests_total", "pitot_time_to_first_token_seconds_bucket",
                 "pitot_inter_token_latency_seconds_bucket", "pitot_time_per_output_token_seconds_bucket",
                 "pitot_e2e_request_latency_seconds_bucket", "pitot_prompt_tokens_total",
                 "pitot_completion_tokens_total", "pitot_finish_reason_total",
                 "pitot_requests_in_flight", "pitot_backend_up"):
        assert metric_value(text, name) is not None, name
    # the non-streamed request counted its usage from the JSON body
    log = access_log(pitot, 4)
    ns = [l for l in log if not l["stream"]][0]
    assert ns["completion_tokens"] == 4 and ns["ttft_ms"] is None and ns["tpot_ms"] is None, ns
    stop_pitot_clean(pitot)


def t_bad_requests_never_reach_backend():
    sim = start_sim()
    pitot = start_pitot([sim.port], config="limits:\n  header_timeout: 500ms\n  max_body_bytes: 1k\n"
                                           "  max_header_bytes: 2k\n  max_uri_bytes: 1k\n")
    bad = [
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n", 431),
    ]
    for raw, want in bad:
        s = connect(pitot.port)
        s.sendall(raw)
        r = Reader(s).read()
        assert r.status == want, (raw[:60], r.status, want)
        assert r.header("connection") == "close"
        assert json.loads(r.body)["error"]["code"] == want
        assert Reader(s).closed_by_peer(), "connection not closed after a bad request"
        s.close()
    # chunked body over the limit
    s = connect(pitot.port)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"800\r\n" + b"a" * 2048 + b"\r\n0\r\n\r\n")
    assert Reader(s).read().status == 413
    s.close()
    # slow head: 408 after the header timeout
    s = connect(pitot.port)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: a\r\n")
    r = Reader(s).read()
    assert r.status == 408, r.status
    s.close()
    assert sim_stats(sim.port)["requests"] == 0, "a malformed request reached the backend"
    stop_pitot_clean(pitot)


class EchoBackend(ThreadedBackend):
    """A tiny HTTP/1.1 backend that records raw requests and answers JSON."""

    def __init__(self):
        self.requests = []
        ThreadedBackend.__init__(self)

    def serve(self, c, conn_id):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    c.close()
                    return
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            n = int(m.group(1)) if m else 0
            while len(buf) < n:
                buf += c.recv(65536)
            body, buf = buf[:n], buf[n:]
            self.requests.append((head.decode(), body, conn_id))
            line = head.split(b"\r\n")[0]
            status = b"200 OK"
            if b"/health" in line:
                out = b'{"status":"ok"}'
            elif b" /metrics " in line:
                status, out = b"404 Not Found", b"{}"
            else:
                out = b'{"object":"list","data":[]}'
            c.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      b"Keep-Alive: timeout=5\r\n\r\n%s" % (status, len(out), out))

    def proxied(self):
        """Requests clients sent through pitot (not pitot's own probes and scrapes)."""
        return [r for r in self.requests if "\r\nUser-Agent: pitot\r\n" not in r[0] + "\r\n"]


def t_request_rewrite_and_ids():
    be = EchoBackend()
    try:
        pitot = start_pitot([be.port], config="health:\n  interval: 60s\n")
        s = connect(pitot.port)
        s.sendall(b"POST /v1/embeddings?x=1 HTTP/1.1\r\nHost: client.example\r\nConnection: keep-alive, X-Secret\r\n"
                  b"X-Secret: 1\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.9\r\n"
                  b"X-Request-Id: my-req-1\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer k\r\n"
                  b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
                  b"tracestate: vendor=x\r\n\r\n"
                  b"3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n")
        rd = Reader(s)
        r = rd.read()
        assert r.status == 200 and r.header("x-request-id") == "my-req-1", r.headers
        head, body, _ = be.proxied()[-1]
        lines = head.split("\r\n")
        assert lines[0] == "POST /v1/embeddings?x=1 HTTP/1.1", lines[0]
        hdr = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        assert body == b'{"a":1}' and hdr["content-length"] == "7", (body, hdr)
        for hop in ("x-secret", "keep-alive", "te", "transfer-encoding", "connection"):
            assert hop not in hdr, (hop, hdr)
        assert hdr["x-forwarded-for"] == "10.0.0.9, 127.0.0.1", hdr
        assert hdr["x-request-id"] == "my-req-1"
        assert hdr["host"] == "%s:%d" % (HOST, be.port)
        assert hdr["authorization"] == "Bearer k"
        # W3C trace context: same trace, pitot's own span as the parent
        tp = hdr["traceparent"].split("-")
        assert tp[0] == "00" and tp[1] == "4bf92f3577b34da6a3ce929d0e0e4736" and tp[3] == "01", tp
        assert re.fullmatch(r"[0-9a-f]{16}", tp[2]) and tp[2] != "00f067aa0ba902b7", tp
        assert hdr["tracestate"] == "vendor=x"
        # keep-alive on both sides: a second request on the same connections
        s.sendall(build_request("GET", "/v1/models", port=pitot.port))
        r2 = rd.read()
        assert r2.status == 200 and r2.header("x-request-id") and r2.header("x-request-id") != "my-req-1"
        used = [c for _, _, c in be.proxied()]
        assert len(used) == 2 and used[0] == used[1], "upstream connection not reused: %s" % used
        # no traceparent from the client: a new trace is started
        h2 = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip()
              for l in be.proxied()[-1][0].split("\r\n")[1:]}
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", h2["traceparent"]), h2
        assert "tracestate" not in h2
        # an invalid one (all-zero trace id) starts a new trace; its tracestate goes
        s.sendall(build_request("GET", "/v1/models", port=pitot.port, headers=[
            ("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            ("tracestate", "vendor=x")]))
        assert rd.read().status == 200
        h3 = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip()
              for l in be.proxied()[-1][0].split("\r\n")[1:]}
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", h3["traceparent"]), h3
        assert h3["traceparent"][3:35] != "0" * 32 and "tracestate" not in h3, h3
        s.close()
        logs = access_log(pitot, 3)
        assert logs[0]["path"] == "/v1/embeddings" and "x=1" not in json.dumps(logs[0]), logs[0]
        assert "Bearer" not in open(pitot.access_log).read()
        stop_pitot_clean(pitot)
    finally:
        be.close()


def t_least_in_flight_and_pipelining():
    a = start_sim("--tokens-per-s", "50", "--slots", "4")
    b = start_sim("--tokens-per-s", "50", "--slots", "4")
    pitot = start_pitot([a.port, b.port])
    socks = []
    for _ in range(4):
        s = connect(pitot.port)
        s.sendall(build_request("POST", "/v1/chat/completions", chat_body(max_tokens=30), port=pitot.port))
        socks.append(s)
    wait_for(lambda: metric_value(metrics(pitot.port), "pitot_requests_in_flight") == 4)
    m = metrics(pitot.port)
    ia = metric_value(m, "pitot_requests_in_flight", backend="%s:%d" % (HOST, a.port))
    ib = metric_value(m, "pitot_requests_in_flight", backend="%s:%d" % (HOST, b.port))
    assert ia == 2 and ib == 2, (ia, ib)
    for s in socks:
        s.close()
    # two pipelined requests on one connection are answered in order
    s = connect(pitot.port)
    s.sendall(build_request("GET", "/healthz", port=pitot.port) +
              build_request("POST", "/v1/chat/completions", chat_body(stream=False, max_tokens=3),
                            port=pitot.port))
    rd = Reader(s)
    r1, r2 = rd.read(), rd.read()
    assert r1.status == 200 and r1.body == b'{"status":"ok"}', r1.body
    assert r2.status == 200 and json.loads(r2.body)["usage"]["completion_tokens"] == 3
    s.close()
    stop_pitot_clean(pitot)


class FloodBackend(ThreadedBackend):
    """Streams `n` SSE events of ~1 KB as fast as the socket takes them and
    records how many bytes it managed to hand to the kernel."""

    def __init__(self, n):
        self.n = n
        self.sent = 0
        ThreadedBackend.__init__(self)

    def serve(self, c, conn_id):
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(65536)
            if not d:
                return
            head += d
        if not head.startswith(b"POST "):
            # health probes and scrapes: healthy, no metrics, no model list
            ok = b"/health" in head.split(b"\r\n")[0]
            c.sendall(b"HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                      % (b"200 OK" if ok else b"404 Not Found"))
            c.close()
            return
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        pad = "x" * 960
        batch = b"".join(b'data: {"choices":[{"index":0,"delta":{"content":"%d %s"}}]}\n\n'
                         % (k, pad.encode()) for k in range(64))
        try:
            for _ in range(self.n // 64):
                c.sendall(batch)
                self.sent += len(batch)
            c.sendall(b"data: [DONE]\n\n")
        except OSError:
            pass
        c.close()


def t_slow_client_backpressure():
    n = 32768  # ~33 MB
    be = FloodBackend(n)
    try:
        pitot = start_pitot([be.port], config="upstream:\n  stream_buffer_bytes: 64k\n")
        s = connect(pitot.port)
        s.sendall(build_request("POST", "/v1/chat/completions", chat_body(max_tokens=n), port=pitot.port))
        time.sleep(2.0)  # the client reads nothing
        stalled_at = be.sent
        # Kernel buffers on three sockets plus pitot's 64 KiB cap: a few MB at
        # most. Without backpressure pitot would have taken all 33 MB.
        assert stalled_at < 12 * 1024 * 1024, "backend pushed %d bytes into a stalled client" % stalled_at
        s.settimeout(60)
        r = Reader(s).read()
        s.close()
        assert r.status == 200 and r.complete
        data = sse_data(r.events)
        assert len(data) == n + 1 and data[-1] == "[DONE]", len(data)
        assert all(json.loads(d)["choices"][0]["delta"]["content"].startswith("%d " % (k % 64))
                   for k, d in enumerate(data[:-1])), "events lost or reordered"
        stop_pitot_clean(pitot)
    finally:
        be.close()


def t_config_check_errors():
    bad = "/tmp/pitot-bad-%d.yaml" % os.getpid()
    with open(bad, "w") as f:
        f.write("listen: 127.0.0.1:8080\nbackends:\n  - url: ftp://x\n")
    out = subprocess.run([os.path.join(BUILD, "pitot"), "-t", "-c", bad], capture_output=True, text=True)
    assert out.returncode != 0 and re.match(r"^%s:3: " % re.escape(bad), out.stderr), out.stderr
    out = subprocess.run([os.path.join(BUILD, "pitot"), "-t", "-c", "conf/pitot.yaml"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    os.unlink(bad)


check("stream bytes identical through pitot (usage on/off, injection on/off)", t_stream_bytes_identical)
check("usage injection gives exact counts and strips the usage chunk", t_usage_injection_counts_exact)
check("pitot-load client figures agree with the access log within 5 ms", t_load_agrees_with_log)
check("t0 is when the request reached the host, not when pitot read it",
      t_t0_is_when_the_request_reached_the_host)
check("refusal and truncation detected", t_refusal_and_truncation)
check("stalls counted; hard stall limit ends the stream", t_stall_counted_and_hard_limit)
check("client cancel closes the backend connection", t_client_cancel_closes_backend)
check("backend death mid-stream gives an error event and no final chunk", t_backend_dies_midstream)
check("dead backend: 502/503, readyz 503, backend_up 0", t_backend_down_before_headers)
check("admin endpoints; promtool check metrics is clean", t_admin_endpoints_and_promtool)
check("malformed requests get clear errors and never reach a backend", t_bad_requests_never_reach_backend)
check("request rewrite: hop-by-hop, X-Forwarded-For, X-Request-Id, reuse", t_request_rewrite_and_ids)
check("least in-flight spreads load; pipelined requests in order", t_least_in_flight_and_pipelining)
check("slow client: backend is paused (bounded memory), nothing lost", t_slow_client_backpressure)
check("pitot -t reports FILE:LINE errors", t_config_check_errors)
finish()
