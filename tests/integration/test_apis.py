"""pitot as a drop-in front door: any model name when every backend serves
one and the same model (routing.unknown_model), GET /v1/models as the union
of the healthy backends' models, the Responses and Messages APIs measured
streamed and not (tokens equal to the backend's usage, TTFT and E2E, the api
label and access-log field), a cut stream ended with the API's own error
event, and pitot's own answers with X-Request-Id, Retry-After, the API's
error shape and their count in pitot_requests_total{backend=""}. Real
pitot-sim backends, real pitot, raw clients."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (CANARY_PROMPT, HOST, access_log, chat_body, check, finish,  # noqa: E402
                     metric_value, metrics, request, sse_data, start_pitot, start_sim,
                     stop_pitot_clean, wait_for)

FAST = ("routing:\n"
        "  scrape_interval: 100ms\n"
        "  scrape_timeout: 80ms\n"
        "  models_interval: 200ms\n"
        "%s"
        "health:\n"
        "  interval: 200ms\n"
        "  timeout: 150ms\n")

PROMPT = "Write a short story about a lighthouse keeper. " + CANARY_PROMPT


def conf(routing=""):
    return FAST % routing


def label(port):
    return "%s:%d" % (HOST, port)


def chat(pitot, model, stream=True, max_tokens=3):
    return request(pitot.port, "POST", "/v1/chat/completions",
                   chat_body(max_tokens=max_tokens, model=model, stream=stream))


def responses_body(stream, n=6, model="tiny"):
    return {"model": model, "input": PROMPT, "stream": stream, "max_output_tokens": n}


def messages_body(stream, n=6, model="tiny"):
    return {"model": model, "max_tokens": n, "stream": stream,
            "messages": [{"role": "user", "content": PROMPT}]}


def models_learnt(pitot, names):
    """Waits until GET /v1/models through pitot lists exactly `names`."""
    def ok():
        r = request(pitot.port, "GET", "/v1/models")
        if r.status != 200:
            return False
        try:
            ids = [m["id"] for m in json.loads(r.body)["data"]]
        except (ValueError, KeyError):
            return False
        return sorted(ids) == sorted(names) and r.header("server") == "pitot"
    return wait_for(ok, 5.0, step=0.05)


def t_any_model_name():
    a = start_sim("--model", "tiny", "--tokens-per-s", "400")
    b = start_sim("--model", "tiny", "--tokens-per-s", "400")
    pitot = start_pitot([a.port, b.port], config=conf())
    assert models_learnt(pitot, ["tiny"]), "model lists never learnt"
    for stream in (True, False):
        r = chat(pitot, "gpt-4o-mini", stream=stream)
        assert r.status == 200 and r.complete, (r.status, r.body[:200])
        if stream:
            chunks = [json.loads(d) for d in sse_data(r.events) if d != "[DONE]"]
            assert chunks and all(c["model"] == "tiny" for c in chunks), chunks[:2]
        else:
            assert json.loads(r.body)["model"] == "tiny", r.body[:200]
    def chats():
        return [l for l in access_log(pitot) if l["path"] == "/v1/chat/completions"]
    assert wait_for(lambda: len(chats()) == 2), chats()
    assert [l["model"] for l in chats()] == ["tiny", "tiny"], chats()
    m = metrics(pitot.port)
    # the label is the served name: no series for the client's name
    assert metric_value(m, "pitot_requests_total", model="tiny", code="200") == 2, m
    assert "gpt-4o-mini" not in m
    stop_pitot_clean(pitot)

    # routing.unknown_model: reject restores the strict 404
    pitot = start_pitot([a.port, b.port], config=conf("  unknown_model: reject\n"))
    assert models_learnt(pitot, ["tiny"])
    n0 = json.loads(request(a.port, "GET", "/sim/stats").body)["requests"] + \
        json.loads(request(b.port, "GET", "/sim/stats").body)["requests"]
    r = chat(pitot, "gpt-4o-mini")
    assert r.status == 404 and json.loads(r.body)["error"]["type"] == "model_not_found", r.body
    assert r.header("x-request-id"), r.headers
    assert chat(pitot, "tiny").status == 200
    n1 = json.loads(request(a.port, "GET", "/sim/stats").body)["requests"] + \
        json.loads(request(b.port, "GET", "/sim/stats").body)["requests"]
    assert n1 - n0 == 1, "the refused name reached a backend"
    stop_pitot_clean(pitot)


def t_strict_when_models_differ():
    a = start_sim("--model", "small", "--tokens-per-s", "400")
    b = start_sim("--model", "large", "--tokens-per-s", "400")
    pitot = start_pitot([a.port, b.port], config=conf())
    assert models_learnt(pitot, ["small", "large"]), request(pitot.port, "GET", "/v1/models").body
    r = chat(pitot, "gpt-4o-mini")
    assert r.status == 404, r.status
    assert r.header("x-request-id"), r.headers
    assert chat(pitot, "large").status == 200
    stop_pitot_clean(pitot)
    # routing.unknown_model: any serves it anyway, labelled with the served name
    pitot = start_pitot([a.port, b.port], config=conf("  unknown_model: any\n"))
    assert models_learnt(pitot, ["small", "large"])
    r = chat(pitot, "gpt-4o-mini")
    assert r.status == 200 and r.complete, r.status
    log = api_lines(pitot, 1)
    assert log[-1]["model"] in ("small", "large"), log
    stop_pitot_clean(pitot)


def t_models_union():
    a = start_sim("--model", "small", "--tokens-per-s", "400")
    b = start_sim("--model", "large", "--tokens-per-s", "400")
    c = start_sim("--model", "small", "--tokens-per-s", "400")
    pitot = start_pitot([a.port, b.port, c.port], config=conf())
    assert models_learnt(pitot, ["small", "large"]), request(pitot.port, "GET", "/v1/models").body
    n0 = len(access_log(pitot))
    r = request(pitot.port, "GET", "/v1/models")
    doc = json.loads(r.body)
    assert doc["object"] == "list", doc
    for m in doc["data"]:
        assert m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"], m
    assert r.header("content-type") == "application/json" and r.header("x-request-id"), r.headers
    h = request(pitot.port, "HEAD", "/v1/models")
    assert h.status == 200 and h.body == b"" and h.header("content-length") == r.header("content-length")
    # a backend down leaves the union
    b.stop()
    assert models_learnt(pitot, ["small"]), request(pitot.port, "GET", "/v1/models").body
    log = access_log(pitot)[n0:]
    assert log and all(l["path"] == "/v1/models" and l["backend"] is None and l["model"] is None
                       and l["status"] == 200 for l in log), log
    stop_pitot_clean(pitot)


def usage_of(body, api):
    if api == "responses":
        u = body["usage"]
        return u["input_tokens"], u["output_tokens"]
    u = body["usage"]
    return (u["input_tokens"] + u.get("cache_read_input_tokens", 0)
            + u.get("cache_creation_input_tokens", 0)), u["output_tokens"]


def final_usage(events, api):
    """The usage the backend reported in a stream: Responses in
    response.completed, Messages split over message_start and message_delta."""
    prompt = out = None
    for d in sse_data(events):
        j = json.loads(d)
        if j.get("type") == "response.completed":
            prompt, out = usage_of(j["response"], "responses")
        elif j.get("type") == "message_start":
            u = j["message"]["usage"]
            prompt = u["input_tokens"] + u.get("cache_read_input_tokens", 0)
        elif j.get("type") == "message_delta":
            out = j["usage"]["output_tokens"]
    return prompt, out


def api_lines(pitot, n):
    """The first n access-log lines of requests other than GET /v1/models,
    once they are written."""
    def lines():
        return [l for l in access_log(pitot) if l["path"] != "/v1/models"]
    assert wait_for(lambda: len(lines()) >= n, 5.0), lines()
    return lines()[:n]


def t_responses_and_messages_measured():
    sim = start_sim("--model", "tiny", "--tokens-per-s", "100")
    pitot = start_pitot([sim.port], config=conf())
    assert models_learnt(pitot, ["tiny"])
    cases = [("/v1/responses", responses_body, "responses"),
             ("/v1/messages", messages_body, "messages")]
    n = 0
    for path, body, api in cases:
        for stream in (True, False):
            r = request(pitot.port, "POST", path, body(stream))
            n += 1
            assert r.status == 200 and r.complete, (path, stream, r.status, r.body[:300])
            if stream:
                assert b"[DONE]" not in r.body
                prompt, out = final_usage(r.events, api)
                deltas = [e for e in sse_data(r.events) if '"delta"' in e and (
                    "output_text.delta" in e or "text_delta" in e)]
                assert len(deltas) == out == 6, (len(deltas), out)
            else:
                prompt, out = usage_of(json.loads(r.body), api)
            log = api_lines(pitot, n)[n - 1]
            assert log["api"] == api and log["path"] == path and log["model"] == "tiny", log
            assert log["prompt_tokens"] == prompt and log["completion_tokens"] == out, (log, prompt, out)
            assert log["tokens_estimated"] is False and log["truncated"] is True, log
            assert log["finish_reason"] in ("stop", "length"), log
            if stream:
                # first output 6 tokens at 100/s: TTFT well inside E2E, TPOT ~10 ms
                assert 0 < log["ttft_ms"] < log["e2e_ms"], log
                assert 5 <= log["tpot_ms"] <= 40, log
                assert log["itl_p50_ms"] is not None, log
            else:
                assert log["ttft_ms"] is None, log
    r = request(pitot.port, "POST", "/v1/messages/count_tokens",
                {"model": "tiny", "messages": [{"role": "user", "content": PROMPT}]})
    assert r.status == 200 and "input_tokens" in json.loads(r.body), r.body
    log = api_lines(pitot, n + 1)[n]
    assert log["api"] == "messages" and log["prompt_tokens"] is None, log
    m = metrics(pitot.port)
    for api in ("responses", "messages"):
        assert metric_value(m, "pitot_requests_total", api=api, code="200") >= 2, m
        assert metric_value(m, "pitot_completion_tokens_total", api=api) == 12, m
        assert metric_value(m, "pitot_time_to_first_token_seconds_count", api=api) == 1, m
        assert metric_value(m, "pitot_time_per_output_token_seconds_count", api=api) == 1, m
    stop_pitot_clean(pitot)


def t_cut_stream_error_event():
    sim = start_sim("--model", "tiny", "--tokens-per-s", "200", "--die-after", "3")
    pitot = start_pitot([sim.port], config=conf())
    r = request(pitot.port, "POST", "/v1/messages", messages_body(True, n=20))
    assert r.status == 200 and not r.complete, (r.status, r.complete)
    last = r.events[-1][1].decode()
    assert last.startswith("event: error\n"), last
    err = json.loads(sse_data([r.events[-1]])[0])
    assert err["type"] == "error" and err["error"]["type"] == "api_error", err
    assert "message_stop" not in r.body.decode()
    log = api_lines(pitot, 1)[0]
    assert log["outcome"] == "upstream_error" and log["api"] == "messages", log
    assert log["completion_tokens"] == 3 and log["tokens_estimated"] is True, log
    assert log["prompt_tokens"] > 0, log  # from message_start

    r = request(pitot.port, "POST", "/v1/responses", responses_body(True, n=20))
    assert r.status == 200 and not r.complete
    last = r.events[-1][1].decode()
    assert last.startswith("event: error\n"), last
    err = json.loads(sse_data([r.events[-1]])[0])
    assert err["type"] == "error" and err["code"] == "upstream_reset" and "message" in err, err
    assert "response.completed" not in r.body.decode()
    stop_pitot_clean(pitot)


def t_refusals_on_deltas():
    sim = start_sim("--model", "tiny", "--tokens-per-s", "400", "--refuse")
    pitot = start_pitot([sim.port], config=conf())
    sdk = [("anthropic-version", "2023-06-01"), ("x-api-key", "sk-ant-test"),
           ("Authorization", None)]  # what Anthropic's SDK sends
    r = request(pitot.port, "POST", "/v1/messages", messages_body(True, n=12), headers=sdk)
    assert r.status == 200 and r.complete, r.status
    r = request(pitot.port, "POST", "/v1/responses", responses_body(True, n=12),
                headers=[("OpenAI-Beta", "responses=v1"), ("x-stainless-lang", "python")])
    assert r.status == 200 and r.complete, r.status
    log = access_log(pitot, 2)
    assert [l["refusal"] for l in log] == [True, True], log
    m = metrics(pitot.port)
    assert metric_value(m, "pitot_refusals_total", api="messages") == 1, m
    assert metric_value(m, "pitot_refusals_total", api="responses") == 1, m
    assert "sk-ant-test" not in m and "sk-ant-test" not in pitot.stderr()
    stop_pitot_clean(pitot)


def t_local_answers():
    # one slot, a queue of depth 0: a second request is shed at once
    sim = start_sim("--model", "tiny", "--slots", "1", "--tokens-per-s", "20")
    cfg = conf() + "queue:\n  max_depth: 0\n"
    pitot = start_pitot([sim.port], config=cfg)
    assert models_learnt(pitot, ["tiny"])
    assert wait_for(lambda: (metric_value(metrics(pitot.port), "pitot_backend_scrapes_total",
                                          result="ok") or 0) >= 2)
    time.sleep(0.3)  # the capacity from /props
    import socket
    hog = socket.create_connection((HOST, pitot.port))
    body = json.dumps(chat_body(max_tokens=400, model="tiny")).encode()
    hog.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    hog.recv(100)  # its head: the slot is taken
    try:
        r = request(pitot.port, "POST", "/v1/messages", messages_body(True),
                    headers=[("X-Request-Id", "shed-msg-1")])
        assert r.status == 529, (r.status, r.body)
        e = json.loads(r.body)
        assert e == {"type": "error", "error": {"type": "overloaded_error",
                                                "message": "all backends are busy, retry later"}}, e
        assert r.header("retry-after") and r.header("x-request-id") == "shed-msg-1", r.headers
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(model="tiny"))
        assert r.status == 503 and r.header("retry-after") and r.header("x-request-id"), r.headers
        assert json.loads(r.body)["error"]["type"] == "overloaded", r.body
    finally:
        hog.close()
    m = metrics(pitot.port)
    assert metric_value(m, "pitot_requests_total", backend="", api="messages", code="529") == 1, m
    assert metric_value(m, "pitot_requests_total", backend="", api="chat", code="503") == 1, m
    # pitot's own 400 and 404 carry the id too, and are counted
    r = request(pitot.port, "POST", "/v1/messages", b"{nope", headers=[("X-Request-Id", "bad-1")])
    assert r.status == 400 and r.header("x-request-id") == "bad-1", (r.status, r.headers)
    r = request(pitot.port, "GET", "/" + "x" * 70000)
    assert r.status in (414, 431) and r.header("x-request-id"), (r.status, r.headers)
    m = metrics(pitot.port)
    assert metric_value(m, "pitot_requests_total", backend="", code="400") == 1, m
    assert metric_value(m, "pitot_requests_total", backend="", code=str(r.status)) == 1, m
    stop_pitot_clean(pitot)

    # no healthy backend: 503 with Retry-After
    dead = start_sim("--model", "tiny")
    port = dead.port
    dead.stop()
    pitot = start_pitot([port], config=conf())
    assert wait_for(lambda: metric_value(metrics(pitot.port), "pitot_backend_up") == 0, 5.0), \
        metrics(pitot.port)
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(model="tiny"))
    assert r.status == 503 and r.header("retry-after") and r.header("x-request-id"), \
        (r.status, r.headers, r.body)
    assert json.loads(r.body)["error"]["type"] == "no_backend", r.body
    m = metrics(pitot.port)
    assert metric_value(m, "pitot_requests_total", backend="", code="503") == 1, m
    stop_pitot_clean(pitot)


check("any model name goes to the pool when every backend serves one model; unknown_model: reject",
      t_any_model_name)
check("different models: strict 404 by default, unknown_model: any serves", t_strict_when_models_differ)
check("GET /v1/models: the union of the healthy backends' models", t_models_union)
check("Responses and Messages, streamed and not: tokens, TTFT, TPOT, api label", 
      t_responses_and_messages_measured)
check("a cut Messages or Responses stream ends with the API's own error event",
      t_cut_stream_error_event)
check("refusals found in Responses and Messages text deltas", t_refusals_on_deltas)
check("pitot's own answers: X-Request-Id, Retry-After, the API's shape, counted with backend \"\"",
      t_local_answers)
finish()
