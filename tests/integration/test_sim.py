#!/usr/bin/env python3
"""pitot-sim against the recorded llama.cpp fixtures: headers, chunk and event
layout, JSON key order, usage/timings, queueing, faults, keep-alive.

Run from the repo root. PITOT_BUILD (default "build") holds pitot-sim;
PITOT_FIXTURES (default "tests/fixtures") holds llama.cpp/*.http.
Prints "PASS name" or "FAIL name: reason" per check; exits 1 if any failed.
"""
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("PITOT_BUILD", "build")
FIXTURES = os.path.join(os.environ.get("PITOT_FIXTURES", "tests/fixtures"), "llama.cpp")
SIM = os.path.join(BUILD, "pitot-sim")

CHAT_MSGS = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a short story about a lighthouse keeper."},
]

failures = []
exits = []  # (args, exit status, stderr) of every simulator run


def check(name, fn):
    try:
        fn()
    except AssertionError as e:
        failures.append(name)
        print("FAIL %s: %s" % (name, e), flush=True)
    except Exception as e:  # a crash in a check is a failure of that check
        failures.append(name)
        print("FAIL %s: %s: %s" % (name, type(e).__name__, e), flush=True)
    else:
        print("PASS %s" % name, flush=True)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


# ---------------------------------------------------------------- processes

class Sim:
    """One pitot-sim process on a free loopback port; stopped by PID."""

    def __init__(self, *args):
        self.port = free_port()
        self.args = [str(a) for a in args]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [SIM, "--listen", "127.0.0.1:%d" % self.port] + [str(a) for a in args],
            stdout=subprocess.DEVNULL, stderr=self.log)
        want = b"pitot-sim listening on 127.0.0.1:%d" % self.port
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if want in self.stderr():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        self.stop()
        raise AssertionError("pitot-sim did not start: %r" % self.stderr()[-300:])

    def stderr(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        """SIGTERM by PID; returns the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                return None
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        exits.append((self.args, self.stop(), self.stderr().decode(errors="replace")))
        self.log.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- HTTP bytes

def request(method, path, body=None, version="1.1", headers=None):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    lines = ["%s %s HTTP/%s" % (method, path, version), "Host: 127.0.0.1", "User-Agent: test_sim/1",
             "Accept: */*"]
    if body is not None:
        lines += ["Content-Type: application/json", "Content-Length: %d" % len(body)]
    lines += headers or []
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class Conn:
    """A client socket that timestamps every recv() (monotonic seconds)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.recvs = []  # (t, cumulative length)
        self.eof = False
        self.t_send = None

    def send(self, data):
        self.t_send = time.monotonic()
        self.s.sendall(data)

    def recv_once(self, timeout=10):
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
        else:
            self.buf += d
            self.recvs.append((time.monotonic(), len(self.buf)))
        return d

    def read_until(self, pred, timeout=10):
        end = time.monotonic() + timeout
        while not pred(self.buf) and not self.eof:
            left = end - time.monotonic()
            expect(left > 0, "timed out waiting for data (have %d bytes)" % len(self.buf))
            self.recv_once(left)
        return self.buf

    def read_to_eof(self, timeout=10):
        return self.read_until(lambda b: False, timeout)

    def time_of(self, offset):
        """When byte offset-1 arrived."""
        for t, n in self.recvs:
            if n >= offset:
                return t
        return None

    def close(self):
        self.s.close()


def parse_http(raw):
    """Splits one response: status, [(name, value)], and either the chunk list
    [(payload, end offset)] with terminated flag, or the body."""
    head_end = raw.index(b"\r\n\r\n") + 4
    lines = raw[:head_end - 4].decode().split("\r\n")
    headers = [tuple(l.split(": ", 1)) if ": " in l else (l.rstrip(":"), "") for l in lines[1:]]
    r = {"status_line": lines[0], "status": int(lines[0].split()[1]), "headers": headers,
         "head_end": head_end, "chunks": [], "terminated": False, "body": b"", "end": head_end}
    h = {k.lower(): v for k, v in headers}
    if h.get("transfer-encoding") == "chunked":
        i = head_end
        while True:
            j = raw.find(b"\r\n", i)
            if j < 0:
                break
            size = int(raw[i:j], 16)
            if size == 0:
                r["terminated"] = raw[j:j + 4] == b"\r\n\r\n"
                r["end"] = j + 4
                break
            if len(raw) < j + 2 + size + 2:
                break
            expect(raw[j + 2 + size:j + 4 + size] == b"\r\n", "chunk not followed by CRLF")
            r["chunks"].append((raw[j + 2:j + 2 + size], j + 4 + size))
            i = j + 4 + size
            r["end"] = i
    else:
        n = int(h.get("content-length", "0"))
        r["body"] = raw[head_end:head_end + n]
        r["end"] = head_end + n
    return r


def one_response(buf):
    """True once buf holds a whole Content-Length response."""
    if b"\r\n\r\n" not in buf:
        return False
    r = parse_http(buf)
    return len(r["body"]) == int(dict((k.lower(), v) for k, v in r["headers"]).get("content-length", 0))


def events(payload):
    """SSE events of one chunk: each must be 'data: ...' or ':' with LF only."""
    expect(payload.endswith(b"\n\n"), "chunk does not end with a blank line: %r" % payload[-20:])
    expect(b"\r" not in payload, "CR inside SSE payload")
    out = []
    for ev in payload[:-2].split(b"\n\n"):
        expect(b"\n" not in ev, "multi-line event %r" % ev[:80])
        out.append(ev.decode())
    return out


def data_of(ev):
    expect(ev.startswith("data: "), "not a data event: %r" % ev[:40])
    d = ev[6:]
    return d if d == "[DONE]" else json.loads(d, object_pairs_hook=OrderedPairs)


class OrderedPairs(dict):
    """A dict that remembers the key order it was parsed with."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.order = [k for k, _ in pairs]


def shape(o):
    """Key order, recursively; scalar values ignored."""
    if isinstance(o, OrderedPairs):
        return ("{", [(k, shape(o[k])) for k in o.order])
    if isinstance(o, list):
        return ("[", shape(o[0]) if o else None)
    return "."


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def fixture_events(name):
    r = parse_http(fixture(name))
    return [[e for e in events(p)] for p, _ in r["chunks"]]


def exchange(port, data, timeout=10):
    """Sends one request on a fresh connection; returns (parsed, raw, conn)."""
    c = Conn(port)
    c.send(data)
    c.read_until(lambda b: b"\r\n\r\n" in b and (one_response(b) if b"chunked" not in b.split(b"\r\n\r\n")[0]
                                                 else b"\r\n0\r\n\r\n" in b), timeout)
    return parse_http(c.buf), c.buf, c


def get(port, path):
    r, raw, c = exchange(port, request("GET", path))
    c.close()
    return r


def get_json(port, path):
    return json.loads(get(port, path)["body"])


def metrics(port):
    out = {}
    for line in get(port, "/metrics")["body"].decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split(" ")
            out[k] = float(v)
    return out


def stream(port, body, path="/v1/chat/completions", timeout=20):
    c = Conn(port)
    c.send(request("POST", path, body))
    c.read_to_eof(timeout)
    c.close()
    return parse_http(c.buf), c


def chat_body(max_tokens, stream_=True, **kw):
    b = {"model": "small", "messages": CHAT_MSGS, "stream": stream_, "max_tokens": max_tokens}
    b.update(kw)
    return b


def content_text(chunks):
    text = []
    for p, _ in chunks:
        for ev in events(p):
            d = data_of(ev) if ev != ":" else None
            if isinstance(d, dict) and d.get("choices"):
                delta = d["choices"][0].get("delta", {})
                if delta.get("content"):
                    text.append(delta["content"])
    return "".join(text)


def content_events(chunks):
    n = 0
    for p, _ in chunks:
        for ev in events(p):
            if ev == ":":
                continue
            d = data_of(ev)
            if isinstance(d, dict) and d.get("choices") and "content" in d["choices"][0].get("delta", {}) \
                    and d["choices"][0]["delta"]["content"] is not None:
                n += 1
    return n


# ---------------------------------------------------------------- checks

def check_chat_stream(sim):
    fx = parse_http(fixture("chat-stream-basic.http"))
    fx_ev = fixture_events("chat-stream-basic.http")
    r, c = stream(sim.port, chat_body(16))

    def headers():
        expect(r["status_line"] == fx["status_line"], "status %r" % r["status_line"])
        expect(r["headers"] == fx["headers"], "headers %r != %r" % (r["headers"], fx["headers"]))
    check("chat_stream_headers_exact", headers)

    def first_chunk():
        evs = events(r["chunks"][0][0])
        expect(len(evs) == 2, "first chunk holds %d events" % len(evs))
        role, tok = data_of(evs[0]), data_of(evs[1])
        expect(role["choices"][0]["delta"] == {"role": "assistant", "content": None}, "role delta %r" % role)
        expect(isinstance(tok["choices"][0]["delta"]["content"], str), "first token %r" % tok)
        expect(shape(role) == shape(data_of(fx_ev[0][0])), "role event key order differs")
        expect(shape(tok) == shape(data_of(fx_ev[0][1])), "token event key order differs")
        expect(role["id"].startswith("chatcmpl-") and len(role["id"]) == 41 and role["id"][9:].isalnum(),
               "id %r" % role["id"])
        expect(role["system_fingerprint"] == "b10587-3f545becc", "fingerprint")
        expect(abs(role["created"] - time.time()) < 60, "created is not wall time")
    check("chat_stream_first_chunk_two_events", first_chunk)

    def layout():
        chunks = r["chunks"]
        expect(len(chunks) == 16 + 2, "%d chunks for 16 tokens (want 18)" % len(chunks))
        for p, _ in chunks[1:16]:
            expect(len(events(p)) == 1, "a token chunk with %d events" % len(events(p)))
            expect(shape(data_of(events(p)[0])) == shape(data_of(fx_ev[1][0])), "token key order")
        fin = events(chunks[16][0])
        expect(len(fin) == 1, "finish chunk holds %d events" % len(fin))
        d = data_of(fin[0])
        expect(d["choices"][0]["finish_reason"] == "length" and d["choices"][0]["delta"] == {}, "finish %r" % d)
        expect(shape(d) == shape(data_of(fx_ev[-2][0])), "finish event key order (with timings)")
        expect("usage" not in d, "usage without include_usage")
        expect(d["timings"]["predicted_n"] == 16, "predicted_n %r" % d["timings"]["predicted_n"])
        expect(chunks[17][0] == b"data: [DONE]\n\n", "DONE chunk %r" % chunks[17][0])
        expect(r["terminated"], "no 0-chunk terminator")
        expect(r["end"] == len(c.buf), "bytes after the terminator")
        expect(c.eof, "connection left open after the stream")
        expect(content_events(chunks) == 16, "content events %d" % content_events(chunks))
    check("chat_stream_end_layout_done_close", layout)


def check_include_usage(sim):
    fx_ev = fixture_events("chat-stream-include-usage.http")
    # 400 bytes of content once decoded: "\u00e9" is 2 bytes, "\n" one.
    user = "\u00e9" * 50 + "x\n" * 50 + "y" * 200
    msgs = [{"role": "system", "content": ""}, {"role": "user", "content": user}]
    expect(len(user.encode()) == 400, "test setup")
    r, c = stream(sim.port, {"messages": msgs, "stream": True, "max_tokens": 12,
                             "stream_options": {"include_usage": True}})
    fin = events(r["chunks"][-2][0])
    expect(len(fin) == 2, "end chunk holds %d events (want finish + usage)" % len(fin))
    f, u = data_of(fin[0]), data_of(fin[1])
    expect(shape(f) == shape(data_of(fx_ev[-2][0])), "finish event key order")
    expect(shape(u) == shape(data_of(fx_ev[-2][1])), "usage event key order")
    expect("timings" not in f, "timings stay on the finish event with include_usage")
    expect(u["choices"] == [], "usage event choices %r" % u["choices"])
    n = content_events(r["chunks"])
    us = u["usage"]
    expect(us["completion_tokens"] == n == 12, "completion_tokens %d, content events %d" % (us["completion_tokens"], n))
    expect(us["prompt_tokens"] == 100, "prompt_tokens %d for 400 bytes" % us["prompt_tokens"])
    expect(us["total_tokens"] == 112, "total_tokens %d" % us["total_tokens"])
    expect(us["prompt_tokens_details"] == {"cached_tokens": 0}, "cached %r" % us["prompt_tokens_details"])
    t = u["timings"]
    expect(t["prompt_n"] == 100 and t["predicted_n"] == 12 and t["cache_n"] == 0, "timings %r" % t)
    expect(abs(t["prompt_per_token_ms"] - t["prompt_ms"] / 100) < 1e-6, "prompt_per_token_ms")
    expect(abs(t["predicted_per_token_ms"] - t["predicted_ms"] / 11) < 1e-6, "predicted_per_token_ms")
    expect(r["chunks"][-1][0] == b"data: [DONE]\n\n" and r["terminated"] and c.eof, "end of stream")


def check_completions(sim):
    fx = fixture_events("v1-completions-stream.http")
    outs = []
    for extra in ({}, {"stream_options": {"include_usage": True}}):
        body = {"model": "small", "prompt": "Once upon a time", "max_tokens": 16, "stream": True}
        body.update(extra)
        r, c = stream(sim.port, body, "/v1/completions")
        chunks = r["chunks"]
        expect(len(chunks) == 18, "%d chunks" % len(chunks))
        first = data_of(events(chunks[0][0])[0])
        expect(len(events(chunks[0][0])) == 1, "first /v1/completions chunk has one event")
        expect(shape(first) == shape(data_of(fx[0][0])), "token event key order")
        fin = events(chunks[16][0])
        expect(len(fin) == 1, "final chunk holds %d events" % len(fin))
        d = data_of(fin[0])
        expect(shape(d) == shape(data_of(fx[16][0])), "final event key order")
        expect(d["usage"]["prompt_tokens"] == 4 and d["usage"]["completion_tokens"] == 16, "usage %r" % d["usage"])
        expect(d["object"] == "text_completion" and d["id"].startswith("chatcmpl-"), "object/id")
        expect(chunks[17][0] == b"data: [DONE]\n\n" and r["terminated"] and c.eof, "end of stream")
        outs.append(shape(d))
    expect(outs[0] == outs[1], "include_usage changed the /v1/completions final event")

    r, raw, c = exchange(sim.port, request("POST", "/v1/completions",
                                           {"prompt": "Once upon a time", "max_tokens": 5}))
    c.close()
    d = json.loads(r["body"])
    expect(r["status"] == 200 and d["object"] == "text_completion", "non-stream /v1/completions")
    expect(d["usage"]["completion_tokens"] == 5 and d["choices"][0]["finish_reason"] == "length", "usage")


def check_native(sim):
    fx = fixture_events("completion-native-stream.http")
    r, c = stream(sim.port, {"prompt": "Once upon a time", "n_predict": 16, "stream": True}, "/completion")
    chunks = r["chunks"]
    expect(len(chunks) == 17, "%d chunks (16 tokens + final, no [DONE])" % len(chunks))
    for i, (p, _) in enumerate(chunks[:16]):
        d = data_of(events(p)[0])
        expect(shape(d) == shape(data_of(fx[i][0])), "token event key order")
        expect(d["tokens_predicted"] == i + 1 and d["tokens_evaluated"] == 4 and d["stop"] is False, "token %r" % d)
    fin = data_of(events(chunks[16][0])[0])
    expect(shape(fin) == shape(data_of(fx[16][0])), "final event key order")
    expect(fin["stop"] is True and fin["stop_type"] == "limit" and fin["tokens_predicted"] == 16, "final %r" % fin)
    expect(fin["prompt"] == "<s> Once upon a time", "prompt echo %r" % fin["prompt"])
    expect(b"[DONE]" not in c.buf and r["terminated"] and c.eof, "native end of stream")

    fxb = parse_http(fixture("completion-native-nonstream.http"))
    r, raw, c = exchange(sim.port, request("POST", "/completion",
                                           {"prompt": "Once upon a time", "n_predict": 16, "stream": False}))
    c.close()
    expect([h for h, _ in r["headers"]] == [h for h, _ in fxb["headers"]], "header names %r" % r["headers"])
    d = json.loads(r["body"], object_pairs_hook=OrderedPairs)
    expect(shape(d) == shape(json.loads(fxb["body"], object_pairs_hook=OrderedPairs)), "body key order")
    expect(d["tokens_predicted"] == 16 and d["content"], "native non-stream %r" % d["content"])


def check_chat_nonstream(sim):
    fx = parse_http(fixture("chat-nonstream.http"))
    c = Conn(sim.port)
    c.send(request("POST", "/v1/chat/completions", chat_body(16, False)))
    c.read_until(one_response)
    r = parse_http(c.buf)
    expect([h for h, _ in r["headers"]] == [h for h, _ in fx["headers"]], "header names %r" % r["headers"])
    expect([v for h, v in r["headers"] if h != "Content-Length"] ==
           [v for h, v in fx["headers"] if h != "Content-Length"], "header values")
    d = json.loads(r["body"], object_pairs_hook=OrderedPairs)
    expect(shape(d) == shape(json.loads(fx["body"], object_pairs_hook=OrderedPairs)), "body key order")
    expect(d["usage"]["completion_tokens"] == 16 and d["timings"]["predicted_n"] == 16, "usage/timings")
    expect(d["usage"]["prompt_tokens"] == (len("You are a helpful assistant.") +
                                           len("Write a short story about a lighthouse keeper.") + 3) // 4,
           "prompt tokens %d" % d["usage"]["prompt_tokens"])
    # keep-alive: the same connection serves the next request
    n = len(c.buf)
    c.send(request("GET", "/health"))
    c.read_until(lambda b: one_response(b[n:]))
    expect(parse_http(c.buf[n:])["status"] == 200, "second request on a kept-alive connection")
    c.close()


def check_errors(sim):
    def exact(name, method, path, body=None):
        r, raw, c = exchange(sim.port, request(method, path, body))
        c.close()
        want = fixture(name)
        expect(raw == want, "%s: got %r, want %r" % (name, raw[:400], want[:400]))

    check("error_404_unknown_route_exact", lambda: exact("error-unknown-route.http", "GET", "/v1/does-not-exist"))
    check("error_404_get_on_post_route_exact",
          lambda: exact("error-get-on-post-route.http", "GET", "/v1/chat/completions"))
    check("error_400_missing_messages_exact",
          lambda: exact("error-missing-messages.http", "POST", "/v1/chat/completions",
                        '{"model": "small", "max_tokens": 5}'))
    check("health_ok_exact", lambda: exact("health-ok.http", "GET", "/health"))

    def context():
        # 12112 bytes -> 3028 tokens against 2048: the fixture's exact answer
        body = {"model": "small", "max_tokens": 5, "stream": True,
                "messages": [{"role": "user", "content": "hello " * 2018 + "hell"}]}
        r, raw, c = exchange(sim.port, request("POST", "/v1/chat/completions", body))
        c.close()
        expect(raw == fixture("error-context-exceeded-stream.http"), "got %r" % raw)
    check("error_400_context_exceeded_exact", context)

    def invalid_json():
        for path, body, col, fx in (("/v1/chat/completions", '{"messages": [oops', 15, "error-invalid-json.http"),
                                    ("/completion", "not json", 2, "error-invalid-json-stream-completion.http")):
            r, raw, c = exchange(sim.port, request("POST", path, body))
            want = parse_http(fixture(fx))
            expect(r["status_line"] == want["status_line"], "status %r" % r["status_line"])
            expect([h for h, _ in r["headers"]] == [h for h, _ in want["headers"]], "headers %r" % r["headers"])
            e = json.loads(r["body"], object_pairs_hook=OrderedPairs)
            expect(shape(e) == shape(json.loads(want["body"], object_pairs_hook=OrderedPairs)), "key order")
            expect(e["error"]["type"] == "server_error" and e["error"]["code"] == 500, "error %r" % e)
            expect(e["error"]["message"].startswith(
                "[json.exception.parse_error.101] parse error at line 1, column %d:" % col), e["error"]["message"])
            # errors say Connection: close but the socket stays usable (as llama-server)
            n = len(c.buf)
            c.send(request("GET", "/health"))
            c.read_until(lambda b: one_response(b[n:]))
            expect(parse_http(c.buf[n:])["status"] == 200, "request after an error")
            c.close()
    check("error_500_malformed_json", invalid_json)


def check_endpoints(sim):
    def props():
        d = json.loads(get(sim.port, "/props")["body"], object_pairs_hook=OrderedPairs)
        fx = json.loads(parse_http(fixture("props.http"))["body"], object_pairs_hook=OrderedPairs)
        expect(shape(d) == shape(fx), "props key order")
        expect(d["total_slots"] == 3 and d["model_alias"] == "tiny-sim", "props %r" % d["total_slots"])
        expect(d["default_generation_settings"]["n_ctx"] == 4096, "n_ctx")
    check("props", props)

    def models():
        fx = json.loads(parse_http(fixture("v1-models.http"))["body"], object_pairs_hook=OrderedPairs)
        for path in ("/v1/models", "/models"):
            d = json.loads(get(sim.port, path)["body"], object_pairs_hook=OrderedPairs)
            expect(shape(d) == shape(fx), "%s key order" % path)
            expect(d["data"][0]["id"] == "tiny-sim" and d["models"][0]["name"] == "tiny-sim", "model name")
            expect(d["data"][0]["meta"]["n_ctx"] == 4096, "n_ctx")
    check("models", models)

    def slots_health():
        fx = json.loads(parse_http(fixture("slots-idle.http"))["body"], object_pairs_hook=OrderedPairs)
        d = json.loads(get(sim.port, "/slots")["body"], object_pairs_hook=OrderedPairs)
        expect(len(d) == 3 and shape(d[0]) == shape(fx[0]), "idle slots %r" % d)
        expect(get(sim.port, "/slots?fail_on_no_slot=1")["status"] == 200, "fail_on_no_slot with a free slot")
        expect(get(sim.port, "/v1/health")["body"] == b'{"status":"ok"}', "/v1/health")
    check("slots_idle_and_health_alias", slots_health)

    def metrics_format():
        fx = parse_http(fixture("metrics-idle-fresh.http"))
        r = get(sim.port, "/metrics")
        expect([h for h, _ in r["headers"]] == [h for h, _ in fx["headers"]], "headers %r" % r["headers"])
        expect(dict(r["headers"])["Content-Type"] == "text/plain; version=0.0.4", "content type")
        mine = [l for l in r["body"].decode().splitlines()]
        want = [l for l in fx["body"].decode().splitlines()]
        expect([l for l in mine if l.startswith("#")] == [l for l in want if l.startswith("#")], "HELP/TYPE lines")
        expect([l.split()[0] for l in mine if not l.startswith("#")] ==
               [l.split()[0] for l in want if not l.startswith("#")], "sample names")
    check("metrics_format", metrics_format)

    def http10():
        r, raw, c = exchange(sim.port, request("GET", "/health", version="1.0").replace(b"Host: 127.0.0.1\r\n", b""))
        c.read_to_eof(2)
        c.close()
        want = (b'HTTP/1.1 200 OK\r\nServer: llama.cpp\r\nAccess-Control-Allow-Origin: \r\nContent-Type: '
                b'application/json; charset=utf-8\r\nContent-Length: 15\r\nKeep-Alive: timeout=5, max=100\r\n\r\n'
                b'{"status":"ok"}')
        expect(raw == want and c.eof, "HTTP/1.0: %r eof=%s" % (raw, c.eof))
    check("http10_answered_then_closed", http10)

    def max100():
        c = Conn(sim.port)
        for i in range(100):
            n = len(c.buf)
            c.send(request("GET", "/health"))
            c.read_until(lambda b: one_response(b[n:]))
            h = dict(parse_http(c.buf[n:])["headers"])
            if i < 99:
                expect(h.get("Keep-Alive") == "timeout=5, max=100", "response %d headers %r" % (i + 1, h))
        expect(h.get("Connection") == "close" and "Keep-Alive" not in h, "100th response %r" % h)
        c.read_to_eof(2)
        expect(c.eof, "connection open after the 100th response")
        c.close()
    check("keepalive_100th_response_closes", max100)

    def pipelined():
        c = Conn(sim.port)
        c.send(request("GET", "/health") + request("POST", "/completion", {"prompt": "ab", "n_predict": 3}) +
               request("GET", "/v1/health") + request("GET", "/nope"))
        c.read_until(lambda b: b.count(b"HTTP/1.1 ") == 4 and b.endswith(b'"code":404}}'), 5)
        c.close()
        statuses = [int(x.split(b" ", 1)[0]) for x in c.buf.split(b"HTTP/1.1 ")[1:]]
        expect(statuses == [200, 200, 200, 404], "statuses %r" % statuses)
        expect(b'"tokens_predicted":3' in c.buf, "generation answered in order")
    check("pipelined_requests_across_generation", pipelined)

    def origin():
        r, raw, c = exchange(sim.port, request("GET", "/health", headers=["Origin: http://ui.example"]))
        c.close()
        expect(dict(r["headers"])["Access-Control-Allow-Origin"] == "http://ui.example", "origin echo")
    check("cors_origin_echo", origin)


def check_queueing(sim):
    """--slots 1: the second stream gets no byte until the first ends."""
    body = chat_body(20)
    a = Conn(sim.port)
    a.send(request("POST", "/v1/chat/completions", body))
    a.read_until(lambda b: b"\r\n\r\n" in b, 5)
    b = Conn(sim.port)
    b.send(request("POST", "/v1/chat/completions", body))
    time.sleep(0.1)
    m = metrics(sim.port)
    st = get_json(sim.port, "/sim/stats")
    slots = json.loads(get(sim.port, "/slots")["body"], object_pairs_hook=OrderedPairs)
    fx_busy = json.loads(parse_http(fixture("slots-busy.http"))["body"], object_pairs_hook=OrderedPairs)
    sel = selectors.DefaultSelector()
    sel.register(a.s, selectors.EVENT_READ, a)
    sel.register(b.s, selectors.EVENT_READ, b)
    deadline = time.monotonic() + 10
    while not (a.eof and b.eof) and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            conn = key.data
            conn.recv_once(1)
            if conn.eof:
                sel.unregister(conn.s)
    sel.close()
    a.close()
    b.close()
    expect(m.get("llamacpp:requests_processing") == 1.0, "requests_processing %r" % m.get("llamacpp:requests_processing"))
    expect(m.get("llamacpp:requests_deferred") == 1.0, "requests_deferred %r" % m.get("llamacpp:requests_deferred"))
    expect(st["in_queue"] == 1 and st["busy"] == 1, "/sim/stats %r" % st)
    expect(slots[0]["is_processing"] is True and shape(slots[0]) == shape(fx_busy[0]), "busy slot %r" % slots[0])
    ra, rb = parse_http(a.buf), parse_http(b.buf)
    expect(ra["terminated"] and rb["terminated"], "both streams complete")
    a_end = a.time_of(len(a.buf))
    b_first = b.recvs[0][0]
    expect(b_first >= a_end - 0.002, "B got bytes %.1f ms before A ended" % ((a_end - b_first) * 1000))
    m2 = metrics(sim.port)
    expect(m2["llamacpp:requests_deferred"] == 0 and m2["llamacpp:requests_processing"] == 0, "idle metrics")
    expect(m2["llamacpp:tokens_predicted_total"] >= 40, "tokens_predicted_total %r" % m2["llamacpp:tokens_predicted_total"])


def check_ttft(sim):
    """prefill 1000 tok/s, 400-byte prompt -> 100 tokens -> 100 ms to first token."""
    body = {"messages": [{"role": "user", "content": "z" * 400}], "stream": True, "max_tokens": 10,
            "stream_options": {"include_usage": True}}
    c = Conn(sim.port)
    c.send(request("POST", "/v1/chat/completions", body))
    c.read_until(lambda b: b"\r\n\r\n" in b, 5)
    t_head = c.time_of(c.buf.index(b"\r\n\r\n") + 4) - c.t_send
    c.read_until(lambda b: b"data: " in b, 5)
    t_first = c.time_of(c.buf.index(b"data: ") + 1) - c.t_send
    c.read_to_eof(5)
    c.close()
    r = parse_http(c.buf)
    t = data_of(events(r["chunks"][-2][0])[1])["timings"]
    expect(t_head < 0.05, "headers after %.1f ms (want at slot time)" % (t_head * 1000))
    expect(0.100 <= t_first < 0.250, "first event after %.1f ms, want 100..250" % (t_first * 1000))
    expect(t["prompt_n"] == 100 and 100 <= t["prompt_ms"] < 150, "timings %r" % t)
    expect(9 * 10 * 0.6 <= t["predicted_ms"] <= 9 * 10 * 1.6, "predicted_ms %r for 9 intervals of 10 ms" % t["predicted_ms"])


def check_cancel(sim):
    a = Conn(sim.port)
    a.send(request("POST", "/v1/chat/completions", chat_body(1000)))
    a.read_until(lambda b: b.count(b"data: ") >= 3, 5)
    b = Conn(sim.port)
    b.send(request("POST", "/v1/chat/completions", chat_body(1000)))
    time.sleep(0.1)
    st = get_json(sim.port, "/sim/stats")
    expect(st["in_queue"] == 1 and st["busy"] == 1, "before: %r" % st)
    b.close()  # the queued one leaves
    time.sleep(0.15)
    st = get_json(sim.port, "/sim/stats")
    expect(st["in_queue"] == 0 and st["busy"] == 1 and st["cancelled"] == 1, "after queued cancel: %r" % st)
    a.close()  # the running one leaves mid-stream
    time.sleep(0.15)
    st = get_json(sim.port, "/sim/stats")
    expect(st["busy"] == 0 and st["cancelled"] == 2 and st["completed"] == 0, "after stream cancel: %r" % st)
    # the slot is free at once: a new stream starts immediately
    c = Conn(sim.port)
    c.send(request("POST", "/v1/chat/completions", chat_body(2)))
    c.read_until(lambda b: b"\r\n\r\n" in b, 1)
    c.read_to_eof(5)
    c.close()
    expect(parse_http(c.buf)["terminated"], "stream after cancels")
    st = get_json(sim.port, "/sim/stats")
    expect(st["completed"] == 1 and st["requests"] == 3, "final stats %r" % st)
    expect(metrics(sim.port)["llamacpp:requests_processing"] == 0, "requests_processing after cancel")


def check_die(sim):
    r, c = stream(sim.port, chat_body(10))
    expect(r["status"] == 200, "status %d" % r["status"])
    expect(c.eof and not r["terminated"], "stream was terminated normally")
    n = content_events(r["chunks"])
    expect(n == 3, "%d content events before dying, want 3" % n)
    expect(b"finish_reason\":\"length" not in c.buf and b"[DONE]" not in c.buf, "final events after dying")
    # non-streamed: closed with no response at all
    c2 = Conn(sim.port)
    c2.send(request("POST", "/v1/chat/completions", chat_body(10, False)))
    c2.read_to_eof(5)
    c2.close()
    expect(c2.buf == b"", "non-stream got %r" % c2.buf[:80])
    st = get_json(sim.port, "/sim/stats")
    expect(st["died"] == 2 and st["completed"] == 0, "stats %r" % st)


def check_fail_status(sim):
    r, raw, c = exchange(sim.port, request("POST", "/v1/chat/completions", chat_body(4)))
    c.close()
    e = json.loads(r["body"], object_pairs_hook=OrderedPairs)
    expect(r["status"] == 503 and r["status_line"] == "HTTP/1.1 503 Service Unavailable", r["status_line"])
    expect(e.order == ["error"] and e["error"].order == ["code", "message", "type"], "body %r" % e)
    expect(e["error"]["code"] == 503 and e["error"]["type"] == "unavailable_error", "body %r" % e)
    expect(dict(r["headers"]).get("Connection") == "close", "error without Connection: close")
    expect(get(sim.port, "/health")["status"] == 200, "health under --fail-status")
    st = get_json(sim.port, "/sim/stats")
    expect(st["requests"] == 1 and st["completed"] == 0, "stats %r" % st)


def check_loading(sim):
    want = fixture("health-loading-503.http")
    for method, path, body in (("GET", "/health", None), ("GET", "/v1/models", None),
                               ("POST", "/v1/chat/completions", chat_body(4))):
        r, raw, c = exchange(sim.port, request(method, path, body))
        c.close()
        expect(raw == want, "%s during loading: %r" % (path, raw))
    expect(get_json(sim.port, "/sim/stats")["requests"] == 1, "the rejected completion request is not counted")
    deadline = time.monotonic() + 3
    while get(sim.port, "/health")["status"] != 200:
        expect(time.monotonic() < deadline, "still loading after 3 s")
        time.sleep(0.05)


def check_refuse(sim):
    refusal = "I'm sorry, but I can't help with that."
    r, c = stream(sim.port, chat_body(20))
    text = content_text(r["chunks"])
    expect(text.startswith(refusal), "stream text %r" % text[:60])
    first_events = content_events(r["chunks"][:6])
    expect(first_events >= 5, "refusal not split over tokens")
    rr, raw, c = exchange(sim.port, request("POST", "/v1/chat/completions", chat_body(20, False)))
    c.close()
    content = json.loads(rr["body"])["choices"][0]["message"]["content"]
    expect(content.startswith(refusal) and len(content) > len(refusal), "content %r" % content[:60])


def check_stall_ping(sim):
    r, c = stream(sim.port, chat_body(4))
    seq = []  # ("tok", t) / ("ping", t)
    for p, end in r["chunks"]:
        for ev in events(p):
            if ev == ":":
                expect(p == b":\n\n", "ping not in its own chunk: %r" % p)
                seq.append(("ping", c.time_of(end)))
            elif isinstance(data_of(ev), dict) and "content" in data_of(ev)["choices"][0].get("delta", {}) \
                    and data_of(ev)["choices"][0]["delta"]["content"] is not None:
                seq.append(("tok", c.time_of(end)))
    kinds = [k for k, _ in seq]
    expect(kinds[:2] == ["tok", "tok"] and kinds[-2:] == ["tok", "tok"], "order %r" % kinds)
    pings = kinds.count("ping")
    expect(2 <= pings <= 5, "%d pings during a 700 ms stall at 150 ms" % pings)
    gap = seq[-2][1] - seq[1][1]
    expect(gap >= 0.69, "stall of %.0f ms" % (gap * 1000))
    expect(r["terminated"], "stream completes after the stall")


def check_determinism():
    def run(seed):
        with Sim("--seed", seed, "--tokens-per-s", 1000, "--prefill-tokens-per-s", 100000) as s:
            r, raw, c = exchange(s.port, request("POST", "/v1/chat/completions", chat_body(30, False)))
            c.close()
            d = json.loads(r["body"])
            return d["choices"][0]["message"]["content"], d["id"]
    a, b, other = run(7), run(7), run(8)
    expect(a == b, "seed 7 twice: %r vs %r" % (a[0][:40], b[0][:40]))
    expect(a[0] != other[0], "seed 8 gave the same text")


def check_log_and_exit(sim):
    marker = "ZEBRA-PROMPT-MARKER"
    r, raw, c = exchange(sim.port, request("POST", "/v1/chat/completions",
                                           {"messages": [{"role": "user", "content": marker}], "max_tokens": 3}))
    c.close()
    out = json.loads(r["body"])["choices"][0]["message"]["content"]
    rc = sim.stop()
    log = sim.stderr().decode()
    expect(rc == 0, "exit status %r after SIGTERM" % rc)
    expect(marker not in log and out not in log, "prompt or output text in the log")
    expect("POST /v1/chat/completions 200 tokens=3 outcome=completed" in log, "no request line: %r" % log[-400:])


def check_jitter(sim):
    r, c = stream(sim.port, chat_body(30))
    times = [c.time_of(end) for _, end in r["chunks"][:30]]
    gaps = [(b - a) * 1000 for a, b in zip(times, times[1:])]
    expect(max(gaps) > 14 and min(gaps) < 6, "gaps %.1f..%.1f ms with jitter 0.9 at 10 ms" % (min(gaps), max(gaps)))


def check_idle_timeout(sim):
    c = Conn(sim.port)
    c.send(request("GET", "/health"))
    c.read_until(one_response)
    t0 = time.monotonic()
    c.read_to_eof(8)
    c.close()
    idle = time.monotonic() - t0
    expect(c.eof and 4.5 <= idle <= 6.0, "idle connection closed after %.2f s, want 5" % idle)


def check_sigterm_busy():
    """SIGTERM with one stream running and one queued: clean exit (and, in
    sanitizer builds, no leak report)."""
    with Sim("--slots", 1, "--tokens-per-s", 50) as s:
        a = Conn(s.port)
        a.send(request("POST", "/v1/chat/completions", chat_body(1000)))
        a.read_until(lambda b: b"data: " in b, 5)
        b = Conn(s.port)
        b.send(request("POST", "/completion", {"prompt": "x", "stream": False}))
        time.sleep(0.1)
        rc = s.stop()
        a.read_to_eof(5)
        b.read_to_eof(5)
        a.close()
        b.close()
        expect(rc == 0, "exit status %r" % rc)
        expect(not parse_http(a.buf)["terminated"] and b.buf == b"", "streams ended normally at shutdown")


def check_many_slots():
    """--slots beyond 1,024 (benchmarks hold thousands of slow streams): 1,100
    streams sent at once all run, none waits for a slot."""
    n = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4096:
        # this process and the simulator (which inherits it) hold n sockets each
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    with Sim("--slots", 2000, "--tokens-per-s", 1, "--prefill-tokens-per-s", 1e6) as s:
        expect(get_json(s.port, "/props")["total_slots"] == 2000, "/props total_slots")
        conns = []
        try:
            body = request("POST", "/v1/chat/completions", chat_body(5))
            for _ in range(n):
                c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
                c.sendall(body)
                conns.append(c)
            deadline = time.monotonic() + 10
            st = get_json(s.port, "/sim/stats")
            while st["busy"] < n and time.monotonic() < deadline:
                time.sleep(0.05)
                st = get_json(s.port, "/sim/stats")
            expect(st["busy"] == n and st["in_queue"] == 0,
                   "busy %d, queued %d of %d streams" % (st["busy"], st["in_queue"], n))
        finally:
            for c in conns:
                c.close()


def check_clean_exits():
    for args, rc, err in exits:
        expect(rc == 0, "pitot-sim %s exited with %r: %s" % (" ".join(args), rc, err[-300:]))
        expect("Sanitizer" not in err and "runtime error" not in err, "sanitizer report: %s" % err[-600:])


def main():
    if not os.path.exists(SIM):
        print("FAIL setup: %s not found (build it: make build/pitot-sim)" % SIM)
        return 1
    t0 = time.monotonic()
    fast = ("--tokens-per-s", 200, "--prefill-tokens-per-s", 20000)

    with Sim(*fast) as s:
        check_chat_stream(s)
        check("chat_stream_include_usage_prompt_tokens", lambda: check_include_usage(s))
        check("v1_completions_stream_and_nonstream", lambda: check_completions(s))
        check("native_completion_stream_and_nonstream", lambda: check_native(s))
        check("chat_nonstream_keepalive", lambda: check_chat_nonstream(s))
        check_errors(s)
    with Sim("--slots", 3, "--model", "tiny-sim", "--ctx", 4096, *fast) as s:
        check_endpoints(s)
    with Sim("--slots", 1, "--tokens-per-s", 100, "--prefill-tokens-per-s", 20000) as s:
        check("queueing_slots1_no_bytes_while_deferred", lambda: check_queueing(s))
    with Sim("--tokens-per-s", 100, "--prefill-tokens-per-s", 1000) as s:
        check("ttft_matches_prefill", lambda: check_ttft(s))
    with Sim("--slots", 1, "--tokens-per-s", 50, "--prefill-tokens-per-s", 20000) as s:
        check("client_cancel_in_sim_stats", lambda: check_cancel(s))
    with Sim("--die-after", 3, *fast) as s:
        check("die_after_closes_without_terminator", lambda: check_die(s))
    with Sim("--fail-status", 503, *fast) as s:
        check("fail_status", lambda: check_fail_status(s))
    with Sim("--loading-ms", 600, *fast) as s:
        check("loading_503_exact", lambda: check_loading(s))
    with Sim("--refuse", *fast) as s:
        check("refuse_prefix", lambda: check_refuse(s))
    with Sim("--stall-after", 2, "--stall-ms", 700, "--sse-ping-interval-ms", 150, *fast) as s:
        check("stall_after_with_pings", lambda: check_stall_ping(s))
    check("deterministic_seed", check_determinism)
    with Sim("--jitter", 0.9, "--tokens-per-s", 100, "--prefill-tokens-per-s", 20000) as s:
        check("jitter_spreads_intervals", lambda: check_jitter(s))
        check("keepalive_idle_timeout_5s", lambda: check_idle_timeout(s))
    with Sim(*fast) as s:
        check("log_lines_no_text_sigterm_exit", lambda: check_log_and_exit(s))
    check("sigterm_with_running_and_queued", check_sigterm_busy)
    check("slots_beyond_1024_1100_streams_at_once", check_many_slots)
    check("every_sim_exited_cleanly", check_clean_exits)

    print("# %d checks failed, %.1f s" % (len(failures), time.monotonic() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
