"""opentelemetry.metrics: true in front of two pitot-sim replicas (one
answering 500 to every completion): the gen_ai_* histograms count streamed and
non-streamed chat and a text completion, sum exactly the tokens the simulator
reported in its usage, carry error_type on the failed request, pass promtool,
and a real Prometheus computes a TTFT quantile from them. Without the switch
there is no gen_ai_* family at all."""

import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import (HOST, chat_body, check, finish, metric_value, metrics, prom_query,  # noqa: E402
                     request, sse_data, start_pitot, start_prometheus, start_sim, stop_pitot_clean,
                     wait_for)

PROMTOOL = "/usr/bin/promtool"
DUR = "gen_ai_client_operation_duration_seconds"
TOK = "gen_ai_client_token_usage"
TTFT = "gen_ai_server_time_to_first_token_seconds"
TPOT = "gen_ai_server_time_per_output_token_seconds"
FAMILIES = (DUR, TOK, TTFT, TPOT)


def config(good, bad, otel=True):
    # good: flavor auto (detected at its first scrape); bad: named up front.
    return ("backends:\n"
            "  - url: http://%s:%d\n"
            "    name: good\n"
            "    models: [small]\n"
            "  - url: http://%s:%d\n"
            "    name: bad\n"
            "    flavor: llamacpp\n"
            "    models: [broken]\n"
            "models: [small, broken]\n"
            "routing:\n"
            "  eject:\n"
            "    failures: 0\n"
            "opentelemetry:\n"
            "  metrics: %s\n" % (HOST, good, HOST, bad, "true" if otel else "false"))


def labels(line):
    m = re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*\{(.*)\} \S+$', line)
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1))) if m else {}


def series(text, name):
    """Label dicts of the samples named exactly `name`."""
    return [labels(l) for l in text.splitlines() if l.startswith(name + "{")]


def value(text, name, **lab):
    """The one sample of `name` whose labels are exactly `lab`, or None."""
    want = {k: str(v) for k, v in lab.items()}
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{") and labels(line) == want:
            found.append(float(line.rsplit(" ", 1)[1]))
    assert len(found) <= 1, "%d samples of %s%r" % (len(found), name, want)
    return found[0] if found else None


def stream_usage(r):
    """The usage object of a streamed answer (its usage-only chunk)."""
    for d in sse_data(r.events):
        if d.strip() == "[DONE]":
            continue
        u = json.loads(d).get("usage")
        if u:
            return u
    raise AssertionError("no usage chunk in the stream")


def promtool(text):
    with tempfile.NamedTemporaryFile("w", suffix=".prom", delete=False) as f:
        f.write(text)
    try:
        with open(f.name) as inp:
            out = subprocess.run([PROMTOOL, "check", "metrics"], stdin=inp, capture_output=True,
                                 text=True, timeout=30)
        return out.returncode, (out.stdout + out.stderr).strip()
    finally:
        os.unlink(f.name)


def scrapes_ok(port, backend):
    return (metric_value(metrics(port), "pitot_backend_scrapes_total", backend=backend,
                         result="ok") or 0) >= 1


def t_gen_ai_families():
    good = start_sim("--tokens-per-s", "2000", "--prefill-tokens-per-s", "100000", "--slots", "4")
    bad = start_sim("--fail-status", "500", "--model", "broken")
    pitot = start_pitot([], config=config(good.port, bad.port))
    prom = start_prometheus([pitot.port], scrape_interval="1s")
    # The good backend's flavor is detected at its first scrape; wait for it
    # so the provider label is the detected one from the first request on.
    assert wait_for(lambda: scrapes_ok(pitot.port, "good"), timeout=10), "no scrape of 'good'"

    usage = {"chat": [], "text_completion": []}
    # 1. streamed chat (the client asks for usage, so it sees what pitot saw)
    body = chat_body("x" * 200, max_tokens=7, stream_options={"include_usage": True})
    r = request(pitot.port, "POST", "/v1/chat/completions", body)
    assert r.status == 200 and r.complete, r.status
    usage["chat"].append(stream_usage(r))
    # Prometheus must have the TTFT series before more requests arrive, so
    # that rate() sees them as an increase.
    seen = wait_for(lambda: prom_query(prom.port, "sum(%s_count)" % TTFT)["result"], timeout=15)
    assert seen, "Prometheus never ingested %s" % TTFT
    # 2. non-streamed chat
    r = request(pitot.port, "POST", "/v1/chat/completions",
                chat_body("y" * 120, stream=False, max_tokens=5))
    assert r.status == 200, r.status
    usage["chat"].append(json.loads(r.body)["usage"])
    # 3. streamed text completion
    r = request(pitot.port, "POST", "/v1/completions",
                {"model": "small", "prompt": "z" * 80, "max_tokens": 6, "stream": True,
                 "stream_options": {"include_usage": True}})
    assert r.status == 200 and r.complete, r.status
    usage["text_completion"].append(stream_usage(r))
    # 4. another streamed chat
    r = request(pitot.port, "POST", "/v1/chat/completions",
                chat_body("w" * 40, max_tokens=9, stream_options={"include_usage": True}))
    assert r.status == 200 and r.complete, r.status
    usage["chat"].append(stream_usage(r))
    # 5. the failing one: model "broken" is served by the backend answering 500
    r = request(pitot.port, "POST", "/v1/chat/completions",
                dict(chat_body(max_tokens=4, stream=False), model="broken"))
    assert r.status == 500, r.status
    # 6. not a GenAI operation: counted by pitot, not by the gen_ai_* families
    r = request(pitot.port, "GET", "/v1/models")
    assert r.status == 200, r.status

    m = metrics(pitot.port)
    good_l = {"gen_ai_provider_name": "llamacpp", "gen_ai_request_model": "small",
              "server_address": HOST, "server_port": good.port, "tier": "default"}
    bad_l = {"gen_ai_provider_name": "llamacpp", "gen_ai_request_model": "broken",
             "server_address": HOST, "server_port": bad.port, "tier": "default"}
    chat = dict(good_l, gen_ai_operation_name="chat")
    text = dict(good_l, gen_ai_operation_name="text_completion")
    fail = dict(bad_l, gen_ai_operation_name="chat")

    # operation duration: every request a backend took, error_type on the failure
    assert value(m, DUR + "_count", **chat) == 3, value(m, DUR + "_count", **chat)
    assert value(m, DUR + "_count", **text) == 1
    assert value(m, DUR + "_count", **dict(fail, error_type="500")) == 1
    assert value(m, DUR + "_count", **fail) == 0  # the label set without error_type
    assert value(m, DUR + "_bucket", **dict(chat, le="+Inf")) == 3
    assert value(m, DUR + "_sum", **chat) > 0
    # label sets: exactly these four, all with the conventions' attribute names
    dur_sets = {tuple(sorted(l.items())) for l in series(m, DUR + "_count")}
    want = {tuple(sorted({k: str(v) for k, v in d.items()}.items()))
            for d in (chat, text, fail, dict(fail, error_type="500"))}
    assert dur_sets == want, sorted(dur_sets)

    # token usage: the sums are what the simulator reported
    for op, lab in (("chat", chat), ("text_completion", text)):
        n = len(usage[op])
        p = sum(u["prompt_tokens"] for u in usage[op])
        c = sum(u["completion_tokens"] for u in usage[op])
        assert value(m, TOK + "_count", **dict(lab, gen_ai_token_type="input")) == n
        assert value(m, TOK + "_sum", **dict(lab, gen_ai_token_type="input")) == p, (op, p)
        assert value(m, TOK + "_count", **dict(lab, gen_ai_token_type="output")) == n
        assert value(m, TOK + "_sum", **dict(lab, gen_ai_token_type="output")) == c, (op, c)
    assert usage["chat"][0]["completion_tokens"] == 7 and usage["chat"][2]["completion_tokens"] == 9
    # the conventions' token buckets: 7 and 5 and 9 output tokens in (4, 16]
    assert value(m, TOK + "_bucket", **dict(chat, gen_ai_token_type="output", le="4")) == 0
    assert value(m, TOK + "_bucket", **dict(chat, gen_ai_token_type="output", le="16")) == 3
    assert not [l for l in series(m, TOK + "_count") if l.get("gen_ai_request_model") == "broken"]

    # TTFT and TPOT: streamed, successful requests only
    assert value(m, TTFT + "_count", **chat) == 2
    assert value(m, TTFT + "_count", **text) == 1
    assert value(m, TPOT + "_count", **chat) == 2
    assert len(series(m, TTFT + "_count")) == 2 and len(series(m, TPOT + "_count")) == 2
    les = [l["le"] for l in series(m, TTFT + "_bucket") if l["gen_ai_operation_name"] == "chat"]
    assert les == ["0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.25",
                   "0.5", "0.75", "1", "2.5", "5", "7.5", "10", "+Inf"], les
    les = [l["le"] for l in series(m, TPOT + "_bucket") if l["gen_ai_operation_name"] == "chat"]
    assert les == ["0.01", "0.025", "0.05", "0.075", "0.1", "0.15", "0.2", "0.3", "0.4", "0.5",
                   "0.75", "1", "2.5", "+Inf"], les

    # pitot's own families are still there, and agree on the counts
    # (four completions and GET /v1/models, which has no GenAI operation;
    # pitot answers that itself once it knows the backend's models)
    n = metric_value(m, "pitot_requests_total", backend="good", code="200")
    own = metric_value(m, "pitot_requests_total", backend="", api="other", code="200") or 0
    assert n + own == 5 and own <= 1, (n, own)
    assert metric_value(m, "pitot_requests_total", backend="bad", code="500") == 1
    assert metric_value(m, "pitot_time_to_first_token_seconds_count", backend="good") == 3
    rc, out = promtool(m)
    assert rc == 0 and out == "", "promtool check metrics: %d %s" % (rc, out[:600])

    # a real Prometheus: the TTFT quantile from the conventions' buckets
    want_n = 3
    n = wait_for(lambda: (lambda d: d["result"] and float(d["result"][0]["value"][1]) == want_n)(
        prom_query(prom.port, "sum(%s_count)" % TTFT)), timeout=15)
    assert n, "Prometheus did not reach %d TTFT observations" % want_n
    expr = "histogram_quantile(0.95, sum by (le) (rate(%s_bucket[1m])))" % TTFT
    res = prom_query(prom.port, expr)["result"]
    assert len(res) == 1, res
    q = float(res[0]["value"][1])
    assert 0 < q <= 10, "p95 TTFT %r" % q
    print("  p95 TTFT by histogram_quantile over gen_ai_server_time_to_first_token_seconds: "
          "%.4f s" % q, flush=True)
    errs = prom_query(prom.port, 'sum by (error_type) (%s_count{error_type!=""})' % DUR)["result"]
    assert [(e["metric"].get("error_type"), e["value"][1]) for e in errs] == [("500", "1")], errs
    stop_pitot_clean(pitot)


def t_switch_off():
    good = start_sim("--tokens-per-s", "2000", "--prefill-tokens-per-s", "100000")
    bad = start_sim("--fail-status", "500", "--model", "broken")
    pitot = start_pitot([], config=config(good.port, bad.port, otel=False))
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=3))
    assert r.status == 200 and r.complete, r.status
    r = request(pitot.port, "POST", "/v1/chat/completions",
                dict(chat_body(max_tokens=3), model="broken"))
    assert r.status == 500, r.status
    m = metrics(pitot.port)
    assert "gen_ai" not in m and "error_type" not in m, [l for l in m.splitlines() if "gen_ai" in l][:3]
    assert metric_value(m, "pitot_requests_total", backend="good", code="200") == 1
    stop_pitot_clean(pitot)


check("opentelemetry.metrics: gen_ai_* histograms counted, token sums exact, error_type, "
      "promtool clean, TTFT quantile in Prometheus", t_gen_ai_families)
check("opentelemetry.metrics off: no gen_ai_* family", t_switch_off)
finish()
