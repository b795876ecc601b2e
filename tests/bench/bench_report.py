"""Figures for tests/bench/bench_routing.sh (Python 3 stdlib only).

  bench_report.py capacity PROMPT MAX_TOKENS LOAD SLOTS:PREFILL:DECODE...
      prints "CAPACITY RATE": the pool's estimated capacity in requests/s and
      LOAD times it (the open-loop arrival rate to offer)
  bench_report.py summarize NAME SECONDS SLO_TTFT_MS SLO_TPOT_MS LOAD_JSONL
                            LOAD_SUMMARY METRICS_OR_- REPLICA=STATS_JSON...
      one JSON object on stdout: the figures of one front end's run
  bench_report.py report RESULTS_JSONL SLO_TTFT_MS SLO_TPOT_MS
      the tables, the ratios to nginx and the issue's target line

Percentiles are exact, nearest rank over the ok requests (the smallest value
with at least q*n values at or below it), never interpolated or bucketed."""

import json
import math
import re
import sys

TARGET_RATIO = 0.70  # the issue: "p95 TTFT at least 30% lower than nginx least_conn"
BASELINE = "nginx least_conn"


def nearest_rank(values, q):
    """Exact q-quantile (0 < q <= 1) by nearest rank; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(1, math.ceil(q * len(s)))
    return s[k - 1]


def capacity(argv):
    """Requests/s the pool can serve: sum over replicas of slots/service time,
    service time = prompt/prefill + max_tokens/decode (one request per slot)."""
    prompt, max_tokens, load = float(argv[0]), float(argv[1]), float(argv[2])
    total = 0.0
    for spec in argv[3:]:
        slots, prefill, decode = (float(x) for x in spec.split(":"))
        total += slots / (prompt / prefill + max_tokens / decode)
    print(f"{total:.4f} {total * load:.4f}")


def tpot_ms(r):
    """(E2E - TTFT) / (tokens - 1); 0 for a one-token answer."""
    n = r.get("completion_tokens") or 0
    if n <= 1:
        return 0.0
    return (r["e2e_ms"] - r["ttft_ms"]) / (n - 1)


def parse_metrics(path):
    """{name: [({label: value}, float)]} from Prometheus text; {} for '-'."""
    out = {}
    if path == "-":
        return out
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = sample.match(line)
            if not m or line.startswith("#"):
                continue
            out.setdefault(m.group(1), []).append(
                (dict(label.findall(m.group(2) or "")), float(m.group(3))))
    return out


def metric_sum(metrics, name, **where):
    return sum(v for lab, v in metrics.get(name, [])
               if all(lab.get(k) == w for k, w in where.items()))


def summarize(argv):
    name, seconds = argv[0], float(argv[1])
    slo_ttft, slo_tpot = float(argv[2]), float(argv[3])
    load_jsonl, load_summary, metrics_path = argv[4], argv[5], argv[6]
    reqs = []
    with open(load_jsonl, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                reqs.append(json.loads(line))
    # A request is ok when it got 200 and a complete stream with a first token.
    ok = [r for r in reqs if r.get("status") == 200 and not r.get("error")
          and r.get("ttft_ms") is not None and r.get("e2e_ms") is not None]
    shed = sum(1 for r in reqs if r.get("status") == 503)
    good = [r for r in ok if r["ttft_ms"] <= slo_ttft and tpot_ms(r) <= slo_tpot]
    ttft = [r["ttft_ms"] for r in ok]
    e2e = [r["e2e_ms"] for r in ok]
    late = 0
    with open(load_summary, encoding="utf-8") as f:
        m = re.search(r"late: (\d+)", f.read())
        late = int(m.group(1)) if m else 0
    res = {
        "name": name,
        "requests": len(reqs),
        "ok": len(ok),
        "shed": shed,
        "errors": len(reqs) - len(ok) - shed,
        "late": late,
        "ttft_p50": nearest_rank(ttft, 0.50),
        "ttft_p95": nearest_rank(ttft, 0.95),
        "ttft_p99": nearest_rank(ttft, 0.99),
        "ttft_max": max(ttft) if ttft else None,
        "e2e_p95": nearest_rank(e2e, 0.95),
        "tpot_p95": nearest_rank([tpot_ms(r) for r in ok], 0.95),
        "good": len(good),
        "goodput": len(good) / seconds,
        "replicas": {},
    }
    for kv in argv[7:]:
        rep, path = kv.split("=", 1)
        try:
            with open(path, encoding="utf-8") as f:
                res["replicas"][rep] = json.load(f).get("requests")
        except (OSError, ValueError):
            res["replicas"][rep] = None
    metrics = parse_metrics(metrics_path)
    if metrics:
        # pitot's own overload queue: how many waited there, and for how long.
        res["queued"] = int(metric_sum(metrics, "pitot_queue_wait_seconds_count"))
        qsum = metric_sum(metrics, "pitot_queue_wait_seconds_sum")
        res["queue_wait_mean_ms"] = 1000 * qsum / res["queued"] if res["queued"] else 0.0
        res["pitot_shed"] = int(metric_sum(metrics, "pitot_shed_total"))
    print(json.dumps(res))


def fmt_ms(v):
    return "-" if v is None else f"{v:.0f}"


def report(argv):
    results = []
    with open(argv[0], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                results.append(json.loads(line))
    slo_ttft, slo_tpot = float(argv[1]), float(argv[2])
    w = max(len(r["name"]) for r in results)
    print(f"  {'front end':<{w}}  {'requests':>8} {'ok':>5} {'shed':>5} {'errors':>6} {'late':>5}"
          f"  {'TTFT p50':>8} {'p95':>6} {'p99':>6}  {'E2E p95':>7}  {'goodput':>7}")
    for r in results:
        print(f"  {r['name']:<{w}}  {r['requests']:>8} {r['ok']:>5} {r['shed']:>5} "
              f"{r['errors']:>6} {r['late']:>5}  {fmt_ms(r['ttft_p50']):>8} "
              f"{fmt_ms(r['ttft_p95']):>6} {fmt_ms(r['ttft_p99']):>6}  "
              f"{fmt_ms(r['e2e_p95']):>7}  {r['goodput']:>7.2f}")
    print(f"  (milliseconds, client side, over ok requests; goodput = requests/s with "
          f"TTFT <= {slo_ttft:.0f} ms and TPOT <= {slo_tpot:.0f} ms)")
    print()
    print("  requests each replica received (its /sim/stats), and pitot's own queue:")
    for r in results:
        reps = "  ".join(f"{k} {'-' if v is None else v}" for k, v in r["replicas"].items())
        extra = ""
        if "queued" in r:
            extra = (f"   queued in pitot: {r['queued']} (mean wait "
                     f"{r['queue_wait_mean_ms']:.0f} ms), shed by pitot: {r['pitot_shed']}")
        print(f"  {r['name']:<{w}}  {reps}{extra}")
    print()
    base = next((r for r in results if r["name"] == BASELINE), None)
    if base is None or not base["ttft_p95"]:
        print(f"  no {BASELINE} figures to compare with")
        return
    print(f"  ratios to {BASELINE}:")
    verdicts = []
    for r in results:
        if r is base:
            continue
        p95 = r["ttft_p95"] / base["ttft_p95"] if r["ttft_p95"] is not None else None
        gp = r["goodput"] / base["goodput"] if base["goodput"] else None
        print(f"  {r['name']:<{w}}  p95 TTFT {'-' if p95 is None else f'{p95:.2f}'}"
              f"   goodput {'-' if gp is None else f'{gp:.2f}'}")
        verdicts.append((r["name"], p95))
    print()
    print('  target (from the issue): "p95 TTFT at least 30% lower than nginx least_conn '
          'at 80% load", i.e. a p95 TTFT ratio <= 0.70')
    for name, p95 in verdicts:
        if p95 is None:
            print(f"  {name}: no ok requests, target not met in this run")
        else:
            met = "met" if p95 <= TARGET_RATIO else "not met"
            diff = (1 - p95) * 100
            how = f"{diff:.0f}% lower" if diff >= 0 else f"{-diff:.0f}% higher"
            print(f"  {name}: p95 TTFT {how} than nginx (ratio {p95:.2f}): "
                  f"target {met} in this run")


def main():
    cmds = {"capacity": capacity, "summarize": summarize, "report": report}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
