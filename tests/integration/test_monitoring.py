"""The monitoring files in conf/ against the real thing: promtool checks the
rules, runs their unit tests (conf/alerts_test.yml) and checks
conf/prometheus.yml; then a real Prometheus, configured by
conf/prometheus.yml itself (targets and intervals rewritten for loopback),
scrapes pitot and two simulated llama.cpp replicas directly under two-tier
load with refusals, stalls, sheds, cancels and an upstream error, evaluates
conf/alerts.yml without errors, and every PromQL expression of the Grafana
dashboard and of the rules returns data: no typo'd metric or label survives."""

import atexit
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD, HOST, chat_body, check, finish, free_port, prom_api,  # noqa: E402
                     prom_query, request, start_pitot, start_prometheus_config, start_sim,
                     stop_pitot_clean, wait_for)

CONF = "conf"
PROM_YML = os.path.join(CONF, "prometheus.yml")
ALERTS_YML = os.path.join(CONF, "alerts.yml")
ALERTS_TEST_YML = os.path.join(CONF, "alerts_test.yml")
DASHBOARD = os.path.join(CONF, "grafana", "dashboards", "pitot.json")
PROVISIONING = [os.path.join(CONF, "grafana", "provisioning", "datasources", "prometheus.yml"),
                os.path.join(CONF, "grafana", "provisioning", "dashboards", "pitot.yml")]
PROMTOOL = "/usr/bin/promtool"
RATE_INTERVAL = "1m"      # $__rate_interval: Prometheus scrapes every 1 s here

# Two tiers with SLO targets; "default" holds few requests for a short time,
# so it sheds under the load below. Their TTFT targets are restated for the
# alerts and the dashboard as an operator does (TIER_TARGETS, a rule file
# beside conf/alerts.yml, in the form of its commented example).
PITOT_CONFIG = """\
models: [small, big]
tier_header: X-Pitot-Tier
tiers:
  - name: default
    slo_ttft: 10s
    slo_tpot: 1s
    max_queue: 2
    max_wait: 100ms
  - name: premium
    priority: 10
    slo_ttft: 2s
    slo_tpot: 100ms
    max_queue: 64
    max_wait: 30s
measure:
  stall: 150ms
backends:
  - url: http://127.0.0.1:{a}
    name: llama-a
    models: [small]
  - url: http://127.0.0.1:{b}
    name: llama-b
    models: [small]
  - url: http://127.0.0.1:{c}
    name: vllm-c
    models: [big]
"""
TIER_TARGETS = """\
groups:
  - name: pitot-tier-ttft-targets
    rules:
      - record: pitot:tier_slo_ttft_seconds
        expr: vector(10)
        labels:
          tier: default
      - record: pitot:tier_slo_ttft_seconds
        expr: vector(2)
        labels:
          tier: premium
"""


def promtool(*args):
    out = subprocess.run([PROMTOOL] + list(args), capture_output=True, text=True, timeout=60)
    text = (out.stdout + out.stderr).strip()
    assert out.returncode == 0, "promtool %s: exit %d:\n%s" % (" ".join(args), out.returncode, text[-3000:])
    return text


def t_promtool_check_rules():
    text = promtool("check", "rules", ALERTS_YML)
    assert "SUCCESS" in text, text
    print("  " + text.splitlines()[-1].strip(), flush=True)


def t_promtool_test_rules():
    text = promtool("test", "rules", ALERTS_TEST_YML)
    assert "SUCCESS" in text, text
    # every alert of alerts.yml has unit tests
    alerts = set(re.findall(r"^\s*- alert:\s*(\S+)", open(ALERTS_YML).read(), re.M))
    tested = set(re.findall(r"^\s*alertname:\s*(\S+)", open(ALERTS_TEST_YML).read(), re.M))
    assert alerts, "no alerts in %s" % ALERTS_YML
    assert alerts <= tested, "alerts without a unit test: %s" % sorted(alerts - tested)
    print("  %d alerts, all unit-tested" % len(alerts), flush=True)


def t_promtool_check_config():
    text = promtool("check", "config", PROM_YML)
    assert "SUCCESS: 1 rule files found" in text, text   # alerts.yml resolved next to it
    assert re.search(r"Checking .*alerts\.yml\s+SUCCESS", text), text


def panels(dash):
    for p in dash["panels"]:
        yield p
        for q in p.get("panels", []):   # collapsed rows keep theirs inside
            yield q


def dashboard_exprs(dash):
    """[(panel title, expr)] of every query of the dashboard."""
    out = []
    for p in panels(dash):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append((p["title"], t["expr"]))
    return out


def t_dashboard_static():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash.get("uid") and dash.get("title"), "dashboard needs uid and title"
    var = {v["name"]: v for v in dash["templating"]["list"]}
    assert var.get("datasource", {}).get("type") == "datasource", var.keys()
    assert var["datasource"].get("query") == "prometheus", var["datasource"]
    for name in ("backend", "tier"):
        v = var.get(name)
        assert v and v["type"] == "query", "no query variable $%s" % name
        assert re.match(r"^label_values\(\w+, %s\)$" % name, v["definition"]), v["definition"]
        assert v["datasource"]["uid"] == "${datasource}", v["datasource"]
    ids, cells = set(), set()
    for p in panels(dash):
        assert p["id"] not in ids, "panel id %s twice" % p["id"]
        ids.add(p["id"])
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, "panel %r overlaps another at %d,%d" % (p["title"], x, y)
                cells.add((x, y))
        assert g["x"] + g["w"] <= 24, "panel %r wider than the grid" % p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", "panel %r: datasource %r" % (p["title"], p["datasource"])
        assert p["fieldConfig"]["defaults"].get("unit"), "panel %r has no unit" % p["title"]
        assert p.get("targets"), "panel %r has no query" % p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            # every range function over $__rate_interval, never a fixed window
            for rng in re.findall(r"\[([^\]]*)\]", t["expr"]):
                assert rng == "$__rate_interval", "panel %r: range [%s]" % (p["title"], rng)
            # every pitot series filtered by the variables it can take
            for name, sel in re.findall(r"(pitot_[a-z0-9_]+|llamacpp:[a-z0-9_]+)(\{[^}]*\})?", t["expr"]):
                assert sel, "panel %r: %s without the $backend/$tier filter" % (p["title"], name)
    titles = " | ".join(p["title"] for p in panels(dash)).lower()
    for want in ("time to first token", "inter-token", "time per output token", "end-to-end",
                 "queue", "shed", "goodput", "refusal", "truncation", "stall", "cancel",
                 "cache", "scrape age", "tokens/s"):
        assert want in titles, "no panel about %r" % want
    for path in PROVISIONING:
        with open(path) as f:
            text = f.read()
        assert text.startswith("#") and "apiVersion: 1" in text, path
    ds = open(PROVISIONING[0]).read()
    assert "type: prometheus" in ds and "timeInterval: 10s" in ds, ds
    prov = open(PROVISIONING[1]).read()
    assert "type: file" in prov and "path:" in prov, prov
    print("  %d panels, %d queries" % (len(ids), len(dashboard_exprs(dash))), flush=True)


# ---- the live stack --------------------------------------------------------------

def prometheus_config(prom_port, pitot_port, a_port, b_port, targets_file):
    """conf/prometheus.yml with loopback targets, 1 s intervals, an absolute
    rule file path and the tiers' restated targets (targets_file) beside it;
    every rewrite must apply, so a changed file fails here instead of being
    tested half."""
    with open(PROM_YML) as f:
        text = f.read()
    rewrites = [
        (r"\bscrape_interval: \d+s", "scrape_interval: 1s"),
        (r"\bevaluation_interval: \d+s", "evaluation_interval: 1s"),
        (r"\bscrape_timeout: \d+s", "scrape_timeout: 1s"),
        (r'"pitot:8080"', '"%s:%d"' % (HOST, pitot_port)),
        (r'"llama-a:8080"', '"%s:%d"' % (HOST, a_port)),
        (r'"llama-b:8080"', '"%s:%d"' % (HOST, b_port)),
        (r'"localhost:9090"', '"%s:%d"' % (HOST, prom_port)),
        (r'"(localhost|alertmanager):9093"', '"%s:%d"' % (HOST, free_port())),   # nothing listens
        (r"(?m)^(\s*- )alerts\.yml$",
         r"\g<1>" + os.path.abspath(ALERTS_YML) + r"\n\g<1>" + targets_file),
    ]
    for pat, rep in rewrites:
        text, n = re.subn(pat, rep, text)
        assert n, "%s: nothing matches %r" % (PROM_YML, pat)
    return text


def run_load(pitot, tier, concurrency, requests):
    return subprocess.Popen([os.path.join(BUILD, "pitot-load"), "--url",
                             "http://%s:%d/v1/chat/completions" % (HOST, pitot.port),
                             "--concurrency", str(concurrency), "--requests", str(requests),
                             "--max-tokens", "8", "--header", "X-Pitot-Tier: " + tier, "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def has_data(port, expr):
    """True if the instant query returns a sample (raises on a bad query)."""
    data = prom_query(port, expr)
    return bool(data["result"]) if data["resultType"] in ("vector", "matrix") else True


KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "offset", "bool", "inf", "nan"}


def selectors(expr):
    """The vector selectors (name with its {matchers}) an expression reads."""
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    e = re.sub(r"\[[^\]]*\]", " ", e)                  # range and subquery durations
    e = re.sub(r"\boffset\s+\w+", " ", e)
    out = []
    for m in re.finditer(r"(?<![\w:.\"])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?", e):
        name, sel, call = m.group(1), m.group(2) or "", m.group(3)
        if call or name.lower() in KEYWORDS:
            continue
        out.append(name + sel)
    return out


def t_live_prometheus():
    a = start_sim("--slots", "2", "--tokens-per-s", "200", "--prefill-tokens-per-s", "4000",
                  "--stall-after", "2", "--stall-ms", "300")
    b = start_sim("--slots", "2", "--tokens-per-s", "200", "--prefill-tokens-per-s", "4000", "--refuse")
    c = start_sim("--flavor", "vllm", "--model", "big", "--slots", "2", "--tokens-per-s", "200",
                  "--die-after", "6")
    pitot = start_pitot([], config=PITOT_CONFIG.format(a=a.port, b=b.port, c=c.port))
    prom_port = free_port()
    with tempfile.NamedTemporaryFile("w", prefix="pitot-targets-", suffix=".yml",
                                     delete=False) as f:
        f.write(TIER_TARGETS)
    atexit.register(os.unlink, f.name)
    prom = start_prometheus_config(prometheus_config(prom_port, pitot.port, a.port, b.port, f.name),
                                   port=prom_port)
    up = lambda: prom_query(prom.port, "up == 1")["result"]
    got = wait_for(lambda: len(up()) == 4 and up(), timeout=15)
    jobs = sorted((r["metric"]["job"], r["metric"].get("backend", "")) for r in got or up())
    assert jobs == [("llamacpp", "llama-a"), ("llamacpp", "llama-b"), ("pitot", ""), ("prometheus", "")], \
        "targets up: %s" % jobs

    # Load on both tiers: premium waits in pitot's queue, default sheds.
    t0 = time.time()
    loads = [run_load(pitot, "premium", 4, 24), run_load(pitot, "default", 10, 40)]
    for ld in loads:
        out, err = ld.communicate(timeout=60)
        assert ld.returncode == 0, "pitot-load exit %d: %s" % (ld.returncode, err[-800:])
    # two client cancels, a completed and a cut stream from the vLLM backend
    for _ in range(2):
        r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(max_tokens=40), max_events=1)
        assert r.status == 200, r.status
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(model="big", max_tokens=4))
    assert r.status == 200 and r.complete, (r.status, r.body[-300:])
    r = request(pitot.port, "POST", "/v1/chat/completions", chat_body(model="big", max_tokens=12))
    assert r.status == 200 and not r.complete, "die-after did not cut the stream"
    print("  load done in %.1f s" % (time.time() - t0), flush=True)

    # Everything in Prometheus and the rules evaluated since: counters seen
    # at least twice, so rates over 1 m have two samples.
    need = ['pitot_client_cancels_total > 0', 'pitot_upstream_errors_total{kind="upstream_reset"} > 0',
            'pitot_shed_total{reason=~"queue_full|max_wait|evicted"} > 0', 'pitot_refusals_total > 0',
            'pitot_stream_stalls_total > 0', 'pitot_queue_wait_seconds_count > 0',
            'pitot_backend_cache_usage_ratio', 'pitot_slo_requests_total{tier="premium"} > 0',
            'pitot_slo_requests_total{tier="default"} > 0']
    for expr in need:
        assert wait_for(lambda: has_data(prom.port, "count_over_time((%s)[30s:1s]) >= 2" % expr),
                        timeout=15, step=0.25), "not in Prometheus: %s (the scenario made none?)" % expr

    # The rule file loaded from the config, every rule evaluated without error.
    def rules():
        return [r for g in prom_api(prom.port, "rules")["groups"] for r in g["rules"]]
    assert wait_for(lambda: rules() and all(r["health"] != "unknown" for r in rules()), timeout=10), \
        "rules not all evaluated: %s" % [(r["name"], r["health"]) for r in rules() if r["health"] == "unknown"]
    time.sleep(1.5)   # one more round, after every series above was there
    rs = rules()
    bad = [(r["name"], r["health"], r.get("lastError")) for r in rs if r["health"] != "ok" or r.get("lastError")]
    assert not bad, "rules with errors: %s" % bad
    alerts = {r["name"] for r in rs if r["type"] == "alerting"}
    in_file = set(re.findall(r"^\s*- alert:\s*(\S+)", open(ALERTS_YML).read(), re.M))
    assert alerts == in_file, "Prometheus loaded %s, file has %s" % (sorted(alerts), sorted(in_file))

    # Every dashboard query returns data; with a real value it still parses.
    with open(DASHBOARD) as f:
        dash = json.load(f)
    failures = []
    exprs = dashboard_exprs(dash)
    for title, expr in exprs:
        q = (expr.replace("$__rate_interval", RATE_INTERVAL)
             .replace("$backend", ".*").replace("$tier", ".*"))
        assert "$" not in q, "unreplaced variable in %r: %s" % (title, expr)
        try:
            if not has_data(prom.port, q):
                failures.append("dashboard %r: no data: %s" % (title, q))
        except RuntimeError as e:
            failures.append("dashboard %r: %s" % (title, e))
        q = (expr.replace("$__rate_interval", RATE_INTERVAL)
             .replace("$backend", "llama-a").replace("$tier", "premium"))
        try:
            prom_query(prom.port, q)
        except RuntimeError as e:
            failures.append("dashboard %r with real values: %s" % (title, e))
    for v in dash["templating"]["list"]:
        m = re.match(r"^label_values\((\w+), (\w+)\)$", v.get("definition", ""))
        if m:
            vals = prom_api(prom.port, "label/%s/values" % m.group(2), [("match[]", m.group(1))])
            want = {"backend": {"llama-a", "llama-b", "vllm-c"}, "tier": {"default", "premium"}}[v["name"]]
            if not want <= set(vals):
                failures.append("variable $%s: %s has %s" % (v["name"], v["definition"], vals))

    # Recording rules always return data; an alert expression returns data
    # only when it fires, so it must parse and evaluate, and every selector
    # it reads (with its label matchers) must return data.
    nsel = 0
    for r in rs:
        try:
            if r["type"] == "recording":
                if not has_data(prom.port, r["query"]):
                    failures.append("recording rule %s: no data: %s" % (r["name"], r["query"]))
                if not has_data(prom.port, r["name"]):
                    failures.append("recorded series %s: no data" % r["name"])
            else:
                prom_query(prom.port, r["query"])
            for sel in selectors(r["query"]):
                nsel += 1
                if not has_data(prom.port, sel):
                    failures.append("%s %s reads %s: no data" % (r["type"], r["name"], sel))
        except RuntimeError as e:
            failures.append("%s %s: %s" % (r["type"], r["name"], e))
    assert not failures, "%d failures:\n  %s" % (len(failures), "\n  ".join(failures))

    # The direct scrape's backend label joins pitot's.
    direct = {s["metric"]["backend"] for s in prom_query(prom.port, "llamacpp:requests_deferred")["result"]}
    pitots = {s["metric"]["backend"] for s in prom_query(prom.port, "pitot_backend_up")["result"]}
    assert direct and direct <= pitots, "direct scrape backends %s, pitot's %s" % (direct, pitots)
    print("  %d dashboard queries, %d rules (%d selectors) all return data"
          % (len(exprs), len(rs), nsel), flush=True)
    stop_pitot_clean(pitot)


def t_inhibit_rules_name_real_alerts():
    """conf/alertmanager.yml is a valid Alertmanager config whose
    inhibit_rules name alerts that exist, and equal only labels those alerts
    carry."""
    text = open(ALERTS_YML).read()
    am = os.path.join(os.path.dirname(ALERTS_YML), "alertmanager.yml")
    out = subprocess.run(["amtool", "check-config", am], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    snippet = open(am).read()
    assert "inhibit_rules:" in snippet, "no inhibit_rules in %s" % am
    snippet = snippet[snippet.index("inhibit_rules:"):]
    alerts = set(re.findall(r"^\s*- alert:\s*(\S+)", text, re.M))
    named = set()
    for m in re.finditer(r'alertname=~?"([^"]+)"', snippet):
        named |= set(m.group(1).split("|"))
    assert named, "inhibit_rules name no alerts"
    assert named <= alerts, "inhibit_rules name unknown alerts: %s" % sorted(named - alerts)
    labels = {"alertname", "severity", "job", "instance", "backend", "tier"}
    for m in re.finditer(r"equal:\s*\[([^\]]*)\]", snippet):
        eq = {x.strip() for x in m.group(1).split(",") if x.strip()}
        assert eq <= labels, "equal on labels no alert has: %s" % sorted(eq - labels)
    n = len(re.findall(r"source_matchers", snippet))
    assert n >= 5, snippet
    print("  %d inhibit rules over %d alert names" % (n, len(named)), flush=True)


check("promtool check rules conf/alerts.yml", t_promtool_check_rules)
check("promtool test rules conf/alerts_test.yml, every alert tested", t_promtool_test_rules)
check("promtool check config conf/prometheus.yml finds the rule file", t_promtool_check_config)
check("Grafana dashboard and provisioning are well-formed", t_dashboard_static)
check("alertmanager.yml is valid and its inhibit_rules name real alerts", t_inhibit_rules_name_real_alerts)
check("real Prometheus from conf/prometheus.yml: rules healthy, every dashboard and rule query has data",
      t_live_prometheus)
finish()
