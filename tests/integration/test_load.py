#!/usr/bin/env python3
"""Integration test for pitot-load against tiny Python HTTP/1.1 servers on free
loopback ports: streams with known delays, keep-alive, errors, open loop.

Run from the repo root; the binary is $PITOT_BUILD/pitot-load (default build/).
Prints PASS/FAIL per check and exits non-zero if any failed."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.environ.get("PITOT_BUILD", "build")
LOAD = os.path.join(BUILD, "pitot-load")
FAILED = []


def check(name, cond, reason=""):
    if cond:
        print("PASS %s" % name)
    else:
        print("FAIL %s: %s" % (name, reason))
        FAILED.append(name)
    return cond


class Server:
    """A threaded raw-socket HTTP/1.1 server. handler(srv, conn, req) writes the
    response and returns True to keep the connection for another request. It
    must send the response's last bytes with srv.send_last() so the count of
    requests in progress drops before the client can see the end."""

    def __init__(self, handler):
        self.handler = handler
        self.lock = threading.Lock()
        self.requests = []
        self.connections = 0
        self.active = 0
        self.max_active = 0
        self.stopping = False
        self.threads = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.stopping = True
        for t in self.threads:
            t.join(timeout=3)
        self.sock.close()

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                cid = self.connections
            t = threading.Thread(target=self._serve, args=(c, cid), daemon=True)
            t.start()
            self.threads.append(t)

    def _read_request(self, c, buf):
        while b"\r\n\r\n" not in buf:
            data = c.recv(65536)
            if not data:
                return None, buf
            buf += data
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        n = int(headers.get("content-length", "0"))
        while len(buf) < n:
            data = c.recv(65536)
            if not data:
                return None, buf
            buf += data
        body, buf = buf[:n], buf[n:]
        return {"method": method, "target": target, "headers": headers, "body": body}, buf

    def _serve(self, c, cid):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.settimeout(5)
        buf = b""
        try:
            while not self.stopping:
                req, buf = self._read_request(c, buf)
                if req is None:
                    return
                req["conn"] = cid
                try:
                    req["json"] = json.loads(req["body"])
                except ValueError:
                    req["json"] = None
                with self.lock:
                    self.requests.append(req)
                    self.active += 1
                    self.max_active = max(self.max_active, self.active)
                req["_open"] = True
                try:
                    keep = self.handler(self, c, req)
                finally:
                    self._end(req)
                if not keep:
                    return
        except OSError:
            pass
        finally:
            c.close()

    def _end(self, req):
        with self.lock:
            if req.pop("_open", False):
                self.active -= 1

    def send_last(self, c, req, data):
        self._end(req)
        c.sendall(data)


def chunk(data):
    if isinstance(data, str):
        data = data.encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


def event(obj):
    return "data: %s\n\n" % (obj if isinstance(obj, str) else json.dumps(obj))


def prompt_len(req):
    j = req["json"] or {}
    if "messages" in j:
        return len(j["messages"][0]["content"])
    return len(j.get("prompt", ""))


def sse_handler(first_delay=0.2, gap=0.05, n=5, done=True, close_after=None,
                error_event=False, native=False, keep=True):
    """First content event after first_delay, then n-1 more gap apart, a
    finish chunk (split across two chunks), usage, [DONE], chunked."""

    def handler(srv, c, req):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n" +
                  (b"" if keep else b"Connection: close\r\n") + b"\r\n")
        time.sleep(first_delay)
        for i in range(n):
            if i:
                time.sleep(gap)
            if close_after is not None and i == close_after:
                srv._end(req)
                return False  # cut mid-stream: no terminating chunk
            if native:
                c.sendall(chunk(event({"content": "t%d " % i, "stop": False})))
            else:
                c.sendall(chunk(event({"id": "x", "object": "chat.completion.chunk",
                                       "choices": [{"index": 0, "delta": {"content": "t%d " % i},
                                                    "finish_reason": None}]})))
        if error_event:
            c.sendall(chunk(event({"error": {"message": "boom", "type": "server_error"}})))
        ptok = prompt_len(req) // 4
        if native:
            fin = event({"content": "", "stop": True, "stop_type": "limit",
                         "timings": {"prompt_n": ptok, "predicted_n": n}})
        else:
            fin = event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        c.sendall(chunk(fin[:7]))  # an event split across two chunks and reads
        time.sleep(0.01)
        c.sendall(chunk(fin[7:]))
        tail = b""
        if not native:
            tail += chunk(event({"choices": [], "usage": {"prompt_tokens": ptok,
                                                         "completion_tokens": n,
                                                         "total_tokens": ptok + n}}))
            if done:
                tail += chunk(event("[DONE]"))
        srv.send_last(c, req, tail + b"0\r\n\r\n")
        return keep

    return handler


def json_handler(delay=0.02, status=200):
    def handler(srv, c, req):
        time.sleep(delay)
        if status == 200:
            body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                                    "content": "hello"},
                                            "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": prompt_len(req) // 4,
                                         "completion_tokens": 7, "total_tokens": 0}})
        else:
            body = json.dumps({"error": {"message": "overloaded", "type": "unavailable"}})
        head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
            status, "OK" if status == 200 else "Service Unavailable", len(body))
        srv.send_last(c, req, head.encode() + body.encode())
        return True

    return handler


def stall_handler(srv, c, req):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    srv._end(req)
    for _ in range(20):  # up to 2 s, but stop early when the test ends
        if srv.stopping:
            break
        time.sleep(0.1)
    return False


def run_load(args, timeout=20):
    """Runs pitot-load with --json; returns (proc, stdout, stderr, lines)."""
    fd, path = tempfile.mkstemp(prefix="pitot-load-", suffix=".jsonl")
    os.close(fd)
    try:
        p = subprocess.Popen([LOAD] + args + ["--json", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=timeout)
        with open(path) as f:
            lines = [json.loads(line, object_pairs_hook=list) for line in f if line.strip()]
    finally:
        os.unlink(path)
    return p, out, err, lines


FIELDS = ["id", "status", "stream", "ttft_ms", "e2e_ms", "itl_p50_ms", "itl_max_ms", "events",
          "prompt_tokens", "completion_tokens", "finish_reason", "error"]


def as_dict(pairs):
    return dict(pairs)


def in_range(v, lo, hi):
    return isinstance(v, (int, float)) and lo <= v <= hi


def test_stream():
    with Server(sse_handler()) as srv:
        p, out, err, lines = run_load(["--url", srv.url, "--prompt-tokens", "8", "--max-tokens", "5",
                                       "--include-usage", "--header", "Authorization: Bearer k1"])
    check("stream exit 0", p.returncode == 0, "rc=%d %s" % (p.returncode, err))
    if not check("stream one json line", len(lines) == 1, repr(lines)):
        return
    check("stream json field order", [k for k, _ in lines[0]] == FIELDS, repr(lines[0]))
    r = as_dict(lines[0])
    rid = "load-%d-1" % p.pid
    check("stream id", r["id"] == rid, "%r != %r" % (r["id"], rid))
    check("stream status/error", r["status"] == 200 and r["error"] is None and r["stream"] is True,
          repr(r))
    check("stream events", r["events"] == 5, repr(r["events"]))
    check("stream tokens", r["prompt_tokens"] == 8 and r["completion_tokens"] == 5, repr(r))
    check("stream finish_reason", r["finish_reason"] == "length", repr(r["finish_reason"]))
    check("stream ttft 200..260 ms", in_range(r["ttft_ms"], 200, 260), repr(r["ttft_ms"]))
    check("stream itl_max 50..90 ms", in_range(r["itl_max_ms"], 50, 90), repr(r["itl_max_ms"]))
    check("stream itl_p50 45..90 ms", in_range(r["itl_p50_ms"], 45, 90), repr(r["itl_p50_ms"]))
    check("stream e2e >= ttft + 4 gaps", in_range(r["e2e_ms"], r["ttft_ms"] + 195, 1000),
          repr(r))
    if not check("stream server saw 1 request", len(srv.requests) == 1, repr(len(srv.requests))):
        return
    req = srv.requests[0]
    h, j = req["headers"], req["json"] or {}
    check("stream x-request-id", h.get("x-request-id") == rid, repr(h.get("x-request-id")))
    check("stream extra header", h.get("authorization") == "Bearer k1", repr(h))
    check("stream target", req["method"] == "POST" and req["target"] == "/v1/chat/completions",
          repr(req["target"]))
    content = j.get("messages", [{}])[0].get("content", "")
    check("stream prompt filler 4*P ASCII", len(content) == 32 and content.isascii(), repr(content))
    check("stream body fields", j.get("model") == "small" and j.get("max_tokens") == 5 and
          j.get("stream") is True and j.get("stream_options") == {"include_usage": True}, repr(j))
    check("stream summary", out.startswith("requests: 1 ok: 1 failed: 0") and "ttft_ms  p50" in out
          and "tokens   prompt 8  completion 5" in out, out)


def test_keepalive_nostream():
    with Server(json_handler()) as srv:
        p, out, err, lines = run_load(["--url", srv.url, "--no-stream", "--requests", "3",
                                       "--prompt-tokens", "5"])
    check("nostream exit 0", p.returncode == 0, err)
    recs = [as_dict(x) for x in lines]
    check("nostream 3 lines ok", len(recs) == 3 and all(
        r["status"] == 200 and r["error"] is None and r["stream"] is False for r in recs), repr(recs))
    check("nostream ttft/events null, e2e set", all(
        r["ttft_ms"] is None and r["events"] is None and r["itl_max_ms"] is None and
        in_range(r["e2e_ms"], 15, 1000) for r in recs), repr(recs))
    check("nostream tokens/finish", all(
        r["prompt_tokens"] == 5 and r["completion_tokens"] == 7 and r["finish_reason"] == "stop"
        for r in recs), repr(recs))
    check("nostream keep-alive reuse (1 connection)",
          srv.connections == 1 and len(srv.requests) == 3, "connections=%d requests=%d" % (
              srv.connections, len(srv.requests)))
    ids = [r["headers"].get("x-request-id") for r in srv.requests]
    check("nostream request ids", ids == ["load-%d-%d" % (p.pid, i) for i in (1, 2, 3)], repr(ids))
    check("nostream body stream false",
          all((r["json"] or {}).get("stream") is False and "stream_options" not in (r["json"] or {})
              for r in srv.requests), repr([r["json"] for r in srv.requests]))


def summary_dist(out, name):
    """{"p50": .., "p95": .., "p99": .., "max": ..} from a summary line."""
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == name and len(f) == 9:
            return {f[i]: float(f[i + 1]) for i in range(1, 9, 2)}
    return None


def nearest_rank(values, pct):
    v = sorted(values)
    rank = max(1, min(len(v), -(-len(v) * pct // 100)))
    return v[int(rank) - 1]


def test_concurrency():
    with Server(sse_handler(first_delay=0.1, gap=0.02, n=3)) as srv:
        p, out, err, lines = run_load(["--url", srv.url, "--concurrency", "3", "--requests", "9"])
    recs = [as_dict(x) for x in lines]
    check("concurrency all ok", p.returncode == 0 and len(recs) == 9 and
          all(r["error"] is None for r in recs), err + repr(recs))
    check("concurrency server max in flight == 3", srv.max_active == 3, repr(srv.max_active))
    check("concurrency streams reuse 3 connections", srv.connections == 3, repr(srv.connections))
    ids = sorted(int(r["id"].rsplit("-", 1)[1]) for r in recs)
    check("concurrency ids 1..9", ids == list(range(1, 10)), repr(ids))
    for name, key in (("ttft_ms", "ttft_ms"), ("e2e_ms", "e2e_ms")):
        d = summary_dist(out, name)
        vals = [r[key] for r in recs if r[key] is not None]
        want = {"p50": nearest_rank(vals, 50), "p95": nearest_rank(vals, 95),
                "p99": nearest_rank(vals, 99), "max": max(vals)} if vals else None
        check("concurrency summary %s matches per-request lines" % name,
              d is not None and want is not None and
              all(abs(d[k] - want[k]) <= 0.051 for k in want) and
              d["p50"] <= d["p95"] <= d["p99"] <= d["max"], "%r vs %r" % (d, want))


def test_open_loop():
    with Server(json_handler(delay=0.05)) as srv:
        p, out, err, lines = run_load(["--url", srv.url, "--no-stream", "--rate", "200",
                                       "--requests", "10", "--concurrency", "2", "--seed", "7"])
    late = None
    for tok in out.split("  "):
        if tok.startswith("late: "):
            late = int(tok.split()[1])
    check("rate all 10 ok", p.returncode == 0 and len(lines) == 10 and
          all(as_dict(r)["error"] is None for r in lines), err + out)
    check("rate at most C in flight", srv.max_active <= 2, repr(srv.max_active))
    check("rate late arrivals counted", late is not None and late > 0, out)


def test_duration():
    with Server(json_handler(delay=0.05)) as srv:
        t0 = time.monotonic()
        p, out, err, lines = run_load(["--url", srv.url, "--no-stream", "--duration", "0.5",
                                       "--concurrency", "2"])
        took = time.monotonic() - t0
    check("duration runs ~0.5 s", p.returncode == 0 and 0.45 <= took < 2.0 and len(lines) >= 4,
          "took=%.2f lines=%d" % (took, len(lines)))


def test_errors():
    cases = [
        ("close mid-stream", sse_handler(first_delay=0.02, gap=0.01, close_after=2), "incomplete", 200),
        ("no [DONE]", sse_handler(first_delay=0.02, gap=0.01, done=False), "incomplete", 200),
        ("error event", sse_handler(first_delay=0.02, gap=0.01, n=1, error_event=True),
         "upstream_error_event", 200),
        ("status 503", json_handler(status=503), "http_status", 503),
    ]
    for name, handler, want, status in cases:
        with Server(handler) as srv:
            p, out, err, lines = run_load(["--url", srv.url])
        r = as_dict(lines[0]) if len(lines) == 1 else {}
        check("error %s -> %s" % (name, want), p.returncode == 0 and r.get("error") == want and
              r.get("status") == status, "rc=%d %r %s" % (p.returncode, r, err))
        if name == "close mid-stream":
            check("error close mid-stream events 2", r.get("events") == 2, repr(r))
        if name == "status 503":
            check("error summary names status", "failed: 1 (status 503: 1)" in out, out)

    with Server(stall_handler) as srv:
        t0 = time.monotonic()
        p, out, err, lines = run_load(["--url", srv.url, "--timeout", "0.3"])
        took = time.monotonic() - t0
    r = as_dict(lines[0]) if len(lines) == 1 else {}
    check("error timeout", p.returncode == 0 and r.get("error") == "timeout" and took < 1.5,
          "%r took %.2f" % (r, took))

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    p, out, err, lines = run_load(["--url", "http://127.0.0.1:%d" % port, "--requests", "2"])
    recs = [as_dict(x) for x in lines]
    check("error refused -> connect", p.returncode == 0 and len(recs) == 2 and all(
        r["error"] == "connect" and r["status"] is None and r["e2e_ms"] is None for r in recs),
        repr(recs) + err)
    check("error refused summary", "failed: 2 (connect: 2)" in out, out)


def test_routes():
    with Server(sse_handler(first_delay=0.01, gap=0.01, n=2)) as srv:
        p, out, err, lines = run_load(["--url", srv.url + "/v1/completions", "--prompt-tokens", "3",
                                       "--max-tokens", "9"])
        j = srv.requests[0]["json"] if srv.requests else {}
    check("route /v1/completions body", j.get("prompt") is not None and len(j["prompt"]) == 12 and
          j.get("max_tokens") == 9 and "messages" not in j, repr(j))
    check("route /v1/completions ok", len(lines) == 1 and as_dict(lines[0])["error"] is None,
          repr(lines))

    with Server(sse_handler(first_delay=0.01, gap=0.01, n=3, native=True)) as srv:
        p, out, err, lines = run_load(["--url", srv.url + "/completion", "--prompt-tokens", "4",
                                       "--max-tokens", "3"])
        j = srv.requests[0]["json"] if srv.requests else {}
    check("route /completion body", len(j.get("prompt", "")) == 16 and j.get("n_predict") == 3 and
          "max_tokens" not in j, repr(j))
    r = as_dict(lines[0]) if len(lines) == 1 else {}
    check("route /completion ok without [DONE]", r.get("error") is None and r.get("events") == 3 and
          r.get("finish_reason") == "length" and r.get("prompt_tokens") == 4 and
          r.get("completion_tokens") == 3, repr(r))


def test_several_urls():
    """--url twice: slot i sends to the (i mod 2)th server, with its Host.
    Six slots for six requests: each slot sends one (with fewer slots, a slot
    that finishes first takes the next request, and the split follows speed)."""
    with Server(json_handler(delay=0)) as a, Server(json_handler(delay=0)) as b:
        p, out, err, lines = run_load(["--url", a.url, "--url", b.url, "--no-stream",
                                       "--concurrency", "6", "--requests", "6"])
    check("urls exit 0, 6 ok", p.returncode == 0 and len(lines) == 6 and all(
        as_dict(x)["status"] == 200 for x in lines), "rc=%d %s %r" % (p.returncode, err, lines))
    check("urls each server got 3", len(a.requests) == 3 and len(b.requests) == 3,
          "a=%d b=%d" % (len(a.requests), len(b.requests)))
    check("urls Host per server",
          all(r["headers"].get("host") == a.url[7:] for r in a.requests) and
          all(r["headers"].get("host") == b.url[7:] for r in b.requests),
          repr([r["headers"].get("host") for r in a.requests + b.requests]))
    ids = sorted(r["headers"].get("x-request-id") for r in a.requests + b.requests)
    check("urls request ids 1..6 once each",
          ids == sorted("load-%d-%d" % (p.pid, i) for i in range(1, 7)), repr(ids))


def test_usage_and_quiet():
    bad = [
        ["--url", "http://127.0.0.1:1", "--concurrency", "0"],
        ["--url", "http://127.0.0.1:1", "--bogus"],
        ["--requests", "3"],
        ["--url", "http://127.0.0.1:1", "--requests", "2", "--duration", "1"],
        ["--url", "ftp://127.0.0.1:1"],
        ["--url", "http://127.0.0.1:1", "--cacert", "/etc/ssl/ca.pem"],
        ["--url", "http://127.0.0.1:1", "--header", "NoColon"],
        ["--url", "http://127.0.0.1:1", "--rate", "-1"],
        ["--url", "http://127.0.0.1:1", "--header", "X-Request-Id: mine"],
        ["--url", "http://127.0.0.1:1/v1/completions", "--url", "http://127.0.0.1:2/completion"],
        ["--url", "http://127.0.0.1:1", "--url", "https://127.0.0.1:2"],
        ["--url", "https://127.0.0.1:1", "--url", "https://127.0.0.1:3"],
    ]
    for args in bad:
        p = subprocess.run([LOAD] + args, capture_output=True, text=True, timeout=10)
        check("usage %s -> exit 2" % " ".join(args[-2:]),
              p.returncode == 2 and "pitot-load:" in p.stderr and p.stdout == "",
              "rc=%d err=%r" % (p.returncode, p.stderr))
    with Server(json_handler(delay=0)) as srv:
        p = subprocess.run([LOAD, "--url", srv.url, "--no-stream", "--quiet"], capture_output=True,
                           text=True, timeout=10)
    out = p.stdout.splitlines()
    check("quiet prints one line", p.returncode == 0 and len(out) == 1 and
          out[0].startswith("tokens   prompt 32  completion 7"), repr(p.stdout))


def main():
    if not os.access(LOAD, os.X_OK):
        print("FAIL setup: %s not built" % LOAD)
        return 1
    for t in (test_stream, test_keepalive_nostream, test_concurrency, test_open_loop,
              test_duration, test_errors, test_routes, test_several_urls, test_usage_and_quiet):
        try:
            t()
        except Exception as e:  # a crash in one scenario must not hide the others
            check(t.__name__, False, "%s: %s" % (type(e).__name__, e))
    print("%d check(s) failed" % len(FAILED) if FAILED else "all checks passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
