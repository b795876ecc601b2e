#!/usr/bin/env python3
"""pitot-sim's OpenAI Responses API (/v1/responses) and Anthropic Messages API
(/v1/messages, /v1/messages/count_tokens) on the llamacpp and vllm flavors,
against the llama-server captures in PITOT_FIXTURES/llama.cpp/apis: heads,
event names, JSON key order, the first events sharing one HTTP chunk, one
chunk per later delta, the closing events, usage equal to the deltas sent,
stop reasons, no [DONE]; --die-after, --refuse, counters, any model name.

Run from the repo root: PITOT_BUILD=build PITOT_FIXTURES=tests/fixtures
python3 tests/integration/test_sim_apis.py
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (CANARY_OUTPUT, FIXTURES, check, finish, metric_value, metrics,  # noqa: E402
                     request, start_sim)

APIS = os.path.join(FIXTURES, "llama.cpp", "apis")
MODEL = "tiny"
USER = "Write a short story about a lighthouse keeper."
SYSTEM = "You are terse."

RESP_OPEN = ["response.created", "response.in_progress", "response.output_item.added",
             "response.content_part.added", "response.output_text.delta"]
RESP_DELTA = "response.output_text.delta"
RESP_CLOSE = ["response.output_text.done", "response.content_part.done",
              "response.output_item.done"]
MSG_OPEN = ["message_start", "content_block_start", "content_block_delta"]
MSG_DELTA = "content_block_delta"
MSG_CLOSE = ["content_block_stop", "message_delta", "message_stop"]


# ---- captures and events ----------------------------------------------------

def capture(name):
    """(status line, [(header, value)], [chunk payloads] or body) of NAME.http."""
    with open(os.path.join(APIS, name + ".http"), "rb") as f:
        raw = f.read()
    head, rest = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:]]
    if not any(k.lower() == "transfer-encoding" for k, _ in headers):
        return lines[0], headers, rest
    chunks = []
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        n = int(size_line, 16)
        if n == 0:
            return lines[0], headers, chunks
        chunks.append(rest[:n])
        rest = rest[n + 2:]


def events(chunk):
    """[(event name, parsed data)] of one chunk; every event must have both."""
    out = []
    for ev in chunk.decode().split("\n\n"):
        if not ev:
            continue
        lines = ev.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and \
            lines[1].startswith("data: "), "event layout %r" % ev
        out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


def shape(o):
    """The key structure of a JSON value, order kept (values left out)."""
    if isinstance(o, dict):
        return [(k, shape(v)) for k, v in o.items()]
    if isinstance(o, list):
        return [shape(v) for v in o[:1]]
    return None


def names(evs):
    return [n for n, _ in evs]


def head_names(headers):
    return [k for k, _ in headers]


def expect_heads(r, flavor, capture_name):
    """llamacpp: the capture's header names and values (but lengths); vllm:
    uvicorn's head with the same content type."""
    _, want, _ = capture(capture_name)
    if flavor == "llamacpp":
        got = [(k, v) for k, v in r.headers if k != "Content-Length"]
        want = [(k, v) for k, v in want if k != "Content-Length"]
        assert got == want, "headers %r, capture %r" % (got, want)
    else:
        assert r.header("server") == "uvicorn", r.headers
        ct = dict(want).get("Content-Type", "")
        if ct == "text/event-stream":
            assert r.header("content-type").startswith("text/event-stream"), r.headers
            assert r.header("transfer-encoding") == "chunked", r.headers
        else:
            assert r.header("content-type") == "application/json", r.headers


def sim(flavor, *extra):
    return start_sim("--flavor", flavor, "--model", MODEL, "--tokens-per-s", "400",
                     "--prefill-tokens-per-s", "100000", *extra)


def chat_prompt_tokens(port, messages):
    """The prompt tokens the sim counts for a chat request with messages."""
    r = request(port, "POST", "/v1/chat/completions",
                {"model": MODEL, "messages": messages, "stream": False, "max_tokens": 1})
    assert r.status == 200, r.status
    return json.loads(r.body)["usage"]["prompt_tokens"]


def stream_events(r):
    """Every chunk's events; asserts the stream ended cleanly and no [DONE]."""
    assert r.status == 200 and r.complete, "status %s complete %s" % (r.status, r.complete)
    assert b"[DONE]" not in r.body, "a [DONE] in the stream"
    return [events(c) for c in r.chunks]


def expect_grouping(per_chunk, opening, delta, closing, n):
    """The opening events and the first delta in the first chunk, one delta
    per later chunk, the closing events together in the last."""
    assert names(per_chunk[0]) == opening, "first chunk %r" % names(per_chunk[0])
    for c in per_chunk[1:-1]:
        assert names(c) == [delta], "a middle chunk %r" % names(c)
    assert names(per_chunk[-1]) == closing, "last chunk %r" % names(per_chunk[-1])
    assert len(per_chunk) == n + 1, "%d chunks for %d deltas" % (len(per_chunk), n)


def expect_shapes(per_chunk, capture_name, skip=()):
    """Each event's key order equals the capture's event of the same name."""
    _, _, chunks = capture(capture_name)
    want = {}
    for c in chunks:
        for name, data in events(c):
            want.setdefault(name, shape(data))
    for c in per_chunk:
        for name, data in c:
            if name in skip:
                continue
            assert name in want, "event %s not in the capture" % name
            assert shape(data) == want[name], "%s key order %r, capture %r" % (
                name, shape(data), want[name])


# ---- Responses --------------------------------------------------------------

def responses_stream(flavor):
    def run():
        s = sim(flavor)
        prompt = chat_prompt_tokens(s.port, [{"role": "user", "content": USER}])
        # any model name: answered with the sim's own
        r = request(s.port, "POST", "/v1/responses",
                    {"model": "gpt-4o-mini", "input": USER, "stream": True,
                     "max_output_tokens": 12})
        expect_heads(r, flavor, "responses-stream")
        per_chunk = stream_events(r)
        final = "response.completed" if flavor == "llamacpp" else "response.incomplete"
        expect_grouping(per_chunk, RESP_OPEN, RESP_DELTA, RESP_CLOSE + [final], 12)
        expect_shapes(per_chunk, "responses-stream", skip=("response.incomplete",))
        deltas = [d["delta"] for c in per_chunk for n, d in c if n == RESP_DELTA]
        assert deltas[0] == " " + CANARY_OUTPUT, "first token %r (--canary)" % deltas[0]
        text = "".join(deltas)
        evs = dict(per_chunk[-1])
        assert evs["response.output_text.done"]["text"] == text, "done text"
        assert evs["response.output_item.done"]["item"]["content"][0]["text"] == text
        resp = evs[final]["response"]
        assert resp["model"] == MODEL, resp["model"]
        assert resp["output"][0]["content"][0]["text"] == text
        assert resp["usage"] == {"input_tokens": prompt, "output_tokens": 12,
                                 "total_tokens": prompt + 12,
                                 "input_tokens_details": {"cached_tokens": 0}}, resp["usage"]
        if flavor == "llamacpp":
            # llama.cpp says completed even at the limit, and adds its timings
            assert resp["status"] == "completed", resp["status"]
            t = evs[final]["timings"]
            assert t["predicted_n"] == 12 and t["prompt_n"] == prompt, t
        else:
            assert resp["status"] == "incomplete", resp["status"]
            assert resp["incomplete_details"] == {"reason": "max_output_tokens"}, resp
            assert "timings" not in evs[final]
        ids = {d.get("item_id") for c in per_chunk for _, d in c if "item_id" in d}
        assert len(ids) == 1 and ids.pop().startswith("msg_"), "one msg_ item id"
        assert resp["id"].startswith("resp_")
    return run


def responses_nonstream(flavor):
    def run():
        s = sim(flavor)
        prompt = chat_prompt_tokens(s.port, [{"role": "system", "content": SYSTEM},
                                             {"role": "user", "content": USER}])
        r = request(s.port, "POST", "/v1/responses",
                    {"model": "any-name", "instructions": SYSTEM, "input": USER,
                     "max_output_tokens": 12})
        assert r.status == 200 and r.complete, r.status
        expect_heads(r, flavor, "responses-nonstream")
        b = json.loads(r.body)
        want = shape(json.loads(capture("responses-nonstream")[2]))
        if flavor == "llamacpp":
            assert shape(b) == want, "key order %r" % shape(b)
            assert b["status"] == "completed"
        else:
            got = [kv for kv in shape(b) if kv[0] != "incomplete_details"]
            assert got == want, "key order %r" % shape(b)
            assert b["status"] == "incomplete" and \
                b["incomplete_details"] == {"reason": "max_output_tokens"}, b
        assert b["model"] == MODEL
        assert b["usage"]["input_tokens"] == prompt and b["usage"]["output_tokens"] == 12, b
        assert b["output"][0]["content"][0]["text"].startswith(" " + CANARY_OUTPUT)
    return run


def responses_uncut(flavor):
    """No limit: the answer runs to the end of the context and is complete."""
    def run():
        s = sim(flavor, "--ctx", "40")
        r = request(s.port, "POST", "/v1/responses", {"model": MODEL, "input": USER,
                                                      "stream": True})
        per_chunk = stream_events(r)
        n = sum(1 for c in per_chunk for name, _ in c if name == RESP_DELTA)
        expect_grouping(per_chunk, RESP_OPEN, RESP_DELTA, RESP_CLOSE + ["response.completed"], n)
        resp = dict(per_chunk[-1])["response.completed"]["response"]
        assert resp["status"] == "completed" and "incomplete_details" not in resp, resp
        assert resp["usage"]["output_tokens"] == n == 40 - resp["usage"]["input_tokens"], \
            (n, resp["usage"])
    return run


# ---- Messages ---------------------------------------------------------------

def messages_stream(flavor):
    def run():
        s = sim(flavor)
        prompt = chat_prompt_tokens(s.port, [{"role": "system", "content": SYSTEM},
                                             {"role": "user", "content": USER}])
        r = request(s.port, "POST", "/v1/messages",
                    {"model": "claude-sonnet-4", "max_tokens": 8, "system": SYSTEM,
                     "messages": [{"role": "user", "content": USER}], "stream": True})
        expect_heads(r, flavor, "anthropic-messages-stream-system")
        per_chunk = stream_events(r)
        expect_grouping(per_chunk, MSG_OPEN, MSG_DELTA, MSG_CLOSE, 8)
        expect_shapes(per_chunk, "anthropic-messages-stream-system")
        start = per_chunk[0][0][1]["message"]
        assert start["model"] == MODEL, start["model"]
        assert start["usage"] == {"cache_read_input_tokens": 0, "input_tokens": prompt,
                                  "output_tokens": 0}, start["usage"]
        texts = [d["delta"]["text"] for c in per_chunk for n, d in c if n == MSG_DELTA]
        assert texts[0] == " " + CANARY_OUTPUT, texts[0]
        delta = dict(per_chunk[-1])["message_delta"]
        assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}, delta
        assert delta["usage"] == {"output_tokens": 8} and len(texts) == 8, (delta, len(texts))
    return run


def messages_nonstream(flavor):
    def run():
        s = sim(flavor)
        prompt = chat_prompt_tokens(s.port, [{"role": "user", "content": USER}])
        r = request(s.port, "POST", "/v1/messages",
                    {"model": MODEL, "max_tokens": 12,
                     "messages": [{"role": "user", "content": USER}]})
        assert r.status == 200 and r.complete, r.status
        expect_heads(r, flavor, "anthropic-messages-nonstream")
        b = json.loads(r.body)
        assert shape(b) == shape(json.loads(capture("anthropic-messages-nonstream")[2])), \
            "key order %r" % shape(b)
        assert b["stop_reason"] == "max_tokens" and b["model"] == MODEL, b
        assert b["usage"] == {"cache_read_input_tokens": 0, "input_tokens": prompt,
                              "output_tokens": 12}, b["usage"]
        assert b["content"][0]["text"].startswith(" " + CANARY_OUTPUT)
    return run


def messages_end_turn(flavor):
    """A limit the answer never reached: end_turn, output = the deltas."""
    def run():
        s = sim(flavor, "--ctx", "40")
        body = {"model": MODEL, "messages": [{"role": "user", "content": USER}],
                "stream": True}
        r = request(s.port, "POST", "/v1/messages", body)
        per_chunk = stream_events(r)
        n = sum(1 for c in per_chunk for name, _ in c if name == MSG_DELTA)
        expect_grouping(per_chunk, MSG_OPEN, MSG_DELTA, MSG_CLOSE, n)
        prompt = per_chunk[0][0][1]["message"]["usage"]["input_tokens"]
        delta = dict(per_chunk[-1])["message_delta"]
        assert delta["delta"]["stop_reason"] == "end_turn", delta
        assert delta["usage"]["output_tokens"] == n == 40 - prompt, (delta, n, prompt)
        body["stream"] = False
        b = json.loads(request(s.port, "POST", "/v1/messages", body).body)
        assert b["stop_reason"] == "end_turn" and b["usage"]["output_tokens"] == n, b
    return run


def count_tokens(flavor):
    def run():
        s = sim(flavor)
        msgs = [{"role": "user", "content": USER}]
        prompt = chat_prompt_tokens(s.port, msgs)
        r = request(s.port, "POST", "/v1/messages/count_tokens", {"model": MODEL,
                                                                   "messages": msgs})
        assert r.status == 200, r.status
        expect_heads(r, flavor, "anthropic-count-tokens")
        assert r.body == b'{"input_tokens":%d}' % prompt, r.body
        r = request(s.port, "POST", "/v1/messages/count_tokens",
                    {"model": MODEL, "system": [{"type": "text", "text": SYSTEM}],
                     "messages": msgs})
        both = chat_prompt_tokens(s.port, [{"role": "system", "content": SYSTEM}] + msgs)
        assert json.loads(r.body) == {"input_tokens": both}, (r.body, both)
        # not a generation: /sim/stats counts only the chat requests
        st = json.loads(request(s.port, "GET", "/sim/stats").body)
        assert st["requests"] == 2, st
    return run


# ---- faults, counters, errors -----------------------------------------------

def die_after(flavor):
    """--die-after 3: three deltas, then the connection closes: no closing
    events, no terminating chunk."""
    def run():
        s = sim(flavor, "--die-after", "3")
        for path, body, delta, opening in (
                ("/v1/responses", {"model": MODEL, "input": USER, "stream": True,
                                   "max_output_tokens": 12}, RESP_DELTA, RESP_OPEN),
                ("/v1/messages", {"model": MODEL, "max_tokens": 12, "stream": True,
                                  "messages": [{"role": "user", "content": USER}]},
                 MSG_DELTA, MSG_OPEN)):
            r = request(s.port, "POST", path, body)
            assert r.status == 200 and r.closed and not r.complete, (path, r.status, r.complete)
            per_chunk = [events(c) for c in r.chunks]
            assert names(per_chunk[0]) == opening, names(per_chunk[0])
            got = [n for c in per_chunk for n in names(c)]
            assert got == opening + [delta, delta], "%s events %r" % (path, got)
        st = json.loads(request(s.port, "GET", "/sim/stats").body)
        assert st["died"] == 2 and st["completed"] == 0 and st["tokens_sent"] == 6, st
    return run


def refuse(flavor):
    def run():
        s = sim(flavor, "--refuse")
        r = request(s.port, "POST", "/v1/messages",
                    {"model": MODEL, "max_tokens": 14, "stream": False,
                     "messages": [{"role": "user", "content": USER}]})
        text = json.loads(r.body)["content"][0]["text"]
        assert text.startswith("I'm sorry, but I can't help with that. " + CANARY_OUTPUT), text
    return run


def counters(flavor):
    """/sim/stats and the flavor's /metrics count the new routes' tokens."""
    def run():
        s = sim(flavor)
        request(s.port, "POST", "/v1/responses", {"model": MODEL, "input": USER,
                                                  "stream": True, "max_output_tokens": 5})
        request(s.port, "POST", "/v1/messages", {"model": MODEL, "max_tokens": 7,
                                                 "messages": [{"role": "user",
                                                               "content": USER}]})
        st = json.loads(request(s.port, "GET", "/sim/stats").body)
        assert st["requests"] == 2 and st["completed"] == 2 and st["tokens_sent"] == 12, st
        text = metrics(s.port)
        if flavor == "llamacpp":
            v = metric_value(text, "llamacpp:tokens_predicted_total")
            assert v == 12, v
        else:
            assert metric_value(text, "vllm:generation_tokens_total") == 12
            assert metric_value(text, "vllm:request_success_total", finished_reason="length") == 2
            for h in ("/v1/responses", "/v1/messages"):
                v = metric_value(text, "http_requests_total", handler=h, status="2xx")
                assert v == 1, (h, v)
    return run


def queued_behind_slot(flavor):
    """--slots 1: a Messages stream waits for a running Responses stream."""
    def run():
        s = sim(flavor, "--slots", "1", "--tokens-per-s", "50")
        out = {}

        def first():
            out["a"] = request(s.port, "POST", "/v1/responses",
                               {"model": MODEL, "input": USER, "stream": True,
                                "max_output_tokens": 10})
        t = threading.Thread(target=first)
        t.start()
        time.sleep(0.05)
        b = request(s.port, "POST", "/v1/messages",
                    {"model": MODEL, "max_tokens": 2, "stream": True,
                     "messages": [{"role": "user", "content": USER}]})
        t.join()
        a = out["a"]
        assert a.complete and b.complete, (a.complete, b.complete)
        # the second's head came only once the first had ended
        assert b.t_head >= a.events[-1][0] - 0.01, (b.t_head, a.events[-1][0])
    return run


def invalid_json(flavor):
    def run():
        s = sim(flavor)
        r = request(s.port, "POST", "/v1/messages", b"")
        if flavor == "llamacpp":
            status, headers, body = capture("error-messages-invalid-json")
            assert "HTTP/1.1 %d %s" % (r.status, r.reason) == status, (r.status, r.reason)
            assert r.headers == headers, r.headers
            assert r.body == body, r.body
        else:
            assert r.status == 400, r.status
            assert json.loads(r.body)["error"]["code"] == 400
        for path in ("/v1/responses", "/v1/messages/count_tokens"):
            r = request(s.port, "POST", path, b"{oops")
            assert r.status == (500 if flavor == "llamacpp" else 400), (path, r.status)
    return run


def chat_any_model(flavor):
    """Chat: any requested model is answered with --model (capture
    chat-stream-any-model-name)."""
    def run():
        s = sim(flavor)
        with open(os.path.join(APIS, "chat-stream-any-model-name.req.http"), "rb") as f:
            body = json.loads(f.read().split(b"\r\n\r\n", 1)[1])
        assert body["model"] != MODEL
        r = request(s.port, "POST", "/v1/chat/completions", body)
        assert r.status == 200 and r.complete
        datas = [json.loads(l[6:]) for l in r.body.decode().split("\n")
                 if l.startswith("data: {")]
        assert datas and all(d["model"] == MODEL for d in datas), [d.get("model") for d in datas]
    return run


def main():
    for flavor in ("llamacpp", "vllm"):
        check("%s_responses_stream_layout_usage" % flavor, responses_stream(flavor))
        check("%s_responses_nonstream" % flavor, responses_nonstream(flavor))
        check("%s_responses_uncut_completed" % flavor, responses_uncut(flavor))
        check("%s_messages_stream_layout_usage" % flavor, messages_stream(flavor))
        check("%s_messages_nonstream" % flavor, messages_nonstream(flavor))
        check("%s_messages_end_turn" % flavor, messages_end_turn(flavor))
        check("%s_messages_count_tokens" % flavor, count_tokens(flavor))
        check("%s_apis_die_after_no_final_events" % flavor, die_after(flavor))
        check("%s_messages_refuse_then_canary" % flavor, refuse(flavor))
        check("%s_apis_counters" % flavor, counters(flavor))
        check("%s_apis_queue_behind_slot" % flavor, queued_behind_slot(flavor))
        check("%s_apis_invalid_json" % flavor, invalid_json(flavor))
        check("%s_chat_any_model_name" % flavor, chat_any_model(flavor))
    finish()


if __name__ == "__main__":
    main()
