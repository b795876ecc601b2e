"""OTLP/HTTP span export end to end: pitot in front of pitot-sim or a
recording backend, exporting to a fake collector (http.server on a free
loopback port) that records every POST."""

import http.server
import json
import os
import re
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD, HOST, ThreadedBackend, chat_body, check, finish, free_port,  # noqa: E402
                     metric_value, metrics, request, sse_data, start_pitot, start_sim,
                     stop_pitot_clean, wait_for)

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = "00-%s-%s-01" % (CLIENT_TRACE, CLIENT_SPAN)
SECRET_PROMPT = "my secret prompt text"
SECRET_KEY = "sk-very-secret-key"


def traces_config(endpoint, **keys):
    keys.setdefault("interval", "50ms")
    lines = ["opentelemetry:", "  traces:", "    endpoint: %s" % endpoint]
    lines += ["    %s: %s" % kv for kv in keys.items()]
    return "\n".join(lines) + "\n"


class Collector:
    """A fake OTLP/HTTP collector: records (path, headers, raw body) of each
    POST and answers `status` with an empty JSON object."""

    def __init__(self, status=200):
        self.posts = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.posts.append((self.path, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.srv = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        self.endpoint = "http://%s:%d" % (HOST, self.port)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def bodies(self):
        with self.lock:
            return [json.loads(b) for _, _, b in self.posts]

    def spans(self):
        """Every span received, in arrival order."""
        out = []
        for doc in self.bodies():
            for rs in doc["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    out += ss["spans"]
        return out

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class HangingCollector(ThreadedBackend):
    """Accepts, reads what comes, never answers."""

    def __init__(self):
        self.conns = []
        ThreadedBackend.__init__(self)

    def serve(self, conn, conn_id):
        self.conns.append(conn)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def close(self):
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        ThreadedBackend.close(self)


# The model a backend reports: quotes, a backslash and a control byte.
ODD_MODEL = 'we"ird\\mo\x01del'


class TraceBackend(ThreadedBackend):
    """Records each request head and streams a short chat answer (with usage)
    from a model with an awkward name; GET paths get a JSON object."""

    def __init__(self):
        self.heads = []
        ThreadedBackend.__init__(self)

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
                    buf += c.recv(65536)
                buf = buf[n:]
                head = head.decode()
                line = head.split("\r\n")[0]
                if "/v1/chat/completions" not in line:
                    out = b'{"status":"ok"}'
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
                    continue
                self.heads.append(head)
                model = json.dumps(ODD_MODEL)
                events = [
                    '{"model":%s,"choices":[{"index":0,"delta":{"content":"Hi"}}]}' % model,
                    '{"model":%s,"choices":[{"index":0,"delta":{"content":" there"}}]}' % model,
                    '{"model":%s,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}' % model,
                    '{"model":%s,"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,'
                    '"total_tokens":9}}' % model,
                ]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
                for e in events + ["[DONE]"]:
                    ev = ("data: %s\n\n" % e).encode()
                    c.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
                c.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            c.close()


def attrs(span):
    """A span's attributes as {key: python value}."""
    out = {}
    for a in span["attributes"]:
        (kind, v), = a["value"].items()
        if kind == "intValue":
            v = int(v)
        elif kind == "arrayValue":
            v = [x["stringValue"] for x in v["values"]]
        out[a["key"]] = v
    return out


def by_request_id(spans):
    return {attrs(s)["pitot.request_id"]: s for s in spans}


def usage_of_stream(r):
    for d in sse_data(r.events):
        if d != "[DONE]":
            u = json.loads(d).get("usage")
            if u:
                return u
    raise AssertionError("no usage in the stream")


def finish_of_stream(r):
    for d in sse_data(r.events):
        if d != "[DONE]":
            for ch in json.loads(d).get("choices", []):
                if ch.get("finish_reason"):
                    return ch["finish_reason"]
    raise AssertionError("no finish_reason in the stream")


def dropped(port, reason):
    return metric_value(metrics(port), "pitot_trace_spans_dropped_total", reason=reason)


def exported(port):
    return metric_value(metrics(port), "pitot_trace_spans_exported_total")


def t_span_per_request():
    coll = Collector()
    try:
        sim = start_sim("--tokens-per-s", "400")
        pitot = start_pitot([sim.port], config=traces_config(coll.endpoint))
        common = [("Authorization", "Bearer " + SECRET_KEY)]
        r1 = request(pitot.port, "POST", "/v1/chat/completions",
                     chat_body(SECRET_PROMPT, max_tokens=5, stream_options={"include_usage": True}),
                     headers=common + [("X-Request-Id", "stream-1"), ("traceparent", TRACEPARENT)])
        r2 = request(pitot.port, "POST", "/v1/chat/completions",
                     chat_body(SECRET_PROMPT, stream=False, max_tokens=3),
                     headers=common + [("X-Request-Id", "plain-2")])
        r3 = request(pitot.port, "POST", "/v1/completions",
                     {"model": "small", "prompt": SECRET_PROMPT, "max_tokens": 4},
                     headers=common + [("X-Request-Id", "compl-3")])
        for r in (r1, r2, r3):
            assert r.status == 200 and r.complete, (r.status, r.body[:200])
        assert wait_for(lambda: len(coll.spans()) >= 3, timeout=10), coll.spans()
        spans = by_request_id(coll.spans())
        assert len(coll.spans()) == 3 and set(spans) == {"stream-1", "plain-2", "compl-3"}, spans.keys()

        # the POSTs: path, JSON, resource and scope
        path, headers, raw = coll.posts[0]
        assert path == "/v1/traces", path
        assert headers.get("Content-Type") == "application/json", headers
        for _, _, raw in coll.posts:
            assert SECRET_PROMPT.encode() not in raw and SECRET_KEY.encode() not in raw
        doc = coll.bodies()[0]["resourceSpans"][0]
        res = {a["key"]: a["value"]["stringValue"] for a in doc["resource"]["attributes"]}
        assert res["service.name"] == "pitot", res
        assert doc["scopeSpans"][0]["scope"]["name"] == "pitot", doc["scopeSpans"][0]["scope"]

        # streamed chat: the client's trace, its span as the parent, a first-token event
        s = spans["stream-1"]
        a = attrs(s)
        u = usage_of_stream(r1)
        assert s["name"] == "chat small" and s["kind"] == 3, (s["name"], s["kind"])
        assert s["traceId"] == CLIENT_TRACE and s["parentSpanId"] == CLIENT_SPAN, s
        assert re.fullmatch(r"[0-9a-f]{16}", s["spanId"]) and s["spanId"] != CLIENT_SPAN, s
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == "small" and a["gen_ai.response.model"] == "small", a
        assert a["gen_ai.usage.input_tokens"] == u["prompt_tokens"], (a, u)
        assert a["gen_ai.usage.output_tokens"] == u["completion_tokens"] == 5, (a, u)
        assert a["gen_ai.response.finish_reasons"] == [finish_of_stream(r1)] == ["length"], a
        assert a["server.address"] == HOST and a["server.port"] == sim.port, a
        assert a["http.response.status_code"] == 200 and a["pitot.tier"] == "default", a
        assert "error.type" not in a and "status" not in s, s
        start, end = int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])
        assert 0 < start <= end, (start, end)
        ev = s["events"]
        assert len(ev) == 1 and ev[0]["name"] == "pitot.first_token", ev
        assert start <= int(ev[0]["timeUnixNano"]) <= end, (start, ev, end)
        assert abs(a["gen_ai.response.time_to_first_chunk"] * 1e9 -
                   (int(ev[0]["timeUnixNano"]) - start)) < 2000, (a, ev)

        # non-streamed chat: tokens from the body's usage, no first token, a new trace
        s = spans["plain-2"]
        a = attrs(s)
        u = json.loads(r2.body)["usage"]
        assert s["name"] == "chat small" and "parentSpanId" not in s and "events" not in s, s
        assert re.fullmatch(r"[0-9a-f]{32}", s["traceId"]) and s["traceId"] != CLIENT_TRACE, s
        assert a["gen_ai.usage.input_tokens"] == u["prompt_tokens"], (a, u)
        assert a["gen_ai.usage.output_tokens"] == u["completion_tokens"] == 3, (a, u)
        assert a["gen_ai.response.finish_reasons"] == ["length"], a

        s = spans["compl-3"]
        a = attrs(s)
        u = json.loads(r3.body)["usage"]
        assert s["name"] == "text_completion small", s["name"]
        assert a["gen_ai.operation.name"] == "text_completion", a
        assert a["gen_ai.usage.output_tokens"] == u["completion_tokens"] == 4, (a, u)

        m = metrics(pitot.port)
        assert metric_value(m, "pitot_trace_spans_exported_total") == 3, m
        assert metric_value(m, "pitot_trace_spans_dropped_total") == 0, m
        stop_pitot_clean(pitot)
    finally:
        coll.close()


def t_span_ids_are_the_traceparent_sent_upstream():
    coll = Collector()
    be = TraceBackend()
    try:
        pitot = start_pitot([be.port], config="models: [small]\nhealth:\n  interval: 60s\n" +
                            traces_config(coll.endpoint))
        ra = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2),
                     headers=[("X-Request-Id", "with-parent"), ("traceparent", TRACEPARENT),
                              ("tracestate", "vendor=x")])
        rb = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2),
                     headers=[("X-Request-Id", "fresh")])
        assert ra.status == rb.status == 200 and ra.complete and rb.complete
        assert wait_for(lambda: len(coll.spans()) >= 2, timeout=10), coll.spans()
        spans = by_request_id(coll.spans())
        sent = {}
        for head in be.heads:
            h = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in head.split("\r\n")[1:]}
            sent[h["x-request-id"]] = h["traceparent"].split("-")
        for rid in ("with-parent", "fresh"):
            _, trace, parent, _ = sent[rid]
            s = spans[rid]
            assert s["traceId"] == trace and s["spanId"] == parent, (rid, s, sent[rid])
        assert spans["with-parent"]["traceId"] == CLIENT_TRACE
        assert spans["with-parent"]["parentSpanId"] == CLIENT_SPAN
        assert "parentSpanId" not in spans["fresh"], spans["fresh"]
        # the backend's model name, whatever its bytes, arrives as it reported it
        a = attrs(spans["fresh"])
        assert a["gen_ai.response.model"] == ODD_MODEL, a
        assert a["gen_ai.request.model"] == "small" and spans["fresh"]["name"] == "chat small", a
        assert a["gen_ai.usage.input_tokens"] == 7 and a["gen_ai.usage.output_tokens"] == 2, a
        assert a["gen_ai.response.finish_reasons"] == ["stop"], a
        assert [e["name"] for e in spans["fresh"]["events"]] == ["pitot.first_token"]
        stop_pitot_clean(pitot)
    finally:
        be.close()
        coll.close()


def t_failed_request_span():
    coll = Collector()
    try:
        sim = start_sim("--tokens-per-s", "400", "--fail-status", "500")
        pitot = start_pitot([sim.port], config="routing:\n  eject:\n    failures: 0\n" +
                            traces_config(coll.endpoint))
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=3),
                    headers=[("X-Request-Id", "fails")])
        assert r.status == 500, r.status
        assert wait_for(lambda: len(coll.spans()) >= 1, timeout=10)
        s = coll.spans()[0]
        a = attrs(s)
        assert s["status"]["code"] == 2 and s["status"]["message"], s
        assert a["error.type"] == "500" and a["http.response.status_code"] == 500, a
        assert a["pitot.request_id"] == "fails"
        stop_pitot_clean(pitot)
    finally:
        coll.close()


def t_batching():
    coll = Collector()
    try:
        sim = start_sim("--tokens-per-s", "400")
        # no timer export during the test: only a full batch leaves
        pitot = start_pitot([sim.port], config=traces_config(coll.endpoint, interval="10m",
                                                             batch_size=4, queue_size=16))
        for round_ in (1, 2):
            for i in range(4):
                r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2),
                            headers=[("X-Request-Id", "b%d-%d" % (round_, i))])
                assert r.status == 200 and r.complete
            assert wait_for(lambda: len(coll.posts) >= round_, timeout=10), coll.posts
        assert wait_for(lambda: exported(pitot.port) == 8, timeout=10), metrics(pitot.port)
        bodies = coll.bodies()
        per_post = [[attrs(s)["pitot.request_id"] for s in b["resourceSpans"][0]["scopeSpans"][0]["spans"]]
                    for b in bodies]
        assert per_post == [["b1-%d" % i for i in range(4)], ["b2-%d" % i for i in range(4)]], per_post
        stop_pitot_clean(pitot)
    finally:
        coll.close()


def t_collector_down():
    sim = start_sim("--tokens-per-s", "400")
    closed = free_port()  # nothing listens there
    pitot = start_pitot([sim.port], config=traces_config("http://%s:%d" % (HOST, closed),
                                                         timeout="2s", batch_size=2))
    n = 10
    for i in range(n):
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=3))
        assert r.status == 200 and r.complete, r.status
    assert wait_for(lambda: dropped(pitot.port, "export_failed") == n, timeout=15), metrics(pitot.port)
    assert exported(pitot.port) == 0 and dropped(pitot.port, "queue_full") == 0
    stop_pitot_clean(pitot)


def t_collector_refuses():
    coll = Collector(status=503)
    try:
        sim = start_sim("--tokens-per-s", "400")
        pitot = start_pitot([sim.port], config=traces_config(coll.endpoint))
        for _ in range(3):
            assert request(pitot.port, "POST", "/v1/chat/completions",
                           chat_body(max_tokens=2)).status == 200
        assert wait_for(lambda: dropped(pitot.port, "export_failed") == 3, timeout=10), \
            metrics(pitot.port)
        assert len(coll.spans()) == 3 and exported(pitot.port) == 0
        stop_pitot_clean(pitot)
    finally:
        coll.close()


def t_collector_hangs_queue_bounded():
    hang = HangingCollector()
    try:
        sim = start_sim("--tokens-per-s", "400")
        # one span in flight for a minute, two more fill the queue, the rest is dropped
        pitot = start_pitot([sim.port], config=traces_config(
            "http://%s:%d" % (HOST, hang.port), queue_size=2, batch_size=1, timeout="60s"))
        n = 12
        for i in range(n):
            r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=3))
            assert r.status == 200 and r.complete, (i, r.status)
        m = metrics(pitot.port)
        assert metric_value(m, "pitot_trace_spans_dropped_total", reason="queue_full") == n - 3, m
        assert metric_value(m, "pitot_trace_spans_dropped_total", reason="export_failed") == 0, m
        assert metric_value(m, "pitot_trace_spans_exported_total") == 0, m
        assert hang.connections == 1, hang.connections  # one export in flight, never more
        stop_pitot_clean(pitot)
    finally:
        hang.close()


def t_collector_hangs_timeout():
    hang = HangingCollector()
    try:
        sim = start_sim("--tokens-per-s", "400")
        pitot = start_pitot([sim.port], config=traces_config(
            "http://%s:%d" % (HOST, hang.port), timeout="200ms"))
        for _ in range(3):
            assert request(pitot.port, "POST", "/v1/chat/completions",
                           chat_body(max_tokens=2)).status == 200
        assert wait_for(lambda: dropped(pitot.port, "export_failed") == 3, timeout=15), \
            metrics(pitot.port)
        assert dropped(pitot.port, "queue_full") == 0 and exported(pitot.port) == 0
        stop_pitot_clean(pitot)
    finally:
        hang.close()


def t_other_scheme_refused():
    path = "/tmp/pitot-otel-%d.yaml" % os.getpid()
    with open(path, "w") as f:
        f.write("backends: [http://127.0.0.1:1]\n" + traces_config("grpc://%s:4317" % HOST))
    try:
        out = subprocess.run([os.path.join(BUILD, "pitot"), "-t", "-c", path], capture_output=True,
                             text=True)
    finally:
        os.unlink(path)
    assert out.returncode != 0, out
    assert "expected http[s]://host[:port][/path]" in out.stderr and ":4: " in out.stderr, out.stderr


check("one span per request with the GenAI attributes, tokens as reported", t_span_per_request)
check("span trace id and span id are the traceparent sent upstream", t_span_ids_are_the_traceparent_sent_upstream)
check("a failed request's span has status ERROR and error.type", t_failed_request_span)
check("spans are batched: a full batch is one POST", t_batching)
check("collector down: requests unaffected, spans dropped as export_failed", t_collector_down)
check("collector answers 503: spans dropped as export_failed", t_collector_refuses)
check("collector never answers: queue bounded, drops counted as queue_full", t_collector_hangs_queue_bounded)
check("collector never answers: the export times out", t_collector_hangs_timeout)
check("an endpoint neither http:// nor https:// is a clear config error", t_other_scheme_refused)
finish()
