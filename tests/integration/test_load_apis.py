#!/usr/bin/env python3
"""pitot-load on the Responses API (/v1/responses) and the Messages API
(/v1/messages): the bodies and headers it sends, token counts taken from
each API's usage, the end-of-stream rule (the API's final event and the end
of the chunked body, no [DONE]), and its totals against pitot-sim's
/sim/stats and pitot's access log, straight to the sim and through pitot.
A sim that dies mid-stream must count as failed requests, not as ok ones.

Run from the repo root: PITOT_BUILD=build python3 tests/integration/test_load_apis.py"""

import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD, CANARY_KEY, HOST, RawBackend, ThreadedBackend,  # noqa: E402
                     access_log, check, finish, request, start_pitot, start_sim,
                     stop_pitot_clean, wait_for)

LOAD = os.path.join(BUILD, "pitot-load")
APIS = (("responses", "/v1/responses"), ("messages", "/v1/messages"))


def run_load(url, *args, timeout=60):
    """Runs pitot-load with --json; returns (exit status, stdout, stderr, [per-request dicts])."""
    fd, path = tempfile.mkstemp(prefix="pitot-load-", suffix=".jsonl")
    os.close(fd)
    try:
        p = subprocess.run([LOAD, "--url", url, "--json", path] + list(args),
                           capture_output=True, text=True, timeout=timeout)
        with open(path) as f:
            lines = [json.loads(l) for l in f if l.strip()]
    finally:
        os.unlink(path)
    return p.returncode, p.stdout, p.stderr, lines


def summary(out):
    """{"requests": n, "ok": n, "failed": n} from the summary's first line."""
    w = out.split()
    return {k: int(w[w.index(k + ":") + 1]) for k in ("requests", "ok", "failed")}


def sim_stats(sim):
    r = request(sim.port, "GET", "/sim/stats")
    assert r.status == 200, r.status
    return json.loads(r.body)


def pitot_ready(pitot):
    assert wait_for(lambda: request(pitot.port, "GET", "/readyz").status == 200), "not ready"


def assert_all_ok(lines, n, max_tokens, out):
    """n streamed requests, each complete, with TTFT, ITL and one event per token."""
    assert len(lines) == n, (len(lines), out)
    assert summary(out) == {"requests": n, "ok": n, "failed": 0}, out
    for l in lines:
        assert l["status"] == 200 and l["error"] is None and l["stream"] is True, l
        assert l["completion_tokens"] == max_tokens and l["events"] == max_tokens, l
        assert l["prompt_tokens"] and l["prompt_tokens"] > 0, l
        assert 0 < l["ttft_ms"] < l["e2e_ms"], l
        assert l["itl_p50_ms"] is not None and l["itl_p50_ms"] > 0, l
        assert l["finish_reason"] in ("stop", "length"), l


# ---- canned streams: exact usage, exact framing --------------------------

def chunked_sse(events):
    """A 200 text/event-stream response, chunked, one chunk per event,
    with the terminating chunk."""
    body = b""
    for name, data in events:
        ev = ("event: %s\ndata: %s\n\n" % (name, json.dumps(data))).encode()
        body += b"%x\r\n%s\r\n" % (len(ev), ev)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")


def responses_events(final=True, text=("a", "b", "c")):
    ev = [("response.created", {"type": "response.created",
                                "response": {"object": "response", "status": "in_progress"}})]
    ev += [("response.output_text.delta", {"type": "response.output_text.delta", "delta": t})
           for t in text]
    if final:
        ev.append(("response.completed", {"type": "response.completed", "response": {
            "object": "response", "status": "completed",
            "usage": {"input_tokens": 21, "output_tokens": len(text), "total_tokens": 21 + len(text),
                      "input_tokens_details": {"cached_tokens": 16}}}}))
    return ev


def messages_events(final=True, text=("a", "b", "c", "d")):
    ev = [("message_start", {"type": "message_start", "message": {
        "type": "message", "role": "assistant", "content": [], "stop_reason": None,
        "usage": {"input_tokens": 3, "cache_read_input_tokens": 40, "output_tokens": 0}}}),
          ("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}})]
    ev += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": t}}) for t in text]
    ev += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
           ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                              "usage": {"output_tokens": len(text)}})]
    if final:
        ev.append(("message_stop", {"type": "message_stop"}))
    return ev


class CutBackend(ThreadedBackend):
    """Reads one request, answers `data`, closes the connection."""

    def __init__(self, data):
        self.data = data
        ThreadedBackend.__init__(self)

    def serve(self, c, conn_id):
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, body = buf.split(b"\r\n\r\n", 1)
            n = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
            while len(body) < n:
                d = c.recv(65536)
                if not d:
                    return
                body += d
            c.sendall(self.data)
        finally:
            c.close()


def t_requests_sent():
    """Bodies and headers: Responses input/max_output_tokens and a Bearer key;
    Messages max_tokens/messages, anthropic-version and the key as x-api-key."""
    be = RawBackend(lambda head, body: chunked_sse(responses_events()))
    try:
        url = "http://%s:%d" % (HOST, be.port)
        rc, out, err, _ = run_load(url + "/v1/responses", "--max-tokens", "7", "--prompt-tokens",
                                   "5", "--model", "tiny", "--api-key", CANARY_KEY)
        assert rc == 0 and len(be.requests) == 1, (rc, out, err)
        head, body, _ = be.requests[0]
        j = json.loads(body)
        assert list(j) == ["model", "input", "stream", "max_output_tokens"], j
        assert j["model"] == "tiny" and j["stream"] is True and j["max_output_tokens"] == 7, j
        assert isinstance(j["input"], str) and len(j["input"]) == 20, j
        assert head.startswith("POST /v1/responses HTTP/1.1\r\n"), head
        assert "\r\nAuthorization: Bearer %s\r\n" % CANARY_KEY in head, head
        assert "x-api-key" not in head.lower() and "anthropic-version" not in head.lower(), head

        be.respond = lambda head, body: chunked_sse(messages_events())
        rc, out, err, _ = run_load(url + "/v1/messages", "--max-tokens", "9", "--prompt-tokens",
                                   "5", "--api-key", CANARY_KEY)
        assert rc == 0 and len(be.requests) == 2, (rc, out, err)
        head, body, _ = be.requests[1]
        j = json.loads(body)
        assert list(j) == ["model", "max_tokens", "stream", "messages"], j
        assert j["max_tokens"] == 9 and j["stream"] is True, j
        assert len(j["messages"]) == 1 and j["messages"][0]["role"] == "user", j
        assert len(j["messages"][0]["content"]) == 20, j
        assert head.startswith("POST /v1/messages HTTP/1.1\r\n"), head
        assert "\r\nanthropic-version: 2023-06-01\r\n" in head, head
        assert "\r\nx-api-key: %s\r\n" % CANARY_KEY in head, head
        assert "authorization" not in head.lower(), head
        assert CANARY_KEY not in out + err, "pitot-load printed the API key"

        # --header replaces the defaults
        rc, out, err, _ = run_load(url + "/v1/messages", "--api-key", "k1", "--header",
                                   "anthropic-version: 2099-01-01", "--header", "X-Api-Key: k2")
        head = be.requests[2][0]
        assert head.lower().count("anthropic-version") == 1 and "2099-01-01" in head, head
        assert head.lower().count("x-api-key") == 1 and "X-Api-Key: k2" in head, head
    finally:
        be.close()


def t_usage_and_end_rule():
    """Tokens from each API's usage (Messages: input_tokens +
    cache_read_input_tokens, then message_delta's output_tokens); a stream is
    ok when its last event is the API's final one and the chunked body ended;
    without that event it is incomplete, [DONE] or not."""
    cases = [("/v1/responses", responses_events, 21, 3), ("/v1/messages", messages_events, 43, 4)]
    for path, events, prompt, out_tokens in cases:
        be = RawBackend(lambda head, body, ev=events: chunked_sse(ev()))
        try:
            url = "http://%s:%d%s" % (HOST, be.port, path)
            rc, out, err, lines = run_load(url, "--requests", "2")
            assert rc == 0, (rc, err)
            assert summary(out) == {"requests": 2, "ok": 2, "failed": 0}, (path, out)
            for l in lines:
                assert l["error"] is None and l["events"] == out_tokens, (path, l)
                assert l["prompt_tokens"] == prompt, (path, l)
                assert l["completion_tokens"] == out_tokens, (path, l)
                assert l["ttft_ms"] is not None, l
            assert "tokens   prompt %d  completion %d" % (2 * prompt, 2 * out_tokens) in out, out

            # the body ends cleanly but the final event never came
            be.respond = lambda head, body, ev=events: chunked_sse(ev(final=False))
            rc, out, err, lines = run_load(url, "--requests", "2")
            assert rc == 0 and summary(out) == {"requests": 2, "ok": 0, "failed": 2}, (path, out)
            assert [l["error"] for l in lines] == ["incomplete", "incomplete"], lines

            # [DONE] instead of the final event is not the end of these APIs
            def done_instead(head, body, ev=events):
                r = chunked_sse(ev(final=False))
                d = b"data: [DONE]\n\n"
                return r[:-5] + b"%x\r\n%s\r\n0\r\n\r\n" % (len(d), d)
            be.respond = done_instead
            rc, out, err, lines = run_load(url)
            assert [l["error"] for l in lines] == ["incomplete"], lines

        finally:
            be.close()
        # the final event, then the connection closed before the last chunk
        cut = CutBackend(chunked_sse(events())[:-5])
        try:
            rc, out, err, lines = run_load("http://%s:%d%s" % (HOST, cut.port, path))
            assert [(l["error"], l["events"]) for l in lines] == [("incomplete", out_tokens)], lines
        finally:
            cut.close()


# ---- pitot-sim, straight and through pitot ------------------------------

N, C, MAX, PROMPT = 8, 4, 12, 24


def sim_fast(*extra):
    return start_sim("--slots", "4", "--tokens-per-s", "300", "--prefill-tokens-per-s", "5000",
                     *extra)


def t_sim_direct():
    """Straight to the sim: every request ok, client tokens == sim's tokens_sent."""
    for api, path in APIS:
        sim = sim_fast()
        rc, out, err, lines = run_load("http://%s:%d%s" % (HOST, sim.port, path), "--requests",
                                       str(N), "--concurrency", str(C), "--max-tokens", str(MAX),
                                       "--prompt-tokens", str(PROMPT))
        assert rc == 0, (api, rc, err)
        assert_all_ok(lines, N, MAX, out)
        st = sim_stats(sim)
        assert st["requests"] == N and st["completed"] == N and st["died"] == 0, st
        assert sum(l["completion_tokens"] for l in lines) == st["tokens_sent"] == N * MAX, (st, api)
        ptot = sum(l["prompt_tokens"] for l in lines)
        assert "tokens   prompt %d  completion %d" % (ptot, N * MAX) in out, out
        sim.stop()


def t_through_pitot():
    """Through pitot: client tokens == sim's tokens_sent == the access log's,
    request by request (matched by X-Request-Id), every line with its api."""
    for api, path in APIS:
        sim = sim_fast()
        pitot = start_pitot([sim.port])
        pitot_ready(pitot)
        rc, out, err, lines = run_load("http://%s:%d%s" % (HOST, pitot.port, path), "--requests",
                                       str(N), "--concurrency", str(C), "--max-tokens", str(MAX),
                                       "--prompt-tokens", str(PROMPT))
        assert rc == 0, (api, rc, err)
        assert_all_ok(lines, N, MAX, out)
        st = sim_stats(sim)
        assert st["completed"] == N and st["tokens_sent"] == N * MAX, st
        log = [l for l in access_log(pitot, N) if l.get("path") == path]
        assert len(log) == N, log
        by_id = {l["id"]: l for l in log}
        for l in lines:
            a = by_id.get(l["id"])
            assert a is not None, (l["id"], sorted(by_id))
            assert a["api"] == api and a["status"] == 200, a
            assert a["completion_tokens"] == l["completion_tokens"], (a, l)
            assert a["prompt_tokens"] == l["prompt_tokens"], (a, l)
            assert a["tokens_estimated"] is False, a
        assert sum(a["completion_tokens"] for a in log) == st["tokens_sent"], (log, st)
        stop_pitot_clean(pitot)
        sim.stop()


def t_die_after():
    """A sim that closes the connection after 3 tokens: every request failed
    (cut), none ok, straight and through pitot."""
    for api, path in APIS:
        sim = sim_fast("--die-after", "3")
        pitot = start_pitot([sim.port])
        pitot_ready(pitot)
        for port in (sim.port, pitot.port):
            rc, out, err, lines = run_load("http://%s:%d%s" % (HOST, port, path), "--requests",
                                           "4", "--concurrency", "2", "--max-tokens", "10",
                                           "--timeout", "10")
            assert rc == 0, (rc, err)
            assert summary(out) == {"requests": 4, "ok": 0, "failed": 4}, (api, port, out)
            assert len(lines) == 4, lines
            for l in lines:
                assert l["error"] in ("incomplete", "upstream_error_event"), (api, port, l)
                assert l["events"] == 3, l  # TTFT was measured; the cut came after
            # failed requests add no tokens to the run's totals
            assert "tokens   prompt 0  completion 0" in out, out
        st = sim_stats(sim)
        assert st["died"] == 8 and st["completed"] == 0, st
        stop_pitot_clean(pitot)
        sim.stop()


def main():
    check("load_apis_requests_sent", t_requests_sent)
    check("load_apis_usage_and_end_rule", t_usage_and_end_rule)
    check("load_apis_sim_direct", t_sim_direct)
    check("load_apis_through_pitot", t_through_pitot)
    check("load_apis_die_after_counts_failures", t_die_after)
    finish()


if __name__ == "__main__":
    main()
