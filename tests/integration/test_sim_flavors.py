#!/usr/bin/env python3
"""pitot-sim --flavor vllm|tgi|sglang against the wire-format samples in
tests/fixtures/{vllm,tgi,sglang}: /metrics layout (families, HELP/TYPE, label
sets, number formats, blank lines, promtool), load gauges that follow the
simulator's real slots and queue, stream event layout and JSON key order,
usage, keep-alive, error shapes, loading and fault flags.

Run from the repo root. PITOT_BUILD (default "build") holds pitot-sim;
PITOT_FIXTURES (default "tests/fixtures") holds the samples.
Prints "PASS name" or "FAIL name: reason" per check; exits 1 if any failed.
"""
import json
import math
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (FIXTURES, Reader, build_request, check, connect, finish, metrics,  # noqa: E402
                     metric_value, request, start_sim)

FAST = ("--tokens-per-s", 400, "--prefill-tokens-per-s", 100000)
MSGS = [{"role": "user", "content": "Tell me about lighthouses and the people who kept them."}]
PROMTOOL = "/usr/bin/promtool"

# The load families each flavor must expose, with what they mean here.
LOAD = {
    "vllm": {"running": "vllm:num_requests_running", "waiting": "vllm:num_requests_waiting",
             "usage": "vllm:kv_cache_usage_perc"},
    "tgi": {"running": "tgi_batch_current_size", "waiting": "tgi_queue_size",
            "used": "tgi_batch_current_max_tokens", "total": "tgi_batch_max_total_tokens"},
    "sglang": {"running": "sglang:num_running_reqs", "waiting": "sglang:num_queue_reqs",
               "usage": "sglang:token_usage"},
}

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'
                       r'(?:\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                       r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def fixture(*parts):
    with open(os.path.join(FIXTURES, *parts), "rb") as f:
        return f.read().decode()


def chat(max_tokens, stream=True, **kw):
    b = {"messages": MSGS, "stream": stream, "max_tokens": max_tokens}
    b.update(kw)
    return b


def run_sim(*args):
    return start_sim(*[str(a) for a in args])


def stop_clean(sim):
    rc = sim.stop()
    err = sim.stderr()
    expect(rc == 0, "pitot-sim exit status %r: %s" % (rc, err[-400:]))
    expect("Sanitizer" not in err and "runtime error" not in err, "sanitizer report: %s" % err[-800:])


# ---------------------------------------------------------------- /metrics text

def parse_exposition(text):
    """Families in order: [{name, type, help, samples: [(name, {labels}, value)]}].
    Every line must be a HELP, a TYPE, a sample matching SAMPLE_RE with a
    float value, or (between families) blank."""
    fams, cur = [], None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line == "":
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, name, rest = line[2:6], line.split(" ")[2], line.split(" ", 3)[3]
            if cur is None or cur["name"] != name or (kind == "HELP" and cur["help"] is not None) \
                    or cur["type"] is not None:
                cur = {"name": name, "type": None, "help": None, "samples": []}
                fams.append(cur)
            cur["help" if kind == "HELP" else "type"] = rest
            continue
        expect(not line.startswith("#"), "line %d: stray comment %r" % (n, line))
        m = SAMPLE_RE.match(line)
        expect(m is not None, "line %d does not parse: %r" % (n, line[:160]))
        v = float(m.group(3))  # accepts +Inf, NaN and prometheus_client's e+010
        expect(cur is not None and cur["type"] is not None, "line %d: sample before any TYPE" % n)
        cur["samples"].append((m.group(1), dict(LABEL_RE.findall(m.group(2) or "")), v))
    expect(text.endswith("\n"), "no final newline")
    return fams


def sample_family(fam, sample):
    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum")}
    return any(sample == fam["name"] + s for s in suffixes.get(fam["type"], ("",)))


def check_histograms(fams):
    """Buckets cumulative and +Inf == _count, per label set."""
    for f in fams:
        if f["type"] != "histogram":
            continue
        series = {}
        for name, lab, v in f["samples"]:
            key = tuple(sorted((k, x) for k, x in lab.items() if k != "le"))
            s = series.setdefault(key, {"buckets": [], "count": None})
            if name.endswith("_bucket"):
                s["buckets"].append((float(lab["le"]), v))
            elif name.endswith("_count"):
                s["count"] = v
        for key, s in series.items():
            les = [le for le, _ in s["buckets"]]
            counts = [c for _, c in s["buckets"]]
            expect(les == sorted(les) and les[-1] == math.inf, "%s%r: bounds %r" % (f["name"], key, les[-3:]))
            expect(all(a <= b for a, b in zip(counts, counts[1:])), "%s%r: buckets not cumulative" % (f["name"], key))
            expect(counts[-1] == s["count"], "%s%r: +Inf %r != _count %r" % (f["name"], key, counts[-1], s["count"]))


def compare_with_fixture(flavor, text):
    """Family list, types and HELP texts equal to the fixture's, in the same
    order; every sample name belongs to its family and carries a label-name
    set the fixture has for that sample name; TGI's blank-line layout."""
    fx_text = fixture(flavor, "metrics.txt")
    fx, got = parse_exposition(fx_text), parse_exposition(text)
    fx_names = [f["name"] for f in fx]
    got_names = [f["name"] for f in got]
    expect(set(got_names) <= set(fx_names), "families not in the fixture: %r" % sorted(set(got_names) - set(fx_names)))
    expect(got_names == fx_names, "family order differs; first difference at %r" %
           (next(((a, b) for a, b in zip(got_names, fx_names) if a != b), (len(got_names), len(fx_names))),))
    fx_labels = {}
    for f in fx:
        for name, lab, _ in f["samples"]:
            fx_labels.setdefault(name, set()).add(frozenset(lab))
    for f, ff in zip(got, fx):
        expect(f["type"] == ff["type"] and f["help"] == ff["help"],
               "%s: TYPE/HELP %r/%r, fixture %r/%r" % (f["name"], f["type"], f["help"], ff["type"], ff["help"]))
        for name, lab, _ in f["samples"]:
            expect(sample_family(f, name), "%s: sample %s outside its family" % (f["name"], name))
            expect(frozenset(lab) in fx_labels.get(name, ()),
                   "%s: label names %r not in the fixture's %r" % (name, sorted(lab), fx_labels.get(name)))
    for fam in LOAD[flavor].values():
        expect(fam in got_names, "load family %s missing" % fam)
    check_histograms(got)
    if flavor == "tgi":
        # metrics-exporter-prometheus: a blank line after every family
        blocks = text.split("\n\n")
        expect(text.endswith("\n\n") and blocks[-1] == "", "no blank line after the last family")
        for b in blocks[:-1]:
            expect(b.count("# TYPE ") == 1 and b.startswith("# "), "block is not one family: %r" % b[:80])
        expect(len(blocks) - 1 == len(got), "%d blocks for %d families" % (len(blocks) - 1, len(got)))
    else:
        expect("\n\n" not in text, "blank line in prometheus_client output")
    if flavor == "vllm":
        # the number forms prometheus_client writes
        expect(re.search(r"^process_virtual_memory_bytes \d\.\d+e\+010$", text, re.M), "no e+010 quirk")
        expect(re.search(r'_bucket\{engine="0",le="1\.0",model_name=', text), "le not sorted between labels")
    return got


def promtool(text):
    """promtool's findings (one per line) and exit status."""
    out = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    lines = (out.stdout + out.stderr).decode().strip().splitlines()
    return set(lines), out.returncode


def values(fams):
    """{(sample name, sorted label items): value}"""
    return {(n, tuple(sorted(l.items()))): v for f in fams for n, l, v in f["samples"]}


def value(text, name, **labels):
    v = metric_value(text, name, **labels)
    expect(v is not None, "%s%r missing" % (name, labels))
    return v


# ---------------------------------------------------------------- SSE

def fixture_events(*parts):
    return [e for e in fixture(*parts).split("\n\n") if e]


class Pairs(list):
    pass


def pairs(s):
    return json.loads(s, object_pairs_hook=Pairs)


def shape(o):
    """Key order, recursively; scalar values ignored."""
    if isinstance(o, Pairs):
        return ("{", tuple((k, shape(v)) for k, v in o))
    if isinstance(o, list):
        return ("[", shape(o[0]) if o else None)
    return "."


def get(o, key):
    for k, v in o:
        if k == key:
            return v
    raise KeyError(key)


def without(o, key):
    return Pairs([(k, v) for k, v in o if k != key])


def stream(port, body, path="/v1/chat/completions", keep=False):
    """One streamed request; returns (response, [event text]) and, with keep,
    the socket and reader for a next request."""
    s = connect(port, 20)
    s.sendall(build_request("POST", path, body, port=port))
    rd = Reader(s)
    r = rd.read()
    evs = [ev.decode() for _, ev in r.events]
    for ev in evs:
        expect(ev.endswith("\n\n") and "\r" not in ev, "event framing %r" % ev[-20:])
    evs = [ev[:-2] for ev in evs]
    if keep:
        return r, evs, s, rd
    s.close()
    return r, evs


def data(ev, prefix):
    expect(ev.startswith(prefix), "event %r does not start with %r" % (ev[:30], prefix))
    d = ev[len(prefix):]
    return d if d == "[DONE]" else pairs(d)


def content_events(datas):
    """Chunks whose choices[0].delta has a non-empty content: output tokens."""
    n = 0
    for d in datas:
        if isinstance(d, Pairs) and dict(d).get("choices"):
            delta = dict(get(d, "choices")[0]).get("delta")
            if delta is not None and dict(delta).get("content"):
                n += 1
    return n


def usage_of(datas):
    u = [d for d in datas if isinstance(d, Pairs) and dict(d).get("usage")]
    expect(len(u) <= 1, "%d chunks with usage" % len(u))
    return u[0] if u else None


# ---------------------------------------------------------------- checks

def t_metrics_layout(flavor):
    sim = run_sim("--flavor", flavor, *FAST)
    fx_findings, fx_rc = promtool(fixture(flavor, "metrics.txt"))
    expect(fx_rc in (0, 3) and not any("error" in l for l in fx_findings), "promtool on the fixture: %r" % fx_findings)
    idle = metrics(sim.port)
    compare_with_fixture(flavor, idle)
    # traffic: histograms and counters move, the layout stays
    for body in (chat(5), chat(4, stream=False), chat(3, stream_options={"include_usage": True})):
        r = request(sim.port, "POST", "/v1/chat/completions", body)
        expect(r.status == 200 and r.complete, "status %r" % r.status)
    busy = metrics(sim.port)
    fams = compare_with_fixture(flavor, busy)
    expect(values(fams) != values(parse_exposition(idle)), "nothing moved with traffic")
    for text in (idle, busy):
        findings, rc = promtool(text)
        expect(rc in (0, 3), "promtool exit %d: %r" % (rc, sorted(findings)[:5]))
        expect(not any("error" in l.lower() for l in findings), "promtool errors: %r" % sorted(findings)[:5])
        expect(findings <= fx_findings, "promtool findings the fixture does not have: %r"
               % sorted(findings - fx_findings)[:5])
    stop_clean(sim)


def t_metrics_number_forms(flavor):
    """Each value and bound written as the server's library writes that number."""
    sim = run_sim("--flavor", flavor, *FAST)
    request(sim.port, "POST", "/v1/chat/completions", chat(6, stream=False))
    text = metrics(sim.port)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        nums = [m.group(3)] + [v for k, v in LABEL_RE.findall(m.group(2) or "") if k in ("le", "quantile")]
        for n in nums:
            want = rust_fmt(float(n)) if flavor == "tgi" else go_fmt(float(n))
            expect(n == want, "%r written %r, want %r" % (line[:100], n, want))
    if flavor == "tgi":
        fx = fixture("tgi", "metrics.txt")
        want = re.findall(r'tgi_request_queue_duration_bucket\{le="([^"]+)"\}', fx)
        got = re.findall(r'tgi_request_queue_duration_bucket\{le="([^"]+)"\}', text)
        expect(got == want, "duration bounds %r" % got[:4])
        expect(re.search(r"^tgi_request_success 1$", text, re.M), "integer counters")
    stop_clean(sim)


def go_fmt(d):
    """prometheus_client floatToGoString."""
    if d == math.inf:
        return "+Inf"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:
        return "%se+0%d" % (("%s.%s%s" % (s[0], s[1:dot], s[dot + 1:])).rstrip("0."), dot - 1)
    return s


def rust_fmt(d):
    """Rust's {} for an f64: shortest digits, never an exponent, no ".0"."""
    if d == math.inf:
        return "+Inf"
    from decimal import Decimal
    s = format(Decimal(repr(d)), "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def t_load_values(flavor):
    """--slots 1 and two streams: one running, one waiting while the first
    streams; both zero afterwards; counters follow the traffic."""
    n = 20
    ctx = 2048
    sim = run_sim("--flavor", flavor, "--slots", 1, "--ctx", ctx, "--tokens-per-s", 50,
                    "--prefill-tokens-per-s", 100000)
    body = chat(n, stream_options={"include_usage": True})
    a = connect(sim.port)
    a.sendall(build_request("POST", "/v1/chat/completions", body, port=sim.port))
    ra = Reader(a)
    ha = ra.read(max_events=3)
    expect(ha.status == 200 and len(ha.events) >= 3, "first stream did not start")
    b = connect(sim.port)
    b.sendall(build_request("POST", "/v1/chat/completions", body, port=sim.port))
    time.sleep(0.1)
    during = metrics(sim.port)
    stats = json.loads(request(sim.port, "GET", "/sim/stats").body)
    load = LOAD[flavor]
    expect(value(during, load["running"]) == 1, "running %r" % value(during, load["running"]))
    expect(value(during, load["waiting"]) == 1, "waiting %r" % value(during, load["waiting"]))
    expect(stats["busy"] == 1 and stats["in_queue"] == 1, "/sim/stats %r" % stats)
    if flavor == "vllm":
        expect(value(during, "vllm:num_requests_waiting_by_reason", reason="capacity") == 1, "by_reason")
    # drain both streams to their ends (A past the events already parsed)
    ra_rest = bytes(ra.buf)
    a.settimeout(10)
    while b"data: [DONE]" not in ra_rest and b"data:[DONE]" not in ra_rest:
        d = a.recv(65536)
        expect(d, "stream A cut")
        ra_rest += d
    rb = Reader(b).read()
    expect(rb.status == 200 and rb.complete, "second stream incomplete")
    datas = [data(ev.decode()[:-2], "data:" if flavor == "tgi" else "data: ")
             for _, ev in rb.events if not ev.startswith(b":")]
    u = dict(get(usage_of(datas), "usage"))
    prompt = u["prompt_tokens"]
    expect(u["completion_tokens"] == n, "usage %r" % u)
    if "usage" in load:
        used = value(during, load["usage"])
        lo, hi = prompt / ctx, (prompt + n) / ctx
        expect(lo <= used <= hi, "%s %r outside [%r, %r]" % (load["usage"], used, lo, hi))
    else:
        used, total = value(during, load["used"]), value(during, load["total"])
        expect(total == ctx and prompt <= used <= prompt + n, "tokens %r of %r (prompt %d)" % (used, total, prompt))
    time.sleep(0.05)
    after = metrics(sim.port)
    for fam in load.values():
        if fam != load.get("total"):
            expect(value(after, fam) == 0, "%s %r after the streams" % (fam, value(after, fam)))
    if flavor == "vllm":
        expect(value(after, "vllm:generation_tokens_total") == 2 * n, "generation_tokens_total")
        expect(value(after, "vllm:prompt_tokens_total") == 2 * prompt, "prompt_tokens_total")
        expect(value(after, "vllm:request_success_total", finished_reason="length") == 2, "request_success")
        expect(value(after, "vllm:e2e_request_latency_seconds_count") == 2, "e2e count")
        expect(value(after, "vllm:inter_token_latency_seconds_count") == 2 * (n - 1), "itl count")
        q = value(after, "vllm:request_queue_time_seconds_sum")
        expect(q >= n / 50 * 0.8, "queue time sum %r for the second request" % q)
    elif flavor == "tgi":
        expect(value(after, "tgi_request_success") == 2 and value(after, "tgi_request_count") == 2, "requests")
        expect(value(after, "tgi_batch_inference_success", method="prefill") == 2, "prefills")
        expect(value(after, "tgi_batch_inference_success", method="decode") == 2 * (n - 1), "decodes")
        expect(value(after, "tgi_request_generated_tokens_sum") == 2 * n, "generated tokens")
    else:
        expect(value(after, "sglang:generation_tokens_total") == 2 * n, "generation_tokens_total")
        expect(value(after, "sglang:prompt_tokens_total") == 2 * prompt, "prompt_tokens_total")
        expect(value(after, "sglang:num_requests_total") == 2, "num_requests_total")
        expect(value(after, "sglang:queue_time_seconds_count") == 2, "queue_time count")
    a.close()
    b.close()
    stop_clean(sim)


def openai_stream_checks(flavor, port):
    """vLLM's layout (SGLang: the same without system_fingerprint)."""
    fx_u = [pairs(e[6:]) for e in fixture_events("vllm", "stream_chat_include_usage.sse")[:-1]]
    fx_n = [pairs(e[6:]) for e in fixture_events("vllm", "stream_chat_no_usage.sse")[:-1]]
    if flavor == "sglang":
        fx_u = [without(d, "system_fingerprint") for d in fx_u]
        fx_n = [without(d, "system_fingerprint") for d in fx_n]
    n = 7
    for include, fx in ((True, fx_u), (False, fx_n)):
        body = chat(n, stream_options={"include_usage": True}) if include else chat(n)
        r, evs, s, rd = stream(port, body, keep=True)
        expect(r.status == 200 and r.complete, "status %r complete %r" % (r.status, r.complete))
        expect(r.header("content-type") == "text/event-stream; charset=utf-8", r.headers)
        datas = [data(ev, "data: ") for ev in evs]
        expect(datas[-1] == "[DONE]", "last event %r" % evs[-1])
        chunks = datas[:-1]
        expect(shape(chunks[0]) == shape(fx[0]), "role chunk %r" % evs[0][:200])
        expect(get(get(chunks[0], "choices")[0], "delta") == [("role", "assistant"), ("content", "")], "role delta")
        for d in chunks[1:n]:
            expect(shape(d) == shape(fx[1]), "content chunk %r" % (d,))
        ids = {get(d, "id") for d in chunks}
        expect(len(ids) == 1, "ids %r" % ids)
        if flavor == "vllm":
            expect(re.fullmatch(r"chatcmpl-[0-9a-f]{16}", ids.pop()), "vLLM id form")
        # max_tokens reached: the last token's chunk carries "length"
        last = chunks[n]
        expect(get(get(last, "choices")[0], "finish_reason") == "length", "finish %r" % (last,))
        if include:
            expect(shape(last) == shape(fx[-2]), "finish chunk %r vs %r" % (shape(last), shape(fx[-2])))
            expect(len(chunks) == n + 2 and shape(chunks[-1]) == shape(fx[-1]), "usage chunk %r" % evs[-2])
            expect(get(chunks[-1], "choices") == [], "usage chunk has choices")
            u = dict(get(usage_of(chunks), "usage"))
            expect(u["completion_tokens"] == n and u["total_tokens"] == u["prompt_tokens"] + n, "usage %r" % u)
        else:
            expect(len(chunks) == n + 1 and shape(last) == shape(fx[-1]), "finish chunk %r" % evs[-2][:300])
            expect(usage_of(chunks) is None, "usage without include_usage")
        expect(content_events(chunks) == n, "%d content events for max_tokens %d" % (content_events(chunks), n))
        # real vLLM and SGLang keep the connection: a second request on it
        s.sendall(build_request("GET", "/health", port=port))
        h = rd.read()
        expect(h.status == 200 and not h.closed, "no keep-alive after the stream")
        s.close()


def t_stream_layout(flavor):
    sim = run_sim("--flavor", flavor, *FAST)
    if flavor in ("vllm", "sglang"):
        openai_stream_checks(flavor, sim.port)
    else:
        tgi_stream_checks(sim.port)
    stop_clean(sim)


def tgi_stream_checks(port):
    fx = fixture_events("tgi", "stream_chat.sse")
    expect(fx[0] == ":", "fixture opens with %r" % fx[0])
    fxd = [pairs(e[5:]) for e in fx[1:-1]]
    n = 6
    for include in (True, False):
        body = chat(n, stream_options={"include_usage": True}) if include else chat(n)
        r, evs, s, rd = stream(port, body, keep=True)
        expect(r.status == 200 and r.complete, "status %r" % r.status)
        expect(r.header("content-type") == "text/event-stream", r.headers)
        expect(evs[0] == ":", "first event %r" % evs[0])
        datas = [data(ev, "data:") for ev in evs[1:]]
        expect(not any(ev.startswith("data: ") for ev in evs), "data: with a space")
        expect(evs[-1] == "data:[DONE]", "last event %r" % evs[-1])
        chunks = datas[:-1]
        for d in chunks[:n]:
            expect(shape(d) == shape(fxd[0]), "chunk %r" % (d,))
            ch = get(d, "choices")[0]
            expect(get(get(ch, "delta"), "role") == "assistant" and get(d, "usage") is None, "role/usage %r" % (d,))
            expect(get(d, "id") == "", "id %r" % get(d, "id"))
        expect(get(get(chunks[n - 1], "choices")[0], "finish_reason") == "length", "finish reason")
        if include:
            expect(len(chunks) == n + 1 and shape(chunks[-1]) == shape(fxd[-1]), "usage chunk %r" % evs[-2])
            u = dict(get(chunks[-1], "usage"))
            expect(u["completion_tokens"] == n, "usage %r" % u)
        else:
            expect(len(chunks) == n and usage_of(chunks) is None, "usage chunk without include_usage")
        expect(content_events(chunks) == n, "%d content events" % content_events(chunks))
        s.sendall(build_request("GET", "/health", port=port))
        h = rd.read()
        expect(h.status == 200 and not h.closed, "no keep-alive after the stream")
        s.close()
    # native /generate_stream with details
    fxg = [pairs(e[5:]) for e in fixture_events("tgi", "generate_stream.sse")]
    r, evs = stream(port, {"inputs": "What is deep learning?", "parameters": {"max_new_tokens": 5, "details": True}},
                    path="/generate_stream")
    expect(r.status == 200 and r.complete and len(evs) == 5, "%d native events" % len(evs))
    ds = [data(ev, "data:") for ev in evs]
    expect([get(d, "index") for d in ds] == [1, 2, 3, 4, 5], "indexes")
    for d in ds[:-1]:
        expect(shape(d) == shape(fxg[0]), "native event %r" % (d,))
    expect(shape(ds[-1]) == shape(fxg[-1]), "last native event %r" % evs[-1])
    det = dict(get(ds[-1], "details"))
    expect(det["finish_reason"] == "length" and det["generated_tokens"] == 5, "details %r" % det)
    text = "".join(get(get(d, "token"), "text") for d in ds)
    expect(get(ds[-1], "generated_text") == text, "generated_text %r vs %r" % (get(ds[-1], "generated_text"), text))


def t_nonstream_and_routes(flavor):
    sim = run_sim("--flavor", flavor, "--ctx", 4096, *FAST)
    p = sim.port
    r = request(p, "POST", "/v1/chat/completions", chat(5, stream=False))
    d = pairs(r.body.decode())
    expect(r.status == 200 and r.header("content-type") == "application/json", "status %r %r" % (r.status, r.headers))
    u = dict(get(d, "usage"))
    msg = dict(get(get(d, "choices")[0], "message"))
    expect(u["completion_tokens"] == 5 and msg["content"] and msg["role"] == "assistant", "body %r" % d)
    expect(get(d, "object") == "chat.completion", "object")
    h = request(p, "GET", "/health")
    expect(h.status == 200, "health %r" % h.status)
    if flavor == "vllm":
        expect(h.body == b"" and h.header("content-length") == "0", "vLLM health body %r" % h.body)
    for path in ("/props", "/slots"):
        expect(request(p, "GET", path).status == 404, "%s is not 404" % path)
    m = json.loads(request(p, "GET", "/v1/models").body)
    card = m["data"][0]
    expect(m["object"] == "list" and card["object"] == "model", "models %r" % m)
    if flavor == "tgi":
        expect(list(card) == ["id", "object", "created", "owned_by"] and card["owned_by"] == card["id"], card)
    else:
        expect(card["owned_by"] == flavor and card["root"] == card["id"] and card["max_model_len"] == 4096, card)
        expect((flavor == "vllm") == ("permission" in card), "permission list %r" % card)
    # completions stream, OpenAI-style
    r, evs = stream(p, {"prompt": "Once upon a time", "max_tokens": 4, "stream": True}, path="/v1/completions")
    prefix = "data:" if flavor == "tgi" else "data: "
    ds = [data(ev, prefix) for ev in evs if ev != ":"]
    texts = [dict(get(d, "choices")[0])["text"] for d in ds[:-1]]
    expect(ds[-1] == "[DONE]" and len(texts) == 4 and all(texts), "completions %r" % evs)
    stop_clean(sim)


def t_errors(flavor):
    sim = run_sim("--flavor", flavor, "--ctx", 64, *FAST)
    p = sim.port
    bad = request(p, "POST", "/v1/chat/completions", "{not json")
    missing = request(p, "POST", "/v1/chat/completions", {"model": "x", "stream": True})
    long_ = request(p, "POST", "/v1/chat/completions", chat(8, messages=[{"role": "user", "content": "w " * 400}]))
    unknown = request(p, "GET", "/v1/nope")
    if flavor == "vllm":
        for r in (bad, missing, long_):
            e = json.loads(r.body, object_pairs_hook=Pairs)
            expect(r.status == 400 and [k for k, _ in e] == ["error"], "%r %r" % (r.status, r.body[:200]))
            expect([k for k, _ in get(e, "error")] == ["message", "type", "param", "code"], "error keys %r" % e)
            expect(get(get(e, "error"), "code") == 400, "code")
        expect("'messages'" in json.loads(missing.body)["error"]["message"], missing.body)
        expect(unknown.status == 404 and json.loads(unknown.body) == {"detail": "Not Found"}, unknown.body)
    elif flavor == "sglang":
        for r in (bad, missing, long_):
            e = json.loads(r.body, object_pairs_hook=Pairs)
            expect(r.status == 400 and [k for k, _ in e] == ["object", "message", "type", "param", "code"],
                   "%r %r" % (r.status, r.body[:200]))
            expect(get(e, "object") == "error" and get(e, "code") == 400, "body %r" % r.body)
        expect(unknown.status == 404, unknown.status)
    else:
        # axum's extractor rejections are plain text; TGI's own errors JSON
        expect(bad.status == 400 and bad.header("content-type").startswith("text/plain")
               and bad.body.startswith(b"Failed to parse the request body as JSON"), bad.body)
        expect(missing.status == 422 and b"missing field `messages`" in missing.body, missing.body)
        e = json.loads(long_.body, object_pairs_hook=Pairs)
        expect(long_.status == 422 and [k for k, _ in e] == ["error", "error_type"], long_.body)
        expect(get(e, "error_type") == "validation" and get(e, "error").startswith("Input validation error"), e)
        expect(unknown.status == 404 and unknown.body == b"", unknown.body)
        expect(value(metrics(p), "tgi_request_failure", err="validation") == 1, "tgi_request_failure")
    st = json.loads(request(p, "GET", "/sim/stats").body)
    expect(st["requests"] == 3 and st["completed"] == 0, "stats %r" % st)
    stop_clean(sim)


def error_shape_ok(flavor, r, status):
    e = json.loads(r.body, object_pairs_hook=Pairs)
    keys = [k for k, _ in e]
    if flavor == "vllm":
        return r.status == status and keys == ["error"] and get(get(e, "error"), "code") == status
    if flavor == "sglang":
        return r.status == status and keys == ["object", "message", "type", "param", "code"]
    return r.status == status and keys == ["error", "error_type"]


def t_faults(flavor):
    """--fail-status, --loading-ms and --die-after behave as with llama.cpp,
    in the flavor's own shapes."""
    sim = run_sim("--flavor", flavor, "--fail-status", 503, *FAST)
    r = request(sim.port, "POST", "/v1/chat/completions", chat(4))
    expect(error_shape_ok(flavor, r, 503), "fail-status answer %r %r" % (r.status, r.body))
    expect(request(sim.port, "GET", "/health").status == 200, "health under --fail-status")
    stop_clean(sim)

    sim = run_sim("--flavor", flavor, "--loading-ms", 400, *FAST)
    for path in ("/health", "/v1/models"):
        r = request(sim.port, "GET", path)
        expect(error_shape_ok(flavor, r, 503), "%s while loading: %r %r" % (path, r.status, r.body))
    r = request(sim.port, "POST", "/v1/chat/completions", chat(4))
    expect(error_shape_ok(flavor, r, 503), "completion while loading: %r" % r.status)
    deadline = time.monotonic() + 3
    while request(sim.port, "GET", "/health").status != 200:
        expect(time.monotonic() < deadline, "still loading after 3 s")
        time.sleep(0.05)
    stop_clean(sim)

    sim = run_sim("--flavor", flavor, "--die-after", 3, *FAST)
    r, evs = stream(sim.port, chat(10))
    expect(r.status == 200 and not r.complete, "stream completed despite --die-after")
    prefix = "data:" if flavor == "tgi" else "data: "
    ds = [data(ev, prefix) for ev in evs if ev != ":"]
    expect(content_events(ds) == 3 and "[DONE]" not in ds, "%d content events before dying" % content_events(ds))
    st = json.loads(request(sim.port, "GET", "/sim/stats").body)
    expect(st["died"] == 1 and st["completed"] == 0, "stats %r" % st)
    stop_clean(sim)


def main():
    if not os.path.exists(PROMTOOL):
        print("FAIL setup: %s not found" % PROMTOOL)
        sys.exit(1)
    t0 = time.monotonic()
    for flavor in ("vllm", "tgi", "sglang"):
        check("%s: /metrics families, HELP/TYPE, labels and layout match the fixture; promtool as clean as it"
              % flavor, lambda: t_metrics_layout(flavor))
        check("%s: /metrics numbers written as the server's library writes them" % flavor,
              lambda: t_metrics_number_forms(flavor))
        check("%s: load gauges follow slots and queue (1 running, 1 waiting, then 0/0); counters follow traffic"
              % flavor, lambda: t_load_values(flavor))
        check("%s: chat stream layout and key order as the fixture, usage, content events == max_tokens, keep-alive"
              % flavor, lambda: t_stream_layout(flavor))
        check("%s: non-streamed chat, /health, /v1/models, completions stream, no /props or /slots" % flavor,
              lambda: t_nonstream_and_routes(flavor))
        check("%s: error bodies in the server's shape" % flavor, lambda: t_errors(flavor))
        check("%s: --fail-status, --loading-ms, --die-after" % flavor, lambda: t_faults(flavor))
    print("# %.1f s" % (time.monotonic() - t0))
    finish()


if __name__ == "__main__":
    main()
