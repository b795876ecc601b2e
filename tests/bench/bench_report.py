"""Figures for tests/bench/bench_routing.sh (Python 3 stdlib only).

  bench_report.py capacity PROMPT MAX_TOKENS LOAD SLOTS:PREFILL:DECODE...
      prints "CAPACITY RATE": the pool's capacity in requests/s and LOAD times
      it (the open-loop arrival rate to offer)
  bench_report.py summarize NAME SEED SECONDS SLO_TTFT_MS SLO_TPOT_MS LOAD_JSONL
                            LOAD_SUMMARY METRICS_OR_- REPLICA=STATS_JSON...
      one JSON object on stdout: the figures of one front end's run
  bench_report.py report RESULTS_JSONL SLO_TTFT_MS SLO_TPOT_MS RATE SECONDS
                         PROMPT MAX_TOKENS JITTER SLOTS:PREFILL:DECODE...
      the tables per seed and pooled over the seeds, the ratios to nginx, the
      idealised model of the pool on the same arrivals, the issue's target line

Percentiles are exact, nearest rank over the ok requests (the smallest value
with at least q*n values at or below it), never interpolated or bucketed.

The model: pitot-load's arrival times for a seed (its PRNG, splitmix64, and
its exponential gaps, reproduced here), each request served by a replica slot
for prompt/prefill (then its first token) + (max_tokens - 1)/decode, each
token gap jittered like pitot-sim's; no network, no proxy, no scrape delay.
Two disciplines: one central FIFO queue whose head takes the first free slot,
the fastest replica's first (what pitot's own queue approximates), and join
the shortest queue, nginx least_conn's rule, with a FIFO queue per replica.
It shows what routing alone can reach on these arrivals."""

import heapq
import json
import math
import random
import re
import sys

TARGET_RATIO = 0.70  # the issue: "p95 TTFT at least 30% lower than nginx least_conn"
BASELINE = "nginx least_conn"
MASK64 = (1 << 64) - 1


def nearest_rank(values, q):
    """Exact q-quantile (0 < q <= 1) by nearest rank; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(1, math.ceil(q * len(s)))
    return s[k - 1]


def parse_pool(specs):
    """[(slots, prefill tok/s, decode tok/s)] from SLOTS:PREFILL:DECODE."""
    return [tuple(float(x) for x in spec.split(":")) for spec in specs]


def service_s(prompt, max_tokens, prefill, decode):
    """One request's time on a slot: the prompt, then the first token at once,
    then max_tokens - 1 gaps of 1/decode."""
    return prompt / prefill + (max_tokens - 1) / decode


def capacity(argv):
    """Requests/s the pool can serve: sum over replicas of slots / service."""
    prompt, max_tokens, load = float(argv[0]), float(argv[1]), float(argv[2])
    total = sum(slots / service_s(prompt, max_tokens, p, d) for slots, p, d in parse_pool(argv[3:]))
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
    name, seed, seconds = argv[0], int(argv[1]), float(argv[2])
    slo_ttft, slo_tpot = float(argv[3]), float(argv[4])
    load_jsonl, load_summary, metrics_path = argv[5], argv[6], argv[7]
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
    late = 0
    with open(load_summary, encoding="utf-8") as f:
        m = re.search(r"late: (\d+)", f.read())
        late = int(m.group(1)) if m else 0
    res = {
        "name": name,
        "seed": seed,
        "seconds": seconds,
        "requests": len(reqs),
        "shed": shed,
        "errors": len(reqs) - len(ok) - shed,
        "late": late,
        "good": len(good),
        # every ok request's figures, so that seeds can be pooled
        "ttft": [r["ttft_ms"] for r in ok],
        "e2e": [r["e2e_ms"] for r in ok],
        "replicas": {},
    }
    for kv in argv[8:]:
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
        res["queue_wait_s"] = metric_sum(metrics, "pitot_queue_wait_seconds_sum")
        res["pitot_shed"] = int(metric_sum(metrics, "pitot_shed_total"))
    print(json.dumps(res))


def pool_runs(runs):
    """One run's figures from several (the same front end over several seeds):
    counts added, percentiles over every ok request of every run."""
    out = {"name": runs[0]["name"], "seconds": sum(r["seconds"] for r in runs),
           "ttft": [], "e2e": [], "replicas": {}}
    for key in ("requests", "shed", "errors", "late", "good", "queued", "queue_wait_s",
                "pitot_shed"):
        if all(key in r for r in runs):
            out[key] = sum(r[key] for r in runs)
    for r in runs:
        out["ttft"] += r["ttft"]
        out["e2e"] += r["e2e"]
        for k, v in r["replicas"].items():
            prev = out["replicas"].get(k, 0)
            out["replicas"][k] = None if v is None or prev is None else prev + v
    return out


def figures(r):
    """The derived figures of a (pooled) run."""
    return {
        "ok": len(r["ttft"]),
        "p50": nearest_rank(r["ttft"], 0.50),
        "p95": nearest_rank(r["ttft"], 0.95),
        "p99": nearest_rank(r["ttft"], 0.99),
        "e2e_p95": nearest_rank(r["e2e"], 0.95),
        "goodput": r["good"] / r["seconds"] if r["seconds"] else 0.0,
    }


def fmt_ms(v):
    return "-" if v is None else f"{v:.0f}"


# ---- the idealised model ----------------------------------------------------

def arrivals(seed, rate, seconds):
    """pitot-load's open-loop arrival times (s) for --seed and --rate: its
    splitmix64 PRNG and gaps of -log1p(-u) / rate, truncated to microseconds."""
    state, t_us, out = seed, 0, []
    end_us = seconds * 1e6
    while t_us < end_us:
        out.append(t_us / 1e6)
        state = (state + 0x9e3779b97f4a7c15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & MASK64
        z ^= z >> 31
        u = (z >> 11) * (1.0 / 9007199254740992.0)
        t_us += int(-math.log1p(-u) / rate * 1e6)
    return out


def model(discipline, arr, pool, prompt, max_tokens, jitter, seed):
    """TTFTs (ms) of the arrivals arr through the pool under `discipline`:
    "central" or "jsq" (see the module comment)."""
    rng = random.Random(seed)
    nrep = len(pool)
    prefill = [prompt / p for _, p, _ in pool]
    gap = [1.0 / d for _, _, d in pool]
    slots = [int(s) for s, _, _ in pool]
    busy = [0] * nrep
    queues = [[] for _ in range(nrep)]  # jsq: per replica, FIFO
    central = []                        # central: one FIFO
    ttft = []
    rot = [0]
    events = [(t, 0, k) for k, t in enumerate(arr)]  # (time, 0 arrival | 1 end, what)
    heapq.heapify(events)

    def start(i, k, now):
        busy[i] += 1
        tokens = sum(gap[i] * (1 - jitter + 2 * jitter * rng.random())
                     for _ in range(int(max_tokens) - 1))
        ttft.append((now + prefill[i] - arr[k]) * 1000)
        heapq.heappush(events, (now + prefill[i] + tokens, 1, i))

    def rotate_min(cands, key):
        best = None
        for n in range(nrep):
            i = (rot[0] + n) % nrep
            if i in cands and (best is None or key(i) < key(best)):
                best = i
        rot[0] = (best + 1) % nrep
        return best

    while events:
        now, kind, x = heapq.heappop(events)
        if kind == 1:
            busy[x] -= 1
            if discipline == "jsq" and queues[x]:
                start(x, queues[x].pop(0), now)
        elif discipline == "jsq":
            i = rotate_min(range(nrep), lambda j: busy[j] + len(queues[j]))
            if busy[i] < slots[i]:
                start(i, x, now)
            else:
                queues[i].append(x)
        else:
            central.append(x)
        while discipline == "central" and central:
            free = [i for i in range(nrep) if busy[i] < slots[i]]
            if not free:
                break
            i = rotate_min(free, lambda j: (prefill[j] + gap[j], busy[j] / slots[j]))
            start(i, central.pop(0), now)
    return ttft


# ---- the report -------------------------------------------------------------

def table(runs, w, slo_ttft, slo_tpot):
    print(f"  {'front end':<{w}}  {'requests':>8} {'ok (n)':>6} {'shed':>5} {'errors':>6} "
          f"{'late':>5}  {'TTFT p50':>8} {'p95':>6} {'p99':>6}  {'E2E p95':>7}  {'goodput':>7}")
    for r in runs:
        f = figures(r)
        print(f"  {r['name']:<{w}}  {r['requests']:>8} {f['ok']:>6} {r['shed']:>5} "
              f"{r['errors']:>6} {r['late']:>5}  {fmt_ms(f['p50']):>8} "
              f"{fmt_ms(f['p95']):>6} {fmt_ms(f['p99']):>6}  "
              f"{fmt_ms(f['e2e_p95']):>7}  {f['goodput']:>7.2f}")
    print(f"  (milliseconds, client side, over the ok requests (n); goodput = requests/s with "
          f"TTFT <= {slo_ttft:.0f} ms and TPOT <= {slo_tpot:.0f} ms)")


def ratios(runs, w):
    """Prints each front end's ratios to nginx; returns {name: p95 ratio}."""
    base = next((r for r in runs if r["name"] == BASELINE), None)
    out = {}
    if base is None or not figures(base)["p95"]:
        print(f"  no {BASELINE} figures to compare with")
        return out
    fb = figures(base)
    for r in runs:
        if r is base:
            continue
        f = figures(r)
        p95 = f["p95"] / fb["p95"] if f["p95"] is not None else None
        p50 = f["p50"] / fb["p50"] if f["p50"] is not None and fb["p50"] else None
        gp = f["goodput"] / fb["goodput"] if fb["goodput"] else None
        print(f"  {r['name']:<{w}}  p95 TTFT {'-' if p95 is None else f'{p95:.2f}'}"
              f"   p50 TTFT {'-' if p50 is None else f'{p50:.2f}'}"
              f"   goodput {'-' if gp is None else f'{gp:.2f}'}")
        out[r["name"]] = p95
    return out


def model_line(label, arr_sets, pool, prompt, max_tokens, jitter):
    """Prints the model's figures over the arrival sets; returns the p95 ratio."""
    got = {}
    for disc in ("central", "jsq"):
        vals = []
        for seed, arr in arr_sets:
            vals += model(disc, arr, pool, prompt, max_tokens, jitter, seed)
        got[disc] = (nearest_rank(vals, 0.5), nearest_rank(vals, 0.95), nearest_rank(vals, 0.99))
    c, j = got["central"], got["jsq"]
    ratio = c[1] / j[1] if j[1] else None
    print(f"  model, {label}: central queue p50/p95/p99 {fmt_ms(c[0])}/{fmt_ms(c[1])}/"
          f"{fmt_ms(c[2])}, join-shortest-queue {fmt_ms(j[0])}/{fmt_ms(j[1])}/{fmt_ms(j[2])}: "
          f"p95 ratio {'-' if ratio is None else f'{ratio:.2f}'}")
    return ratio


def report(argv):
    results = []
    with open(argv[0], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                results.append(json.loads(line))
    slo_ttft, slo_tpot = float(argv[1]), float(argv[2])
    rate, seconds = float(argv[3]), float(argv[4])
    prompt, max_tokens, jitter = float(argv[5]), float(argv[6]), float(argv[7])
    pool = parse_pool(argv[8:])
    w = max(len(r["name"]) for r in results)
    seeds = list(dict.fromkeys(r["seed"] for r in results))
    names = list(dict.fromkeys(r["name"] for r in results))
    verdicts = {n: [] for n in names}
    arr_sets = []
    for seed in seeds:
        runs = [r for r in results if r["seed"] == seed]
        print(f"\n  -- seed {seed}")
        table(runs, w, slo_ttft, slo_tpot)
        print()
        print("  requests each replica received (its /sim/stats), and pitot's own queue:")
        for r in runs:
            reps = "  ".join(f"{k} {'-' if v is None else v}" for k, v in r["replicas"].items())
            extra = ""
            if "queued" in r:
                mean = 1000 * r["queue_wait_s"] / r["queued"] if r["queued"] else 0.0
                extra = (f"   queued in pitot: {r['queued']} (mean wait {mean:.0f} ms), "
                         f"shed by pitot: {r['pitot_shed']}")
            print(f"  {r['name']:<{w}}  {reps}{extra}")
        print()
        print(f"  ratios to {BASELINE}:")
        for name, p95 in ratios(runs, w).items():
            verdicts[name].append(p95)
        arr = arrivals(seed, rate, seconds)
        arr_sets.append((seed, arr))
        model_line(f"{len(arr)} arrivals", [(seed, arr)], pool, prompt, max_tokens, jitter)
    pooled = {}
    if len(seeds) > 1:
        print(f"\n  -- pooled over seeds {' '.join(str(s) for s in seeds)} "
              f"(percentiles over every ok request of every seed)")
        runs = [pool_runs([r for r in results if r["name"] == n]) for n in names]
        table(runs, w, slo_ttft, slo_tpot)
        print()
        print(f"  ratios to {BASELINE}:")
        pooled = ratios(runs, w)
        model_line(f"{sum(len(a) for _, a in arr_sets)} arrivals", arr_sets, pool, prompt,
                   max_tokens, jitter)
    if BASELINE not in names:
        return
    print()
    print('  target (from the issue): "p95 TTFT at least 30% lower than nginx least_conn '
          'at 80% load", i.e. a p95 TTFT ratio <= 0.70')
    for name in names:
        if name == BASELINE:
            continue
        per = verdicts[name]
        met = sum(1 for p in per if p is not None and p <= TARGET_RATIO)
        shown = " ".join("-" if p is None else f"{p:.2f}" for p in per)
        line = f"  {name}: p95 ratio per seed {shown}: target met in {met} of {len(per)}"
        if name in pooled and pooled[name] is not None:
            p = pooled[name]
            diff = (1 - p) * 100
            how = f"{diff:.0f}% lower" if diff >= 0 else f"{-diff:.0f}% higher"
            line += (f"; pooled {how} than nginx (ratio {p:.2f}): "
                     f"{'met' if p <= TARGET_RATIO else 'not met'}")
        print(line)


def main():
    cmds = {"capacity": capacity, "summarize": summarize, "report": report}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
