"""Rate limits per tier and per key (issue 12), in one pitot's memory: a key
over its requests, tokens or concurrency limit gets 429 before any backend
is touched, with OpenAI's x-ratelimit-* headers, Retry-After and body (the
Messages API: Anthropic's shape and anthropic-ratelimit-* headers);
requests under a limit carry the same headers; a client that waits what
Retry-After says is served again; pitot_rate_limited_total and the access
log say which limit refused. Real pitot, pitot-sim, raw clients."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (Reader, access_log, build_request, canary_headers, chat_body,  # noqa: E402
                     check, connect, finish, metric_value, metrics, request, start_pitot,
                     start_sim, stop_pitot_clean, wait_for)

CONF = """tiers:
  - name: default
  - name: gold
    limits: {tokens_per_minute: 400}
    keys:
      - {key: sk-rpm-0c1d, name: ci, limits: {requests_per_minute: 3}}
      - {key: sk-tok-77aa, name: batch}
      - {key: sk-one-5e5e, name: solo, limits: {max_concurrent: 1}}
"""


def open_stream_raw(port, body, headers):
    s = connect(port)
    s.sendall(build_request("POST", "/v1/chat/completions", body, canary_headers(headers), port))
    return s, Reader(s)


def bearer(key):
    return [("Authorization", "Bearer " + key)]


def sim_requests(sim):
    return json.loads(request(sim.port, "GET", "/sim/stats").body)["requests"]


def t_requests_per_minute():
    sim = start_sim("--model", "small", "--tokens-per-s", "1000")
    p = start_pitot([sim.port], config=CONF)
    seen = []
    for i in range(3):
        r = request(p.port, "POST", "/v1/chat/completions",
                    chat_body(max_tokens=2, stream=False), headers=bearer("sk-rpm-0c1d"))
        assert r.status == 200, r.status
        assert r.header("x-ratelimit-limit-requests") == "3", r.headers
        seen.append(int(r.header("x-ratelimit-remaining-requests")))
        # the key has no token limit of its own: the headers are the key's
        assert r.header("x-ratelimit-limit-tokens") is None, r.headers
    assert seen == [2, 1, 0], seen
    n = sim_requests(sim)
    r = request(p.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, stream=False),
                headers=bearer("sk-rpm-0c1d"))
    assert r.status == 429, r.status
    body = json.loads(r.body)
    assert body["error"]["type"] == "requests" and \
        body["error"]["code"] == "rate_limit_exceeded", body
    retry = int(r.header("retry-after"))
    assert 1 <= retry <= 20, retry  # a third of a minute at most: one request refills
    assert r.header("x-ratelimit-remaining-requests") == "0", r.headers
    reset = r.header("x-ratelimit-reset-requests")
    assert reset.endswith("s"), reset
    assert r.header("x-request-id"), r.headers
    assert sim_requests(sim) == n, "a refused request reached the backend"
    # the tier's other keys are not this key's limit
    r = request(p.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, stream=False),
                headers=bearer("sk-tok-77aa"))
    assert r.status == 200, r.status
    m = metrics(p.port)
    assert metric_value(m, "pitot_rate_limited_total", tier="gold", key="ci",
                        limit="requests") == 1, m
    log = access_log(p, 5)
    refused = [l for l in log if l["status"] == 429]
    assert len(refused) == 1 and refused[0]["error"] == "rate_limited_requests" and \
        refused[0]["tier"] == "gold" and refused[0]["key"] == "ci" and \
        refused[0]["backend"] is None, refused
    # Retry-After is honest: waiting it out (as the OpenAI SDK's retry does)
    # is served again
    time.sleep(retry)
    r = request(p.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, stream=False),
                headers=bearer("sk-rpm-0c1d"))
    assert r.status == 200, (r.status, r.headers)
    stop_pitot_clean(p)


def t_tokens_per_minute():
    sim = start_sim("--model", "small", "--tokens-per-s", "2000")
    p = start_pitot([sim.port], config=CONF)
    # the tier's 400 tokens a minute, shared by its keys: each request
    # reserves its prompt estimate + max_tokens and is charged its usage
    statuses = []
    for i in range(12):
        r = request(p.port, "POST", "/v1/chat/completions",
                    chat_body(max_tokens=60, stream=False, content="count to ten"),
                    headers=bearer("sk-tok-77aa" if i % 2 else "sk-one-5e5e"))
        statuses.append(r.status)
        if r.status == 200:
            assert r.header("x-ratelimit-limit-tokens") in ("400", None), r.headers
        if r.status == 429:
            body = json.loads(r.body)
            assert body["error"]["type"] == "tokens", body
            assert r.header("x-ratelimit-limit-tokens") == "400", r.headers
            break
    assert statuses[-1] == 429 and statuses.count(200) >= 4, statuses
    served = sum(l["prompt_tokens"] + l["completion_tokens"]
                 for l in access_log(p) if l["status"] == 200)
    assert served <= 400 + 60, served  # never more than the budget (and its refill)
    m = metrics(p.port)
    assert metric_value(m, "pitot_rate_limited_total", tier="gold", key="",
                        limit="tokens") == 1, m
    stop_pitot_clean(p)


def t_concurrent_and_messages():
    sim = start_sim("--model", "small", "--tokens-per-s", "20")
    p = start_pitot([sim.port], config=CONF)
    s, rd = open_stream_raw(p.port, chat_body(max_tokens=20), headers=bearer("sk-one-5e5e"))
    head = rd.read(max_events=1)
    assert head.status == 200, head.status
    # the Messages API, refused in Anthropic's words
    body = {"model": "small", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    r = request(p.port, "POST", "/v1/messages", body, headers=bearer("sk-one-5e5e"))
    assert r.status == 429, r.status
    err = json.loads(r.body)
    assert err["type"] == "error" and err["error"]["type"] == "rate_limit_error", err
    assert r.header("retry-after") == "1", r.headers
    s.close()
    # once the stream has ended, the key may send again
    assert wait_for(lambda: request(p.port, "POST", "/v1/messages", body,
                                    headers=bearer("sk-one-5e5e")).status == 200, 10.0)
    m = metrics(p.port)
    assert metric_value(m, "pitot_rate_limited_total", tier="gold", key="solo",
                        limit="concurrent") >= 1, m
    # Anthropic's headers on the Messages API, OpenAI's elsewhere
    r = request(p.port, "POST", "/v1/messages", body, headers=bearer("sk-tok-77aa"))
    assert r.status == 200, r.status
    assert r.header("anthropic-ratelimit-tokens-limit") == "400", r.headers
    assert r.header("anthropic-ratelimit-tokens-reset").endswith("Z"), r.headers
    assert r.header("x-ratelimit-limit-tokens") is None, r.headers
    stop_pitot_clean(p)


def t_no_limits_no_headers():
    sim = start_sim("--model", "small", "--tokens-per-s", "1000")
    p = start_pitot([sim.port])
    r = request(p.port, "POST", "/v1/chat/completions", chat_body(max_tokens=2, stream=False))
    assert r.status == 200, r.status
    assert not any(k.lower().startswith("x-ratelimit-") for k, _ in r.headers), r.headers
    assert "pitot_rate_limited_total{" not in metrics(p.port)
    stop_pitot_clean(p)


check("a key over its requests per minute: 429 with OpenAI's body and headers, nothing "
      "reaches the backend, counted and logged; served again after Retry-After",
      t_requests_per_minute)
check("a tier's tokens per minute, shared by its keys, charged with the real usage: 429 "
      "type tokens, never more than the budget", t_tokens_per_minute)
check("max_concurrent; the Messages API's 429 and headers in Anthropic's shape",
      t_concurrent_and_messages)
check("without limits: no x-ratelimit-* headers, no series", t_no_limits_no_headers)
finish()
