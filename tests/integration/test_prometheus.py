"""pitot scraped by a real Prometheus (/usr/bin/prometheus): the TTFT
histogram gives back the simulator's configured delay through
histogram_quantile, and every metric family pitot exposes is ingested."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD, HOST, access_log, chat_body, check, finish, metrics, prom_query,  # noqa: E402
                     request, start_pitot, start_prometheus, start_sim, stop_pitot_clean)

PROMPT_TOKENS = 150
PREFILL_TOKENS_PER_S = 1000          # TTFT = 150 / 1000 s, nothing queues
DELAY_S = PROMPT_TOKENS / PREFILL_TOKENS_PER_S
REQUESTS = 20
TTFT = "pitot_time_to_first_token_seconds"


def run_load(pitot, requests, concurrency=2):
    jf = "/tmp/pitot-load-prom-%d.json" % os.getpid()
    try:
        out = subprocess.run([os.path.join(BUILD, "pitot-load"), "--url",
                              "http://%s:%d/v1/chat/completions" % (HOST, pitot.port),
                              "--concurrency", str(concurrency), "--requests", str(requests),
                              "--prompt-tokens", str(PROMPT_TOKENS), "--max-tokens", "4",
                              "--json", jf, "--quiet"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        with open(jf) as f:
            done = [json.loads(l) for l in f if l.strip()]
    finally:
        if os.path.exists(jf):
            os.unlink(jf)
    bad = {d["id"] for d in done if d["status"] != 200 or d["error"] is not None}
    if len(done) != requests or bad:
        why = [(l["id"], l["status"], l["error"]) for l in access_log(pitot) if l["id"] in bad]
        raise AssertionError("%d of %d requests done; failed (pitot access log): %s" % (
            len(done), requests, why or sorted(bad)))
    return done


def scalar(data):
    """The one value of an instant-vector result, or None if it is empty."""
    assert data["resultType"] == "vector", data
    if not data["result"]:
        return None
    assert len(data["result"]) == 1, data["result"]
    return float(data["result"][0]["value"][1])


def wait_query(prom, expr, want, timeout=15.0):
    """Polls until `expr` evaluates to `want`; returns the last value seen."""
    deadline = time.time() + timeout
    while True:
        v = scalar(prom_query(prom.port, expr))
        if v == want or time.time() > deadline:
            return v
        time.sleep(0.2)


def targets(prom):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open("http://%s:%d/api/v1/targets" % (HOST, prom.port), timeout=10) as r:
        reply = json.loads(r.read())
    assert reply["status"] == "success", reply
    return reply["data"]["activeTargets"]


def parse_exposition(text):
    """({family: type}, {sample name: [labels dict]}) of a text exposition."""
    families, series = {}, {}
    for line in text.splitlines():
        m = re.match(r"^# TYPE (\S+) (\S+)$", line)
        if m:
            families[m.group(1)] = m.group(2)
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$', line)
        assert m, "unparsable sample line %r" % line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        series.setdefault(m.group(1), []).append(labels)
    return families, series


def sample_names(family, kind):
    if kind == "histogram":
        return [family + "_bucket", family + "_sum", family + "_count"]
    if kind == "summary":
        return [family, family + "_sum", family + "_count"]
    return [family]


def series_key(labels):
    """Labels as pitot exposed them, minus what Prometheus adds; le compared
    as a number so "1" and "1.0" are the same bucket."""
    out = []
    for k, v in labels.items():
        if k in ("__name__", "job", "instance"):
            continue
        if k in ("le", "quantile"):
            v = float(v)
        out.append((k, v))
    return tuple(sorted(out))


def ttft_bounds(text):
    """The finite `le` bounds of pitot's TTFT histogram, ascending."""
    les = set()
    for line in text.splitlines():
        m = re.match(r'^%s_bucket\{.*\ble="([^"]+)"' % TTFT, line)
        if m and m.group(1) != "+Inf":
            les.add(float(m.group(1)))
    assert les, "no %s_bucket samples in /metrics" % TTFT
    return sorted(les)


def start_stack(config=None):
    sim = start_sim("--slots", "16", "--prefill-tokens-per-s", str(PREFILL_TOKENS_PER_S),
                    "--tokens-per-s", "2000")
    pitot = start_pitot([sim.port], config=config)
    prom = start_prometheus(["%s:%d" % (HOST, pitot.port)], scrape_interval="1s")
    return sim, pitot, prom


def t_histogram_quantile_matches_delay():
    sim, pitot, prom = start_stack()
    run_load(pitot, REQUESTS)
    n = wait_query(prom, "sum(%s_count)" % TTFT, REQUESTS)
    assert n == REQUESTS, "Prometheus saw %s TTFT observations, expected %d" % (n, REQUESTS)

    # The bucket holding the delay is (bounds[i-1], bounds[i]]; accept the
    # median anywhere from the bucket below it to the bucket above it.
    bounds = ttft_bounds(metrics(pitot.port))
    i = next((j for j, b in enumerate(bounds) if DELAY_S <= b), len(bounds))
    lo = bounds[i - 2] if i >= 2 else 0.0
    hi = bounds[i + 1] if i + 1 < len(bounds) else float("inf")
    q = scalar(prom_query(prom.port, "histogram_quantile(0.5, sum by (le) (%s_bucket))" % TTFT))
    assert q is not None, "histogram_quantile returned no sample"
    print("  TTFT median by histogram_quantile %.4f s; configured delay %.3f s; accepted (%g, %g]"
          % (q, DELAY_S, lo, hi), flush=True)
    assert lo < q <= hi, "median %.4f s outside (%g, %g] around the %.3f s delay" % (q, lo, hi, DELAY_S)

    up = prom_query(prom.port, 'up{job="pitot"}')["result"]
    assert len(up) == 1 and up[0]["value"][1] == "1", up
    tg = [t for t in targets(prom) if t["labels"].get("job") == "pitot"]
    assert len(tg) == 1, tg
    assert tg[0]["health"] == "up" and tg[0]["lastError"] == "", tg[0]
    stop_pitot_clean(pitot)


def t_every_family_ingested():
    # health checks off the clock, so the dead backend is tried, not skipped
    sim, pitot, prom = start_stack(config="health:\n  interval: 60s\n")
    run_load(pitot, 4)
    # one failed request so the error counter has a series too
    sim.stop()
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=4))
    assert r.status in (502, 503), r.status

    families, series = parse_exposition(metrics(pitot.port))
    assert families, "no # TYPE lines in /metrics"
    # Families this scenario must fill; others (queue, shedding, cache
    # pressure, which a llama.cpp backend has none of) are checked when present.
    required = {"pitot_requests_total", "pitot_time_to_first_token_seconds",
                "pitot_inter_token_latency_seconds", "pitot_time_per_output_token_seconds",
                "pitot_e2e_request_latency_seconds", "pitot_prompt_tokens_total",
                "pitot_completion_tokens_total", "pitot_cached_tokens_total",
                "pitot_finish_reason_total", "pitot_refusals_total", "pitot_stream_stalls_total",
                "pitot_client_cancels_total", "pitot_upstream_errors_total",
                "pitot_requests_in_flight", "pitot_backend_up",
                "pitot_backend_requests_running", "pitot_backend_requests_waiting",
                "pitot_backend_scrape_age_seconds", "pitot_backend_scrapes_total",
                "pitot_backend_ejected", "pitot_queue_depth", "pitot_slo_requests_total"}
    assert required <= set(families), sorted(required - set(families))
    want = {}
    for fam, kind in families.items():
        for name in sample_names(fam, kind):
            if fam in required:
                assert series.get(name), "pitot exposes no %s samples for %s %s" % (name, kind, fam)
            if series.get(name):
                want[name] = {series_key(l) for l in series[name]}

    def missing():
        out = {}
        for name, keys in want.items():
            got = {series_key(s["metric"]) for s in prom_query(prom.port, name)["result"]}
            if not got or not keys <= got:
                out[name] = sorted(keys - got)[:2]
        return out

    deadline = time.time() + 10.0
    miss = missing()
    while miss and time.time() < deadline:
        time.sleep(0.25)
        miss = missing()
    assert not miss, "not in Prometheus (name: first missing series): %s" % miss
    print("  %d families, %d sample names, %d series all in Prometheus"
          % (len(families), len(want), sum(len(k) for k in want.values())), flush=True)
    stop_pitot_clean(pitot)


check("a real Prometheus scrapes pitot; TTFT median within one bucket of the simulator's delay",
      t_histogram_quantile_matches_delay)
check("Prometheus ingests every pitot metric family", t_every_family_ingested)
finish()
